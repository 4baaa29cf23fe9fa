"""A tiny exporter stand-in for the pipeline tests: the pipeline routes and ``/metrics`` over a
``PipelineStore``, served from its own event loop in a thread (the tests are synchronous)."""

from __future__ import annotations

import asyncio
from typing import Any, Self

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from lumen_alerting.exporter.pipeline import PipelineStore
from lumen_alerting.exporter.pipeline_http import pipeline_routes
from tests.support.background_loop import BackgroundLoop


class PipelineServer(BackgroundLoop):
    thread_name = "pipeline-server"
    title = "The pipeline test server"

    def __init__(self, store: PipelineStore, token: str | None, port: int = 0) -> None:
        super().__init__()
        self.store = store
        self._token = token
        self._port = port
        self.registry = CollectorRegistry()
        self.registry.register(store.collector())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        app = web.Application()
        app.add_routes(pipeline_routes(self.store, self._token))
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", self._port)
            await site.start()
            host, port = runner.addresses[0][:2]
            self._url = f"http://{host}:{port}"
            self._ready.set()
            await self._stopped.wait()
        finally:
            await runner.cleanup()
