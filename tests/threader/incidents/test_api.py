"""The incident REST API over a real IncidentStore on SQLite, the machine's PostgreSQL and
MariaDB (each a database of its own: conftest's ``database_url``): filters, pages, sorting, the
timeline, idempotent actions, the silence's two systems kept consistent, and every error status.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.threader.incidents.incident_app import (
    API_TOKEN,
    BASE_TIME,
    IncidentApp,
    RecordingSilences,
    received,
)

pytestmark = pytest.mark.timeout(120)

NOW = BASE_TIME + timedelta(hours=2)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture()
def silences() -> RecordingSilences:
    return RecordingSilences()


@pytest.fixture()
def app(database_url: str, silences: RecordingSilences) -> Iterator[IncidentApp]:
    served = IncidentApp(database_url, silences=silences, clock=lambda: NOW).start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture()
def client(app: IncidentApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.url, headers=AUTH, timeout=30) as http:
        yield http


def seed(app: IncidentApp) -> dict[str, int]:
    """Five incidents over two services, severities, clusters and an hour apart."""
    alerts = {
        "a-gateway-critical": received("a1", service="gateway", starts_at=BASE_TIME),
        "b-gateway-warning": received(
            "b2", service="gateway", severity="warning", starts_at=BASE_TIME + timedelta(minutes=10)
        ),
        "c-ion-critical": received(
            "c3", service="ion", alertname="IonDown", starts_at=BASE_TIME + timedelta(minutes=20)
        ),
        "d-ion-us": received(
            "d4",
            service="ion",
            cluster="prod-us-1",
            severity="warning",
            starts_at=BASE_TIME + timedelta(minutes=30),
        ),
        "e-billing": received(
            "e5",
            service="billing",
            namespace="payments",
            starts_at=BASE_TIME + timedelta(minutes=40),
        ),
    }
    ids = {}
    for name, alert in alerts.items():
        (incident,) = app.record(alert)
        ids[name] = incident.id
    return ids


def titles(body: dict[str, Any]) -> list[int]:
    return [item["id"] for item in body["items"]]


def test_the_list_filters_by_each_label_state_and_time(
    app: IncidentApp, client: httpx.Client
) -> None:
    ids = seed(app)
    everything = client.get("/api/v1/incidents").json()
    assert everything["total"] == 5
    assert set(titles(everything)) == set(ids.values())

    gateway = client.get("/api/v1/incidents", params={"service": "gateway"}).json()
    assert set(titles(gateway)) == {ids["a-gateway-critical"], ids["b-gateway-warning"]}
    assert gateway["total"] == 2
    assert all(item["service"] == "gateway" for item in gateway["items"])

    warning = client.get("/api/v1/incidents", params={"severity": "warning"}).json()
    assert set(titles(warning)) == {ids["b-gateway-warning"], ids["d-ion-us"]}
    us = client.get("/api/v1/incidents", params={"cluster": "prod-us-1"}).json()
    assert titles(us) == [ids["d-ion-us"]]
    payments = client.get("/api/v1/incidents", params={"namespace": "payments"}).json()
    assert titles(payments) == [ids["e-billing"]]
    both = client.get("/api/v1/incidents", params={"service": "ion", "severity": "critical"})
    assert titles(both.json()) == [ids["c-ion-critical"]]

    client.post(f"/api/v1/incidents/{ids['c-ion-critical']}/acknowledge", json={"by": "ada"})
    acknowledged = client.get("/api/v1/incidents", params={"state": "acknowledged"}).json()
    assert titles(acknowledged) == [ids["c-ion-critical"]]
    triggered = client.get("/api/v1/incidents", params={"state": "triggered"}).json()
    assert triggered["total"] == 4

    window = client.get(
        "/api/v1/incidents",
        params={
            "since": (BASE_TIME + timedelta(minutes=10)).isoformat(),
            "until": (BASE_TIME + timedelta(minutes=25)).isoformat().replace("+00:00", "Z"),
        },
    ).json()
    assert set(titles(window)) == {ids["b-gateway-warning"], ids["c-ion-critical"]}


def test_pages_cover_every_incident_once_in_the_order_asked(
    app: IncidentApp, client: httpx.Client
) -> None:
    ids = seed(app)
    newest_first = [
        ids[name]
        for name in (
            "e-billing",
            "d-ion-us",
            "c-ion-critical",
            "b-gateway-warning",
            "a-gateway-critical",
        )
    ]
    seen: list[int] = []
    for offset in (0, 2, 4):
        page = client.get("/api/v1/incidents", params={"limit": 2, "offset": offset}).json()
        assert (page["total"], page["limit"], page["offset"]) == (5, 2, offset)
        seen += titles(page)
    assert seen == newest_first
    past_the_end = client.get("/api/v1/incidents", params={"offset": 10}).json()
    assert past_the_end["items"] == [] and past_the_end["total"] == 5

    oldest_first = client.get("/api/v1/incidents", params={"sort": "opened_at"}).json()
    assert titles(oldest_first) == list(reversed(newest_first))
    by_severity = client.get("/api/v1/incidents", params={"sort": "severity"}).json()
    severities = [item["severity"] for item in by_severity["items"]]
    assert severities in (sorted(severities), sorted(severities, reverse=True))
    assert (
        severities != [item["severity"] for item in oldest_first["items"]]
        or len(set(severities)) == 1
    )
    reverse = client.get("/api/v1/incidents", params={"sort": "-severity"}).json()
    assert [item["severity"] for item in reverse["items"]] == list(reversed(severities))


def test_the_detail_merges_alerts_and_state_changes_in_time_order(
    app: IncidentApp, client: httpx.Client
) -> None:
    firing = received(
        "f6",
        links={"dashboardURL": "https://grafana.example/d/abc", "panelURL": "https://g/p"},
        summary="ION is down",
    )
    (incident,) = app.record(firing)
    client.post(f"/api/v1/incidents/{incident.id}/acknowledge", json={"by": "grace"})
    resolved = received("f6", status="resolved", received_at=BASE_TIME + timedelta(hours=3))
    app.record(resolved)

    response = client.get(f"/api/v1/incidents/{incident.id}")
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["incident"]["state"] == "resolved"
    assert detail["incident"]["acknowledged_by"] == "grace"
    timeline = detail["timeline"]
    times = [datetime.fromisoformat(entry["at"]) for entry in timeline]
    assert times == sorted(times)
    alerts = [entry for entry in timeline if entry["type"] == "alert"]
    events = [entry for entry in timeline if entry["type"] == "event"]
    assert [alert["status"] for alert in alerts] == ["firing", "resolved"]
    assert alerts[0]["links"]["dashboardURL"] == "https://grafana.example/d/abc"
    assert alerts[0]["annotations"]["summary"] == "ION is down"
    kinds = [(event["kind"], event["actor"]) for event in events]
    assert ("acknowledged", "grace") in kinds
    assert kinds[0][0] == "opened"
    assert kinds[-1][0] == "auto_resolved"
    # Acknowledged at NOW (BASE+2h) lies between the firing and the resolved alert.
    order = [entry.get("kind", entry.get("status")) for entry in timeline]
    assert order.index("acknowledged") < order.index("resolved")


def test_acknowledge_is_idempotent_and_names_who_and_when(
    app: IncidentApp, client: httpx.Client
) -> None:
    (incident,) = app.record(received("g7"))
    first = client.post(f"/api/v1/incidents/{incident.id}/acknowledge", json={"by": " ada "})
    assert first.status_code == 200, first.text
    assert first.json()["changed"] is True
    body = first.json()["incident"]
    assert body["state"] == "acknowledged"
    assert body["acknowledged_by"] == "ada"
    assert datetime.fromisoformat(body["acknowledged_at"]) == NOW

    again = client.post(f"/api/v1/incidents/{incident.id}/acknowledge", json={"by": "bob"})
    assert again.status_code == 200
    assert again.json()["changed"] is False
    assert again.json()["incident"]["acknowledged_by"] == "ada"
    assert [change.state for change in app.changes] == ["acknowledged"]

    resolved = client.post(f"/api/v1/incidents/{incident.id}/resolve", json={"by": "bob"})
    assert resolved.json()["changed"] is True
    body = resolved.json()["incident"]
    assert (body["state"], body["resolved_by"], body["resolved_while_firing"]) == (
        "resolved",
        "bob",
        True,
    )
    assert (
        client.post(f"/api/v1/incidents/{incident.id}/resolve", json={"by": "bob"}).json()[
            "changed"
        ]
        is False
    )

    refused = client.post(f"/api/v1/incidents/{incident.id}/acknowledge", json={"by": "ada"})
    assert refused.status_code == 409
    assert refused.json()["error"]


def test_silence_creates_the_alertmanager_silence_then_records_it(
    app: IncidentApp, client: httpx.Client, silences: RecordingSilences
) -> None:
    (incident,) = app.record(received("h8", summary="gateway restarts"))
    response = client.post(
        f"/api/v1/incidents/{incident.id}/silence", json={"by": "ada", "duration": "4h"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["changed"] is True
    assert body["incident"]["state"] == "silenced"
    assert body["incident"]["silence_id"] == "silence-1"
    assert body["incident"]["silenced_by"] == "ada"
    assert datetime.fromisoformat(body["incident"]["silenced_until"]) == NOW + timedelta(hours=4)
    (created,) = silences.created
    assert created["matchers"] == dict(received("h8").labels)
    assert created["ends_at"] == NOW + timedelta(hours=4)
    assert created["created_by"] == "ada"
    assert created["comment"] == f"Lumen incident {incident.id}: {incident.title}"

    # Silencing again replaces the silence: the old one is expired, not left to run on.
    longer = client.post(
        f"/api/v1/incidents/{incident.id}/silence", json={"by": "ada", "duration": "1d"}
    )
    assert longer.json()["incident"]["silence_id"] == "silence-2"
    assert silences.expired == ["silence-1"]

    ended = client.post(f"/api/v1/incidents/{incident.id}/end-silence", json={"by": "bob"})
    assert ended.status_code == 200, ended.text
    assert ended.json()["incident"]["state"] == "triggered"
    assert silences.expired == ["silence-1", "silence-2"]
    again = client.post(f"/api/v1/incidents/{incident.id}/end-silence", json={"by": "bob"})
    assert again.json()["changed"] is False
    assert silences.expired == ["silence-1", "silence-2"]


def test_a_silence_the_store_refuses_is_expired_again(
    app: IncidentApp, client: httpx.Client, silences: RecordingSilences
) -> None:
    (incident,) = app.record(received("i9"))

    async def resolved_meanwhile() -> None:
        # Someone resolves the incident between Alertmanager's answer and the store's write.
        await app.store.resolve(incident.id, "grace", NOW)

    silences.meanwhile = resolved_meanwhile
    response = client.post(
        f"/api/v1/incidents/{incident.id}/silence", json={"by": "ada", "duration": "1h"}
    )
    assert response.status_code == 409, response.text
    assert silences.expired == ["silence-1"]  # nothing left behind in Alertmanager
    state = client.get(f"/api/v1/incidents/{incident.id}").json()["incident"]
    assert (state["state"], state["silence_id"]) == ("resolved", None)


def test_alertmanager_failing_stores_nothing(
    app: IncidentApp, client: httpx.Client, silences: RecordingSilences
) -> None:
    (incident,) = app.record(received("j10"))
    silences.fail = "Alertmanager at http://am:9093 unreachable: connection refused"
    response = client.post(
        f"/api/v1/incidents/{incident.id}/silence", json={"by": "ada", "duration": "1d"}
    )
    assert response.status_code == 502
    assert "connection refused" in response.json()["error"]
    assert client.get(f"/api/v1/incidents/{incident.id}").json()["incident"]["state"] == (
        "triggered"
    )


def test_without_silences_configured_silence_is_refused(database_url: str) -> None:
    served = IncidentApp(database_url, silences=None).start()
    try:
        (incident,) = served.record(received("k11"))
        with httpx.Client(base_url=served.url, headers=AUTH) as http:
            response = http.post(
                f"/api/v1/incidents/{incident.id}/silence", json={"by": "ada", "duration": "1h"}
            )
    finally:
        served.stop()
    assert response.status_code == 409
    assert "--alertmanager-url" in response.json()["error"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_TOKEN}"}],
    ids=["missing", "wrong", "not-bearer"],
)
def test_every_operation_needs_the_bearer_token(app: IncidentApp, headers: dict[str, str]) -> None:
    (incident,) = app.record(received("l12"))
    with httpx.Client(base_url=app.url, headers=headers) as http:
        for method, path in [
            ("GET", "/api/v1/incidents"),
            ("GET", f"/api/v1/incidents/{incident.id}"),
            ("POST", f"/api/v1/incidents/{incident.id}/acknowledge"),
            ("POST", f"/api/v1/incidents/{incident.id}/resolve"),
            ("POST", f"/api/v1/incidents/{incident.id}/silence"),
            ("POST", f"/api/v1/incidents/{incident.id}/end-silence"),
        ]:
            response = http.request(method, path, json={"by": "mallory", "duration": "1h"})
            assert response.status_code == 401, (method, path)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.json()["error"]
        assert http.get("/api/v1/openapi.json").status_code == 200
    assert app.run(lambda store: store.get(incident.id)).incident.state == "triggered"


def test_without_an_api_token_the_api_is_disabled(database_url: str) -> None:
    served = IncidentApp(database_url, api_token="").start()
    try:
        with httpx.Client(base_url=served.url, headers=AUTH) as http:
            response = http.get("/api/v1/incidents")
    finally:
        served.stop()
    assert response.status_code == 503
    assert "--api-token-file" in response.json()["error"]


def test_unknown_incidents_are_404(client: httpx.Client) -> None:
    assert client.get("/api/v1/incidents/424242").status_code == 404
    response = client.post("/api/v1/incidents/424242/acknowledge", json={"by": "ada"})
    assert response.status_code == 404
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"limit": "0"}, "query.limit"),
        ({"limit": "501"}, "query.limit"),
        ({"offset": "-1"}, "query.offset"),
        ({"state": "open"}, "query.state"),
        ({"sort": "title"}, "query.sort"),
        ({"since": "2026-03-01T12:00:00"}, "query.since"),  # no offset: which zone?
        ({"until": "yesterday"}, "query.until"),
        ({"colour": "red"}, "query.colour"),
        ({"service": "a\x00b"}, "query.service"),
        ([("service", "a"), ("service", "b")], "query.service"),
    ],
)
def test_invalid_queries_are_400_naming_the_parameter(
    client: httpx.Client, params: Any, where: str
) -> None:
    response = client.get("/api/v1/incidents", params=params)
    assert response.status_code == 400, response.text
    assert any(problem.startswith(where) for problem in response.json()["problems"])


@pytest.mark.parametrize(
    ("action", "body", "where"),
    [
        ("acknowledge", b"", "body"),
        ("acknowledge", b"{", "body"),
        ("acknowledge", b"[]", "body"),
        ("acknowledge", b"{}", "body.by"),
        ("resolve", b'{"by": ""}', "body.by"),
        ("resolve", b'{"by": "   "}', "body.by"),
        ("resolve", b'{"by": 7}', "body.by"),
        ("resolve", ('{"by": "' + "x" * 201 + '"}').encode(), "body.by"),
        ("resolve", b'{"by": "ada", "when": "now"}', "body.when"),
        ("silence", b'{"by": "ada"}', "body.duration"),
        ("silence", b'{"by": "ada", "duration": "2h"}', "body.duration"),
        ("end-silence", b'{"by": "a\\u0000b"}', "body.by"),
    ],
)
def test_invalid_bodies_are_400_and_change_nothing(
    app: IncidentApp, client: httpx.Client, action: str, body: bytes, where: str
) -> None:
    (incident,) = app.record(received("m13"))
    response = client.post(
        f"/api/v1/incidents/{incident.id}/{action}",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert any(problem.startswith(where) for problem in response.json()["problems"])
    assert app.run(lambda store: store.get(incident.id)).incident.version == incident.version


@pytest.mark.parametrize("incident_id", ["abc", "0", "-3", "1.5", str(2**31), "٣"])
def test_invalid_ids_are_400(client: httpx.Client, incident_id: str) -> None:
    response = client.get(f"/api/v1/incidents/{incident_id}")
    assert response.status_code == 400, response.text
    assert response.json()["problems"][0].startswith("path.id")


def test_a_failing_follow_up_does_not_undo_or_hide_the_action(database_url: str) -> None:
    served = IncidentApp(database_url, failing_follow_up=True).start()
    try:
        (incident,) = served.record(received("n14"))
        with httpx.Client(base_url=served.url, headers=AUTH) as http:
            response = http.post(f"/api/v1/incidents/{incident.id}/acknowledge", json={"by": "ada"})
    finally:
        served.stop()
    assert response.status_code == 200, response.text
    assert response.json()["changed"] is True
    assert [change.state for change in served.changes] == ["acknowledged"]
