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

from ..service_http import cannot_listen
from .app import make_app
from .config import DEFAULT_KEY_PREFIX, POSTGRESQL_SCHEMES, ThreaderConfig
from .connections import ConnectionLimits, GuardedAppRunner
from .delivery import DeliveryWorker
from .durability import DurabilityCheck, postgresql_durability
from .incident_runtime import IncidentStoreStartupError, open_incidents
from .metrics import ThreaderMetrics
from .slack import SlackClient
from .store.contract import DEFAULT_LIMITS, OutboxLimits, ReplicaAcks, StoreUnavailable
from .store.memory import MemoryStore
from .store.postgresql import PostgreSQLStore
from .store.redis import RedisStore
from .store.sqlite import SQLiteStore

log = logging.getLogger("lumen.threader")


class StartupError(Exception):
    """The threader cannot start because of a setting: reported as one line naming ``flag``."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")


Store = MemoryStore | SQLiteStore | RedisStore | PostgreSQLStore


def open_store(
    spec: str,
    dedupe_window: float,
    limits: OutboxLimits = DEFAULT_LIMITS,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    *,
    password: str = "",
    replica_acks: ReplicaAcks = "auto",
    replica_ack_timeout: float = 1.0,
) -> Store:
    """The store named by ``--store``: memory, sqlite:PATH (file:PATH is an alias), a Redis URL
    (standalone, Sentinel or Cluster; its keys under ``key_prefix``) or a PostgreSQL URL (its
    rows under ``key_prefix``)."""
    if spec == "memory":
        return MemoryStore(idempotency_ttl=dedupe_window, limits=limits)
    if spec.startswith(("sqlite:", "file:")):
        path = spec.partition(":")[2]
        return SQLiteStore(path, idempotency_ttl=dedupe_window, limits=limits)
    if spec.startswith(POSTGRESQL_SCHEMES):
        return PostgreSQLStore(spec, scope=key_prefix, idempotency_ttl=dedupe_window, limits=limits)
    try:
        return RedisStore(
            spec,
            prefix=key_prefix,
            idempotency_ttl=dedupe_window,
            limits=limits,
            password=password or None,
            replica_acks=replica_acks,
            replica_ack_timeout=replica_ack_timeout,
        )
    except ValueError as error:  # a URL it cannot use; the message never holds the password
        raise StoreUnavailable(str(error)) from None


def store_durability(store: Store, *, allow_volatile: bool) -> DurabilityCheck | None:
    """The check that the store keeps acknowledged alerts: Redis and PostgreSQL have settings
    that would lose them; SQLite is always opened durably, memory never is (and says so)."""
    if isinstance(store, RedisStore):
        return DurabilityCheck(store.persistence_info, allow_volatile=allow_volatile)
    if isinstance(store, PostgreSQLStore):
        return DurabilityCheck(
            store.persistence_info, allow_volatile=allow_volatile, verdict=postgresql_durability
        )
    return None


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
    outbox_limits = OutboxLimits(config.max_outbox_entries, config.max_outbox_bytes)
    try:
        store = open_store(
            config.store,
            config.dedupe_window,
            outbox_limits,
            config.key_prefix,
            password=config.store_password,
            replica_acks=config.replica_acks,
            replica_ack_timeout=config.replica_ack_timeout,
        )
    except StoreUnavailable as error:
        # What a store raises when it cannot be opened already says why (and names the flag).
        raise StartupError("--store", str(error).removeprefix("--store: ")) from None
    slack = SlackClient(
        config.slack_api_url,
        config.slack_token,
        timeout=config.slack_timeout,
        on_error=metrics.note_slack_error,
    )
    try:
        incidents = await open_incidents(config, slack, metrics)
    except IncidentStoreStartupError as error:
        await slack.aclose()
        await store.close()
        raise StartupError("--database-url", str(error)) from None
    worker = DeliveryWorker(
        store,
        slack,
        metrics,
        consumer=config.consumer,
        channel_interval=config.channel_interval,
        # Three client timeouts after we gave up on a request, Slack has finished it.
        unknown_outcome_wait=3 * config.slack_timeout,
        parent_hooks=incidents.parents if incidents is not None else None,
    )
    durability = store_durability(store, allow_volatile=config.allow_volatile_store)
    limits = ConnectionLimits(
        header_timeout=config.header_timeout,
        body_timeout=config.body_timeout,
        idle_timeout=config.idle_timeout,
        max_connections=config.max_connections,
    )
    runner = GuardedAppRunner(
        make_app(
            config,
            store,
            store,
            metrics,
            durability=durability,
            incidents=incidents.surfaces if incidents is not None else None,
        ),
        limits,
        metrics,
        access_log=None,
        shutdown_timeout=10,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        if incidents is not None:
            await incidents.aclose()
        await slack.aclose()
        await store.close()
        raise StartupError("--listen", cannot_listen(config.host, config.port, error)) from None
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(RuntimeError, NotImplementedError):  # not in the main thread
            loop.add_signal_handler(number, stop.set)
    port = runner.addresses[0][1] if runner.addresses else config.port
    log.info("Threader listening on %s:%s with the %s store.", config.host, port, store.kind)
    if incidents is not None:
        log.info(incidents.describe())
    else:
        log.info("No incident database (--database-url): incidents are not recorded.")
    if durability is not None:
        await durability.log_at_start()
    if on_ready is not None:
        on_ready(port)
    delivering = asyncio.create_task(worker.run(stop))
    # The recorder stops with the HTTP server, so that it writes what the last requests queued.
    stop_recording = asyncio.Event()
    recording = asyncio.create_task(incidents.run(stop_recording)) if incidents else None
    try:
        await stop.wait()
    finally:
        log.info("Stopping: finishing requests in flight, then the deliveries in hand.")
        await runner.cleanup()
        stop.set()
        await delivering
        if incidents is not None and recording is not None:
            stop_recording.set()
            await recording
            await incidents.aclose()
        await slack.aclose()
        await store.close()
