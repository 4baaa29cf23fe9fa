"""The first schema: the threader's idempotency keys, threads and their parent messages, the
outbox, dead letters, channel ids, "sending" notes, and one counter row per scope.

Every row carries ``scope``, the threader's key prefix, so threaders of several policies share one
database and never see each other's rows. Times are seconds since the epoch (double precision),
as the other stores keep them.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Types spelled out here, not imported from the store: a migration must keep creating what it
# created when it was written.
TIME = sa.Float(precision=53)  # double precision


def upgrade() -> None:
    # The outbox's size per scope, kept by accept and complete, so the bound is checked without a
    # count; accepts of one scope take this row's lock, which serialises them.
    op.create_table(
        "threader_scopes",
        sa.Column("scope", sa.Text(), primary_key=True),
        sa.Column("entries", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("bytes", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "threader_idempotency",
        sa.Column("scope", sa.Text(), primary_key=True),
        sa.Column("delivery_id", sa.Text(), primary_key=True),
        sa.Column("expires_at", TIME, nullable=False),
    )
    op.create_index("threader_idempotency_expiry", "threader_idempotency", ["scope", "expires_at"])
    op.create_table(
        "threader_threads",
        sa.Column("scope", sa.Text(), primary_key=True),
        sa.Column("thread_key", sa.Text(), primary_key=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("touched_at", TIME, nullable=False),
    )
    op.create_index("threader_threads_touched", "threader_threads", ["scope", "touched_at"])
    op.create_table(
        "threader_parents",
        sa.Column("scope", sa.Text(), primary_key=True),
        sa.Column("thread_key", sa.Text(), primary_key=True),
        sa.Column("generation", sa.Integer(), primary_key=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["scope", "thread_key"],
            ["threader_threads.scope", "threader_threads.thread_key"],
            name="threader_parents_thread",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "threader_outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("delivery_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("thread_key", sa.Text(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("alert", sa.Text(), nullable=False),  # the JSON as received, byte for byte
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("accepted_at", TIME, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("due_at", TIME, nullable=False, server_default="0"),
        sa.Column("holder", sa.Text(), nullable=True),  # the consumer holding the lease
        sa.Column("leased_at", TIME, nullable=True),
    )
    op.create_index("threader_outbox_scope", "threader_outbox", ["scope", "id"])
    op.create_index(
        "threader_outbox_free",
        "threader_outbox",
        ["scope", "id"],
        postgresql_where=sa.text("holder IS NULL"),
    )
    op.create_index(
        "threader_outbox_leased",
        "threader_outbox",
        ["scope", "leased_at"],
        postgresql_where=sa.text("holder IS NOT NULL"),
    )
    op.create_table(
        "threader_dead_letters",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("delivery", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", TIME, nullable=False),
    )
    op.create_index("threader_dead_letters_scope", "threader_dead_letters", ["scope", "id"])
    op.create_table(
        "threader_channels",
        sa.Column("scope", sa.Text(), primary_key=True),
        sa.Column("channel", sa.Text(), primary_key=True),
        sa.Column("channel_id", sa.Text(), nullable=False),
    )
    op.create_table(
        "threader_sending",
        sa.Column("scope", sa.Text(), primary_key=True),
        sa.Column("delivery_id", sa.Text(), primary_key=True),
        sa.Column("marked_at", TIME, nullable=False),
    )
    op.create_index("threader_sending_marked", "threader_sending", ["scope", "marked_at"])


def downgrade() -> None:
    for table in (
        "threader_sending",
        "threader_channels",
        "threader_dead_letters",
        "threader_outbox",
        "threader_parents",
        "threader_threads",
        "threader_idempotency",
        "threader_scopes",
    ):
        op.drop_table(table)
