"""Prometheus metrics of the operator (served on --metrics-port)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

STATES = ("ready", "invalid", "failed")


class PolicyStates(Collector):
    """The last known state of every policy, counted per state at scrape time."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], str] = {}

    def set(self, namespace: str, name: str, state: str) -> None:
        self._states[(namespace, name)] = state

    def __len__(self) -> int:
        return len(self._states)

    def forget(self, namespace: str, name: str) -> None:
        self._states.pop((namespace, name), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "lumen_operator_policies", "LumenAlertPolicies by state.", labels=["state"]
        )
        tally = Tally(self._states.values())
        for state in STATES:
            family.add_metric([state], tally.get(state, 0))
        yield family


class OperatorMetrics:
    """Everything the operator exports, in its own registry (no global state between tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "lumen_operator_reconciles",
            "Reconciles by result: applied, unchanged, invalid, failed, retry.",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "lumen_operator_reconcile_duration_seconds",
            "Time to reconcile one policy (validate, render, apply, prune).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.policies = PolicyStates()
        self.registry.register(self.policies)
