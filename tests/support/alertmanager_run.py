"""A real prometheus-alertmanager for tests, routing every alert to a webhook receiver that
records what it gets.

Alertmanager runs on loopback at a private port, clustering off, its data in a tmp dir; the
route groups by every label (one group per alert) and flushes fast (group_wait 0s,
group_interval 1s, repeat_interval 2s) so tests wait seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Self

import aiohttp.web
import httpx
import yaml

from tests.support.background_loop import BackgroundLoop
from tests.support.polling import eventually, free_port

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


class WebhookReceiver(BackgroundLoop):
    """An HTTP server taking Alertmanager's webhook notifications and keeping them in order."""

    thread_name = "webhook-receiver"
    title = "The webhook receiver"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._notifications: list[dict[str, Any]] = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def notifications(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._notifications)

    def alerts_with(self, **labels: str) -> list[dict[str, Any]]:
        """Every delivered alert (of every notification, repeats included) with these labels."""
        return [
            alert
            for notification in self.notifications
            for alert in notification["alerts"]
            if labels.items() <= alert["labels"].items()
        ]

    async def _receive(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        notification = json.loads(await request.read())
        with self._lock:
            self._notifications.append(notification)
        return aiohttp.web.Response(text="ok")

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        app = aiohttp.web.Application()
        app.router.add_post("/alerts", self._receive)
        runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self._url = f"http://{host}:{port}"
            self._ready.set()
            await self._stopped.wait()
        finally:
            await runner.cleanup()


class Alertmanager:
    """prometheus-alertmanager on loopback, clustering off, every alert to ``webhook_url``."""

    def __init__(
        self, directory: Path, webhook_url: str, *, webhook: dict[str, Any] | None = None
    ) -> None:
        """``webhook``: the receiver's webhook_config (default: ``{webhook_url}/alerts``)."""
        assert ALERTMANAGER is not None, "prometheus-alertmanager missing: run `make setup`"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "route": {
                "receiver": "recorder",
                "group_by": ["..."],  # every label: one group, one notification, per alert
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "2s",
            },
            "receivers": [
                {
                    "name": "recorder",
                    "webhook_configs": [
                        webhook or {"url": f"{webhook_url}/alerts", "send_resolved": True}
                    ],
                }
            ],
        }
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.log = directory / "alertmanager.log"
        self.command = [
            ALERTMANAGER,
            f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with open(self.log, "wb") as log:  # the process keeps its own copy
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        eventually(self._ready, 30, "alertmanager ready")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"alertmanager exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(20)

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        answer = httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=10)
        assert answer.status_code == 200, answer.text

    def alerts(self) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: every alert with its status (state, silencedBy, inhibitedBy)."""
        answer = httpx.get(f"{self.url}/api/v2/alerts", timeout=10)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()
        return found

    def silences(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v2/silences", timeout=10)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()
        return found
