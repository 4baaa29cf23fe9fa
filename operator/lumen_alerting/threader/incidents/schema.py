"""The incident store's tables as the code reads and writes them (SQLAlchemy Core), matching
the head of the Alembic migrations (``migrations/versions``). The migrations create the
tables; this module only describes them, so a change here needs a migration too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

# SQLite has one integer type and wants INTEGER PRIMARY KEY for its rowid alias.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stored as naive UTC in every database (the same column type everywhere), read back as
    aware UTC datetimes."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

raw_alerts = sa.Table(
    "raw_alerts",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("receiver", sa.String(255), nullable=False),
    sa.Column("group_key", sa.Text(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("incident_key", sa.String(500), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("starts_at", UTCDateTime(), nullable=False),
    sa.Column("ends_at", UTCDateTime(), nullable=True),
    sa.Column("labels", sa.JSON(), nullable=False),
    sa.Column("annotations", sa.JSON(), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    # 0002
    sa.Column("links", sa.JSON(), nullable=True),
    sa.Column("alert_values", sa.JSON(), nullable=True),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("incident_key", sa.String(500), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("title", sa.Text(), nullable=False),
    sa.Column("severity", sa.String(64), nullable=False),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("cluster", sa.String(255), nullable=False),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("labels", sa.JSON(), nullable=False),
    sa.Column("opened_at", UTCDateTime(), nullable=False),
    sa.Column("alerts_firing", sa.Integer(), nullable=False),
    sa.Column("alerts_total", sa.Integer(), nullable=False),
    sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
    sa.Column("acknowledged_by", sa.String(255), nullable=True),
    sa.Column("resolved_at", UTCDateTime(), nullable=True),
    sa.Column("resolved_by", sa.String(255), nullable=True),
    sa.Column("resolved_while_firing", sa.Boolean(), nullable=False),
    sa.Column("slack_channel", sa.String(64), nullable=True),
    sa.Column("slack_ts", sa.String(64), nullable=True),
    sa.Column("version", sa.Integer(), nullable=False),
    # 0002
    sa.Column("silenced_until", UTCDateTime(), nullable=True),
    sa.Column("silenced_by", sa.String(255), nullable=True),
    sa.Column("silence_id", sa.String(64), nullable=True),
    sa.Column("severity_rank", sa.SmallInteger(), nullable=False),
    sa.Column("state_rank", sa.SmallInteger(), nullable=False),
)

# One row per stored alert of an incident: which raw alerts make up its timeline.
incident_alerts = sa.Table(
    "incident_alerts",
    metadata,
    sa.Column(
        "raw_alert_id",
        BIG_ID,
        sa.ForeignKey("raw_alerts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "incident_id",
        BIG_ID,
        sa.ForeignKey("incidents.id", ondelete="CASCADE"),
        nullable=False,
    ),
)

incident_events = sa.Table(
    "incident_events",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
    sa.Column(
        "incident_id",
        BIG_ID,
        sa.ForeignKey("incidents.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
)
