"""``lumen-operator`` as users run it: a process that logs in through a kubeconfig, serves
/healthz and /metrics, logs JSON, and stops cleanly on SIGTERM."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from lumen_alerting.operator.config import _parser
from lumen_alerting.operator.kinds import POLICY, PROMETHEUS_RULE, SECRET
from tests.support.kube_api import ClusterEmulator
from tests.support.operator_run import Kubectl, condition
from tests.support.polling import eventually, free_port
from tests.support.schemas import REPO
from tests.support.settings_docs import undocumented

pytestmark = pytest.mark.timeout(120)

OPERATOR = [sys.executable, "-m", "lumen_alerting.cli.operator"]
GATEWAY = yaml.safe_load((REPO / "examples" / "gateway.yaml").read_text())


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": "not-a-real-token"}}],
                "contexts": [
                    {"name": "test", "context": {"cluster": "emulator", "user": "tester"}}
                ],
                "current-context": "test",
            }
        )
    )
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUMEN_", "KUBERNETES_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "operator"), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def test_bad_flag_is_refused_with_its_name() -> None:
    result = subprocess.run(
        [*OPERATOR, "--metrics-port", "eighty"], capture_output=True, text=True, env=clean_env()
    )
    assert result.returncode == 2
    assert "--metrics-port: 'eighty' is not a whole number" in result.stderr


def test_no_cluster_to_log_in_to(tmp_path: Path) -> None:
    env = clean_env(KUBECONFIG=str(tmp_path / "missing"), HOME=str(tmp_path))
    result = subprocess.run([*OPERATOR, "--standalone"], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "Cannot log in to the cluster" in result.stderr


def test_every_flag_and_variable_is_documented() -> None:
    docs = (REPO / "docs" / "operator.md").read_text()
    assert undocumented(_parser(), docs, "LUMEN_OPERATOR_") == []


def test_process_logs_in_serves_health_and_metrics_and_stops_on_sigterm(
    cluster: ClusterEmulator, tmp_path: Path
) -> None:
    metrics_port, liveness_port = free_port(), free_port()
    env = clean_env(
        KUBECONFIG=str(kubeconfig(tmp_path, cluster.url)),
        LUMEN_OPERATOR_STANDALONE="true",
        LUMEN_OPERATOR_LOG_FORMAT="json",
        LUMEN_OPERATOR_KPS_RELEASE="monitoring",
    )
    process = subprocess.Popen(
        [*OPERATOR, f"--metrics-port={metrics_port}", f"--liveness-port={liveness_port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kubectl = Kubectl(cluster.url)
    try:
        eventually(lambda: _get(f"http://127.0.0.1:{liveness_port}/healthz"), what="/healthz")
        kubectl.create(POLICY, copy.deepcopy(GATEWAY))
        policy = eventually(
            lambda: (
                condition(kubectl.policy("lumen", "gateway"), "Ready").get("status") == "True"
                and kubectl.policy("lumen", "gateway")
            ),
            what="Ready",
        )
        rule = kubectl.get(PROMETHEUS_RULE, "lumen", "lumen-gateway")
        assert rule is not None and rule["metadata"]["labels"]["release"] == "monitoring"
        metrics = _get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert metrics is not None
        assert re.search(
            r'^lumen_operator_reconciles_total\{result="applied"\} 1\.0$', metrics, re.MULTILINE
        )
        assert re.search(r'^lumen_operator_policies\{state="ready"\} 1\.0$', metrics, re.MULTILINE)
        assert re.search(
            r"^lumen_operator_reconcile_duration_seconds_count 1\.0$", metrics, re.MULTILINE
        )
        # kopf caches probe results for 10 s: the count may still be the one before create.
        healthz = _get(f"http://127.0.0.1:{liveness_port}/healthz")
        assert healthz is not None
        health = json.loads(healthz)
        assert health["policies"] in (0, 1)
        secret = kubectl.get(SECRET, "lumen", "lumen-gateway-threader")
        assert secret is not None
        tokens = [base64.b64decode(v).decode() for v in secret["data"].values()]
        assert policy["metadata"]["uid"]
    finally:
        kubectl.close()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err[-2000:]
    # Both kopf and the operator's own client log in with the kubeconfig's credentials.
    agents: dict[str, set[str | None]] = {}
    for call in cluster.calls():
        # A call without a User-Agent counts as agent "" (and fails the comparison below).
        agent = call.user_agent or ""
        if call.plural and not agent.startswith("python-httpx"):
            agents.setdefault(agent.split("/")[0], set()).add(call.authorization)
    assert agents == {
        "kopf": {"Bearer not-a-real-token"},
        "lumen-operator": {"Bearer not-a-real-token"},
    }
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "the operator logged nothing"
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any("Applied PrometheusRule/lumen-gateway" in r.get("message", "") for r in records)
    assert any(r.get("object", {}).get("name") == "gateway" for r in records)
    for token in tokens:
        assert token not in out + err, "a token reached the logs"


def _get(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None
