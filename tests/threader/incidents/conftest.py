"""A database of its own for each incident store test, on each database the store supports:
SQLite (a temporary file), the machine's PostgreSQL and MariaDB (a new database, created and
dropped through psycopg and PyMySQL in autocommit).
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.postgres_run import fresh_database

MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306
DATABASES = ("sqlite", "postgresql", "mariadb")

# A new database on the machine's PostgreSQL (tests.support.postgres_run), under the name the
# incident tests import.
postgres_database = fresh_database


def mariadb_database() -> Generator[str, None, None]:
    name = f"lumen_t_{uuid.uuid4().hex[:12]}"
    # PyMySQL through SQLAlchemy (PyMySQL itself has no type hints), without a transaction.
    admin = sa.create_engine(
        f"mysql+pymysql://root@{MARIADB_HOST}:{MARIADB_PORT}/?charset=utf8mb4",
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        try:
            yield f"mysql+pymysql://root@{MARIADB_HOST}:{MARIADB_PORT}/{name}?charset=utf8mb4"
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.dispose()


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'incidents.db'}"
    elif request.param == "postgresql":
        yield from postgres_database()
    else:
        yield from mariadb_database()
