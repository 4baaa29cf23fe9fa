"""The threader's store in one SQLite database, for a single replica.

- Every call runs in ONE dedicated thread that owns the connection: the event loop never waits
  for the disk, so ``/health`` answers however large the outbox is.
- Each call is one transaction: ``accept`` writes the idempotency keys, the thread claims and
  the outbox entries of a notification together or not at all. Notifications that arrive while
  a commit is under way share the next one (group commit: one fsync for many), each in a
  savepoint of its own.
- WAL mode with ``synchronous=FULL``: a commit is on disk (the WAL is fsynced) before ``accept``
  returns and the threader answers 2xx, so an acknowledged alert survives a power cut, not only
  a crash of the process (NORMAL would only fsync at checkpoints). One small fsync per
  notification, off the event loop, is cheap next to Slack's pace.
- ``locking_mode=EXCLUSIVE``: the database belongs to one process; a second threader on the same
  file is refused ("database is locked") instead of sharing it. It also keeps WAL's index in
  memory (no ``-shm`` file to map).
- Taken entries are leases. Nothing else can hold one when the store opens, so opening releases
  them; while running, a lease that is not renewed (``keep``) runs out and ``claim_stale`` gives
  the entry to any consumer, this one included: an entry whose completion could not be written
  (a full disk) is delivered again once the disk has room, without a restart. The worker's
  "sending" note makes that second attempt look in Slack before posting.
- A failed write (disk full) rolls the transaction back and raises ``StoreUnavailable``.

Plain ``sqlite3`` rather than SQLAlchemy: one file, one owner thread, a handful of statements on
the acknowledgement path where group commit and savepoints must be under our control, and a
schema versioned by ``user_version``. The incident store, which also runs on PostgreSQL, is
where SQLAlchemy and Alembic belong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

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
    alert_bytes,
)

T = TypeVar("T")

SCHEMA_VERSION = 1
SQLITE_HEADER = b"SQLite format 3\x00"
DEAD_LETTERS_KEPT = 10_000

SCHEMA = """
CREATE TABLE seen (
  delivery_id TEXT PRIMARY KEY,
  expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX seen_expiry ON seen (expires_at);
CREATE TABLE threads (
  thread_key TEXT PRIMARY KEY,
  generation INTEGER NOT NULL,
  state TEXT NOT NULL,
  channel TEXT NOT NULL,
  touched_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX threads_touched ON threads (touched_at);
CREATE TABLE parents (
  thread_key TEXT NOT NULL REFERENCES threads (thread_key) ON DELETE CASCADE,
  generation INTEGER NOT NULL,
  message TEXT NOT NULL,
  PRIMARY KEY (thread_key, generation)
) WITHOUT ROWID;
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  delivery_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  thread_key TEXT NOT NULL,
  generation INTEGER NOT NULL,
  channel TEXT NOT NULL,
  alert TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  accepted_at REAL NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  not_before REAL NOT NULL DEFAULT 0,
  consumer TEXT,
  leased_at REAL
);
CREATE INDEX outbox_free ON outbox (id) WHERE consumer IS NULL;
CREATE INDEX outbox_leased ON outbox (leased_at) WHERE consumer IS NOT NULL;
CREATE TABLE sending (
  delivery_id TEXT PRIMARY KEY,
  marked_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX sending_marked ON sending (marked_at);
CREATE TABLE channels (
  channel TEXT PRIMARY KEY,
  channel_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  delivery TEXT NOT NULL,
  reason TEXT NOT NULL,
  at REAL NOT NULL
);
CREATE TABLE probe (id INTEGER PRIMARY KEY, at REAL NOT NULL);
"""


@dataclass
class _Pending:
    """A notification waiting to be committed, and where its outcome goes."""

    acceptances: list[Acceptance]
    texts: list[str]  # each alert's JSON
    outcome: asyncio.Future[list[Disposition]]


_OUTBOX_COLUMNS = (
    "id, delivery_id, kind, thread_key, generation, channel, alert, bytes, accepted_at, attempts"
)


class SQLiteStore:
    """ThreadStore in the SQLite database at ``path`` (created if missing)."""

    kind = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
        thread_ttl: float = THREAD_TTL,
        limits: OutboxLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = os.path.abspath(path)
        self._idempotency_ttl = idempotency_ttl
        self._thread_ttl = thread_ttl
        self._limits = limits
        self._clock = clock
        # Owned by the store's thread, like the connection: the outbox's size, kept exact because
        # no other process writes this database (exclusive lock).
        self._entries = 0
        self._bytes = 0
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lumen-sqlite")
        self._changed = asyncio.Event()
        self._pending: list[_Pending] = []  # notifications waiting for the next commit
        self._committer: asyncio.Task[None] | None = None
        try:
            self._thread.submit(self._open).result()
        except BaseException:
            self._thread.shutdown(wait=True)
            raise

    # --- plumbing -------------------------------------------------------------------------------

    def _open(self) -> None:
        """Open (and create or migrate) the database, in the store's thread."""
        try:
            with open(self._path, "rb") as existing:
                header = existing.read(len(SQLITE_HEADER))
        except FileNotFoundError:
            header = b""
        except OSError as error:
            raise StoreUnavailable(f"--store: cannot read {self._path}: {error.strerror}") from None
        if header and header != SQLITE_HEADER:
            raise StoreUnavailable(
                f"--store: {self._path} is not a SQLite database (a JSON file of the old file "
                "store?); move it away, the new store starts empty"
            )
        try:
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            db = sqlite3.connect(self._path, isolation_level=None, timeout=5.0)
        except (OSError, sqlite3.Error) as error:
            raise StoreUnavailable(f"--store: cannot open {self._path}: {error}") from None
        try:
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                raise StoreUnavailable(f"--store: {self._path}: the file system has no WAL mode")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            self._db = db
            self._migrate(db)
            with self._transaction() as tx:
                # No other process can hold a lease (exclusive lock): what the last run had taken
                # is free again.
                tx.execute("UPDATE outbox SET consumer = NULL, leased_at = NULL")
                self._entries, self._bytes = tx.execute(
                    "SELECT count(*), coalesce(sum(bytes), 0) FROM outbox"
                ).fetchone()
        except sqlite3.Error as error:
            db.close()
            self._db = None
            if "locked" in str(error):
                message = "database is locked: another threader uses it (one replica only)"
            else:
                message = str(error)
            raise StoreUnavailable(f"--store: {self._path}: {message}") from None
        except BaseException:
            db.close()
            self._db = None
            raise

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"--store: {self._path} has schema {version}, newer than this threader's "
                f"{SCHEMA_VERSION}"
            )
        if version == 0:
            with self._transaction() as tx:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        assert db is not None, "the store is closed"
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._guarded, work, args)

    def _guarded(self, work: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return work(*args)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"sqlite {self._path}: {error}") from error

    # --- the request side -----------------------------------------------------------------------

    async def accept(self, acceptances: Sequence[Acceptance]) -> list[Disposition]:
        """Accept one notification. Notifications arriving while a commit is on its way are
        committed together (one fsync for all), each in a savepoint of its own, so one that is
        refused (outbox full) leaves the others accepted."""
        texts = [alert_bytes(item.alert) for item in acceptances]  # encoded off the store thread
        pending = _Pending(list(acceptances), texts, asyncio.get_running_loop().create_future())
        self._pending.append(pending)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending())
        return await pending.outcome

    async def _commit_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            outcomes: list[list[Disposition] | BaseException]
            try:
                outcomes = await self._run(self._accept, batch)
            except Exception as error:  # nothing of the batch was committed
                outcomes = [error] * len(batch)
            except BaseException:  # cancelled (shutdown): the batch's outcome is unknown
                for pending in batch:
                    if not pending.outcome.done():
                        pending.outcome.set_exception(StoreUnavailable("shutting down"))
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

    def _accept(self, batch: list[_Pending]) -> list[list[Disposition] | BaseException]:
        now = self._clock()
        outcomes: list[list[Disposition] | BaseException] = []
        added = added_bytes = 0
        with self._transaction() as tx:
            self._expire(tx, now)
            for pending in batch:
                tx.execute("SAVEPOINT notification")
                try:
                    results, entries, size = self._accept_one(
                        tx, pending, now, self._entries + added, self._bytes + added_bytes
                    )
                except OutboxFull as full:
                    tx.execute("ROLLBACK TO notification")
                    tx.execute("RELEASE notification")
                    outcomes.append(full)
                    continue
                tx.execute("RELEASE notification")
                outcomes.append(results)
                added, added_bytes = added + entries, added_bytes + size
        self._entries += added
        self._bytes += added_bytes
        return outcomes

    def _accept_one(
        self, tx: sqlite3.Connection, pending: _Pending, now: float, entries: int, size: int
    ) -> tuple[list[Disposition], int, int]:
        """One notification: its dispositions, and the entries and bytes it added."""
        items = list(zip(pending.acceptances, pending.texts, strict=True))
        new: dict[str, int] = {}
        for item, text in items:
            seen = tx.execute("SELECT 1 FROM seen WHERE delivery_id = ?", (item.delivery_id,))
            if seen.fetchone() is None:
                new[item.delivery_id] = len(text.encode())
        self._limits.check(entries, size, len(new), sum(new.values()))
        results: list[Disposition] = []
        added = added_bytes = 0
        for item, text in items:
            inserted = tx.execute(
                "INSERT INTO seen VALUES (?, ?) ON CONFLICT DO NOTHING",
                (item.delivery_id, now + self._idempotency_ttl),
            )
            if inserted.rowcount == 0:
                results.append("duplicate")
                continue
            kind, generation = self._claim(tx, item, now)
            if kind is None:
                results.append("skipped")
                continue
            encoded = len(text.encode())
            tx.execute(
                "INSERT INTO outbox (delivery_id, kind, thread_key, generation, channel, "
                "alert, bytes, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (item.delivery_id, kind, item.thread_key, generation, item.channel, text,
                 encoded, now),
            )  # fmt: skip
            added, added_bytes = added + 1, added_bytes + encoded
            results.append("queued")
        return results, added, added_bytes

    def _claim(
        self, tx: sqlite3.Connection, item: Acceptance, now: float
    ) -> tuple[DeliveryKind | None, int]:
        """The thread decision: MemoryStore._claim in SQL."""
        row = tx.execute(
            "SELECT generation, state FROM threads WHERE thread_key = ?", (item.thread_key,)
        ).fetchone()
        if item.status == "firing":
            if row is None or row[1] == "resolving":
                generation = row[0] + 1 if row else 1
                tx.execute(
                    "INSERT INTO threads VALUES (?, ?, 'open', ?, ?) ON CONFLICT (thread_key) DO "
                    "UPDATE SET generation = excluded.generation, state = 'open', "
                    "channel = excluded.channel, touched_at = excluded.touched_at",
                    (item.thread_key, generation, item.channel, now),
                )
                return "parent", generation
            tx.execute(
                "UPDATE threads SET touched_at = ? WHERE thread_key = ?", (now, item.thread_key)
            )
            return ("repeat" if item.reply_on_repeat else None), row[0]
        if row is None:
            # Resolved without a thread we know of: say so in a message of its own.
            tx.execute(
                "INSERT INTO threads VALUES (?, 1, 'resolving', ?, ?)",
                (item.thread_key, item.channel, now),
            )
            return "resolved_alone", 1
        if row[1] == "resolving":
            return None, row[0]
        tx.execute(
            "UPDATE threads SET state = 'resolving', touched_at = ? WHERE thread_key = ?",
            (now, item.thread_key),
        )
        return "resolve", row[0]

    def _expire(self, tx: sqlite3.Connection, now: float) -> None:
        tx.execute("DELETE FROM seen WHERE expires_at <= ?", (now,))
        tx.execute("DELETE FROM threads WHERE touched_at <= ?", (now - self._thread_ttl,))
        # Notes of replies are never completed by their own id: they age out like Redis keys.
        tx.execute("DELETE FROM sending WHERE marked_at <= ?", (now - self._idempotency_ttl,))

    # --- the delivery side ----------------------------------------------------------------------

    async def take(self, consumer: str, limit: int, wait: float) -> list[OutboxEntry]:
        deadline = time.monotonic() + wait
        while True:
            self._changed.clear()
            taken = await self._run(self._lease, consumer, limit, None)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            # Woken by an acceptance; postponed entries falling due are found by the next look.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(0.1, remaining))

    async def claim_stale(self, consumer: str, idle: float, limit: int) -> list[OutboxEntry]:
        return await self._run(self._lease, consumer, limit, idle)

    def _lease(self, consumer: str, limit: int, idle: float | None) -> list[OutboxEntry]:
        """Free entries that are due (``idle`` None), or entries whose lease is older than
        ``idle`` seconds, whoever holds them; leased to ``consumer``."""
        now = time.monotonic()
        if idle is None:
            query = "WHERE consumer IS NULL AND not_before <= ? ORDER BY id LIMIT ?"
            bound = self._clock()
        else:
            query = "WHERE consumer IS NOT NULL AND leased_at <= ? ORDER BY id LIMIT ?"
            bound = now - idle
        with self._transaction() as tx:
            rows = tx.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox {query}", (bound, limit))
            entries = [_entry(row) for row in rows.fetchall()]
            if entries:
                tx.execute(
                    "UPDATE outbox SET consumer = ?, leased_at = ? "
                    "WHERE id IN (SELECT value FROM json_each(?))",
                    (consumer, now, json.dumps([int(e.entry_id) for e in entries])),
                )
        return entries

    async def keep(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Renew the leases this consumer still holds: another must not claim them."""
        if entry_ids:
            await self._run(self._keep, consumer, [int(i) for i in entry_ids])

    def _keep(self, consumer: str, entry_ids: list[int]) -> None:
        with self._transaction() as tx:
            tx.execute(
                "UPDATE outbox SET leased_at = ? WHERE consumer = ? AND id IN "
                "(SELECT value FROM json_each(?))",
                (time.monotonic(), consumer, json.dumps(entry_ids)),
            )

    async def complete(self, entry: OutboxEntry) -> None:
        await self._run(self._complete, entry, None)

    def _complete(self, entry: OutboxEntry, dead_reason: str | None) -> None:
        with self._transaction() as tx:
            if dead_reason is not None:
                tx.execute(
                    "INSERT INTO dead_letters (delivery, reason, at) VALUES (?, ?, ?)",
                    (entry.delivery.to_json(), dead_reason, self._clock()),
                )
                tx.execute(
                    "DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - ?",
                    (DEAD_LETTERS_KEPT,),
                )
            removed = tx.execute(
                "DELETE FROM outbox WHERE id = ? RETURNING bytes", (int(entry.entry_id),)
            ).fetchone()
            tx.execute("DELETE FROM sending WHERE delivery_id = ?", (entry.delivery.delivery_id,))
        if removed is not None:
            self._entries -= 1
            self._bytes -= removed[0]

    async def postpone(self, entry: OutboxEntry, delay: float) -> None:
        await self._run(self._postpone, entry, delay)

    def _postpone(self, entry: OutboxEntry, delay: float) -> None:
        with self._transaction() as tx:
            tx.execute(
                "UPDATE outbox SET attempts = ?, not_before = ?, consumer = NULL, leased_at = NULL "
                "WHERE id = ?",
                (entry.attempts + 1, self._clock() + delay, int(entry.entry_id)),
            )

    async def parent(self, thread_key: str, generation: int) -> str | None:
        return await self._run(self._read_one, "SELECT message FROM parents WHERE thread_key = ? "
                               "AND generation = ?", (thread_key, generation))  # fmt: skip

    async def record_parent(self, thread_key: str, generation: int, message: str) -> None:
        # Only while the thread exists (a cleared thread's parent is not brought back).
        await self._run(
            self._write,
            "INSERT OR REPLACE INTO parents SELECT ?, ?, ? "
            "WHERE EXISTS (SELECT 1 FROM threads WHERE thread_key = ?)",
            (thread_key, generation, message, thread_key),
        )

    async def channel_id(self, channel: str) -> str | None:
        return await self._run(
            self._read_one, "SELECT channel_id FROM channels WHERE channel = ?", (channel,)
        )

    async def remember_channel(self, channel: str, channel_id: str) -> None:
        await self._run(
            self._write, "INSERT OR REPLACE INTO channels VALUES (?, ?)", (channel, channel_id)
        )

    async def mark_sending(self, delivery_id: str) -> bool:
        """Note that a message is about to go out; False if an earlier attempt already did so."""
        return await self._run(self._mark_sending, delivery_id)

    def _mark_sending(self, delivery_id: str) -> bool:
        with self._transaction() as tx:
            updated = tx.execute(
                "UPDATE sending SET marked_at = ? WHERE delivery_id = ?",
                (self._clock(), delivery_id),
            )
            if updated.rowcount:
                return False
            tx.execute("INSERT INTO sending VALUES (?, ?)", (delivery_id, self._clock()))
            return True

    async def forget_sending(self, delivery_id: str) -> None:
        await self._run(self._write, "DELETE FROM sending WHERE delivery_id = ?", (delivery_id,))

    async def dead_letter(self, entry: OutboxEntry, reason: str) -> None:
        await self._run(self._complete, entry, reason)

    def _read_one(self, query: str, parameters: tuple[Any, ...]) -> Any:
        assert self._db is not None, "the store is closed"
        row = self._db.execute(query, parameters).fetchone()
        return row[0] if row else None

    def _write(self, statement: str, parameters: tuple[Any, ...]) -> None:
        with self._transaction() as tx:
            tx.execute(statement, parameters)

    # --- operations -----------------------------------------------------------------------------

    async def ping(self) -> None:
        """A small write, so that readiness fails while the disk is full."""
        await self._run(self._write, "INSERT OR REPLACE INTO probe VALUES (1, ?)", (self._clock(),))

    async def outbox(self) -> OutboxSize:
        return await self._run(self._outbox_size)

    def _outbox_size(self) -> OutboxSize:
        # Entry ids grow with acceptance and are kept across postponements: the smallest id is
        # the oldest acceptance.
        oldest = self._read_one("SELECT accepted_at FROM outbox ORDER BY id LIMIT 1", ())
        return OutboxSize(self._entries, self._bytes, oldest)

    async def stats(self) -> StoreStats:
        threads, dead = await self._run(self._counts)
        return {
            "store": self.kind,
            "threads": threads,
            "outbox": self._entries,
            "dead_letters": dead,
        }

    def _counts(self) -> tuple[int, int]:
        assert self._db is not None, "the store is closed"
        threads = self._db.execute("SELECT count(*) FROM threads").fetchone()[0]
        dead = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        return threads, dead

    async def threads(self) -> ThreadListing:
        return await self._run(self._threads)

    def _threads(self) -> dict[str, dict[str, Any]]:
        assert self._db is not None, "the store is closed"
        found = {
            key: {
                "generation": generation,
                "state": state,
                "channel": channel,
                "parents": {},
                "touched_at": touched_at,
            }
            for key, generation, state, channel, touched_at in self._db.execute(
                "SELECT thread_key, generation, state, channel, touched_at FROM threads"
            )
        }
        for key, generation, message in self._db.execute("SELECT * FROM parents"):
            found[key]["parents"][generation] = message
        return found

    async def clear_threads(self) -> int:
        return await self._run(self._clear_threads)

    def _clear_threads(self) -> int:
        with self._transaction() as tx:
            return tx.execute("DELETE FROM threads").rowcount  # parents go with them

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        if self._db is not None:
            with contextlib.suppress(StoreUnavailable):
                await self._run(self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        assert self._db is not None
        self._db.close()
        self._db = None


def _entry(row: tuple[Any, ...]) -> OutboxEntry:
    (
        entry_id,
        delivery_id,
        kind,
        thread_key,
        generation,
        channel,
        alert,
        size,
        accepted,
        attempts,
    ) = row
    delivery = Delivery(
        delivery_id, kind, thread_key, generation, channel, json.loads(alert), accepted
    )
    return OutboxEntry(str(entry_id), delivery, attempts, size)
