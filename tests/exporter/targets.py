"""A local HTTP server standing in for the endpoints the exporter probes: each path answers as
told (status, JSON or raw body, a delay, or no answer at all until the server stops); and what
the stand-in ION API's ``/health`` answers."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The stand-in ION API's /health (seed 001's fields): the gateway status as a word (the gateway
# example maps down/locked/unlocked to 0/1/2), the phase difference as a string (as some
# gateways write numbers), and the persona the example counts by value.
ION_HEALTH: dict[str, Any] = {
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


@dataclass
class Answer:
    """How a path answers: ``hang`` keeps the request open with no answer until ``stop()``."""

    status: int = 200
    body: bytes = b"{}"
    delay: float = 0.0
    hang: bool = False
    require_header: tuple[str, str] | None = None  # else 401
    location: str | None = None  # a Location header (with a 3xx status: a redirect)

    @classmethod
    def json(cls, document: Any, **options: Any) -> Answer:
        return cls(body=json.dumps(document).encode(), **options)


@dataclass
class Seen:
    """What the server saw: requests by path, and the most in flight at once."""

    requests: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0
    methods: list[str] = field(default_factory=list)


class ProbeTargets:
    """``ThreadingHTTPServer`` on 127.0.0.1, a free port; ``answers[path]`` says how it answers."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.seen = Seen()
        self._lock = threading.Lock()
        self._released = threading.Event()
        targets = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                targets._answer(self)

            def do_HEAD(self) -> None:
                targets._answer(self)

            def do_POST(self) -> None:
                targets._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet tests

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ProbeTargets:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()  # lets hung requests end, so the server can stop
        self._server.shutdown()
        self._server.server_close()

    def requests(self, path: str) -> int:
        with self._lock:
            return self.seen.requests.get(path, 0)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        answer = self.answers.get(path, Answer(status=404, body=b"not found"))
        with self._lock:
            self.seen.requests[path] = self.seen.requests.get(path, 0) + 1
            self.seen.methods.append(handler.command)
            self.seen.in_flight += 1
            self.seen.most_in_flight = max(self.seen.most_in_flight, self.seen.in_flight)
        try:
            if answer.hang:
                self._released.wait(120)
                return
            if answer.delay:
                time.sleep(answer.delay)
            status, body = answer.status, answer.body
            if answer.require_header is not None:
                name, value = answer.require_header
                if handler.headers.get(name) != value:
                    status, body = 401, b"{}"
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            if answer.location is not None:
                handler.send_header("Location", answer.location)
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(body)
        finally:
            with self._lock:
                self.seen.in_flight -= 1
