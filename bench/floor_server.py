"""The floor of bench/threader.py: the same stack as the threader (aiohttp server, asyncio
redis client) doing the least a durable acknowledgement can do, one Redis write per request.

Run by bench/threader.py: ``floor_server.py PORT REDIS_URL``.
"""

from __future__ import annotations

import sys
import uuid

import redis.asyncio as aioredis
from aiohttp import web


def main() -> None:
    port, url = int(sys.argv[1]), sys.argv[2]
    store = aioredis.Redis.from_url(url)

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        await store.set(f"floor:{uuid.uuid4().hex}", body, ex=60)
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/alert", accept)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
