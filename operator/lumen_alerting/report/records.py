"""The table a report is computed from, and the reader of the exporter's CSV log (``--csv``).

A ``MetricsTable`` holds, per probe, its runs in time order (``ProbeRecord``): success, HTTP
status, duration, the numeric gauge values and the counted string values (the persona) the run
had. Both sources build it: this module from CSV files, ``prometheus.py`` from a range query.

The CSV format is the exporter's (docs/exporter.md; its fixed columns and timestamp format in
``probe_log_format``, shared with the writer): a header line, then one row per probe run,
``timestamp,probe,success,http_status,duration_seconds,<gauges...>,<counted...>,error``. Columns
beyond the fixed ones are numeric gauges, except the ones named as text (the persona field) and
any column whose first non-empty cell is not a number (a counted value). Pure: no I/O besides
reading the files it is given.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..probe_log_format import (
    DURATION,
    FIXED_COLUMNS,
    HTTP_STATUS,
    PROBE,
    SUCCESS,
    TIMESTAMP,
)


class ReportInputError(Exception):
    """Input a report cannot be made from; the message is one line naming where."""


@dataclass(frozen=True)
class ProbeRecord:
    """One run of one probe."""

    timestamp: float  # Unix seconds (the run's end)
    success: bool
    http_status: int | None
    duration_seconds: float | None
    values: Mapping[str, float]  # gauge -> value, only the gauges this run had
    texts: Mapping[str, str]  # counted field -> the string value this run saw


@dataclass
class ProbeSeries:
    """Every run of one probe, in time order."""

    probe: str
    records: list[ProbeRecord] = field(default_factory=list)
    # Runs per value of a counted field when the source has counters, not per-run values
    # (Prometheus); the CSV gives the values in ``ProbeRecord.texts`` instead.
    counted: dict[str, Counter[str]] = field(default_factory=dict)

    def field_values(self, name: str) -> tuple[list[float], list[float]]:
        """(timestamps, values) of the runs that had a value for ``name`` (a gauge, or
        ``duration_seconds``)."""
        times: list[float] = []
        values: list[float] = []
        for record in self.records:
            value = record.duration_seconds if name == DURATION else record.values.get(name)
            if value is not None:
                times.append(record.timestamp)
                values.append(value)
        return times, values


@dataclass(frozen=True)
class MetricsTable:
    """Runs per probe (sorted by probe name), and which fields they may carry."""

    probes: Mapping[str, ProbeSeries]
    gauges: tuple[str, ...]  # numeric columns, sorted
    texts: tuple[str, ...]  # string (counted) columns, sorted
    sources: tuple[str, ...]  # where it came from: files, or the Prometheus URL

    def only(self, probe: str) -> MetricsTable:
        """The table restricted to one probe; ReportInputError when it has no runs."""
        if probe not in self.probes:
            known = ", ".join(self.probes) or "none"
            raise ReportInputError(f"no records of probe {probe!r} (probes: {known})")
        return MetricsTable({probe: self.probes[probe]}, self.gauges, self.texts, self.sources)


def build_table(
    records: Iterable[tuple[str, ProbeRecord]],
    gauges: Iterable[str],
    texts: Iterable[str],
    sources: Sequence[str],
) -> MetricsTable:
    """Group (probe, record) pairs per probe, each in time order (stable for equal times)."""
    series: dict[str, ProbeSeries] = {}
    for probe, record in records:
        series.setdefault(probe, ProbeSeries(probe)).records.append(record)
    for one in series.values():
        one.records.sort(key=lambda record: record.timestamp)
    return MetricsTable(
        {name: series[name] for name in sorted(series)},
        tuple(sorted(set(gauges))),
        tuple(sorted(set(texts))),
        tuple(sources),
    )


def parse_time(text: str) -> float:
    """Unix seconds of an RFC 3339 time (``2026-12-02T04:01:09.123Z``; no zone means UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_csv_files(paths: Sequence[Path], text_fields: Iterable[str] = ()) -> MetricsTable:
    """Every row of the exporter's CSV files (rotated ones too, in any order: rows are sorted by
    time per probe). ``text_fields`` are columns read as strings whatever they hold."""
    if not paths:
        raise ReportInputError("no input file")
    kinds: dict[str, bool] = {name: False for name in text_fields}  # column -> numeric?
    rows: list[tuple[str, ProbeRecord]] = []
    for path in paths:
        rows.extend(_read_csv(path, kinds))
    gauges = [name for name, numeric in kinds.items() if numeric]
    texts = [name for name, numeric in kinds.items() if not numeric and _seen(name, rows)]
    table = build_table(rows, gauges, texts, [str(path) for path in paths])
    if not table.probes:
        raise ReportInputError(f"{', '.join(map(str, paths))}: no records (only a header)")
    return table


def _seen(name: str, rows: list[tuple[str, ProbeRecord]]) -> bool:
    return any(name in record.texts for _, record in rows)


def _read_csv(path: Path, kinds: dict[str, bool]) -> list[tuple[str, ProbeRecord]]:
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            return _parse_rows(path, csv.reader(stream), kinds)
    except OSError as error:
        raise ReportInputError(f"{path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ReportInputError(f"{path}: not UTF-8 text ({error.reason})") from None
    except csv.Error as error:
        raise ReportInputError(f"{path}: not CSV ({error})") from None


def _parse_rows(
    path: Path, reader: Iterable[list[str]], kinds: dict[str, bool]
) -> list[tuple[str, ProbeRecord]]:
    lines = iter(reader)
    header = next(lines, None)
    if header is None or not any(cell.strip() for cell in header):
        raise ReportInputError(f"{path}: empty file (no header line)")
    header = [name.strip() for name in header]
    for required in (TIMESTAMP, SUCCESS):
        if required not in header:
            raise ReportInputError(f"{path}:1: no {required} column")
    if len(set(header)) != len(header):
        raise ReportInputError(f"{path}:1: a column name appears twice")
    extra = [(i, name) for i, name in enumerate(header) if name not in FIXED_COLUMNS]
    index = {name: i for i, name in enumerate(header)}
    rows: list[tuple[str, ProbeRecord]] = []
    for number, cells in enumerate(lines, start=2):
        if not cells:
            continue  # a blank line
        if len(cells) != len(header):
            raise ReportInputError(
                f"{path}:{number}: {len(cells)} cells where the header has {len(header)}"
            )
        where = f"{path}:{number}"
        try:
            timestamp = parse_time(cells[index[TIMESTAMP]])
        except ValueError as error:
            raise ReportInputError(f"{where}: column {TIMESTAMP}: {error}") from None
        success_text = cells[index[SUCCESS]].strip()
        if success_text not in ("0", "1"):
            raise ReportInputError(f"{where}: column {SUCCESS}: {success_text!r} is not 0 or 1")
        status = _optional_number(cells, index.get(HTTP_STATUS), HTTP_STATUS, where)
        if status is not None and not status.is_integer():
            raise ReportInputError(f"{where}: column {HTTP_STATUS}: {status} is not an integer")
        values: dict[str, float] = {}
        texts: dict[str, str] = {}
        for i, name in extra:
            cell = cells[i].strip()
            if not cell:
                continue
            numeric = kinds.get(name)
            if numeric is None:  # the first value decides: a number makes a gauge column
                numeric = kinds[name] = _is_number(cell)
            if numeric:
                values[name] = _number(cell, name, where)
            else:
                texts[name] = cell
        record = ProbeRecord(
            timestamp=timestamp,
            success=success_text == "1",
            http_status=None if status is None else int(status),
            duration_seconds=_optional_number(cells, index.get(DURATION), DURATION, where),
            values=values,
            texts=texts,
        )
        probe = cells[index[PROBE]].strip() if PROBE in index else ""
        rows.append((probe or "-", record))
    return rows


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ReportInputError(f"{where}: column {column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ReportInputError(f"{where}: column {column}: {text!r} is not a finite number")
    return value


def _optional_number(cells: list[str], i: int | None, column: str, where: str) -> float | None:
    if i is None or not cells[i].strip():
        return None
    return _number(cells[i].strip(), column, where)
