"""The floor of bench/threader.py: the same stack as the threader (aiohttp server, asyncio)
doing the least a durable acknowledgement can do, one write per request to the same kind of
store: one Redis ``SET``, or one SQLite insert committed in WAL mode on a worker thread.

Run by bench/threader.py: ``floor_server.py PORT redis://HOST:PORT/DB`` or
``floor_server.py PORT sqlite:PATH``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import redis.asyncio as aioredis
from aiohttp import web

Write = Callable[[bytes], Awaitable[None]]


def redis_write(url: str) -> Write:
    store = aioredis.Redis.from_url(url)

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


def main() -> None:
    port, store = int(sys.argv[1]), sys.argv[2]
    write = (
        sqlite_write(store.removeprefix("sqlite:"))
        if store.startswith("sqlite:")
        else (redis_write(store))
    )

    async def accept(request: web.Request) -> web.Response:
        await write(await request.read())
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/alert", accept)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
