"""The chart's RBAC grants exactly what the operator declares (``operator_rules()``, plus
``peering_rules()`` when replicas peer): cluster-wide in one ClusterRole, or per watched
namespace in Roles with only cluster-scoped resources left in a ClusterRole."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from lumen_alerting.operator.rbac import operator_rules, peering_rules
from tests.chart.helm import NAMESPACE, Rendered, template

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)

# Resources that are not namespaced, so that no Role can grant them. Written out here rather
# than read from the chart, so that a chart that put one of them in a Role fails.
CLUSTER_SCOPED = {
    ("", "namespaces"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("kopf.dev", "clusterkopfpeerings"),
}
WATCHED = ["shop", "payments"]


def grants(rules: Iterable[dict[str, Any]]) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def declared(peering: bool) -> set[Grant]:
    return grants(operator_rules() + (peering_rules() if peering else []))


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


@pytest.mark.parametrize("replicas", [1, 2])
def test_cluster_wide_rbac_is_the_declared_rules(replicas: int) -> None:
    rendered = template(settings=[f"replicaCount={replicas}"])
    (role,) = rendered.of_kind("ClusterRole")
    assert not rendered.of_kind("Role")
    assert grants(role["rules"]) == declared(peering=replicas > 1)
    # Same rules, same shape as files/operator-rbac.yaml: nothing merged or reordered.
    expected = operator_rules() + (peering_rules() if replicas > 1 else [])
    assert role["rules"] == expected
    bound_to_operator(rendered, "ClusterRoleBinding", role)


@pytest.mark.parametrize("replicas", [1, 2])
def test_namespaced_rbac_is_a_role_per_watched_namespace(replicas: int) -> None:
    rendered = template(
        settings=[f"replicaCount={replicas}", f"watchNamespaces={json.dumps(WATCHED)}"]
    )
    roles = rendered.of_kind("Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(WATCHED)
    (cluster_role,) = rendered.of_kind("ClusterRole")
    wanted = declared(peering=replicas > 1)
    assert grants(cluster_role["rules"]) == {g for g in wanted if is_cluster_scoped(g)}
    for role in roles:
        assert grants(role["rules"]) == {g for g in wanted if not is_cluster_scoped(g)}
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
    assert grants(rules) != declared(peering=False)
