"""``lumenctl report`` on bad input: one line naming the file, line and column, exit 1 (2 for
bad usage), and no output written (an existing report is left as it was)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from lumen_alerting.cli.lumenctl import main as lumenctl
from tests.report.generated import gateway_runs, write_csv

OLD_REPORT = "the previous report\n"


@pytest.fixture
def good_csv(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.csv"
    write_csv(path, gateway_runs(20, seed=9).runs)
    return path


def run_report(tmp_path: Path, *args: str) -> tuple[int, Path]:
    output = tmp_path / "out" / "report.json"
    output.parent.mkdir(exist_ok=True)
    output.write_text(OLD_REPORT)
    return lumenctl(["report", *args, "--output", str(output)]), output


def broken(good_csv: Path, line: int, old: str, new: str) -> Path:
    """good_csv with ``old`` replaced by ``new`` on its line ``line`` (1 is the header)."""
    lines = good_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    assert old in lines[line - 1], lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path = good_csv.with_name("broken.csv")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def broken_cell(good_csv: Path, line: int, column: str, value: str) -> Path:
    """good_csv with the cell of ``column`` on line ``line`` set to ``value``."""
    with good_csv.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream))
    rows[line - 1][rows[0].index(column)] = value
    path = good_csv.with_name("broken.csv")
    with path.open("w", encoding="utf-8", newline="") as stream:
        csv.writer(stream, lineterminator="\n").writerows(rows)
    return path


def missing(good: Path) -> Path:
    return good.with_name("missing.csv")


def empty(good: Path) -> Path:
    path = good.with_name("empty.csv")
    path.write_text("")
    return path


def only_header(good: Path) -> Path:
    path = good.with_name("header.csv")
    path.write_text(good.read_text(encoding="utf-8").splitlines()[0] + "\n")
    return path


BAD_INPUTS: list[tuple[Callable[[Path], Path], str]] = [
    (missing, "missing.csv: No such file or directory"),
    (empty, "empty.csv: empty file (no header line)"),
    (only_header, "header.csv: no records (only a header)"),
    (
        lambda good: broken(good, 1, "timestamp,", "time,"),
        "broken.csv:1: no timestamp column",
    ),
    (
        lambda good: broken(good, 1, "success,", "ok,"),
        "broken.csv:1: no success column",
    ),
    (
        lambda good: broken_cell(good, 3, "timestamp", "2026-11-30 at noon"),
        "broken.csv:3: column timestamp: '2026-11-30 at noon' is not an RFC 3339 time",
    ),
    (
        lambda good: broken_cell(good, 4, "success", "yes"),
        "broken.csv:4: column success: 'yes' is not 0 or 1",
    ),
    (
        lambda good: broken_cell(good, 5, "http_status", "2x0"),
        "broken.csv:5: column http_status: '2x0' is not a number",
    ),
    (
        lambda good: broken_cell(good, 5, "http_status", "200.5"),
        "broken.csv:5: column http_status: 200.5 is not an integer",
    ),
    (
        lambda good: broken_cell(good, 7, "duration_seconds", "inf"),
        "broken.csv:7: column duration_seconds: 'inf' is not a finite number",
    ),
    (
        lambda good: broken_cell(good, 8, "duration_seconds", "0,5"),
        "broken.csv:8: column duration_seconds: '0,5' is not a number",
    ),
    (
        lambda good: broken(good, 8, ",ion-api,", ",ion-api,,"),
        "broken.csv:8: 17 cells where the header has 16",
    ),
]


@pytest.mark.parametrize(("make_input", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, good_csv, capsys, make_input, message):
    path = make_input(good_csv)
    code, output = run_report(tmp_path, "--input", str(path))
    err = capsys.readouterr().err
    assert code == 1, err
    assert err == f"{path.parent}/{message}\n"
    assert output.read_text() == OLD_REPORT
    assert [p.name for p in output.parent.iterdir()] == ["report.json"]  # no temporary left


def test_a_bad_file_among_good_ones_stops_the_report(tmp_path, good_csv, capsys):
    bad = broken_cell(good_csv, 9, "duration_seconds", "n/a")
    code, output = run_report(tmp_path, "--input", str(good_csv), "--input", str(bad))
    assert code == 1
    assert capsys.readouterr().err == f"{bad}:9: column duration_seconds: 'n/a' is not a number\n"
    assert output.read_text() == OLD_REPORT


def test_an_unknown_probe_lists_the_known_ones(tmp_path, good_csv, capsys):
    code, output = run_report(tmp_path, "--input", str(good_csv), "--probe", "nope")
    assert code == 1
    assert capsys.readouterr().err == "no records of probe 'nope' (probes: ion-api)\n"
    assert output.read_text() == OLD_REPORT


def test_an_output_directory_that_does_not_exist(tmp_path, good_csv, capsys):
    output = tmp_path / "nowhere" / "report.html"
    assert lumenctl(["report", "--input", str(good_csv), "--output", str(output)]) == 1
    assert "No such file or directory" in capsys.readouterr().err
    assert not output.parent.exists()


def test_a_good_run_replaces_the_old_report(tmp_path, good_csv, capsys):
    code, output = run_report(tmp_path, "--input", str(good_csv))
    assert code == 0
    assert output.read_text().startswith("{")
    assert output.stat().st_mode & 0o777 == 0o644
    assert capsys.readouterr().err == f"wrote {output}: ion-api (20 records)\n"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--output", "r.txt"], "name it .html or .json, or give --format"),
        (
            ["--output", "r.json", "--start", "2026-01-01T00:00:00Z"],
            "--start, --end and --step go with --prometheus",
        ),
        (
            ["--output", "r.json", "--z-threshold", "0"],
            "--z-threshold 0.0: must be a positive number",
        ),
        (["--output", "r.json", "--z-threshold", "nan"], "must be a positive number"),
        (["--output", "r.json", "--format", "pdf"], "invalid choice: 'pdf'"),
    ],
)
def test_usage_errors_exit_2(tmp_path, good_csv, capsys, args, complaint):
    with pytest.raises(SystemExit) as exit_:
        lumenctl(
            [
                "report",
                "--input",
                str(good_csv),
                *[str(tmp_path / a) if a.startswith("r.") else a for a in args],
            ]
        )
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [good_csv]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ([], "one of the arguments --input --prometheus is required"),
        (
            ["--input", "m.csv", "--prometheus", "http://127.0.0.1:1"],
            "not allowed with argument",
        ),
        (["--prometheus", "http://127.0.0.1:1"], "--prometheus needs --start"),
        (
            ["--prometheus", "http://127.0.0.1:1", "--start", "last tuesday"],
            "--start 'last tuesday': not an RFC 3339 time",
        ),
        (
            ["--prometheus", "http://127.0.0.1:1", "--start", "0", "--end", "soon"],
            "--end 'soon': not an RFC 3339 time",
        ),
        (
            ["--prometheus", "http://127.0.0.1:1", "--start", "0", "--step", "fast"],
            "--step 'fast': 'fast' is not a duration",
        ),
        # Numbers that are no time: usage errors like any other bad time, not a traceback.
        (
            ["--prometheus", "http://127.0.0.1:1", "--start", "nan"],
            "--start 'nan': not a time between the years 1 and 9999 (UTC)",
        ),
        (
            ["--prometheus", "http://127.0.0.1:1", "--start", "0", "--end", "inf"],
            "--end 'inf': not a time between",
        ),
        (
            ["--prometheus", "http://127.0.0.1:1", "--start", "1e20", "--end", "1"],
            "--start '1e20': not a time between",
        ),
        (
            ["--prometheus", "http://127.0.0.1:1", "--start=-1e300"],
            "--start '-1e300': not a time between",
        ),
        (
            ["--prometheus", "http://127.0.0.1:1", "--start", "0", "--step", "0"],
            "--step '0': must be a positive duration",
        ),
        (
            ["--prometheus", "http://127.0.0.1:1", "--start", "0", "--step", "0s"],
            "--step '0s': must be a positive duration",
        ),
        (
            ["--prometheus", "http://127.0.0.1:1", "--start", "0", "--step", "1e400"],
            "--step '1e400': must be a positive duration",
        ),
        (
            ["--prometheus", "http://127.0.0.1:1", "--start", "0", "--step", "-15"],
            "--step '-15': must be a positive duration",
        ),
    ],
)
def test_source_usage_errors_exit_2(tmp_path, capsys, args, complaint):
    with pytest.raises(SystemExit) as exit_:
        lumenctl(["report", *args, "--output", str(tmp_path / "r.json")])
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
