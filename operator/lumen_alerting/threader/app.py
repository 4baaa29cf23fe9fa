"""The threader's HTTP endpoints (aiohttp).

``POST /alert`` (Alertmanager's webhook) and ``POST /webhook/grafana`` (Grafana's webhook contact
point) share one path: the same bearer token, body limits, timeouts, metrics and acceptance; only
the parser differs. Each answers 2xx only once every alert of the notification is durably in the
store's outbox; a store that cannot be written, or an outbox past its bound, gives 503 with
``Retry-After``, and Alertmanager sends again. Bad input gets a 4xx with a message that says what
is wrong, and stores nothing.

With the incident store (``IncidentSurfaces``), an accepted notification's alerts also go to the
incident recorder (in the background: the answer does not wait for the incident database), and
the incident API, page and Slack interactivity are served beside the webhooks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..service_http import bearer_matches, json_error
from .acceptance import InvalidChannel, acceptances, choose_channel
from .config import ThreaderConfig
from .durability import DurabilityCheck
from .incidents.actions import IncidentActions
from .incidents.api import add_incident_routes
from .incidents.intake import received_alerts
from .incidents.recorder import IncidentRecorder
from .incidents.store import IncidentStore
from .interactions import PATH as INTERACTIONS_PATH
from .interactions import SlackInteractions
from .metrics import ThreaderMetrics
from .store.contract import (
    Acceptance,
    OutboxFull,
    ReplicaAckTimeout,
    StoreAdmin,
    StoreUnavailable,
    ThreadStore,
)
from .warning_throttle import WarningThrottle, left_out_note
from .webhook import (
    ALERTMANAGER_PATH,
    GRAFANA_PATH,
    MAX_ALERTS,
    InvalidNotification,
    Notification,
    parse_grafana_notification,
    parse_notification,
)

log = logging.getLogger("lumen.threader.http")

Parser = Callable[[bytes], Notification]

# Room for MAX_ALERTS large alerts (about 16 KiB each: dozens of labels, long descriptions,
# Prometheus's generator URLs), so that no group Alertmanager truncates to MAX_ALERTS is refused
# for its size: a 413 is a 4xx, and Alertmanager drops the whole group.
MAX_BODY = 16 * 1024 * 1024
# A full outbox empties at Slack's pace (about a message a second per channel): worth a wait.
OUTBOX_FULL_RETRY_AFTER = 30
FULL_LOG_INTERVAL = 10.0  # seconds between two "outbox full" warnings
REFUSAL_LOG_INTERVAL = 5.0  # seconds between two warnings of one kind of 503


@dataclass(frozen=True)
class IncidentSurfaces:
    """What the HTTP side of the incident store needs: alerts go to ``recorder``; the API and
    the page act through ``actions``; Slack's clicks come to ``interactions`` (None: no
    signing secret, no Slack interactivity)."""

    store: IncidentStore
    recorder: IncidentRecorder
    actions: IncidentActions
    interactions: SlackInteractions | None = None


def make_app(
    config: ThreaderConfig,
    store: ThreadStore,
    admin: StoreAdmin,
    metrics: ThreaderMetrics,
    *,
    durability: DurabilityCheck | None = None,
    incidents: IncidentSurfaces | None = None,
) -> web.Application:
    """The endpoints over ``store`` (alerts in, readiness, gauges) and ``admin`` (``/stats``,
    ``/cache``): usually one store object, seen through its two protocols."""
    app = web.Application(client_max_size=MAX_BODY)
    endpoints = _Endpoints(config, store, admin, metrics, durability, incidents)
    app.router.add_post(ALERTMANAGER_PATH, partial(endpoints.notify, parse_notification))
    app.router.add_post(GRAFANA_PATH, partial(endpoints.notify, parse_grafana_notification))
    app.router.add_get("/health", endpoints.health)
    app.router.add_get("/ready", endpoints.ready)
    app.router.add_get("/metrics", endpoints.metrics_text)
    app.router.add_get("/stats", endpoints.stats)
    app.router.add_get("/cache", endpoints.cache)
    app.router.add_delete("/cache", endpoints.clear_cache)
    if incidents is not None:
        add_incident_routes(app, incidents.actions, incidents.store, api_token=config.api_token)
        if incidents.interactions is not None:
            app.router.add_post(INTERACTIONS_PATH, incidents.interactions.handle)
    return app


class _Endpoints:
    def __init__(
        self,
        config: ThreaderConfig,
        store: ThreadStore,
        admin: StoreAdmin,
        metrics: ThreaderMetrics,
        durability: DurabilityCheck | None = None,
        incidents: IncidentSurfaces | None = None,
    ) -> None:
        self._config = config
        self._incidents = incidents
        self._store = store
        self._admin = admin
        self._metrics = metrics
        self._durability = durability
        self._started = time.time()
        self._full_logged = 0.0
        self._refusal_warnings = WarningThrottle(REFUSAL_LOG_INTERVAL)

    async def notify(self, parse: Parser, request: web.Request) -> web.Response:
        """A notification in, parsed by ``parse`` (Alertmanager's or Grafana's)."""
        started = time.perf_counter()
        response = await self._notify(parse, request)
        self._metrics.acknowledge_seconds.observe(time.perf_counter() - started)
        return response

    async def _notify(self, parse: Parser, request: web.Request) -> web.Response:
        if not bearer_matches(request, self._config.webhook_token):
            self._metrics.notifications.labels("unauthorized").inc()
            return json_error(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            channel = choose_channel(request.query.get("channel"), self._config.default_channel)
            notification = parse(body)
        except InvalidChannel as invalid:
            self._metrics.notifications.labels("invalid").inc()
            return json_error(400, str(invalid))
        except InvalidNotification as invalid:
            self._metrics.notifications.labels("invalid").inc()
            return json_error(
                400, "invalid notification", problems=[str(p) for p in invalid.problems]
            )
        self._note_truncation(notification)
        response = await self._accept(acceptances(notification, channel, self._config))
        if response.status == 200 and self._incidents is not None:
            self._incidents.recorder.submit(
                received_alerts(
                    notification,
                    received_at=datetime.now(UTC),
                    group_by=self._config.incident_group_by,
                )
            )
        return response

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        """The notification's bytes, or the answer to a body too large or too slow."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            self._metrics.notifications.labels("too_large").inc()
            return json_error(413, f"body larger than {MAX_BODY} bytes")
        try:
            # A body sent slowly or only in part must not hold the connection (and a store
            # write slot) for ever: Go's ReadTimeout, for the body only.
            async with asyncio.timeout(self._config.body_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._metrics.notifications.labels("too_large").inc()
            return json_error(413, f"body larger than {MAX_BODY} bytes")
        except TimeoutError:
            self._metrics.notifications.labels("body_timeout").inc()
            self._metrics.connections_cut.labels("body_timeout").inc()
            response = json_error(
                408, f"body not received within {self._config.body_timeout:g} seconds"
            )
            response.force_close()  # what is left of the body is not worth reading
            return response

    def _warn(self, kind: str, message: str, error: Exception) -> None:
        """A refusal's warning, one line per kind every few seconds: an outage of the store
        would otherwise log every notification and every retry of it."""
        left_out = self._refusal_warnings.allow(("refusal", kind))
        if left_out is not None:
            log.warning(message + "%s", error, left_out_note(left_out))

    async def _accept(self, accepted: list[Acceptance]) -> web.Response:
        """Hand the alerts to the store; 200 with their dispositions, or 503 to be sent again."""
        try:
            dispositions = await self._store.accept(accepted)
        except OutboxFull as error:
            self._metrics.notifications.labels("outbox_full").inc()
            if time.monotonic() - self._full_logged >= FULL_LOG_INTERVAL:
                self._full_logged = time.monotonic()
                log.warning("Refusing notifications until the outbox drains: %s", error)
            return json_error(
                503,
                f"{error}; retry later",
                headers={"Retry-After": str(OUTBOX_FULL_RETRY_AFTER)},
            )
        except ReplicaAckTimeout as error:
            # Not (yet) on a replica: were the master lost now, so would the alerts be.
            # Alertmanager's retry waits for the replicas again.
            self._metrics.notifications.labels("replica_timeout").inc()
            self._warn("replica", "Refused a notification, no replica confirmed it: %s", error)
            return json_error(
                503,
                "no store replica confirmed the write; retry later",
                headers={"Retry-After": "5"},
            )
        except StoreUnavailable as error:
            self._metrics.notifications.labels("unavailable").inc()
            self._warn("unavailable", "Refused a notification, the store is unavailable: %s", error)
            return json_error(503, "store unavailable; retry later", headers={"Retry-After": "5"})
        counts = {d: dispositions.count(d) for d in ("queued", "duplicate", "skipped")}
        for disposition, count in counts.items():
            if count:
                self._metrics.alerts.labels(disposition).inc(count)
        self._metrics.notifications.labels("accepted").inc()
        return web.json_response({"ok": True, "alerts": len(accepted), **counts})

    def _note_truncation(self, notification: Notification) -> None:
        """Alerts of the group that will get no thread: counted, and said at WARNING."""
        if notification.truncated_alerts:
            # by="alertmanager" or by="grafana": whose max alerts setting left them out.
            sender = notification.source
            self._metrics.truncated_alerts.labels(sender).inc(notification.truncated_alerts)
            log.warning(
                "%s left %d alerts out of group %s (receiver %s, its %s): they get no Slack "
                "thread.",
                "Grafana" if sender == "grafana" else "Alertmanager",
                notification.truncated_alerts,
                notification.group_key,
                notification.receiver,
                "Max alerts" if sender == "grafana" else "max_alerts",
            )
        if notification.alerts_over_limit:
            self._metrics.truncated_alerts.labels("threader").inc(notification.alerts_over_limit)
            log.warning(
                "Group %s (receiver %s) has %d alerts; only the first %d get Slack threads. Set "
                "%s %d on the webhook %s.",
                notification.group_key,
                notification.receiver,
                MAX_ALERTS + notification.alerts_over_limit,
                MAX_ALERTS,
                "Max alerts" if notification.source == "grafana" else "max_alerts:",
                MAX_ALERTS,
                "contact point" if notification.source == "grafana" else "receiver",
            )

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "store": self._store.kind})

    async def ready(self, request: web.Request) -> web.Response:
        try:
            await self._store.ping()  # SQLite: a small write, so a full disk is not ready
        except StoreUnavailable as error:
            return web.json_response({"ready": False, "error": str(error)}, status=503)
        if (refusal := await self._volatile_store_refusal()) is not None:
            return refusal
        return web.json_response({"ready": True})

    async def _volatile_store_refusal(self) -> web.Response | None:
        """503 when the store could lose what it acknowledges (and that was not accepted)."""
        if self._durability is None:
            return None
        try:
            readiness = await self._durability.readiness()
        except StoreUnavailable as error:
            return web.json_response({"ready": False, "error": str(error)}, status=503)
        if readiness.ready:
            return None
        return web.json_response({"ready": False, "error": readiness.message}, status=503)

    async def metrics_text(self, request: web.Request) -> web.Response:
        try:
            outbox = await self._store.outbox()
        except StoreUnavailable as error:
            log.debug("Outbox gauges not refreshed: %s", error)  # /ready says it
        else:
            self._metrics.outbox_entries.set(outbox.entries)
            oldest = outbox.oldest_accepted_at
            self._metrics.outbox_oldest_age.set(
                0 if oldest is None else max(0, time.time() - oldest)
            )
        response = web.Response(body=generate_latest(self._metrics.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def stats(self, request: web.Request) -> web.Response:
        try:
            stats = await self._admin.stats()
        except StoreUnavailable as error:
            return json_error(503, str(error))
        last_error = self._metrics.last_slack_error  # method, error and time of the last failure
        return web.json_response(
            {
                **stats,
                "thread_key": self._config.thread_key,
                "uptime_seconds": time.time() - self._started,
                "last_slack_error": last_error.to_json() if last_error else None,
            }
        )

    async def cache(self, request: web.Request) -> web.Response:
        if not self._config.admin_token or not bearer_matches(request, self._config.admin_token):
            return json_error(
                401, "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            threads = await self._admin.threads()
        except StoreUnavailable as error:
            return json_error(503, str(error))
        return web.json_response({"threads": threads, "count": len(threads)})

    async def clear_cache(self, request: web.Request) -> web.Response:
        if not self._config.admin_token or not bearer_matches(request, self._config.admin_token):
            return json_error(
                401, "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            removed = await self._admin.clear_threads()
        except StoreUnavailable as error:
            return json_error(503, str(error))
        log.warning("Thread cache cleared by an admin request: %d threads forgotten.", removed)
        return web.json_response({"ok": True, "removed": removed})
