"""Alembic's entry point: migrations run on the connection ``postgresql_migrations.upgrade``
hands over (never from a URL in a file), inside the store's transaction and advisory lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from lumen_alerting.threader.store.postgresql_migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("threader store migrations run from PostgreSQLStore, with a connection")
context.configure(connection=connection, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
