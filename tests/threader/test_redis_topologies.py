"""The Redis store beyond one server: store URLs, a Redis Cluster (every key in one slot), the
replica acknowledgement (WAIT) before 2xx, and Sentinel failovers followed without a restart.
The store contract itself runs on every topology in test_store.py."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from lumen_alerting.threader.store import Acceptance, ReplicaAckTimeout, StoreUnavailable
from lumen_alerting.threader.store.redis import RedisStore
from lumen_alerting.threader.store.redis_topology import RedisTopology, parse_redis_url
from tests.support.polling import eventually, free_port
from tests.support.redis_topologies import RedisClusterServers, RedisSentinelSet
from tests.support.threader_run import RedisServer

SECRET = "pa55-w0rd-never-shown"


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def acceptance(n: int, status: str = "firing") -> Acceptance:
    return Acceptance(
        delivery_id=f"d{n}-{status}",
        thread_key=f"fp{n}",
        status="firing" if status == "firing" else "resolved",
        channel="#alerts",
        alert={"labels": {"alertname": f"A{n}"}, "annotations": {}},
    )


def new_prefix() -> str:
    return f"lumen-test:{uuid.uuid4().hex[:12]}:"


# URLs


def topology(mode: Any, *nodes: tuple[str, int], **fields: Any) -> RedisTopology:
    defaults: dict[str, Any] = {"master": None, "db": 0, "tls": False}
    defaults |= {"username": None, "password": None}
    return RedisTopology(mode, nodes, **(defaults | fields))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", topology("standalone", ("127.0.0.1", 6379))),
        ("redis://redis", topology("standalone", ("redis", 6379))),
        (
            "rediss://u:p%40ss@redis:6380/3",
            topology("standalone", ("redis", 6380), db=3, tls=True, username="u", password="p@ss"),
        ),
        ("redis://:pw@[::1]:7000/1", topology("standalone", ("::1", 7000), db=1, password="pw")),
        (
            "redis+sentinel://s1:26380,s2,s3:26381/mymaster",
            topology("sentinel", ("s1", 26380), ("s2", 26379), ("s3", 26381), master="mymaster"),
        ),
        (
            "redis+sentinel://default:pw@s1/mymaster/2?ssl=true",
            topology(
                "sentinel", ("s1", 26379), master="mymaster", db=2, tls=True,
                username="default", password="pw",
            ),
        ),
        ("redis+cluster://n1:7000,n2:7001", topology("cluster", ("n1", 7000), ("n2", 7001))),
        ("redis+cluster://n1:7000/0?ssl=false", topology("cluster", ("n1", 7000))),
        ("REDIS+CLUSTER://n1", topology("cluster", ("n1", 6379))),
    ],
)  # fmt: skip
def test_store_urls(url: str, expected: RedisTopology) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"http://u:{SECRET}@host/0", "scheme must be"),
        (f"{SECRET}@host:6379", "scheme must be"),
        (f"redis://:{SECRET}", "has no host"),
        (f"redis://u:{SECRET}@host:{SECRET}/0", "bad port"),
        (f"redis://u:{SECRET}@host:99999/0", "bad port"),
        (f"redis://u:{SECRET}@h1,h2/0", "one host:port only"),
        (f"redis://u:{SECRET}@host/x{SECRET}", "whole number"),
        (f"redis://u:{SECRET}@host/0/1", "too many path segments"),
        (f"redis+sentinel://u:{SECRET}@s1:26379", "master's name is missing"),
        (f"redis+sentinel://u:{SECRET}@s1,,s2/m", "address #2 has no host"),
        (f"redis+cluster://u:{SECRET}@n1/1", "database 0 only"),
        (f"redis+cluster://u:{SECRET}@n1?password={SECRET}", "unknown query parameter"),
        (f"redis+cluster://u:{SECRET}@n1?ssl={SECRET}", "ssl must be true or false"),
        (f"redis://u:{SECRET}@[::1/0", "bad [IPv6] host"),
        (f"redis://u:{SECRET}@host/0#{SECRET}", "fragment"),
    ],
)
def test_bad_store_urls_say_why_in_one_line_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^[^\n]+$") as raised:
        parse_redis_url(url)
    assert message in str(raised.value)
    assert SECRET not in str(raised.value)
    assert "pa55" not in str(raised.value)


def test_a_topology_never_shows_its_password() -> None:
    topology = parse_redis_url(f"redis://u:{SECRET}@host:6379/0")
    assert topology.password == SECRET
    assert SECRET not in repr(topology)


def test_store_options_are_checked() -> None:
    with pytest.raises(ValueError, match="hash tag"):
        RedisStore("redis+cluster://127.0.0.1:1", prefix="lumen:{team}:")
    with pytest.raises(ValueError, match="replica acks"):
        RedisStore("redis://127.0.0.1:1", replica_acks=-1)
    with pytest.raises(ValueError, match="replica acks"):
        RedisStore("redis://127.0.0.1:1", replica_acks="all")  # type: ignore[arg-type]


def test_no_sentinel_to_ask_is_one_short_line() -> None:
    """What /ready and the log say when no sentinel answers: the master's name, in one line,
    not redis-py's repr of every sentinel client."""
    port = free_port()

    async def scenario() -> str:
        store = RedisStore(f"redis+sentinel://127.0.0.1:{port},127.0.0.1:{port}/lumen-m/0")
        try:
            with pytest.raises(StoreUnavailable) as refused:
                await store.ping()
            return str(refused.value)
        finally:
            await store.close()

    message = asyncio.run(scenario())
    assert message.startswith("redis-sentinel: No master found for 'lumen-m'"), message
    assert "\n" not in message and len(message) < 200, message
    assert "<redis" not in message


# Redis Cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(masters=3).start()
    yield servers
    servers.remove()


def test_every_key_of_a_threader_is_in_one_slot_of_the_cluster(
    cluster: RedisClusterServers,
) -> None:
    prefix = new_prefix()

    async def scenario() -> None:
        store = RedisStore(cluster.url, prefix=prefix)
        assert store.kind == "redis-cluster"
        await store.accept([acceptance(n) for n in range(1, 30)])
        await store.accept([acceptance(1, "resolved")])
        taken = await store.take("w1", 5, 0.1)
        await store.postpone(taken[0], 60)
        await store.dead_letter(taken[1], "channel_not_found")
        await store.complete(taken[2])
        assert await store.mark_sending("d4-firing")
        await store.record_parent("fp5", 1, "C1/1.0")
        await store.remember_channel("#alerts", "C1")
        assert len(await store.threads()) == 29
        assert (await store.stats())["outbox"] == 28
        assert "aof_enabled" in await store.persistence_info()
        await store.ping()
        await store.close()
        for node in cluster.nodes:  # a script lost (a restart, a failover) is loaded again
            client = redis.Redis(port=node.port)
            client.script_flush()
            client.close()
        # WAIT goes to the node of the slot, on the script's connection: one answer, and no
        # replica in this cluster.
        strict = RedisStore(cluster.url, prefix=prefix, replica_acks=1, replica_ack_timeout=0.2)
        with pytest.raises(ReplicaAckTimeout, match="0 of 1 replicas"):
            await strict.accept([acceptance(1)])
        await strict.close()

    try:
        run(scenario())
        slots: dict[str, set[int]] = {}
        for node in cluster.nodes:
            client = redis.Redis(port=node.port, decode_responses=True)
            for key in client.scan_iter(match="{" + prefix + "}*"):
                slots.setdefault(key, set()).add(int(client.cluster("KEYSLOT", key)))
                slots[key].add(node.port)
            client.close()
        # Every kind of key: the outbox, its size, the delayed and dead entries, the idempotency
        # and sending keys, threads and channels.
        kinds = {key.split("}", 1)[1].split(":", 1)[0] for key in slots}
        assert kinds >= {"outbox", "outbox-size", "delayed", "dead", "idem", "sending"}
        assert kinds >= {"thread", "channels"}
        # One slot and one node for all of them.
        assert len({frozenset(found) for found in slots.values()}) == 1, slots
    finally:
        cluster.delete("{" + prefix + "}*")


# WAIT: a master and a replica, no sentinels


class Pair:
    def __init__(self) -> None:
        self.master = RedisServer()
        self.replica = RedisServer()

    def start(self) -> Pair:
        self.master.start()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.master.port)).start()
        eventually(self.in_sync, 60, "the replica in sync")
        return self

    def in_sync(self) -> bool:
        master = redis.Redis(port=self.master.port)
        replica = redis.Redis(port=self.replica.port)
        try:
            offset = master.info("replication")["master_repl_offset"]
            status = replica.info("replication")
            return bool(
                status.get("master_link_status") == "up"
                and status.get("slave_repl_offset", -1) >= offset
            )
        finally:
            master.close()
            replica.close()

    def remove(self) -> None:
        self.replica.remove()
        self.master.remove()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    servers = Pair().start()
    yield servers
    servers.remove()


def stopped(server: RedisServer) -> Any:
    """SIGSTOP the server for the block: connected, but it acknowledges nothing."""

    class Stopped:
        def __enter__(self) -> None:
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGSTOP)

        def __exit__(self, *_: object) -> None:
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGCONT)

    return Stopped()


def test_accept_waits_for_the_replica(pair: Pair) -> None:
    prefix = new_prefix()

    async def scenario() -> None:
        durable = RedisStore(
            pair.master.url, prefix=prefix, replica_acks=1, replica_ack_timeout=0.5
        )
        auto = RedisStore(pair.master.url, prefix=prefix, replica_ack_timeout=0.5)
        off = RedisStore(pair.master.url, prefix=prefix, replica_acks=0, replica_ack_timeout=0.5)
        assert await durable.accept([acceptance(1)]) == ["queued"]
        assert await auto.accept([acceptance(2)]) == ["queued"]
        with stopped(pair.replica):
            for store, n in ((durable, 3), (auto, 4)):
                started = time.monotonic()
                with pytest.raises(ReplicaAckTimeout, match="0 of 1 replicas"):
                    await store.accept([acceptance(n)])
                assert time.monotonic() - started < 5, "about the ack timeout, not longer"
            # Off: the master's word is enough.
            assert await off.accept([acceptance(5)]) == ["queued"]
            # The retry of a notification answered 503 is a duplicate by now; its 2xx too waits
            # for the replica to have the first acceptance.
            with pytest.raises(ReplicaAckTimeout):
                await durable.accept([acceptance(5)])
        eventually(pair.in_sync, 60, "the replica back in sync")
        # A server without the script (a restart, a new master) gets it loaded again.
        flusher = redis.Redis(port=pair.master.port)
        flusher.script_flush()
        flusher.close()
        assert await durable.accept([acceptance(3), acceptance(5)]) == ["duplicate", "duplicate"]
        assert await auto.accept([acceptance(6)]) == ["queued"]
        entries = await durable.take("w1", 100, 0.1)
        assert sorted(e.delivery.delivery_id for e in entries) == [
            f"d{n}-firing" for n in range(1, 7)
        ], "a refused accept's write stays on the master: its retry is a duplicate"
        for store in (durable, auto, off):
            await store.close()

    try:
        run(scenario())
    finally:
        client = redis.Redis(port=pair.master.port)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()


def test_a_completion_after_a_postpone_keeps_the_sending_note(pair: Pair) -> None:
    """A worker whose store call failed hands the entry back (postpone: a new entry) while the
    same entry, read again from the pending list, is delivered and completed. The completion
    must not drop the "sending" note the new entry needs to look in Slack before posting: it
    did, and the failover bench saw alerts posted twice under one delivery id."""
    prefix = new_prefix()

    async def scenario() -> None:
        store = RedisStore(pair.master.url, prefix=prefix, replica_acks=0)
        assert await store.accept([acceptance(1)]) == ["queued"]
        [entry] = await store.take("w1", 10, 0.1)
        assert await store.mark_sending("d1-firing")  # posted next
        await store.postpone(entry, 0)  # the hand-back
        await store.complete(entry)  # the retake's completion: the entry is gone already
        [again] = await store.take("w2", 10, 0.5)
        assert again.delivery.delivery_id == "d1-firing" and again.attempts == 1
        assert not await store.mark_sending("d1-firing"), "look in Slack first"
        await store.complete(again)
        assert await store.mark_sending("d1-firing"), "this completion removed its entry"
        assert (await store.outbox()).entries == 0
        await store.close()

    try:
        run(scenario())
    finally:
        client = redis.Redis(port=pair.master.port)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()


def test_auto_without_a_replica_accepts_on_the_master_alone() -> None:
    servers = Pair().start()
    server, replica = servers.master, servers.replica

    async def scenario() -> None:
        store = RedisStore(server.url, prefix=new_prefix(), replica_ack_timeout=3.0)
        assert await store.accept([acceptance(1)]) == ["queued"]
        replica.kill()  # the master sees the link close and counts no replica

        async def accepted(n: int) -> bool:
            try:
                return await store.accept([acceptance(n)]) == ["queued"]
            except ReplicaAckTimeout:
                return False  # the first one after the loss, at most: then it looks again

        results = [await accepted(n) for n in range(2, 5)]
        assert results[1:] == [True, True], results
        started = time.monotonic()
        assert await store.accept([acceptance(9)]) == ["queued"]
        assert time.monotonic() - started < 2, "no WAIT (of 3 s) when there is no replica"
        await store.close()
        # A fixed number is kept, replica or not.
        strict = RedisStore(
            server.url, prefix=new_prefix(), replica_acks=1, replica_ack_timeout=0.2
        )
        with pytest.raises(ReplicaAckTimeout):
            await strict.accept([acceptance(1)])
        await strict.close()

    try:
        run(scenario())
    finally:
        servers.remove()


def test_auto_assumes_a_replica_when_info_is_refused() -> None:
    server = RedisServer().start()
    admin = redis.Redis(port=server.port)
    admin.acl_setuser(
        "lumen", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-info"]
    )
    admin.close()
    url = f"redis://lumen@127.0.0.1:{server.port}/0"

    async def scenario() -> None:
        store = RedisStore(url, password="pw", prefix=new_prefix(), replica_ack_timeout=0.2)
        with pytest.raises(ReplicaAckTimeout, match="--replica-acks 0 if none"):
            await store.accept([acceptance(1)])
        await store.close()
        store = RedisStore(url, password="pw", prefix=new_prefix(), replica_acks=0)
        assert await store.accept([acceptance(1)]) == ["queued"]
        await store.close()

    try:
        run(scenario())
    finally:
        server.remove()


# Sentinel


def test_a_sentinel_failover_is_followed_without_a_restart() -> None:
    servers = RedisSentinelSet(password=SECRET).start()
    prefix = new_prefix()

    async def scenario() -> None:
        # The password from --store-password-file: for the sentinels and the data nodes.
        store = RedisStore(servers.url, prefix=prefix, password=SECRET, timeout=1.0)
        assert store.kind == "redis-sentinel"
        assert await store.accept([acceptance(1)]) == ["queued"]  # WAITed for the replica
        assert "aof_enabled" in await store.persistence_info()
        servers.master.kill()
        servers.wait_for_promotion(60)
        # The same object: the calls during the switch fail fast, never hang; then it works.
        deadline = time.monotonic() + 60
        failures = 0
        while True:
            started = time.monotonic()
            try:
                answer = await store.accept([acceptance(2)])
                break
            except StoreUnavailable as error:
                assert SECRET not in str(error)
                assert time.monotonic() - started < 5, "within the timeout (and one retry)"
                failures += 1
                assert time.monotonic() < deadline, error
                await asyncio.sleep(0.2)
        assert answer == ["queued"]  # auto: the new master has no replica, so no WAIT
        entries = await store.take("w1", 10, 0.5)
        assert sorted(e.delivery.delivery_id for e in entries) == ["d1-firing", "d2-firing"], (
            "the entry accepted with WAIT before the kill is on the new master"
        )
        for entry in entries:
            await store.complete(entry)
        assert (await store.outbox()).entries == 0
        await store.close()

    try:
        run(scenario())
    finally:
        servers.remove()


def test_without_a_replica_in_sync_accepts_are_refused_at_once() -> None:
    """After a failover the promoted replica has no replica of its own until the old master
    resyncs: a WAIT can only time out. Accepts are refused at once, nothing written, instead of
    each holding a pooled connection for the whole ack timeout (a storm of them ran the pool out,
    "Too many connections", and the delivery worker's calls failed with them). They resume once
    a replica is in sync again."""
    servers = RedisSentinelSet().start()
    prefix = new_prefix()
    storm = 150  # more than the connection pool's 100

    async def scenario() -> None:
        store = RedisStore(servers.url, prefix=prefix, replica_acks=1, replica_ack_timeout=3.0)
        assert await store.accept([acceptance(0)]) == ["queued"]  # WAITed for the replica
        servers.replica.kill()
        master = servers.client(servers.master.port)
        eventually(
            lambda: master.info("replication")["connected_slaves"] == 0, 60, "the replica gone"
        )
        await store.take("w1", 10, 0.1)  # the worker has its entry (and the group)
        # The first accept after the loss still trusts the last look and waits the timeout out;
        # then the store looks at the master again.
        with pytest.raises(ReplicaAckTimeout, match="0 of 1 replicas confirmed"):
            await store.accept([acceptance(storm + 1)])

        async def refused(n: int) -> type[Exception] | None:
            try:
                await store.accept([acceptance(n)])
            except StoreUnavailable as error:
                return type(error)
            return None

        started = time.monotonic()
        # The delivery worker, meanwhile: its calls get connections.
        worker = asyncio.gather(store.take("w1", 10, 0.1), store.mark_sending("d0-firing"))
        results = await asyncio.gather(*(refused(n) for n in range(1, storm + 1)))
        taken, first = await worker
        elapsed = time.monotonic() - started
        assert results == [ReplicaAckTimeout] * storm, set(results)
        assert [entry.delivery.delivery_id for entry in taken] == [f"d{storm + 1}-firing"]
        assert first is True
        assert elapsed < 2.0, f"{elapsed:.1f} s: refused without waiting for the 3 s timeout"
        keys = [key.decode() for key in master.scan_iter(match=prefix + "*")]
        assert sorted(key for key in keys if ":idem:" in key) == [
            f"{prefix}idem:d0-firing",
            f"{prefix}idem:d{storm + 1}-firing",
        ], "nothing of a refusal without a WAIT written"
        with pytest.raises(ReplicaAckTimeout, match="0 of 1 replicas in sync"):
            await store.accept([acceptance(1)])
        # A replica back in sync: accepts resume within a look or two.
        servers.replica.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                assert await store.accept([acceptance(1)]) == ["queued"]
                break
            except ReplicaAckTimeout:
                assert time.monotonic() < deadline, "accepts never resumed"
                await asyncio.sleep(0.1)
        master.close()
        await store.close()

    try:
        run(scenario())
    finally:
        servers.remove()
