"""The PostgreSQL store's schema migrations (Alembic), run from code: no alembic.ini on disk.

``upgrade(connection)`` brings a database to the newest revision (``PostgreSQLStore`` does it on
every start, one replica at a time); ``versions/`` holds one file per revision. Its own version
table, so the threader's tables (``threader_*``) live beside the incident store's in one
database, each migrated on its own.
"""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

VERSION_TABLE = "lumen_threads_schema"
HEAD = "head"

# Alembic says at INFO what it checks on every start.
logging.getLogger("alembic").setLevel(logging.WARNING)


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", "lumen_alerting.threader.store:postgresql_migrations")
    # env.py runs the migrations on this connection, inside the caller's transaction.
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = HEAD) -> None:
    command.upgrade(alembic_config(connection), revision)
