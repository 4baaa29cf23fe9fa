"""The exporter's probe series as they were served before they were kept rendered: every
scrape collected every probe into ``prometheus_client`` families and formatted them all
(``generate_latest``). Kept, unchanged but for names, as the reference the rendered exposition
must match (``test_exposition.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lumen_alerting.exporter.config import ExporterConfig, ProbeConfig
from lumen_alerting.exporter.metrics import ProbeResult
from lumen_alerting.exporter.values import FieldProblem


class ProbeResults:
    """The last result of each probe and the time of its last success: what scrapes read."""

    def __init__(self) -> None:
        self._last: dict[str, ProbeResult] = {}
        self._last_success: dict[str, float] = {}

    def record(self, probe: str, result: ProbeResult) -> None:
        self._last[probe] = result
        if result.success:
            self._last_success[probe] = result.finished_at

    def last(self, probe: str) -> ProbeResult | None:
        return self._last.get(probe)

    def last_success(self, probe: str) -> float | None:
        return self._last_success.get(probe)


class ProbeCollector(Collector):
    """The probe series, built from ``ProbeResults`` on each scrape (a few dicts: cheap)."""

    def __init__(self, config: ExporterConfig, results: ProbeResults) -> None:
        self._probes = config.probes
        self._results = results

    def collect(self) -> Iterable[Metric]:
        success = _gauge("lumen_probe_success", "1 if the probe's last run succeeded, else 0.")
        duration = _gauge(
            "lumen_probe_duration_seconds", "How long the probe's last run took, in seconds."
        )
        status = _gauge(
            "lumen_probe_http_status", "HTTP status of the last answer (absent without one)."
        )
        last_success = _gauge(
            "lumen_probe_last_success_timestamp_seconds",
            "Unix time of the probe's last success (absent until it has succeeded once).",
        )
        own: dict[str, GaugeMetricFamily] = {}
        for probe in self._probes:
            result = self._results.last(probe.name)
            if result is None:
                continue  # not run yet: nothing to say, rather than a made-up 0
            labels = [probe.name]
            success.add_metric(labels, 1.0 if result.success else 0.0)
            duration.add_metric(labels, result.duration_seconds)
            if result.status is not None:
                status.add_metric(labels, float(result.status))
            if (succeeded := self._results.last_success(probe.name)) is not None:
                last_success.add_metric(labels, succeeded)
            for name, value in _policy_values(probe, result):
                family = own.get(name)
                if family is None:
                    family = own[name] = _gauge(name, _help(probe, name))
                family.add_metric(labels, value)
        yield from (success, duration, status, last_success, *own.values())


def _policy_values(probe: ProbeConfig, result: ProbeResult) -> Iterable[tuple[str, float]]:
    yield probe.health_metric, 1.0 if result.success else 0.0
    if result.status is not None:
        # Seed 001's response time is in milliseconds; only an answer has one.
        yield probe.response_time_metric, result.duration_seconds * 1000.0
    yield from result.fields.items()


def _help(probe: ProbeConfig, name: str) -> str:
    if name == probe.health_metric:
        return "1 while the probed endpoint answers as expected in time, else 0."
    if name == probe.response_time_metric:
        return "Response time of the probed endpoint's last answer, in milliseconds."
    mapped = " (strings through its value map)" if name in probe.value_maps else ""
    return f"Field {probe.fields[name]} of the probed endpoint's JSON answer{mapped}."


OTHER_VALUE = "__other__"


class _Tally:
    """One counted value's series: how many runs saw it, and since when (``_created``)."""

    __slots__ = ("count", "created")

    def __init__(self, created: float) -> None:
        self.count = 0.0
        self.created = created


class CountedValues(Collector):
    """The ``count_values`` counters: for each probe and counter, at most
    ``max_distinct_values`` values (the first seen) plus ``__other__``, so memory is bounded by
    the configuration, whatever the targets answer."""

    def __init__(self, config: ExporterConfig) -> None:
        self._probes = {probe.name: probe for probe in config.probes}
        # (probe, counter) -> value -> tally; only counters of the configuration get an entry.
        self._tallies: dict[tuple[str, str], dict[str, _Tally]] = {
            (probe.name, name): {} for probe in config.probes for name in probe.count_values
        }
        # Counter -> its HELP, from the first probe that counts under that name.
        self._help: dict[str, str] = {}
        for probe in config.probes:
            for name, path in probe.count_values.items():
                self._help.setdefault(
                    name,
                    f"Successful runs of the probe by the value of {path} in its JSON answer "
                    f"(at most {probe.max_distinct_values} distinct values per probe, the first "
                    f'seen; later ones are counted as value="{OTHER_VALUE}").',
                )

    def count(self, probe: str, name: str, value: str, now: float) -> bool:
        """Add one run that saw ``value``; False when it went to ``__other__`` because the
        probe's counter already keeps ``max_distinct_values`` other values."""
        tallies = self._tallies.get((probe, name))
        if tallies is None:
            return True  # not a counter of the configuration: nothing to keep
        kept = True
        tally = tallies.get(value)
        if tally is None:
            distinct = len(tallies) - (OTHER_VALUE in tallies)
            if value != OTHER_VALUE and distinct >= self._probes[probe].max_distinct_values:
                kept, value = False, OTHER_VALUE
                tally = tallies.get(value)
            if tally is None:
                tally = tallies[value] = _Tally(now)
        tally.count += 1
        return kept

    def collect(self) -> Iterable[Metric]:
        families: dict[str, CounterMetricFamily] = {}
        # Copies, made in one step each: a scrape from another thread (as in tests) then never
        # iterates a dict the loop is adding to.
        for (probe, name), tallies in list(self._tallies.items()):
            for value, tally in list(tallies.items()):
                family = families.get(name)
                if family is None:
                    family = families[name] = CounterMetricFamily(
                        name, self._help[name], labels=["probe", "value"]
                    )
                family.add_metric([probe, value], tally.count, created=tally.created)
        yield from families.values()


def _gauge(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["probe"])


class ReferenceMetrics:
    """Everything ``/metrics`` serves, in one registry of its own."""

    def __init__(self, config: ExporterConfig, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.results = ProbeResults()
        self.registry.register(ProbeCollector(config, self.results))
        self.counted = CountedValues(config)
        self.registry.register(self.counted)
        self.field_errors = Counter(
            "lumen_probe_field_errors",
            "Fields of a probe's answer that had no value (or, for too_many_values, a counted "
            "value past the probe's max_distinct_values, counted as __other__), by reason: "
            "invalid_json, missing, many_values, not_a_number, unreadable, unmapped, "
            "too_many_values, too_long, not_text.",
            ["probe", "field", "reason"],
            registry=self.registry,
        )
        self.runs = Counter(
            "lumen_probe_runs",
            "Probe runs by result: success or failure.",
            ["probe", "result"],
            registry=self.registry,
        )
        # Both results from 0 at start: a rate over failures has a series before the first one.
        for probe in config.probes:
            for result in ("success", "failure"):
                self.runs.labels(probe.name, result)

    def record(
        self, probe: str, result: ProbeResult, problems: Mapping[str, FieldProblem] | None = None
    ) -> None:
        """Keep ``result`` as the probe's last and count its failures, missing fields and the
        values of its counted fields."""
        self.results.record(probe, result)
        self.runs.labels(probe, "success" if result.success else "failure").inc()
        for name, problem in (problems or {}).items():
            self.field_errors.labels(probe, name, problem.value).inc()
        if not result.success:
            return  # a failed run read no field (and its counted values would be made up)
        for name, value in result.counted.items():
            if not self.counted.count(probe, name, value, result.finished_at):
                self.field_errors.labels(probe, name, FieldProblem.TOO_MANY_VALUES.value).inc()
