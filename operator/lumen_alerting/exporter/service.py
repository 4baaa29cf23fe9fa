"""Run the exporter: the probe scheduler and the HTTP endpoints, until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence

from aiohttp import web

from ..service_http import cannot_listen
from .app import make_app
from .config import ExporterConfig, ExporterSettings
from .csv_log import CsvColumnError, NotAProbeLogError, ProbeCsvLog
from .metrics import ExporterMetrics
from .pipeline import PipelineStore, StateFileError
from .pipeline_http import pipeline_routes
from .probes import ProbeScheduler

log = logging.getLogger("lumen.exporter")


class StartupError(Exception):
    """The exporter cannot start because of a setting: reported as one line naming ``flag``."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")


def pipeline_endpoints(settings: ExporterSettings, metrics: ExporterMetrics) -> list[web.RouteDef]:
    """The pipeline routes over the state kept in ``--state-dir``, its series in ``metrics``.

    The state is read before anything listens: a state file that cannot be read stops the
    start rather than starting empty and losing the run counters. ``pipeline.expire_after``
    sets how long a gauge not pushed again stays."""
    try:
        store = PipelineStore(
            settings.state_dir, max_age=settings.config.pipeline.expire_after_seconds
        )
    except StateFileError as error:
        raise StartupError("--state-dir", str(error)) from None
    except OSError as error:
        raise StartupError("--state-dir", f"cannot use {settings.state_dir}: {error}") from None
    metrics.registry.register(store.collector())
    return pipeline_routes(store, settings.pipeline_token)


def csv_log(
    settings: ExporterSettings, config: ExporterConfig, metrics: ExporterMetrics
) -> ProbeCsvLog | None:
    """The CSV log of ``--csv``, its counters in ``metrics``; None without the flag. The flag's
    path was checked with the settings; the file itself is opened by the log's writer thread
    (a disk that fails now is reported and retried like any later write)."""
    if settings.csv_path is None:
        return None
    try:
        rows = ProbeCsvLog(
            settings.csv_path,
            config,
            metrics.registry,
            max_bytes=settings.csv_max_bytes,
            backups=settings.csv_backups,
        )
        rows.file.check()  # another file at the path is refused, and left as it is
    except CsvColumnError as error:
        raise StartupError("--csv", str(error)) from None
    except NotAProbeLogError as error:
        raise StartupError("--csv", error.strerror or str(error)) from None
    except OSError as error:
        raise StartupError("--csv", f"cannot read {settings.csv_path}: {error.strerror}") from None
    return rows


async def serve(
    settings: ExporterSettings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    metrics: ExporterMetrics | None = None,
    routes: Sequence[web.RouteDef] = (),
) -> None:
    """Serve until SIGTERM/SIGINT or ``stop``; ``on_ready`` gets the bound port."""
    stop = stop or asyncio.Event()
    config = settings.config
    metrics = metrics or ExporterMetrics(config)
    if config.pipeline.enabled:
        routes = [*routes, *pipeline_endpoints(settings, metrics)]
    rows = csv_log(settings, config, metrics)
    scheduler = ProbeScheduler(
        config,
        metrics,
        max_concurrent=settings.max_concurrent_probes,
        headers=settings.probe_headers,
        on_result=None if rows is None else rows.add,
    )
    runner = web.AppRunner(
        make_app(config, metrics, ready=lambda: scheduler.running, routes=routes),
        access_log=None,
        shutdown_timeout=5,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        message = cannot_listen(settings.host, settings.port, error)
        raise StartupError("--listen", message) from None
    if rows is not None:
        rows.start()
        log.info("Logging probe results to %s.", settings.csv_path)
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(RuntimeError, NotImplementedError):  # not in the main thread
            loop.add_signal_handler(number, stop.set)
    await scheduler.start()
    port = runner.addresses[0][1] if runner.addresses else settings.port
    log.info(
        "Exporter listening on %s:%s with %d probes (at most %d at once).",
        settings.host,
        port,
        len(config.probes),
        settings.max_concurrent_probes,
    )
    if on_ready is not None:
        on_ready(port)
    try:
        await stop.wait()
    finally:
        log.info("Stopping.")
        await runner.cleanup()
        await scheduler.stop()
        if rows is not None:
            await rows.close()  # after the last result: writes every row still queued
