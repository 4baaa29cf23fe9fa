"""What a probe of ``spec.exporter.probes`` may name and read, shared by ``lumenctl validate``
(``policy.validation``) and the exporter's own ``config.json`` check, so a policy the API server
and ``lumenctl`` accept never makes the exporter refuse its config and crash-loop.

Pure: names and a JSONPath parser, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import jsonpath

from ..json_paths import JSONPATH

# The exporter's own families, as they appear on /metrics: a probe's gauge under one of these
# names would give a family two TYPE lines, and Prometheus drops the whole scrape.
_EXPORTER_COUNTERS = (
    "lumen_probe_field_errors",
    "lumen_probe_runs",
    "lumen_pipeline_runs",
    "lumen_pipeline_stage_runs",
    "lumen_exporter_csv_write_errors",
    "lumen_exporter_csv_rows_dropped",
)
_EXPORTER_GAUGES = (
    "lumen_probe_success",
    "lumen_probe_duration_seconds",
    "lumen_probe_http_status",
    "lumen_probe_last_success_timestamp_seconds",
    "lumen_pipeline_last_run_timestamp",
    "lumen_pipeline_success",
    "lumen_pipeline_duration_seconds",
    "lumen_remote_integrity_ok",
    "lumen_report_generated",
    "lumen_alert_suppressed",
)
_COUNTER_SUFFIXES = ("", "_total", "_created")  # prometheus_client exposes all three
RESERVED_METRICS = frozenset(
    {
        *_EXPORTER_GAUGES,
        *(name + suffix for name in _EXPORTER_COUNTERS for suffix in _COUNTER_SUFFIXES),
    }
)


def reserved_metric_problem(name: str) -> str | None:
    """Why a probe may not export a gauge called ``name``, or None."""
    if name in RESERVED_METRICS:
        return f"{name!r} is one of the exporter's own series"
    return None


def jsonpath_problem(path: str) -> str | None:
    """Why ``path`` is not an RFC 9535 JSONPath, or None."""
    try:
        JSONPATH.compile(path)
    except jsonpath.JSONPathError as error:
        # args[0] is the message alone: str() adds the query with a caret, and fails on "".
        return f"{path!r} is not a JSONPath ({str(error.args[0]).splitlines()[0]})"
    return None


def url_problem(url: str) -> str | None:
    """Why a probe may not request ``url``, or None: credentials in it (``user:pass@``) would be
    quoted wherever a failure's text goes (the log, the CSV log's error column)."""
    try:
        authority = urlsplit(url).netloc
    except ValueError:  # not a URL at all: the pattern check says so
        return None
    if "@" in authority:
        return "must not carry credentials (user:pass@); send them in a header from a Secret"
    return None


def method_problem(method: str, reads_body: bool) -> str | None:
    """Why a probe with ``method`` may not read fields or counted values (``reads_body``)."""
    if method == "HEAD" and reads_body:
        return (
            "an answer to HEAD has no body to read fields or counted values from (use GET or POST)"
        )
    return None


def counter_series(base: str) -> tuple[str, ...]:
    """The names a counter called ``base`` takes on /metrics: base, base_total, base_created."""
    return tuple(base + suffix for suffix in _COUNTER_SUFFIXES)


def counter_problem(base: str) -> str | None:
    """Why a probe may not count values under the counter name ``base``, or None."""
    if base.endswith(("_total", "_created")):
        return (
            f"{base!r}: give a counter's name without _total or _created (the exporter adds _total)"
        )
    for name in counter_series(base):
        if (problem := reserved_metric_problem(name)) is not None:
            return problem
    return None


def probe_series_names(gauges: Iterable[str], counters: Iterable[str]) -> list[str]:
    """Every name a probe's series take: its gauges, and each counter's three names; feed it to
    ``repeated_metric`` so a gauge ``x_total`` and a counter ``x`` are caught as a clash."""
    return [*gauges, *(name for base in counters for name in counter_series(base))]


def repeated_metric(names: list[str]) -> str | None:
    """The first metric name a probe uses twice (health, response time, fields), or None."""
    twice = sorted({name for name in names if names.count(name) > 1})
    return twice[0] if twice else None
