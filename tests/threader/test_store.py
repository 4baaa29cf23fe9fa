"""The store contract, run against every store: memory, SQLite, the machine's real Redis,
private Redis Cluster (3 masters) and Sentinel (master, replica, 3 sentinels) set-ups started once
per session (each test under its own key prefix, removed afterwards), and the machine's PostgreSQL
(one database for the session, migrated once, each test under its own scope: a fresh database per
test would cost a CREATE DATABASE each, and sharing one also runs every test beside the rows of
the others)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import redis

from lumen_alerting.threader.store import (
    Acceptance,
    MemoryStore,
    OutboxFull,
    OutboxLimits,
    StoreUnavailable,
    ThreadStore,
    alert_bytes,
)
from lumen_alerting.threader.store.postgresql import PostgreSQLStore
from lumen_alerting.threader.store.redis import RedisStore
from lumen_alerting.threader.store.sqlite import SQLiteStore
from tests.support.postgres_run import fresh_database
from tests.support.redis_topologies import RedisClusterServers, RedisSentinelSet

REDIS_URL = "redis://127.0.0.1:6379/0"
STORES = ("memory", "sqlite", "redis", "redis-cluster", "redis-sentinel", "postgresql")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture()
def prefix() -> Iterator[str]:
    prefix = f"lumen-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One database on the machine's PostgreSQL for the session's PostgreSQL stores."""
    yield from fresh_database()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(masters=3).start()
    yield servers
    servers.remove()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelSet]:
    servers = RedisSentinelSet().start()
    yield servers
    servers.remove()


@pytest.fixture(params=STORES)
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> Callable[..., ThreadStore]:
    """A factory, so a test can open the same store twice (a restart, a second replica)."""
    url = REDIS_URL
    if request.param in ("redis-cluster", "redis-sentinel"):
        # Started once for the session, on first use; this test's keys removed after it.
        servers = request.getfixturevalue(request.param.replace("-", "_"))
        url = servers.url
        pattern = ("{" + prefix + "}*") if request.param == "redis-cluster" else prefix + "*"
        request.addfinalizer(lambda: servers.delete(pattern))

    def make(**options: Any) -> ThreadStore:
        if request.param == "memory":
            return MemoryStore(**options)
        if request.param == "sqlite":
            return SQLiteStore(str(tmp_path / "state" / "threads.db"), **options)
        if request.param == "postgresql":
            return PostgreSQLStore(request.getfixturevalue("postgres_url"), scope=prefix, **options)
        return RedisStore(url, prefix=prefix, **options)

    make.kind = request.param  # type: ignore[attr-defined]
    return make


def acceptance(
    n: int = 1,
    status: Literal["firing", "resolved"] = "firing",
    key: str | None = None,
    **changes: Any,
) -> Acceptance:
    alert = {"labels": {"alertname": f"A{n}"}, "annotations": {}, "status": status}
    return Acceptance(
        delivery_id=changes.pop("delivery_id", f"d{n}-{status}"),
        thread_key=key or f"fp{n}@2026-11-22T00:00:00Z",
        status=status,
        channel=changes.pop("channel", "#alerts"),
        alert=alert,
        **changes,
    )


async def drain(store: ThreadStore, consumer: str = "w1") -> list[Any]:
    taken = await store.take(consumer, 100, 0.05)
    for entry in taken:
        await store.complete(entry)
    return [entry.delivery for entry in taken]


def test_first_firing_claims_the_thread_and_queues_a_parent(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store()
        assert await store.accept([acceptance(1)]) == ["queued"]
        [delivery] = await drain(store)
        assert (delivery.kind, delivery.generation, delivery.channel) == ("parent", 1, "#alerts")
        assert delivery.alert["labels"] == {"alertname": "A1"}
        assert delivery.alert["annotations"] == {}, "empty maps stay maps"
        await store.close()

    run(scenario())


def test_the_same_alert_twice_is_accepted_once(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store()
        assert await store.accept([acceptance(1), acceptance(1)]) == ["queued", "duplicate"]
        assert await store.accept([acceptance(1)]) == ["duplicate"]
        assert [d.kind for d in await drain(store)] == ["parent"]
        await store.close()

    run(scenario())


def test_repeat_resolve_and_refire(make_store: Any) -> None:
    """Label-keyed threads: a repeat replies, resolve closes, a re-fire opens generation 2."""

    async def scenario() -> None:
        store = make_store()
        key = "A|critical|db|prod|prod"
        steps = [
            acceptance(1, key=key, delivery_id="first"),
            acceptance(1, key=key, delivery_id="again"),
            acceptance(1, "resolved", key=key, delivery_id="resolved"),
            acceptance(1, "resolved", key=key, delivery_id="resolved-again"),
            acceptance(1, key=key, delivery_id="refire"),
        ]
        results = [await store.accept([step]) for step in steps]
        assert results == [["queued"], ["queued"], ["queued"], ["skipped"], ["queued"]]
        kinds = [(d.kind, d.generation) for d in await drain(store)]
        assert kinds == [("parent", 1), ("repeat", 1), ("resolve", 1), ("parent", 2)]
        await store.close()

    run(scenario())


def test_repeats_can_be_skipped(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.accept([acceptance(1)])
        again = acceptance(1, delivery_id="again", reply_on_repeat=False)
        assert await store.accept([again]) == ["skipped"]
        await store.close()

    run(scenario())


def test_resolved_without_a_known_thread_still_says_so(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store()
        assert await store.accept([acceptance(7, "resolved")]) == ["queued"]
        assert [(d.kind, d.generation) for d in await drain(store)] == [("resolved_alone", 1)]
        await store.close()

    run(scenario())


def test_parent_per_generation_and_channel_ids(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.accept([acceptance(1)])
        key = "fp1@2026-11-22T00:00:00Z"
        assert await store.parent(key, 1) is None
        await store.record_parent(key, 1, "C123/1700000000.000100")
        assert await store.parent(key, 1) == "C123/1700000000.000100"
        assert await store.parent(key, 2) is None
        assert await store.channel_id("#alerts") is None
        await store.remember_channel("#alerts", "C123")
        assert await store.channel_id("#alerts") == "C123"
        await store.close()

    run(scenario())


def test_outbox_survives_a_restart_and_returns_untaken_and_unfinished_entries(
    make_store: Any,
) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.accept([acceptance(n) for n in range(1, 4)])
        taken = await store.take("w1", 1, 0.05)  # taken, never completed: the worker "dies"
        assert len(taken) == 1
        await store.close()

        again = make_store()  # the same replica restarts
        if make_store.kind == "memory":
            return  # nothing survives a memory store, by design
        recovered = await again.take("w1", 10, 0.05)
        recovered += await again.take("w1", 10, 0.05)
        assert sorted(e.delivery.delivery_id for e in recovered) == [
            "d1-firing",
            "d2-firing",
            "d3-firing",
        ]
        await again.close()

    run(scenario())


def test_a_dead_workers_entries_are_claimed_by_another(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.accept([acceptance(1)])
        [entry] = await store.take("dead-worker", 10, 0.05)
        assert await store.claim_stale("w2", 60.0, 10) == [], "not stale yet"
        await asyncio.sleep(0.05)
        [claimed] = await store.claim_stale("w2", 0.01, 10)
        assert claimed.delivery == entry.delivery
        await store.complete(claimed)
        assert await store.take("w2", 10, 0.05) == []
        await store.close()

    run(scenario())


def test_kept_entries_are_not_claimed_by_another(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.accept([acceptance(1)])
        [entry] = await store.take("busy-worker", 10, 0.05)
        # Idle longer than the threshold, then kept: the threshold leaves a loaded machine a
        # second between keeping and looking.
        await asyncio.sleep(1.1)
        await store.keep("busy-worker", [entry.entry_id])
        assert await store.claim_stale("w2", 1.0, 10) == [], "kept: not idle"
        await asyncio.sleep(1.1)
        assert len(await store.claim_stale("w2", 1.0, 10)) == 1, "idle again"
        await store.close()

    run(scenario())


def test_postponed_entries_come_back_when_due(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.accept([acceptance(1)])
        [entry] = await store.take("w1", 10, 0.05)
        postponed = time.monotonic()
        await store.postpone(entry, 2.0)  # two seconds: room for a loaded machine to look
        assert await store.take("w1", 10, 0.05) == []
        back: list[Any] = []
        while not back and time.monotonic() - postponed < 30:
            back = await store.take("w1", 10, 0.1)
        assert time.monotonic() - postponed >= 2.0 - 0.05, "not before it was due"
        assert [(b.delivery, b.attempts) for b in back] == [(entry.delivery, 1)]
        await store.close()

    run(scenario())


def test_mark_sending_is_true_only_the_first_time(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store()
        assert await store.mark_sending("d1") is True
        assert await store.mark_sending("d1") is False
        await store.forget_sending("d1")
        assert await store.mark_sending("d1") is True
        await store.close()

    run(scenario())


def test_dead_letters_leave_the_outbox(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.accept([acceptance(1)])
        [entry] = await store.take("w1", 10, 0.05)
        await store.dead_letter(entry, "channel_not_found")
        stats = await store.stats()
        assert stats["dead_letters"] == 1 and stats["outbox"] == 0
        await store.close()

    run(scenario())


def test_keys_expire(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store(idempotency_ttl=0.2, thread_ttl=0.2)
        await store.accept([acceptance(1)])
        await asyncio.sleep(0.3)
        # Both the idempotency key and the thread are gone: the same alert is new again.
        assert await store.accept([acceptance(1)]) == ["queued"]
        assert [d.kind for d in await drain(store)] == ["parent", "parent"]
        await store.close()

    run(scenario())


def test_no_redis_key_lives_forever(prefix: str) -> None:
    async def scenario() -> None:
        store = RedisStore(REDIS_URL, prefix=prefix)
        await store.accept([acceptance(1), acceptance(2, "resolved")])
        await store.mark_sending("d1-firing")
        await store.clear_threads()
        await store.record_parent("fp1@2026-11-22T00:00:00Z", 1, "C1/1.0")  # after a clear
        await store.close()
        client = redis.Redis.from_url(REDIS_URL)
        ttls = {
            key.decode(): client.pttl(key)
            for key in client.scan_iter(match=prefix + "*")
            if client.type(key) == b"string" or b":thread:" in key
        }
        client.close()
        assert ttls and all(ttl > 0 for ttl in ttls.values()), ttls

    run(scenario())


def test_threads_listing_and_clearing(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.accept([acceptance(1), acceptance(2)])
        assert len(await store.threads()) == 2
        assert await store.clear_threads() == 2
        assert await store.threads() == {}
        await store.close()

    run(scenario())


def test_concurrent_acceptances_claim_exactly_once(prefix: str) -> None:
    """Ten copies of one notification at once, through two Redis clients (two replicas)."""

    async def scenario() -> None:
        replicas = [RedisStore(REDIS_URL, prefix=prefix), RedisStore(REDIS_URL, prefix=prefix)]
        batch = [acceptance(n, delivery_id=f"d{n}") for n in range(20)]
        results = await asyncio.gather(*(replicas[i % 2].accept(batch) for i in range(10)))
        for n in range(20):
            assert sorted(r[n] for r in results) == ["duplicate"] * 9 + ["queued"]
        deliveries = await drain(replicas[0])
        assert sorted(d.delivery_id for d in deliveries) == sorted(f"d{n}" for n in range(20))
        assert {d.kind for d in deliveries} == {"parent"}
        for replica in replicas:
            await replica.close()

    run(scenario())


def test_redis_down_is_store_unavailable() -> None:
    async def scenario() -> None:
        store = RedisStore("redis://127.0.0.1:1/0", timeout=0.5)
        with pytest.raises(StoreUnavailable):
            await store.accept([acceptance(1)])
        with pytest.raises(StoreUnavailable):
            await store.ping()
        await store.close()

    run(scenario())


def test_a_consumer_takes_back_its_own_expired_leases(make_store: Any) -> None:
    """A single replica whose completion could not be written (a full disk) gets the entry back
    once its lease runs out: no restart, no second replica needed."""

    async def scenario() -> None:
        store = make_store()
        await store.accept([acceptance(1)])
        [entry] = await store.take("only-replica", 10, 0.05)
        assert await store.claim_stale("only-replica", 60.0, 10) == [], "lease still running"
        await asyncio.sleep(0.05)
        [again] = await store.claim_stale("only-replica", 0.01, 10)
        assert again.delivery == entry.delivery
        await store.close()

    run(scenario())


def test_the_outbox_bound_refuses_whole_notifications(make_store: Any) -> None:
    async def scenario() -> None:
        store = make_store(limits=OutboxLimits(max_entries=3))
        assert await store.accept([acceptance(1), acceptance(2)]) == ["queued", "queued"]
        with pytest.raises(OutboxFull, match="outbox full: 2 entries"):
            await store.accept([acceptance(3), acceptance(4), acceptance(1)])
        assert await store.accept([acceptance(1), acceptance(2)]) == ["duplicate"] * 2, (
            "duplicates need no room"
        )
        # Nothing of the refused notification was kept: its alerts are new, and fit one by one.
        assert await store.accept([acceptance(3)]) == ["queued"]
        with pytest.raises(OutboxFull):
            await store.accept([acceptance(4)])
        [first, *_rest] = await store.take("w1", 10, 0.05)
        await store.complete(first)
        assert await store.accept([acceptance(4)]) == ["queued"], "room again after a delivery"
        assert (await store.outbox()).entries == 3
        await store.close()

    run(scenario())


def test_concurrent_notifications_past_the_bound_refuse_only_the_late_one(make_store: Any) -> None:
    """SQLite commits notifications that arrive together in one transaction: the one refused
    must not take the others with it."""

    async def scenario() -> None:
        store = make_store(limits=OutboxLimits(max_entries=3))
        outcomes = await asyncio.gather(
            store.accept([acceptance(1), acceptance(2)]),
            store.accept([acceptance(3), acceptance(4)]),
            return_exceptions=True,
        )
        # Whichever came first is accepted whole, the other refused whole.
        accepted = [o for o in outcomes if o == ["queued", "queued"]]
        refused = [o for o in outcomes if isinstance(o, OutboxFull)]
        assert (len(accepted), len(refused)) == (1, 1), outcomes
        assert (await store.outbox()).entries == 2
        await store.close()

    run(scenario())


def test_the_outbox_byte_bound_and_its_size(make_store: Any) -> None:
    async def scenario() -> None:
        size = len(alert_bytes(acceptance(1).alert).encode())
        store = make_store(limits=OutboxLimits(max_bytes=2 * size))
        assert (await store.outbox()).entries == 0
        assert (await store.outbox()).oldest_accepted_at is None
        # An empty outbox takes any notification, however large: none is refused forever.
        assert await store.accept([acceptance(n) for n in range(1, 4)]) == ["queued"] * 3
        outbox = await store.outbox()
        assert (outbox.entries, outbox.bytes) == (3, 3 * size)
        assert outbox.oldest_accepted_at is not None
        with pytest.raises(OutboxFull, match="--max-outbox-bytes"):
            await store.accept([acceptance(4)])
        taken = await store.take("w1", 10, 0.05)
        await store.postpone(taken[0], 60)  # waiting for a retry still counts
        for entry in taken[1:]:
            await store.complete(entry)
            await store.complete(entry)  # twice: counted once
        outbox = await store.outbox()
        assert (outbox.entries, outbox.bytes) == (1, size)
        assert await store.accept([acceptance(4)]) == ["queued"]
        await store.close()

    run(scenario())


def test_sqlite_refuses_an_old_json_file_and_a_second_process(tmp_path: Path) -> None:
    old = tmp_path / "threads.json"
    old.write_text('{"seen": {}, "outbox": []}')
    with pytest.raises(StoreUnavailable, match="is not a SQLite database"):
        SQLiteStore(str(old))
    assert old.read_text() == '{"seen": {}, "outbox": []}', "left as it was"

    async def scenario() -> None:
        first = SQLiteStore(str(tmp_path / "threads.db"))
        await first.ping()
        with pytest.raises(StoreUnavailable, match="another threader uses it"):
            SQLiteStore(str(tmp_path / "threads.db"))
        await first.close()

    run(scenario())


def test_sqlite_paths_it_cannot_use_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreUnavailable, match=r"^--store: cannot read .*: Is a directory$"):
        SQLiteStore(str(tmp_path))
    with pytest.raises(StoreUnavailable, match=r"^--store: cannot read .*: Not a directory$"):
        SQLiteStore(str(tmp_path / "file" / "threads.db"))


def test_sqlite_write_failure_accepts_nothing(tmp_path: Path) -> None:
    """A write that fails (here: the connection made read-only; the full disk is
    test_store_faults.py's) is StoreUnavailable and leaves nothing accepted."""

    def query_only(store: SQLiteStore, on: bool) -> Any:
        assert store._db is not None
        return store._run(store._db.execute, f"PRAGMA query_only = {int(on)}")

    async def scenario() -> None:
        path = tmp_path / "threads.db"
        store = SQLiteStore(str(path), limits=OutboxLimits(max_entries=5))
        await store.accept([acceptance(1)])
        await query_only(store, True)
        with pytest.raises(StoreUnavailable, match="readonly"):
            await store.accept([acceptance(2)])
        with pytest.raises(StoreUnavailable):
            await store.ping()
        await query_only(store, False)
        await store.ping()
        assert await store.accept([acceptance(2)]) == ["queued"], "the failed one left no trace"
        assert (await store.outbox()).entries == 2
        await store.close()

    run(scenario())


def test_redis_key_prefixes_keep_threaders_apart(prefix: str) -> None:
    """Two threaders on one database, with their own prefixes: neither sees the other's threads
    or outbox, even when one prefix holds characters that are glob patterns to SCAN."""

    async def scenario() -> None:
        glob, plain = (
            RedisStore(REDIS_URL, prefix=prefix + "a*:"),
            RedisStore(REDIS_URL, prefix=prefix + "ab:"),
        )
        await glob.accept([acceptance(1)])
        await plain.accept([acceptance(2)])
        assert list(await glob.threads()) == ["fp1@2026-11-22T00:00:00Z"]
        assert list(await plain.threads()) == ["fp2@2026-11-22T00:00:00Z"]
        assert [d.delivery_id for d in await drain(glob, "same-host")] == ["d1-firing"]
        assert [d.delivery_id for d in await drain(plain, "same-host")] == ["d2-firing"]
        assert await glob.clear_threads() == 1
        assert list(await plain.threads()) == ["fp2@2026-11-22T00:00:00Z"]
        for store in (glob, plain):
            await store.close()

    run(scenario())
