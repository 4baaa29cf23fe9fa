"""Alert groups of any size reach the threader (#8 item 4): up to MAX_ALERTS large alerts fit
the body limit, more are left out and counted rather than refused (Alertmanager never retries a
4xx), and Alertmanager's own truncation (max_alerts, truncatedAlerts) is counted and logged.
The end-to-end proof runs a real prometheus-alertmanager in front of the threader."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lumen_alerting.threader.app import MAX_BODY
from lumen_alerting.threader.webhook import MAX_ALERTS
from tests.support.polling import eventually, free_port
from tests.support.slack_api import SlackDouble
from tests.support.threader_run import (
    WEBHOOK_TOKEN,
    RedisServer,
    ThreaderProcess,
    alert,
    notification,
)

pytestmark = pytest.mark.timeout(240)

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def large_alert(n: int) -> dict[str, Any]:
    """An alert at the generous end of real ones, about 14 KiB: 46 labels, an 8 KiB
    description, a long summary and dashboard link, and a long generator URL."""
    big = alert(n)
    big["labels"].update(
        {f"label_{i:02d}_name_of_some_length": f"value-{n}-{i}-" + "v" * 40 for i in range(40)}
    )
    big["annotations"]["description"] = ("What is wrong, with context and numbers. " * 200)[:8192]
    big["annotations"]["summary"] = "S" * 200
    big["annotations"]["dashboard"] = "https://grafana.example.com/d/" + "x" * 200
    big["generatorURL"] = "http://prometheus:9090/graph?g0.expr=" + "%28sum%28rate%28" * 120
    return big


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer().start()
    yield server.url
    server.remove()


@pytest.fixture()
def threader(redis_url: str) -> Iterator[ThreaderProcess]:
    # Slack refuses everything (unknown token): these tests are about what is accepted.
    with SlackDouble(token="xoxb-another-workspace") as slack:
        process = ThreaderProcess(slack.url, redis_url).start()
        yield process
        assert process.stop() == 0


def metric(threader: ThreaderProcess, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^lumen_threader_{name}(?:\{{{re.escape(labels)}\}})? (\S+)$", re.M)
    found = pattern.search(threader.metrics())
    return float(found.group(1)) if found else 0.0


def test_a_thousand_large_alerts_are_not_refused_for_their_size(threader: ThreaderProcess) -> None:
    body = json.dumps(notification([large_alert(n) for n in range(MAX_ALERTS)])).encode()
    assert 12 * 2**20 < len(body) < MAX_BODY
    answer = threader.post(body, headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["queued"] == MAX_ALERTS


def test_more_than_the_maximum_are_left_out_counted_and_logged(threader: ThreaderProcess) -> None:
    group = notification([alert(n) for n in range(MAX_ALERTS + 1)], group_key='{}:{big="yes"}')
    answer = threader.post(group, timeout=60)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["queued"] == MAX_ALERTS
    assert metric(threader, "truncated_alerts_total", 'by="threader"') == 1
    assert "has 1001 alerts; only the first 1000 get Slack threads" in threader.log.read_text()


def test_alertmanagers_truncation_is_counted_and_logged(threader: ThreaderProcess) -> None:
    group = notification([alert(1)])
    group["truncatedAlerts"] = 25
    assert threader.post(group).status_code == 200
    assert metric(threader, "truncated_alerts_total", 'by="alertmanager"') == 25
    log = threader.log.read_text()
    assert "WARNING" in log and "Alertmanager left 25 alerts out of group" in log


# --- a real Alertmanager in front -----------------------------------------------------------------


class Alertmanager:
    """prometheus-alertmanager on loopback, clustering off, its webhook pointed at ``url``."""

    def __init__(self, directory: Path, url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "route": {
                "receiver": "threader",
                "group_by": ["group"],
                "group_wait": "1s",
                "group_interval": "5s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "threader",
                    "webhook_configs": [
                        {
                            "url": f"{url}/alert?channel=%23alerts",
                            "max_alerts": MAX_ALERTS,
                            "send_resolved": True,
                            "http_config": {"authorization": {"credentials": WEBHOOK_TOKEN}},
                        }
                    ],
                }
            ],
        }
        (directory / "alertmanager.yml").write_text(yaml.safe_dump(config))
        assert ALERTMANAGER is not None
        self.log = directory / "alertmanager.log"
        self.command = [
            ALERTMANAGER,
            f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Alertmanager:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        eventually(self._ready, 30, f"alertmanager ({self.log.read_text()[-500:]})")
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

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and 'integration="webhook"' in line
        )


@pytest.mark.skipif(ALERTMANAGER is None, reason="prometheus-alertmanager is not installed")
def test_alertmanager_truncates_a_big_group_and_the_threader_takes_it(
    threader: ThreaderProcess, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    alerts = [
        {
            "labels": {"alertname": "Big", "group": "one", "instance": f"pod-{n}"},
            "annotations": {"summary": f"pod {n} is unhappy"},
            "startsAt": (now - timedelta(minutes=1)).isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }
        for n in range(MAX_ALERTS + 20)
    ]
    with Alertmanager(tmp_path, threader.url) as alertmanager:
        answer = httpx.post(f"{alertmanager.url}/api/v2/alerts", json=alerts, timeout=30)
        assert answer.status_code == 200, answer.text
        eventually(
            lambda: metric(threader, "alerts_total", 'disposition="queued"') >= MAX_ALERTS,
            timeout=90,
            what="the group in the threader's outbox",
        )
        assert alertmanager.metric("alertmanager_notifications_failed_total") == 0
        assert alertmanager.metric("alertmanager_notifications_total") >= 1
    assert metric(threader, "notifications_total", 'result="accepted"') >= 1
    assert metric(threader, "notifications_total", 'result="invalid"') == 0
    # (A first notification at group_wait may hold only part of the group: more than
    # MAX_ALERTS threads in all is fine; what matters is that no notification was refused.)
    assert metric(threader, "truncated_alerts_total", 'by="alertmanager"') >= 20
