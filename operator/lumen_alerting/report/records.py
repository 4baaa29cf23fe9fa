"""The table a report is computed from, and the reader of the exporter's CSV log (``--csv``).

A ``MetricsTable`` holds, per probe, its runs in time order (``ProbeRecord``): success, HTTP
status, duration, the numeric gauge values and the counted string values (the persona) the run
had. Both sources build it: this module from CSV files, ``prometheus.py`` from a range query.

The CSV format is the exporter's (docs/exporter.md; its fixed columns and timestamp format in
``probe_log_format``, shared with the writer): a header line, then one row per probe run,
``timestamp,probe,success,http_status,duration_seconds,<gauges...>,<counted...>,error``. Columns
beyond the fixed ones are numeric gauges when every non-empty cell is a finite number, else text
(a counted value), and the ones named as text (the persona field) always are; text cells are kept
as written. Pure: no I/O besides reading the files it is given.
"""

from __future__ import annotations

import csv
import io
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
    notes: tuple[str, ...] = ()  # what the reader skipped, one line each (for stderr)

    def only(self, probe: str) -> MetricsTable:
        """The table restricted to one probe; ReportInputError when it has no runs."""
        if probe not in self.probes:
            known = ", ".join(self.probes) or "none"
            raise ReportInputError(f"no records of probe {probe!r} (probes: {known})")
        return MetricsTable(
            {probe: self.probes[probe]}, self.gauges, self.texts, self.sources, self.notes
        )


def build_table(
    records: Iterable[tuple[str, ProbeRecord]],
    gauges: Iterable[str],
    texts: Iterable[str],
    sources: Sequence[str],
    notes: Sequence[str] = (),
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
        tuple(notes),
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
    time per probe). ``text_fields`` are columns read as strings whatever they hold; another
    column is a gauge when every non-empty cell of it, in every file, is a finite number, and
    text otherwise (a counted value such as a region may look like a number in its first rows).
    A file's last line without its line end (a write in progress, or cut short by a crash) is
    skipped, with a note in ``MetricsTable.notes``."""
    if not paths:
        raise ReportInputError("no input file")
    forced_text = set(text_fields)
    numeric: dict[str, bool] = {}  # column -> every non-empty cell so far is a finite number
    rows: list[_Row] = []
    notes: list[str] = []
    for path in paths:
        rows.extend(_read_csv(path, numeric, notes))
    for name in forced_text:
        numeric[name] = False
    records = [(row.probe, row.record(numeric)) for row in rows]
    gauges = [name for name, is_numeric in numeric.items() if is_numeric]
    texts = [name for name, is_numeric in numeric.items() if not is_numeric]
    texts = [name for name in texts if any(name in record.texts for _, record in records)]
    table = build_table(records, gauges, texts, [str(path) for path in paths], notes)
    if not table.probes:
        raise ReportInputError(f"{', '.join(map(str, paths))}: no records (only a header)")
    return table


@dataclass(frozen=True)
class _Row:
    """A row with its fixed columns read and its other cells as written: whether a column is a
    gauge is known only once every file is read."""

    probe: str
    timestamp: float
    success: bool
    http_status: int | None
    duration_seconds: float | None
    cells: tuple[tuple[str, str], ...]  # (column, cell) of the non-empty other cells

    def record(self, numeric: Mapping[str, bool]) -> ProbeRecord:
        values: dict[str, float] = {}
        texts: dict[str, str] = {}
        for name, cell in self.cells:
            if numeric.get(name, False):
                values[name] = float(cell)
            else:
                texts[name] = cell  # as written: " Nana" is not "Nana" (nor in Prometheus)
        return ProbeRecord(
            timestamp=self.timestamp,
            success=self.success,
            http_status=self.http_status,
            duration_seconds=self.duration_seconds,
            values=values,
            texts=texts,
        )


def _read_csv(path: Path, numeric: dict[str, bool], notes: list[str]) -> list[_Row]:
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            text = stream.read()
        complete = text.rfind("\n") + 1
        if complete < len(text):
            # The exporter writes whole lines; the tail after the last line end is a row being
            # written (a live log) or cut short (a crash): not a record yet.
            line = text.count("\n") + 1
            notes.append(
                f"{path}:{line}: skipped the last line, which has no line end "
                "(a row being written, or cut short)"
            )
            text = text[:complete]
        return _parse_rows(path, csv.reader(io.StringIO(text, newline="")), numeric)
    except OSError as error:
        raise ReportInputError(f"{path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ReportInputError(f"{path}: not UTF-8 text ({error.reason})") from None
    except csv.Error as error:
        raise ReportInputError(f"{path}: not CSV ({error})") from None


def _parse_rows(path: Path, reader: Iterable[list[str]], numeric: dict[str, bool]) -> list[_Row]:
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
    rows: list[_Row] = []
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
        others: list[tuple[str, str]] = []
        for i, name in extra:
            cell = cells[i]
            if not cell.strip():
                continue  # no value this run (a text of spaces only is no value either)
            numeric[name] = numeric.get(name, True) and _is_number(cell)
            others.append((name, cell))
        probe = cells[index[PROBE]].strip() if PROBE in index else ""
        rows.append(
            _Row(
                probe=probe or "-",
                timestamp=timestamp,
                success=success_text == "1",
                http_status=None if status is None else int(status),
                duration_seconds=_optional_number(cells, index.get(DURATION), DURATION, where),
                cells=tuple(others),
            )
        )
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
