"""``MemoryStore``: all state in this process. Tests and a single process that may lose
everything on a restart; the reference semantics every other store follows (``contract``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from .contract import (
    DEFAULT_LIMITS,
    IDEMPOTENCY_TTL,
    THREAD_TTL,
    Acceptance,
    Delivery,
    DeliveryKind,
    Disposition,
    OutboxEntry,
    OutboxLimits,
    OutboxSize,
    StoreStats,
    ThreadListing,
    ThreadRecord,
    alert_bytes,
)


class MemoryStore:
    """All state in this process; the reference semantics of every store."""

    kind = "memory"

    def __init__(
        self,
        *,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
        thread_ttl: float = THREAD_TTL,
        limits: OutboxLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = limits
        self._bytes = 0
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
        texts = [alert_bytes(item.alert) for item in acceptances]
        new = {
            item.delivery_id: len(text.encode())
            for item, text in zip(acceptances, texts, strict=True)
            if item.delivery_id not in self._seen
        }
        self._limits.check(len(self._outbox), self._bytes, len(new), sum(new.values()))
        results: list[Disposition] = []
        for item, text in zip(acceptances, texts, strict=True):
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
            size = len(text.encode())
            self._outbox[entry_id] = OutboxEntry(entry_id, delivery, size=size)
            self._bytes += size
            results.append("queued")
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
            entry_id for entry_id, (_owner, since) in self._taken.items() if now - since >= idle
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
        removed = self._outbox.pop(entry.entry_id, None)
        if removed is not None:
            self._bytes -= removed.size
        self._taken.pop(entry.entry_id, None)
        self._not_before.pop(entry.entry_id, None)
        self._sending.pop(entry.delivery.delivery_id, None)

    async def postpone(self, entry: OutboxEntry, delay: float) -> None:
        if entry.entry_id in self._outbox:
            self._outbox[entry.entry_id] = OutboxEntry(
                entry.entry_id, entry.delivery, entry.attempts + 1, entry.size
            )
            self._not_before[entry.entry_id] = self._clock() + delay
            self._taken.pop(entry.entry_id, None)

    async def parent(self, thread_key: str, generation: int) -> str | None:
        """The parent message of an occurrence, as the worker recorded it; None until posted."""
        record = self._threads.get(thread_key)
        return record.parents.get(generation) if record else None

    async def record_parent(self, thread_key: str, generation: int, message: str) -> None:
        record = self._threads.get(thread_key)
        if record is not None:
            record.parents[generation] = message

    async def channel_id(self, channel: str) -> str | None:
        return self._channels.get(channel)

    async def remember_channel(self, channel: str, channel_id: str) -> None:
        self._channels[channel] = channel_id

    async def mark_sending(self, delivery_id: str) -> bool:
        """Note that a message is about to go out; False if an earlier attempt already did so
        (that attempt may have reached Slack: look before sending again)."""
        first = delivery_id not in self._sending
        self._sending[delivery_id] = self._clock()
        return first

    async def forget_sending(self, delivery_id: str) -> None:
        """The attempt certainly did not reach Slack (refused, throttled): no need to look."""
        self._sending.pop(delivery_id, None)

    async def dead_letter(self, entry: OutboxEntry, reason: str) -> None:
        self._dead.append({"delivery": asdict(entry.delivery), "reason": reason})
        await self.complete(entry)

    # --- operations -----------------------------------------------------------------------------

    async def ping(self) -> None:
        return None

    async def outbox(self) -> OutboxSize:
        oldest = min((e.delivery.accepted_at for e in self._outbox.values()), default=None)
        return OutboxSize(len(self._outbox), self._bytes, oldest)

    async def stats(self) -> StoreStats:
        return {
            "store": self.kind,
            "threads": len(self._threads),
            "outbox": len(self._outbox),
            "dead_letters": len(self._dead),
        }

    async def threads(self) -> ThreadListing:
        return {key: asdict(record) for key, record in self._threads.items()}

    async def clear_threads(self) -> int:
        count = len(self._threads)
        self._threads.clear()
        return count

    async def close(self) -> None:
        return None

    def _expire(self, now: float) -> None:
        for key in [k for k, expiry in self._seen.items() if expiry <= now]:
            del self._seen[key]
        stale = [k for k, r in self._threads.items() if r.touched_at + self._thread_ttl <= now]
        for key in stale:
            del self._threads[key]
