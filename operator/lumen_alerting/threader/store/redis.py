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
from redis.typing import XReadGroupResponse

from .contract import (
    DEFAULT_LIMITS,
    IDEMPOTENCY_TTL,
    THREAD_TTL,
    Acceptance,
    Delivery,
    Disposition,
    InfoRefused,
    OutboxEntry,
    OutboxFull,
    OutboxLimits,
    OutboxSize,
    StoreStats,
    StoreUnavailable,
    ThreadListing,
    alert_bytes,
)

GROUP = "delivery"

# One call per notification, so that the bound is checked and the alerts are accepted atomically
# (all or nothing).
# KEYS: outbox stream, delayed zset, outbox size hash, then per alert: idempotency key, thread key.
# ARGV: max entries, max bytes, idempotency ttl ms, thread ttl ms, now (s), then per alert:
#       status, channel, reply_on_repeat (1/0), delivery id, thread key, alert JSON.
# Returns {"full", entries, bytes, new entries, new bytes} when the notification's new alerts
# would pass the bound (nothing written), else per alert "duplicate", "skipped" or the stream id
# of the queued entry. The thread decision is MemoryStore._claim, line for line.
ACCEPT = """
local alerts = (#ARGV - 5) / 6
local entries = redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
local size = tonumber(redis.call('HGET', KEYS[3], 'bytes') or '0')
if entries == 0 and size ~= 0 then
  -- Nothing queued: a count gone wrong (a flush, a lost write) starts again from zero.
  size = 0
  redis.call('HSET', KEYS[3], 'bytes', 0)
end
local new, new_bytes, counted = 0, 0, {}
for i = 0, alerts - 1 do
  local id = ARGV[5 + i * 6 + 4]
  if not counted[id] and redis.call('EXISTS', KEYS[4 + i * 2]) == 0 then
    counted[id] = true
    new = new + 1
    new_bytes = new_bytes + #ARGV[5 + i * 6 + 6]
  end
end
if entries > 0 and new > 0 and
    (entries + new > tonumber(ARGV[1]) or size + new_bytes > tonumber(ARGV[2])) then
  return {'full', tostring(entries), tostring(size), tostring(new), tostring(new_bytes)}
end
local results = {}
for i = 0, alerts - 1 do
  local idem, thread = KEYS[4 + i * 2], KEYS[5 + i * 2]
  local a = 5 + i * 6
  local status, channel, reply = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local alert = ARGV[a + 6]
  local result = 'duplicate'
  if redis.call('SET', idem, '1', 'NX', 'PX', ARGV[3]) ~= false then
    local generation = tonumber(redis.call('HGET', thread, 'generation') or '0')
    local state = redis.call('HGET', thread, 'state')
    local kind = nil
    if status == 'firing' then
      if generation == 0 or state == 'resolving' then
        generation = generation + 1
        redis.call('HSET', thread, 'generation', generation, 'state', 'open', 'channel', channel)
        kind = 'parent'
      elseif reply == '1' then
        kind = 'repeat'
      end
    else
      if generation == 0 then
        generation = 1
        redis.call('HSET', thread, 'generation', 1, 'state', 'resolving', 'channel', channel)
        kind = 'resolved_alone'
      elseif state ~= 'resolving' then
        redis.call('HSET', thread, 'state', 'resolving')
        kind = 'resolve'
      end
    end
    redis.call('HSET', thread, 'touched', ARGV[5])
    redis.call('PEXPIRE', thread, ARGV[4])
    if kind == nil then
      result = 'skipped'
    else
      -- Spliced, not re-encoded: cjson would turn the alert's empty maps into lists.
      local delivery = '{"delivery_id":' .. cjson.encode(ARGV[a + 4]) .. ',"kind":"' .. kind ..
        '","thread_key":' .. cjson.encode(ARGV[a + 5]) .. ',"generation":' .. generation ..
        ',"channel":' .. cjson.encode(channel) .. ',"alert":' .. alert ..
        ',"accepted_at":' .. ARGV[5] .. '}'
      result = redis.call('XADD', KEYS[1], '*', 'delivery', delivery, 'attempts', '0',
        'bytes', #alert)
      redis.call('HINCRBY', KEYS[3], 'bytes', #alert)
    end
  end
  results[i + 1] = result
end
return results
"""

# KEYS: outbox stream, outbox size hash, sending key. ARGV: group, entry id, bytes.
# The size goes down only if this call removed the entry (a second completion changes nothing).
COMPLETE = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('XDEL', KEYS[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'bytes', -tonumber(ARGV[3]))
end
redis.call('DEL', KEYS[3])
return 1
"""

# KEYS: outbox stream, delayed zset. ARGV: group, entry id, delayed member, due (ms).
# Only an entry still in the stream is delayed: one completed meanwhile is not brought back.
POSTPONE = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('XDEL', KEYS[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
return 1
"""

# KEYS: delayed zset, outbox stream. ARGV: now (ms), limit.
PROMOTE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local entry = cjson.decode(member)
  redis.call('XADD', KEYS[2], '*', 'delivery', entry.delivery, 'attempts', entry.attempts,
    'bytes', entry.bytes or 0)
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
        limits: OutboxLimits = DEFAULT_LIMITS,
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
        self._limits = limits
        self._accept = self._redis.register_script(ACCEPT)
        self._complete = self._redis.register_script(COMPLETE)
        self._postpone = self._redis.register_script(POSTPONE)
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
        keys = [self._outbox, self._key("delayed"), self._key("outbox-size")]
        args: list[Any] = [
            self._limits.max_entries,
            self._limits.max_bytes,
            self._idempotency_ms,
            self._thread_ms,
            f"{time.time():.6f}",
        ]
        for item in acceptances:
            keys += [self._key("idem", item.delivery_id), self._key("thread", item.thread_key)]
            args += [
                item.status,
                item.channel,
                "1" if item.reply_on_repeat else "0",
                item.delivery_id,
                item.thread_key,
                alert_bytes(item.alert),
            ]
        try:
            results = await self._accept(keys=keys, args=args)
        except RedisError as error:
            raise self._unavailable(error) from error
        if results and results[0] == "full":
            entries, size, new, new_bytes = (int(n) for n in results[1:])
            self._limits.check(entries, size, new, new_bytes)  # raises, with the numbers
            raise OutboxFull(f"outbox full: {entries} entries ({size} bytes) queued")
        return [r if r in ("duplicate", "skipped") else "queued" for r in results]

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
            messages: list[tuple[str, dict[str, str]]] = []
            if consumer not in self._recovered:
                # After a restart, first what this consumer had taken and not finished.
                self._recovered.add(consumer)
                messages = _messages(
                    await self._redis.xreadgroup(GROUP, consumer, {self._outbox: "0"}, count=limit)
                )
            if not messages:
                messages = _messages(
                    await self._redis.xreadgroup(
                        GROUP,
                        consumer,
                        {self._outbox: ">"},
                        count=limit,
                        block=max(1, int(wait * 1000)),
                    )
                )
        except RedisError as error:
            if "NOGROUP" in str(error) or "no longer exists" in str(error):
                # The stream went away (a Redis restart without persistence, a flush): the
                # group is made again on the next call.
                self._group_ready = False
            raise self._unavailable(error) from error
        # Pending entries deleted meanwhile come back without fields.
        return [_entry(entry_id, fields) for entry_id, fields in messages if fields]

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
        keys = [
            self._outbox,
            self._key("outbox-size"),
            self._key("sending", entry.delivery.delivery_id),
        ]
        try:
            await self._complete(keys=keys, args=[GROUP, entry.entry_id, entry.size])
        except RedisError as error:
            raise self._unavailable(error) from error

    async def postpone(self, entry: OutboxEntry, delay: float) -> None:
        member = json.dumps(
            {
                "delivery": entry.delivery.to_json(),
                "attempts": str(entry.attempts + 1),
                "bytes": entry.size,
            },
            separators=(",", ":"),
        )
        try:
            await self._postpone(
                keys=[self._outbox, self._key("delayed")],
                args=[GROUP, entry.entry_id, member, int((time.time() + delay) * 1000)],
            )
        except RedisError as error:
            raise self._unavailable(error) from error

    async def parent(self, thread_key: str, generation: int) -> str | None:
        try:
            message = await self._redis.hget(
                self._key("thread", thread_key), f"parent:{generation}"
            )
        except RedisError as error:
            raise self._unavailable(error) from error
        return None if message is None else _text(message)

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
            channel_id = await self._redis.hget(self._key("channels"), channel)
        except RedisError as error:
            raise self._unavailable(error) from error
        return None if channel_id is None else _text(channel_id)

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

    async def outbox(self) -> OutboxSize:
        """The outbox's size. The oldest acceptance is exact unless more than 100 entries wait
        for a retry: it is read from the stream's first entry and the first 100 delayed ones."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xlen(self._outbox)
                pipe.zcard(self._key("delayed"))
                pipe.hget(self._key("outbox-size"), "bytes")
                pipe.xrange(self._outbox, count=1)
                pipe.zrange(self._key("delayed"), 0, 99)
                streamed, delayed, size, first, waiting = await pipe.execute()
        except RedisError as error:
            raise self._unavailable(error) from error
        accepted = [Delivery.from_json(fields["delivery"]).accepted_at for _id, fields in first]
        accepted += [Delivery.from_json(json.loads(m)["delivery"]).accepted_at for m in waiting]
        return OutboxSize(streamed + delayed, int(size or 0), min(accepted, default=None))

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

    async def stats(self) -> StoreStats:
        try:
            outbox = await self._redis.xlen(self._outbox)
            delayed = await self._redis.zcard(self._key("delayed"))
            dead = await self._redis.xlen(self._key("dead"))
        except RedisError as error:
            raise self._unavailable(error) from error
        return {"store": self.kind, "outbox": outbox + delayed, "dead_letters": dead}

    async def threads(self) -> ThreadListing:
        found: dict[str, dict[str, Any]] = {}
        prefix = self._key("thread", "")
        # A prefix is taken literally: its glob characters must not match another's keys.
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        try:
            async for key in self._redis.scan_iter(match=pattern, count=500):
                fields = await self._redis.hgetall(key)
                found[_text(key)[len(prefix) :]] = {_text(k): _text(v) for k, v in fields.items()}
        except RedisError as error:
            raise self._unavailable(error) from error
        return found

    async def clear_threads(self) -> int:
        keys = list(await self.threads())
        if keys:
            try:
                await self._redis.delete(*(self._key("thread", key) for key in keys))
            except RedisError as error:
                raise self._unavailable(error) from error
        return len(keys)

    async def close(self) -> None:
        await self._redis.aclose()


def _text(reply: bytes | str) -> str:
    """A reply as the str it is: the client decodes every reply (``decode_responses``), but
    redis-py's types say ``bytes | str`` whatever the setting."""
    return reply.decode() if isinstance(reply, bytes) else reply


def _messages(reply: XReadGroupResponse | None) -> list[tuple[str, dict[str, str]]]:
    """The ``(entry id, fields)`` of an XREADGROUP reply, every stream's in turn. The client
    speaks RESP2, whose reply is ``[[stream, [(id, fields), ...]], ...]`` (None when nothing
    came); RESP3's map form is never asked for."""
    if isinstance(reply, dict):
        raise TypeError("XREADGROUP answered in RESP3 form; the store speaks RESP2")
    return [
        (entry_id, fields) for _stream, messages in reply or [] for entry_id, fields in messages
    ]


def _entry(entry_id: str, fields: dict[str, str]) -> OutboxEntry:
    return OutboxEntry(
        entry_id,
        Delivery.from_json(fields["delivery"]),
        int(fields["attempts"]),
        int(fields.get("bytes", 0)),
    )
