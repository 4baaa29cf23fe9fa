"""The operator says when alerts reach no one: ``Routed=False`` naming them and one Warning event,
while the policy stays Ready (the objects are applied all the same); fixed routes clear it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from lumen_alerting.operator.kinds import EVENT, POLICY
from tests.support.kube_api import ClusterEmulator
from tests.support.operator_run import Kubectl, condition, running_operator
from tests.support.polling import eventually

pytestmark = pytest.mark.timeout(120)

NAMESPACE = "shop"
NAME = "checkout"
# The README's example as it was: only severity=page routed, so nothing it renders goes anywhere.
PAGE_ONLY = yaml.safe_load(
    """\
apiVersion: lumen.dev/v1alpha1
kind: LumenAlertPolicy
metadata: {name: checkout, namespace: shop}
spec:
  service: checkout-api
  rules:
    - {alert: CheckoutDown, expr: 'up{job="checkout"} == 0', for: 2m, severity: critical}
  slos:
    - name: availability
      objective: 99.9
      sli:
        ratio:
          errors: sum(rate(http_requests_total{code=~"5.."}[{{window}}]))
          total: sum(rate(http_requests_total[{{window}}]))
  routing:
    routes: [{receiver: oncall, matchers: [{name: severity, value: page}]}]
    receivers:
      - name: oncall
        webhook: {url: https://pager.example.com/hook}
"""
)


@pytest.fixture()
def kubectl(cluster: ClusterEmulator) -> Iterator[Kubectl]:
    client = Kubectl(cluster.url)
    yield client
    client.close()


def settled(kubectl: Kubectl, routed: str) -> dict[str, Any] | None:
    """The policy once its current generation is Ready with the given Routed status."""
    policy = kubectl.policy(NAMESPACE, NAME)
    if policy is None:
        return None
    if policy.get("status", {}).get("observedGeneration") != policy["metadata"]["generation"]:
        return None
    if condition(policy, "Ready").get("status") != "True":
        return None
    return policy if condition(policy, "Routed").get("status") == routed else None


def unrouted_events(kubectl: Kubectl) -> list[dict[str, Any]]:
    return [e for e in kubectl.list(EVENT, NAMESPACE) if e.get("reason") == "AlertsUnrouted"]


def test_unrouted_alerts_are_a_condition_and_an_event_not_a_failure(
    cluster: ClusterEmulator, kubectl: Kubectl
) -> None:
    with running_operator(cluster.url):
        kubectl.create(POLICY, copy.deepcopy(PAGE_ONLY))
        policy = eventually(lambda: settled(kubectl, "False"), what="Ready, Routed=False")
        (event,) = eventually(lambda: unrouted_events(kubectl), what="a Warning event")

        kubectl.merge_patch(POLICY, NAMESPACE, NAME, {"spec": {"routing": {"receiver": "oncall"}}})
        fixed = eventually(lambda: settled(kubectl, "True"), what="Routed=True once routed")
    routed = condition(policy, "Routed")
    assert routed["reason"] == "AlertsUnrouted"
    for alert in (
        "CheckoutDown (severity=critical)",
        "LumenSLOErrorBudgetBurn (slo=availability, tier=page, severity=critical)",
        "LumenSLOErrorBudgetBurn (slo=availability, tier=ticket, severity=warning)",
    ):
        assert alert in routed["message"]
    assert {c["kind"] for c in policy["status"]["children"]} == {
        "PrometheusRule",
        "AlertmanagerConfig",
    }, "the objects are applied all the same"
    assert event["type"] == "Warning"
    assert event["message"] == routed["message"]
    assert event["involvedObject"]["uid"] == policy["metadata"]["uid"]
    assert condition(fixed, "Routed")["reason"] == "AllAlertsRouted"
    assert len(unrouted_events(kubectl)) == 1, "no new event once routed"
