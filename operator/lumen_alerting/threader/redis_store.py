"""The threader's store in Redis, shared by every replica.

Each acceptance is one Lua script, so the idempotency key, the thread claim and the outbox entry
are written together (Redis runs a script atomically). The outbox is a stream with one consumer
group: an entry stays pending until the worker that took it acknowledges it, and entries of a
worker that died are claimed by another after a while. Postponed entries wait in a sorted set
until they are due.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from .durability import InfoRefused
from .store import (
    IDEMPOTENCY_TTL,
    THREAD_TTL,
    Acceptance,
    Delivery,
    Disposition,
    OutboxEntry,
    StoreUnavailable,
)

GROUP = "delivery"

# KEYS: idempotency key, thread key, outbox stream.
# ARGV: status, channel, reply_on_repeat (1/0), idempotency ttl ms, thread ttl ms, now (s),
#       delivery id, thread key, alert JSON.
# Returns: "duplicate", "skipped" or the stream id of the queued entry. The thread decision is
# MemoryStore._claim, line for line.
ACCEPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[4]) == false then
  return 'duplicate'
end
local generation = tonumber(redis.call('HGET', KEYS[2], 'generation') or '0')
local state = redis.call('HGET', KEYS[2], 'state')
local kind = nil
if ARGV[1] == 'firing' then
  if generation == 0 or state == 'resolving' then
    generation = generation + 1
    redis.call('HSET', KEYS[2], 'generation', generation, 'state', 'open', 'channel', ARGV[2])
    kind = 'parent'
  elseif ARGV[3] == '1' then
    kind = 'repeat'
  end
else
  if generation == 0 then
    generation = 1
    redis.call('HSET', KEYS[2], 'generation', 1, 'state', 'resolving', 'channel', ARGV[2])
    kind = 'resolved_alone'
  elseif state ~= 'resolving' then
    redis.call('HSET', KEYS[2], 'state', 'resolving')
    kind = 'resolve'
  end
end
redis.call('HSET', KEYS[2], 'touched', ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if kind == nil then
  return 'skipped'
end
-- Spliced, not re-encoded: cjson would turn the alert's empty maps into lists.
local delivery = '{"delivery_id":' .. cjson.encode(ARGV[7]) .. ',"kind":"' .. kind ..
  '","thread_key":' .. cjson.encode(ARGV[8]) .. ',"generation":' .. generation ..
  ',"channel":' .. cjson.encode(ARGV[2]) .. ',"alert":' .. ARGV[9] ..
  ',"accepted_at":' .. ARGV[6] .. '}'
return redis.call('XADD', KEYS[3], '*', 'delivery', delivery, 'attempts', '0')
"""

# KEYS: delayed zset, outbox stream. ARGV: now (ms), limit.
PROMOTE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local entry = cjson.decode(member)
  redis.call('XADD', KEYS[2], '*', 'delivery', entry.delivery, 'attempts', entry.attempts)
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""


class RedisStore:
    """ThreadStore on a Redis server (``redis://host:port/db``)."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "lumen:threader:",
        idempotency_ttl: float = IDEMPOTENCY_TTL,
        thread_ttl: float = THREAD_TTL,
        timeout: float = 2.0,
    ) -> None:
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            # A pooled connection the server closed (it restarted) is retried on a fresh one.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        self._prefix = prefix
        self._idempotency_ms = int(idempotency_ttl * 1000)
        self._thread_ms = int(thread_ttl * 1000)
        self._accept = self._redis.register_script(ACCEPT)
        self._promote = self._redis.register_script(PROMOTE_DUE)
        self._group_ready = False
        self._recovered: set[str] = set()

    def _unavailable(self, error: RedisError) -> StoreUnavailable:
        # Whatever a worker had taken may not have been finished: read the pending entries again
        # once the server answers.
        self._recovered.clear()
        return StoreUnavailable(f"redis: {error}")

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    @property
    def _outbox(self) -> str:
        return self._key("outbox")

    async def accept(self, acceptances: Sequence[Acceptance]) -> list[Disposition]:
        now = f"{time.time():.6f}"
        try:
            if len(acceptances) == 1:  # the common case: one round trip, no pipeline to build
                results = [await self._accept(*self._accept_call(acceptances[0], now))]
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for item in acceptances:
                        keys, args = self._accept_call(item, now)
                        await self._accept(keys=keys, args=args, client=pipe)
                    results = await pipe.execute()
        except RedisError as error:
            raise self._unavailable(error) from error
        return [r if r in ("duplicate", "skipped") else "queued" for r in results]

    def _accept_call(self, item: Acceptance, now: str) -> tuple[list[str], list[Any]]:
        keys = [
            self._key("idem", item.delivery_id),
            self._key("thread", item.thread_key),
            self._outbox,
        ]
        args = [
            item.status,
            item.channel,
            "1" if item.reply_on_repeat else "0",
            self._idempotency_ms,
            self._thread_ms,
            now,
            item.delivery_id,
            item.thread_key,
            json.dumps(item.alert, separators=(",", ":")),
        ]
        return keys, args

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._outbox, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    async def take(self, consumer: str, limit: int, wait: float) -> list[OutboxEntry]:
        try:
            await self._ensure_group()
            await self._promote(
                keys=[self._key("delayed"), self._outbox], args=[int(time.time() * 1000), 100]
            )
            reply = None
            if consumer not in self._recovered:
                # After a restart, first what this consumer had taken and not finished.
                self._recovered.add(consumer)
                reply = await self._redis.xreadgroup(
                    GROUP, consumer, {self._outbox: "0"}, count=limit
                )
                if not any(messages for _stream, messages in reply or []):
                    reply = None
            if reply is None:
                reply = await self._redis.xreadgroup(
                    GROUP,
                    consumer,
                    {self._outbox: ">"},
                    count=limit,
                    block=max(1, int(wait * 1000)),
                )
        except RedisError as error:
            if "NOGROUP" in str(error) or "no longer exists" in str(error):
                # The stream went away (a Redis restart without persistence, a flush): the
                # group is made again on the next call.
                self._group_ready = False
            raise self._unavailable(error) from error
        entries = []
        for _stream, messages in reply or []:
            for entry_id, fields in messages:
                if fields:  # pending entries deleted meanwhile come back empty
                    entries.append(_entry(entry_id, fields))
        return entries

    async def claim_stale(self, consumer: str, idle: float, limit: int) -> list[OutboxEntry]:
        try:
            await self._ensure_group()
            _next, messages, _deleted = await self._redis.xautoclaim(
                self._outbox, GROUP, consumer, min_idle_time=int(idle * 1000), count=limit
            )
        except RedisError as error:
            raise self._unavailable(error) from error
        return [_entry(entry_id, fields) for entry_id, fields in messages if fields]

    async def keep(self, consumer: str, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        try:
            # Claiming for itself resets the entries' idle time.
            await self._redis.xclaim(
                self._outbox, GROUP, consumer, min_idle_time=0, message_ids=list(entry_ids),
                justid=True,
            )  # fmt: skip
        except RedisError as error:
            raise self._unavailable(error) from error

    async def complete(self, entry: OutboxEntry) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(self._outbox, GROUP, entry.entry_id)
                pipe.xdel(self._outbox, entry.entry_id)
                pipe.delete(self._key("sending", entry.delivery.delivery_id))
                await pipe.execute()
        except RedisError as error:
            raise self._unavailable(error) from error

    async def postpone(self, entry: OutboxEntry, delay: float) -> None:
        member = json.dumps(
            {"delivery": entry.delivery.to_json(), "attempts": str(entry.attempts + 1)},
            separators=(",", ":"),
        )
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(self._key("delayed"), {member: int((time.time() + delay) * 1000)})
                pipe.xack(self._outbox, GROUP, entry.entry_id)
                pipe.xdel(self._outbox, entry.entry_id)
                await pipe.execute()
        except RedisError as error:
            raise self._unavailable(error) from error

    async def parent(self, thread_key: str, generation: int) -> str | None:
        try:
            return await self._redis.hget(self._key("thread", thread_key), f"parent:{generation}")
        except RedisError as error:
            raise self._unavailable(error) from error

    async def record_parent(self, thread_key: str, generation: int, message: str) -> None:
        key = self._key("thread", thread_key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, f"parent:{generation}", message)
                # Never a key without expiry, even if the thread was cleared meanwhile.
                pipe.pexpire(key, self._thread_ms)
                await pipe.execute()
        except RedisError as error:
            raise self._unavailable(error) from error

    async def channel_id(self, channel: str) -> str | None:
        try:
            return await self._redis.hget(self._key("channels"), channel)
        except RedisError as error:
            raise self._unavailable(error) from error

    async def remember_channel(self, channel: str, channel_id: str) -> None:
        try:
            await self._redis.hset(self._key("channels"), channel, channel_id)
        except RedisError as error:
            raise self._unavailable(error) from error

    async def mark_sending(self, delivery_id: str) -> bool:
        try:
            first = await self._redis.set(
                self._key("sending", delivery_id), "1", nx=True, px=self._idempotency_ms
            )
        except RedisError as error:
            raise self._unavailable(error) from error
        return bool(first)

    async def forget_sending(self, delivery_id: str) -> None:
        try:
            await self._redis.delete(self._key("sending", delivery_id))
        except RedisError as error:
            raise self._unavailable(error) from error

    async def dead_letter(self, entry: OutboxEntry, reason: str) -> None:
        try:
            await self._redis.xadd(
                self._key("dead"),
                {"delivery": entry.delivery.to_json(), "reason": reason},
                maxlen=10_000,
                approximate=True,
            )
        except RedisError as error:
            raise self._unavailable(error) from error
        await self.complete(entry)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as error:
            raise self._unavailable(error) from error

    async def persistence_info(self) -> dict[str, Any]:
        """``INFO persistence`` and ``INFO memory``, merged; InfoRefused when INFO is an error."""
        try:
            info = dict(await self._redis.info("persistence"))
            info.update(await self._redis.info("memory"))
        except ResponseError as error:  # NOPERM, a renamed or disabled command
            raise InfoRefused(str(error)) from error
        except RedisError as error:
            raise self._unavailable(error) from error
        return info

    async def stats(self) -> dict[str, Any]:
        try:
            outbox = await self._redis.xlen(self._outbox)
            delayed = await self._redis.zcard(self._key("delayed"))
            dead = await self._redis.xlen(self._key("dead"))
        except RedisError as error:
            raise self._unavailable(error) from error
        return {"store": self.kind, "outbox": outbox + delayed, "dead_letters": dead}

    async def threads(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        prefix = self._key("thread", "")
        # A prefix is taken literally: its glob characters must not match another's keys.
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        try:
            async for key in self._redis.scan_iter(match=pattern, count=500):
                found[key[len(prefix) :]] = await self._redis.hgetall(key)
        except RedisError as error:
            raise self._unavailable(error) from error
        return found

    async def clear_threads(self) -> int:
        keys = list(await self.threads())
        if keys:
            await self._redis.delete(*(self._key("thread", key) for key in keys))
        return len(keys)

    async def close(self) -> None:
        await self._redis.aclose()


def _entry(entry_id: str, fields: dict[str, str]) -> OutboxEntry:
    return OutboxEntry(entry_id, Delivery.from_json(fields["delivery"]), int(fields["attempts"]))
