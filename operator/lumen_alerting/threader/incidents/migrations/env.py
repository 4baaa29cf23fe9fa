"""Alembic's entry point: migrations run on the connection ``migrations.upgrade`` hands over
(never from a URL in a file), so the store's engine settings and transaction apply."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from lumen_alerting.threader.incidents.migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("incident migrations run from IncidentStore.open(), with a connection")
context.configure(connection=connection, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
