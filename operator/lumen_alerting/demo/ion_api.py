"""A stand-in for the ION API and the Lumen Gateway in front of it, whose health can be flipped.

``GET /health`` is the ION API's health answer with seed 001's fields (the ``ion-api`` probe of
the demo policy reads it): 200 with the JSON below while up, 503 while down. ``GET /gateway`` is
the gateway's status (the ``gateway`` probe reads it): it stays up, and while the ION API is down
it serves mock answers, so it reports ``"mock": true`` (seed 001's IONMockModeEnabled). The
exporter drops a failed probe's fields, which is why mock mode comes from a second endpoint.

``POST /query`` is a client's query to the ION API: answered 200, or 500 while ``failing`` (the
demo's error burst). The answers are counted by status code in ``ion_api_requests_total{code}``
on ``GET /metrics``, which Prometheus scrapes for the demo policy's SLO; both codes are exposed
from 0, so the SLO's error ratio exists before the first error.

``POST /down`` and ``POST /up`` flip the health (``curl -X POST <url>/down`` while
``DEMO_KEEP=1``), ``POST /fail`` and ``POST /answer`` the queries; ``GET /`` says which state it
is in.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp.web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .loopback import LoopbackServer

# Seed 001's fields as a healthy ION API reports them (the phase difference as a string, as
# some gateways write numbers; the gateway status as a word the policy's value map reads).
HEALTHY: dict[str, Any] = {
    "status": "ok",
    "mock": False,
    "confidence": 0.87,
    "persona": "Nana",
    "gateway": {"status": "locked"},
    "resonance": {
        "phase_diff": "0.40",
        "entropy_rate": 0.24,
        "creative_band": 0.42,
        "risk_band": 0.12,
    },
}


# The status codes POST /query answers with, each exposed from the start.
ANSWERED, FAILED = 200, 500


class IonApiStandIn(LoopbackServer):
    """The endpoints, served on 127.0.0.1 by ``start``; ``down`` flips the health, ``failing``
    the answers to queries."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.failing = False
        # A registry of its own: the counts are this stand-in's, not the process's.
        self._registry = CollectorRegistry()
        self._requests = Counter(
            "ion_api_requests",
            "Queries the ION API answered (POST /query), by HTTP status code.",
            ["code"],
            registry=self._registry,
        )
        for code in (ANSWERED, FAILED):
            self._requests.labels(code=str(code))

    def application(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application()
        app.router.add_get("/", self._state)
        app.router.add_get("/health", self._health)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_post("/down", self._set_down)
        app.router.add_post("/up", self._set_up)
        app.router.add_post("/query", self._query)
        app.router.add_post("/fail", self._set_failing)
        app.router.add_post("/answer", self._set_answering)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _health(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        if self.down:
            return _json({"status": "unavailable", "error": "ION backend not reachable"}, 503)
        return _json(HEALTHY)

    async def _gateway(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return _json({"gateway": {"status": "locked"}, "mock": self.down})

    async def _query(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        await request.read()
        code = FAILED if self.failing else ANSWERED
        self._requests.labels(code=str(code)).inc()
        if code == FAILED:
            return _json({"error": "internal error while answering"}, code)
        return _json({"answer": "ok", "persona": HEALTHY["persona"]}, code)

    async def _metrics(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _state(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return _json(
            {
                "ion_api": "down" if self.down else "up",
                "queries": "fail" if self.failing else "answer",
            }
        )

    async def _set_down(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.down = True
        return await self._state(request)

    async def _set_up(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.down = False
        return await self._state(request)

    async def _set_failing(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.failing = True
        return await self._state(request)

    async def _set_answering(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.failing = False
        return await self._state(request)


def _json(document: object, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        status=status, text=json.dumps(document), content_type="application/json"
    )
