"""``make demo``'s scenario end to end (``lumen_alerting.demo``): the real exporter, Prometheus,
Alertmanager and threader on loopback, asserted on the Slack sink the threader posted to.

The demo runs once for the module (about 25 s); the tests look at what it left behind.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from matplotlib.image import imread

from lumen_alerting.demo.scenario import (
    SCENARIO_ALERTS,
    DemoOptions,
    DemoOutcome,
    demo_policy,
    run,
)
from lumen_alerting.demo.slack_sink import SlackSink, Thread
from lumen_alerting.policy import policy_from_manifest
from lumen_alerting.render.prometheus_rule import rules_file
from tests.support.polling import free_port
from tests.support.schemas import REPO

# The scenario's budget: `make demo` must finish in under 3 minutes; this run well under 90 s.
BUDGET_SECONDS = 90

pytestmark = pytest.mark.timeout(240)

CHROMIUM = shutil.which("chromium")
ARTIFACTS = REPO / "test-artifacts" / "demo"
RESOLVED_GREEN = (0x2E, 0xB6, 0x7D)  # the resolved badge and the resolved parent's colour bar
FIRING_RED = (0xE0, 0x1E, 0x5A)  # the firing badge and a critical parent's colour bar


@pytest.fixture(scope="module")
def outcome() -> DemoOutcome:
    return asyncio.run(run(DemoOptions(out=io.StringIO())))


@pytest.fixture(scope="module")
def sink(outcome: DemoOutcome) -> SlackSink:
    assert outcome.sink is not None
    return outcome.sink


def expected_channels() -> dict[str, str]:
    """alertname -> the Slack channel the demo policy routes it to, read from the policy: the
    rendered rule's severity, the route matching it, that receiver's channel."""
    document = demo_policy("http://127.0.0.1:1", None)
    rules = {
        rule["alert"]: rule["labels"]["severity"]
        for group in rules_file([policy_from_manifest(document)])["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    routing: dict[str, Any] = document["spec"]["routing"]
    channels = {r["name"]: r["slack"]["channel"] for r in routing["receivers"]}
    by_severity = {
        route["matchers"][0]["value"]: route["receiver"]
        for route in routing["routes"]
        if [m["name"] for m in route["matchers"]] == ["severity"]
    }
    return {
        name: channels[by_severity.get(rules[name], routing["receiver"])]
        for name in SCENARIO_ALERTS
    }


def test_each_alert_has_one_thread_in_its_channel_resolved_in_place(
    outcome: DemoOutcome, sink: SlackSink
) -> None:
    threads = sink.threads()
    assert sorted(t.parent.alertname or "" for t in threads) == sorted(SCENARIO_ALERTS), [
        (t.channel, t.parent.text) for t in threads
    ]
    placed = {t.parent.alertname: t.channel for t in threads}
    assert placed == expected_channels()
    # Two severities, two channels: routing by severity is seen, not assumed.
    assert len(set(placed.values())) == 2
    for thread in threads:
        assert [r.alertname for r in thread.replies] == [thread.parent.alertname]
        assert [r.resolved for r in thread.replies] == [True], _texts(thread)
        # The parent was posted firing, then updated once into its resolved form.
        assert not thread.parent.versions[0].text.startswith("\N{WHITE HEAVY CHECK MARK}")
        assert len(thread.parent.versions) == 2
        assert thread.parent.resolved, _texts(thread)


def test_nothing_is_posted_twice(sink: SlackSink) -> None:
    threads = sink.threads()
    calls = Counter(sink.calls)
    messages = len(threads) + sum(len(t.replies) for t in threads)
    assert calls["chat.postMessage"] == messages == 2 * len(SCENARIO_ALERTS)
    assert calls["chat.update"] == len(SCENARIO_ALERTS)


def test_the_demo_stops_everything_and_leaves_nothing(outcome: DemoOutcome) -> None:
    assert outcome.exit_statuses == {
        "prometheus": 0,
        "alertmanager": 0,
        "lumen-threader": 0,
        "lumen-exporter": 0,
    }
    assert not outcome.directory.exists()
    assert outcome.seconds < BUDGET_SECONDS
    # Every step is in the transcript, each line with its time.
    steps = [line for line in outcome.transcript if re.search(r"\] step \d+/\d+: ", line)]
    assert len(steps) == 6
    assert all(re.match(r"\[ *\d+\.\ds\] ", line) for line in outcome.transcript)


def test_the_slack_view_shows_channels_threads_and_resolved_parents(sink: SlackSink) -> None:
    """GET / of the sink, served again after the scenario on a fresh port."""

    async def page() -> str:
        url = await sink.start(free_port())
        try:
            async with httpx.AsyncClient(trust_env=False) as client:
                answer = await client.get(url + "/", timeout=10)
        finally:
            await sink.stop()
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        return answer.text

    html = asyncio.run(page())
    for channel in expected_channels().values():
        assert f"<h2>{channel} <small>" in html
    articles = re.findall(r'<article class="([^"]*)"', html)
    assert articles == ["thread resolved"] * len(SCENARIO_ALERTS)
    assert html.count('class="badge resolved-badge">resolved<') == len(SCENARIO_ALERTS)
    for thread in sink.threads():
        reply = thread.replies[0]
        # The reply sits inside its parent's article, after the parent.
        article = html[html.index(f'data-ts="{thread.parent.ts}"') :]
        article = article[: article.index("</article>")]
        assert '<li class="reply">' in article
        assert thread.parent.text.split(" ", 1)[1] in article
        assert reply.text.split(" ", 1)[1] in article


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium not installed (make setup installs it)"
)
def test_chromium_shows_the_resolved_threads(sink: SlackSink, tmp_path: Path) -> None:
    """The Slack view served again after the scenario, screenshotted in headless Chromium
    (kept in test-artifacts/demo/): both threads drawn resolved (green), nothing firing (red)."""
    assert CHROMIUM is not None
    screenshot = tmp_path / "slack-view.png"

    async def shoot() -> tuple[int | None, bytes]:
        url = await sink.start(free_port())
        try:
            process = await asyncio.create_subprocess_exec(
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                f"--screenshot={screenshot}", "--window-size=1024,768", url + "/",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, stderr = await asyncio.wait_for(process.communicate(), 120)
        finally:
            await sink.stop()
        return process.returncode, stderr

    returncode, stderr = asyncio.run(shoot())
    assert returncode == 0 and screenshot.exists(), stderr[-2000:].decode(errors="replace")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, ARTIFACTS / "slack-view.png")

    rgb = np.round(imread(screenshot)[..., :3] * 255).astype(np.int32)
    green = np.all(np.abs(rgb - RESOLVED_GREEN) <= 12, axis=-1).sum()
    red = np.all(np.abs(rgb - FIRING_RED) <= 12, axis=-1).sum()
    assert green > 1500, green  # two badges and two colour bars
    assert red == 0, red


def _texts(thread: Thread) -> list[str]:
    return [thread.parent.text, *(r.text for r in thread.replies)]
