"""The exporter's HTTP endpoints (aiohttp): ``/metrics``, ``/health``, ``/ready``, and any
routes handed in (the pipeline endpoints plug in that way).

``/metrics`` only reads the probes' last results, kept rendered since they were recorded: a
scrape never waits for a target, and formats only the few series that are not a probe's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .config import ExporterConfig
from .metrics import ExporterMetrics

# Requests the exporter takes are small (pipeline results); anything larger is refused.
MAX_BODY = 1024 * 1024


def make_app(
    config: ExporterConfig,
    metrics: ExporterMetrics,
    *,
    ready: Callable[[], bool] = lambda: True,
    routes: Sequence[web.RouteDef] = (),
) -> web.Application:
    """The endpoints over ``metrics``; ``ready`` answers ``/ready`` (the probes are scheduled);
    ``routes`` are added as they are (``pipeline_routes(...)``)."""
    app = web.Application(client_max_size=MAX_BODY)

    async def metrics_text(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "probes": len(config.probes)})

    async def readiness(request: web.Request) -> web.Response:
        if ready():
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "error": "probes not started"}, status=503)

    app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", readiness)
    app.router.add_routes(routes)
    return app
