"""Silences from Slack and the API, Grafana's links and values, and a fast incident list.

- incidents.silenced_until / silenced_by / silence_id: the Alertmanager silence holding an
  incident's alerts.
- raw_alerts.links / alert_values: Grafana's silenceURL, dashboardURL, panelURL, imageURL and
  generatorURL, and its per-alert values.
- incidents.severity_rank / state_rank (filled from severity and state): the list sorts by
  them ("-severity": most severe first; "state": triggered first) through an index instead of
  a CASE expression over every row.
- Indexes for the list's filters and sort orders (ties by id, newest first) and for the
  silences that run out.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
SEVERITY_RANKS = {"critical": 4, "error": 3, "warning": 2, "info": 1}
STATE_RANKS = {"triggered": 0, "acknowledged": 1, "silenced": 2, "resolved": 3}

LIST_INDEXES: dict[str, list[str | sa.TextClause]] = {
    "ix_incidents_opened_at": ["opened_at", "id"],
    "ix_incidents_state_opened_at": ["state", "opened_at"],
    "ix_incidents_severity_opened_at": ["severity", "opened_at"],
    "ix_incidents_service_opened_at": ["service", "opened_at"],
    "ix_incidents_cluster_namespace_opened_at": ["cluster", "namespace", "opened_at"],
    # Descending rank: backwards over (rank, id); ascending rank with ties newest first needs
    # its own index, as id then runs against the rank.
    "ix_incidents_severity_rank": ["severity_rank", "id"],
    "ix_incidents_severity_rank_id_desc": ["severity_rank", sa.text("id DESC")],
    "ix_incidents_state_rank": ["state_rank", "id"],
    "ix_incidents_state_rank_id_desc": ["state_rank", sa.text("id DESC")],
    "ix_incidents_silenced_until": ["silenced_until"],
}


def upgrade() -> None:
    op.add_column("incidents", sa.Column("silenced_until", TIME, nullable=True))
    op.add_column("incidents", sa.Column("silenced_by", sa.String(255), nullable=True))
    op.add_column("incidents", sa.Column("silence_id", sa.String(64), nullable=True))
    op.add_column(
        "incidents",
        sa.Column("severity_rank", sa.SmallInteger(), nullable=False, server_default="0"),
    )
    op.add_column(
        "incidents",
        sa.Column("state_rank", sa.SmallInteger(), nullable=False, server_default="0"),
    )
    op.add_column("raw_alerts", sa.Column("links", sa.JSON(), nullable=True))
    op.add_column("raw_alerts", sa.Column("alert_values", sa.JSON(), nullable=True))

    incidents = sa.table(
        "incidents",
        sa.column("severity", sa.String()),
        sa.column("state", sa.String()),
        sa.column("severity_rank", sa.SmallInteger()),
        sa.column("state_rank", sa.SmallInteger()),
    )
    op.execute(
        incidents.update().values(
            severity_rank=sa.case(
                *(
                    (sa.func.lower(incidents.c.severity) == name, rank)
                    for name, rank in SEVERITY_RANKS.items()
                ),
                else_=0,
            ),
            state_rank=sa.case(
                *((incidents.c.state == name, rank) for name, rank in STATE_RANKS.items()),
                else_=0,
            ),
        )
    )
    for name, columns in LIST_INDEXES.items():
        op.create_index(name, "incidents", columns)


def downgrade() -> None:
    for name in LIST_INDEXES:
        op.drop_index(name, table_name="incidents")
    for column in ("alert_values", "links"):
        op.drop_column("raw_alerts", column)
    for column in ("state_rank", "severity_rank", "silence_id", "silenced_by", "silenced_until"):
        op.drop_column("incidents", column)
