"""IncidentStore against real SQLite, PostgreSQL and MariaDB databases (conftest.database_url):
recording and grouping, the list, the actions and their state rules under concurrency, the
migrations, pruning and failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from alembic import command

from lumen_alerting.threader.incidents.grouping import incident_key
from lumen_alerting.threader.incidents.migrations import alembic_config, upgrade
from lumen_alerting.threader.incidents.records import (
    SYSTEM_ACTOR,
    ActionRefused,
    IncidentFilter,
    IncidentNotFound,
    IncidentStoreUnavailable,
    ReceivedAlert,
)
from lumen_alerting.threader.incidents.store import IncidentStore, database_url

from .conftest import mariadb_database, postgres_database

T0 = datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=UTC)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def alert(
    fingerprint: str = "fp1",
    *,
    status: Literal["firing", "resolved"] = "firing",
    starts_at: datetime = T0,
    received_at: datetime | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    group_by: tuple[str, ...] = (),
    ends_at: datetime | None = None,
) -> ReceivedAlert:
    labels = dict(
        labels
        if labels is not None
        else {
            "alertname": "HighErrorRate",
            "severity": "critical",
            "service": "checkout",
            "cluster": "eu-1",
            "namespace": "shop",
        }
    )
    return ReceivedAlert(
        source="alertmanager",
        receiver="slack-critical",
        group_key='{}:{alertname="HighErrorRate"}',
        received_at=received_at or starts_at + timedelta(seconds=30),
        incident_key=incident_key(fingerprint, starts_at, labels, group_by),
        fingerprint=fingerprint,
        status=status,
        starts_at=starts_at,
        ends_at=ends_at
        if ends_at is not None or status == "firing"
        else starts_at + timedelta(minutes=5),
        labels=labels,
        annotations=dict(annotations or {"summary": "5% of checkouts fail"}),
        links={"generatorURL": "http://prometheus/graph"},
        values={"B": 0.05},
        payload={"fingerprint": fingerprint, "status": status},
    )


@pytest.fixture()
def store(database_url: str) -> Iterator[IncidentStore]:
    opened = IncidentStore.open(database_url)
    yield opened
    run(opened.close())


def test_record_keeps_every_alert_raw_and_opens_one_incident_per_occurrence(store):
    first = alert()
    changes = run(store.record([first, first]))  # the same alert twice (an HA pair)
    assert len(changes) == 1
    change = changes[0]
    assert change.opened and not change.resolved
    incident = change.incident
    assert incident.key == "fp1@2026-12-02T09:30:15.123456Z"
    assert incident.state == "triggered"
    assert incident.title == "HighErrorRate — 5% of checkouts fail"
    assert (incident.severity, incident.service, incident.cluster, incident.namespace) == (
        "critical",
        "checkout",
        "eu-1",
        "shop",
    )
    assert incident.opened_at == T0  # microseconds and UTC survive every database
    assert incident.opened_at.tzinfo is not None
    assert (incident.alerts_firing, incident.alerts_total) == (1, 1)

    detail = run(store.get(incident.id))
    assert len(detail.alerts) == 2
    raw = detail.alerts[0]
    assert raw.receiver == "slack-critical"
    assert raw.group_key == '{}:{alertname="HighErrorRate"}'
    assert raw.received_at == T0 + timedelta(seconds=30)
    assert raw.source == "alertmanager"
    assert raw.links == {"generatorURL": "http://prometheus/graph"}
    assert raw.labels["alertname"] == "HighErrorRate"
    assert [event.kind for event in detail.events] == ["opened", "alert_firing"]

    # A title without a summary is the alert's name alone.
    (other,) = run(store.record([alert("fp2", annotations={"description": "no summary"})]))
    assert other.incident.title == "HighErrorRate"
    assert other.opened and other.incident.id != incident.id


def test_stored_payload_links_and_values(store, database_url):
    run(store.record([alert()]))
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                sa.text("SELECT payload, links, alert_values FROM raw_alerts")
            ).one()
    finally:
        engine.dispose()
    # Read back as plain SQL: MariaDB's JSON is text to the driver.
    decoded = [value if isinstance(value, dict) else json.loads(value) for value in row]
    assert decoded == [
        {"fingerprint": "fp1", "status": "firing"},
        {"generatorURL": "http://prometheus/graph"},
        {"B": 0.05},
    ]


def test_group_by_labels_puts_alerts_of_one_service_in_one_incident(store):
    group_by = ("alertname", "service")
    a = alert("fpA", labels={"alertname": "Down", "service": "api", "pod": "a"}, group_by=group_by)
    b = alert(
        "fpB",
        starts_at=T0 + timedelta(minutes=1),
        labels={"alertname": "Down", "service": "api", "pod": "b"},
        group_by=group_by,
    )
    c = alert("fpC", labels={"alertname": "Down", "service": "web"}, group_by=group_by)
    changes = run(store.record([a, b, c]))
    assert len(changes) == 2
    api = next(change.incident for change in changes if change.incident.service == "api")
    assert api.key == "alertname=Down,service=api"
    assert (api.alerts_firing, api.alerts_total) == (2, 2)
    assert run(store.matchers_of(api.id)) == {"alertname": "Down", "service": "api"}

    # One of two resolves: still open; both: resolved by the system.
    resolved_a = alert(
        "fpA",
        status="resolved",
        labels=a.labels,
        group_by=group_by,
        received_at=T0 + timedelta(minutes=10),
    )
    (change,) = run(store.record([resolved_a]))
    assert change.incident.state == "triggered" and not change.resolved
    assert change.incident.alerts_firing == 1
    resolved_b = alert(
        "fpB",
        status="resolved",
        starts_at=b.starts_at,
        labels=b.labels,
        group_by=group_by,
        received_at=T0 + timedelta(minutes=11),
    )
    (change,) = run(store.record([resolved_b]))
    assert change.resolved
    assert change.incident.state == "resolved"
    assert change.incident.resolved_by == SYSTEM_ACTOR
    assert change.incident.resolved_at == resolved_b.ends_at
    assert not change.incident.resolved_while_firing
    kinds = [event.kind for event in run(store.get(api.id)).events]
    assert kinds == ["opened", "alert_firing", "alert_resolved", "alert_resolved", "auto_resolved"]

    # The same alert firing again after resolution (grouped by labels): a new incident.
    refire = alert("fpA", starts_at=T0 + timedelta(hours=1), labels=a.labels, group_by=group_by)
    (change,) = run(store.record([refire]))
    assert change.opened and change.incident.id != api.id
    assert run(store.find("alertname=Down,service=api")).id == change.incident.id


def test_refire_after_resolution_opens_a_new_incident(store):
    (first,) = run(store.record([alert()]))
    (resolved,) = run(store.record([alert(status="resolved")]))
    assert resolved.incident.id == first.incident.id and resolved.resolved
    later = T0 + timedelta(hours=2)
    (refire,) = run(store.record([alert(starts_at=later)]))
    assert refire.opened and refire.incident.id != first.incident.id
    assert refire.incident.state == "triggered"
    # A late repeat of the first occurrence still goes to the first incident.
    (late,) = run(store.record([alert(status="resolved")]))
    assert late.incident.id == first.incident.id and not late.resolved


def test_manual_resolve_while_firing_is_shown_and_a_later_repeat_is_kept(store):
    (change,) = run(store.record([alert()]))
    incident_id = change.incident.id
    outcome = run(store.resolve(incident_id, "ada (U1)", T0 + timedelta(minutes=3)))
    assert outcome.changed
    assert outcome.incident.state == "resolved"
    assert outcome.incident.resolved_while_firing
    assert outcome.incident.resolved_by == "ada (U1)"

    (repeat,) = run(store.record([alert(received_at=T0 + timedelta(hours=4))]))
    assert repeat.incident.id == incident_id
    assert repeat.incident.state == "resolved" and not repeat.opened
    assert repeat.incident.alerts_firing == 1
    events = run(store.get(incident_id)).events
    assert [event.kind for event in events] == ["opened", "resolved", "alert_firing"]
    assert "still fired" in events[1].detail and events[1].actor == "ada (U1)"
    assert events[2].state == "resolved"

    # When it resolves at last: an alert_resolved event, no second resolution.
    (done,) = run(store.record([alert(status="resolved", received_at=T0 + timedelta(hours=5))]))
    assert not done.resolved and done.incident.resolved_by == "ada (U1)"
    assert done.incident.alerts_firing == 0
    kinds = [event.kind for event in run(store.get(incident_id)).events]
    assert kinds == ["opened", "resolved", "alert_firing", "alert_resolved"]


def test_actions_follow_the_state_rules_and_log_who_acted(store):
    (change,) = run(store.record([alert()]))
    incident_id = change.incident.id
    at = T0 + timedelta(minutes=1)

    acked = run(store.acknowledge(incident_id, "ada", at))
    assert acked.changed and acked.incident.state == "acknowledged"
    assert acked.incident.acknowledged_by == "ada" and acked.incident.acknowledged_at == at
    assert acked.incident.version == 2
    again = run(store.acknowledge(incident_id, "bob", at))
    assert not again.changed and again.incident.acknowledged_by == "ada"
    assert again.incident.version == 2

    until = at + timedelta(hours=1)
    silenced = run(store.silence(incident_id, "bob", at, until, "sil-1"))
    assert silenced.changed and silenced.incident.state == "silenced"
    assert silenced.incident.silenced_until == until and silenced.incident.silence_id == "sil-1"
    longer = run(store.silence(incident_id, "bob", at, until + timedelta(hours=3), "sil-2"))
    assert longer.changed and longer.incident.silence_id == "sil-2"
    ended = run(store.end_silence(incident_id, "bob", at))
    assert ended.changed and ended.incident.state == "acknowledged"
    assert ended.incident.silenced_until is None and ended.incident.silence_id is None
    assert not run(store.end_silence(incident_id, "bob", at)).changed

    resolved = run(store.resolve(incident_id, "carl", at))
    assert resolved.changed and resolved.incident.version == 6
    assert not run(store.resolve(incident_id, "carl", at)).changed
    with pytest.raises(ActionRefused):
        run(store.acknowledge(incident_id, "dan", at))
    with pytest.raises(ActionRefused):
        run(store.silence(incident_id, "dan", at, until, "sil-3"))

    events = run(store.get(incident_id)).events
    assert [(event.kind, event.actor, event.state) for event in events] == [
        ("opened", SYSTEM_ACTOR, "triggered"),
        ("acknowledged", "ada", "acknowledged"),
        ("silenced", "bob", "silenced"),
        ("silenced", "bob", "silenced"),
        ("silence_ended", "bob", "acknowledged"),
        ("resolved", "carl", "resolved"),
    ]
    assert run(store.get(incident_id)).incident.version == 6

    with pytest.raises(IncidentNotFound):
        run(store.get(incident_id + 1000))
    with pytest.raises(IncidentNotFound):
        run(store.acknowledge(incident_id + 1000, "ada", at))


def test_silences_that_ran_out_end(store):
    (a,) = run(store.record([alert("fpA")]))
    (b,) = run(store.record([alert("fpB")]))
    at = T0 + timedelta(minutes=1)
    run(store.acknowledge(a.incident.id, "ada", at))
    run(store.silence(a.incident.id, "ada", at, at + timedelta(hours=1), "s-a"))
    run(store.silence(b.incident.id, "ada", at, at + timedelta(hours=4), "s-b"))
    # Acknowledging a silenced incident keeps it silenced but notes who.
    acked = run(store.acknowledge(b.incident.id, "bob", at))
    assert acked.changed and acked.incident.state == "silenced"
    assert acked.incident.acknowledged_by == "bob"

    assert run(store.expire_silences(at + timedelta(minutes=59))) == []
    (ended,) = run(store.expire_silences(at + timedelta(hours=1)))
    assert ended.id == a.incident.id and ended.state == "acknowledged"
    last = run(store.get(a.incident.id)).events[-1]
    assert (last.kind, last.actor) == ("silence_ended", SYSTEM_ACTOR)
    assert run(store.get(b.incident.id)).incident.state == "silenced"


def test_list_filters_sorts_and_pages(store):
    rows = [
        ("f1", "critical", "checkout", "eu-1", "shop", 0),
        ("f2", "warning", "checkout", "eu-1", "shop", 1),
        ("f3", "info", "search", "eu-1", "web", 2),
        ("f4", "critical", "search", "us-1", "web", 3),
        ("f5", "warning", "search", "us-1", "web", 3),  # same opened_at as f4: id breaks the tie
    ]
    ids: dict[str, int] = {}
    for fingerprint, severity, service, cluster, namespace, minute in rows:
        labels = {
            "alertname": "A",
            "severity": severity,
            "service": service,
            "cluster": cluster,
            "namespace": namespace,
        }
        (change,) = run(
            store.record(
                [alert(fingerprint, starts_at=T0 + timedelta(minutes=minute), labels=labels)]
            )
        )
        ids[fingerprint] = change.incident.id
    run(store.acknowledge(ids["f2"], "ada", T0))
    run(store.resolve(ids["f3"], "ada", T0))

    def keys(page: Any) -> list[str]:
        by_id = {value: key for key, value in ids.items()}
        return [by_id[item.id] for item in page.items]

    everything = run(store.list(IncidentFilter()))
    assert everything.total == 5 and keys(everything) == ["f5", "f4", "f3", "f2", "f1"]
    assert keys(run(store.list(IncidentFilter(), sort="opened_at"))) == [
        "f1",
        "f2",
        "f3",
        "f5",
        "f4",
    ]
    assert keys(run(store.list(IncidentFilter(), sort="-severity"))) == [
        "f4",
        "f1",
        "f5",
        "f2",
        "f3",
    ]
    assert keys(run(store.list(IncidentFilter(), sort="severity"))) == [
        "f3",
        "f5",
        "f2",
        "f4",
        "f1",
    ]
    assert keys(run(store.list(IncidentFilter(), sort="state"))) == ["f5", "f4", "f1", "f2", "f3"]
    assert keys(run(store.list(IncidentFilter(), sort="-state"))) == ["f3", "f2", "f5", "f4", "f1"]

    page = run(store.list(IncidentFilter(), limit=2, offset=2))
    assert (page.total, page.limit, page.offset) == (5, 2, 2) and keys(page) == ["f3", "f2"]
    assert keys(run(store.list(IncidentFilter(), limit=2, offset=4))) == ["f1"]

    assert keys(run(store.list(IncidentFilter(cluster="us-1")))) == ["f5", "f4"]
    assert keys(run(store.list(IncidentFilter(namespace="shop")))) == ["f2", "f1"]
    assert keys(run(store.list(IncidentFilter(service="search", severity="critical")))) == ["f4"]
    assert keys(run(store.list(IncidentFilter(state="acknowledged")))) == ["f2"]
    window = IncidentFilter(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=2))
    page = run(store.list(window))
    assert page.total == 2 and keys(page) == ["f3", "f2"]
    assert run(store.list(IncidentFilter(cluster="nowhere"))).total == 0

    assert run(store.open_counts()) == {
        ("critical", "checkout"): 1,
        ("warning", "checkout"): 1,
        ("critical", "search"): 1,
        ("warning", "search"): 1,
    }


def test_slack_message_goes_to_the_newest_incident_with_the_key(store):
    (change,) = run(store.record([alert()]))
    run(store.note_slack_message(change.incident.key, "C123", "1700000000.000100"))
    run(store.note_slack_message("no such key", "C123", "1"))  # nothing to note: no error
    found = run(store.find(change.incident.key))
    assert (found.slack_channel, found.slack_ts) == ("C123", "1700000000.000100")
    assert run(store.find("no such key")) is None


def test_matchers_are_the_labels_all_alerts_share(store):
    group_by = ("service",)
    labels_a = {"alertname": "Down", "service": "api", "pod": "a", "cluster": "eu-1"}
    labels_b = {"alertname": "Slow", "service": "api", "pod": "b", "cluster": "eu-1"}
    changes = run(
        store.record(
            [
                alert("a", labels=labels_a, group_by=group_by),
                alert("b", labels=labels_b, group_by=group_by),
            ]
        )
    )
    (change,) = changes
    assert run(store.matchers_of(change.incident.id)) == {"service": "api", "cluster": "eu-1"}
    with pytest.raises(IncidentNotFound):
        run(store.matchers_of(change.incident.id + 1000))


def test_prune_deletes_old_raw_alerts_that_no_open_incident_needs(store):
    old = T0
    (closed,) = run(store.record([alert("closed", received_at=old)]))
    run(store.record([alert("closed", status="resolved", received_at=old + timedelta(minutes=1))]))
    (still_open,) = run(store.record([alert("open", received_at=old)]))
    (recent,) = run(store.record([alert("recent", received_at=old + timedelta(days=40))]))
    run(store.record([alert("recent", status="resolved", received_at=old + timedelta(days=40))]))

    assert run(store.prune(old + timedelta(days=30))) == 2
    assert run(store.get(closed.incident.id)).alerts == ()
    assert run(store.get(closed.incident.id)).incident.state == "resolved"  # the incident stays
    assert len(run(store.get(still_open.incident.id)).alerts) == 1
    assert len(run(store.get(recent.incident.id)).alerts) == 2
    assert run(store.prune(old + timedelta(days=30))) == 0


def test_concurrent_acknowledges_and_resolves_end_in_one_state(store, database_url):
    """20 actions at once, half through a second store (another replica) on the same database."""
    (change,) = run(store.record([alert()]))
    incident_id = change.incident.id
    replica = IncidentStore.open(database_url)
    kinds = ["resolve" if i % 4 == 1 else "acknowledge" for i in range(20)]

    async def one(i: int) -> tuple[str, Any]:
        target = store if i % 2 == 0 else replica
        at = T0 + timedelta(minutes=1, microseconds=i)
        try:
            if kinds[i] == "resolve":
                return kinds[i], await target.resolve(incident_id, f"user{i}", at)
            return kinds[i], await target.acknowledge(incident_id, f"user{i}", at)
        except ActionRefused as refused:
            return kinds[i], refused

    async def all_at_once() -> list[tuple[str, Any]]:
        try:
            return await asyncio.gather(*(one(i) for i in range(20)))
        finally:
            await replica.close()

    results = run(all_at_once())
    refused = [kind for kind, result in results if isinstance(result, ActionRefused)]
    assert set(refused) <= {"acknowledge"}
    changed = [
        kind for kind, result in results if not isinstance(result, Exception) and result.changed
    ]
    assert changed.count("resolve") == 1
    assert changed.count("acknowledge") <= 1

    detail = run(store.get(incident_id))
    assert detail.incident.state == "resolved"
    kinds_logged = [event.kind for event in detail.events]
    assert kinds_logged.count("resolved") == 1
    assert kinds_logged.count("acknowledged") == changed.count("acknowledge")
    assert detail.incident.version == 1 + len(changed)
    if "acknowledged" in kinds_logged:  # the acknowledgement came first, and it is kept
        assert kinds_logged.index("acknowledged") < kinds_logged.index("resolved")
        assert detail.incident.acknowledged_by is not None
    # Every acknowledge that found it resolved was refused; every other one found it open.
    assert len(refused) + changed.count("acknowledge") <= kinds.count("acknowledge")


def test_the_same_new_alert_recorded_by_two_replicas_at_once_opens_one_incident(
    store, database_url
):
    """An Alertmanager HA pair delivers each notification twice, maybe to two replicas."""
    replica = IncidentStore.open(database_url)
    labels = {"alertname": "Down", "service": "api"}
    group_by = ("service",)

    async def all_at_once() -> list[Any]:
        try:
            return await asyncio.gather(
                *(
                    (store if i % 2 else replica).record(
                        [alert(f"fp{i % 3}", labels=labels, group_by=group_by)]
                    )
                    for i in range(12)
                )
            )
        finally:
            await replica.close()

    results = run(all_at_once())
    opened = [change for changes in results for change in changes if change.opened]
    assert len(opened) == 1
    page = run(store.list(IncidentFilter()))
    assert page.total == 1
    (incident,) = page.items
    assert (incident.alerts_total, incident.alerts_firing) == (3, 3)
    assert len(run(store.get(incident.id)).alerts) == 12
    assert incident.version == 12  # created at 1, then 11 more alerts


def test_a_database_at_the_first_migration_keeps_its_rows(database_url):
    engine = sa.create_engine(database_url)
    naive = T0.replace(tzinfo=None)
    try:
        with engine.begin() as connection:
            upgrade(connection, "0001")
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO incidents (incident_key, state, title, severity, service,"
                    " cluster, namespace, labels, opened_at, alerts_firing, alerts_total,"
                    " acknowledged_at, acknowledged_by, resolved_while_firing, version)"
                    " VALUES (:key, :state, 'Old — from 0001', :severity, 'checkout', 'eu-1',"
                    " 'shop', :labels, :opened_at, 1, 1, :acked_at, :acked_by, :rwf, 3)"
                ),
                [
                    {
                        "key": "old@1",
                        "state": "acknowledged",
                        "severity": "warning",
                        "labels": '{"alertname": "Old"}',
                        "opened_at": naive,
                        "acked_at": naive,
                        "acked_by": "ada",
                        "rwf": False,
                    },
                    {
                        "key": "old@2",
                        "state": "triggered",
                        "severity": "critical",
                        "labels": '{"alertname": "Older"}',
                        "opened_at": naive,
                        "acked_at": None,
                        "acked_by": None,
                        "rwf": False,
                    },
                ],
            )
            first_id = connection.execute(
                sa.text("SELECT id FROM incidents WHERE incident_key = 'old@1'")
            ).scalar_one()
            connection.execute(
                sa.text(
                    "INSERT INTO raw_alerts (source, receiver, group_key, received_at,"
                    " incident_key, fingerprint, status, starts_at, ends_at, labels,"
                    " annotations, payload) VALUES ('alertmanager', 'r', 'g', :at, 'old@1',"
                    " 'fpold', 'firing', :at, NULL, :labels, '{}', '{}')"
                ),
                {"at": naive, "labels": '{"alertname": "Old", "pod": "p"}'},
            )
            raw_id = connection.execute(sa.text("SELECT id FROM raw_alerts")).scalar_one()
            connection.execute(
                sa.text("INSERT INTO incident_alerts (raw_alert_id, incident_id) VALUES (:r, :i)"),
                {"r": raw_id, "i": first_id},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO incident_events (incident_id, at, kind, actor, state, detail)"
                    " VALUES (:i, :at, 'opened', 'lumen', 'triggered', '')"
                ),
                {"i": first_id, "at": naive},
            )
    finally:
        engine.dispose()

    store = IncidentStore.open(database_url)
    try:
        detail = run(store.get(first_id))
        incident = detail.incident
        assert (incident.key, incident.state, incident.title) == (
            "old@1",
            "acknowledged",
            "Old — from 0001",
        )
        assert incident.opened_at == T0 and incident.acknowledged_by == "ada"
        assert incident.version == 3 and incident.silenced_until is None
        assert incident.labels == {"alertname": "Old"}
        assert [raw.fingerprint for raw in detail.alerts] == ["fpold"]
        assert detail.alerts[0].links == {}
        assert [event.kind for event in detail.events] == ["opened"]
        # The ranks 0002 adds were filled from the old rows.
        page = run(store.list(IncidentFilter(), sort="-severity"))
        assert [item.key for item in page.items] == ["old@2", "old@1"]
        page = run(store.list(IncidentFilter(), sort="state"))
        assert [item.key for item in page.items] == ["old@2", "old@1"]
        # And the old rows take part in what follows.
        (change,) = run(
            store.record(
                [
                    alert(
                        "fpold",
                        starts_at=T0,
                        labels={"alertname": "Old", "pod": "p"},
                        status="resolved",
                    )
                ]
            )
        )
        assert change.incident.id == first_id and change.resolved
        assert change.incident.version == 4
    finally:
        run(store.close())


def test_open_twice_is_harmless(database_url):
    for _ in range(2):
        store = IncidentStore.open(database_url)
        run(store.close())


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://lumen:s3cr3t-pw@127.0.0.1:1/incidents",
        "mysql://lumen:s3cr3t-pw@127.0.0.1:1/incidents",
    ],
)
def test_an_unreachable_database_is_named_without_its_password(url):
    with pytest.raises(IncidentStoreUnavailable) as raised:
        IncidentStore.open(url)
    message = str(raised.value)
    assert "127.0.0.1" in message
    assert "s3cr3t-pw" not in message
    assert "***" in message


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_database_lost_after_opening_is_unavailable(kind):
    """The database dropped under a running store: each call says so, naming the server."""
    databases = postgres_database() if kind == "postgresql" else mariadb_database()
    url = next(databases)
    store = IncidentStore.open(url)
    try:
        run(store.record([alert()]))
        next(databases, None)  # drops the database (closing its connections)
        with pytest.raises(IncidentStoreUnavailable, match=r"127\.0\.0\.1"):
            run(store.record([alert("other")]))
        with pytest.raises(IncidentStoreUnavailable):
            run(store.list(IncidentFilter()))
    finally:
        databases.close()
        run(store.close())


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u:p@db/x", "postgresql+psycopg"),
        ("postgres://u:p@db/x", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db/x", "postgresql+psycopg"),
        ("mysql://u@db/x", "mysql+pymysql"),
        ("mariadb://u@db/x", "mysql+pymysql"),
        ("mysql+pymysql://u@db/x", "mysql+pymysql"),
        ("sqlite:////var/lib/lumen/incidents.db", "sqlite"),
    ],
)
def test_urls_map_to_the_one_driver_per_database(given, driver):
    url = database_url(given)
    assert url.drivername == driver
    if driver == "mysql+pymysql":
        assert url.query["charset"] == "utf8mb4"


def test_an_unsupported_url_is_refused_clearly():
    with pytest.raises(IncidentStoreUnavailable, match="unsupported"):
        database_url("oracle://scott:tiger@db/x")


def test_the_second_migration_goes_down_and_up_again(database_url):
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as connection:
            upgrade(connection)
            command.downgrade(alembic_config(connection), "0001")
        with engine.connect() as connection:
            columns = {column["name"] for column in sa.inspect(connection).get_columns("incidents")}
        assert "silenced_until" not in columns and "incident_key" in columns
        with engine.begin() as connection:
            upgrade(connection)
        with engine.connect() as connection:
            columns = {column["name"] for column in sa.inspect(connection).get_columns("incidents")}
        assert {"silenced_until", "severity_rank", "state_rank"} <= columns
    finally:
        engine.dispose()
