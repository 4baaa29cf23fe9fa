"""The CSV log of probe results (``--csv FILE``): seed 001's collector file, one row per result.

The format is what ``lumenctl report --input`` reads: UTF-8, RFC 4180 with ``\\n`` line ends, a
header line, then ``timestamp,probe,success,http_status,duration_seconds``, the gauge columns
(every probe's health, response time and field metrics, sorted), the counted columns (every
probe's ``count_values`` names, sorted) and ``error``. One record is one line: line breaks in a
text value are written as spaces, so a partial line is a partial record and ``wc -l`` counts rows.

Two parts:

- ``CsvFile``: the file and its backups, synchronous. At open, a file that is not a probe log
  (its first line does not start ``timestamp,probe,success,``) is refused and left as it is; in
  a probe log, a partial last line (a crash mid write) is cut off, and one whose header is not
  the current one is rotated away, so a config change never mixes columns. Before each batch,
  a file removed or moved away while open (``logrotate``, ``rm``) is noticed, as
  ``logging.handlers.WatchedFileHandler`` does, and a new one started with the header. Rows are
  appended with one ``write`` per batch (per file, when the batch crosses a rotation) on a
  descriptor opened with ``O_APPEND``, then ``fsync``-ed. When the next rows would take the file
  past ``max_bytes`` it is rotated: ``FILE`` -> ``FILE.1`` -> ... -> ``FILE.<backups>``, the
  oldest dropped, and a new ``FILE`` starts with the header.
- ``ProbeCsvLog``: the scheduler's ``on_result`` listener. It only appends to a bounded queue (the
  event loop never touches the disk); a writer thread drains it in batches. A full queue drops
  rows (counted, logged once); a failed write is logged once, counted, and retried on later
  batches; ``close()`` writes what is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import io
import logging
import os
import stat
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from ..atomic_files import sync_directory
from ..probe_log_format import FIXED_LEADING, FIXED_TRAILING, rfc3339_millis
from .config import ExporterConfig, ProbeConfig
from .metrics import ProbeResult

log = logging.getLogger("lumen.exporter.csv")

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3
# Rows waiting for the writer at most: ~100 bytes each, so a few MB at worst. Past it, rows are
# dropped (and counted) rather than growing memory without limit while the disk cannot keep up.
DEFAULT_MAX_QUEUED = 10_000
# After a failed write, the writer waits this long before trying again (a full disk would
# otherwise be retried, and counted, for every single row).
DEFAULT_RETRY_SECONDS = 1.0
# close() waits this long for the writer (a disk that hangs must not hang the shutdown).
CLOSE_TIMEOUT_SECONDS = 10.0
_SCAN_BLOCK = 64 * 1024


class CsvColumnError(ValueError):
    """The config cannot be logged as CSV: a metric has the name of a fixed column."""


def csv_columns(config: ExporterConfig) -> list[str]:
    """The header: fixed columns, the gauge columns and the counted columns (each sorted)."""
    gauges = sorted({name for probe in config.probes for name in _gauge_names(probe)})
    counted = sorted({name for probe in config.probes for name in probe.count_values})
    fixed = {*FIXED_LEADING, *FIXED_TRAILING}
    if clash := sorted(fixed.intersection([*gauges, *counted])):
        raise CsvColumnError(
            f"the metric {clash[0]!r} has the name of a fixed CSV column; rename it to log CSV"
        )
    # A name that is a gauge of one probe and a counter of another gets one column (no
    # duplicate header, which csv.DictReader would silently collapse).
    counted = [name for name in counted if name not in gauges]
    return [*FIXED_LEADING, *gauges, *counted, *FIXED_TRAILING]


def _gauge_names(probe: ProbeConfig) -> Iterable[str]:
    yield probe.health_metric
    yield probe.response_time_metric
    yield from probe.fields


def csv_row(probe: ProbeConfig, result: ProbeResult) -> dict[str, str]:
    """One result as column -> text; columns it has no value for are left out (empty)."""
    row = {
        "timestamp": rfc3339_millis(result.finished_at),
        "probe": probe.name,
        "success": "1" if result.success else "0",
        "http_status": "" if result.status is None else str(result.status),
        "duration_seconds": repr(float(result.duration_seconds)),
        # The same values /metrics shows (metrics._policy_values): health 1/0, the response
        # time in ms only when there was an answer, the fields that were read.
        probe.health_metric: "1.0" if result.success else "0.0",
    }
    if result.status is not None:
        row[probe.response_time_metric] = repr(result.duration_seconds * 1000.0)
    for name, value in result.fields.items():
        row[name] = repr(float(value))
    for name, text in result.counted.items():
        row[name] = _one_line(text)
    row["error"] = "" if result.success else _one_line(result.error or "failed")
    return row


def _one_line(text: str) -> str:
    # One record per line (see the module docstring): CR and LF become spaces.
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def csv_line(values: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode("utf-8")


class NotAProbeLogError(OSError):
    """The file at the log's path is not a probe log: refused, and left as it is."""


# A probe log's first line starts so, whatever its other columns: a file that does not is some
# other file (a typo in --csv), never cut, rotated or deleted.
PROBE_LOG_START = ",".join(FIXED_LEADING[:3]).encode() + b","


class CsvAppendError(OSError):
    """Appending failed after ``written`` of the lines were written (and synced)."""

    def __init__(self, error: OSError, written: int) -> None:
        super().__init__(error.errno, error.strerror, error.filename)
        self.written = written


class CsvFile:
    """``path`` and its numbered backups, with ``header`` as every file's first line.

    Not thread-safe: one writer. A file that is not a regular file (``/dev/stdout``, a FIFO) is
    written to as a stream: the header at each open, no cut, no rotation, no fsync."""

    def __init__(
        self,
        path: Path,
        header: Sequence[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        self.path = path
        self.header_line = csv_line(header)
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: int | None = None
        self._regular = True
        self._size = 0  # bytes in the current file, all of them complete lines

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def check(self) -> None:
        """``NotAProbeLogError`` if ``path`` holds something other than a probe log (checked at
        start, so a wrong ``--csv`` stops it with one line rather than failing every write)."""
        try:
            # Only a regular file is read: opening a FIFO to read would wait for a writer.
            if not stat.S_ISREG(os.stat(self.path).st_mode):
                return
            with self.path.open("rb") as file:
                head = file.read(len(self.header_line))
        except FileNotFoundError:
            return
        if not self._ours(head):
            raise self._not_a_probe_log()

    def open(self) -> None:
        """Open ``path`` for appending: refuse a file that is not a probe log (untouched), cut a
        partial last line, rotate away a log with another header, start an empty file with the
        header. OSError if that fails (nothing open)."""
        if self._fd is not None:
            return
        fd = self._open_fd()
        try:
            info = os.fstat(fd)
            self._regular = stat.S_ISREG(info.st_mode)
            if not self._regular:
                self._fd = fd
                self._write_all(self.header_line)
                return
            # The first line decides before anything is cut: only a probe log is changed.
            head = os.pread(fd, len(self.header_line), 0)
            if not self._ours(head):
                raise self._not_a_probe_log()
            # (A header cut short by a crash has no line break: cut whole, written again below.)
            size = _cut_partial_line(fd, info.st_size, self.path)
            if size > 0 and head != self.header_line:
                os.close(fd)
                fd = -1
                log.info(
                    "CSV log %s has other columns than this configuration: rotated away.",
                    self.path,
                )
                self._shift_backups()
                fd = self._open_fd()
                size = 0
            self._fd = fd
            self._size = size
            if size == 0:
                self._write_all(self.header_line)
                os.fsync(fd)
                self._size = len(self.header_line)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            self._fd = None
            raise

    def append(self, lines: Sequence[bytes]) -> None:
        """Append complete lines (opening the file first if needed, again if it was removed or
        moved away), rotating by size; each file's share written with one write and synced. On
        a failure, CsvAppendError says how many lines were written; what was half-written is
        cut off where possible and the file is closed, so the next call opens it again (and
        cuts what could not be)."""
        written = 0
        try:
            self._reopen_if_moved()
            self.open()
            chunk: list[bytes] = []
            size = self._size
            for line in lines:
                has_rows = size > len(self.header_line)
                if self._regular and has_rows and size + len(line) > self.max_bytes:
                    self._write_chunk(chunk)
                    written += len(chunk)
                    chunk = []
                    self._rotate()
                    size = self._size
                chunk.append(line)
                size += len(line)
            self._write_chunk(chunk)
            written += len(chunk)
        except OSError as error:
            self._abandon()
            raise CsvAppendError(error, written) from error

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _ours(self, head: bytes) -> bool:
        """Whether a file starting with ``head`` is a probe log (empty, or a header cut short
        by a crash, included)."""
        return head.startswith(PROBE_LOG_START) or self.header_line.startswith(head)

    def _not_a_probe_log(self) -> NotAProbeLogError:
        start = PROBE_LOG_START.decode()
        return NotAProbeLogError(
            errno.EEXIST,
            f"{self.path} is not a probe log (its first line does not start with {start}); "
            "give another file or move it away",
            str(self.path),
        )

    def _reopen_if_moved(self) -> None:
        """Close the file when ``path`` no longer names it (removed, or renamed by logrotate and
        maybe replaced): the next ``open`` starts the file at ``path`` again."""
        if self._fd is None or not self._regular:
            return
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            named = None
        held = os.fstat(self._fd)
        if named is None or (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino):
            log.info("CSV log %s was removed or moved away: starting it again.", self.path)
            self.close()

    def _open_fd(self) -> int:
        # O_RDWR: the header and the last line are read back at open. O_APPEND: every write
        # lands at the end, even with another process appending to the same file.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        return os.open(self.path, flags, 0o644)

    def _write_chunk(self, chunk: list[bytes]) -> None:
        if not chunk:
            return
        data = b"".join(chunk)
        self._write_all(data)
        if self._regular:
            # Synced per batch: a batch is at most one probe interval's results, and a row the
            # log says it wrote should survive a node crash (the report reads history).
            assert self._fd is not None
            os.fsync(self._fd)
        self._size += len(data)

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            done = os.write(self._fd, view)
            if done == 0:  # a regular file never does this; be safe rather than loop
                raise OSError(errno.EIO, "write wrote nothing", str(self.path))
            view = view[done:]

    def _rotate(self) -> None:
        self.close()
        self._shift_backups()
        self.open()

    def _shift_backups(self) -> None:
        """FILE -> FILE.1 -> ... -> FILE.<backups>, the oldest overwritten (dropped)."""
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for number in range(self.backups - 1, 0, -1):
                older = self._backup(number)
                if older.exists():
                    os.replace(older, self._backup(number + 1))
            if self.path.exists():  # it may have been removed while open
                os.replace(self.path, self._backup(1))
        sync_directory(self.path.parent)  # the rotation's renames survive a crash

    def _backup(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def _abandon(self) -> None:
        """After a failed write: cut back to the last complete batch (a full disk may have taken
        half of one), then close, so the next append starts from a clean open."""
        if self._fd is None:
            return
        if self._regular:
            with contextlib.suppress(OSError):  # the next open cuts a partial last line anyway
                os.ftruncate(self._fd, self._size)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None


def _cut_partial_line(fd: int, size: int, path: Path) -> int:
    """Truncate the file after its last line break; its new size."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - _SCAN_BLOCK)
        block = os.pread(fd, end - start, start)
        if (newline := block.rfind(b"\n")) >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    os.ftruncate(fd, keep)
    log.warning(
        "CSV log %s ended in a partial line (an interrupted write): cut %d bytes.",
        path,
        size - keep,
    )
    return keep


class ProbeCsvLog:
    """The CSV log of probe results: ``add`` (the scheduler's ``on_result``) queues, a writer
    thread appends to a ``CsvFile``. Its counters go to ``registry``."""

    def __init__(
        self,
        path: Path,
        config: ExporterConfig,
        registry: CollectorRegistry,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        max_queued: int = DEFAULT_MAX_QUEUED,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.columns = csv_columns(config)
        self.file = CsvFile(path, self.columns, max_bytes=max_bytes, backups=backups)
        self._probes = {probe.name: probe for probe in config.probes}
        self._max_queued = max_queued
        self._retry_seconds = retry_seconds
        self._queue: deque[tuple[str, ProbeResult]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._write_forever, name="csv-log", daemon=True)
        self._dropping = False  # to log the start of a run of drops once
        self._failing = False  # to log the start of a run of write errors once
        self.write_errors = Counter(
            "lumen_exporter_csv_write_errors",
            "Batches of CSV log rows that could not be written (they are retried).",
            registry=registry,
        )
        self.rows_dropped = Counter(
            "lumen_exporter_csv_rows_dropped",
            "CSV log rows dropped because the writer could not keep up (the queue was full).",
            registry=registry,
        )

    def start(self) -> None:
        """Start the writer; it opens the file (and reports a failure like a write error)."""
        self._thread.start()
        self._wake.set()  # open the file now, not at the first row

    def add(self, probe: str, result: ProbeResult) -> None:
        """Queue one result (in the event loop: never blocks, never touches the disk)."""
        with self._lock:
            if len(self._queue) >= self._max_queued:
                dropped = True
            else:
                dropped = False
                self._queue.append((probe, result))
        if dropped:
            self._drop(1)
        else:
            self._wake.set()

    async def close(self) -> None:
        """Write what is queued and stop the writer (waiting at most CLOSE_TIMEOUT_SECONDS)."""
        self._closing.set()
        self._wake.set()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, CLOSE_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            log.error(
                "CSV log %s: the writer did not finish within %g s; %d rows not written.",
                self.file.path,
                CLOSE_TIMEOUT_SECONDS,
                len(self._queue),
            )

    def _drop(self, count: int) -> None:
        self.rows_dropped.inc(count)
        if not self._dropping:
            self._dropping = True
            log.warning(
                "CSV log %s: the writer cannot keep up; dropping rows (counted in "
                "lumen_exporter_csv_rows_dropped_total).",
                self.file.path,
            )

    def _write_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            closing = self._closing.is_set()
            with self._lock:
                batch = list(self._queue)
                self._queue.clear()
            try:
                written = self._write(batch)
            except Exception:  # a bug must not end the thread (the queue would only fill)
                log.exception(
                    "CSV log %s: %d rows could not be formatted.", self.file.path, len(batch)
                )
                self.rows_dropped.inc(len(batch))
                written = True
            if closing:
                if not written:
                    log.error(
                        "CSV log %s: %d rows could not be written before stopping.",
                        self.file.path,
                        len(self._queue),
                    )
                break
            if not written and batch:
                # Wait before retrying (close() ends the wait early), then retry what is queued
                # even if no new row comes.
                self._closing.wait(self._retry_seconds)
                self._wake.set()
        self.file.close()

    def _write(self, batch: list[tuple[str, ProbeResult]]) -> bool:
        """Append ``batch``; False (the unwritten rows queued again in front) if that failed."""
        lines = [self._line(probe, result) for probe, result in batch]
        try:
            if lines:
                self.file.append(lines)
            else:
                self.file.open()
        except OSError as error:
            written = error.written if isinstance(error, CsvAppendError) else 0
            self._requeue(batch[written:])
            self.write_errors.inc()
            if not self._failing:
                self._failing = True
                log.error(
                    "CSV log %s cannot be written: %s; rows are kept (up to %d) and retried.",
                    self.file.path,
                    error.strerror or error,
                    self._max_queued,
                )
            return False
        if self._failing:
            self._failing = False
            log.info("CSV log %s is written again.", self.file.path)
        if self._dropping and lines:
            self._dropping = False
        return True

    def _requeue(self, unwritten: list[tuple[str, ProbeResult]]) -> None:
        with self._lock:
            self._queue.extendleft(reversed(unwritten))
            # Keep the oldest rows: the log stays contiguous up to where it had to give up.
            excess = len(self._queue) - self._max_queued
            for _ in range(max(0, excess)):
                self._queue.pop()
        if excess > 0:
            self._drop(excess)

    def _line(self, probe: str, result: ProbeResult) -> bytes:
        row = csv_row(self._probes[probe], result)
        return csv_line([row.get(column, "") for column in self.columns])
