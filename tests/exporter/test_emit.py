"""``lumenctl emit``: a run's pipeline metrics as a node_exporter textfile, written atomically,
accepted by the real ``promtool check metrics``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lumen_alerting.cli.lumenctl import main

PROMTOOL = shutil.which("promtool")
LUMENCTL = Path(sys.executable).with_name("lumenctl")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not on PATH (make setup)")

RUN = {
    "run_id": "ci-7",
    "finished_at": 1_700_000_000,
    "stages": [
        {"stage": "build", "success": True, "duration_seconds": 42},
        {"stage": "upload", "success": False, "duration_seconds": 3.25},
    ],
    "integrity_ok": False,
    "report_generated": True,
}


def check_metrics(path: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    with path.open("rb") as file:
        return subprocess.run(
            [PROMTOOL, "check", "metrics"],
            stdin=file,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def samples(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def write_run(tmp_path: Path, body: object, name: str = "run.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(body))
    return path


@needs_promtool
def test_emit_writes_the_last_run_without_counters(tmp_path, capsys):
    output = tmp_path / "textfile" / "lumen.prom"
    assert main(["emit", "--run", str(write_run(tmp_path, RUN)), "--output", str(output)]) == 0
    assert samples(output) == [
        "lumen_pipeline_last_run_timestamp 1.7e+09",
        'lumen_pipeline_success{stage="build"} 1.0',
        'lumen_pipeline_success{stage="upload"} 0.0',
        'lumen_pipeline_duration_seconds{stage="build"} 42.0',
        'lumen_pipeline_duration_seconds{stage="upload"} 3.25',
        "lumen_remote_integrity_ok 0.0",
        "lumen_report_generated 1.0",
        "lumen_alert_suppressed 0.0",
    ]
    assert output.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    assert sorted(p.name for p in output.parent.iterdir()) == ["lumen.prom"]
    assert capsys.readouterr().err == f"wrote {output} (failure, 2 stages)\n"
    checked = check_metrics(output)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


@needs_promtool
def test_emit_with_a_state_dir_counts_runs(tmp_path):
    output = tmp_path / "lumen.prom"
    state = tmp_path / "state"
    first = write_run(tmp_path, RUN)
    second = write_run(
        tmp_path,
        {"run_id": "ci-8", "stages": [{"stage": "build", "success": True, "duration_seconds": 1}]},
        "second.json",
    )
    for run_file in (first, second, second):  # the repeated run id is not counted twice
        args = ["emit", "--run", str(run_file), "--output", str(output), "--state-dir", str(state)]
        assert main(args) == 0
    assert main(["emit", "--run", str(second), "--output", str(output), "--state-dir", str(state),
                 "--suppressed", "true"]) == 0  # fmt: skip
    lines = samples(output)
    assert 'lumen_pipeline_runs_total{result="success"} 1.0' in lines
    assert 'lumen_pipeline_runs_total{result="failure"} 1.0' in lines
    assert 'lumen_pipeline_stage_runs_total{result="success",stage="build"} 2.0' in lines
    assert 'lumen_pipeline_success{stage="upload"} 0.0' in lines  # from the first run, kept
    assert "lumen_alert_suppressed 1.0" in lines
    checked = check_metrics(output)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


@needs_promtool
def test_promtool_check_metrics_does_refuse_a_broken_file(tmp_path):
    """The check above can fail: promtool finds a problem in a file that has one."""
    broken = tmp_path / "broken.prom"
    broken.write_text("# TYPE lumen_pipeline_runs counter\nlumen_pipeline_runs 1\n")
    assert check_metrics(broken).returncode != 0


def test_emit_reads_stdin_and_the_textfile_dir_variable(tmp_path):
    result = subprocess.run(
        [str(LUMENCTL), "emit"],
        input=json.dumps(RUN),
        env={**os.environ, "LUMEN_TEXTFILE_DIR": str(tmp_path / "collector")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "lumen_remote_integrity_ok 0.0" in samples(tmp_path / "collector" / "lumen.prom")


def test_a_bad_run_is_refused_and_the_old_file_kept(tmp_path, capsys):
    output = tmp_path / "lumen.prom"
    output.write_text("old\n")
    run_file = write_run(
        tmp_path,
        {"stages": [{"stage": "build", "success": "yes", "duration_seconds": 1}], "x": 1},
    )
    assert main(["emit", "--run", str(run_file), "--output", str(output)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{run_file}: stages[0].success: Input should be a valid boolean",
        f"{run_file}: x: Extra inputs are not permitted",
    ]
    (tmp_path / "bad.json").write_text("{")
    assert main(["emit", "--run", str(tmp_path / "bad.json"), "--output", str(output)]) == 1
    assert capsys.readouterr().err.startswith(f"{tmp_path / 'bad.json'}: not JSON: Expecting")
    assert main(["emit", "--run", str(tmp_path / "none.json"), "--output", str(output)]) == 1
    assert capsys.readouterr().err == f"{tmp_path / 'none.json'}: No such file or directory\n"
    assert output.read_text() == "old\n"


def test_a_failed_rename_leaves_the_old_textfile(tmp_path, monkeypatch, capsys):
    output = tmp_path / "lumen.prom"
    output.write_text("old\n")

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", crash)
    assert main(["emit", "--run", str(write_run(tmp_path, RUN)), "--output", str(output)]) == 1
    assert capsys.readouterr().err == f"{output}: No space left on device\n"
    assert output.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lumen.prom", "run.json"]


def test_a_corrupt_state_dir_is_refused(tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    (state / "pipeline-state.json").write_text("[]")
    output = tmp_path / "lumen.prom"
    args = ["emit", "--run", str(write_run(tmp_path, RUN)), "--output", str(output)]
    assert main([*args, "--state-dir", str(state)]) == 1
    assert "not a pipeline state file" in capsys.readouterr().err
    assert not output.exists()
