"""The probe targets of bench/exporter.py, in their own process: an aiohttp server answering
``GET /ok/<probe>`` at once with a gateway-like JSON body (seed 001's ION API health) and never
answering ``GET /hung/<probe>`` (the probe's timeout ends it). Every request's arrival is
recorded per probe (``time.monotonic()``, the system-wide monotonic clock) and listed by
``GET /arrivals`` as ``{"<probe>": [seconds, ...]}``: when each probe run started, as the target
saw it.

Run by bench/exporter.py: ``exporter_targets.py PORT``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections import defaultdict

from aiohttp import web

PERSONAS = ("Nana", "Iris", "Sol")


def health_body(probe: str) -> bytes:
    """What the ION API's /health answers, a little different per probe (the persona too)."""
    digest = hashlib.sha256(probe.encode()).digest()
    return json.dumps(
        {
            "status": "ok",
            "mock": False,
            "confidence": round(0.5 + digest[0] / 512, 3),
            "persona": PERSONAS[digest[1] % len(PERSONAS)],
            "gateway": {"status": "unlocked", "region": "ap-northeast-2"},
            "resonance": {
                "phase_diff": "0.40",  # a numeric string, as some gateways write numbers
                "entropy_rate": 0.24,
                "creative_band": 0.42,
                "risk_band": round(digest[2] / 255, 3),
            },
            "build": {"version": "1.14.2", "commit": digest.hex()[:12]},
        }
    ).encode()


def main() -> None:
    port = int(sys.argv[1])
    arrivals: defaultdict[str, list[float]] = defaultdict(list)
    bodies: dict[str, bytes] = {}
    never = asyncio.Event()  # never set: a hung target's answer

    async def healthy(request: web.Request) -> web.Response:
        probe = request.match_info["probe"]
        arrivals[probe].append(time.monotonic())
        if probe not in bodies:
            bodies[probe] = health_body(probe)
        return web.Response(body=bodies[probe], content_type="application/json")

    async def hung(request: web.Request) -> web.Response:
        arrivals[request.match_info["probe"]].append(time.monotonic())
        await never.wait()
        raise AssertionError("unreachable")

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(arrivals)

    app = web.Application()
    app.router.add_get("/ok/{probe}", healthy)
    app.router.add_get("/hung/{probe}", hung)
    app.router.add_get("/arrivals", listed)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
