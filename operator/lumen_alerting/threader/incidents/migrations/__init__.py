"""The incident store's schema migrations (Alembic), run from code: no alembic.ini on disk.

``upgrade(connection)`` brings a database to the newest revision (``IncidentStore.open`` does
it on every start); ``versions/`` holds one file per revision.
"""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

# Its own name, so the store can share a database with another Alembic-managed application.
VERSION_TABLE = "lumen_incidents_schema"
HEAD = "head"

# Alembic says at INFO what it checks on every start; the store logs what it did instead.
logging.getLogger("alembic").setLevel(logging.WARNING)


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", "lumen_alerting.threader.incidents:migrations")
    # env.py runs the migrations on this connection, inside the caller's transaction.
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = HEAD) -> None:
    command.upgrade(alembic_config(connection), revision)
