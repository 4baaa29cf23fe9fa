"""Prometheus metrics of the threader (served on /metrics)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .incidents.records import AlertSource, Incident
from .slack import SlackError

IncidentAction = Literal["acknowledge", "resolve", "silence", "end_silence"]
ActionVia = Literal["slack", "api", "web"]
# changed: the action took effect; unchanged: it already had (a repeat, Slack's retry);
# refused: not allowed in the incident's state; failed: the store or Alertmanager failed.
ActionResult = Literal["changed", "unchanged", "refused", "failed"]
SlackInteraction = Literal["accepted", "bad_signature", "bad_request", "duplicate"]

# Human response times: 30 s, 1, 2, 5, 10, 15 and 30 min, 1, 2, 4 and 8 h, a day.
INCIDENT_RESPONSE_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)


@dataclass(frozen=True)
class SlackFailure:
    """The last failed Slack call, for /stats: which method, what went wrong, when."""

    method: str
    error: str
    at: str  # RFC 3339, UTC
    temporary: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ThreaderMetrics:
    """Everything the threader exports, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.notifications = Counter(
            "lumen_threader_notifications",
            "Webhook requests by result: accepted, invalid, unauthorized, too_large, unavailable, "
            "replica_timeout, outbox_full.",
            ["result"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "lumen_threader_alerts",
            "Alerts received, by what the store made of them: queued, duplicate, skipped.",
            ["disposition"],
            registry=self.registry,
        )
        self.acknowledge_seconds = Histogram(
            "lumen_threader_acknowledge_duration_seconds",
            "Time from receiving a notification to answering it (after it is durably queued).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        # Set from the store when /metrics is scraped.
        self.outbox_entries = Gauge(
            "lumen_threader_outbox_entries",
            "Messages in the outbox: queued, being delivered or waiting for a retry.",
            registry=self.registry,
        )
        self.outbox_oldest_age = Gauge(
            "lumen_threader_outbox_oldest_age_seconds",
            "Seconds since the oldest outbox entry was accepted; 0 when the outbox is empty.",
            registry=self.registry,
        )
        self.deliveries = Counter(
            "lumen_threader_deliveries",
            "Outbox deliveries by kind (parent, repeat, resolve, resolved_alone) and result "
            "(delivered, retry, waiting_for_parent, dead_letter).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "lumen_threader_delivery_duration_seconds",
            "Time from accepting an alert to its message being in Slack.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.slack_calls = Counter(
            "lumen_threader_slack_requests",
            "Slack Web API calls by method and result (ok, or Slack's error).",
            ["method", "result"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "lumen_threader_dead_letters",
            "Messages given up on, by Slack's error.",
            ["error"],
            registry=self.registry,
        )
        self.truncated_alerts = Counter(
            "lumen_threader_truncated_alerts",
            "Alerts of a notification that did not reach the threader, by who left them out: "
            "alertmanager (its max_alerts; the notification's truncatedAlerts) or threader "
            "(past the threader's own limit of 1000).",
            ["by"],
            registry=self.registry,
        )
        self.open_connections = Gauge(
            "lumen_threader_open_connections",
            "HTTP connections open now.",
            registry=self.registry,
        )
        self.connections_cut = Counter(
            "lumen_threader_connections_cut",
            "HTTP connections closed by the threader, by reason: header_timeout, body_timeout, "
            "evicted (at --max-connections, to make room), refused (at --max-connections, all "
            "busy).",
            ["reason"],
            registry=self.registry,
        )
        # Incidents (issue 13). Set from the incident store when /metrics is scraped.
        self.incidents_open = Gauge(
            "lumen_threader_incidents_open",
            "Incidents not resolved (triggered, acknowledged or silenced), by severity and by the "
            "incidents' service (incident_service: a service label would clash with the Service "
            "Prometheus scrapes).",
            ["severity", "incident_service"],
            registry=self.registry,
        )
        self.time_to_acknowledge = Histogram(
            "lumen_threader_incident_time_to_acknowledge_seconds",
            "Time from an incident opening to its first acknowledgement, by severity.",
            ["severity"],
            buckets=INCIDENT_RESPONSE_BUCKETS,
            registry=self.registry,
        )
        self.time_to_resolve = Histogram(
            "lumen_threader_incident_time_to_resolve_seconds",
            "Time from an incident opening to its resolution (by a person or by its alerts "
            "resolving), by severity.",
            ["severity"],
            buckets=INCIDENT_RESPONSE_BUCKETS,
            registry=self.registry,
        )
        self.incident_actions = Counter(
            "lumen_threader_incident_actions",
            "Actions on incidents by action (acknowledge, resolve, silence, end_silence), where "
            "they came from (slack, api, web) and outcome (changed, unchanged, refused, failed).",
            ["action", "via", "outcome"],
            registry=self.registry,
        )
        self.slack_interactions = Counter(
            "lumen_threader_slack_interactions",
            "Slack interaction requests (button clicks) by outcome: accepted, bad_signature, "
            "bad_request, duplicate (Slack's retry or a repeated action).",
            ["outcome"],
            registry=self.registry,
        )
        self.incidents_recorded = Counter(
            "lumen_threader_incidents_recorded",
            "Alerts stored in the incident store, by source: alertmanager, grafana.",
            ["source"],
            registry=self.registry,
        )
        self.incident_store_errors = Counter(
            "lumen_threader_incident_store_errors",
            "Incident store operations that failed because the database did.",
            registry=self.registry,
        )
        self.incidents_dropped = Counter(
            "lumen_threader_incidents_dropped",
            "Alerts not recorded as incidents: the database was down so long that the queue "
            "of alerts waiting for it was full (their Slack messages are not affected).",
            registry=self.registry,
        )
        # Every combination from the start: rate() and increase() see the first one.
        for action in get_args(IncidentAction):
            for via in get_args(ActionVia):
                for outcome in get_args(ActionResult):
                    self.incident_actions.labels(action, via, outcome)
        for interaction in get_args(SlackInteraction):
            self.slack_interactions.labels(interaction)
        for source in get_args(AlertSource):
            self.incidents_recorded.labels(source)
        self._open_series: set[tuple[str, str]] = set()
        self.last_slack_error: SlackFailure | None = None

    def note_slack_error(self, error: SlackError) -> None:
        self.last_slack_error = SlackFailure(
            method=error.method,
            error=error.describe(),
            at=datetime.fromtimestamp(error.at, UTC).isoformat(timespec="seconds"),
            temporary=error.temporary,
        )

    def set_open_incidents(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Open incidents per (severity, service), as the store's ``open_counts()`` gives them.
        A pair no longer there is removed, not kept at 0: services come and go, and the series
        of every service ever seen would pile up."""
        for severity, service in self._open_series - counts.keys():
            self.incidents_open.remove(severity, service)
        for (severity, service), count in counts.items():
            self.incidents_open.labels(severity, service).set(count)
        self._open_series = set(counts.keys())

    def observe_acknowledged(self, incident: Incident) -> None:
        """Its time to acknowledge (call once, when the first acknowledgement changed it)."""
        if incident.acknowledged_at is not None:
            self.time_to_acknowledge.labels(incident.severity).observe(
                _seconds_between(incident.opened_at, incident.acknowledged_at)
            )

    def observe_resolved(self, incident: Incident) -> None:
        """Its time to resolve (call once, when it became resolved)."""
        if incident.resolved_at is not None:
            self.time_to_resolve.labels(incident.severity).observe(
                _seconds_between(incident.opened_at, incident.resolved_at)
            )

    def note_action(self, action: IncidentAction, via: ActionVia, outcome: ActionResult) -> None:
        self.incident_actions.labels(action, via, outcome).inc()

    def note_slack_interaction(self, outcome: SlackInteraction) -> None:
        self.slack_interactions.labels(outcome).inc()


def _seconds_between(start: datetime, end: datetime) -> float:
    # Clocks of different writers (two threader replicas) can put an action a moment before
    # the alert's arrival: never a negative duration.
    return max(0.0, (end - start).total_seconds())
