"""The report's figures, from a ``MetricsTable``: pure (no I/O, no clock).

Per probe: the summary (records, first and last time, span), statistics per numeric field (the
gauges and ``duration_seconds``; not ``success`` nor ``http_status``, which are codes), z-score
anomalies, health (uptime, mock mode, downtime periods) and the persona distribution.

Definitions, so that the numbers can be checked by hand:

- standard deviation: the *sample* standard deviation (n - 1 in the denominator, Python's
  ``statistics.stdev``, numpy's ``std(ddof=1)``), undefined (``None``) for a single value;
- percentiles: linear interpolation between the closest ranks (numpy's default,
  ``statistics.quantiles(method="inclusive")``, a spreadsheet's ``PERCENTILE.INC``);
- anomaly: a value whose z-score ``(value - mean) / stdev``, with that same sample stdev, is
  beyond the threshold in absolute value (``> threshold``); a field whose values are all equal
  has none;
- uptime: successful runs / all runs; mock mode: runs whose mock field is 1 / runs that have the
  mock field (``None`` when no run has it);
- downtime period: a maximal run of consecutive failed runs; ``start`` and ``end`` are the
  first and last failed run's times, ``duration_seconds = end - start``, ``recovered_at`` the
  next successful run's time (``None`` while still down);
- persona distribution: runs per value of the persona field, over the runs that have one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..probe_log_format import DURATION, rfc3339_millis
from .records import MetricsTable, ProbeSeries

DEFAULT_Z_THRESHOLD = 2.0
DEFAULT_MOCK_FIELD = "lumen_ion_mock_mode"
DEFAULT_PERSONA_FIELD = "lumen_ion_persona"


@dataclass(frozen=True)
class ReportOptions:
    z_threshold: float = DEFAULT_Z_THRESHOLD
    mock_field: str = DEFAULT_MOCK_FIELD
    persona_field: str = DEFAULT_PERSONA_FIELD


@dataclass(frozen=True)
class FieldStatistics:
    field: str
    count: int
    minimum: float
    maximum: float
    mean: float
    median: float
    stdev: float | None  # sample standard deviation; None for a single value
    p95: float
    p99: float


@dataclass(frozen=True)
class Anomaly:
    field: str
    timestamp: float
    value: float
    z_score: float


@dataclass(frozen=True)
class Downtime:
    start: float
    end: float
    duration_seconds: float
    records: int
    recovered_at: float | None


@dataclass(frozen=True)
class Health:
    successes: int
    failures: int
    uptime_percent: float
    mock_field: str
    mock_records: int  # runs with the mock field at 1
    mock_known: int  # runs that have the mock field at all
    mock_mode_percent: float | None
    downtime: tuple[Downtime, ...]


@dataclass(frozen=True)
class PersonaShare:
    value: str
    count: int
    percent: float


@dataclass(frozen=True)
class ProbeReport:
    probe: str
    records: int
    first: float
    last: float
    statistics: tuple[FieldStatistics, ...]  # by field name
    anomalies: tuple[Anomaly, ...]  # by time, then field
    health: Health
    persona_field: str
    personas: tuple[PersonaShare, ...]  # most frequent first

    @property
    def span_seconds(self) -> float:
        return self.last - self.first


@dataclass(frozen=True)
class Report:
    sources: tuple[str, ...]
    z_threshold: float
    probes: tuple[ProbeReport, ...]  # by probe name


def analyze(table: MetricsTable, options: ReportOptions) -> Report:
    """Every figure of the report, per probe of ``table``."""
    probes = tuple(
        _probe_report(series, table.gauges, options)
        for series in table.probes.values()
        if series.records
    )
    return Report(table.sources, options.z_threshold, probes)


def numeric_fields(series: ProbeSeries, gauges: tuple[str, ...]) -> list[str]:
    """The fields statistics are computed for: the gauges this probe has values of, then the
    run duration."""
    present = {name for record in series.records for name in record.values}
    fields = [name for name in gauges if name in present]
    if any(record.duration_seconds is not None for record in series.records):
        fields.append(DURATION)
    return fields


def _probe_report(
    series: ProbeSeries, gauges: tuple[str, ...], options: ReportOptions
) -> ProbeReport:
    statistics: list[FieldStatistics] = []
    anomalies: list[Anomaly] = []
    for name in numeric_fields(series, gauges):
        times, values = series.field_values(name)
        figures = field_statistics(name, values)
        statistics.append(figures)
        anomalies.extend(z_score_anomalies(name, times, values, figures, options.z_threshold))
    anomalies.sort(key=lambda anomaly: (anomaly.timestamp, anomaly.field))
    records = series.records
    return ProbeReport(
        probe=series.probe,
        records=len(records),
        first=records[0].timestamp,
        last=records[-1].timestamp,
        statistics=tuple(sorted(statistics, key=lambda figures: figures.field)),
        anomalies=tuple(anomalies),
        health=health(series, options.mock_field),
        persona_field=options.persona_field,
        personas=persona_distribution(series, options.persona_field),
    )


def field_statistics(name: str, values: list[float]) -> FieldStatistics:
    data = np.asarray(values, dtype=np.float64)
    p95, p99, median = np.percentile(data, [95, 99, 50])
    return FieldStatistics(
        field=name,
        count=int(data.size),
        minimum=float(data.min()),
        maximum=float(data.max()),
        mean=float(data.mean()),
        median=float(median),
        stdev=float(data.std(ddof=1)) if data.size > 1 else None,
        p95=float(p95),
        p99=float(p99),
    )


def z_score_anomalies(
    name: str,
    times: list[float],
    values: list[float],
    figures: FieldStatistics,
    threshold: float,
) -> list[Anomaly]:
    if not figures.stdev:  # one value, or all equal: nothing stands out
        return []
    data = np.asarray(values, dtype=np.float64)
    scores = (data - figures.mean) / figures.stdev
    return [
        Anomaly(name, times[i], values[i], float(scores[i]))
        for i in np.flatnonzero(np.abs(scores) > threshold)
    ]


def health(series: ProbeSeries, mock_field: str) -> Health:
    records = series.records
    successes = sum(record.success for record in records)
    mock_values = [record.values[mock_field] for record in records if mock_field in record.values]
    mock_records = sum(value == 1 for value in mock_values)
    return Health(
        successes=successes,
        failures=len(records) - successes,
        uptime_percent=100.0 * successes / len(records),
        mock_field=mock_field,
        mock_records=mock_records,
        mock_known=len(mock_values),
        mock_mode_percent=100.0 * mock_records / len(mock_values) if mock_values else None,
        downtime=downtime_periods(series),
    )


def downtime_periods(series: ProbeSeries) -> tuple[Downtime, ...]:
    records = series.records
    periods: list[Downtime] = []
    i = 0
    while i < len(records):
        if records[i].success:
            i += 1
            continue
        first = i
        while i < len(records) and not records[i].success:
            i += 1
        start, end = records[first].timestamp, records[i - 1].timestamp
        recovered_at = records[i].timestamp if i < len(records) else None
        periods.append(Downtime(start, end, end - start, i - first, recovered_at))
    return tuple(periods)


def persona_distribution(series: ProbeSeries, persona_field: str) -> tuple[PersonaShare, ...]:
    counts = series.counted.get(persona_field) or Counter(
        record.texts[persona_field] for record in series.records if persona_field in record.texts
    )
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(PersonaShare(value, count, 100.0 * count / total) for value, count in ranked)


def report_document(report: Report) -> dict[str, object]:
    """The JSON form of the report (docs/lumenctl.md shows it): times as RFC 3339 UTC."""
    return {
        "sources": list(report.sources),
        "z_threshold": report.z_threshold,
        "stdev": "sample",
        "percentiles": "linear",
        "probes": {probe.probe: _probe_document(probe) for probe in report.probes},
    }


def _probe_document(probe: ProbeReport) -> dict[str, object]:
    health = probe.health
    return {
        "summary": {
            "records": probe.records,
            "first": rfc3339_millis(probe.first),
            "last": rfc3339_millis(probe.last),
            "span_seconds": _milliseconds(probe.span_seconds),
        },
        "statistics": {
            figures.field: {
                "count": figures.count,
                "min": figures.minimum,
                "max": figures.maximum,
                "mean": figures.mean,
                "median": figures.median,
                "stdev": figures.stdev,
                "p95": figures.p95,
                "p99": figures.p99,
            }
            for figures in probe.statistics
        },
        "anomalies": [
            {
                "field": anomaly.field,
                "timestamp": rfc3339_millis(anomaly.timestamp),
                "value": anomaly.value,
                "z_score": anomaly.z_score,
            }
            for anomaly in probe.anomalies
        ],
        "health": {
            "successes": health.successes,
            "failures": health.failures,
            "uptime_percent": health.uptime_percent,
            "mock_field": health.mock_field,
            "mock_records": health.mock_records,
            "mock_known": health.mock_known,
            "mock_mode_percent": health.mock_mode_percent,
            "downtime": [
                {
                    "start": rfc3339_millis(period.start),
                    "end": rfc3339_millis(period.end),
                    "duration_seconds": _milliseconds(period.duration_seconds),
                    "records": period.records,
                    "recovered_at": None
                    if period.recovered_at is None
                    else rfc3339_millis(period.recovered_at),
                }
                for period in health.downtime
            ],
        },
        "personas": {
            "field": probe.persona_field,
            "values": [
                {"value": share.value, "count": share.count, "percent": share.percent}
                for share in probe.personas
            ],
        },
    }


def _milliseconds(seconds: float) -> float:
    """A difference of two times, rounded as the times are (to milliseconds), so that 12.3 s
    does not read 12.299999952316284."""
    return round(seconds, 3)
