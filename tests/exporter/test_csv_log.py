"""The CSV log (``--csv``): one row per probe result in the format ``lumenctl report`` reads,
appended safely (off the event loop, bounded, synced), rotated by size, repaired at start
(partial last line cut, other columns rotated away), errors counted while probing goes on,
and the queue written out at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import fcntl
import io
import json
import logging
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from lumen_alerting.exporter.config import (
    DEFAULT_CSV_BACKUPS,
    DEFAULT_CSV_MAX_BYTES,
    ExporterConfig,
    parse_settings,
)
from lumen_alerting.exporter.csv_log import (
    CsvAppendError,
    CsvFile,
    NotAProbeLogError,
    ProbeCsvLog,
    csv_columns,
    csv_line,
)
from lumen_alerting.exporter.metrics import ProbeResult
from lumen_alerting.policy.probe_metrics import RESERVED_METRICS
from tests.exporter.exporter_run import (
    ExporterProcess,
    refused_start,
    rendered_config,
)
from tests.exporter.series import samples
from tests.exporter.targets import Answer, ProbeTargets
from tests.support.polling import eventually

pytestmark = pytest.mark.timeout(180)

# The contracts' example: seed 001's gateway probe, with the persona counted by value.
GATEWAY_HEADER = (
    "timestamp,probe,success,http_status,duration_seconds,lumen_creative_band,lumen_entropy_rate,"
    "lumen_gateway_status,lumen_ion_confidence,lumen_ion_health,lumen_ion_mock_mode,"
    "lumen_ion_response_time_ms,lumen_phase_diff,lumen_risk_band,lumen_ion_persona,error"
)
GATEWAY_ROW = (
    "2026-12-02T04:01:09.123Z,ion-api,1,200,0.24322,0.42,0.24,1.0,0.87,1.0,0.0,243.22,0.4,0.12,"
    "Nana,"
)
ION_HEALTH = {
    "status": "ok",
    "mock": False,
    "confidence": 0.87,
    "persona": "Nana",
    "gateway": {"status": 1},
    "resonance": {"phase_diff": "0.40", "entropy_rate": 0.24, "creative_band": 0.42},
}
WRITE_ERRORS = ("lumen_exporter_csv_write_errors_total", ())
DROPPED = ("lumen_exporter_csv_rows_dropped_total", ())


def gateway_config(url: str = "http://ion-api:8080/health") -> ExporterConfig:
    document = rendered_config("gateway")
    document["probes"][0].update(url=url, count_values={"lumen_ion_persona": "$.persona"})
    return ExporterConfig.model_validate(document)


def seed_result(finished_at: float = 1796184069.123, **changes: Any) -> ProbeResult:
    fields = {
        "lumen_creative_band": 0.42,
        "lumen_entropy_rate": 0.24,
        "lumen_gateway_status": 1.0,
        "lumen_ion_confidence": 0.87,
        "lumen_ion_mock_mode": 0.0,
        "lumen_phase_diff": 0.4,
        "lumen_risk_band": 0.12,
    }
    values: dict[str, Any] = {
        "success": True,
        "duration_seconds": 0.24322,
        "finished_at": finished_at,
        "status": 200,
        "fields": fields,
        "counted": {"lumen_ion_persona": "Nana"},
    }
    return ProbeResult(**(values | changes))


def rows_of(*paths: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def stamp(second: int) -> str:
    """The timestamp column of ``seed_result(1796184000.0 + second)``."""
    return f"2026-12-02T04:00:{second:02d}.000Z"


def closed(log: ProbeCsvLog) -> None:
    asyncio.run(log.close())


def value(registry: CollectorRegistry, name: str) -> float:
    found = registry.get_sample_value(name)
    assert found is not None, name
    return found


# -- The format ---------------------------------------------------------------------------------


def test_the_header_and_a_row_are_the_contracts_example(tmp_path):
    path = tmp_path / "metrics.csv"
    log = ProbeCsvLog(path, gateway_config(), CollectorRegistry())
    log.start()
    log.add("ion-api", seed_result())
    closed(log)
    assert path.read_text(encoding="utf-8") == f"{GATEWAY_HEADER}\n{GATEWAY_ROW}\n"


def test_successful_and_failing_results_read_back_with_dict_reader(tmp_path):
    config = ExporterConfig.model_validate(
        {
            "probes": [
                {
                    "name": "ion-api",
                    "url": "http://ion-api/health",
                    "health_metric": "lumen_ion_health",
                    "fields": {"lumen_ion_confidence": "$.confidence"},
                    "count_values": {"lumen_ion_persona": "$.persona"},
                },
                {"name": "web", "url": "http://web/", "fields": {"web_load": "$.load"}},
            ]
        }
    )
    assert csv_columns(config) == [
        *("timestamp", "probe", "success", "http_status", "duration_seconds"),
        *("lumen_ion_confidence", "lumen_ion_health", "lumen_probe_response_time_ms"),
        *("lumen_probe_up", "web_load", "lumen_ion_persona", "error"),
    ]
    path = tmp_path / "metrics.csv"
    log = ProbeCsvLog(path, config, CollectorRegistry())
    log.start()
    answer = ProbeResult(
        True,
        0.5,
        1796184069.0,
        200,
        {"lumen_ion_confidence": 0.87},
        {"lumen_ion_persona": 'Na, "na"\nline two'},
    )
    refused = ProbeResult(False, 0.001, 1796184070.5, None, error="ClientConnectorError: refused")
    http_500 = ProbeResult(False, 0.25, 1796184071.25, 500, error="HTTP 500")
    log.add("ion-api", answer)
    log.add("web", refused)
    log.add("web", http_500)
    closed(log)
    first, second, third = rows_of(path)
    assert first == {
        "timestamp": "2026-12-02T04:01:09.000Z",
        "probe": "ion-api",
        "success": "1",
        "http_status": "200",
        "duration_seconds": "0.5",
        "lumen_ion_confidence": "0.87",
        "lumen_ion_health": "1.0",
        "lumen_probe_response_time_ms": "500.0",
        "lumen_probe_up": "",  # not this probe's metric
        "web_load": "",
        # Quoted by the csv module; the line break written as a space (one record, one line).
        "lumen_ion_persona": 'Na, "na" line two',
        "error": "",
    }
    assert second | {"timestamp": "", "duration_seconds": ""} == dict.fromkeys(first, "") | {
        "probe": "web",
        "success": "0",
        "lumen_probe_up": "0.0",
        "error": "ClientConnectorError: refused",
    }
    assert second["timestamp"] == "2026-12-02T04:01:10.500Z"
    assert float(second["duration_seconds"]) == 0.001
    # An answer, even a 500, has a status and a response time; no fields.
    assert (third["http_status"], third["lumen_probe_response_time_ms"]) == (
        "500",
        "250.0",
    )
    assert (third["success"], third["web_load"], third["error"]) == (
        "0",
        "",
        "HTTP 500",
    )
    assert len(path.read_text().splitlines()) == 4  # a header and one line per row


def test_a_metric_named_like_a_fixed_column_stops_the_start(tmp_path):
    probe = {"name": "a", "url": "http://127.0.0.1:9/", "fields": {"error": "$.error"}}
    line, _ = refused_start(
        json.dumps({"probes": [probe]}), tmp_path, "--csv", str(tmp_path / "metrics.csv")
    )
    assert line.startswith("lumen-exporter: error: --csv: ") and "'error'" in line, line


# -- The file: rotation, restarts, repairs ------------------------------------------------------

HEADER = ["timestamp", "probe", "success", "value", "error"]


def line(number: int) -> bytes:
    return csv_line([f"2026-12-02T04:00:{number:02d}.000Z", "api", "1", str(number), ""])


def numbers(path: Path) -> list[int]:
    return [int(row["value"]) for row in rows_of(path)]


def test_rotation_by_size_keeps_the_backups_each_with_a_header(tmp_path):
    path = tmp_path / "metrics.csv"
    header = csv_line(HEADER)
    max_bytes = len(header) + 4 * len(line(0))  # four rows a file
    csv_file = CsvFile(path, HEADER, max_bytes=max_bytes, backups=2)
    for number in range(30):  # one at a time, then in batches crossing a rotation
        csv_file.append([line(number)])
    csv_file.append([line(number) for number in range(30, 41)])
    csv_file.close()
    backups = [path.with_name(f"metrics.csv.{n}") for n in (2, 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "metrics.csv",
        "metrics.csv.1",
        "metrics.csv.2",
    ]
    for file in (*backups, path):
        content = file.read_bytes()
        assert content.startswith(header) and content.count(header) == 1, file
        assert len(content) <= max_bytes, file
    # The newest rows, in order, with nothing lost between the files: 41 rows, 4 a file.
    assert [n for file in (*backups, path) for n in numbers(file)] == list(range(32, 41))


def test_no_backups_means_the_full_file_starts_over(tmp_path):
    path = tmp_path / "metrics.csv"
    csv_file = CsvFile(path, HEADER, max_bytes=len(csv_line(HEADER)) + 2 * len(line(0)), backups=0)
    csv_file.append([line(n) for n in range(5)])
    csv_file.close()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]
    assert numbers(path) == [4]


def test_a_restart_appends_to_the_same_file_without_a_second_header(tmp_path):
    path = tmp_path / "metrics.csv"
    for start in (0, 3):
        csv_file = CsvFile(path, HEADER)
        csv_file.append([line(n) for n in range(start, start + 3)])
        csv_file.close()
    assert path.read_bytes().count(csv_line(HEADER)) == 1
    assert numbers(path) == [0, 1, 2, 3, 4, 5]
    assert not path.with_name("metrics.csv.1").exists()


def test_other_columns_are_rotated_away_before_the_first_row(tmp_path):
    path = tmp_path / "metrics.csv"
    old = CsvFile(path, ["timestamp", "probe", "success", "old", "error"])
    old.append([line(1)])
    old.close()
    before = path.read_bytes()
    csv_file = CsvFile(path, HEADER)
    csv_file.open()
    csv_file.append([line(2)])
    csv_file.close()
    assert path.with_name("metrics.csv.1").read_bytes() == before
    assert path.read_bytes() == csv_line(HEADER) + line(2)


def test_a_partial_last_line_is_cut_off(tmp_path, caplog):
    path = tmp_path / "metrics.csv"
    path.write_bytes(csv_line(HEADER) + line(1) + line(2)[:-9])  # a crash mid-write
    csv_file = CsvFile(path, HEADER)
    with caplog.at_level(logging.WARNING, "lumen.exporter.csv"):
        csv_file.append([line(3)])
    csv_file.close()
    assert path.read_bytes() == csv_line(HEADER) + line(1) + line(3)
    assert numbers(path) == [1, 3]
    assert "partial line" in caplog.text and not path.with_name("metrics.csv.1").exists()


def test_a_partial_header_is_cut_and_written_whole(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_bytes(csv_line(HEADER)[:7])
    csv_file = CsvFile(path, HEADER)
    csv_file.append([line(1)])
    csv_file.close()
    assert path.read_bytes() == csv_line(HEADER) + line(1)


@pytest.mark.parametrize("backups", [0, 3])
@pytest.mark.parametrize(
    "content",
    [
        b"name,size\nreport.pdf,12",  # a CSV of something else, its last line unended
        b"timestamp,value\n1,2\n",
        b"\x00\x01binary",
    ],
)
def test_a_file_that_is_no_probe_log_is_refused_and_left_alone(tmp_path, content, backups):
    path = tmp_path / "metrics.csv"
    path.write_bytes(content)
    csv_file = CsvFile(path, HEADER, backups=backups)
    with pytest.raises(NotAProbeLogError, match="is not a probe log"):
        csv_file.check()
    with pytest.raises(NotAProbeLogError, match="is not a probe log"):
        csv_file.open()
    with pytest.raises(CsvAppendError):
        csv_file.append([line(1)])
    assert not csv_file.is_open
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_a_file_that_is_no_probe_log_stops_the_start_untouched(tmp_path):
    probe = {"name": "a", "url": "http://127.0.0.1:9/"}
    path = tmp_path / "notes.csv"
    path.write_bytes(b"name,size\nreport.pdf,12")
    line, _ = refused_start(
        json.dumps({"probes": [probe]}), tmp_path, *("--csv", str(path), "--csv-backups", "0")
    )
    assert line.startswith("lumen-exporter: error: --csv: ") and "is not a probe log" in line
    assert path.read_bytes() == b"name,size\nreport.pdf,12"


def test_the_start_check_never_opens_a_fifo_to_read(tmp_path):
    """Opening a FIFO to read waits for a writer, maybe forever: the check at start leaves
    anything but a regular file to the writer, which writes it as a stream."""
    path = tmp_path / "metrics.fifo"
    os.mkfifo(path)
    checked = threading.Event()

    def check() -> None:
        CsvFile(path, HEADER).check()
        checked.set()

    threading.Thread(target=check, daemon=True).start()  # daemon: stuck in open() if it fails
    assert checked.wait(30), "the check waits for a writer of the FIFO"


@pytest.mark.parametrize("move", ["rename", "remove", "replace"])
def test_a_log_moved_or_removed_while_open_starts_again_with_its_header(tmp_path, move):
    """As logrotate (rename, then maybe a new empty file) or rm leave it: the next batch goes to
    a file at the path, starting with the header, not to the moved or deleted one."""
    path = tmp_path / "metrics.csv"
    csv_file = CsvFile(path, HEADER)
    csv_file.append([line(1)])
    moved = tmp_path / "metrics.csv-20261202"
    if move == "remove":
        path.unlink()
    else:
        path.rename(moved)
        if move == "replace":
            path.touch()  # logrotate's create
    csv_file.append([line(2), line(3)])
    csv_file.close()
    assert path.read_bytes() == csv_line(HEADER) + line(2) + line(3)
    if move != "remove":
        assert moved.read_bytes() == csv_line(HEADER) + line(1)


# -- Off the event loop: write errors, a disk that cannot keep up, shutdown -------------------


def test_write_errors_are_counted_logged_once_and_retried(tmp_path, caplog):
    """A full disk, honestly: the log's path is a symbolic link to /dev/full (every write fails
    with ENOSPC). Then the link points at a real file: the queued rows are written there."""
    path = tmp_path / "metrics.csv"
    path.symlink_to("/dev/full")
    registry = CollectorRegistry()
    config = gateway_config()
    log = ProbeCsvLog(path, config, registry, retry_seconds=0.05)
    with caplog.at_level(logging.INFO, "lumen.exporter.csv"):
        log.start()
        for number in range(5):
            log.add("ion-api", seed_result(1796184000.0 + number))
        eventually(lambda: value(registry, WRITE_ERRORS[0]) >= 3, 30, "retried writes")
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "No space left on device" in errors[0].getMessage()
        path.unlink()
        path.touch()  # the disk has room again
        eventually(lambda: len(rows_of(path)) == 5, 30, "the queued rows written")
        log.add("ion-api", seed_result(1796184005.0))
        closed(log)
    # Every row once, in order: the ones queued through the failures first.
    assert [row["timestamp"] for row in rows_of(path)] == [stamp(n) for n in range(6)]
    assert value(registry, DROPPED[0]) == 0
    assert "written again" in caplog.text


@contextlib.contextmanager
def full_fifo(path: Path) -> Iterator[int]:
    """A FIFO whose pipe is full: a writer blocks in write() until the test reads (a disk that
    cannot keep up, for as long as the test wants). Yields the test's own descriptor (read and
    write, non-blocking) to drain it with ``drain``."""
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096)  # the smallest pipe: quick to fill
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(fd, b"j" * 511 + b"\n")  # < PIPE_BUF: written whole or not at all
        yield fd
    finally:
        os.close(fd)


def drain(fd: int, into: bytearray) -> None:
    """Read what the pipe holds now into ``into``."""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            into.extend(chunk)


def written(read: bytearray) -> bytes:
    """The lines of ``read`` other than the filler."""
    return b"".join(line for line in io.BytesIO(bytes(read)).readlines() if b"jjj" not in line)


@contextlib.contextmanager
def draining(fd: int) -> Iterator[bytearray]:
    """Keep reading the pipe in a thread (a reader that keeps up) until the block ends."""
    read = bytearray()
    done = threading.Event()

    def keep_draining() -> None:
        while not done.is_set():
            drain(fd, read)
            done.wait(0.01)

    reader = threading.Thread(target=keep_draining)
    reader.start()
    try:
        yield read
    finally:
        done.set()
        reader.join()
        drain(fd, read)


def test_a_writer_that_cannot_keep_up_never_blocks_and_drops_past_the_bound(tmp_path, caplog):
    path = tmp_path / "metrics.fifo"
    registry = CollectorRegistry()
    log = ProbeCsvLog(path, gateway_config(), registry, max_queued=5)
    with full_fifo(path) as fd, caplog.at_level(logging.WARNING, "lumen.exporter.csv"):
        log.start()
        eventually(lambda: log.file.is_open, 30, "the writer blocked on the full pipe")
        started = time.perf_counter()
        for number in range(20):
            log.add("ion-api", seed_result(1796184000.0 + number))
        adding = time.perf_counter() - started
        assert value(registry, DROPPED[0]) == 15
        assert caplog.text.count("cannot keep up") == 1
        with draining(fd) as read:
            eventually(lambda: written(read).count(b"\n") == 6, 30, "the header and 5 rows")
            closed(log)
        text = written(read)
    assert adding < 1.0  # 20 appends to a deque while the writer is stuck (roomy bound)
    rows = list(csv.DictReader(io.StringIO(text.decode())))
    # The rows queued first are kept; the later ones were dropped.
    assert [row["timestamp"] for row in rows] == [stamp(n) for n in range(5)]


def test_shutdown_writes_what_is_queued(tmp_path):
    path = tmp_path / "metrics.fifo"
    log = ProbeCsvLog(path, gateway_config(), CollectorRegistry())
    with full_fifo(path) as fd:
        log.start()
        eventually(lambda: log.file.is_open, 30, "the writer blocked on the full pipe")
        for number in range(3):
            log.add("ion-api", seed_result(1796184000.0 + number))
        with draining(fd) as read:
            closed(log)  # the rows are still queued behind the blocked header write
        text = written(read)
    assert text.count(b"\n") == 4, text
    assert not log._thread.is_alive()


# -- The real exporter ---------------------------------------------------------------------------


def exporter_config(targets: ProbeTargets, interval: str = "200ms") -> dict[str, Any]:
    return {
        "probes": [
            {
                "name": "ion-api",
                "url": f"{targets.url}/health",
                "interval": interval,
                "health_metric": "lumen_ion_health",
                "fields": {
                    "lumen_ion_confidence": "$.confidence",
                    "lumen_phase_diff": "$.resonance.phase_diff",
                },
                "count_values": {"lumen_ion_persona": "$.persona"},
            },
            {"name": "broken", "url": f"{targets.url}/broken", "interval": interval},
        ],
        "pipeline": {"enabled": False},
    }


def rows_of_each(path: Path, count: int) -> bool:
    found = rows_by_probe(path) if path.exists() else {}
    return len(found) == 2 and all(len(rows) >= count for rows in found.values())


def rows_by_probe(path: Path) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for row in rows_of(path):
        found.setdefault(row["probe"], []).append(row)
    return found


def test_the_exporter_logs_each_result_and_appends_after_a_restart(tmp_path):
    path = tmp_path / "metrics.csv"
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer.json(ION_HEALTH)
        targets.answers["/broken"] = Answer.json({"error": "boom"}, status=500)
        exporter = ExporterProcess(exporter_config(targets), "--csv", str(path))
        with exporter:
            eventually(lambda: rows_of_each(path, 2), 60, "two rows of each probe")
            runs = samples(exporter.metrics())
            assert exporter.stop() == 0
        first_run = len(rows_of(path))
        # Every run counted before the stop is in the file (the queue is written at shutdown).
        counted = sum(v for (n, _), v in runs.items() if n == "lumen_probe_runs_total")
        assert first_run >= counted
        with exporter:  # the same --csv, a new process: appended, no second header
            eventually(lambda: len(rows_of(path)) >= first_run + 2, 60, "rows after a restart")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].split(",") == csv_columns(
        ExporterConfig.model_validate(exporter_config(targets))
    )
    assert sum(1 for text in lines if text.startswith("timestamp,")) == 1
    by_probe = rows_by_probe(path)
    for row in by_probe["ion-api"]:
        assert (row["success"], row["http_status"], row["error"]) == ("1", "200", "")
        assert (row["lumen_ion_health"], row["lumen_ion_confidence"]) == ("1.0", "0.87")
        assert row["lumen_phase_diff"] == "0.4" and float(row["lumen_probe_response_time_ms"]) > 0
        assert row["lumen_probe_up"] == ""
        assert row["lumen_ion_persona"] == "Nana"  # the counted value, as read
    for row in by_probe["broken"]:
        assert (row["success"], row["http_status"], row["error"]) == (
            "0",
            "500",
            "HTTP 500",
        )
        assert (row["lumen_probe_up"], row["lumen_ion_health"]) == ("0.0", "")
        assert row["lumen_ion_persona"] == ""  # a failed run read nothing
    stamps = [row["timestamp"] for row in rows_of(path)]
    assert all(stamp.endswith("Z") and len(stamp) == 24 for stamp in stamps)


def test_the_exporter_rotates_its_log_by_size(tmp_path):
    path = tmp_path / "metrics.csv"
    oldest = path.with_name("metrics.csv.2")
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer.json(ION_HEALTH)
        targets.answers["/broken"] = Answer(status=500)
        flags = ("--csv", str(path), "--csv-max-bytes", "1KiB", "--csv-backups", "2")
        with ExporterProcess(exporter_config(targets, "100ms"), *flags):
            eventually(oldest.exists, 60, "two rotations")
            first = rows_of(oldest)[0]["timestamp"]
            # Rotating on: the oldest file is dropped, never a third backup.
            eventually(lambda: rows_of(oldest)[0]["timestamp"] > first, 60, "a third rotation")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "metrics.csv",
        "metrics.csv.1",
        "metrics.csv.2",
    ]
    header = path.read_text().splitlines()[0]
    for file in (oldest, path.with_name("metrics.csv.1"), path):
        text = file.read_text()
        assert text.splitlines()[0] == header and text.count("timestamp,") == 1
        assert len(text.encode()) <= 1024
    # Contiguous: the three files in order hold the newest rows without a gap or a repeat.
    stamps = [row["timestamp"] for row in rows_of(oldest, path.with_name("metrics.csv.1"), path)]
    assert stamps == sorted(stamps)


def test_a_full_disk_is_counted_and_probing_goes_on(tmp_path):
    path = tmp_path / "metrics.csv"
    path.symlink_to("/dev/full")
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer.json(ION_HEALTH)
        targets.answers["/broken"] = Answer(status=500)
        with ExporterProcess(exporter_config(targets), "--csv", str(path)) as exporter:
            runs = (
                "lumen_probe_runs_total",
                (("probe", "ion-api"), ("result", "success")),
            )
            found = eventually(
                lambda: (
                    (s := samples(exporter.metrics()))[WRITE_ERRORS] >= 2 and s[runs] >= 5 and s
                ),
                60,
                "write errors while probing",
            )
            assert found[DROPPED] == 0
            assert exporter.stop() == 0
    log = exporter.log.read_text()
    assert log.count("cannot be written") == 1, log


def test_a_stuck_disk_delays_neither_scrapes_nor_probes(tmp_path):
    """The log's FIFO is full and nobody reads it: the writer thread is stuck in write(), as on
    a hung disk. Scrapes stay fast and runs go on; once a reader comes, the rows arrive."""
    path = tmp_path / "metrics.fifo"
    with ProbeTargets() as targets, full_fifo(path) as fd:
        targets.answers["/health"] = Answer.json(ION_HEALTH)
        targets.answers["/broken"] = Answer(status=500)
        with ExporterProcess(exporter_config(targets, "100ms"), "--csv", str(path)) as exporter:
            runs = (
                "lumen_probe_runs_total",
                (("probe", "ion-api"), ("result", "success")),
            )
            eventually(lambda: samples(exporter.metrics())[runs] >= 10, 60, "ten runs, stuck")
            latencies = []
            with httpx.Client(timeout=30) as client:
                for _ in range(20):
                    started = time.perf_counter()
                    assert client.get(f"{exporter.url}/metrics").status_code == 200
                    latencies.append(time.perf_counter() - started)
            # Unstuck: the queued rows arrive (a reader drains the pipe as the writer goes).
            with draining(fd) as read:
                eventually(lambda: written(read).count(b"\n") >= 11, 60, "the rows unstuck")
                assert exporter.stop() == 0
    assert statistics.median(latencies) < 0.5 and max(latencies) < 5, latencies


# -- Flags --------------------------------------------------------------------------------------


def settings_flags(tmp_path: Path, *more: str) -> list[str]:
    (tmp_path / "config.json").write_text('{"probes": []}')
    return [
        "--config",
        str(tmp_path / "config.json"),
        "--state-dir",
        str(tmp_path / "s"),
        *more,
    ]


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit:
        parse_settings(argv, {})
    assert exit.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_csv_flags_and_their_environment_forms(tmp_path):
    defaults = parse_settings(settings_flags(tmp_path), {})
    assert defaults.csv_path is None
    assert (defaults.csv_max_bytes, defaults.csv_backups) == (DEFAULT_CSV_MAX_BYTES, 3)
    assert (DEFAULT_CSV_MAX_BYTES, DEFAULT_CSV_BACKUPS) == (10 * 1024 * 1024, 3)
    environ = {
        "LUMEN_EXPORTER_CSV": str(tmp_path / "metrics.csv"),
        "LUMEN_EXPORTER_CSV_MAX_BYTES": "512KiB",
        "LUMEN_EXPORTER_CSV_BACKUPS": "0",
    }
    settings = parse_settings(settings_flags(tmp_path), environ)
    assert (settings.csv_path, settings.csv_max_bytes, settings.csv_backups) == (
        tmp_path / "metrics.csv",
        512 * 1024,
        0,
    )
    flags = settings_flags(tmp_path, "--csv-max-bytes", "2048", "--csv-backups", "7")
    settings = parse_settings(flags, environ)
    assert (settings.csv_max_bytes, settings.csv_backups) == (2048, 7)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (
            ("--csv", "{tmp}/absent/metrics.csv"),
            "--csv: the directory {tmp}/absent does not exist",
        ),
        (("--csv", "{tmp}"), "--csv: {tmp} is a directory"),
        (
            ("--csv", "{tmp}/config.json/metrics.csv"),
            "--csv: the directory {tmp}/config.json",
        ),
        (("--csv-max-bytes", "10MB"), "--csv-max-bytes: '10MB' is not a size"),
        (("--csv-max-bytes", "1023"), "--csv-max-bytes: must be between 1KiB and 1TiB"),
        (("--csv-backups", "-1"), "--csv-backups: must be between 0 and 1000"),
    ],
)
def test_bad_csv_flags_stop_the_start_with_one_line(tmp_path, capsys, flags, named):
    argv = settings_flags(tmp_path, *(flag.format(tmp=tmp_path) for flag in flags))
    line = refused(argv, capsys)
    assert line.startswith("lumen-exporter: error: " + named.format(tmp=tmp_path)), line


def test_the_csv_counters_are_reserved():
    for family in (
        "lumen_exporter_csv_write_errors",
        "lumen_exporter_csv_rows_dropped",
    ):
        assert {family, f"{family}_total", f"{family}_created"} <= RESERVED_METRICS
