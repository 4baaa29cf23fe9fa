"""End to end: a real ``prometheus`` scrapes the real ``lumen-exporter`` process, run with the
``config.json`` the renderer writes for examples/pipeline.yaml (the pipeline enabled), a token
file and a state dir, and evaluates the rendered rules of the same example. Runs are posted to
the exporter's own ``POST /pipeline/runs`` and ``POST /suppression``. LumenStageFailed and
LumenIntegrityMismatch fire for a failed stage and a mismatch, not for a good run, and the
suppression toggle silences them.

LumenIntegrityMismatch has ``for: 1m`` in the seed and the preset: the test waits for it, once."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lumen_alerting.cli.lumenctl import main as lumenctl
from tests.exporter.exporter_run import ExporterProcess, rendered_config
from tests.support.polling import eventually, free_port
from tests.support.schemas import REPO

PROMETHEUS = shutil.which("prometheus")
TOKEN = "e2e-pipeline-token-0123"  # the exporter wants at least 16 characters
WATCHED = ("LumenStageFailed", "LumenIntegrityMismatch")

pytestmark = [
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not on PATH (make setup)"),
    pytest.mark.timeout(600),
]


def rendered_rules() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = lumenctl(["render", "-f", str(REPO / "examples" / "pipeline.yaml"), "--format",
                         "rules"])  # fmt: skip
    assert code == 0
    return out.getvalue()


class Prometheus:
    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (directory / "rules.yml").write_text(rendered_rules())
        # The rendered selectors carry namespace="lumen": the scrape adds it, as the
        # ServiceMonitor's relabelling does in a cluster.
        (directory / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [rules.yml]\n"
            "scrape_configs:\n"
            "- job_name: lumen-exporter\n"
            f"  static_configs: [{{targets: ['{target}'], labels: {{namespace: lumen}}}}]\n"
        )
        self._log = (directory / "prometheus.log").open("wb")
        assert PROMETHEUS is not None
        self._process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            cwd=directory,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._logfile = directory / "prometheus.log"

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=30)
        self._log.close()

    def get(self, path: str, **params: str) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=10)
        response.raise_for_status()
        return response.json()["data"]

    def ready(self) -> bool:
        assert self._process.poll() is None, self._logfile.read_text()
        try:
            return httpx.get(self.url + "/-/ready", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def alerts(self) -> dict[tuple[str, str], str]:
        """(alertname, stage) -> state of the watched alerts, pending ones included."""
        return {
            (a["labels"]["alertname"], a["labels"].get("stage", "")): a["state"]
            for a in self.get("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] in WATCHED
        }

    def evaluations(self) -> str:
        """When the pipeline rule group was last evaluated (RFC 3339)."""
        groups = self.get("/api/v1/rules")["groups"]
        return str(next(g for g in groups if g["name"].endswith("lumen_runtime"))["lastEvaluation"])

    def query(self, expr: str) -> list[tuple[dict[str, str], str]]:
        result = self.get("/api/v1/query", query=expr)["result"]
        return [(r["metric"], r["value"][1]) for r in result]


@pytest.fixture
def stack(tmp_path) -> Iterator[tuple[ExporterProcess, Prometheus]]:
    config = rendered_config("pipeline")
    assert config["pipeline"]["enabled"] is True
    token_file = tmp_path / "pipeline-token"
    token_file.write_text(TOKEN + "\n")
    with ExporterProcess(config, "--pipeline-token-file", str(token_file)) as exporter:
        prometheus = Prometheus(tmp_path, exporter.url.removeprefix("http://"))
        try:
            eventually(prometheus.ready, what="prometheus ready")
            yield exporter, prometheus
        finally:
            prometheus.stop()


def pipeline_run(*, failed: str | None = None, integrity_ok: bool = True) -> dict[str, object]:
    return {
        "stages": [
            {"stage": stage, "success": stage != failed, "duration_seconds": 1.5}
            for stage in ("build", "pdf", "upload", "verify")
        ],
        "integrity_ok": integrity_ok,
        "report_generated": True,
    }


def test_prometheus_fires_the_pipeline_alerts_and_suppression_silences_them(stack):
    exporter, prometheus = stack

    # A good run: once the rules have been evaluated over it, nothing watched is even pending.
    exporter.push("/pipeline/runs", pipeline_run(), TOKEN)
    eventually(
        lambda: (
            len(prometheus.query('job:lumen_stage_failure{lumen_policy="pipeline"} == 0')) == 4
            and prometheus.query('lumen_remote_integrity_ok{namespace="lumen"} == 1')
        ),
        timeout=120,
        what="the good run scraped and the stage failure rule evaluated over it",
    )
    seen = prometheus.evaluations()
    eventually(lambda: prometheus.evaluations() != seen, timeout=120, what="another evaluation")
    assert prometheus.alerts() == {}

    # A failed upload and a mismatch: both fire (the mismatch after its 1m).
    exporter.push("/pipeline/runs", pipeline_run(failed="upload", integrity_ok=False), TOKEN)
    firing = {("LumenStageFailed", "upload"): "firing", ("LumenIntegrityMismatch", ""): "firing"}
    eventually(lambda: prometheus.alerts() == firing, timeout=240, what="both alerts firing")
    (stage_alert,) = [
        a for a in prometheus.get("/api/v1/alerts")["alerts"]
        if a["labels"]["alertname"] == "LumenStageFailed"
    ]  # fmt: skip
    assert stage_alert["labels"]["severity"] == "warning"  # the default spec.severities.ticket
    assert stage_alert["labels"]["namespace"] == "lumen"

    # The toggle silences both; lifting it brings the stage failure straight back.
    exporter.push("/suppression", {"suppressed": True}, TOKEN)
    eventually(lambda: prometheus.alerts() == {}, timeout=120, what="alerts silenced")
    exporter.push("/suppression", {"suppressed": False}, TOKEN)
    eventually(
        lambda: prometheus.alerts().get(("LumenStageFailed", "upload")) == "firing",
        timeout=120,
        what="the stage failure firing again",
    )

    # The next good run resolves everything.
    exporter.push("/pipeline/runs", pipeline_run(), TOKEN)
    eventually(lambda: prometheus.alerts() == {}, timeout=120, what="alerts resolved")
