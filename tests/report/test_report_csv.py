"""``lumenctl report --input``: a generated 10,000-row CSV log of two probes, every figure of the
JSON report checked against the same figures computed with ``statistics`` (tests/report/
expected.py); rotated files, ``--probe``, ``--z-threshold``."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from lumen_alerting.cli.lumenctl import main as lumenctl
from lumen_alerting.report.records import read_csv_files
from tests.report.expected import assert_probe_report, expected_probe
from tests.report.generated import COLUMNS, Generated, csv_rows, gateway_runs, write_csv

pytestmark = pytest.mark.timeout(300)


class Log:
    def __init__(self, directory: Path) -> None:
        self.ion: Generated = gateway_runs(9_500, seed=11)
        self.edge: Generated = gateway_runs(500, seed=12, probe="edge-api", interval=280.0)
        self.runs = sorted(self.ion.runs + self.edge.runs, key=lambda run: run.timestamp)
        self.path = directory / "metrics.csv"
        write_csv(self.path, self.runs)

    def rows(self, probe: str) -> list[dict[str, str]]:
        """The probe's rows as csv.DictReader reads the file: the test's own view of it."""
        with self.path.open(encoding="utf-8", newline="") as stream:
            return [row for row in csv.DictReader(stream) if row["probe"] == probe]


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Log:
    return Log(tmp_path_factory.mktemp("report-csv"))


def report(*args: str) -> dict[str, Any]:
    output = Path(args[args.index("--output") + 1])
    assert lumenctl(["report", *args]) == 0
    return json.loads(output.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def full_report(log, tmp_path_factory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("report-json") / "report.json"
    started = time.perf_counter()
    document = report("--input", str(log.path), "--output", str(output))
    print(f"report of {len(log.runs)} rows as JSON: {time.perf_counter() - started:.2f} s")
    return document


def test_the_generated_log_has_what_the_report_must_find(log):
    with log.path.open(encoding="utf-8") as stream:
        assert sum(1 for _ in stream) == 10_001  # the header and 10,000 rows
    rows = log.rows("ion-api")
    assert len(log.ion.downtime_runs) >= 10
    assert log.ion.spikes >= 10
    assert any(row["lumen_ion_mock_mode"] == "1.0" for row in rows)
    assert any(row["lumen_phase_diff"] == "" and row["success"] == "1" for row in rows)
    assert len({row["lumen_ion_persona"] for row in rows}) == 5  # four personas and empty


def test_every_figure_of_the_10000_row_log_matches_statistics(log, full_report):
    assert full_report["z_threshold"] == 2.0
    assert full_report["stdev"] == "sample"
    assert list(full_report["probes"]) == ["edge-api", "ion-api"]
    for probe in ("ion-api", "edge-api"):
        assert_probe_report(full_report["probes"][probe], expected_probe(log.rows(probe)))
    # Ground truth from the generator, not from the file: one period per injected run of failures.
    ion = full_report["probes"]["ion-api"]
    assert [d["records"] for d in ion["health"]["downtime"]] == [
        length for _, length in log.ion.downtime_runs
    ]
    assert ion["summary"]["records"] == 9_500


def test_the_standard_deviation_is_the_sample_one(log, full_report):
    values = [
        float(row["lumen_ion_confidence"])
        for row in log.rows("edge-api")
        if row["lumen_ion_confidence"]
    ]
    got = full_report["probes"]["edge-api"]["statistics"]["lumen_ion_confidence"]["stdev"]
    assert got == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert got != pytest.approx(statistics.pstdev(values), rel=1e-6)


def test_injected_response_time_spikes_are_anomalies(log, full_report):
    anomalies = full_report["probes"]["ion-api"]["anomalies"]
    slow = {
        a["timestamp"]
        for a in anomalies
        if a["field"] == "lumen_ion_response_time_ms" and a["z_score"] > 0
    }
    # A spike is four times the usual ~243 ms; nothing else comes near 600 ms.
    response_times = [
        (row["timestamp"], row["lumen_ion_response_time_ms"]) for row in log.rows("ion-api")
    ]
    spikes = {timestamp for timestamp, ms in response_times if ms and float(ms) > 600}
    assert len(spikes) == log.ion.spikes
    assert spikes <= slow


def test_rotated_files_in_any_order_give_the_same_report(log, full_report, tmp_path):
    with log.path.open(encoding="utf-8", newline="") as stream:
        lines = stream.read().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    # metrics.csv.2 is the oldest; each file starts with the header, as the exporter writes it.
    parts = {
        "metrics.csv.2": rows[:3000],
        "metrics.csv.1": rows[3000:7000],
        "metrics.csv": rows[7000:],
    }
    for name, part in parts.items():
        (tmp_path / name).write_text(header + "".join(part), encoding="utf-8")
    inputs = [str(tmp_path / name) for name in ("metrics.csv", "metrics.csv.2", "metrics.csv.1")]
    rotated = report(
        *(a for path in inputs for a in ("--input", path)),
        "--output",
        str(tmp_path / "r.json"),
    )
    assert rotated["sources"] == inputs
    assert rotated["probes"] == full_report["probes"]


def test_probe_picks_one_probe(log, full_report, tmp_path):
    one = report(
        "--input",
        str(log.path),
        "--probe",
        "edge-api",
        "--output",
        str(tmp_path / "e.json"),
    )
    assert list(one["probes"]) == ["edge-api"]
    assert one["probes"]["edge-api"] == full_report["probes"]["edge-api"]


def test_z_threshold_changes_the_anomalies(log, tmp_path):
    three = report(
        "--input",
        str(log.path),
        "--z-threshold",
        "3",
        "--probe",
        "ion-api",
        "--output",
        str(tmp_path / "z.json"),
    )
    assert three["z_threshold"] == 3.0
    expected = expected_probe(log.rows("ion-api"), z_threshold=3.0)
    assert {
        (a["field"], a["timestamp"], a["value"]) for a in three["probes"]["ion-api"]["anomalies"]
    } == (expected["anomalies"])
    assert 0 < len(expected["anomalies"]) < len(expected_probe(log.rows("ion-api"))["anomalies"])


def test_other_persona_and_mock_fields(tmp_path):
    runs = gateway_runs(300, seed=5).runs
    rows = csv_rows(runs)
    header = [
        {"lumen_ion_persona": "mood", "lumen_ion_mock_mode": "lumen_fake"}.get(c, c)
        for c in COLUMNS
    ]
    path = tmp_path / "renamed.csv"
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    renamed = report(
        "--input",
        str(path),
        "--persona-field",
        "mood",
        "--mock-field",
        "lumen_fake",
        "--output",
        str(tmp_path / "m.json"),
    )["probes"]["ion-api"]
    defaults = report("--input", str(path), "--output", str(tmp_path / "d.json"))["probes"][
        "ion-api"
    ]
    assert renamed["personas"]["field"] == "mood"
    assert sum(v["count"] for v in renamed["personas"]["values"]) == sum(
        1 for run in runs if run.persona
    )
    assert renamed["health"]["mock_known"] == sum(1 for run in runs if run.success)
    # Under the default names the persona column is gone and there is no mock field.
    assert defaults["personas"]["values"] == []
    assert defaults["health"]["mock_mode_percent"] is None
    assert "mood" not in defaults["statistics"]  # a text column, never a statistic


def test_a_seed_like_log_of_146_healthy_runs(tmp_path):
    """Seed 001's baseline: 146 records, 100% uptime, no mock mode, one persona."""
    runs = [run for run in gateway_runs(400, seed=3).runs if run.success][:146]
    runs = [
        type(run)(
            run.timestamp,
            run.probe,
            True,
            200,
            run.duration_seconds,
            {**run.gauges, "lumen_ion_mock_mode": 0.0},
            "Nana",
        )
        for run in runs
    ]
    write_csv(tmp_path / "seed.csv", runs)
    probe = report("--input", str(tmp_path / "seed.csv"), "--output", str(tmp_path / "s.json"))
    ion = probe["probes"]["ion-api"]
    assert ion["summary"]["records"] == 146
    assert ion["health"]["uptime_percent"] == 100.0
    assert ion["health"]["mock_mode_percent"] == 0.0
    assert ion["health"]["downtime"] == []
    assert ion["personas"]["values"] == [{"value": "Nana", "count": 146, "percent": 100.0}]


def test_shuffled_rows_are_put_in_time_order(tmp_path):
    runs = gateway_runs(400, seed=4).runs
    shuffled = runs[:]
    random.Random(0).shuffle(shuffled)
    write_csv(tmp_path / "ordered.csv", runs)
    write_csv(tmp_path / "shuffled.csv", shuffled)
    a = report("--input", str(tmp_path / "ordered.csv"), "--output", str(tmp_path / "a.json"))
    b = report("--input", str(tmp_path / "shuffled.csv"), "--output", str(tmp_path / "b.json"))
    assert a["probes"] == b["probes"]


def with_column(path: Path, name: str, cells: list[str]) -> None:
    """Add a column ``name`` before ``error``, its cells from the second line on."""
    with path.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream))
    for row, cell in zip(rows, [name, *cells], strict=True):
        row.insert(len(row) - 1, cell)
    with path.open("w", encoding="utf-8", newline="") as stream:
        csv.writer(stream, lineterminator="\n").writerows(rows)


def test_a_column_is_a_gauge_only_when_every_cell_is_a_finite_number(tmp_path):
    """A counted value may look like a number in its first rows ('1', then 'eu'): the column is
    text, decided over every cell of every file; a gauge column stays numeric."""
    runs = gateway_runs(40, seed=6, empty_cells=False).runs
    first, second = tmp_path / "metrics.csv.1", tmp_path / "metrics.csv"
    write_csv(first, runs[:20])
    write_csv(second, runs[20:])
    with_column(first, "region", ["1", "", "2.5", *["1"] * 17])
    with_column(second, "region", ["eu", *["1"] * 19])
    with_column(second, "lumen_ring", ["7", "inf", *["1"] * 18])
    table = read_csv_files([first, second], ["lumen_ion_persona"])
    assert "region" in table.texts and "region" not in table.gauges
    assert "lumen_ring" in table.texts  # 'inf' is no gauge value
    assert "lumen_ion_confidence" in table.gauges
    records = table.probes["ion-api"].records
    assert [r.texts.get("region") for r in records[:4]] == ["1", None, "2.5", "1"]
    assert records[20].texts["region"] == "eu" and "region" not in records[20].values
    document = report(
        "--input", str(first), "--input", str(second), "--output", str(tmp_path / "r.json")
    )
    assert "region" not in document["probes"]["ion-api"]["statistics"]
    assert document["probes"]["ion-api"]["statistics"]["lumen_ion_confidence"]["count"] == 40


def test_an_unterminated_last_line_is_skipped_with_a_note(tmp_path, capsys):
    """The live log read while the exporter writes a row, or a crash mid-write: the partial row
    is no record; the rest of the log makes the report."""
    runs = gateway_runs(20, seed=7).runs
    path = tmp_path / "metrics.csv"
    write_csv(path, runs)
    whole = path.read_text(encoding="utf-8")
    next_row = whole.splitlines()[5]
    path.write_text(whole + next_row[:40], encoding="utf-8")  # 5 cells of 16, no line end
    output = tmp_path / "r.json"
    assert lumenctl(["report", "--input", str(path), "--output", str(output)]) == 0
    assert capsys.readouterr().err == (
        f"{path}:22: skipped the last line, which has no line end (a row being written, or cut "
        f"short)\nwrote {output}: ion-api (20 records)\n"
    )
    assert json.loads(output.read_text())["probes"]["ion-api"]["summary"]["records"] == 20


def test_text_cells_are_kept_as_written(tmp_path):
    """' Nana' and 'Nana' are two values, as they are two label values in Prometheus."""
    runs = gateway_runs(60, seed=8, empty_cells=False).runs
    runs = [
        dataclasses.replace(run, persona=" Nana" if i % 3 == 0 else "Nana")
        for i, run in enumerate(runs)
        if run.success
    ]
    write_csv(tmp_path / "m.csv", runs)
    document = report("--input", str(tmp_path / "m.csv"), "--output", str(tmp_path / "r.json"))
    personas = {v["value"]: v["count"] for v in document["probes"]["ion-api"]["personas"]["values"]}
    assert personas == {
        "Nana": sum(1 for run in runs if run.persona == "Nana"),
        " Nana": sum(1 for run in runs if run.persona == " Nana"),
    }
