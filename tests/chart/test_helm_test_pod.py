"""The `helm test` pod: it asks the operator's Service for /metrics and passes only when a Lumen
series is there. Its script runs here against a real prometheus_client server that serves the
operator's registry (passes) and one that serves another registry (fails)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server

from lumen_alerting.operator.metrics import OperatorMetrics
from tests.chart.helm import NAMESPACE, template
from tests.support.polling import free_port


def helm_test_pod() -> dict[str, Any]:
    pod = template().one("Pod", "-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    return pod


def script_for(pod: dict[str, Any], url: str) -> str:
    (container,) = pod["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["python", "-c"], command
    script = command[2]
    assert isinstance(script, str)
    rendered = template()
    service = rendered.one("Service", "-operator")
    port = service["spec"]["ports"][0]["port"]
    in_cluster = f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}/metrics"
    assert in_cluster in script, f"the test pod does not ask the operator's Service: {script}"
    return script.replace(in_cluster, url)


@contextmanager
def serving(registry: CollectorRegistry) -> Iterator[str]:
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_test_pod_passes_against_the_operators_metrics() -> None:
    with serving(OperatorMetrics().registry) as url:
        proc = run(script_for(helm_test_pod(), url))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "lumen_operator_policies found" in proc.stdout


def test_the_test_pod_fails_when_no_lumen_series_is_served() -> None:
    other = CollectorRegistry()
    Counter("something_else", "Not Lumen.", registry=other).inc()
    with serving(other) as url:
        proc = run(script_for(helm_test_pod(), url))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "lumen_operator_policies missing" in proc.stdout


def test_the_test_pod_is_locked_down_and_admitted_by_the_network_policy() -> None:
    pod = helm_test_pod()
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/lumen-alerting/lumen:0.1.0"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    policy = template().one("NetworkPolicy", "-operator")
    labels = pod["metadata"]["labels"].items()
    admitted = [
        peer
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
        if "namespaceSelector" not in peer
        and peer["podSelector"].get("matchLabels")
        and set(peer["podSelector"]["matchLabels"].items()) <= labels
    ]
    assert admitted, "the operator's NetworkPolicy does not let the test pod in"
    assert not template(settings=["helmTest.enabled=false"]).of_kind("Pod")
