"""Read deadlines and a connection limit for the threader's aiohttp server.

aiohttp's server has an idle keep-alive timeout (``keepalive_timeout``) but no deadline for a
request's headers, so a client trickling a header byte now and then held a connection open
indefinitely. Built on aiohttp's own protocol (``web_protocol.RequestHandler``), the same way
its keep-alive check works (the handler is "waiting for a request" while its ``_waiter`` is
pending), with Go's ``net/http`` server as the model:

- **header timeout**: a request's headers must be complete within ``header_timeout`` of the
  connection being accepted (first request) or of their first byte (later requests), else the
  connection is closed (Go's ``ReadHeaderTimeout``);
- **idle timeout**: a kept-alive connection with no request is closed after ``idle_timeout``
  (aiohttp's ``keepalive_timeout``);
- **body timeout**: enforced where the body is read (``POST /alert``, see ``app.py``); a body
  nobody reads is drained for at most ``LINGER`` seconds after the answer, then cut;
- **connection limit**: at ``max_connections`` a new connection first evicts the connection
  that has waited longest for a request (idle or slow, never one being served); only when
  every connection is busy with a request is the new one answered 503 and closed. Slow or idle
  clients cannot keep real senders out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .metrics import ThreaderMetrics

log = logging.getLogger("lumen.threader.http")

# How long a request body nobody read (an early 401, a 408) is drained before the connection
# is closed: long enough for a client to finish sending and read the answer.
LINGER = 2.0
_BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 22\r\n\r\ntoo many connections\r\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 310.0
    max_connections: int = 1000


class ConnectionGuard:
    """The open connections of one server, for the limit and the metrics."""

    def __init__(self, limits: ConnectionLimits, metrics: ThreaderMetrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self.open: set[GuardedRequestHandler] = set()

    def admit(self, newcomer: GuardedRequestHandler) -> bool:
        """Whether ``newcomer`` may stay; makes room by evicting a waiting connection."""
        if len(self.open) >= self.limits.max_connections:
            waiting = [c for c in self.open if c.waiting_for_request()]
            if not waiting:
                self.cut(newcomer, "refused")
                return False
            # Those in the middle of a request's head first (slow, or silent since they
            # connected), then the longest idle.
            self.cut(min(waiting, key=lambda c: (not c.reading_head(), c.waiting_since)), "evicted")
        self.open.add(newcomer)
        self.metrics.open_connections.set(len(self.open))
        return True

    def cut(self, connection: GuardedRequestHandler, reason: str) -> None:
        self.metrics.connections_cut.labels(reason).inc()
        connection.cut(busy_answer=reason == "refused")

    def gone(self, connection: GuardedRequestHandler) -> None:
        self.open.discard(connection)
        self.metrics.open_connections.set(len(self.open))


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with a header deadline, registered with a guard."""

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._header_deadline: asyncio.TimerHandle | None = None
        self._refused = False
        self._serving = False  # start() has begun: aiohttp's _waiter now tells whether it waits
        self.waiting_since = time.monotonic()

    def waiting_for_request(self) -> bool:
        """True between requests: no request is being read to its end or served."""
        if self._messages:
            return False  # a complete request head waits to be served
        if not self._serving:
            # Accepted, but the serving task has not run yet: the event loop accepts a burst
            # of connections before any of their tasks start, and they are waiting too.
            return True
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    async def start(self) -> None:
        self._serving = True
        await super().start()

    def reading_head(self) -> bool:
        return self._header_deadline is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._guard.admit(self):
            self._arm_header_deadline()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_deadline()
        self._guard.gone(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered 503 already: what the client sends is not served
        super().data_received(data)
        if self.waiting_for_request():
            # Part of a request's head: it must be complete in time. Armed once per request,
            # so trickling bytes does not push the deadline.
            if self._header_deadline is None:
                self._arm_header_deadline()
        else:
            self._disarm_header_deadline()  # the head is complete, the request is served
            self.waiting_since = time.monotonic()

    def cut(self, *, busy_answer: bool = False) -> None:
        self._disarm_header_deadline()
        transport = self.transport
        if busy_answer and transport is not None and transport.can_write_eof():
            # Answer, then close gently: closing at once with the client's request unread
            # would reset the connection, and a reset makes the client drop our answer.
            self._refused = True
            transport.write(_BUSY_ANSWER)
            transport.write_eof()
            self._loop.call_later(LINGER, self.force_close)
            return
        self.force_close()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self._loop.call_later(
            self._guard.limits.header_timeout, self._header_deadline_passed
        )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self.waiting_for_request():
            self._guard.cut(self, "header_timeout")


class GuardedServer(web.Server):
    """aiohttp's low-level server handing out guarded connection handlers."""

    def __init__(self, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = guard

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, self._guard, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose server applies ``limits`` to every connection."""

    def __init__(
        self,
        app: web.Application,
        limits: ConnectionLimits,
        metrics: ThreaderMetrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            app, keepalive_timeout=limits.idle_timeout, lingering_time=LINGER, **kwargs
        )
        self._guard = ConnectionGuard(limits, metrics)

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # the application's server, after its startup
        return GuardedServer(
            self._guard,
            handler=plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **plain._kwargs,
        )
