"""The report's table from Prometheus: one ``query_range`` over the exporter's series, pivoted
into the same ``ProbeRecord`` rows the CSV log gives.

The query selects every series with a ``probe`` label (narrowed by ``--selector``). Per probe and
evaluation step: ``lumen_probe_success`` makes a record (steps without it are skipped),
``lumen_probe_duration_seconds`` and ``lumen_probe_http_status`` fill those columns, and every
other series is a gauge column, except counters and their companions (``*_total``,
``*_created``) and ``lumen_probe_last_success_timestamp_seconds``. The persona counter
``<persona>_total{value}`` is not a per-run value: its increase over the range, per value, is the
persona distribution (steps of the range query, with counter resets handled as Prometheus does:
a drop starts again from 0).

One field of one probe may come from several series that differ in other labels (``instance``,
``pod``): the exporter's pod is replaced on every config change (its Deployment recreates it, and
Prometheus ends the old pod's series with staleness markers), so a range often spans two pods.
Their series are one field as long as no step has a sample of both; two series with a sample at
the same step (the probe scraped by two jobs, or two exporters with one probe name) are refused,
naming the step and both label sets: ``--selector`` picks one. The persona counter's increase is
summed over its series, each created by its pod from 0.

A record is a step of the query, not a scrape: with a step shorter than the scrape interval
Prometheus repeats the last sample (for up to 5 minutes), so ``--step`` should be the scrape
interval. Prometheus refuses more than 11,000 points per series in one query: a longer range is
asked for in chunks, up to ``MAX_POINTS`` steps in all (each step of each probe is a record in
memory). An answer that is not a range query's matrix (a proxy's JSON, a malformed value) is a
one-line error, as a refusal is.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from ..probe_log_format import rfc3339_millis
from .records import MetricsTable, ProbeRecord, ReportInputError, build_table

SUCCESS_SERIES = "lumen_probe_success"
DURATION_SERIES = "lumen_probe_duration_seconds"
STATUS_SERIES = "lumen_probe_http_status"
IGNORED_SERIES = frozenset({"lumen_probe_last_success_timestamp_seconds"})
# Prometheus refuses a range query of more than 11,000 points per series; ask for fewer.
POINTS_PER_QUERY = 10_000
# Steps over the whole range at most (the chunks together): beyond, ask for a larger --step.
# Every step of every probe becomes a record with its values (about 0.8 KB in memory with seed
# 001's nine gauges; the pivot's arrays add 8 bytes a step and series): 200,000 steps of one
# probe peak at about 200 MB (measured with tracemalloc).
MAX_POINTS = 200_000
DEFAULT_STEP_SECONDS = 15.0
# Labels that identify the field rather than the series' origin.
FIELD_LABELS = frozenset({"__name__", "probe", "value"})


@dataclass(frozen=True)
class RangeQuery:
    url: str  # Prometheus' base URL, e.g. http://prometheus:9090
    start: float  # Unix seconds
    end: float
    step: float | None = None  # seconds; None: DEFAULT_STEP_SECONDS, or coarser to fit a query
    selector: str = ""  # e.g. {job="lumen-exporter"}: label matchers added to the query
    timeout: float = 30.0

    def steps(self) -> float:
        if self.step is not None:
            return self.step
        # The default fits one query: 15 s, or the step that makes the range POINTS_PER_QUERY.
        return max(DEFAULT_STEP_SECONDS, math.ceil((self.end - self.start) / POINTS_PER_QUERY))


def series_query(selector: str) -> str:
    """The PromQL selector of every probe series, with the user's matchers added."""
    text = selector.strip()
    if not text:
        return '{probe!=""}'
    if not (text.startswith("{") and text.endswith("}")):
        raise ReportInputError(
            f'--selector {selector!r}: give label matchers in braces, e.g. {{job="lumen-exporter"}}'
        )
    inner = text[1:-1].strip().rstrip(",")
    return '{probe!=""' + (f",{inner}" if inner else "") + "}"


def read_prometheus(
    query: RangeQuery,
    persona_field: str,
    transport: httpx.BaseTransport | None = None,
) -> MetricsTable:
    """The table of every probe's steps in the range. ReportInputError for a bad range, an
    unreachable or refusing Prometheus, or no probe series."""
    if query.end <= query.start:
        raise ReportInputError(
            f"--end {rfc3339_millis(query.end)} is not after --start {rfc3339_millis(query.start)}"
        )
    step = query.steps()
    if step <= 0:
        raise ReportInputError(f"--step {step} s: must be positive")
    points = math.floor((query.end - query.start) / step) + 1
    if points > MAX_POINTS:
        raise ReportInputError(
            f"too many points: {points} steps of {step:g} s from {rfc3339_millis(query.start)} to "
            f"{rfc3339_millis(query.end)} (at most {MAX_POINTS}); give a larger --step"
        )
    expression = series_query(query.selector)
    pivot = _Pivot(persona_field, query.start, step, points)
    with httpx.Client(
        base_url=query.url.rstrip("/"), timeout=query.timeout, transport=transport
    ) as client:
        chunk_start = query.start
        while chunk_start <= query.end:
            chunk_end = min(query.end, chunk_start + (POINTS_PER_QUERY - 1) * step)
            for labels, samples in _query_range(
                client, query.url, expression, chunk_start, chunk_end, step
            ):
                pivot.add(labels, samples)
            chunk_start = chunk_end + step
    table = build_table(pivot.records(), pivot.gauges, [], [query.url])
    if not table.probes:
        raise ReportInputError(
            f"{query.url}: no probe runs ({SUCCESS_SERIES}) for {expression} from "
            f"{rfc3339_millis(query.start)} to {rfc3339_millis(query.end)}"
        )
    for probe, counts in pivot.persona_counts().items():
        if probe in table.probes:
            table.probes[probe].counted[persona_field] = counts
    return table


Points = list[tuple[int, float]]  # (step in milliseconds since the epoch, finite value)


def _query_range(
    client: httpx.Client, url: str, expression: str, start: float, end: float, step: float
) -> list[tuple[dict[str, str], Points]]:
    """Every series of one range query: its labels and its points."""
    params = {
        "query": expression,
        "start": f"{start:.3f}",
        "end": f"{end:.3f}",
        # Exactly the step the chunks are cut with (f"{step:g}" would send 1.23457e+06).
        "step": repr(step),
    }
    try:
        response = client.get("/api/v1/query_range", params=params)
    except httpx.TransportError as error:
        raise ReportInputError(f"cannot reach Prometheus at {url}: {error}") from None
    try:
        body = response.json()
    except ValueError:
        raise ReportInputError(
            f"{url}: answered HTTP {response.status_code} without a JSON body "
            "(is it Prometheus' base URL?)"
        ) from None
    if not isinstance(body, dict) or body.get("status") != "success":
        detail = body.get("error", "no reason given") if isinstance(body, dict) else body
        raise ReportInputError(
            f"{url}: Prometheus refused the query ({response.status_code}): {detail}"
        )
    try:
        return _matrix(body.get("data"))
    except _NotAMatrix as error:
        raise ReportInputError(
            f"{url}: Prometheus answered something that is not a query_range result ({error})"
        ) from None


class _NotAMatrix(Exception):
    """What in an answer is not a range query's matrix."""


def _matrix(data: Any) -> list[tuple[dict[str, str], Points]]:
    """``data`` of a query_range answer: ``{"resultType": "matrix", "result": [{"metric":
    {label: value}, "values": [[unix seconds, "value"], ...]}, ...]}``. Non-finite values
    (NaN, ±Inf) are left out: no run has them."""
    if not isinstance(data, dict):
        raise _NotAMatrix(f"data is {_kind(data)}")
    if data.get("resultType") != "matrix":
        raise _NotAMatrix(f"resultType is {data.get('resultType')!r}, not 'matrix'")
    result = data.get("result")
    if not isinstance(result, list):
        raise _NotAMatrix(f"result is {_kind(result)}")
    matrix: list[tuple[dict[str, str], Points]] = []
    for series in result:
        if not isinstance(series, dict):
            raise _NotAMatrix(f"a series is {_kind(series)}")
        labels = series.get("metric")
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise _NotAMatrix("a series' metric is not a map of label names to values")
        values = series.get("values", [])
        if not isinstance(values, list):
            raise _NotAMatrix(f"the values of a series are {_kind(values)}")
        points: Points = []
        for pair in values:
            try:
                t, v = pair
                moment, value = float(t), float(v)
            except (TypeError, ValueError):
                raise _NotAMatrix(f"{_short(pair)} is not a [time, value] pair") from None
            if not math.isfinite(moment):
                raise _NotAMatrix(f"{_short(pair)} is not a [time, value] pair")
            if math.isfinite(value):
                points.append((round(moment * 1000), value))
        matrix.append((labels, points))
    return matrix


def _kind(value: Any) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


Origin = tuple[tuple[str, str], ...]  # the labels that are not the field's: job, instance...


class _ProbeSteps:
    """One probe's values per field on the range's step grid: an array per series name, NaN
    where the step has none (8 bytes a step and field, where a dict takes over 100), and the
    persona counters' points."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.columns: dict[str, np.ndarray] = {}  # series name -> value per step
        self.times = np.full(size, -1, dtype=np.int64)  # ms of each step lumen_probe_success has
        # (persona value, origin) -> [(step, counter value)]: one counter series per exporter pod
        self.persona: dict[tuple[str, Origin], Points] = {}

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            self.columns[name] = np.full(self.size, np.nan)
        return self.columns[name]


class _Pivot:
    """Series -> per probe, per step values. One field may come from several series with
    different origins (``instance``, ``pod``...): the exporter's pod is replaced on every config
    change, so a range often spans two. They are one field as long as they never both have a
    sample at one step; two series with a value at the same step (the same probe scraped by two
    jobs, or two exporters) are refused: which one is the probe's? ``--selector`` picks one."""

    def __init__(self, persona_field: str, start: float, step: float, size: int) -> None:
        self._persona_counter = f"{persona_field}_total"
        self._start_ms = round(start * 1000)
        self._step_ms = step * 1000
        self._size = size
        self._probes: dict[str, _ProbeSteps] = {}
        # (metric, probe, persona value) -> the origins of its series so far, for the error
        self._origins: dict[tuple[str, str, str], list[Origin]] = {}
        self.gauges: set[str] = set()

    def add(self, labels: Mapping[str, str], points: Points) -> None:
        name = labels.get("__name__", "")
        probe = labels.get("probe", "")
        if not name or not probe or name in IGNORED_SERIES:
            return
        is_persona = name == self._persona_counter
        if not is_persona and name.endswith(("_total", "_created")):
            return  # other counters are no per-run value
        value_label = labels.get("value", "") if is_persona else ""
        origin: Origin = tuple(sorted((k, v) for k, v in labels.items() if k not in FIELD_LABELS))
        origins = self._origins.setdefault((name, probe, value_label), [])
        if origin not in origins:
            origins.append(origin)
        steps = self._probes.setdefault(probe, _ProbeSteps(self._size))
        times = np.fromiter((t for t, _ in points), dtype=np.int64, count=len(points))
        values = np.fromiter((v for _, v in points), dtype=np.float64, count=len(points))
        index = np.rint((times - self._start_ms) / self._step_ms).astype(np.int64)
        on_grid = (index >= 0) & (index < self._size)  # Prometheus answers no other step
        times, values, index = times[on_grid], values[on_grid], index[on_grid]
        # The chunks of the range do not share a step, so a step that already has a value of
        # this field has it from another series.
        if is_persona:
            taken = {
                t
                for (value, other), known in steps.persona.items()
                if value == value_label and other != origin
                for t, _ in known
            }
            clash = np.fromiter((t in taken for t in times.tolist()), dtype=bool, count=len(times))
        else:
            clash = ~np.isnan(steps.column(name)[index])
        if clash.any():
            others = [_labels(known) for known in origins if known != origin]
            at = rfc3339_millis(int(times[clash][0]) / 1000)
            raise ReportInputError(
                f"two series of {name}{{probe={probe!r}}} at {at}: "
                f"{' and '.join([*others, _labels(origin)])}; narrow the query with --selector"
            )
        if is_persona:
            steps.persona.setdefault((value_label, origin), []).extend(
                zip(times.tolist(), values.tolist(), strict=True)
            )
            return
        steps.column(name)[index] = values
        if name == SUCCESS_SERIES:
            steps.times[index] = times
        elif name not in (DURATION_SERIES, STATUS_SERIES):
            self.gauges.add(name)

    def records(self) -> Iterable[tuple[str, ProbeRecord]]:
        for probe, steps in self._probes.items():
            ran = np.flatnonzero(steps.times >= 0)  # the steps with lumen_probe_success
            if ran.size == 0:
                continue
            per_step: list[dict[str, float]] = [{} for _ in range(ran.size)]
            for name in sorted(self.gauges.intersection(steps.columns)):
                column = steps.columns[name][ran]
                present = np.flatnonzero(~np.isnan(column))
                for position, value in zip(present.tolist(), column[present].tolist(), strict=True):
                    per_step[position][name] = value
            empty = np.full(ran.size, np.nan)
            durations = steps.columns.get(DURATION_SERIES, empty)[ran].tolist()
            statuses = steps.columns.get(STATUS_SERIES, empty)[ran].tolist()
            successes = steps.columns[SUCCESS_SERIES][ran].tolist()
            for position, t in enumerate(steps.times[ran].tolist()):
                duration, status = durations[position], statuses[position]
                yield (
                    probe,
                    ProbeRecord(
                        timestamp=t / 1000,
                        success=successes[position] != 0,
                        http_status=None if math.isnan(status) else int(status),
                        duration_seconds=None if math.isnan(duration) else duration,
                        values=per_step[position],
                        texts={},
                    ),
                )

    def persona_counts(self) -> dict[str, Counter[str]]:
        """Per probe, the persona counter's increase over the range per value: the sum over its
        series (one per exporter pod). A series already there at the range's first step starts
        from that value; one that appears later was created in the range (by a new pod, or on
        the value's first sighting) and starts from 0. Within a series a drop is a reset, as in
        Prometheus' ``increase``: it starts again from 0."""
        counts: dict[str, Counter[str]] = {}
        for probe, steps in self._probes.items():
            for (value, _), points in steps.persona.items():
                points.sort()
                previous = points[0][1] if points[0][0] == self._start_ms else 0.0
                increase = 0.0
                for _, current in points:
                    increase += current - previous if current >= previous else current
                    previous = current
                if round(increase) > 0:
                    counts.setdefault(probe, Counter())[value] += round(increase)
        return counts


def _labels(pairs: Origin) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"
