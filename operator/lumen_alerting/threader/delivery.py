"""The delivery worker: empties the outbox into Slack, one channel at a time, at Slack's pace.

- Every channel has its own queue and sends at most one message per ``channel_interval``
  (Slack allows about one per second per channel); a 429 pauses that channel for Retry-After.
- A reply waits until its parent has a ts: an entry whose parent is still queued is postponed,
  never posted first.
- Temporary failures (throttling, 5xx, network) are postponed with capped exponential backoff;
  permanent ones (a missing channel, a rejected message) go to the dead letters, with a metric
  and a log line.
- Exactly once: before a post the worker notes that it is sending. If it finds that note on a
  later attempt (it crashed, or the answer was lost), it first looks in Slack for the message,
  by the delivery id in the message's metadata, and only posts if it is not there. Looking
  needs the channel's id: a ``#name`` is resolved (``conversations.list``) before its first
  post, and a lost answer is looked for only after ``unknown_outcome_wait``, once Slack has
  had time to finish the request we gave up on. If the id cannot be learned, the message is
  posted once more unchecked (at most one duplicate, logged), then given up on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .messages import (
    METADATA_EVENT_TYPE,
    parent_message,
    repeat_reply,
    resolved_parent_update,
    resolved_reply,
)
from .metrics import ThreaderMetrics
from .pacing import ChannelPace
from .slack import MessageRef, SlackClient, SlackError
from .store.contract import Delivery, OutboxEntry, StoreUnavailable, ThreadStore
from .warning_throttle import WarningThrottle, left_out_note
from .webhook import Alert, alert_from_json

log = logging.getLogger("lumen.threader.delivery")

BACKOFF_START = 1.0
BACKOFF_CAP = 300.0
# How long a reply may wait for its parent (attempts, about a second apart at first).
PARENT_WAIT_ATTEMPTS = 600
# Entries a worker holds at most; the rest waits in the outbox, where another replica can
# take it.
MAX_IN_HAND = 1000
# After an attempt whose outcome is unknown (the answer was lost), how often to try to learn
# the channel's id before posting once more unchecked.
UNCHECKED_AFTER_ATTEMPTS = 3
UNCHECKED_SUFFIX = "/unchecked"
# How long a #name is not looked up again after a transient failure, and after Slack said no
# (not listed, missing scope): a big workspace's list is many calls, at Slack's Tier 2 pace.
RESOLVE_RETRY = 10.0
RESOLVE_RETRY_REFUSED = 300.0
# At most one WARNING per channel and kind of transient failure in this many seconds; the
# next one says how many were left out.
WARNING_INTERVAL = 60.0


class ParentHooks(Protocol):
    """What the incident store adds to a thread's parent message (``incident_slack``)."""

    def decorate(self, message: dict[str, Any], alert: Alert) -> None:
        """Change the parent's chat.postMessage body before it is posted (the buttons)."""
        ...

    def posted(self, alert: Alert, parent: MessageRef) -> None:
        """The parent is in Slack (its incident learns where)."""
        ...


class DeliveryWorker:
    def __init__(
        self,
        store: ThreadStore,
        slack: SlackClient,
        metrics: ThreaderMetrics,
        *,
        consumer: str,
        channel_interval: float = 1.0,
        stale_after: float = 30.0,
        unknown_outcome_wait: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        parent_hooks: ParentHooks | None = None,
    ) -> None:
        self._store = store
        self._parent_hooks = parent_hooks
        self._slack = slack
        self._metrics = metrics
        self._consumer = consumer
        self._stale_after = stale_after
        self._unknown_outcome_wait = unknown_outcome_wait
        self._clock = clock
        self._queues: dict[str, asyncio.Queue[OutboxEntry]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._pace = ChannelPace(channel_interval, clock=clock)
        self._in_hand: set[str] = set()  # entry ids queued or being delivered here
        self._unresolved: dict[str, float] = {}  # #name -> when to ask Slack again
        # #name -> id as known to the store: a post writes the store only when it learns news.
        self._channel_ids: dict[str, str] = {}
        self._warnings = WarningThrottle(WARNING_INTERVAL, clock=clock)
        # Taken, but the store failed before the delivery was finished (a full disk): handed
        # back as soon as the store can be written, rather than when the lease runs out.
        self._unfinished: dict[str, OutboxEntry] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Take entries until ``stop`` is set, then let the channel queues drain briefly."""
        last_claim = 0.0
        while not stop.is_set():
            entries: list[OutboxEntry] = []
            try:
                await self._hand_back_unfinished()
                if self._clock() - last_claim >= self._stale_after / 3:
                    last_claim = self._clock()
                    # What waits here for its channel's turn is not stale: keep it ours, then
                    # take over what a dead replica left.
                    await self._store.keep(self._consumer, sorted(self._in_hand))
                    room = MAX_IN_HAND - len(self._in_hand)
                    if room > 0:
                        entries += await self._store.claim_stale(
                            self._consumer, self._stale_after, min(50, room)
                        )
                room = MAX_IN_HAND - len(self._in_hand) - len(entries)
                if room > 0:
                    entries += await self._store.take(self._consumer, min(50, room), 0.5)
                else:  # Slack's pace is the bottleneck: the rest waits in the outbox
                    await _sleep_or_stop(stop, 0.5)
            except StoreUnavailable as error:
                log.warning("Outbox unavailable, retrying in 1 s: %s", error)
                await _sleep_or_stop(stop, 1.0)
                continue
            for entry in entries:
                # An unfinished entry comes back from the store's pending list too (Redis reads
                # it again after an error) but is the hand-back's: delivered now as well, its
                # completion would race the hand-back's postpone, which makes a new entry of it.
                if entry.entry_id not in self._in_hand and entry.entry_id not in self._unfinished:
                    self._in_hand.add(entry.entry_id)
                    self._queue(entry.delivery.channel).put_nowait(entry)
        await self._drain(timeout=5.0)

    async def _hand_back_unfinished(self) -> None:
        """Release what the store failed to finish, so it is taken again at once. The retry
        finds the "sending" note and looks in Slack before posting again."""
        for entry_id, entry in list(self._unfinished.items()):
            await self._store.postpone(entry, 0)
            del self._unfinished[entry_id]

    def _queue(self, channel: str) -> asyncio.Queue[OutboxEntry]:
        if channel not in self._queues:
            self._queues[channel] = asyncio.Queue()
            self._senders[channel] = asyncio.create_task(self._send_loop(channel))
        return self._queues[channel]

    async def _drain(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(queue.join() for queue in self._queues.values())), timeout
            )
        for task in self._senders.values():
            task.cancel()
        await asyncio.gather(*self._senders.values(), return_exceptions=True)

    async def _send_loop(self, channel: str) -> None:
        queue = self._queues[channel]
        while True:
            entry = await queue.get()
            try:
                await self._deliver(entry)
            except StoreUnavailable as error:
                # Left in the outbox (not completed): handed back once the store is back.
                log.warning("Store unavailable while delivering %s: %s", entry.entry_id, error)
                self._unfinished[entry.entry_id] = entry
            except Exception:
                log.exception("Unexpected failure delivering %s", entry.entry_id)
            finally:
                self._in_hand.discard(entry.entry_id)
                queue.task_done()

    async def _deliver(self, entry: OutboxEntry) -> None:
        delivery = entry.delivery
        alert = alert_from_json(delivery.alert)
        try:
            if delivery.kind in ("parent", "resolved_alone"):
                posted = await self._post(delivery, alert, None, entry.attempts)
                if delivery.kind == "parent":
                    await self._store.record_parent(
                        delivery.thread_key, delivery.generation, posted.encode()
                    )
                    if self._parent_hooks is not None:
                        self._parent_hooks.posted(alert, posted)
            else:
                recorded = await self._store.parent(delivery.thread_key, delivery.generation)
                if recorded is None:
                    await self._wait_for_parent(entry)
                    return
                parent = MessageRef.decode(recorded)
                await self._post(delivery, alert, parent, entry.attempts)
                if delivery.kind == "resolve":
                    async with self._pace.slot(delivery.channel):
                        await self._slack.update_message(
                            resolved_parent_update(alert, parent.channel_id, parent.ts)
                        )
                    self._metrics.slack_calls.labels("chat.update", "ok").inc()
        except SlackError as error:
            await self._failed(entry, error)
            return
        await self._store.complete(entry)
        self._metrics.deliveries.labels(delivery.kind, "delivered").inc()
        self._metrics.delivery_seconds.observe(max(0.0, time.time() - delivery.accepted_at))

    async def _post(
        self, delivery: Delivery, alert: Alert, parent: MessageRef | None, attempts: int
    ) -> MessageRef:
        """Post the delivery's message once, even across crashes (see the module docstring)."""
        message_id = delivery.delivery_id if parent is None else f"{delivery.delivery_id}/reply"
        unchecked = False  # posting again without having looked in Slack first
        if parent is None:
            # Learn a #name's id before the first post: if its answer is lost (Slack slower
            # than our timeout), the next attempt needs the id to look for the message.
            await self._channel_id(delivery.channel)
        if not await self._store.mark_sending(message_id):
            channel_id = parent.channel_id if parent else await self._channel_id(delivery.channel)
            if channel_id is not None:
                found = await self._find(delivery, message_id, parent, channel_id)
                if found is not None:
                    log.info("Delivery %s is already in Slack; not posting it again.", message_id)
                    return found
            else:
                unchecked = await self._may_post_unchecked(delivery, message_id, attempts)
        body = _message(delivery, alert, parent.ts if parent else None)
        if delivery.kind == "parent" and self._parent_hooks is not None:
            self._parent_hooks.decorate(body, alert)
        body["metadata"] = {
            "event_type": METADATA_EVENT_TYPE,
            "event_payload": {"thread_key": delivery.thread_key, "delivery_id": message_id},
        }
        try:
            async with self._pace.slot(delivery.channel):
                posted = await self._slack.post_message(body)
        except SlackError as error:
            if not error.maybe_delivered:
                # Certainly not posted by this attempt. After an unchecked repost the first
                # attempt's outcome is still unknown: only the repost's own mark goes.
                await self._store.forget_sending(
                    f"{message_id}{UNCHECKED_SUFFIX}" if unchecked else message_id
                )
            self._metrics.slack_calls.labels("chat.postMessage", error.error).inc()
            raise
        self._metrics.slack_calls.labels("chat.postMessage", "ok").inc()
        await self._learn_channel(delivery.channel, posted.channel_id)
        return posted

    async def _may_post_unchecked(self, delivery: Delivery, message_id: str, attempts: int) -> bool:
        """An earlier attempt may have reached Slack, and we cannot look (the channel's id is
        unknown: no ``channels:read``/``groups:read`` scope, or the bot cannot see the channel).
        Keep trying to learn the id for a while; then post once more, accepting at most one
        duplicate; if that repost's outcome is unknown too, give up (dead letter) rather than
        post again and again. Raises ``SlackError`` to postpone or give up; True to post."""
        if attempts < UNCHECKED_AFTER_ATTEMPTS:
            raise SlackError("channel_id_unknown", temporary=True, method="conversations.list")
        if await self._store.mark_sending(f"{message_id}{UNCHECKED_SUFFIX}"):
            log.warning(
                "Posting %s to %s again without checking whether an earlier attempt reached "
                "Slack (its channel id is unknown; give the bot channels:read and groups:read, "
                "or configure the channel id): there may be one duplicate.",
                message_id,
                delivery.channel,
            )
            return True
        raise SlackError("delivery_unconfirmed", temporary=False, method="chat.postMessage")

    async def _find(
        self, delivery: Delivery, message_id: str, parent: MessageRef | None, channel_id: str
    ) -> MessageRef | None:
        """The message an earlier attempt may have posted to ``channel_id``."""
        ts = await self._slack.find_delivery(
            channel_id,
            message_id,
            oldest=delivery.accepted_at - 60,
            thread_ts=parent.ts if parent else None,
        )
        return MessageRef(channel_id, ts) if ts is not None else None

    async def _channel_id(self, channel: str) -> str | None:
        """The id of ``channel``: as configured, remembered in the store, or looked up in
        Slack (``conversations.list``; a name Slack could not resolve is not asked about
        again for a while)."""
        if not channel.startswith("#"):
            return channel  # configured as an id already
        known = self._channel_ids.get(channel) or await self._store.channel_id(channel)
        if known is not None:
            self._channel_ids[channel] = known
            return known
        if self._clock() < self._unresolved.get(channel, float("-inf")):
            return None
        retry = RESOLVE_RETRY_REFUSED
        try:
            channel_id = await self._slack.find_channel(channel[1:])
        except SlackError as error:
            self._metrics.slack_calls.labels("conversations.list", error.error).inc()
            retry = RESOLVE_RETRY if error.temporary else RESOLVE_RETRY_REFUSED
            left_out = self._warnings.allow((channel, f"conversations.list {error.error}"))
            if left_out is not None:
                log.warning(
                    "Cannot learn the id of %s from Slack (conversations.list: %s); "
                    "trying again in %.0f s.%s",
                    channel,
                    error.describe(),
                    retry,
                    left_out_note(left_out),
                )
            channel_id = None
        else:
            self._metrics.slack_calls.labels("conversations.list", "ok").inc()
        if channel_id is None:
            self._unresolved[channel] = self._clock() + retry
            return None
        await self._learn_channel(channel, channel_id)
        return channel_id

    async def _learn_channel(self, channel: str, channel_id: str) -> None:
        """Keep a #name's id in the store (for the lookups after a lost answer), writing only
        what is new: not on every post, and never for a channel configured as an id."""
        if channel.startswith("#") and self._channel_ids.get(channel) != channel_id:
            await self._store.remember_channel(channel, channel_id)
            self._channel_ids[channel] = channel_id

    async def _failed(self, entry: OutboxEntry, error: SlackError) -> None:
        delivery = entry.delivery
        if not error.temporary:
            log.error(
                "Dead letter: %s of %s to %s: Slack said %s.",
                delivery.kind,
                delivery.thread_key,
                delivery.channel,
                error.error,
            )
            self._metrics.deliveries.labels(delivery.kind, "dead_letter").inc()
            self._metrics.dead_letters.labels(error.error).inc()
            await self._store.dead_letter(entry, error.error)
            return
        delay = min(BACKOFF_CAP, BACKOFF_START * 2**entry.attempts)
        if error.maybe_delivered:
            # Slack may still be working on the request we gave up on: look for its message
            # only once it has surely landed, or the lookup misses it and we post it twice.
            delay = max(delay, self._unknown_outcome_wait)
        if error.retry_after is not None:
            delay = error.retry_after
            # The whole channel waits: every message to it would be refused the same way.
            self._pace.pause(delivery.channel, error.retry_after)
        left_out = self._warnings.allow((delivery.channel, f"{error.method} {error.error}"))
        if left_out is not None:
            retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            log.warning(
                "Slack %s for %s failed: %s; next try at %s (in %.1f s).%s",
                error.method or "call",
                delivery.channel,
                error.describe(),
                retry_at.isoformat(timespec="seconds"),
                delay,
                left_out_note(left_out),
            )
        self._metrics.deliveries.labels(delivery.kind, "retry").inc()
        await self._store.postpone(entry, delay)

    async def _wait_for_parent(self, entry: OutboxEntry) -> None:
        if entry.attempts >= PARENT_WAIT_ATTEMPTS:
            self._metrics.deliveries.labels(entry.delivery.kind, "dead_letter").inc()
            self._metrics.dead_letters.labels("parent_never_posted").inc()
            await self._store.dead_letter(entry, "parent_never_posted")
            return
        self._metrics.deliveries.labels(entry.delivery.kind, "waiting_for_parent").inc()
        await self._store.postpone(entry, min(5.0, 0.2 * (entry.attempts + 1)))


def _message(delivery: Delivery, alert: Alert, thread_ts: str | None) -> dict[str, Any]:
    if delivery.kind in ("parent", "resolved_alone"):
        return parent_message(
            alert,
            delivery.channel,
            thread_key=delivery.thread_key,
            delivery_id=delivery.delivery_id,
            now_resolved=delivery.kind == "resolved_alone",
        )
    assert thread_ts is not None
    if delivery.kind == "repeat":
        return repeat_reply(alert, delivery.channel, thread_ts, now=datetime.now(UTC))
    return resolved_reply(alert, delivery.channel, thread_ts)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
