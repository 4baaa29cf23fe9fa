"""The chart's RBAC grants exactly what the operator declares (``operator_rules()``, plus
``peering_rules()`` of its scope when replicas peer): cluster-wide in one ClusterRole, or per
watched namespace in Roles with only cluster-scoped resources left in a ClusterRole."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lumen_alerting.operator.rbac import Grant, grants_of, operator_rules, peering_rules
from tests.chart.helm import NAMESPACE, Rendered, template

# Resources that are not namespaced, so that no Role can grant them. Written out here rather
# than read from the chart, so that a chart that put one of them in a Role fails.
CLUSTER_SCOPED = {
    ("", "namespaces"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("kopf.dev", "clusterkopfpeerings"),
}
WATCHED = ["shop", "payments"]


def declared_rules(replicas: int, *, clusterwide: bool) -> list[dict[str, Any]]:
    """What the operator needs: its own rules, and those of its peering mode when it peers."""
    peering = peering_rules(clusterwide=clusterwide) if replicas > 1 else []
    return operator_rules() + peering


def declared(replicas: int, *, clusterwide: bool) -> set[Grant]:
    return grants_of(declared_rules(replicas, clusterwide=clusterwide))


def is_cluster_scoped(grant: Grant) -> bool:
    return (grant[0], grant[1]) in CLUSTER_SCOPED


def bound_to_operator(rendered: Rendered, binding_kind: str, role: dict[str, Any]) -> None:
    """The role is bound to the operator's ServiceAccount, the one the Deployment runs as."""
    deployment = rendered.one("Deployment", "-operator")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = role["metadata"].get("namespace")
    (binding,) = [
        b
        for b in rendered.of_kind(binding_kind)
        if b["roleRef"]["name"] == role["metadata"]["name"]
        and b["metadata"].get("namespace") == namespace
    ]
    assert binding["roleRef"]["kind"] == role["kind"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
    ]


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_cluster_wide_rbac_is_the_declared_rules(replicas: int) -> None:
    rendered = template(settings=[f"replicaCount={replicas}"])
    (role,) = rendered.of_kind("ClusterRole")
    assert not rendered.of_kind("Role")
    assert grants_of(role["rules"]) == declared(replicas, clusterwide=True)
    # Same rules, same shape as files/operator-rbac.yaml: nothing merged or reordered.
    assert role["rules"] == declared_rules(replicas, clusterwide=True)
    bound_to_operator(rendered, "ClusterRoleBinding", role)


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_namespaced_rbac_is_a_role_per_watched_namespace(replicas: int) -> None:
    rendered = template(
        settings=[f"replicaCount={replicas}", f"watchNamespaces={json.dumps(WATCHED)}"]
    )
    roles = rendered.of_kind("Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(WATCHED)
    (cluster_role,) = rendered.of_kind("ClusterRole")
    wanted = declared(replicas, clusterwide=False)
    assert grants_of(cluster_role["rules"]) == {g for g in wanted if is_cluster_scoped(g)}
    for role in roles:
        assert grants_of(role["rules"]) == {g for g in wanted if not is_cluster_scoped(g)}
        bound_to_operator(rendered, "RoleBinding", role)
    bound_to_operator(rendered, "ClusterRoleBinding", cluster_role)


def test_no_rbac_when_disabled() -> None:
    rendered = template(settings=["rbac.create=false"])
    kinds = {obj["kind"] for obj in rendered.objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def test_the_comparison_sees_a_missing_verb() -> None:
    """A rule set short of one verb is not equal to the declared one."""
    rules = operator_rules()
    rules[0] = dict(rules[0], verbs=rules[0]["verbs"][1:] or ["get"])
    assert grants_of(rules) != declared(1, clusterwide=True)
