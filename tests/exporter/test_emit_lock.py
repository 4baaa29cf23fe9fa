"""Concurrent ``lumenctl emit --state-dir`` processes (two CI jobs on one runner) each count
their run: the read-modify-write of the state file is under the state dir's lock.

To make the race real rather than lucky, every process first does all its imports and then
waits at a barrier (a pipe the test closes), so all of them read the state at the same moment;
without the lock most of their updates are lost (checked when the lock was made a no-op)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lumen_alerting.exporter.pipeline import STATE_FILE
from tests.exporter.exporter_run import environment

EMITS = 20

# One emit: imports done, says "ready" on fd READY, waits for EOF on fd GO, then runs
# `lumenctl emit` with the given arguments (lumenctl's own main, as the console script does).
CHILD = """
import os, sys
import lumen_alerting.exporter.pipeline  # what emit imports lazily: before the barrier
from lumen_alerting.cli.lumenctl import main
ready, go = int(sys.argv[1]), int(sys.argv[2])
os.write(ready, b".")
os.close(ready)
os.read(go, 1)  # EOF when the test closes its end: every emit is released at once
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.timeout(300)
def test_concurrent_emits_count_every_run(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    output = tmp_path / "lumen.prom"
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    processes = []
    try:
        for number in range(EMITS):
            run = tmp_path / f"run-{number}.json"
            body = {
                "run_id": f"job-{number}",
                "stages": [{"stage": "build", "success": True, "duration_seconds": 1}],
            }
            run.write_text(json.dumps(body))
            emit = [
                "emit",
                "--run",
                str(run),
                "--state-dir",
                str(state_dir),
                "--output",
                str(output),
            ]
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        str(ready_write),
                        str(go_read),
                        *emit,
                    ],
                    pass_fds=(ready_write, go_read),
                    env=environment(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        os.close(ready_write)
        os.close(go_read)
        ready = b""
        # Blocks until every emit has imported (or exited: then its end closes, EOF at last).
        while len(ready) < EMITS and (chunk := os.read(ready_read, EMITS)):
            ready += chunk
        assert len(ready) == EMITS, "an emit exited before the barrier"
    finally:
        os.close(go_write)  # the barrier opens
        os.close(ready_read)
    for process in processes:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors

    state = json.loads((state_dir / STATE_FILE).read_text())
    assert state["runs_total"] == {"success": EMITS, "failure": 0}
    assert state["stage_runs_total"] == {"build": {"success": EMITS, "failure": 0}}
    assert sorted(state["recent_run_ids"]) == sorted(f"job-{n}" for n in range(EMITS))
    # The textfile is written under the lock too: the last one written has every run.
    assert f'lumen_pipeline_runs_total{{result="success"}} {float(EMITS)}' in output.read_text()
