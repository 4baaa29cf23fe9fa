"""Run the threader: HTTP endpoints and the delivery worker over one store, until SIGTERM.

Shutdown drains: the server stops taking requests and finishes those in flight, then the worker
sends what it has in hand for a few seconds; whatever is left stays in a durable outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from .app import make_app
from .config import DEFAULT_KEY_PREFIX, ThreaderConfig
from .delivery import DeliveryWorker
from .durability import DurabilityCheck
from .metrics import ThreaderMetrics
from .redis_store import RedisStore
from .slack import SlackClient
from .store import FileStore, MemoryStore, ThreadStore

log = logging.getLogger("lumen.threader")


def open_store(
    spec: str, dedupe_window: float, key_prefix: str = DEFAULT_KEY_PREFIX
) -> ThreadStore:
    """The store named by ``--store``: memory, file:PATH or redis://HOST:PORT/DB (its keys under
    ``key_prefix``)."""
    if spec == "memory":
        return MemoryStore(idempotency_ttl=dedupe_window)
    if spec.startswith("file:"):
        return FileStore(spec.removeprefix("file:"), idempotency_ttl=dedupe_window)
    return RedisStore(spec, prefix=key_prefix, idempotency_ttl=dedupe_window)


async def serve(
    config: ThreaderConfig,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    metrics: ThreaderMetrics | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT or ``stop``; ``on_ready`` gets the bound port."""
    stop = stop or asyncio.Event()
    metrics = metrics or ThreaderMetrics()
    store = open_store(config.store, config.dedupe_window, config.key_prefix)
    slack = SlackClient(config.slack_api_url, config.slack_token)
    worker = DeliveryWorker(
        store, slack, metrics, consumer=config.consumer, channel_interval=config.channel_interval
    )
    durability = (
        DurabilityCheck(store.persistence_info, allow_volatile=config.allow_volatile_store)
        if isinstance(store, RedisStore)
        else None
    )
    app = make_app(config, store, metrics, durability=durability)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(RuntimeError, NotImplementedError):  # not in the main thread
            loop.add_signal_handler(number, stop.set)
    port = runner.addresses[0][1] if runner.addresses else config.port
    log.info("Threader listening on %s:%s with the %s store.", config.host, port, store.kind)
    if durability is not None:
        await durability.log_at_start()
    if on_ready is not None:
        on_ready(port)
    delivering = asyncio.create_task(worker.run(stop))
    try:
        await stop.wait()
    finally:
        log.info("Stopping: finishing requests in flight, then the deliveries in hand.")
        await runner.cleanup()
        stop.set()
        await delivering
        await slack.aclose()
        await store.close()
