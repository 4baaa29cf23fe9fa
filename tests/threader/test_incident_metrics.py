"""The threader's incident metrics (issue 13): open incidents, time to acknowledge and resolve,
actions and Slack interactions, and their panels on the threader's dashboard. (That every
metric is on the dashboard and every query parses is tests/test_dashboards.py's job.)"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import product
from typing import Any, get_args

import pytest
from prometheus_client import generate_latest

from lumen_alerting.threader.incidents.records import Incident
from lumen_alerting.threader.metrics import (
    INCIDENT_RESPONSE_BUCKETS,
    ActionResult,
    ActionVia,
    IncidentAction,
    SlackInteraction,
    ThreaderMetrics,
)
from tests.support.schemas import REPO

OPENED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
# Labels Prometheus attaches to every scraped series (prometheus-operator's target labels): a
# metric with one of its own would see it renamed to exported_<name>.
TARGET_LABELS = {"namespace", "service", "pod", "container", "endpoint", "job", "instance"}


def incident(**changes: Any) -> Incident:
    base = Incident(
        id=7,
        key="3fa2@2026-03-01T09:00:00Z",
        state="triggered",
        title="DiskFull",
        severity="critical",
        service="orders",
        cluster="prod",
        namespace="shop",
        labels={"alertname": "DiskFull", "severity": "critical", "service": "orders"},
        opened_at=OPENED,
        alerts_firing=1,
        alerts_total=1,
    )
    return replace(base, **changes)


def sample(metrics: ThreaderMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_open_incidents_follow_the_stores_counts_and_vanished_pairs_go() -> None:
    metrics = ThreaderMetrics()
    metrics.set_open_incidents({("critical", "orders"): 2, ("warning", "billing"): 1})
    open_ = "lumen_threader_incidents_open"
    assert sample(metrics, open_, severity="critical", incident_service="orders") == 2
    assert sample(metrics, open_, severity="warning", incident_service="billing") == 1

    metrics.set_open_incidents({("critical", "orders"): 1, ("", "payments"): 3})
    assert sample(metrics, open_, severity="critical", incident_service="orders") == 1
    assert sample(metrics, open_, severity="", incident_service="payments") == 3
    assert sample(metrics, open_, severity="warning", incident_service="billing") is None

    metrics.set_open_incidents({})
    assert [s for f in metrics.incidents_open.collect() for s in f.samples] == []


@pytest.mark.parametrize(
    ("after", "bucket", "below"),
    [
        (timedelta(seconds=45), "60.0", "30.0"),
        (timedelta(minutes=90), "7200.0", "3600.0"),
        (timedelta(hours=20), "86400.0", "28800.0"),
    ],
)
def test_time_to_acknowledge_is_from_opening_in_human_sized_buckets(
    after: timedelta, bucket: str, below: str
) -> None:
    metrics = ThreaderMetrics()
    acknowledged = incident(
        state="acknowledged", acknowledged_at=OPENED + after, acknowledged_by="Ada (U123)"
    )
    metrics.observe_acknowledged(acknowledged)
    name = "lumen_threader_incident_time_to_acknowledge_seconds"
    assert sample(metrics, f"{name}_sum", severity="critical") == after.total_seconds()
    assert sample(metrics, f"{name}_count", severity="critical") == 1
    assert sample(metrics, f"{name}_bucket", severity="critical", le=bucket) == 1
    assert sample(metrics, f"{name}_bucket", severity="critical", le=below) == 0


def test_time_to_resolve_by_severity() -> None:
    metrics = ThreaderMetrics()
    metrics.observe_resolved(
        incident(severity="warning", state="resolved", resolved_at=OPENED + timedelta(hours=3))
    )
    name = "lumen_threader_incident_time_to_resolve_seconds"
    assert sample(metrics, f"{name}_sum", severity="warning") == 3 * 3600
    assert sample(metrics, f"{name}_bucket", severity="warning", le="14400.0") == 1
    assert sample(metrics, f"{name}_bucket", severity="warning", le="7200.0") == 0
    assert sample(metrics, f"{name}_count", severity="critical") is None


def test_nothing_is_observed_without_the_moment_and_never_a_negative_time() -> None:
    metrics = ThreaderMetrics()
    metrics.observe_acknowledged(incident())  # not acknowledged
    metrics.observe_resolved(incident())  # not resolved
    tta = "lumen_threader_incident_time_to_acknowledge_seconds"
    assert sample(metrics, f"{tta}_count", severity="critical") is None
    assert sample(metrics, "lumen_threader_incident_time_to_resolve_seconds_count") is None
    # Another replica's clock a moment behind the one that stored the alert.
    metrics.observe_acknowledged(incident(acknowledged_at=OPENED - timedelta(seconds=2)))
    assert sample(metrics, f"{tta}_sum", severity="critical") == 0
    assert sample(metrics, f"{tta}_count", severity="critical") == 1


def test_response_buckets_span_half_a_minute_to_a_day() -> None:
    assert INCIDENT_RESPONSE_BUCKETS == (
        30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400
    )  # fmt: skip


def test_every_action_counter_starts_at_zero_and_counts() -> None:
    metrics = ThreaderMetrics()
    name = "lumen_threader_incident_actions_total"
    combinations = list(
        product(get_args(IncidentAction), get_args(ActionVia), get_args(ActionResult))
    )
    assert len(combinations) == 48
    for action, via, outcome in combinations:
        assert sample(metrics, name, action=action, via=via, outcome=outcome) == 0
    metrics.note_action("silence", "slack", "failed")
    metrics.note_action("silence", "slack", "failed")
    assert sample(metrics, name, action="silence", via="slack", outcome="failed") == 2
    assert sample(metrics, name, action="silence", via="web", outcome="failed") == 0


def test_slack_interactions_recorded_alerts_and_store_errors_count() -> None:
    metrics = ThreaderMetrics()
    for outcome in get_args(SlackInteraction):
        assert sample(metrics, "lumen_threader_slack_interactions_total", outcome=outcome) == 0
    metrics.note_slack_interaction("bad_signature")
    assert sample(metrics, "lumen_threader_slack_interactions_total", outcome="bad_signature") == 1
    for source in ("alertmanager", "grafana"):
        assert sample(metrics, "lumen_threader_incidents_recorded_total", source=source) == 0
    metrics.incidents_recorded.labels("grafana").inc(3)
    assert sample(metrics, "lumen_threader_incidents_recorded_total", source="grafana") == 3
    metrics.incident_store_errors.inc()
    assert sample(metrics, "lumen_threader_incident_store_errors_total") == 1


def test_the_incident_metrics_are_served_with_their_help() -> None:
    served = generate_latest(ThreaderMetrics().registry).decode()
    for family in (
        "lumen_threader_incidents_open gauge",
        "lumen_threader_incident_time_to_acknowledge_seconds histogram",
        "lumen_threader_incident_time_to_resolve_seconds histogram",
        "lumen_threader_incident_actions_total counter",
        "lumen_threader_slack_interactions_total counter",
        "lumen_threader_incidents_recorded_total counter",
        "lumen_threader_incident_store_errors_total counter",
    ):
        name = family.split()[0]
        assert f"# TYPE {family}\n" in served
        (help_line,) = [line for line in served.splitlines() if line.startswith(f"# HELP {name} ")]
        assert len(help_line) > len(f"# HELP {name} ") + 20, help_line


def test_no_threader_metric_has_a_label_prometheus_sets_on_the_scrape() -> None:
    """The incidents' service is ``incident_service``: a ``service`` label would be renamed
    exported_service by Prometheus, and the dashboards' ``service=~…threader`` would select
    the wrong thing."""
    metrics = ThreaderMetrics()
    metrics.set_open_incidents({("critical", "orders"): 1})
    metrics.observe_resolved(incident(resolved_at=OPENED + timedelta(minutes=5)))
    labels = {
        label
        for family in metrics.registry.collect()
        for sample_ in family.samples
        for label in sample_.labels
    }
    assert {"severity", "incident_service", "action", "via", "outcome"} <= labels
    assert labels & TARGET_LABELS == set()


def test_the_incidents_row_sits_below_the_existing_panels() -> None:
    dashboard = json.loads((REPO / "dashboards" / "lumen-threader.json").read_text())
    panels = dashboard["panels"]
    (row,) = [p for p in panels if p["type"] == "row"]
    assert row["title"] == "Incidents"
    before = [p for p in panels if p["id"] < row["id"]]
    after = [p for p in panels if p["id"] > row["id"]]
    assert before and after
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in before)
    assert row["gridPos"]["y"] == bottom
    assert all(p["gridPos"]["y"] > row["gridPos"]["y"] for p in after)
    exprs = {p["title"]: [t["expr"] for t in p["targets"]] for p in after}
    assert {
        "Open Incidents by Severity",
        "Open Incidents by Service",
        "Time to Acknowledge (time range)",
        "Time to Resolve (time range)",
        "Incident Actions by Via and Outcome",
    } <= exprs.keys()
    for title in ("Time to Acknowledge (time range)", "Time to Resolve (time range)"):
        quantiles = [e.split(",")[0] for e in exprs[title] if e.startswith("histogram_quantile")]
        assert quantiles == ["histogram_quantile(0.5", "histogram_quantile(0.9"]
        assert any("_sum{" in e and "_count{" in e for e in exprs[title])  # the mean
    # No two panels overlap.
    cells = [
        (x, y)
        for p in panels
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))
