"""Run ``lumen-threader`` processes, private Redis servers and Alertmanager-shaped notifications
for the threader's tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.polling import eventually, free_port
from tests.support.schemas import REPO
from tests.support.slack_api import StoredMessage

WEBHOOK_TOKEN = "webhook-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
SLACK_TOKEN = "xoxb-test-token"


class ThreaderProcess:
    """``python -m lumen_alerting.cli.threader`` with token files in a private directory."""

    def __init__(
        self,
        slack_url: str,
        store: str,
        *,
        slack_token: str = SLACK_TOKEN,
        **flags: str | bool,
    ) -> None:
        """``flags`` by their names with underscores; ``True`` for a flag without a value."""
        self._dir = Path(tempfile.mkdtemp(prefix="threader-"))
        (self._dir / "webhook").write_text(WEBHOOK_TOKEN)
        (self._dir / "admin").write_text(ADMIN_TOKEN)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        arguments: dict[str, str | bool] = {
            "listen": f"127.0.0.1:{self.port}",
            "store": store,
            "slack-api-url": slack_url,
            "webhook-token-file": str(self._dir / "webhook"),
            "admin-token-file": str(self._dir / "admin"),
            "default-channel": "#alerts",
            **{key.replace("_", "-"): value for key, value in flags.items()},
        }
        self.command = [sys.executable, "-m", "lumen_alerting.cli.threader"]
        self.command += [
            f"--{key}" if value is True else f"--{key}={value}" for key, value in arguments.items()
        ]
        self.process: subprocess.Popen[str] | None = None
        self.log = self._dir / "log"
        self.env = {"SLACK_BOT_TOKEN": slack_token}  # set before start() to change

    def start(self) -> ThreaderProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUMEN_")}
        env.update(self.env)
        env["PYTHONPATH"] = str(REPO / "operator")
        with open(self.log, "a", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                self.command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
            )
        eventually(self._healthy, 60, f"threader on {self.url} ({self.log.read_text()[-500:]})")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"threader exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        shutil.rmtree(self._dir, ignore_errors=True)
        return self.process.returncode

    def post(self, notification: dict[str, Any] | bytes, **options: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        headers.update(options.pop("headers", {}))
        options.setdefault("timeout", 30)
        if isinstance(notification, bytes):
            return httpx.post(f"{self.url}/alert", content=notification, headers=headers, **options)
        return httpx.post(f"{self.url}/alert", json=notification, headers=headers, **options)

    def notify(
        self, notification: dict[str, Any], *, within: float = 60, **options: Any
    ) -> httpx.Response:
        """POST as Alertmanager does: a 503 (the store stalled on a loaded machine, say) is sent
        again until it is answered otherwise; that answer."""

        def answered() -> httpx.Response | None:
            answer = self.post(notification, **options)
            return None if answer.status_code == 503 else answer

        return eventually(answered, within, f"an answer other than 503 from {self.url}")

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text


class RedisServer:
    """A private ``redis-server`` on a free port, for tests that stop and start it. Durable by
    default (AOF, fsync always); ``options`` are more ``redis-server`` arguments, later ones win
    (``"--appendonly", "no"``)."""

    def __init__(self, *options: str) -> None:
        self._options = options
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self._dir,
             *self._options],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        eventually(self._up, 30, "redis-server")
        return self

    def _up(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def kill(self) -> None:
        """A crash: no shutdown save, no final fsync."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)


def alert(
    n: int = 1,
    status: str = "firing",
    *,
    starts: datetime = T0,
    severity: str = "critical",
    **labels: str,
) -> dict[str, Any]:
    ends = "0001-01-01T00:00:00Z" if status == "firing" else _time(starts + timedelta(minutes=5))
    return {
        "status": status,
        "labels": {
            "alertname": f"Alert{n}",
            "severity": severity,
            "service": "checkout",
            "cluster": "prod-1",
            "env": "production",
            "instance": f"pod-{n}",
            **labels,
        },
        "annotations": {
            "summary": f"Checkout alert {n}",
            "description": f"Something is wrong with part {n}.",
            "runbook_url": f"https://runbooks.example.com/{n}",
        },
        "startsAt": _time(starts),
        "endsAt": ends,
        "generatorURL": "http://prometheus/graph",
        "fingerprint": f"{n:016x}",
    }


def notification(
    alerts: list[dict[str, Any]], group_key: str = '{}:{alertname="x"}'
) -> dict[str, Any]:
    statuses = {a["status"] for a in alerts}
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if "firing" in statuses else "resolved",
        "receiver": "slack",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "alerts": alerts,
    }


def thread_key(parent: StoredMessage) -> str:
    """The key the threader stored in a parent message's metadata (its ``event_payload``)."""
    assert parent.metadata is not None, f"parent {parent.ts} has no metadata"
    key: str = parent.metadata["event_payload"]["thread_key"]
    return key


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
