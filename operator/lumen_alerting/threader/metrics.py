"""Prometheus metrics of the threader (served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
