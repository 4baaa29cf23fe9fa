"""The pure parts of the incident store: incident keys and the state rules of the actions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from lumen_alerting.threader.incidents import lifecycle
from lumen_alerting.threader.incidents.grouping import incident_key
from lumen_alerting.threader.incidents.records import ActionRefused, Incident

AT = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def test_default_key_is_one_incident_per_occurrence():
    starts = datetime(2026, 12, 2, 9, 30, 15, 120000, tzinfo=UTC)
    assert incident_key("3fa2", starts, {"a": "b"}) == "3fa2@2026-12-02T09:30:15.12Z"
    # The same instant in another zone is the same key; a re-fire (new startsAt) is another.
    elsewhere = starts.astimezone(timezone(timedelta(hours=2)))
    assert incident_key("3fa2", elsewhere, {}) == incident_key("3fa2", starts, {})
    assert incident_key("3fa2", starts + timedelta(hours=1), {}) != incident_key("3fa2", starts, {})


def test_group_by_key_lists_the_labels_in_order():
    labels = {"alertname": "Down", "service": "api", "pod": "a"}
    key = incident_key("fp", AT, labels, ("service", "alertname", "cluster"))
    assert key == "service=api,alertname=Down,cluster="
    assert incident_key("other", AT + timedelta(hours=1), labels, ("service",)) == "service=api"


def test_group_by_values_cannot_run_into_each_other():
    one = incident_key("fp", AT, {"a": "x,b=y", "b": ""}, ("a", "b"))
    two = incident_key("fp", AT, {"a": "x", "b": "y,b="}, ("a", "b"))
    assert one != two


def incident(**changes: object) -> Incident:
    base = Incident(
        id=7,
        key="k",
        state="triggered",
        title="Down",
        severity="critical",
        service="api",
        cluster="eu-1",
        namespace="shop",
        labels={},
        opened_at=AT - timedelta(hours=1),
        alerts_firing=1,
        alerts_total=1,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_acknowledge():
    moved = lifecycle.acknowledge(incident(), "ada", AT)
    assert moved.changed and moved.event == "acknowledged"
    assert (moved.incident.state, moved.incident.acknowledged_by) == ("acknowledged", "ada")
    assert not lifecycle.acknowledge(moved.incident, "bob", AT).changed
    silenced = lifecycle.acknowledge(incident(state="silenced"), "ada", AT)
    assert silenced.changed and silenced.incident.state == "silenced"
    assert silenced.incident.acknowledged_at == AT
    assert not lifecycle.acknowledge(silenced.incident, "bob", AT).changed
    with pytest.raises(ActionRefused, match="resolved"):
        lifecycle.acknowledge(incident(state="resolved"), "ada", AT)


@pytest.mark.parametrize("state", ["triggered", "acknowledged", "silenced"])
def test_resolve_notes_alerts_still_firing(state):
    moved = lifecycle.resolve(incident(state=state), "ada", AT)
    assert moved.changed and moved.incident.state == "resolved"
    assert moved.incident.resolved_while_firing and "1 alert" in moved.detail
    quiet = lifecycle.resolve(incident(state=state, alerts_firing=0), "ada", AT)
    assert not quiet.incident.resolved_while_firing
    assert not lifecycle.resolve(moved.incident, "bob", AT).changed


def test_silence_and_its_end():
    until = AT + timedelta(hours=1)
    silenced = lifecycle.silence(incident(), "ada", AT, until, "s1")
    assert silenced.changed and silenced.incident.state == "silenced"
    assert "14:00" not in silenced.detail and "15:00 UTC" in silenced.detail
    longer = lifecycle.silence(silenced.incident, "ada", AT, until + timedelta(hours=1), "s2")
    assert longer.changed and longer.incident.silence_id == "s2"
    ended = lifecycle.end_silence(longer.incident, "ada", AT)
    assert ended.incident.state == "triggered" and ended.incident.silence_id is None
    acked = lifecycle.end_silence(replace(longer.incident, acknowledged_at=AT), "ada", AT)
    assert acked.incident.state == "acknowledged"
    assert not lifecycle.end_silence(incident(), "ada", AT).changed
    with pytest.raises(ActionRefused):
        lifecycle.silence(incident(state="resolved"), "ada", AT, until, "s3")


def test_ranks_order_severity_and_state():
    ranks = [lifecycle.severity_rank(name) for name in ("critical", "warning", "info", "", "x")]
    assert ranks == sorted(ranks, reverse=True) and ranks[-1] == ranks[-2] == 0
    assert lifecycle.severity_rank("CRITICAL") == lifecycle.severity_rank("critical")
    states = sorted(lifecycle.STATE_RANKS, key=lifecycle.STATE_RANKS.__getitem__)
    assert states == ["triggered", "acknowledged", "silenced", "resolved"]
