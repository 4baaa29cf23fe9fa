"""The first schema: raw alerts, incidents, which alerts make up an incident, its event log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Types spelled out here, not imported from schema.py: a migration must keep creating what it
# created when it was written, whatever the schema becomes.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# MySQL's DATETIME drops microseconds unless asked for them; times are naive UTC everywhere.
TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "raw_alerts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("receiver", sa.String(255), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("incident_key", sa.String(500), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("starts_at", TIME, nullable=False),
        sa.Column("ends_at", TIME, nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
    )
    # Which incident an alert occurrence already belongs to; what prune() may delete.
    op.create_index("ix_raw_alerts_occurrence", "raw_alerts", ["fingerprint", "starts_at"])
    op.create_index("ix_raw_alerts_received_at", "raw_alerts", ["received_at"])

    op.create_table(
        "incidents",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("incident_key", sa.String(500), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(64), nullable=False),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("cluster", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("opened_at", TIME, nullable=False),
        sa.Column("alerts_firing", sa.Integer(), nullable=False),
        sa.Column("alerts_total", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", TIME, nullable=True),
        sa.Column("acknowledged_by", sa.String(255), nullable=True),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.Column("resolved_by", sa.String(255), nullable=True),
        sa.Column("resolved_while_firing", sa.Boolean(), nullable=False),
        sa.Column("slack_channel", sa.String(64), nullable=True),
        sa.Column("slack_ts", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    # find(key), note_slack_message(key): the newest incident with a key.
    op.create_index("ix_incidents_key", "incidents", ["incident_key", "id"])

    op.create_table(
        "incident_alerts",
        sa.Column(
            "raw_alert_id",
            ID,
            sa.ForeignKey("raw_alerts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "incident_id",
            ID,
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
    )
    op.create_index("ix_incident_alerts_incident", "incident_alerts", ["incident_id"])

    op.create_table(
        "incident_events",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column(
            "incident_id",
            ID,
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", TIME, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_incident_events_incident", "incident_events", ["incident_id", "id"])


def downgrade() -> None:
    op.drop_table("incident_events")
    op.drop_table("incident_alerts")
    op.drop_table("incidents")
    op.drop_table("raw_alerts")
