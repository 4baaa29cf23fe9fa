"""The threader's store in Redis, shared by every replica: one server (``redis://``), a master
that Sentinel watches (``redis+sentinel://``) or a Redis Cluster (``redis+cluster://``).

Each acceptance is one Lua script, so the idempotency key, the thread claim and the outbox entry
are written together (Redis runs a script atomically). The outbox is a stream with one consumer
group: an entry stays pending until the worker that took it acknowledges it, and entries of a
worker that died are claimed by another after a while. Postponed entries wait in a sorted set
until they are due.

Topologies. Every mode runs the same commands; only the client differs:

- Sentinel: the client asks the sentinels for the master on every new connection, so after a
  failover the next calls reach the new master without a restart. A call during the switch
  fails (``StoreUnavailable``, 503) within the timeout; it never waits for the promotion.
- Cluster: every key is ``{prefix}rest``: the whole prefix is the hash tag, so every key of one
  threader is in one slot, on one node, and the scripts, the transactions and XREADGROUP see all
  their keys there. Keys on a single server keep their old names (``prefix`` + rest).

Replica acknowledgement (``replica_acks``). A write Redis acknowledged is on the master only;
were the master to die before a replica has it, Sentinel would promote a replica without it and
an alert Alertmanager saw answered 2xx would be lost. So after the accept script, on the same
connection, the store sends ``WAIT n timeout`` and answers 503 (``ReplicaAckTimeout``) when
fewer than ``n`` replicas confirm in time: Alertmanager sends again. The script always writes
(a duplicate too), and replication keeps order, so a duplicate's 2xx also waits until the
replica has the first acceptance. ``0`` turns it off. ``"auto"`` is 1 while the master's
``INFO replication`` counts a connected replica (read every few seconds, and again after an
error or a replica timeout), else 0. When that INFO shows fewer replicas in sync ("online") than
an accept needs (after a failover, the promoted replica has none until another resyncs), the
accept is refused at once, nothing written: a WAIT could only time out, and a thousand of them
would each hold a connection for the whole timeout. The INFO is then read again every quarter
second, so accepts resume as soon as a replica is back. Accepts have their own connection pool
(not on a cluster, whose pools are per node and unbounded): a storm of them never takes the
connections the delivery worker needs. The trade-off of "auto": with no replica connected (the
replica is down, or never was) alerts are accepted on the master alone, available rather than
refused; a replica that is stalled but still counted as connected (up to its ``repl-timeout``)
makes accepts answer 503 until the master drops it. A fixed ``N`` never accepts with fewer.
WAIT is not a consensus: a replica that has a write may still lose the election, but Sentinel
prefers the most up-to-date replica, which is the one that confirmed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError
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
    ReplicaAcks,
    ReplicaAckTimeout,
    StoreStats,
    StoreUnavailable,
    ThreadListing,
    alert_bytes,
)
from .redis_topology import RedisTopology, parse_redis_url

GROUP = "delivery"
KINDS = {"standalone": "redis", "sentinel": "redis-sentinel", "cluster": "redis-cluster"}
# How long the store trusts its last look at the master's replicas ("auto", and the refusal
# without a WAIT); while the master has fewer than an accept needs, it looks again this soon.
REPLICAS_CHECKED_FOR = 5.0
REPLICAS_RECHECKED_WHILE_SHORT = 0.25
# What a cluster client raises besides RedisError (no reachable node, a slot not covered).
ERRORS = (RedisError, RedisClusterException)

# One call per notification, so that the bound is checked and the alerts are accepted atomically
# (all or nothing).
# KEYS: outbox stream, delayed zset, outbox size hash, then per alert: idempotency key, thread key.
# ARGV: max entries, max bytes, idempotency ttl ms, thread ttl ms, now (s), then per alert:
#       status, channel, reply_on_repeat (1/0), delivery id, thread key, alert JSON.
# Writes the size hash's accepted_at every time (see WAIT below).
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
-- Always a write, a duplicate notification's too: the WAIT after this script then waits until
-- the replicas are past this write, and so past the earlier acceptance (replication is in order).
redis.call('HSET', KEYS[3], 'accepted_at', ARGV[5])
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
# Only if this call removed the entry do the size and the "sending" note go: an entry already
# gone was completed before, or postponed meanwhile (a hand-back racing its own retake, another
# replica's claim), and then lives on as a new entry that must still find the note and look in
# Slack before posting (without it, it was posted twice).
COMPLETE = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('XDEL', KEYS[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'bytes', -tonumber(ARGV[3]))
  redis.call('DEL', KEYS[3])
end
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
    """ThreadStore on Redis: ``redis://host:port/db``, ``rediss://…``,
    ``redis+sentinel://host:port,…/MASTER/db`` or ``redis+cluster://host:port,…``
    (``redis_topology``). ``password`` (from a file) is used for the data nodes and the
    sentinels, and wins over one in the URL. A prefix holding ``{`` or ``}`` is refused in
    cluster mode (``ValueError``): the prefix is the keys' hash tag. ``timeout`` bounds a connect
    and a reply; with replica acks on, a reply may take ``replica_ack_timeout`` longer (WAIT)."""

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
        password: str | None = None,
        replica_acks: ReplicaAcks = "auto",
        replica_ack_timeout: float = 1.0,
    ) -> None:
        topology = parse_redis_url(url)
        if replica_acks != "auto" and (
            isinstance(replica_acks, bool) or not isinstance(replica_acks, int) or replica_acks < 0
        ):
            raise ValueError("replica acks must be 'auto' or a whole number (0 is off)")
        if replica_ack_timeout <= 0:
            raise ValueError("the replica ack timeout must be more than 0 seconds")
        if topology.mode == "cluster":
            if "{" in prefix or "}" in prefix:
                raise ValueError(
                    "redis+cluster: the key prefix must not hold { or } (it becomes the keys' "
                    "hash tag)"
                )
            # The whole prefix is the hash tag: every key of this threader in one slot.
            prefix = "{" + prefix + "}"
        self.kind = KINDS[topology.mode]
        self._redis: aioredis.Redis | RedisCluster
        self._sentinel: Sentinel | None = None
        # The accept's WAIT holds its reply up to the ack timeout: a read may take that long on
        # top of the usual timeout (a stalled server is noticed after both).
        read_timeout = timeout + (replica_ack_timeout if replica_acks != 0 else 0.0)
        self._redis, self._sentinel = _client(
            topology, password or topology.password, timeout, read_timeout
        )
        # Accepts (their WAIT may hold a connection up to the ack timeout) on a pool of their
        # own, so that a storm of them cannot starve the delivery worker. A cluster's pools are
        # per node and unbounded, and its node objects belong to one client: one client there.
        self._accepts = self._redis
        if topology.mode != "cluster":
            self._accepts, _ = _client(
                topology, password or topology.password, timeout, read_timeout, self._sentinel
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
        self._replica_acks = replica_acks
        self._ack_timeout_ms = max(1, int(replica_ack_timeout * 1000))
        self._auto_acks = 0
        self._info_refused = False
        # Replicas in sync with the master at the last look; None: unknown (INFO refused).
        self._online_replicas: int | None = None
        self._replicas_checked_until = 0.0  # monotonic; 0: look again on the next accept
        # The look in progress: accepts arriving meanwhile wait for it rather than each send
        # its own INFO.
        self._looking: asyncio.Task[None] | None = None

    def _unavailable(self, error: Exception) -> StoreUnavailable:
        # Whatever a worker had taken may not have been finished: read the pending entries again
        # once the server answers.
        self._recovered.clear()
        # The master may have changed (a failover) or lost its replica: look at it again.
        self._replicas_checked_until = 0.0
        return StoreUnavailable(f"{self.kind}: {_reason(error)}")

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    @property
    def _outbox(self) -> str:
        return self._key("outbox")

    async def _on_master(self) -> dict[str, Any]:
        """Options that send a keyless command (PING, INFO, SCAN, WAIT) to the node holding this
        threader's keys: on a cluster the node of the prefix's slot, elsewhere the one master."""
        if not isinstance(self._redis, RedisCluster):
            return {}
        await self._redis.initialize()  # the slot map, once
        node = self._redis.get_node_from_key(self._outbox)
        if node is None:
            raise RedisClusterException(f"no node serves the slot of {self._outbox}")
        return {"target_nodes": node}

    async def _acks_wanted(self) -> int:
        """How many replicas must confirm this accept: the fixed number, or for "auto" 1 while
        the master counts a connected replica. Raises ``ReplicaAckTimeout`` without writing
        when the master has fewer replicas in sync than that (looked at every few seconds, every
        quarter second while short)."""
        if self._replica_acks == 0:
            return 0
        if time.monotonic() >= self._replicas_checked_until:
            task = self._looking
            if task is None or task.done():
                task = self._looking = asyncio.get_running_loop().create_task(
                    self._look_at_replicas()
                )
                # Its error reaches the accepts waiting for it; none may be left to read it.
                task.add_done_callback(lambda done: done.cancelled() or done.exception())
            await asyncio.shield(task)  # a caller cancelled does not cancel the others' look
        acks = self._acks_required
        online = self._online_replicas
        if acks and online is not None and online < acks:
            raise ReplicaAckTimeout(
                f"{self.kind}: the master has {online} of {acks} replicas in sync; nothing "
                f"accepted (--replica-acks)"
            )
        return acks

    @property
    def _acks_required(self) -> int:
        """Replicas an accept needs now: the fixed number, or what "auto" last found."""
        return self._auto_acks if self._replica_acks == "auto" else self._replica_acks

    async def _look_at_replicas(self) -> None:
        """Read the master's ``INFO replication``: connected replicas (for "auto") and those in
        sync (state online: a replica still loading the master's snapshot confirms nothing)."""
        try:
            info = await self._accepts.info("replication", **await self._on_master())
        except ResponseError:
            # INFO refused (an ACL without +info): assume a replica rather than accept
            # unreplicated writes silently; --replica-acks 0 says there is none. Whether one is
            # in sync is unknown: the WAIT tells.
            self._info_refused = True
            self._auto_acks = 1
            self._online_replicas = None
            self._replicas_checked_until = time.monotonic() + REPLICAS_CHECKED_FOR
            return
        self._info_refused = False
        self._auto_acks = 1 if int(info.get("connected_slaves", 0)) >= 1 else 0
        self._online_replicas = sum(
            1
            for name, replica in info.items()
            if re.fullmatch(r"slave\d+", name)
            and isinstance(replica, dict)
            and replica.get("state") == "online"
        )
        short = self._online_replicas < self._acks_required
        self._replicas_checked_until = time.monotonic() + (
            REPLICAS_RECHECKED_WHILE_SHORT if short else REPLICAS_CHECKED_FOR
        )

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
            acks = await self._acks_wanted()  # ReplicaAckTimeout here: nothing written
            results, acked = await self._accept_and_wait(keys, args, acks)
        except ERRORS as error:
            raise self._unavailable(error) from error
        if results and results[0] == "full":
            entries, size, new, new_bytes = (int(n) for n in results[1:])
            self._limits.check(entries, size, new, new_bytes)  # raises, with the numbers
            raise OutboxFull(f"outbox full: {entries} entries ({size} bytes) queued")
        if acked < acks:
            # The replica may be gone for good: "auto" looks at the master again.
            self._replicas_checked_until = 0.0
            hint = ""
            if self._replica_acks == "auto" and self._info_refused:
                hint = "; INFO is refused, so 'auto' assumes a replica: --replica-acks 0 if none"
            raise ReplicaAckTimeout(
                f"{self.kind}: {acked} of {acks} replicas confirmed the write within "
                f"{self._ack_timeout_ms} ms (--replica-ack-timeout){hint}"
            )
        return ["duplicate" if r == "duplicate" else "skipped" if r == "skipped" else "queued"
                for r in results]  # fmt: skip

    async def _accept_and_wait(
        self, keys: list[str], args: list[Any], acks: int
    ) -> tuple[list[str], int]:
        """The accept script, then ``WAIT acks timeout`` on the same connection (WAIT counts the
        replicas past the last write of its own connection): one non-transactional pipeline,
        sent to the master (on a cluster, both to the node of the keys' slot)."""
        if not acks:
            # Without a wait, the script alone: a pipeline costs more than the script itself on
            # a single alert (bench/threader.py), and the Script object reloads it on NOSCRIPT.
            return await self._accept(keys=keys, args=args, client=self._accepts), 0
        on_master = await self._on_master()
        for attempt in (1, 2):
            pipe = self._accepts.pipeline(transaction=False)
            # As a command: the cluster pipeline blocks its evalsha method, not the command.
            pipe.execute_command("EVALSHA", self._accept.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", acks, self._ack_timeout_ms, **on_master)
            replies = await pipe.execute(raise_on_error=False)
            if isinstance(replies[0], NoScriptError) and attempt == 1:
                # A new master (a failover, a restart): load the script and send both again.
                await self._accepts.script_load(ACCEPT)
                continue
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            break
        if on_master and on_master != await self._on_master():
            # The slot moved meanwhile (a resharding, a cluster failover): the script may have
            # run on another node than the WAIT. Alertmanager's retry is a duplicate and waits.
            raise RedisClusterException("the slot moved during the accept")
        return replies[0], int(replies[1])

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
        except ERRORS as error:
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
        except ERRORS as error:
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
        except ERRORS as error:
            raise self._unavailable(error) from error

    async def complete(self, entry: OutboxEntry) -> None:
        keys = [
            self._outbox,
            self._key("outbox-size"),
            self._key("sending", entry.delivery.delivery_id),
        ]
        try:
            await self._complete(keys=keys, args=[GROUP, entry.entry_id, entry.size])
        except ERRORS as error:
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
        except ERRORS as error:
            raise self._unavailable(error) from error

    async def parent(self, thread_key: str, generation: int) -> str | None:
        try:
            message = await self._redis.hget(
                self._key("thread", thread_key), f"parent:{generation}"
            )
        except ERRORS as error:
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
        except ERRORS as error:
            raise self._unavailable(error) from error

    async def channel_id(self, channel: str) -> str | None:
        try:
            channel_id = await self._redis.hget(self._key("channels"), channel)
        except ERRORS as error:
            raise self._unavailable(error) from error
        return None if channel_id is None else _text(channel_id)

    async def remember_channel(self, channel: str, channel_id: str) -> None:
        try:
            await self._redis.hset(self._key("channels"), channel, channel_id)
        except ERRORS as error:
            raise self._unavailable(error) from error

    async def mark_sending(self, delivery_id: str) -> bool:
        try:
            first = await self._redis.set(
                self._key("sending", delivery_id), "1", nx=True, px=self._idempotency_ms
            )
        except ERRORS as error:
            raise self._unavailable(error) from error
        return bool(first)

    async def forget_sending(self, delivery_id: str) -> None:
        try:
            await self._redis.delete(self._key("sending", delivery_id))
        except ERRORS as error:
            raise self._unavailable(error) from error

    async def dead_letter(self, entry: OutboxEntry, reason: str) -> None:
        try:
            await self._redis.xadd(
                self._key("dead"),
                {"delivery": entry.delivery.to_json(), "reason": reason},
                maxlen=10_000,
                approximate=True,
            )
        except ERRORS as error:
            raise self._unavailable(error) from error
        await self.complete(entry)

    async def ping(self) -> None:
        try:
            await self._redis.execute_command("PING", **await self._on_master())
        except ERRORS as error:
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
        except ERRORS as error:
            raise self._unavailable(error) from error
        accepted = [Delivery.from_json(fields["delivery"]).accepted_at for _id, fields in first]
        accepted += [Delivery.from_json(json.loads(m)["delivery"]).accepted_at for m in waiting]
        return OutboxSize(streamed + delayed, int(size or 0), min(accepted, default=None))

    async def persistence_info(self) -> dict[str, Any]:
        """``INFO persistence`` and ``INFO memory`` of the master (on a cluster, the node of this
        threader's slot), merged; InfoRefused when INFO is an error."""
        try:
            on_master = await self._on_master()
            info = dict(await self._redis.info("persistence", **on_master))
            info.update(await self._redis.info("memory", **on_master))
        except ResponseError as error:  # NOPERM, a renamed or disabled command
            raise InfoRefused(str(error)) from error
        except ERRORS as error:
            raise self._unavailable(error) from error
        return info

    async def stats(self) -> StoreStats:
        try:
            outbox = await self._redis.xlen(self._outbox)
            delayed = await self._redis.zcard(self._key("delayed"))
            dead = await self._redis.xlen(self._key("dead"))
        except ERRORS as error:
            raise self._unavailable(error) from error
        return {"store": self.kind, "outbox": outbox + delayed, "dead_letters": dead}

    async def threads(self) -> ThreadListing:
        found: dict[str, dict[str, Any]] = {}
        prefix = self._key("thread", "")
        # A prefix is taken literally: its glob characters must not match another's keys.
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        try:
            # On a cluster, SCAN only the node of the prefix's slot: every key is there.
            on_master = await self._on_master()
            async for key in self._redis.scan_iter(match=pattern, count=500, **on_master):
                fields = await self._redis.hgetall(key)
                found[_text(key)[len(prefix) :]] = {_text(k): _text(v) for k, v in fields.items()}
        except ERRORS as error:
            raise self._unavailable(error) from error
        return found

    async def clear_threads(self) -> int:
        keys = list(await self.threads())
        if keys:
            try:
                await self._redis.delete(*(self._key("thread", key) for key in keys))
            except ERRORS as error:
                raise self._unavailable(error) from error
        return len(keys)

    async def close(self) -> None:
        if self._looking is not None:
            self._looking.cancel()
        await self._redis.aclose()
        if self._accepts is not self._redis:
            await self._accepts.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()


def _client(
    topology: RedisTopology,
    password: str | None,
    timeout: float,
    read_timeout: float,
    sentinel: Sentinel | None = None,
) -> tuple[aioredis.Redis | RedisCluster, Sentinel | None]:
    """The client of the topology, and the Sentinel manager (to close its connections); a
    second client of a Sentinel topology shares the first one's ``sentinel``."""
    options: dict[str, Any] = {
        "socket_timeout": read_timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": True,
        "username": topology.username,
        "password": password,
        # A pooled connection the server closed (it restarted, the master moved) is retried once
        # on a fresh one; with Sentinel a fresh connection asks the sentinels for the master.
        "retry": Retry(NoBackoff(), 1),
        "retry_on_error": [RedisConnectionError],
    }
    if topology.tls:
        options["ssl"] = True
    if topology.mode == "cluster":
        nodes = [ClusterNode(host, port) for host, port in topology.nodes]
        return RedisCluster(startup_nodes=nodes, **options), None
    if topology.mode == "sentinel":
        assert topology.master is not None
        if sentinel is not None:
            return sentinel.master_for(topology.master, redis_class=aioredis.Redis), sentinel
        # redis-py's Sentinel has no annotations.
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(topology.nodes),
            sentinel_kwargs={
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "username": topology.username,
                "password": password,
                **({"ssl": True} if topology.tls else {}),
            },
            db=topology.db,
            **options,
        )
        return sentinel.master_for(topology.master, redis_class=aioredis.Redis), sentinel
    [(host, port)] = topology.nodes
    return aioredis.Redis(host=host, port=port, db=topology.db, **options), None


def _reason(error: Exception) -> str:
    """The error in one short line, for /ready and the log."""
    if isinstance(error, MasterNotFoundError):
        # redis-py appends the repr of every sentinel's client: the master's name is what helps.
        named = str(error).split(" : ", 1)[0]
        return f"{named} (no sentinel answered, or none knows a master by that name)"
    text = (str(error).strip().splitlines() or [""])[0].strip() or type(error).__name__
    return text if len(text) <= 300 else text[:300] + "…"


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
