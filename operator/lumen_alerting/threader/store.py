"""Where the threader keeps what must survive it: which alerts it has accepted, which Slack thread
belongs to which alert, and the outbox of messages still to send.

Every store gives the same guarantees, so the request handler and the delivery worker never
know which one they talk to:

- ``accept`` is atomic per alert: the idempotency key, the thread claim and the outbox entry
  are written together or not at all. The same alert of the same notification is accepted once,
  however many replicas receive it, and exactly one acceptance of a new alert occurrence claims
  the thread, so exactly one parent message is ever queued for it.
- The outbox is durable: an entry stays until ``complete``; entries taken by a worker that died
  come back (``claim_stale``).
- Keys expire: idempotency keys after ``idempotency_ttl``, threads ``thread_ttl`` after their
  last activity.

``MemoryStore`` is the reference implementation (tests, single process); ``FileStore`` adds an
atomically written file (one replica); ``RedisStore`` (``redis_store``) is for several replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

# parent: the thread's first message. repeat: "still firing" reply. resolve: resolved reply and
# parent update. resolved_alone: a resolution whose firing this threader never saw (one message).
DeliveryKind = Literal["parent", "repeat", "resolve", "resolved_alone"]
Disposition = Literal["queued", "duplicate", "skipped"]

# Alertmanager retries a failed notification for about a group_interval and an HA pair sends
# each notification twice at once: an hour covers both. It is also shorter than the usual
# repeat_interval (4 h), so a repeat of a firing alert is seen as a repeat, not a duplicate.
IDEMPOTENCY_TTL = 3600.0
THREAD_TTL = 30 * 24 * 3600.0


class StoreUnavailable(Exception):
    """The store cannot be reached or written: nothing was accepted (answer 503)."""


@dataclass(frozen=True)
class Acceptance:
    """One alert of one notification, as the request handler hands it to the store."""

    delivery_id: str  # idempotency key: (groupKey, fingerprint, status, startsAt, endsAt)
    thread_key: str
    status: Literal["firing", "resolved"]
    channel: str
    alert: dict[str, Any]  # the alert as received, for rendering the message later
    reply_on_repeat: bool = True


@dataclass(frozen=True)
class Delivery:
    """An outbox entry: one Slack message (or message pair) still to send."""

    delivery_id: str
    kind: DeliveryKind
    thread_key: str
    generation: int  # which occurrence of the thread key (a re-fire after resolution is +1)
    channel: str
    alert: dict[str, Any]
    accepted_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Delivery:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class OutboxEntry:
    """A delivery as taken from the outbox, with the id ``complete`` needs."""

    entry_id: str
    delivery: Delivery
    attempts: int = 0


@dataclass
class ThreadRecord:
    """One thread key: its current occurrence and the Slack message of each occurrence."""

    generation: int
    state: Literal["open", "resolving"]
    channel: str
    parents: dict[int, str] = field(default_factory=dict)  # generation -> parent message
    touched_at: float = 0.0


class ThreadStore(Protocol):
    """What the request handler and the delivery worker need from a store."""

    kind: str

    async def accept(self, acceptances: Sequence[Acceptance]) -> list[Disposition]: ...

    async def take(self, consumer: str, limit: int, wait: float) -> list[OutboxEntry]: ...

    async def claim_stale(self, consumer: str, idle: float, limit: int) -> list[OutboxEntry]: ...

    async def keep(self, consumer: str, entry_ids: Sequence[str]) -> None: ...

    async def complete(self, entry: OutboxEntry) -> None: ...

    async def postpone(self, entry: OutboxEntry, delay: float) -> None: ...

    async def parent(self, thread_key: str, generation: int) -> str | None: ...

    async def record_parent(self, thread_key: str, generation: int, message: str) -> None: ...

    async def channel_id(self, channel: str) -> str | None: ...

    async def remember_channel(self, channel: str, channel_id: str) -> None: ...

    async def mark_sending(self, delivery_id: str) -> bool: ...

    async def forget_sending(self, delivery_id: str) -> None: ...

    async def dead_letter(self, entry: OutboxEntry, reason: str) -> None: ...

    async def ping(self) -> None: ...

    async def stats(self) -> dict[str, Any]: ...

    async def threads(self) -> dict[str, dict[str, Any]]: ...

    async def clear_threads(self) -> int: ...

    async def close(self) -> None: ...


class MemoryStore:
    """All state in this process; the reference semantics of every store."""

    kind = "memory"

    def __init__(
        self,
        *,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
        thread_ttl: float = THREAD_TTL,
        clock: Any = time.time,
    ) -> None:
        self._idempotency_ttl = idempotency_ttl
        self._thread_ttl = thread_ttl
        self._clock = clock
        self._seen: dict[str, float] = {}  # delivery id -> expiry
        self._threads: dict[str, ThreadRecord] = {}
        self._outbox: dict[str, OutboxEntry] = {}  # entry id -> entry (insertion order)
        self._not_before: dict[str, float] = {}
        self._taken: dict[str, tuple[str, float]] = {}  # entry id -> (consumer, taken at)
        self._sending: dict[str, float] = {}
        self._dead: list[dict[str, Any]] = []
        self._channels: dict[str, str] = {}  # "#name" -> Slack channel id
        self._sequence = 0
        self._changed = asyncio.Event()

    # --- the request side -----------------------------------------------------------------------

    async def accept(self, acceptances: Sequence[Acceptance]) -> list[Disposition]:
        now = self._clock()
        self._expire(now)
        results: list[Disposition] = []
        for item in acceptances:
            if item.delivery_id in self._seen:
                results.append("duplicate")
                continue
            self._seen[item.delivery_id] = now + self._idempotency_ttl
            kind, generation = self._claim(item, now)
            if kind is None:
                results.append("skipped")
                continue
            self._sequence += 1
            entry_id = f"{int(now * 1000)}-{self._sequence}"
            delivery = Delivery(
                item.delivery_id, kind, item.thread_key, generation, item.channel, item.alert, now
            )
            self._outbox[entry_id] = OutboxEntry(entry_id, delivery)
            results.append("queued")
        await self._persist()
        self._changed.set()
        return results

    def _claim(self, item: Acceptance, now: float) -> tuple[DeliveryKind | None, int]:
        """The thread decision; the same logic runs as a Lua script in Redis."""
        record = self._threads.get(item.thread_key)
        if item.status == "firing":
            if record is None or record.state == "resolving":
                generation = record.generation + 1 if record else 1
                parents = record.parents if record else {}
                self._threads[item.thread_key] = ThreadRecord(
                    generation, "open", item.channel, parents, now
                )
                return "parent", generation
            record.touched_at = now
            return ("repeat" if item.reply_on_repeat else None), record.generation
        if record is None:
            # Resolved without a thread we know of: say so in a message of its own.
            self._threads[item.thread_key] = ThreadRecord(1, "resolving", item.channel, {}, now)
            return "resolved_alone", 1
        if record.state == "resolving":
            return None, record.generation
        record.state, record.touched_at = "resolving", now
        return "resolve", record.generation

    # --- the delivery side ----------------------------------------------------------------------

    async def take(self, consumer: str, limit: int, wait: float) -> list[OutboxEntry]:
        deadline = time.monotonic() + wait
        while True:
            taken = self._take_ready(consumer, limit)
            if taken or time.monotonic() >= deadline:
                return taken
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(0.05, wait))

    def _take_ready(self, consumer: str, limit: int) -> list[OutboxEntry]:
        now = self._clock()
        taken = []
        for entry_id, entry in self._outbox.items():
            if entry_id in self._taken or self._not_before.get(entry_id, 0) > now:
                continue
            self._taken[entry_id] = (consumer, time.monotonic())
            taken.append(entry)
            if len(taken) >= limit:
                break
        return taken

    async def claim_stale(self, consumer: str, idle: float, limit: int) -> list[OutboxEntry]:
        now = time.monotonic()
        stale = [
            entry_id
            for entry_id, (owner, since) in self._taken.items()
            if owner != consumer and now - since >= idle
        ][:limit]
        for entry_id in stale:
            self._taken[entry_id] = (consumer, now)
        return [self._outbox[entry_id] for entry_id in stale]

    async def keep(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Entries this consumer still holds are not stale: another must not claim them."""
        now = time.monotonic()
        for entry_id in entry_ids:
            if self._taken.get(entry_id, (None,))[0] == consumer:
                self._taken[entry_id] = (consumer, now)

    async def complete(self, entry: OutboxEntry) -> None:
        self._outbox.pop(entry.entry_id, None)
        self._taken.pop(entry.entry_id, None)
        self._not_before.pop(entry.entry_id, None)
        self._sending.pop(entry.delivery.delivery_id, None)
        await self._persist()

    async def postpone(self, entry: OutboxEntry, delay: float) -> None:
        if entry.entry_id in self._outbox:
            self._outbox[entry.entry_id] = OutboxEntry(
                entry.entry_id, entry.delivery, entry.attempts + 1
            )
            self._not_before[entry.entry_id] = self._clock() + delay
            self._taken.pop(entry.entry_id, None)
            await self._persist()

    async def parent(self, thread_key: str, generation: int) -> str | None:
        """The parent message of an occurrence, as the worker recorded it; None until posted."""
        record = self._threads.get(thread_key)
        return record.parents.get(generation) if record else None

    async def record_parent(self, thread_key: str, generation: int, message: str) -> None:
        record = self._threads.get(thread_key)
        if record is not None:
            record.parents[generation] = message
            await self._persist()

    async def channel_id(self, channel: str) -> str | None:
        return self._channels.get(channel)

    async def remember_channel(self, channel: str, channel_id: str) -> None:
        if self._channels.get(channel) != channel_id:
            self._channels[channel] = channel_id
            await self._persist()

    async def mark_sending(self, delivery_id: str) -> bool:
        """Note that a message is about to go out; False if an earlier attempt already did so
        (that attempt may have reached Slack: look before sending again)."""
        first = delivery_id not in self._sending
        self._sending[delivery_id] = self._clock()
        await self._persist()
        return first

    async def forget_sending(self, delivery_id: str) -> None:
        """The attempt certainly did not reach Slack (refused, throttled): no need to look."""
        if self._sending.pop(delivery_id, None) is not None:
            await self._persist()

    async def dead_letter(self, entry: OutboxEntry, reason: str) -> None:
        self._dead.append({"delivery": asdict(entry.delivery), "reason": reason})
        await self.complete(entry)

    # --- operations -----------------------------------------------------------------------------

    async def ping(self) -> None:
        return None

    async def stats(self) -> dict[str, Any]:
        return {
            "store": self.kind,
            "threads": len(self._threads),
            "outbox": len(self._outbox),
            "dead_letters": len(self._dead),
        }

    async def threads(self) -> dict[str, dict[str, Any]]:
        return {key: asdict(record) for key, record in self._threads.items()}

    async def clear_threads(self) -> int:
        count = len(self._threads)
        self._threads.clear()
        await self._persist()
        return count

    async def close(self) -> None:
        return None

    def _expire(self, now: float) -> None:
        for key in [k for k, expiry in self._seen.items() if expiry <= now]:
            del self._seen[key]
        stale = [k for k, r in self._threads.items() if r.touched_at + self._thread_ttl <= now]
        for key in stale:
            del self._threads[key]

    async def _persist(self) -> None:
        """Nothing to persist in memory; FileStore writes its file here."""

    # FileStore's serialisation of the whole state.
    def _snapshot(self) -> dict[str, Any]:
        return {
            "seen": self._seen,
            "threads": {k: asdict(r) for k, r in self._threads.items()},
            "outbox": [
                {"id": e.entry_id, "attempts": e.attempts, "delivery": asdict(e.delivery)}
                for e in self._outbox.values()
            ],
            "not_before": self._not_before,
            "sending": self._sending,
            "dead": self._dead,
            "channels": self._channels,
            "sequence": self._sequence,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self._seen = dict(state.get("seen", {}))
        self._threads = {
            key: ThreadRecord(
                generation=r["generation"],
                state=r["state"],
                channel=r["channel"],
                parents={int(g): ts for g, ts in r["parents"].items()},
                touched_at=r["touched_at"],
            )
            for key, r in state.get("threads", {}).items()
        }
        self._outbox = {
            e["id"]: OutboxEntry(e["id"], Delivery(**e["delivery"]), e["attempts"])
            for e in state.get("outbox", [])
        }
        self._not_before = dict(state.get("not_before", {}))
        self._sending = dict(state.get("sending", {}))
        self._dead = list(state.get("dead", []))
        self._channels = dict(state.get("channels", {}))
        self._sequence = int(state.get("sequence", 0))


class FileStore(MemoryStore):
    """MemoryStore whose state is written to one file, atomically (write, fsync, rename, fsync
    of the directory) before any call returns. One replica only: nothing locks the file."""

    kind = "file"

    def __init__(self, path: str, **options: Any) -> None:
        super().__init__(**options)
        self._path = os.path.abspath(path)
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        if os.path.exists(self._path):
            with open(self._path, encoding="utf-8") as handle:
                self._restore(json.load(handle))

    async def accept(self, acceptances: Sequence[Acceptance]) -> list[Disposition]:
        # A failed write must leave nothing accepted: Alertmanager retries after the 503.
        before = json.loads(json.dumps(self._snapshot()))
        try:
            return await super().accept(acceptances)
        except StoreUnavailable:
            self._restore(before)
            raise

    async def _persist(self) -> None:
        try:
            self._write(json.dumps(self._snapshot(), separators=(",", ":")))
        except OSError as error:
            raise StoreUnavailable(f"cannot write {self._path}: {error}") from error

    def _write(self, text: str) -> None:
        directory = os.path.dirname(self._path)
        descriptor, temporary = tempfile.mkstemp(prefix=".threads-", dir=directory)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self._path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
