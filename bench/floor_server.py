"""The floor of bench/threader.py: the same stack as the threader (aiohttp server, asyncio
redis client) doing the least a durable acknowledgement can do, one Redis write per request;
or, given ``sqlite:PATH``, one SQLite commit (WAL, synchronous=FULL) per request in a thread.

Run by bench/threader.py: ``floor_server.py PORT REDIS_URL|sqlite:PATH``.
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


def main() -> None:
    port, url = int(sys.argv[1]), sys.argv[2]
    if url.startswith("sqlite:"):
        accept = sqlite_floor(url.removeprefix("sqlite:"))
    else:
        store = aioredis.Redis.from_url(url)

        async def accept(request: web.Request) -> web.Response:
            body = await request.read()
            await store.set(f"floor:{uuid.uuid4().hex}", body, ex=60)
            return web.json_response({"ok": True})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/alert", accept)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def sqlite_floor(path: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    thread = ThreadPoolExecutor(max_workers=1)
    db = thread.submit(_open, path).result()

    def insert(body: bytes) -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO floor VALUES (?)", (body,))
        db.execute("COMMIT")

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.get_running_loop().run_in_executor(thread, insert, body)
        return web.json_response({"ok": True})

    return accept


def _open(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE IF NOT EXISTS floor (body BLOB)")
    return db


if __name__ == "__main__":
    main()
