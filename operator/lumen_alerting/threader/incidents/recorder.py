"""Alerts into the incident store, beside the threads, without slowing the webhook down.

The webhook answers 2xx once the thread store's outbox holds the notification: that is what
Alertmanager's retries depend on. The incident database is a second, slower write (a SQL
transaction per batch, maybe over the network), so the request hands the alerts to
``IncidentRecorder`` and returns; the recorder writes them in batches in the background and
retries while the database is down, holding up to ``max_pending`` alerts. While alerts keep
arriving it gives way to the webhook: after each batch it pauses ``BUSY_PAUSE`` times as long as
the batch took (the writes share the process, and Python's lock, with the request handling), and
catches up once the burst is over or half its room is used. What it still holds
when the process is killed is lost to the incident store (never to Slack: the outbox has it); on
SIGTERM it gets ``drain_timeout`` seconds to finish.

The parent message a delivery worker posts is noted through the same queue, after the alerts
submitted before it, so it finds its incident. On another replica the incident may not be
written yet: a note that finds none is tried again for ``NOTE_PATIENCE`` seconds.

``IncidentUpkeep`` does the periodic work: silences that ran out, raw alerts past their
retention, the open-incidents gauge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..metrics import ThreaderMetrics
from .records import Incident, IncidentChange, IncidentStoreUnavailable, ReceivedAlert
from .store import IncidentStore

log = logging.getLogger("lumen.threader.incidents")

BATCH_SIZE = 500  # alerts per transaction: large enough to keep up, small enough to retry
RETRY_START = 0.5
RETRY_CAP = 30.0
DRAIN_TIMEOUT = 10.0
OVERFLOW_LOG_INTERVAL = 60.0
# While alerts arrive, the recorder writes at most 1/(1 + BUSY_PAUSE) of the time: the webhook's
# acknowledgements/s drop by about that much at worst (bench/incidents.py).
BUSY_PAUSE = 9.0
BUSY_WINDOW = 1.0  # seconds since the last submit during which the webhook counts as busy
NOTE_PATIENCE = 600.0  # seconds a parent message waits for its incident (another replica's)
NOTE_RETRY = 5.0

IncidentsChanged = Callable[[Sequence[Incident]], Awaitable[None]]


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ParentPosted:
    """The Slack parent message of the newest incident with ``key``."""

    key: str
    channel: str
    ts: str
    noted_at: float  # time.monotonic() of the first attempt


Pending = ReceivedAlert | ParentPosted


class IncidentRecorder:
    """A bounded queue of received alerts (and posted parents), written to the store in
    batches, in order."""

    def __init__(
        self,
        store: IncidentStore,
        metrics: ThreaderMetrics,
        *,
        max_pending: int = 100_000,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._max_pending = max_pending
        self._batch_size = batch_size
        self._pending: deque[Pending] = deque()
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._dropped = 0
        self._dropped_logged = 0.0
        self._last_submit = float("-inf")

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, alerts: Sequence[ReceivedAlert]) -> bool:
        """Queue the alerts; False (and counted) when that would pass ``max_pending``: the
        database has been down long enough that keeping more would only cost memory."""
        if not alerts:
            return True
        if len(self._pending) + len(alerts) > self._max_pending:
            self._dropped += len(alerts)
            self._metrics.incidents_dropped.inc(len(alerts))
            if time.monotonic() - self._dropped_logged >= OVERFLOW_LOG_INTERVAL:
                self._dropped_logged = time.monotonic()
                log.error(
                    "The incident store is behind by %d alerts; %d alerts were not recorded "
                    "as incidents (their Slack messages are not affected).",
                    len(self._pending),
                    self._dropped,
                )
            return False
        self._pending.extend(alerts)
        self._last_submit = time.monotonic()
        self._idle.clear()
        self._arrived.set()
        return True

    def parent_posted(self, key: str, channel: str, ts: str) -> None:
        """Note the incident's parent message once the alerts queued before it are written."""
        self._pending.append(ParentPosted(key, channel, ts, time.monotonic()))
        self._idle.clear()
        self._arrived.set()

    async def wait_idle(self) -> None:
        """Return once everything submitted so far is written (tests, shutdown)."""
        await self._idle.wait()

    async def run(self, stop: asyncio.Event, *, drain_timeout: float = DRAIN_TIMEOUT) -> None:
        """Write batches until ``stop``; then what is left, for up to ``drain_timeout``."""
        delay = RETRY_START
        while not stop.is_set():
            if not self._pending:
                self._idle.set()
                self._arrived.clear()
                await _first_of(stop, self._arrived)
                continue
            began = time.monotonic()
            if await self._write_batch():
                delay = RETRY_START
                if self._busy():
                    await _first_of(stop, None, timeout=BUSY_PAUSE * (time.monotonic() - began))
            else:
                await _first_of(stop, None, timeout=delay)
                delay = min(RETRY_CAP, delay * 2)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout):
                while self._pending and await self._write_batch():
                    pass
        if self._pending:
            log.warning("Stopping with %d alerts not recorded as incidents.", len(self._pending))
        else:
            self._idle.set()

    def _busy(self) -> bool:
        """Alerts are arriving, and the queue has room to wait for the burst to end."""
        recent = time.monotonic() - self._last_submit < BUSY_WINDOW
        return recent and len(self._pending) < self._max_pending // 2

    async def _write_batch(self) -> bool:
        first = self._pending[0]
        if isinstance(first, ParentPosted):
            return await self._note_parent(first)
        batch: list[ReceivedAlert] = []
        for item in self._pending:
            if not isinstance(item, ReceivedAlert) or len(batch) == self._batch_size:
                break
            batch.append(item)
        try:
            changes = await self._store.record(batch)
        except IncidentStoreUnavailable as error:
            self._metrics.incident_store_errors.inc()
            log.warning("Incident store unavailable, retrying: %s", error)
            return False
        for _ in batch:
            self._pending.popleft()
        for alert in batch:
            self._metrics.incidents_recorded.labels(alert.source).inc()
        self._note(changes)
        return True

    async def _note_parent(self, posted: ParentPosted) -> bool:
        try:
            found = await self._store.note_slack_message(posted.key, posted.channel, posted.ts)
        except IncidentStoreUnavailable as error:
            self._metrics.incident_store_errors.inc()
            log.warning("Incident store unavailable, retrying: %s", error)
            return False
        self._pending.popleft()
        if not found:
            if time.monotonic() - posted.noted_at < NOTE_PATIENCE:
                asyncio.get_running_loop().call_later(NOTE_RETRY, self._retry_note, posted)
            else:
                log.warning(
                    "No incident %s for the Slack message %s: its buttons will not update it.",
                    posted.key,
                    posted.ts,
                )
        return True

    def _retry_note(self, posted: ParentPosted) -> None:
        self._pending.append(posted)
        self._idle.clear()
        self._arrived.set()

    def _note(self, changes: Sequence[IncidentChange]) -> None:
        # Slack shows a resolution already: the delivery worker turns the parent into its
        # resolved form (and drops the buttons). Only the response times are left to count.
        for change in changes:
            if change.resolved:
                self._metrics.observe_resolved(change.incident)


class IncidentUpkeep:
    """Silences that ran out, raw alerts past their retention, the open-incidents gauge."""

    def __init__(
        self,
        store: IncidentStore,
        metrics: ThreaderMetrics,
        *,
        retention: timedelta,
        on_changed: IncidentsChanged | None = None,
        interval: float = 15.0,
        prune_interval: float = 3600.0,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._retention = retention
        self._on_changed = on_changed
        self._interval = interval
        self._prune_interval = prune_interval
        self._clock = clock
        self._last_prune = float("-inf")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.once()
            except IncidentStoreUnavailable as error:
                self._metrics.incident_store_errors.inc()
                log.warning("Incident upkeep postponed: %s", error)
            await _first_of(stop, None, timeout=self._interval)

    async def once(self) -> None:
        now = self._clock()
        ended = await self._store.expire_silences(now)
        if ended and self._on_changed is not None:
            try:
                await self._on_changed(ended)
            except Exception:
                log.exception("Could not show ended silences in Slack")
        if time.monotonic() - self._last_prune >= self._prune_interval:
            self._last_prune = time.monotonic()
            pruned = await self._store.prune(now - self._retention)
            if pruned:
                log.info("Pruned %d raw alerts older than %s.", pruned, self._retention)
        self._metrics.set_open_incidents(await self._store.open_counts())


async def _first_of(
    stop: asyncio.Event, other: asyncio.Event | None, timeout: float = 3600
) -> None:
    """Wait for ``stop``, ``other`` or ``timeout``, whichever comes first."""
    waits = [asyncio.ensure_future(stop.wait())]
    if other is not None:
        waits.append(asyncio.ensure_future(other.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
