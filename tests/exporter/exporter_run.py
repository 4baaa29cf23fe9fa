"""Run the real ``lumen-exporter`` process (``python -m lumen_alerting.cli.exporter``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

from lumen_alerting.policy import policy_from_manifest
from lumen_alerting.render import render_policy
from tests.support.polling import eventually, free_port
from tests.support.schemas import REPO


def rendered_config(example: str) -> dict[str, Any]:
    """The ``config.json`` the renderer writes for ``examples/<example>.yaml``."""
    policy = policy_from_manifest(
        yaml.safe_load((REPO / "examples" / f"{example}.yaml").read_text())
    )
    config_map = next(o for o in render_policy(policy) if o["kind"] == "ConfigMap")
    document: dict[str, Any] = json.loads(config_map["data"]["config.json"])
    return document


def command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "lumen_alerting.cli.exporter", *flags]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMEN_")}
    env["PYTHONPATH"] = str(REPO / "operator")
    return env


def refused_start(config_text: str, directory: Path, *flags: str) -> tuple[str, str]:
    """Start the exporter with ``config_text`` as its config.json and ``flags``, expecting it to
    refuse (exit 2) before listening; (its one stderr line, its stdout)."""
    (directory / "config.json").write_text(config_text)
    result = subprocess.run(
        command(
            *("--listen", f"127.0.0.1:{free_port()}"),
            *("--config", str(directory / "config.json")),
            *("--state-dir", str(directory / "state")),
            *flags,
        ),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0], result.stdout


class ExporterProcess:
    """The exporter with ``config`` written to a private directory, on a free port."""

    def __init__(self, config: dict[str, Any], *flags: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="exporter-"))
        (self.dir / "config.json").write_text(json.dumps(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = command(
            "--listen", f"127.0.0.1:{self.port}",
            "--config", str(self.dir / "config.json"),
            "--state-dir", str(self.dir / "state"),
            *flags,
        )  # fmt: skip
        self.log = self.dir / "log"
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ExporterProcess:
        with open(self.log, "a", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                self.command, env=environment(), stdout=log, stderr=subprocess.STDOUT, text=True
            )
        eventually(self._ready, 60, f"exporter on {self.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"exporter exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=30).text

    def push(self, path: str, body: object, token: str) -> None:
        """POST ``body`` to a pipeline endpoint (``/pipeline/runs``, ``/suppression``) as CI
        does, with the bearer ``token``; it must be taken (200)."""
        answer = httpx.post(
            self.url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert answer.status_code == 200, answer.text

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        return self.process.returncode
