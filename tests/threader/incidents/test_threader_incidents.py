"""The incident store in the running threader, as users drive it: ``lumen-threader`` processes
against the Slack double, the machine's PostgreSQL and a real ``prometheus-alertmanager``.

- a Grafana notification, firing then resolved, opens and resolves a thread and an incident; a
  malformed one gets 400 and stores nothing;
- two replicas over one Redis and one PostgreSQL: an HA pair's duplicate opens one incident, 20
  concurrent acknowledge/resolve calls spread over both end in one state both replicas show;
- a signed Slack click acknowledges the incident and the parent message says who did;
- Silence from Slack creates the Alertmanager silence for the alert's labels, and a repeat of the
  alert is not delivered while it holds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.support.alertmanager_run import Alertmanager
from tests.support.polling import eventually
from tests.support.slack_api import SlackDouble, StoredMessage
from tests.support.threader_run import (
    WEBHOOK_TOKEN,
    RedisServer,
    ThreaderProcess,
    alert,
    notification,
)
from tests.threader.incidents.conftest import postgres_database
from tests.threader.test_grafana_webhook import grafana_payload

API_TOKEN = "incident-api-token-0123456789"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "#alerts"


@pytest.fixture
def secrets(tmp_path: Path) -> dict[str, str]:
    """Flags of the incident secrets, as files."""
    (tmp_path / "api-token").write_text(API_TOKEN)
    (tmp_path / "signing-secret").write_text(SIGNING_SECRET)
    return {
        "api_token_file": str(tmp_path / "api-token"),
        "slack_signing_secret_file": str(tmp_path / "signing-secret"),
    }


@pytest.fixture
def slack() -> Iterator[SlackDouble]:
    with SlackDouble(rate_limit=False) as double:
        yield double


def api(threader: ThreaderProcess, path: str, body: dict[str, Any] | None = None) -> Any:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    url = f"{threader.url}/api/v1{path}"
    if body is None:
        answer = httpx.get(url, headers=headers, timeout=30)
    else:
        answer = httpx.post(url, json=body, headers=headers, timeout=30)
    assert answer.status_code < 500, answer.text
    return answer.json()


def incidents(threader: ThreaderProcess, **query: str) -> list[dict[str, Any]]:
    page = api(threader, "/incidents?" + urlencode({"limit": "500", **query}))
    items: list[dict[str, Any]] = page["items"]
    return items


def one_incident(threader: ThreaderProcess, **query: str) -> dict[str, Any] | None:
    found = incidents(threader, **query)
    assert len(found) <= 1, found
    return found[0] if found else None


def click(threader: ThreaderProcess, payload: dict[str, Any]) -> httpx.Response:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
    }
    return httpx.post(f"{threader.url}/slack/interactions", content=body, headers=headers)


def block_actions(
    parent: StoredMessage, action_id: str, option: str | None = None
) -> dict[str, Any]:
    """Slack's block_actions payload for a click on ``action_id`` in ``parent``'s buttons."""
    blocks = parent.latest.blocks or []
    [actions] = [b for b in blocks if b["type"] == "actions"]
    [element] = [e for e in actions["elements"] if e["action_id"] == action_id]
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": actions["block_id"],
        "type": element["type"],
        "action_ts": f"{time.time():.6f}",
    }
    if option is None:
        action["value"] = element["value"]
    else:
        [chosen] = [o for o in element["options"] if o["value"].endswith(f"|{option}")]
        action["selected_option"] = chosen
    return {
        "type": "block_actions",
        "user": {"id": "U024BE7LH", "username": "ada", "name": "ada", "team_id": "T1"},
        "api_app_id": "A1",
        "container": {"type": "message", "message_ts": parent.ts, "channel_id": parent.channel},
        "trigger_id": "1.2.3",
        "team": {"id": "T1", "domain": "acme"},
        "channel": {"id": parent.channel, "name": "alerts"},
        "message": {"type": "message", "ts": parent.ts, "text": parent.text, "blocks": blocks},
        "response_url": "http://127.0.0.1:9/unused",
        "actions": [action],
    }


def test_a_grafana_notification_opens_and_resolves_a_thread_and_an_incident(
    slack: SlackDouble, secrets: dict[str, str]
) -> None:
    threader = ThreaderProcess(slack.url, "memory", **secrets).start()
    try:
        grafana = f"{threader.url}/webhook/grafana"
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        bad = grafana_payload() | {"version": "4"}
        answer = httpx.post(grafana, json=bad, headers=headers, timeout=30)
        assert answer.status_code == 400, answer.text
        answer = httpx.post(grafana, json=grafana_payload(), headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        incident = eventually(lambda: one_incident(threader), 60, "the incident")
        assert incident["state"] == "triggered"
        parent = eventually(lambda: next(iter(slack.parents(CHANNEL)), None), 60, "the parent")
        blocks = json.dumps(parent.blocks) + json.dumps(parent.attachments)
        assert "grafana.example.com/d/checkout-slo" in blocks  # the dashboard link
        assert '"actions"' in json.dumps(parent.blocks)  # the incident's buttons

        answer = httpx.post(grafana, json=grafana_payload("resolved"), headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        eventually(
            lambda: (one_incident(threader) or {}).get("state") == "resolved", 60, "resolved"
        )
        eventually(lambda: slack.replies(CHANNEL, parent.ts), 60, "the resolved reply")
        detail = api(threader, f"/incidents/{incident['id']}")
        alerts = [e for e in detail["timeline"] if e["type"] == "alert"]
        assert [a["status"] for a in alerts] == ["firing", "resolved"]
        assert alerts[0]["links"]["dashboardURL"].startswith("https://grafana.example.com/d/")
        # The malformed one stored nothing: one incident, two raw alerts.
        assert len(incidents(threader)) == 1
    finally:
        threader.stop()


def test_two_replicas_sharing_postgresql_agree(slack: SlackDouble, secrets: dict[str, str]) -> None:
    redis = RedisServer().start()
    database = next(postgres_database_iter := postgres_database())
    replicas: list[ThreaderProcess] = []
    try:
        for name in ("a", "b"):
            replicas.append(
                ThreaderProcess(
                    slack.url,
                    redis.url,
                    database_url=database,
                    consumer=f"replica-{name}",
                    **secrets,
                ).start()
            )
        first, second = replicas
        # An HA pair: each Alertmanager sends the same notification, one to each replica, at once.
        firing = notification([alert(1), alert(2)], group_key="ha")
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda t: t.notify(firing), replicas))
        assert [a.status_code for a in answers] == [200, 200]
        eventually(lambda: len(incidents(first)) == 2, 60, "two incidents")
        target = next(i for i in incidents(first) if i["title"].startswith("Alert1"))

        actions = ["acknowledge", "resolve"] * 10

        def act(n: int) -> int:
            threader = replicas[n % 2]
            answer = httpx.post(
                f"{threader.url}/api/v1/incidents/{target['id']}/{actions[n]}",
                json={"by": f"person-{n}"},
                headers={"Authorization": f"Bearer {API_TOKEN}"},
                timeout=60,
            )
            return answer.status_code

        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(act, range(20)))
        assert set(statuses) <= {200, 409}, statuses  # 409: acknowledge after the resolve
        seen = [api(t, f"/incidents/{target['id']}") for t in replicas]
        assert seen[0] == seen[1]
        incident = seen[0]["incident"]
        events = [e for e in seen[0]["timeline"] if e["type"] == "event"]
        kinds = [e["kind"] for e in events]
        assert incident["state"] == "resolved"
        assert kinds.count("resolved") == 1 and kinds.count("acknowledged") <= 1, kinds
        changed = statuses.count(200)  # every 200 either changed it or found it so
        assert incident["version"] >= 2 and changed >= 1
        # Both replicas list the same incidents, each alert in exactly one.
        assert incidents(first) == incidents(second)
        assert sorted(i["alerts_total"] for i in incidents(first)) == [1, 1]
    finally:
        for threader in replicas:
            threader.stop()
        redis.remove()
        postgres_database_iter.close()


def test_a_slack_click_acknowledges_and_the_message_says_who(
    slack: SlackDouble, secrets: dict[str, str]
) -> None:
    threader = ThreaderProcess(slack.url, "memory", **secrets).start()
    try:
        assert threader.notify(notification([alert(7)])).status_code == 200
        parent = eventually(lambda: next(iter(slack.parents(CHANNEL)), None), 60, "the parent")
        eventually(lambda: one_incident(threader), 60, "the incident")
        # The incident learns its Slack message before a click can find it.
        eventually(lambda: (one_incident(threader) or {}).get("slack_ts") == parent.ts, 60, "ts")
        payload = block_actions(parent, "lumen.incident.acknowledge")
        unsigned = httpx.post(
            f"{threader.url}/slack/interactions",
            content=urlencode({"payload": json.dumps(payload)}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert unsigned.status_code == 401
        assert (one_incident(threader) or {}).get("state") == "triggered"  # nothing changed
        assert (
            click(threader, block_actions(parent, "lumen.incident.acknowledge")).status_code == 200
        )
        eventually(
            lambda: (one_incident(threader) or {}).get("state") == "acknowledged", 60, "acked"
        )
        incident = one_incident(threader)
        assert incident is not None and incident["acknowledged_by"] == "ada (U024BE7LH)"

        def updated() -> StoredMessage | None:
            latest = next(m for m in slack.parents(CHANNEL) if m.ts == parent.ts)
            return latest if "ada" in json.dumps(latest.latest.blocks) else None

        message = eventually(updated, 60, "the parent naming who acknowledged")
        assert "Acknowledged by" in json.dumps(message.latest.blocks)
    finally:
        threader.stop()


def test_silence_from_slack_holds_the_alert_in_alertmanager(
    slack: SlackDouble, secrets: dict[str, str], tmp_path: Path
) -> None:
    threader = ThreaderProcess(slack.url, "memory", **secrets)
    webhook = {
        "url": f"{threader.url}/alert?channel=%23alerts",
        "send_resolved": True,
        "http_config": {"authorization": {"type": "Bearer", "credentials": WEBHOOK_TOKEN}},
    }
    with Alertmanager(tmp_path / "alertmanager", threader.url, webhook=webhook) as manager:
        threader.command.append(f"--alertmanager-url={manager.url}")
        threader.start()
        try:
            now = time.time()
            silenced = {"alertname": "DiskFull", "service": "orders", "severity": "critical"}
            other = {"alertname": "QueueSlow", "service": "orders", "severity": "warning"}
            manager.post_alerts([{"labels": silenced}, {"labels": other}])

            def parent_of(name: str) -> StoredMessage | None:
                for message in slack.parents(CHANNEL):
                    if name in message.text:
                        return message
                return None

            parent = eventually(lambda: parent_of("DiskFull"), 60, "DiskFull's parent")
            eventually(
                lambda: (one_incident(threader, service="orders", severity="critical") or {}).get(
                    "slack_ts"
                ),
                60,
                "the incident's Slack message",
            )
            answer = click(threader, block_actions(parent, "lumen.incident.silence", option="1h"))
            assert answer.status_code == 200

            def silence() -> dict[str, Any] | None:
                active = [s for s in manager.silences() if s["status"]["state"] == "active"]
                return active[0] if active else None

            created = eventually(silence, 60, "the Alertmanager silence")
            matchers = {m["name"]: m["value"] for m in created["matchers"]}
            assert matchers == silenced
            assert all(m["isEqual"] and not m["isRegex"] for m in created["matchers"])
            assert created["createdBy"] == "ada (U024BE7LH)"
            incident = eventually(
                lambda: one_incident(threader, state="silenced"), 60, "the silenced incident"
            )
            assert incident["silence_id"] == created["id"]

            # Alertmanager sends every group again every 2 s (repeat_interval) and the incident
            # store keeps every alert as received: the control incident's alerts grow, the
            # silenced one's do not once the silence holds.
            def received(severity: str) -> int:
                found = one_incident(threader, service="orders", severity=severity)
                assert found is not None
                timeline = api(threader, f"/incidents/{found['id']}")["timeline"]
                return sum(1 for entry in timeline if entry["type"] == "alert")

            # One repeat of the control first: a notification Alertmanager had already sent when
            # the silence came is in by then.
            control = received("warning")
            eventually(lambda: received("warning") > control, 60, "a repeat of the control")
            held = received("critical")
            control = received("warning")
            eventually(lambda: received("warning") >= control + 3, 60, "repeats of the control")
            assert received("critical") == held
            suppressed = [a for a in manager.alerts() if a["labels"]["alertname"] == "DiskFull"]
            assert suppressed[0]["status"]["state"] == "suppressed"
            assert time.time() - now < 600
        finally:
            threader.stop()
