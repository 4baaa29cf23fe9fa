"""Prometheus metrics of the threader (served on /metrics)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .slack import SlackError


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
            "outbox_full.",
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
        self.last_slack_error: SlackFailure | None = None

    def note_slack_error(self, error: SlackError) -> None:
        self.last_slack_error = SlackFailure(
            method=error.method,
            error=error.describe(),
            at=datetime.fromtimestamp(error.at, UTC).isoformat(timespec="seconds"),
            temporary=error.temporary,
        )
