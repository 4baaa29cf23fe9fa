"""IncidentStore: the incident store over SQLite, PostgreSQL or MySQL/MariaDB (SQLAlchemy 2,
schema by the Alembic migrations in ``migrations``).

The engine is synchronous and every call runs in a worker thread (``asyncio.to_thread``): one
well-known driver per database (pysqlite, psycopg 3, PyMySQL) instead of a second, async driver
for each, and the transactions are short. Reads are in ``queries``, writes in ``writes``; each
public method is one transaction.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from . import lifecycle, queries, writes
from .migrations import upgrade
from .records import (
    ActionOutcome,
    Incident,
    IncidentChange,
    IncidentDetail,
    IncidentFilter,
    IncidentPage,
    IncidentStoreUnavailable,
    ReceivedAlert,
    SortKey,
)

T = TypeVar("T")
# IncidentStore.list shadows the builtin inside the class body.
_Changes = list[IncidentChange]
_Incidents = list[Incident]

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "mariadb+pymysql": "mysql+pymysql",
}
_CONNECT_TIMEOUT = 10  # seconds; a database that does not answer is unavailable, not a hang
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE = "lumen_incidents_write"  # execution option: this transaction writes
_ATTEMPTS = 3  # a deadlock or serialisation failure is retried; the database chose a victim
_MIGRATION_LOCK = 0x6C756D656E  # PostgreSQL advisory lock key: one replica migrates at a time


def database_url(text: str) -> URL:
    """The SQLAlchemy URL of a store URL: PostgreSQL by psycopg 3, MySQL/MariaDB by PyMySQL."""
    try:
        url = sa.make_url(text)
    except sa.exc.ArgumentError as error:
        raise IncidentStoreUnavailable(f"not a database URL: {error}") from None
    url = url.set(drivername=_DRIVERS.get(url.drivername, url.drivername))
    if url.drivername == "mysql+pymysql" and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg", "mysql+pymysql"):
        shown = url.render_as_string(hide_password=True)
        raise IncidentStoreUnavailable(
            f"unsupported incident database {shown}: use sqlite:///PATH, postgresql://... "
            "or mysql://... (mariadb://...)"
        )
    return url


def _engine(url: URL) -> Engine:
    kind = url.get_backend_name()
    options: dict[str, Any] = {"pool_pre_ping": True}
    if kind == "postgresql":
        options["connect_args"] = {"connect_timeout": _CONNECT_TIMEOUT}
    elif kind == "mysql":
        options["connect_args"] = {"connect_timeout": _CONNECT_TIMEOUT}
        # No gap locks: concurrent record() calls lock the incident rows they change, no more.
        options["isolation_level"] = "READ COMMITTED"
    engine = sa.create_engine(url, **options)
    if kind == "sqlite":
        _sqlite_transactions(engine)
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    """SQLAlchemy's recipe for pysqlite transactions: pysqlite's own BEGIN off, ours issued on
    begin, IMMEDIATE for writes so that a write transaction holds the lock from its first read
    (its SELECT cannot go stale), WAL so that readers do not wait for it."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _reason(error: BaseException, url: URL) -> str:
    """The driver's first line, without the password should a driver ever echo it."""
    cause = getattr(error, "orig", None) or error
    text = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def _retryable(error: sa.exc.DBAPIError) -> bool:
    orig = error.orig
    if getattr(orig, "sqlstate", None) in ("40P01", "40001"):  # PostgreSQL deadlock, serialisation
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in (1213, 1205)  # MySQL deadlock, lock wait timeout


class IncidentStore:
    def __init__(
        self, engine: Engine, *, raw_retention: timedelta, scratch: str | None = None
    ) -> None:
        self._engine = engine
        self._scratch = scratch  # the temporary directory of an in-memory database
        self._shown = engine.url.render_as_string(hide_password=True)
        self.kind: str = engine.url.get_backend_name()
        # How long raw alerts of resolved incidents are kept: the threader calls
        # prune(now - raw_retention) now and then.
        self.raw_retention = raw_retention

    @classmethod
    def open(cls, url: str, *, raw_retention: timedelta = timedelta(days=30)) -> IncidentStore:
        """Connect and bring the schema to the newest migration (Alembic upgrade head)."""
        database = database_url(url)
        scratch = None
        if database.get_backend_name() == "sqlite" and database.database in (None, "", ":memory:"):
            # An in-memory database is one per connection, and every call runs on a pool
            # thread: a file in a private temporary directory behaves the same for every
            # connection and goes with the store.
            scratch = tempfile.mkdtemp(prefix="lumen-incidents-")
            database = database.set(database=f"{scratch}/incidents.db")
        engine = _engine(database)
        try:
            with engine.connect() as connection:
                _migrate(connection)
        except (sa.exc.DBAPIError, sa.exc.TimeoutError) as error:
            engine.dispose()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            shown = database.render_as_string(hide_password=True)
            raise IncidentStoreUnavailable(
                f"cannot open the incident database {shown}: {_reason(error, database)}"
            ) from None
        return cls(engine, raw_retention=raw_retention, scratch=scratch)

    def _transaction(
        self,
        work: Callable[[Connection], T],
        *,
        write: bool,
        after: Callable[[Connection], None] | None = None,
    ) -> T:
        """``work`` in one transaction (retried on a deadlock), then ``after`` outside it."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._engine.connect() as connection:
                    connection.execution_options(**{_WRITE: write})
                    try:
                        with connection.begin():
                            return work(connection)
                    finally:
                        if after is not None and not connection.invalidated:
                            after(connection)
                            connection.commit()
            except sa.exc.DBAPIError as error:
                if attempt < _ATTEMPTS and _retryable(error):
                    continue
                raise IncidentStoreUnavailable(
                    f"incident database {self._shown} failed: {_reason(error, self._engine.url)}"
                ) from None
            except sa.exc.TimeoutError as error:  # no pooled connection came free
                raise IncidentStoreUnavailable(
                    f"incident database {self._shown}: {error}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read(self, work: Callable[[Connection], T]) -> T:
        return await asyncio.to_thread(self._transaction, work, write=False)

    async def _write(self, work: Callable[[Connection], T]) -> T:
        return await asyncio.to_thread(self._transaction, work, write=True)

    async def record(self, alerts: Sequence[ReceivedAlert]) -> _Changes:
        if not alerts:
            return []
        return await asyncio.to_thread(
            self._transaction,
            lambda connection: writes.record_alerts(connection, alerts),
            write=True,
            after=writes.release_key_locks,
        )

    async def list(
        self,
        where: IncidentFilter,
        *,
        sort: SortKey = "-opened_at",
        limit: int = 50,
        offset: int = 0,
    ) -> IncidentPage:
        return await self._read(
            lambda connection: queries.list_incidents(connection, where, sort, limit, offset)
        )

    async def get(self, incident_id: int) -> IncidentDetail:
        return await self._read(lambda connection: queries.get_incident(connection, incident_id))

    async def find(self, key: str) -> Incident | None:
        return await self._read(lambda connection: queries.find_incident(connection, key))

    async def acknowledge(self, incident_id: int, actor: str, at: datetime) -> ActionOutcome:
        return await self._write(
            lambda connection: writes.act(
                connection,
                incident_id,
                actor,
                at,
                lambda incident: lifecycle.acknowledge(incident, actor, at),
            )
        )

    async def resolve(self, incident_id: int, actor: str, at: datetime) -> ActionOutcome:
        return await self._write(
            lambda connection: writes.act(
                connection,
                incident_id,
                actor,
                at,
                lambda incident: lifecycle.resolve(incident, actor, at),
            )
        )

    async def silence(
        self, incident_id: int, actor: str, at: datetime, until: datetime, silence_id: str
    ) -> ActionOutcome:
        return await self._write(
            lambda connection: writes.act(
                connection,
                incident_id,
                actor,
                at,
                lambda incident: lifecycle.silence(incident, actor, at, until, silence_id),
            )
        )

    async def end_silence(self, incident_id: int, actor: str, at: datetime) -> ActionOutcome:
        return await self._write(
            lambda connection: writes.act(
                connection,
                incident_id,
                actor,
                at,
                lambda incident: lifecycle.end_silence(incident, actor, at),
            )
        )

    async def expire_silences(self, at: datetime) -> _Incidents:
        """Silences whose time ran out: their incidents go back to acknowledged or triggered."""
        return await self._write(lambda connection: writes.expire_silences(connection, at))

    async def note_slack_message(self, key: str, channel: str, ts: str) -> bool:
        """Record the parent message of the newest incident with ``key``; False when there is
        no such incident (yet: another replica may not have recorded its alert)."""
        return await self._write(
            lambda connection: writes.note_slack_message(connection, key, channel, ts)
        )

    async def matchers_of(self, incident_id: int) -> dict[str, str]:
        return await self._read(lambda connection: queries.matchers_of(connection, incident_id))

    async def prune(self, before: datetime) -> int:
        return await self._write(lambda connection: writes.prune(connection, before))

    async def open_counts(self) -> dict[tuple[str, str], int]:
        return await self._read(queries.open_counts)

    async def close(self) -> None:
        await asyncio.to_thread(self._engine.dispose)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _migrate(connection: Connection) -> None:
    """Alembic upgrade head, one replica at a time: the others wait, then find nothing to do."""
    kind = connection.dialect.name
    if kind == "mysql":
        # MySQL commits DDL on its own: a session lock, not the transaction, keeps replicas apart.
        connection.exec_driver_sql("SELECT GET_LOCK('lumen_incidents_schema', 300)")
        try:
            upgrade(connection)
            connection.commit()
        finally:
            connection.exec_driver_sql("SELECT RELEASE_LOCK('lumen_incidents_schema')")
            connection.commit()
        return
    connection.execution_options(**{_WRITE: True})  # SQLite: BEGIN IMMEDIATE
    with connection.begin():
        if kind == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        upgrade(connection)
