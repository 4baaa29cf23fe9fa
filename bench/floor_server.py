"""The floor of bench/threader.py: the same stack as the threader (aiohttp server, asyncio)
doing the least a durable acknowledgement can do, one write per request to the same kind of
store, through the same client library the threader's store uses:

- Redis: one ``SET``; on Sentinel one ``SET`` then ``WAIT 1`` on the same connection (the
  threader's default there: an acknowledged write is on a replica too); on Cluster one ``SET``
  through the cluster client.
- SQLite: one insert committed in WAL mode on a worker thread.
- PostgreSQL: one insert committed, through SQLAlchemy's async engine on psycopg 3.

Run by bench/threader.py: ``floor_server.py PORT STORE`` with STORE a ``redis://``,
``redis+sentinel://HOST:PORT/MASTER``, ``redis+cluster://HOST:PORT``, ``postgresql://`` URL or
``sqlite:PATH``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import redis.asyncio as aioredis
import sqlalchemy as sa
from aiohttp import web
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from sqlalchemy.ext.asyncio import create_async_engine

from lumen_alerting.threader.store.redis_topology import parse_redis_url

Write = Callable[[bytes], Awaitable[None]]


def redis_write(url: str) -> Write:
    store = aioredis.Redis.from_url(url)

    async def write(body: bytes) -> None:
        await store.set(f"floor:{uuid.uuid4().hex}", body, ex=60)

    return write


def sentinel_write(url: str) -> Write:
    topology = parse_redis_url(url)  # the threader's own reading of the URL
    assert topology.master is not None  # a sentinel URL always names its master
    sentinels = Sentinel(list(topology.nodes))  # type: ignore[no-untyped-call]
    store = sentinels.master_for(topology.master)

    async def write(body: bytes) -> None:
        # One connection for both, as WAIT counts the writes of its own connection.
        async with store.pipeline(transaction=False) as pipe:
            pipe.set(f"floor:{uuid.uuid4().hex}", body, ex=60)
            pipe.execute_command("WAIT", 1, 1000)
            _ok, replicas = await pipe.execute()
        if replicas < 1:
            raise RuntimeError("no replica confirmed the floor's write")

    return write


def cluster_write(url: str) -> Write:
    (host, port), *_rest = parse_redis_url(url).nodes
    store = RedisCluster(host=host, port=port)

    async def write(body: bytes) -> None:
        await store.set(f"floor:{uuid.uuid4().hex}", body, ex=60)

    return write


def sqlite_write(path: str) -> Write:
    # One connection on one thread, as the threader's SQLite store does.
    executor = ThreadPoolExecutor(max_workers=1)
    connection = executor.submit(sqlite3.connect, path, check_same_thread=False).result()
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE IF NOT EXISTS floor (id TEXT PRIMARY KEY, body BLOB)")

    def insert(body: bytes) -> None:
        with connection:
            connection.execute("INSERT INTO floor VALUES (?, ?)", (uuid.uuid4().hex, body))

    async def write(body: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(executor, insert, body)

    return write


def postgresql_write(url: str) -> Write:
    engine = create_async_engine(
        "postgresql+psycopg://" + url.split("://", 1)[1], pool_size=16, max_overflow=0
    )
    table = sa.table("floor", sa.column("id"), sa.column("body"))
    ready = asyncio.Lock()
    created = False

    async def write(body: bytes) -> None:
        nonlocal created
        if not created:
            async with ready:
                if not created:
                    async with engine.begin() as connection:
                        await connection.execute(
                            sa.text(
                                "CREATE TABLE IF NOT EXISTS floor (id TEXT PRIMARY KEY, body BYTEA)"
                            )
                        )
                    created = True
        async with engine.begin() as connection:
            await connection.execute(sa.insert(table).values(id=uuid.uuid4().hex, body=body))

    return write


def floor_write(store: str) -> Write:
    if store.startswith("sqlite:"):
        return sqlite_write(store.removeprefix("sqlite:"))
    if store.startswith("redis+sentinel://"):
        return sentinel_write(store)
    if store.startswith("redis+cluster://"):
        return cluster_write(store)
    if store.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return postgresql_write(store)
    return redis_write(store)


def main() -> None:
    port, store = int(sys.argv[1]), sys.argv[2]
    write = floor_write(store)

    async def accept(request: web.Request) -> web.Response:
        await write(await request.read())
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/alert", accept)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
