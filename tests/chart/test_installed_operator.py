"""From `helm install` to a reconciled policy: the chart installed with the real helm into the
API emulator, then the operator run with exactly the arguments of the chart's container, against
that cluster, and a policy applied with kubectl becomes Ready with its children.

No pod runs on the emulator, so the operator runs in a thread of this test (as in
``tests/operator``), configured by ``parse_config`` from the Deployment's stored ``command``
arguments and environment; only the two listening ports become 0 (free ones), because the
container's 8000 and 8080 may be taken on the test machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lumen_alerting.operator.config import OperatorConfig, parse_config
from lumen_alerting.render.objects import POLICY_LABEL
from tests.support.kube_cli import KubeCli, kube_cli
from tests.support.operator_run import OperatorThread, condition
from tests.support.polling import eventually

pytestmark = pytest.mark.timeout(300)

DEPLOYMENTS = "apps/v1/deployments"
POLICIES = "lumen.dev/v1alpha1/lumenalertpolicies"
RULES = "monitoring.coreos.com/v1/prometheusrules"
NETWORK_POLICIES = "networking.k8s.io/v1/networkpolicies"


def chart_operator_config(cli: KubeCli, namespace: str, name: str) -> OperatorConfig:
    """The operator's settings as the chart's container would get them."""
    deployment = cli.cluster.get(DEPLOYMENTS, namespace, name)
    assert deployment is not None, f"helm installed no Deployment {namespace}/{name}"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["lumen-operator"]
    environ = {
        env["name"]: env.get("value", f"<{env['name']} from the downward API>")
        for env in container.get("env", [])
    }
    config = parse_config(container.get("args", []), environ)
    return dataclasses.replace(config, metrics_port=0, liveness_port=0)


@pytest.fixture()
def installed(tmp_path: Path) -> Iterator[KubeCli]:
    with kube_cli(tmp_path) as cli:
        cli.helm("install", "lumen", ".", "--namespace", "lumen", "--create-namespace")
        yield cli


def children(cli: KubeCli, resource: str, policy: str) -> list[dict[str, Any]]:
    return cli.cluster.list(resource, "lumen", f"{POLICY_LABEL}={policy}")


def test_the_chart_operator_reconciles_a_policy_applied_with_kubectl(installed: KubeCli) -> None:
    config = chart_operator_config(installed, "lumen", "lumen-operator")
    assert config.standalone and config.clusterwide
    operator = OperatorThread(installed.cluster.url, config).start()
    try:
        installed.kubectl("apply", "-f", "examples/gateway.yaml")
        policy = eventually(
            lambda: (
                condition(p := installed.cluster.get(POLICIES, "lumen", "gateway"), "Ready").get(
                    "status"
                )
                == "True"
                and p
            ),
            timeout=120,
            what="the gateway policy Ready",
        )
    finally:
        operator.stop()
    assert condition(policy, "Valid").get("status") == "True"
    rules = children(installed, RULES, "gateway")
    assert [r["metadata"]["labels"]["release"] for r in rules] == ["kube-prometheus-stack"]
    # The chart passes its renderedNetworkPolicies values as flags: the policies follow them.
    netpols = children(installed, NETWORK_POLICIES, "gateway")
    assert netpols, "the chart's operator rendered no NetworkPolicy"
    peers = [
        peer
        for netpol in netpols
        for rule in netpol["spec"].get("ingress", [])
        for peer in rule["from"]
    ]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            "namespaceSelector": {}} in peers  # fmt: skip
