"""What only the PostgreSQL store has to show (the contract itself is test_store.py's): scopes
keep threaders apart in one database, replicas share it safely (one parent per alert, no entry
taken twice), old rows are deleted, a server crash loses nothing acknowledged, and every failure
is one line without the password."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from lumen_alerting.threader.store import OutboxEntry, StoreUnavailable
from lumen_alerting.threader.store import postgresql as postgresql_store
from lumen_alerting.threader.store.postgresql import PostgreSQLStore
from tests.support.postgres_run import PostgresServer, fresh_database
from tests.threader.test_store import acceptance, drain


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    yield from fresh_database()


@pytest.fixture()
def empty_database() -> Iterator[str]:
    """A database of the test's own, without the schema yet."""
    yield from fresh_database()


@pytest.fixture()
def scope() -> str:
    return f"lumen-test:{uuid.uuid4().hex[:12]}:"


def rows(url: str, table: str, scope: str) -> int:
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as connection:
        query = f"SELECT count(*) FROM {table} WHERE scope = %s"  # table: the test's own
        found = connection.execute(query, (scope,)).fetchone()
    assert found is not None
    return int(found[0])


def test_scopes_keep_threaders_apart(database: str, scope: str) -> None:
    async def scenario() -> None:
        one = PostgreSQLStore(database, scope=scope + "one:")
        other = PostgreSQLStore(database, scope=scope + "other:")
        await one.accept([acceptance(1)])
        await other.accept([acceptance(2), acceptance(3)])
        await one.remember_channel("#alerts", "C1")
        assert await other.channel_id("#alerts") is None
        assert list(await one.threads()) == ["fp1@2026-11-22T00:00:00Z"]
        assert (await one.outbox()).entries == 1 and (await other.outbox()).entries == 2
        assert [d.delivery_id for d in await drain(one, "same-host")] == ["d1-firing"]
        assert await one.clear_threads() == 1
        assert len(await other.threads()) == 2
        stats = await other.stats()
        assert (stats["threads"], stats["outbox"]) == (2, 2)
        # The same delivery id in the other scope is new there.
        assert await other.accept([acceptance(1)]) == ["queued"]
        for store in (one, other):
            await store.close()

    run(scenario())


def test_two_replicas_claim_each_alert_once(database: str, scope: str) -> None:
    """Ten copies of one notification at once, through two store objects (two replicas, two
    connection pools): each alert is queued once, as one parent."""

    async def scenario() -> None:
        replicas = [PostgreSQLStore(database, scope=scope), PostgreSQLStore(database, scope=scope)]
        batch = [acceptance(n, delivery_id=f"d{n}") for n in range(20)]
        results = await asyncio.gather(*(replicas[i % 2].accept(batch) for i in range(10)))
        for n in range(20):
            assert sorted(r[n] for r in results) == ["duplicate"] * 9 + ["queued"]
        # Then the same alerts as new occurrences' repeats, concurrently: one reply each.
        repeats = [acceptance(n, delivery_id=f"again{n}") for n in range(20)]
        await asyncio.gather(*(replicas[i % 2].accept(repeats) for i in range(4)))
        deliveries = await drain(replicas[0])
        kinds = sorted((d.kind, d.thread_key) for d in deliveries)
        keys = sorted(f"fp{n}@2026-11-22T00:00:00Z" for n in range(20))
        assert kinds == sorted([("parent", k) for k in keys] + [("repeat", k) for k in keys])
        for replica in replicas:
            await replica.close()

    run(scenario())


def test_consumers_never_take_the_same_entry(database: str, scope: str) -> None:
    """Two replicas' consumers take at once, in small bites (SKIP LOCKED): every entry is taken
    exactly once."""

    async def scenario() -> None:
        replicas = [PostgreSQLStore(database, scope=scope), PostgreSQLStore(database, scope=scope)]
        for start in range(0, 300, 50):
            await replicas[0].accept([acceptance(n) for n in range(start, start + 50)])
        taken: list[OutboxEntry] = []

        async def consume(store: PostgreSQLStore, consumer: str) -> None:
            while True:
                entries = await store.take(consumer, 7, 0.2)
                if not entries:
                    return
                taken.extend(entries)

        await asyncio.gather(
            *(consume(replicas[i % 2], f"w{i}") for i in range(6)),
        )
        ids = [entry.entry_id for entry in taken]
        assert len(ids) == len(set(ids)) == 300
        for replica in replicas:
            await replica.close()

    run(scenario())


def test_old_keys_threads_and_notes_are_deleted(
    database: str, scope: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgresql_store, "EXPIRY_BATCH", 3)  # several batches per round

    async def scenario() -> None:
        store = PostgreSQLStore(
            database, scope=scope, idempotency_ttl=0.2, thread_ttl=0.2, expire_every=0
        )
        await store.accept([acceptance(n) for n in range(10)])
        await store.mark_sending("d1-firing")
        await store.record_parent("fp1@2026-11-22T00:00:00Z", 1, "C1/1.0")
        for table in ("threader_idempotency", "threader_threads", "threader_sending"):
            assert rows(database, table, scope) > 0, table
        await asyncio.sleep(0.3)
        await store.take("w1", 100, 0)  # expiry runs from take
        for table in (
            "threader_idempotency",
            "threader_threads",
            "threader_parents",
            "threader_sending",
        ):
            assert rows(database, table, scope) == 0, table
        assert rows(database, "threader_outbox", scope) == 10, "queued entries stay"
        await store.close()

    run(scenario())


def test_expiry_waits_its_interval(database: str, scope: str) -> None:
    async def scenario() -> None:
        store = PostgreSQLStore(database, scope=scope, idempotency_ttl=0.1, expire_every=3600)
        await store.take("w1", 1, 0)  # the first take runs a round
        await store.accept([acceptance(1)])
        await asyncio.sleep(0.2)
        await store.take("w1", 1, 0)
        assert rows(database, "threader_idempotency", scope) == 1, "not before the next round"
        assert await store.accept([acceptance(1)]) == ["queued"], "yet expired all the same"
        await store.close()

    run(scenario())


def test_a_server_crash_loses_nothing_acknowledged() -> None:
    """Notifications keep coming while PostgreSQL is killed (SIGKILL) and started again: those
    that fail are StoreUnavailable in one line without the password, the store works again on
    its own afterwards, and every acknowledged alert is in the outbox."""
    server = PostgresServer().start()
    # trust authentication ignores the password; it is there to be kept out of the messages.
    url = server.url.replace("postgres@", "postgres:s3cret-pw@")

    async def scenario() -> None:
        store = PostgreSQLStore(url, scope="crash:", timeout=2.0)
        acknowledged: list[str] = []
        failures: list[str] = []
        restarted = asyncio.Event()

        async def send() -> None:
            n = 0
            while len(acknowledged) < 60:
                n += 1
                try:
                    await store.accept([acceptance(n)])
                except StoreUnavailable as error:
                    failures.append(str(error))
                    await asyncio.sleep(0.05)
                    continue
                acknowledged.append(f"d{n}-firing")
                if len(acknowledged) == 30:
                    await asyncio.to_thread(server.kill)
                    down = await _fail(store)
                    failures.append(down)
                    await asyncio.to_thread(server.start)
                    restarted.set()
                if len(acknowledged) > 30:
                    assert restarted.is_set()

        await send()
        assert failures, "the crash was noticed"
        for failure in failures:
            assert "\n" not in failure and "s3cret-pw" not in failure, failure
        queued = [d.delivery_id for d in await drain(store)]
        queued += [d.delivery_id for d in await drain(store)]
        assert sorted(queued) == sorted(acknowledged)
        await store.ping()
        await store.close()

    try:
        run(scenario())
    finally:
        server.remove()


async def _fail(store: PostgreSQLStore) -> str:
    """Every call fails while the server is down; the accept's message."""
    with pytest.raises(StoreUnavailable) as accept_error:
        await store.accept([acceptance(10_000)])
    with pytest.raises(StoreUnavailable):
        await store.take("w1", 1, 0)
    with pytest.raises(StoreUnavailable):
        await store.ping()
    return str(accept_error.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://lumen:s3cret-pw@127.0.0.1:1/lumen", r"^--store: cannot open .*:1/lumen: "),
        ("mysql://lumen:s3cret-pw@127.0.0.1/lumen", "unsupported URL scheme mysql://"),
        ("postgresql+asyncpg://lumen:s3cret-pw@h/x", "unsupported URL scheme"),
        ("not a url at all s3cret-pw", "not a PostgreSQL URL"),
    ],
)
def test_bad_or_unreachable_databases_are_one_line(url: str, message: str) -> None:
    with pytest.raises(StoreUnavailable, match=message) as error:
        PostgreSQLStore(url, scope="x:", timeout=1.0)
    assert "\n" not in str(error.value) and "s3cret-pw" not in str(error.value), error.value


def test_a_server_that_never_answers_is_unavailable_in_time() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections are queued, never answered
        port = silent.getsockname()[1]
        with pytest.raises(StoreUnavailable, match=r"^--store: cannot open ") as error:
            PostgreSQLStore(f"postgresql://postgres@127.0.0.1:{port}/x", scope="x:", timeout=1.0)
    assert "\n" not in str(error.value)


def test_a_newer_schema_is_refused_in_one_line(empty_database: str, scope: str) -> None:
    run(PostgreSQLStore(empty_database, scope=scope).close())  # migrated
    plain = empty_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as connection:
        connection.execute("UPDATE lumen_threads_schema SET version_num = '9999'")
    with pytest.raises(StoreUnavailable, match=r"^--store: cannot open .*9999") as error:
        PostgreSQLStore(empty_database, scope=scope)
    assert "\n" not in str(error.value)


def test_replicas_starting_together_migrate_once(empty_database: str, scope: str) -> None:
    """Several stores opened at once on an empty database: one migrates, the others wait for
    its advisory lock and find the schema there."""

    async def scenario() -> None:
        opened = await asyncio.gather(
            *(asyncio.to_thread(PostgreSQLStore, empty_database, scope=scope) for _ in range(4))
        )
        assert await opened[0].accept([acceptance(1)]) == ["queued"]
        assert await opened[3].accept([acceptance(1)]) == ["duplicate"]
        for store in opened:
            await store.close()

    run(scenario())


def test_no_answer_in_time_is_unavailable_and_the_store_goes_on(database: str, scope: str) -> None:
    """An accept that waits longer than the timeout (here for a lock another session holds) is
    StoreUnavailable and leaves nothing behind; once the lock is free the store works again."""

    async def scenario() -> None:
        store = PostgreSQLStore(database, scope=scope, timeout=1.0)
        await store.accept([acceptance(1)])
        plain = database.replace("postgresql+psycopg://", "postgresql://")
        async with await psycopg.AsyncConnection.connect(plain) as blocker:
            await blocker.execute(
                "SELECT 1 FROM threader_scopes WHERE scope = %s FOR UPDATE", (scope,)
            )
            with pytest.raises(StoreUnavailable, match="no answer within 1 s"):
                await store.accept([acceptance(2)])
            await blocker.rollback()
        assert await store.accept([acceptance(2)]) == ["queued"], "nothing of it was kept"
        assert (await store.outbox()).entries == 2
        await store.close()

    run(scenario())


def test_the_newest_dead_letters_are_kept(
    database: str, scope: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgresql_store, "DEAD_LETTERS_KEPT", 3)
    monkeypatch.setattr(postgresql_store, "EXPIRY_BATCH", 1)

    async def scenario() -> None:
        store = PostgreSQLStore(database, scope=scope)
        await store.accept([acceptance(n) for n in range(5)])
        for entry in await store.take("w1", 10, 0.05):
            await store.dead_letter(entry, f"reason {entry.delivery.delivery_id}")
        assert (await store.stats())["dead_letters"] == 5
        assert (await store.expire())["dead letters"] == 2
        assert (await store.stats())["dead_letters"] == 3
        plain = database.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain) as connection:
            kept = connection.execute(
                "SELECT reason FROM threader_dead_letters WHERE scope = %s ORDER BY id", (scope,)
            ).fetchall()
        assert [reason for (reason,) in kept] == [f"reason d{n}-firing" for n in (2, 3, 4)]
        await store.close()

    run(scenario())


def test_notifications_written_in_one_batch_are_decided_in_order(database: str, scope: str) -> None:
    """Notifications that arrive together share one transaction; each is decided as if alone,
    in the order they came: a repeat, a resolution and a re-fire of one thread included."""

    async def scenario() -> None:
        store = PostgreSQLStore(database, scope=scope)
        key = "A|critical|db|prod|prod"
        steps = [
            acceptance(1, key=key, delivery_id="first"),
            acceptance(1, key=key, delivery_id="again"),
            acceptance(1, "resolved", key=key, delivery_id="resolved"),
            acceptance(1, "resolved", key=key, delivery_id="resolved-again"),
            acceptance(1, key=key, delivery_id="refire"),
            acceptance(1, key=key, delivery_id="first"),
        ]
        results = await asyncio.gather(*(store.accept([step]) for step in steps))
        assert results == [
            ["queued"],
            ["queued"],
            ["queued"],
            ["skipped"],
            ["queued"],
            ["duplicate"],
        ]
        kinds = [(d.kind, d.generation) for d in await drain(store)]
        assert kinds == [("parent", 1), ("repeat", 1), ("resolve", 1), ("parent", 2)]
        assert (await store.threads())[key]["generation"] == 2
        await store.close()

    run(scenario())
