"""`make demo` interrupted: Ctrl-C twice in a row while the services run still stops every child
(they run in sessions of their own, out of the terminal's reach) and removes the directory with
its secrets."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.polling import eventually
from tests.support.schemas import REPO

pytestmark = pytest.mark.timeout(240)


def _processes_naming(directory: str) -> list[int]:
    """The processes whose command line names ``directory`` (every child of the demo does)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if directory in command:
            found.append(int(entry.name))
    return found


def test_two_ctrl_c_during_the_run_leave_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "transcript"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUMEN_", "SLACK_", "DEMO_"))}
    with out.open("w") as transcript:
        demo = subprocess.Popen(
            [sys.executable, "-m", "lumen_alerting.demo"],
            cwd=REPO,
            env={**env, "PYTHONPATH": str(REPO / "operator")},
            stdout=transcript,
            stderr=subprocess.STDOUT,
        )
    directory = ""
    try:
        # Once Prometheus runs, every child is up: the moment with the most to clean up.
        text = eventually(
            lambda: "Prometheus: http" in out.read_text() and out.read_text(),
            120,
            what="the demo's services started",
        )
        found = re.search(r"files in (/\S+)", text)
        assert found, text
        directory = found.group(1)
        assert _processes_naming(directory), "the children name the directory"
        demo.send_signal(signal.SIGINT)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(120) == 130, out.read_text()
        assert not Path(directory).exists(), out.read_text()
        assert eventually(lambda: not _processes_naming(directory), 30, what="no child left")
    finally:
        if demo.poll() is None:
            demo.kill()
        if directory:  # what a broken clean-up left: not this machine's problem afterwards
            for pid in _processes_naming(directory):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(directory, ignore_errors=True)
