"""values.schema.json refuses wrong types and unknown keys with a message naming the value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart.helm import run_helm
from tests.support.schemas import REPO

SCHEMA = REPO / "values.schema.json"
# Objects whose keys are free (label maps, selectors, the subcharts' values that their own
# schemas check), so they need not say additionalProperties: false.
FREE_FORM = {"/properties/threader", "/properties/exporter"}

# (--set-json argument, what the refusal must say)
REFUSED = [
    ('replicaCount="two"', "at '/replicaCount': got string, want integer"),
    ("replicaCount=0", "/replicaCount"),
    ('colour="blue"', "additional properties 'colour' not allowed"),
    (
        'operator={"peering":"p","driftInterval":300,"metricsPort":8000,"livenessPort":8080,'
        '"logFormat":"json","logLevel":"info","colour":"blue"}',
        "at '/operator': additional properties 'colour'",
    ),
    ('operator.logLevel="verbose"', "/operator/logLevel"),
    ("operator.driftInterval=5", "/operator/driftInterval"),
    (
        'operator.threaderResources={"requests":{"cpu":0.5}}',
        "/operator/threaderResources/requests/cpu",
    ),
    ('image.pullPolicy="Sometimes"', "/image/pullPolicy"),
    ('watchNamespaces=["Shop"]', "at '/watchNamespaces/0'"),
    (
        'renderedNetworkPolicies.prometheusPeers=[{"podSelektor":{}}]',
        "additional properties 'podSelektor' not allowed",
    ),
    ('renderedNetworkPolicies.enabled="yes"', "/renderedNetworkPolicies/enabled"),
    ('networkPolicy.apiServerCidrs=["kubernetes.default"]', "/networkPolicy/apiServerCidrs/0"),
    ('podDisruptionBudget.enabled="maybe"', "/podDisruptionBudget/enabled"),
    ('podDisruptionBudget.minAvailable="half"', "/podDisruptionBudget/minAvailable"),
    ('metrics.serviceMonitor.interval="often"', "/metrics/serviceMonitor/interval"),
    ('policies=[{"name":"checkout"}]', "/policies/0"),
    ('policies=[{"name":"checkout","spec":{},"owner":"me"}]', "additional properties 'owner'"),
    ('dashboards.labels={"team":1}', "/dashboards/labels/team"),
    ('threader.enabled="on"', "/threader/enabled"),
]


@pytest.mark.parametrize(("setting", "message"), REFUSED, ids=[s.split("=")[0] for s, _ in REFUSED])
def test_bad_values_are_refused_with_a_clear_message(setting: str, message: str) -> None:
    proc = run_helm("template", "lumen", ".", "--set-json", setting)
    assert proc.returncode != 0, f"{setting} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr


def test_values_that_fit_are_accepted() -> None:
    """The refusals above are about the values, not about --set-json itself."""
    for setting in (
        "replicaCount=2",
        'watchNamespaces=["shop"]',
        'operator.threaderResources={"requests":{"cpu":"500m"}}',
        'podDisruptionBudget.minAvailable="50%"',
        'renderedNetworkPolicies.prometheusPeers=[{"ipBlock":{"cidr":"10.0.0.0/8"}}]',
        'threader={"enabled":false,"anything":"the subchart checks"}',
    ):
        proc = run_helm("template", "lumen", ".", "--set-json", setting)
        assert proc.returncode == 0, f"{setting}: {proc.stderr}"


def objects_without_closed_keys(node: Any, path: str = "") -> list[str]:
    """Paths of object schemas with properties that still allow other keys."""
    found: list[str] = []
    if isinstance(node, dict):
        closed = node.get("additionalProperties") is False
        if node.get("properties") and not closed and path not in FREE_FORM:
            found.append(path or "/")
        for key, value in node.items():
            found += objects_without_closed_keys(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += objects_without_closed_keys(value, f"{path}/{index}")
    return found


def test_every_object_with_known_keys_refuses_others() -> None:
    assert objects_without_closed_keys(json.loads(SCHEMA.read_text())) == []
