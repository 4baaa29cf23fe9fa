"""The exporter's series: the last result of every probe (a scrape never probes).

Per probe, in the blackbox exporter's style: ``lumen_probe_success``,
``lumen_probe_duration_seconds``, ``lumen_probe_http_status`` (when the target answered) and
``lumen_probe_last_success_timestamp_seconds`` (once it has succeeded); then the policy's own
gauges: its ``health_metric`` (1/0), ``response_time_metric`` (milliseconds, when the target
answered) and one gauge per field. Every series carries ``probe="<name>"``. A value the last
probe did not produce is not exported at all, so Prometheus marks it stale instead of keeping an
old number; fields that could not be read are counted in ``lumen_probe_field_errors_total``.

A counted field (``count_values``) is a counter ``<name>_total{probe, value}``: each successful
run that read it adds 1 to the series of the value it saw. A probe keeps at most
``max_distinct_values`` values per counter, the first seen; later ones are counted under
``value="__other__"`` (and as ``too_many_values`` field errors), so a field with ever-new values
(an id, a timestamp) can neither grow the exporter's memory nor flood Prometheus with series.

A probe's series change only when it records a result, so they are rendered then, probe by
probe, and kept as text (``exposition.MergedExposition``): a scrape joins that text instead of
formatting every probe's samples again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from .config import ExporterConfig, ProbeConfig
from .exposition import MergedExposition, render
from .values import FieldProblem


@dataclass(frozen=True)
class ProbeResult:
    """What one run of a probe found."""

    success: bool
    duration_seconds: float
    finished_at: float  # Unix time
    status: int | None = None  # None: no HTTP answer (refused, timed out, ...)
    fields: Mapping[str, float] = field(default_factory=dict)  # metric -> value, read ones only
    # count_values metric -> the string value this run saw (read ones only)
    counted: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None  # why it failed, for the log


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


class CountedValues:
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

    def families(self, probe: str) -> Iterable[Metric]:
        """The counters of ``probe``, one family per counter that has seen a value."""
        config = self._probes.get(probe)
        for name in config.count_values if config is not None else ():
            tallies = self._tallies[probe, name]
            if not tallies:
                continue  # no value seen yet: no series (values are not known in advance)
            family = CounterMetricFamily(name, self._help[name], labels=["probe", "value"])
            for value, tally in tallies.items():
                family.add_metric([probe, value], tally.count, created=tally.created)
            yield family


def _gauge(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["probe"])


SUCCESS_HELP = "1 if the probe's last run succeeded, else 0."
DURATION_HELP = "How long the probe's last run took, in seconds."
STATUS_HELP = "HTTP status of the last answer (absent without one)."
LAST_SUCCESS_HELP = "Unix time of the probe's last success (absent until it has succeeded once)."
FIELD_ERRORS_HELP = (
    "Fields of a probe's answer that had no value (or, for too_many_values, a counted "
    "value past the probe's max_distinct_values, counted as __other__), by reason: "
    "invalid_json, missing, many_values, not_a_number, unreadable, unmapped, "
    "too_many_values, too_long, not_text."
)
RUNS_HELP = "Probe runs by result: success or failure."
RUN_RESULTS = ("success", "failure")


class _ProbeCounts:
    """One probe's run and field-error counters, each series with its ``_created`` time."""

    def __init__(self, now: float) -> None:
        # Both results from 0 at start: a rate over failures has a series before the first one.
        self.runs = {result: _Tally(now) for result in RUN_RESULTS}
        self.field_errors: dict[tuple[str, str], _Tally] = {}  # (field, reason) -> tally

    def field_error(self, name: str, reason: FieldProblem) -> None:
        key = (name, reason.value)
        tally = self.field_errors.get(key)
        if tally is None:
            tally = self.field_errors[key] = _Tally(time.time())
        tally.count += 1


def _fixed_families() -> tuple[GaugeMetricFamily, ...]:
    return (
        _gauge("lumen_probe_success", SUCCESS_HELP),
        _gauge("lumen_probe_duration_seconds", DURATION_HELP),
        _gauge("lumen_probe_http_status", STATUS_HELP),
        _gauge("lumen_probe_last_success_timestamp_seconds", LAST_SUCCESS_HELP),
    )


def _field_errors_family() -> CounterMetricFamily:
    return CounterMetricFamily(
        "lumen_probe_field_errors", FIELD_ERRORS_HELP, labels=["probe", "field", "reason"]
    )


def _runs_family() -> CounterMetricFamily:
    return CounterMetricFamily("lumen_probe_runs", RUNS_HELP, labels=["probe", "result"])


def _probe_families(
    probe: ProbeConfig,
    result: ProbeResult | None,
    last_success: float | None,
    counts: _ProbeCounts,
    counted: CountedValues,
) -> Iterable[Metric]:
    """Every series of one probe; a family the probe has no sample of is still written
    (HELP and TYPE only) for the gauges and counters every probe has."""
    success, duration, status, succeeded = _fixed_families()
    own: list[GaugeMetricFamily] = []
    labels = [probe.name]
    if result is not None:  # not run yet: nothing to say, rather than a made-up 0
        success.add_metric(labels, 1.0 if result.success else 0.0)
        duration.add_metric(labels, result.duration_seconds)
        if result.status is not None:
            status.add_metric(labels, float(result.status))
        if last_success is not None:
            succeeded.add_metric(labels, last_success)
        for name, value in _policy_values(probe, result):
            family = _gauge(name, _help(probe, name))
            family.add_metric(labels, value)
            own.append(family)
    yield from (success, duration, status, succeeded, *own)
    yield from counted.families(probe.name)
    # These two were prometheus_client Counters, whose _created series follow its switch
    # (PROMETHEUS_DISABLE_CREATED_SERIES, disable_created_metrics()); they still do.
    created = bool(getattr(prometheus_client.metrics, "_use_created", True))
    errors = _field_errors_family()
    for (name, reason), tally in counts.field_errors.items():
        errors.add_metric(
            [probe.name, name, reason], tally.count, created=tally.created if created else None
        )
    runs = _runs_family()
    for result_name, tally in counts.runs.items():
        runs.add_metric(
            [probe.name, result_name], tally.count, created=tally.created if created else None
        )
    yield errors
    yield runs


def _family_order(config: ExporterConfig) -> list[str]:
    """The families of the probes' exposition, as ``generate_latest`` names them, in the order
    they are served: the probes' own gauges, the policies' gauges (first probe first), the
    counted values, the field errors and the runs."""
    gauges = [family.name for family in _fixed_families()]
    for probe in config.probes:
        gauges += [probe.health_metric, probe.response_time_metric, *probe.fields]
    counters = [name for probe in config.probes for name in probe.count_values]
    counters += ["lumen_probe_field_errors", "lumen_probe_runs"]
    return [
        *dict.fromkeys(gauges),
        *dict.fromkeys(f"{name}{suffix}" for name in counters for suffix in ("_total", "_created")),
    ]


class ExporterMetrics:
    """Everything ``/metrics`` serves (``exposition()``): the probes' series, rendered when a
    probe records a result and kept as text (a scrape only joins it), then the series of
    ``registry``, formatted at each scrape: the pipeline's and the CSV log's, a few samples,
    registered there by whoever owns them."""

    def __init__(self, config: ExporterConfig, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.results = ProbeResults()
        self.counted = CountedValues(config)
        self._probes = {probe.name: probe for probe in config.probes}
        self._counts = {probe.name: _ProbeCounts(time.time()) for probe in config.probes}
        fixed = (*_fixed_families(), _field_errors_family(), _runs_family())
        self._probe_text = MergedExposition(
            list(self._probes), _family_order(config), always=render(fixed)
        )
        for probe in config.probes:
            self._render(probe)

    def record(
        self, probe: str, result: ProbeResult, problems: Mapping[str, FieldProblem] | None = None
    ) -> None:
        """Keep ``result`` as the probe's last and count its failures, missing fields and the
        values of its counted fields; then render the probe's series again."""
        config = self._probes.get(probe)
        if config is None:
            raise ValueError(f"no probe named {probe!r} in the configuration")
        self.results.record(probe, result)
        counts = self._counts[probe]
        counts.runs["success" if result.success else "failure"].count += 1
        for name, problem in (problems or {}).items():
            counts.field_error(name, problem)
        if result.success:  # a failed run read no field (and its counted values would be made up)
            for name, value in result.counted.items():
                if not self.counted.count(probe, name, value, result.finished_at):
                    counts.field_error(name, FieldProblem.TOO_MANY_VALUES)
        self._render(config)

    def _render(self, probe: ProbeConfig) -> None:
        # generate_latest over this probe's ~20 samples: a fraction of a millisecond, once per
        # run, instead of all probes' samples on every scrape.
        families = _probe_families(
            probe,
            self.results.last(probe.name),
            self.results.last_success(probe.name),
            self._counts[probe.name],
            self.counted,
        )
        self._probe_text.update(probe.name, render(families))

    def exposition(self) -> bytes:
        """The text ``/metrics`` serves (the Prometheus text format, version 0.0.4)."""
        return self._probe_text.text() + generate_latest(self.registry)
