"""The incident API and page served from a real IncidentStore on a free port, in a background
loop, for the synchronous API, fuzz and browser tests; plus alerts to seed it with."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from aiohttp import web

from lumen_alerting.threader.incidents.actions import IncidentActions, SilenceClient, now_utc
from lumen_alerting.threader.incidents.api import add_incident_routes
from lumen_alerting.threader.incidents.grouping import incident_key
from lumen_alerting.threader.incidents.records import Incident, ReceivedAlert
from lumen_alerting.threader.incidents.store import IncidentStore
from lumen_alerting.threader.silences import SilenceFailed
from tests.support.background_loop import BackgroundLoop

API_TOKEN = "incident-api-token-for-tests"
T = TypeVar("T")
BASE_TIME = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def received(
    fingerprint: str,
    *,
    alertname: str = "KubePodCrashLooping",
    service: str = "gateway",
    severity: str = "critical",
    cluster: str = "prod-eu-1",
    namespace: str = "lumen",
    status: Literal["firing", "resolved"] = "firing",
    starts_at: datetime = BASE_TIME,
    received_at: datetime | None = None,
    links: Mapping[str, str] | None = None,
    summary: str = "",
) -> ReceivedAlert:
    labels = {
        "alertname": alertname,
        "service": service,
        "severity": severity,
        "cluster": cluster,
        "namespace": namespace,
        "pod": f"{service}-{fingerprint}",
    }
    return ReceivedAlert(
        source="grafana" if links else "alertmanager",
        receiver="lumen/slack-critical",
        group_key='{}:{alertname="' + alertname + '"}',
        received_at=received_at or starts_at + timedelta(seconds=5),
        incident_key=incident_key(fingerprint, starts_at, labels),
        fingerprint=fingerprint,
        status=status,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30) if status == "resolved" else None,
        labels=labels,
        annotations={"summary": summary} if summary else {},
        links=dict(links or {}),
    )


@dataclass
class RecordingSilences:
    """An Alertmanager stand-in that records the calls (the real one is tested in
    tests/threader/test_silences.py); ``fail`` makes the next create refuse."""

    created: list[dict[str, object]] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    fail: str | None = None
    meanwhile: Callable[[], Awaitable[None]] | None = None  # runs after a silence is created

    async def create(
        self,
        matchers: Mapping[str, str],
        *,
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        if self.fail is not None:
            raise SilenceFailed(self.fail)
        self.created.append(
            {
                "matchers": dict(matchers),
                "starts_at": starts_at,
                "ends_at": ends_at,
                "created_by": created_by,
                "comment": comment,
            }
        )
        if self.meanwhile is not None:
            await self.meanwhile()
        return f"silence-{len(self.created)}"

    async def expire(self, silence_id: str) -> None:
        self.expired.append(silence_id)


class IncidentApp(BackgroundLoop):
    """``add_incident_routes`` on a bare aiohttp app over a store of ``database_url``."""

    thread_name = "incident-app"
    title = "The incident app"

    def __init__(
        self,
        database_url: str,
        *,
        api_token: str = API_TOKEN,
        silences: SilenceClient | None = None,
        clock: Callable[[], datetime] | None = None,
        failing_follow_up: bool = False,
    ) -> None:
        super().__init__()
        self.database_url = database_url
        self.api_token = api_token
        self.silences = silences
        self.clock = clock
        self.changes: list[Incident] = []
        self.failing_follow_up = failing_follow_up  # on_change raises, as a Slack outage would
        self._store: IncidentStore | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> IncidentStore:
        assert self._store is not None
        return self._store

    async def _changed(self, incident: Incident) -> None:
        with self._lock:
            self.changes.append(incident)
        if self.failing_follow_up:
            raise RuntimeError("Slack is down")

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        store = await asyncio.to_thread(IncidentStore.open, self.database_url)
        self._store = store
        actions = IncidentActions(
            store, self.silences, on_change=self._changed, clock=self.clock or now_utc
        )
        app = web.Application()
        add_incident_routes(app, actions, store, api_token=self.api_token)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        self._url = f"http://127.0.0.1:{port}"
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            await runner.cleanup()
            await store.close()

    def run(self, work: Callable[[IncidentStore], Coroutine[Any, Any, T]]) -> T:
        """``work(store)`` on the app's loop (seeding, checking), its result."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(work(self.store), self._loop)
        return future.result(timeout=60)

    def record(self, *alerts: ReceivedAlert) -> list[Incident]:
        changes = self.run(lambda store: store.record(alerts))
        return [change.incident for change in changes]
