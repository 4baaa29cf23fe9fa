"""The threader's whole store in PostgreSQL, shared by every replica (and beside the incident
tables in the same database).

- SQLAlchemy 2 Core on the async engine (psycopg 3). The schema is Alembic's
  (``postgresql_migrations``, version table ``lumen_threads_schema``), brought up to date at
  construction on a short-lived synchronous connection, under an advisory lock so that replicas
  starting together migrate one at a time.
- Every row carries ``scope`` (the threader's ``--key-prefix``): threaders of several policies
  share one database and never see each other's threads or outbox.
- ``accept`` is all or nothing per notification. Notifications arriving while a transaction is
  under way share the next one (group commit, as the SQLite store does: one lock, one commit,
  one fsync for many), each decided on its own. The transaction first locks the scope's row in
  ``threader_scopes``, which holds the outbox's entry count and bytes: accepts of one scope run
  one after the other, whichever replica they come through, so the bound is checked in O(1)
  and exactly, a notification past it is refused alone, and the thread decision
  (``MemoryStore._claim``, in Python over the locked thread rows) claims each occurrence once.
  Then one statement reads the seen keys and locks the threads, one writes everything (keys
  ``INSERT … ON CONFLICT``, an expired key overwritten as if new; threads; entries; count).
- The outbox is taken with ``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``:
  consumers never wait for each other nor get the same entry. A lease is (holder, leased_at);
  lease and due times are the database's clock, the one clock every replica shares.
- Old idempotency keys, threads and "sending" notes are deleted by the store itself in small
  batches, at most every ``expire_every`` seconds, from ``take`` (until then, reads treat them
  as gone, so expiry is exact whenever it runs). Dead letters keep the newest 10,000 per scope.
- Every database failure (refused connection, a restart mid-transaction, no answer within
  ``timeout``) is ``StoreUnavailable`` with one line and no password; pooled connections are
  checked before use, so the store recovers on its own once the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic.util import CommandError
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .contract import (
    DEFAULT_LIMITS,
    IDEMPOTENCY_TTL,
    THREAD_TTL,
    Acceptance,
    Delivery,
    DeliveryKind,
    Disposition,
    OutboxEntry,
    OutboxFull,
    OutboxLimits,
    OutboxSize,
    StoreStats,
    StoreUnavailable,
    ThreadListing,
    ThreadState,
    alert_bytes,
)
from .postgresql_migrations import upgrade


@dataclass(frozen=True)
class _Queued:
    """An alert a batch queues: its acceptance, its delivery's kind and generation, its JSON
    and that JSON's bytes."""

    acceptance: Acceptance
    kind: DeliveryKind
    generation: int
    text: str
    size: int


@dataclass
class _LockedThread:
    """A thread as the accept sees it under the scope's lock, and whether to write it back."""

    generation: int
    state: ThreadState
    channel: str
    touched_at: float
    changed: bool = False


@dataclass
class _Pending:
    """A notification waiting for the next batch, and where its outcome goes."""

    acceptances: list[Acceptance]
    texts: list[str]  # each alert's JSON
    sizes: list[int]  # and its bytes
    outcome: asyncio.Future[list[Disposition]]
    queued: list[_Queued] = field(default_factory=list)  # what the batch queues of it


_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg"}
_MIGRATION_LOCK = 0x6C756D656E5448  # advisory lock key ("lumenTH"): one replica migrates at once
DEAD_LETTERS_KEPT = 10_000
BATCH = 100  # notifications written in one transaction at most
EXPIRE_EVERY = 30.0  # seconds between two rounds of deleting expired rows
EXPIRY_BATCH = 500  # rows per DELETE: short transactions, short locks
EXPIRY_BATCHES = 20  # per table and round at most; what is left waits for the next round
# take waits by polling (and by an event for this process's own accepts), see take().
POLL_INTERVAL = 0.05

# The database's clock, as seconds since the epoch: leases and due times, shared by replicas.
_NOW = "CAST(extract(epoch FROM clock_timestamp()) AS double precision)"
_ENTRY = (
    "o.id, o.delivery_id, o.kind, o.thread_key, o.generation, o.channel, o.alert, o.bytes, "
    "o.accepted_at, o.attempts"
)

_LOCK_SCOPE = sa.text("SELECT entries, bytes FROM threader_scopes WHERE scope = :scope FOR UPDATE")
_ADD_SCOPE = sa.text(
    "INSERT INTO threader_scopes (scope) VALUES (:scope) ON CONFLICT (scope) DO NOTHING"
)
# Of a batch's delivery ids, those seen and still valid, as ("key", id); with them the rows of
# the batch's threads, locked, as ("thread", key, generation, state, channel, touched_at).
# FOR NO KEY UPDATE: clear_threads and the expiry wait for this accept (and it for them); a
# parent being recorded (a foreign key's KEY SHARE lock) does not.
_LOOK = sa.text(
    "WITH locked AS MATERIALIZED (SELECT thread_key, generation, state, channel, touched_at "
    "FROM threader_threads WHERE scope = :scope AND thread_key = ANY(CAST(:keys AS text[])) "
    "FOR NO KEY UPDATE) "
    "SELECT 'key', delivery_id, NULL, NULL, NULL, CAST(NULL AS double precision) "
    "FROM threader_idempotency WHERE scope = :scope "
    "AND delivery_id = ANY(CAST(:ids AS text[])) AND expires_at > :now "
    "UNION ALL SELECT 'thread', thread_key, generation, state, channel, touched_at FROM locked"
)
_DROP_THREADS = sa.text(
    "DELETE FROM threader_threads WHERE scope = :scope AND thread_key = ANY(CAST(:keys AS text[]))"
)
# What a batch accepted, in one statement: its idempotency keys (an expired one is overwritten),
# the threads it changed, the entries it queued and their count.
_WRITE = sa.text(
    "WITH claimed AS (INSERT INTO threader_idempotency (scope, delivery_id, expires_at) "
    "SELECT :scope, id, :expires FROM unnest(CAST(:claimed AS text[])) AS id "
    "ON CONFLICT (scope, delivery_id) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE threader_idempotency.expires_at <= :now), "
    "threads AS (INSERT INTO threader_threads "
    "(scope, thread_key, generation, state, channel, touched_at) "
    "SELECT :scope, * FROM unnest(CAST(:thread_keys AS text[]), "
    "CAST(:thread_generations AS integer[]), CAST(:thread_states AS text[]), "
    "CAST(:thread_channels AS text[]), CAST(:thread_touched AS double precision[])) "
    "ON CONFLICT (scope, thread_key) DO UPDATE SET generation = excluded.generation, "
    "state = excluded.state, channel = excluded.channel, touched_at = excluded.touched_at), "
    "queued AS (INSERT INTO threader_outbox (scope, delivery_id, kind, thread_key, generation, "
    "channel, alert, bytes, accepted_at) "
    "SELECT :scope, d, k, t, g, c, a, b, :now FROM unnest(CAST(:ids AS text[]), "
    "CAST(:kinds AS text[]), CAST(:keys AS text[]), CAST(:generations AS integer[]), "
    "CAST(:channels AS text[]), CAST(:alerts AS text[]), CAST(:sizes AS integer[])) "
    "WITH ORDINALITY AS n (d, k, t, g, c, a, b, i) ORDER BY i) "
    "UPDATE threader_scopes SET entries = entries + :entries, bytes = bytes + :bytes "
    "WHERE scope = :scope AND CAST(:entries AS integer) > 0"
)
_RELEASE_OWN = sa.text(
    "UPDATE threader_outbox SET holder = NULL, leased_at = NULL "
    "WHERE scope = :scope AND holder = :consumer"
)
_TAKE = sa.text(
    f"UPDATE threader_outbox AS o SET holder = :consumer, leased_at = {_NOW} "
    "FROM (SELECT id FROM threader_outbox WHERE scope = :scope AND holder IS NULL "
    f"AND due_at <= {_NOW} ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED) AS free "
    f"WHERE o.id = free.id RETURNING {_ENTRY}"
)
_CLAIM_STALE = sa.text(
    f"UPDATE threader_outbox AS o SET holder = :consumer, leased_at = {_NOW} "
    "FROM (SELECT id FROM threader_outbox WHERE scope = :scope AND holder IS NOT NULL "
    f"AND leased_at <= {_NOW} - :idle ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED) AS stale "
    f"WHERE o.id = stale.id RETURNING {_ENTRY}"
)
_KEEP = sa.text(
    f"UPDATE threader_outbox SET leased_at = {_NOW} WHERE scope = :scope "
    "AND holder = :consumer AND id = ANY(CAST(:ids AS bigint[]))"
)
# The entry, its "sending" note and its share of the count, in one statement. The scope's row
# is locked only when the entry was still there: completing twice counts once.
_COMPLETE = sa.text(
    "WITH gone AS (DELETE FROM threader_outbox WHERE scope = :scope AND id = :id "
    "RETURNING bytes), "
    "noted AS (DELETE FROM threader_sending WHERE scope = :scope AND delivery_id = :delivery_id) "
    "UPDATE threader_scopes SET entries = entries - (SELECT count(*) FROM gone), "
    "bytes = bytes - (SELECT coalesce(sum(bytes), 0) FROM gone) "
    "WHERE scope = :scope AND EXISTS (SELECT 1 FROM gone)"
)
_DEAD_LETTER = sa.text(
    "INSERT INTO threader_dead_letters (scope, delivery, reason, at) "
    "VALUES (:scope, :delivery, :reason, :at)"
)
_POSTPONE = sa.text(
    f"UPDATE threader_outbox SET attempts = :attempts, due_at = {_NOW} + :delay, "
    "holder = NULL, leased_at = NULL WHERE scope = :scope AND id = :id"
)
_PARENT = sa.text(
    "SELECT message FROM threader_parents "
    "WHERE scope = :scope AND thread_key = :key AND generation = :generation"
)
# Only while the thread exists: a cleared or expired thread's parent is not brought back.
_RECORD_PARENT = sa.text(
    "INSERT INTO threader_parents (scope, thread_key, generation, message) "
    "SELECT :scope, :key, :generation, :message WHERE EXISTS (SELECT 1 FROM threader_threads "
    "WHERE scope = :scope AND thread_key = :key) "
    "ON CONFLICT (scope, thread_key, generation) DO UPDATE SET message = excluded.message"
)
_CHANNEL_ID = sa.text(
    "SELECT channel_id FROM threader_channels WHERE scope = :scope AND channel = :channel"
)
_REMEMBER_CHANNEL = sa.text(
    "INSERT INTO threader_channels (scope, channel, channel_id) "
    "VALUES (:scope, :channel, :channel_id) "
    "ON CONFLICT (scope, channel) DO UPDATE SET channel_id = excluded.channel_id"
)
# xmax is 0 on a row this statement inserted, not on one it updated.
_MARK_SENDING = sa.text(
    "INSERT INTO threader_sending (scope, delivery_id, marked_at) "
    "VALUES (:scope, :delivery_id, :now) "
    "ON CONFLICT (scope, delivery_id) DO UPDATE SET marked_at = excluded.marked_at "
    "RETURNING xmax = 0"
)
_FORGET_SENDING = sa.text(
    "DELETE FROM threader_sending WHERE scope = :scope AND delivery_id = :delivery_id"
)
_OUTBOX_SIZE = sa.text(
    "SELECT s.entries, s.bytes, (SELECT o.accepted_at FROM threader_outbox AS o "
    "WHERE o.scope = s.scope ORDER BY o.id LIMIT 1) FROM threader_scopes AS s "
    "WHERE s.scope = :scope"
)
_STATS = sa.text(
    "SELECT (SELECT entries FROM threader_scopes WHERE scope = :scope), "
    "(SELECT count(*) FROM threader_threads WHERE scope = :scope AND touched_at > :expired), "
    "(SELECT count(*) FROM threader_dead_letters WHERE scope = :scope)"
)
_THREADS = sa.text(
    "SELECT thread_key, generation, state, channel, touched_at FROM threader_threads "
    "WHERE scope = :scope AND touched_at > :expired"
)
_PARENTS = sa.text(
    "SELECT p.thread_key, p.generation, p.message FROM threader_parents AS p "
    "JOIN threader_threads AS t USING (scope, thread_key) "
    "WHERE p.scope = :scope AND t.touched_at > :expired"
)
_CLEAR_THREADS = sa.text("DELETE FROM threader_threads WHERE scope = :scope")  # parents cascade
# Expiry, a batch at a time; the condition is repeated outside the batch so that a row made
# young again meanwhile (a concurrent accept) stays. SKIP LOCKED: rows an accept holds, or
# another replica's expiry is deleting, are left to the next round instead of waited for.
_EXPIRE = {
    "idempotency keys": sa.text(
        "DELETE FROM threader_idempotency WHERE scope = :scope AND expires_at <= :now "
        "AND delivery_id IN (SELECT delivery_id FROM threader_idempotency "
        "WHERE scope = :scope AND expires_at <= :now LIMIT :batch FOR UPDATE SKIP LOCKED)"
    ),
    "threads": sa.text(
        "DELETE FROM threader_threads WHERE scope = :scope AND touched_at <= :now - :thread_ttl "
        "AND thread_key IN (SELECT thread_key FROM threader_threads "
        "WHERE scope = :scope AND touched_at <= :now - :thread_ttl LIMIT :batch "
        "FOR UPDATE SKIP LOCKED)"
    ),
    # Notes of replies are never completed by their own id: they age out like Redis keys.
    "sending notes": sa.text(
        "DELETE FROM threader_sending WHERE scope = :scope AND marked_at <= :now - :sending_ttl "
        "AND delivery_id IN (SELECT delivery_id FROM threader_sending "
        "WHERE scope = :scope AND marked_at <= :now - :sending_ttl LIMIT :batch "
        "FOR UPDATE SKIP LOCKED)"
    ),
    "dead letters": sa.text(
        "DELETE FROM threader_dead_letters WHERE id IN (SELECT id FROM threader_dead_letters "
        "WHERE scope = :scope AND id <= (SELECT id FROM threader_dead_letters WHERE scope = :scope "
        "ORDER BY id DESC OFFSET :kept LIMIT 1) ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED)"
    ),
}


def store_url(text: str) -> URL:
    """The SQLAlchemy URL of a ``postgresql://``, ``postgres://`` or ``postgresql+psycopg://``
    URL (psycopg 3); ``StoreUnavailable`` with one line, without the password, otherwise."""
    try:
        url = sa.make_url(text)
    except (sa.exc.ArgumentError, ValueError):
        raise StoreUnavailable(
            "--store: not a PostgreSQL URL (postgresql://USER@HOST:PORT/DATABASE)"
        ) from None
    if url.drivername not in _DRIVERS:
        raise StoreUnavailable(
            f"--store: unsupported URL scheme {url.drivername}:// for the PostgreSQL store: "
            "use postgresql:// (or postgres://)"
        )
    return url.set(drivername="postgresql+psycopg")


class PostgreSQLStore:
    """ThreadStore and StoreAdmin in the PostgreSQL database at ``url``, under ``scope``."""

    kind = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        scope: str,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
        thread_ttl: float = THREAD_TTL,
        limits: OutboxLimits = DEFAULT_LIMITS,
        timeout: float = 5.0,
        expire_every: float = EXPIRE_EVERY,
    ) -> None:
        self._url = store_url(url)
        self._shown = self._url.render_as_string(hide_password=True)
        self._scope = scope
        self._idempotency_ttl = idempotency_ttl
        self._thread_ttl = thread_ttl
        self._limits = limits
        self._timeout = timeout
        self._expire_every = expire_every
        self._expired_at = -math.inf  # monotonic time of the last expiry round
        self._recovered: set[str] = set()  # consumers whose earlier leases were released
        self._changed = asyncio.Event()  # set by this process's accepts, to wake its takers
        self._pending: list[_Pending] = []  # notifications waiting for the next batch
        self._committer: asyncio.Task[None] | None = None
        connect_args = {"connect_timeout": max(2, math.ceil(timeout))}
        self._migrate(connect_args)
        self._engine: AsyncEngine = create_async_engine(
            self._url,
            pool_pre_ping=True,  # a connection from before a server restart is replaced
            pool_timeout=timeout,
            pool_size=8,
            max_overflow=8,
            connect_args=connect_args,
        )

    # --- plumbing -------------------------------------------------------------------------------

    def _migrate(self, connect_args: dict[str, Any]) -> None:
        """Alembic upgrade head, one replica at a time (the others wait for the advisory lock,
        then find nothing to do), and this scope's counter row."""
        engine = sa.create_engine(self._url, poolclass=sa.NullPool, connect_args=connect_args)
        try:
            with engine.connect() as connection, connection.begin():
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
                upgrade(connection)
                connection.execute(_ADD_SCOPE, {"scope": self._scope})
        except (sa.exc.SQLAlchemyError, CommandError, OSError) as error:
            raise StoreUnavailable(
                f"--store: cannot open {self._shown}: {self._reason(error)}"
            ) from None
        finally:
            engine.dispose()

    def _reason(self, error: BaseException) -> str:
        """The driver's first line, without the password should a driver ever echo it."""
        cause = getattr(error, "orig", None) or error
        text = (str(cause).strip().splitlines() or [type(cause).__name__])[0].strip()
        if self._url.password:
            text = text.replace(str(self._url.password), "***")
        return text or type(cause).__name__

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Database failures, and no answer within the timeout, as ``StoreUnavailable``."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except TimeoutError:
            raise StoreUnavailable(
                f"postgresql {self._shown}: no answer within {self._timeout:g} s"
            ) from None
        except (sa.exc.SQLAlchemyError, OSError) as error:
            raise StoreUnavailable(f"postgresql {self._shown}: {self._reason(error)}") from None

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed when the block ends, rolled back when it raises."""
        async with self._guard(), self._engine.begin() as connection:
            yield connection

    async def _one(self, statement: sa.TextClause, **parameters: Any) -> Any:
        """The first column of the first row (None without one), in a transaction of its own."""
        async with self._transaction() as connection:
            row = (
                await connection.execute(statement, {"scope": self._scope, **parameters})
            ).first()
        return None if row is None else row[0]

    async def _write(self, statement: sa.TextClause, **parameters: Any) -> int:
        async with self._transaction() as connection:
            result = await connection.execute(statement, {"scope": self._scope, **parameters})
        return result.rowcount

    # --- the request side -----------------------------------------------------------------------

    async def accept(self, acceptances: Sequence[Acceptance]) -> list[Disposition]:
        """Accept one notification. Notifications that arrive while a batch is being written
        are written together in the next transaction (one lock of the scope, one commit and
        one fsync for many; ``_write_batch``); each is decided on its own, so one refused
        (outbox full) leaves the others accepted."""
        if not acceptances:
            return []
        texts = [alert_bytes(item.alert) for item in acceptances]
        pending = _Pending(
            list(acceptances),
            texts,
            [len(text.encode()) for text in texts],
            asyncio.get_running_loop().create_future(),
        )
        self._pending.append(pending)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending())
        return await pending.outcome

    async def _commit_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            outcomes: list[list[Disposition] | BaseException]
            try:
                outcomes = await self._write_batch(batch)
            except Exception as error:  # nothing of the batch was committed (or known)
                outcomes = [error] * len(batch)
            except BaseException:  # cancelled (shutdown): the batch's outcome is unknown
                for pending in batch + self._pending:
                    if not pending.outcome.done():
                        pending.outcome.set_exception(StoreUnavailable("shutting down"))
                self._pending = []
                raise
            for pending, outcome in zip(batch, outcomes, strict=True):
                if pending.outcome.done():  # the request went away; its alerts may be in
                    continue
                if isinstance(outcome, BaseException):
                    pending.outcome.set_exception(outcome)
                else:
                    pending.outcome.set_result(outcome)
                    if "queued" in outcome:
                        self._changed.set()

    async def _write_batch(self, batch: list[_Pending]) -> list[list[Disposition] | BaseException]:
        """One transaction for the batch: lock the scope's row (and with it every accept of the
        scope, whichever replica it comes through), read which keys are seen and the threads,
        decide every notification in order here (the bound, the keys, ``_claim``), then write
        all that was accepted in one statement."""
        now = time.time()
        scope = self._scope
        items = [item for pending in batch for item in pending.acceptances]
        async with self._transaction() as tx:
            counts = (await tx.execute(_LOCK_SCOPE, {"scope": scope})).first()
            if counts is None:  # the row went away (a hand-made cleanup): make it again
                await tx.execute(_ADD_SCOPE, {"scope": scope})
                counts = (await tx.execute(_LOCK_SCOPE, {"scope": scope})).one()
            entries, size = int(counts[0]), int(counts[1])
            looked = await tx.execute(
                _LOOK,
                {
                    "scope": scope,
                    "ids": list(dict.fromkeys(item.delivery_id for item in items)),
                    "keys": list(dict.fromkeys(item.thread_key for item in items)),
                    "now": now,
                },
            )
            seen: set[str] = set()
            threads: dict[str, _LockedThread | None] = {item.thread_key: None for item in items}
            expired = []
            for what, key, generation, state, channel, touched_at in looked:
                if what == "key":
                    seen.add(key)
                elif touched_at + self._thread_ttl <= now:
                    expired.append(key)  # gone, as MemoryStore's expiry would have it
                else:
                    threads[key] = _LockedThread(generation, state, channel, touched_at)
            outcomes: list[list[Disposition] | BaseException] = []
            claimed: list[str] = []
            queued: list[_Queued] = []
            for pending in batch:
                try:
                    results = self._decide(pending, seen, claimed, threads, entries, size, now)
                except OutboxFull as full:
                    outcomes.append(full)
                    continue
                outcomes.append(results)
                for index, result in enumerate(results):
                    if result == "queued":
                        entries, size = entries + 1, size + pending.sizes[index]
                queued += pending.queued
            changed = [(key, row) for key, row in threads.items() if row and row.changed]
            if claimed:
                if expired:  # parents and all: a thread made again starts afresh
                    await tx.execute(_DROP_THREADS, {"scope": scope, "keys": expired})
                await tx.execute(
                    _WRITE,
                    {
                        "scope": scope,
                        "now": now,
                        "expires": now + self._idempotency_ttl,
                        "claimed": claimed,
                        "thread_keys": [key for key, _row in changed],
                        "thread_generations": [row.generation for _key, row in changed],
                        "thread_states": [row.state for _key, row in changed],
                        "thread_channels": [row.channel for _key, row in changed],
                        "thread_touched": [row.touched_at for _key, row in changed],
                        "ids": [q.acceptance.delivery_id for q in queued],
                        "kinds": [q.kind for q in queued],
                        "keys": [q.acceptance.thread_key for q in queued],
                        "generations": [q.generation for q in queued],
                        "channels": [q.acceptance.channel for q in queued],
                        "alerts": [q.text for q in queued],
                        "sizes": [q.size for q in queued],
                        "entries": len(queued),
                        "bytes": sum(q.size for q in queued),
                    },
                )
        return outcomes

    def _decide(
        self,
        pending: _Pending,
        seen: set[str],
        claimed: list[str],
        threads: dict[str, _LockedThread | None],
        entries: int,
        size: int,
        now: float,
    ) -> list[Disposition]:
        """One notification of a batch, as MemoryStore.accept decides it: ``seen`` holds the
        keys already accepted (before or earlier in the batch), ``threads`` the threads as the
        batch left them so far, ``entries`` and ``size`` the outbox so far. Raises
        ``OutboxFull`` before changing anything; else adds to ``seen``, ``claimed``,
        ``threads`` and ``pending.queued``."""
        items = pending.acceptances
        firsts: list[int] = []  # the acceptances that are new: first of their id, unseen
        fresh: set[str] = set()
        for index, item in enumerate(items):
            if item.delivery_id not in seen and item.delivery_id not in fresh:
                fresh.add(item.delivery_id)
                firsts.append(index)
        self._limits.check(entries, size, len(firsts), sum(pending.sizes[i] for i in firsts))
        results: list[Disposition] = ["duplicate"] * len(items)
        for index in firsts:
            item = items[index]
            seen.add(item.delivery_id)
            claimed.append(item.delivery_id)
            kind, generation = _claim(threads, item, now)
            if kind is None:
                results[index] = "skipped"
                continue
            results[index] = "queued"
            pending.queued.append(
                _Queued(item, kind, generation, pending.texts[index], pending.sizes[index])
            )
        return results

    # --- the delivery side ----------------------------------------------------------------------

    async def take(self, consumer: str, limit: int, wait: float) -> list[OutboxEntry]:
        """Polls: another replica's accept is seen within POLL_INTERVAL (50 ms), this process's
        at once (an event). LISTEN/NOTIFY would need a connection of its own outside
        SQLAlchemy's pool, held open and re-established after every server restart, and a
        NOTIFY in each accept's transaction (a lock on the notification queue at commit, which
        serialises every committing accept of the whole database); a 50 ms poll of an indexed,
        usually empty range is cheap next to that, and cannot miss a wake-up."""
        deadline = time.monotonic() + wait
        if time.monotonic() - self._expired_at >= self._expire_every:
            self._expired_at = time.monotonic()
            await self.expire()
        while True:
            self._changed.clear()
            taken = await self._take_ready(consumer, limit)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(POLL_INTERVAL, remaining))

    async def _take_ready(self, consumer: str, limit: int) -> list[OutboxEntry]:
        async with self._transaction() as tx:
            if consumer not in self._recovered:
                # After a restart, what this consumer had taken and not finished is free again
                # (and taken now, first in line, by id).
                await tx.execute(_RELEASE_OWN, {"scope": self._scope, "consumer": consumer})
            rows = await tx.execute(
                _TAKE, {"scope": self._scope, "consumer": consumer, "limit": limit}
            )
            entries = _entries(rows)
        self._recovered.add(consumer)
        return entries

    async def claim_stale(self, consumer: str, idle: float, limit: int) -> list[OutboxEntry]:
        async with self._transaction() as tx:
            rows = await tx.execute(
                _CLAIM_STALE,
                {"scope": self._scope, "consumer": consumer, "idle": idle, "limit": limit},
            )
            return _entries(rows)

    async def keep(self, consumer: str, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self._write(_KEEP, consumer=consumer, ids=[int(i) for i in entry_ids])

    async def complete(self, entry: OutboxEntry) -> None:
        await self._write(_COMPLETE, id=int(entry.entry_id), delivery_id=entry.delivery.delivery_id)

    async def postpone(self, entry: OutboxEntry, delay: float) -> None:
        await self._write(
            _POSTPONE, id=int(entry.entry_id), attempts=entry.attempts + 1, delay=delay
        )

    async def parent(self, thread_key: str, generation: int) -> str | None:
        message: str | None = await self._one(_PARENT, key=thread_key, generation=generation)
        return message

    async def record_parent(self, thread_key: str, generation: int, message: str) -> None:
        parameters = {"scope": self._scope, "key": thread_key, "generation": generation}
        async with self._guard():
            # The thread deleted (cleared, expired) between the check and the insert: the
            # foreign key refuses the parent, as the check would have.
            with contextlib.suppress(sa.exc.IntegrityError):
                async with self._engine.begin() as tx:
                    await tx.execute(_RECORD_PARENT, {**parameters, "message": message})

    async def channel_id(self, channel: str) -> str | None:
        channel_id: str | None = await self._one(_CHANNEL_ID, channel=channel)
        return channel_id

    async def remember_channel(self, channel: str, channel_id: str) -> None:
        await self._write(_REMEMBER_CHANNEL, channel=channel, channel_id=channel_id)

    async def mark_sending(self, delivery_id: str) -> bool:
        """Note that a message is about to go out; False if an earlier attempt already did so."""
        return bool(await self._one(_MARK_SENDING, delivery_id=delivery_id, now=time.time()))

    async def forget_sending(self, delivery_id: str) -> None:
        await self._write(_FORGET_SENDING, delivery_id=delivery_id)

    async def dead_letter(self, entry: OutboxEntry, reason: str) -> None:
        async with self._transaction() as tx:
            await tx.execute(
                _DEAD_LETTER,
                {
                    "scope": self._scope,
                    "delivery": entry.delivery.to_json(),
                    "reason": reason,
                    "at": time.time(),
                },
            )
            await tx.execute(
                _COMPLETE,
                {
                    "scope": self._scope,
                    "id": int(entry.entry_id),
                    "delivery_id": entry.delivery.delivery_id,
                },
            )

    # --- operations -----------------------------------------------------------------------------

    async def expire(self) -> dict[str, int]:
        """Delete expired idempotency keys, threads (parents with them), "sending" notes and
        the dead letters past the newest 10,000: a batch per transaction, at most
        EXPIRY_BATCHES per kind. ``take`` calls it every ``expire_every`` seconds; what it
        deleted, by kind."""
        parameters = {
            "scope": self._scope,
            "now": time.time(),
            "thread_ttl": self._thread_ttl,
            "sending_ttl": self._idempotency_ttl,
            "kept": DEAD_LETTERS_KEPT,
            "batch": EXPIRY_BATCH,
        }
        deleted: dict[str, int] = {}
        for what, statement in _EXPIRE.items():
            deleted[what] = 0
            for _ in range(EXPIRY_BATCHES):
                async with self._transaction() as tx:
                    count = (await tx.execute(statement, parameters)).rowcount
                deleted[what] += count
                if count < EXPIRY_BATCH:
                    break
        return deleted

    async def ping(self) -> None:
        await self._one(sa.text("SELECT 1"))

    async def persistence_info(self) -> dict[str, str]:
        """The server's ``fsync`` and ``synchronous_commit``, for the durability check."""
        async with self._transaction() as tx:
            rows = await tx.execute(_PERSISTENCE_SETTINGS)
        return {str(name): str(setting) for name, setting in rows}

    async def outbox(self) -> OutboxSize:
        async with self._transaction() as tx:
            row = (await tx.execute(_OUTBOX_SIZE, {"scope": self._scope})).first()
        if row is None:
            return OutboxSize(0, 0, None)
        return OutboxSize(int(row[0]), int(row[1]), row[2])

    async def stats(self) -> StoreStats:
        expired = time.time() - self._thread_ttl
        async with self._transaction() as tx:
            entries, threads, dead = (
                await tx.execute(_STATS, {"scope": self._scope, "expired": expired})
            ).one()
        return {
            "store": self.kind,
            "threads": int(threads),
            "outbox": int(entries or 0),
            "dead_letters": int(dead),
        }

    async def threads(self) -> ThreadListing:
        parameters = {"scope": self._scope, "expired": time.time() - self._thread_ttl}
        async with self._transaction() as tx:
            found: ThreadListing = {
                key: {
                    "generation": generation,
                    "state": state,
                    "channel": channel,
                    "parents": {},
                    "touched_at": touched_at,
                }
                for key, generation, state, channel, touched_at in await tx.execute(
                    _THREADS, parameters
                )
            }
            for key, generation, message in await tx.execute(_PARENTS, parameters):
                if key in found:
                    found[key]["parents"][generation] = message
        return found

    async def clear_threads(self) -> int:
        return await self._write(_CLEAR_THREADS)

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._engine.dispose()


_PERSISTENCE_SETTINGS = sa.text(
    "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')"
)


def _claim(
    threads: dict[str, _LockedThread | None], item: Acceptance, now: float
) -> tuple[DeliveryKind | None, int]:
    """The thread decision: MemoryStore._claim, line for line, over the locked rows (kept
    parents of earlier generations stay in their table)."""
    record = threads[item.thread_key]
    if item.status == "firing":
        if record is None or record.state == "resolving":
            generation = record.generation + 1 if record else 1
            threads[item.thread_key] = _LockedThread(generation, "open", item.channel, now, True)
            return "parent", generation
        record.touched_at, record.changed = now, True
        return ("repeat" if item.reply_on_repeat else None), record.generation
    if record is None:
        # Resolved without a thread we know of: say so in a message of its own.
        threads[item.thread_key] = _LockedThread(1, "resolving", item.channel, now, True)
        return "resolved_alone", 1
    if record.state == "resolving":
        return None, record.generation
    record.state, record.touched_at, record.changed = "resolving", now, True
    return "resolve", record.generation


def _entries(rows: sa.CursorResult[Any]) -> list[OutboxEntry]:
    """Outbox rows as entries, oldest first (RETURNING keeps no order)."""
    entries = []
    for row in sorted(rows, key=lambda row: int(row[0])):
        values: tuple[Any, ...] = tuple(row)
        (entry_id, delivery_id, kind, thread_key, generation, channel, alert, size, accepted_at,
         attempts) = values  # fmt: skip
        delivery = Delivery(
            delivery_id, kind, thread_key, generation, channel, json.loads(alert), accepted_at
        )
        entries.append(OutboxEntry(str(entry_id), delivery, attempts, size))
    return entries
