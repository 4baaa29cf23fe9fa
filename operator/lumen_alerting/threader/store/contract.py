"""Where the threader keeps what must survive it: which alerts it has accepted, which Slack thread
belongs to which alert, and the outbox of messages still to send.

Every store gives the same guarantees, so the request handler and the delivery worker never
know which one they talk to:

- ``accept`` is atomic per alert: the idempotency key, the thread claim and the outbox entry
  are written together or not at all. The same alert of the same notification is accepted once,
  however many replicas receive it, and exactly one acceptance of a new alert occurrence claims
  the thread, so exactly one parent message is ever queued for it.
- The outbox is durable: an entry stays until ``complete``. A taken entry is leased: entries
  whose lease ran out (their worker died, or could not record the delivery because the store
  failed) come back through ``claim_stale``, to any consumer, the same one included.
- The outbox is bounded (``OutboxLimits``): a notification whose new alerts (those not already
  accepted) would take it past the bound raises ``OutboxFull`` and nothing of it is accepted. An
  empty outbox accepts any notification, so no notification is refused forever.
- Keys expire: idempotency keys after ``idempotency_ttl``, threads ``thread_ttl`` after their
  last activity.

The request handler and the worker see a store as a ``ThreadStore``; ``/stats`` and ``/cache``
see it as a ``StoreAdmin``. ``MemoryStore`` (``store.memory``) is the reference implementation;
``SQLiteStore`` (``store.sqlite``) and ``RedisStore`` (``store.redis``) follow it. Every method
of both protocols raises ``StoreUnavailable`` when the store cannot be reached or written.

Pure declarations: importing this module imports neither ``sqlite3`` nor ``redis``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NotRequired, Protocol, TypedDict

# parent: the thread's first message. repeat: "still firing" reply. resolve: resolved reply and
# parent update. resolved_alone: a resolution whose firing this threader never saw (one message).
DeliveryKind = Literal["parent", "repeat", "resolve", "resolved_alone"]
Disposition = Literal["queued", "duplicate", "skipped"]
ThreadState = Literal["open", "resolving"]  # resolving: the resolution is queued or sent

# Alertmanager retries a failed notification for about a group_interval and an HA pair sends
# each notification twice at once: an hour covers both. It is also shorter than the usual
# repeat_interval (4 h), so a repeat of a firing alert is seen as a repeat, not a duplicate.
IDEMPOTENCY_TTL = 3600.0
THREAD_TTL = 30 * 24 * 3600.0


class StoreUnavailable(Exception):
    """The store cannot be reached or written: nothing was accepted (answer 503)."""


class OutboxFull(StoreUnavailable):
    """The notification would take the outbox past its bound: nothing was accepted (503)."""


class ReplicaAckTimeout(StoreUnavailable):
    """Not enough replicas have the accept: none confirmed the write in time (``WAIT``), or the
    master has fewer replicas in sync than required and nothing was written. Were the master to
    die now, the alerts would be gone. Answer 503: Alertmanager sends again, and the retry (a
    duplicate if the first was written) waits for the replicas again before its 2xx."""


# Replicas that must confirm an accept before the threader answers 2xx: 0 is off, "auto" is 1
# while the master reports a connected replica and 0 while it has none.
ReplicaAcks = int | Literal["auto"]


class InfoRefused(Exception):
    """Redis answered INFO with an error (an ACL without +info, a renamed command): the store
    works, but ``durability`` cannot verify its persistence settings."""


@dataclass(frozen=True)
class OutboxLimits:
    """The outbox's bound. Bytes are those of the queued alerts' JSON."""

    max_entries: int = 10_000
    max_bytes: int = 64 * 1024 * 1024

    def check(self, entries: int, size: int, new_entries: int, new_bytes: int) -> None:
        """Raise ``OutboxFull`` if adding the new entries would pass the bound."""
        if entries == 0 or new_entries == 0:
            return  # an empty outbox takes anything; duplicates take no room
        if entries + new_entries > self.max_entries or size + new_bytes > self.max_bytes:
            raise OutboxFull(
                f"outbox full: {entries} entries ({size} bytes) queued, {new_entries} more "
                f"({new_bytes} bytes) would pass --max-outbox-entries {self.max_entries} or "
                f"--max-outbox-bytes {self.max_bytes}"
            )


DEFAULT_LIMITS = OutboxLimits()


@dataclass(frozen=True)
class OutboxSize:
    """What the outbox holds, for the gauges: entries, their bytes, the oldest acceptance."""

    entries: int
    bytes: int
    oldest_accepted_at: float | None


def alert_bytes(alert: dict[str, Any]) -> str:
    """The alert as stored; its UTF-8 length is what the outbox's byte bound counts."""
    return json.dumps(alert, separators=(",", ":"))


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
    size: int = 0  # bytes of the alert's JSON, as counted against --max-outbox-bytes


@dataclass
class ThreadRecord:
    """One thread key: its current occurrence and the Slack message of each occurrence."""

    generation: int
    state: ThreadState
    channel: str
    parents: dict[int, str] = field(default_factory=dict)  # generation -> parent message
    touched_at: float = 0.0


class StoreStats(TypedDict):
    """What ``/stats`` shows of the store (with the threader's own fields added)."""

    store: str  # the store's kind
    outbox: int  # entries queued, delayed ones included
    dead_letters: int
    # Not counted by Redis: it would take a SCAN of every key under the prefix.
    threads: NotRequired[int]


# Thread key -> the thread as JSON, for ``GET /cache``. Memory and SQLite give ThreadRecord's
# fields; Redis gives its hash as it is (strings), which is what an admin debugging it wants.
ThreadListing = dict[str, dict[str, Any]]


class ThreadStore(Protocol):
    """What the request handler and the delivery worker need from a store.

    Every method raises ``StoreUnavailable`` when the store cannot be reached or written; what
    else a method raises is said below. Entries are leased: between ``take`` (or
    ``claim_stale``) and ``complete``, ``postpone`` or ``dead_letter`` an entry belongs to one
    consumer until its lease runs out.
    """

    # "memory", "sqlite", "redis", "redis-sentinel", "redis-cluster" or "postgresql": for
    # /health, /stats and the log.
    kind: str

    async def accept(self, acceptances: Sequence[Acceptance]) -> list[Disposition]:
        """Accept one notification's alerts, all or nothing; their dispositions, in order.

        "queued": an outbox entry was written (a new thread claims it atomically, so one parent
        per occurrence); "duplicate": this delivery id was accepted before; "skipped": nothing
        to send (a repeat without replies, a second resolution). Raises ``OutboxFull`` when the
        new alerts would pass the bound; nothing is accepted then, nor on ``StoreUnavailable``.
        """
        ...

    async def take(self, consumer: str, limit: int, wait: float) -> list[OutboxEntry]:
        """Up to ``limit`` due entries nobody holds, now leased to ``consumer``; waits up to
        ``wait`` seconds for one to arrive, then ``[]``. After a restart a consumer first gets
        back what it had taken under the same name (Redis)."""
        ...

    async def claim_stale(self, consumer: str, idle: float, limit: int) -> list[OutboxEntry]:
        """Up to ``limit`` entries whose lease was not renewed for ``idle`` seconds, whoever held
        them (this consumer included), now leased to ``consumer``: a dead worker's entries, or
        ones whose completion could not be written."""
        ...

    async def keep(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Renew ``consumer``'s leases on ``entry_ids``, entries it took and still works on, so
        that no other consumer claims them meanwhile."""
        ...

    async def complete(self, entry: OutboxEntry) -> None:
        """Remove a delivered entry from the outbox (and its ``mark_sending`` note); its bytes
        leave the bound. Completing an entry already gone changes nothing."""
        ...

    async def postpone(self, entry: OutboxEntry, delay: float) -> None:
        """Release the lease and make the entry due again after ``delay`` seconds, with one more
        attempt counted. An entry completed meanwhile is not brought back."""
        ...

    async def parent(self, thread_key: str, generation: int) -> str | None:
        """The parent message recorded for this occurrence of the thread (an encoded
        ``slack.MessageRef``), or None until it is posted (replies wait for it)."""
        ...

    async def record_parent(self, thread_key: str, generation: int, message: str) -> None:
        """Record the posted parent message of an occurrence, for its replies and the update on
        resolution; it expires with the thread."""
        ...

    async def channel_id(self, channel: str) -> str | None:
        """The Slack id remembered for a ``#name`` channel, or None if never learned."""
        ...

    async def remember_channel(self, channel: str, channel_id: str) -> None:
        """Remember a ``#name`` channel's Slack id (history lookups need the id)."""
        ...

    async def mark_sending(self, delivery_id: str) -> bool:
        """Note that a message is about to go out. False if an earlier attempt already noted it:
        that one may have reached Slack, so look before posting again."""
        ...

    async def forget_sending(self, delivery_id: str) -> None:
        """Drop the note: the attempt certainly did not reach Slack (refused, throttled), so the
        next one need not look."""
        ...

    async def dead_letter(self, entry: OutboxEntry, reason: str) -> None:
        """Keep the entry's delivery with ``reason`` (Slack's error) among the dead letters, and
        complete it: it is not retried."""
        ...

    async def ping(self) -> None:
        """Return if the store answers (SQLite: can be written, so a full disk is not ready);
        raise ``StoreUnavailable`` otherwise."""
        ...

    async def outbox(self) -> OutboxSize:
        """The outbox's size and its oldest acceptance, for the gauges."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release the connection; the store is not used after."""
        ...


class StoreAdmin(Protocol):
    """What ``/stats`` and the admin's ``/cache`` need from a store. Apart from the request and
    delivery paths so that those cannot clear threads, and a double of them needs none of this.
    Every method raises ``StoreUnavailable`` when the store cannot be reached or written."""

    async def stats(self) -> StoreStats:
        """Counts of the outbox, the dead letters and (not Redis) the threads."""
        ...

    async def threads(self) -> ThreadListing:
        """Every thread the store knows, by thread key."""
        ...

    async def clear_threads(self) -> int:
        """Forget every thread (new alerts open new threads); how many were forgotten. Queued
        entries stay in the outbox."""
        ...
