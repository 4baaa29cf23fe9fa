"""The operator end to end: kopf and the reconcile engine against the emulated API server.

Every scenario runs the real ``run_operator`` (as ``lumen-operator`` does) in a thread and acts on
the cluster over HTTP, as a user with kubectl would.
"""

from __future__ import annotations

import base64
import copy
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import kopf
import pytest
import yaml
from kopf._core.engines import peering as kopf_peering

from lumen_alerting.operator.kinds import (
    ALERTMANAGER_CONFIG,
    DEPLOYMENT,
    EVENT,
    NETWORK_POLICY,
    POLICY,
    PROMETHEUS_RULE,
    RENDERED_KINDS,
    SECRET,
    SERVICE,
    SERVICE_MONITOR,
)
from lumen_alerting.operator.rbac import PEERING_GROUP, grants_of, operator_rules, peering_rules
from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.render import render_policy
from lumen_alerting.render.objects import POLICY_LABEL
from tests.support.kube_api import ClusterEmulator
from tests.support.operator_run import (
    TEST_CONFIG,
    Kubectl,
    LogRecorder,
    OperatorThread,
    condition,
    kopf_done,
    running_operator,
)
from tests.support.polling import eventually
from tests.support.schemas import REPO, validate_object

pytestmark = pytest.mark.timeout(120)

NAMESPACE = "lumen"
NAME = "gateway"
GATEWAY = yaml.safe_load((REPO / "examples" / "gateway.yaml").read_text())
# The gateway example with the exporter's state on a claim: it renders every kind Lumen writes.
EVERY_KIND = copy.deepcopy(GATEWAY)
EVERY_KIND["spec"]["exporter"]["persistence"] = {"enabled": True}


def resource_key(kind: Any) -> str:
    return f"{kind.api_version}/{kind.plural}"


@pytest.fixture()
def kubectl(cluster: ClusterEmulator) -> Iterator[Kubectl]:
    client = Kubectl(cluster.url)
    yield client
    client.close()


@pytest.fixture()
def kopf_log() -> Iterator[LogRecorder]:
    import logging

    recorder = LogRecorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    yield recorder
    root.removeHandler(recorder)


def ready(kubectl: Kubectl, generation: int | None = None) -> dict[str, Any] | None:
    """The policy once Ready=True for the given (default: current) generation."""
    policy = kubectl.policy(NAMESPACE, NAME)
    if policy is None or condition(policy, "Ready").get("status") != "True":
        return None
    wanted = generation or policy["metadata"]["generation"]
    if policy["status"].get("observedGeneration") != wanted:
        return None
    return policy


def expected_children(manifest: dict[str, Any]) -> set[tuple[str, str]]:
    rendered = render_policy(policy_from_manifest(manifest))
    return {(obj["kind"], obj["metadata"]["name"]) for obj in rendered}


def create_gateway(kubectl: Kubectl, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    kubectl.create(POLICY, copy.deepcopy(manifest or GATEWAY))
    return eventually(lambda: ready(kubectl), what="policy Ready")


def patch_spec(kubectl: Kubectl, spec: dict[str, Any]) -> int:
    patched = kubectl.merge_patch(POLICY, NAMESPACE, NAME, {"spec": spec})
    generation: int = patched["metadata"]["generation"]
    return generation


# --- create -------------------------------------------------------------------------------------


def test_create_applies_every_child_owned_and_labelled(
    cluster: ClusterEmulator, kubectl: Kubectl, kopf_log: LogRecorder
) -> None:
    with running_operator(cluster.url):
        policy = create_gateway(kubectl)
    uid = policy["metadata"]["uid"]
    children = kubectl.children(NAMESPACE, NAME)
    secret_name = f"lumen-{NAME}-threader"
    assert set(children) == expected_children(GATEWAY) | {("Secret", secret_name)}
    for (kind, name), obj in children.items():
        meta = obj["metadata"]
        assert meta["labels"][POLICY_LABEL] == NAME
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "lumen-operator"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "lumen.dev/v1alpha1",
                "kind": "LumenAlertPolicy",
                "name": NAME,
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], f"{kind}/{name}"
        validate_object(_without_server_fields(obj))

    tokens = {
        k: base64.b64decode(v).decode()
        for k, v in children[("Secret", secret_name)]["data"].items()
    }
    assert set(tokens) == {"webhook-token", "admin-token"}
    assert all(len(token) >= 40 for token in tokens.values())
    assert tokens["webhook-token"] != tokens["admin-token"]

    status = policy["status"]
    assert status["observedGeneration"] == policy["metadata"]["generation"] == 1
    assert condition(policy, "Valid")["status"] == "True"
    assert condition(policy, "Ready")["reason"] == "Applied"
    assert {(c["kind"], c["name"]) for c in status["children"]} == expected_children(GATEWAY)
    # gateway.yaml: 12 preset alerts, plus 6 about its own threader (4) and exporter (2).
    assert status["rules"] == 12 + 6 and status["slos"] == 0
    assert "finalizers" in policy["metadata"]
    assert policy["spec"] == GATEWAY["spec"]
    assert "annotations" not in policy["metadata"], "the operator must not write annotations"
    assert "labels" not in policy["metadata"], "the operator must not write labels"
    assert kopf_log.errors() == []


def _without_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(obj)
    for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"):
        clean["metadata"].pop(key, None)
    clean.pop("status", None)
    return clean


# --- update -------------------------------------------------------------------------------------


def test_update_applies_changes_and_prunes_what_is_no_longer_rendered(
    cluster: ClusterEmulator, kubectl: Kubectl, kopf_log: LogRecorder
) -> None:
    with running_operator(cluster.url):
        create_gateway(kubectl)
        first_children = kubectl.children(NAMESPACE, NAME)
        spec = copy.deepcopy(GATEWAY["spec"])
        spec["slos"] = [
            {
                "name": "availability",
                "objective": 99.5,
                "sli": {
                    "ratio": {
                        "errors": 'sum(rate(http_requests_total{code=~"5.."}[{{window}}]))',
                        "total": "sum(rate(http_requests_total[{{window}}]))",
                    }
                },
            }
        ]
        spec["routing"]["routes"] = [
            r for r in spec["routing"]["routes"] if r["receiver"] != "slack-warnings"
        ]
        spec["routing"]["receivers"] = [
            r for r in spec["routing"]["receivers"] if r["name"] != "slack-warnings"
        ]
        spec["exporter"] = {"enabled": False}
        generation = kubectl.merge_patch(POLICY, NAMESPACE, NAME, {"spec": spec})["metadata"][
            "generation"
        ]
        policy = eventually(lambda: ready(kubectl, generation), what="generation 2 Ready")

    updated = {**GATEWAY, "spec": spec}
    children = kubectl.children(NAMESPACE, NAME)
    secret = ("Secret", f"lumen-{NAME}-threader")
    assert children[secret]["data"] == first_children[secret]["data"], "tokens never rotate"
    assert set(children) == expected_children(updated) | {("Secret", f"lumen-{NAME}-threader")}
    assert not any(name.endswith("-exporter") for _, name in children)
    rules = children[("PrometheusRule", f"lumen-{NAME}")]["spec"]["groups"]
    assert any(
        rule.get("labels", {}).get("slo") == "availability" for g in rules for rule in g["rules"]
    )
    receivers = children[("AlertmanagerConfig", f"lumen-{NAME}")]["spec"]["receivers"]
    assert "slack-warnings" not in {r["name"] for r in receivers}
    assert policy["status"]["slos"] == 1
    assert {(c["kind"], c["name"]) for c in policy["status"]["children"]} == expected_children(
        updated
    )
    assert kopf_log.errors() == []


# --- invalid ------------------------------------------------------------------------------------


def test_invalid_update_reports_and_leaves_children_untouched(
    cluster: ClusterEmulator, kubectl: Kubectl
) -> None:
    with running_operator(cluster.url, drift_interval=1.0) as operator:
        create_gateway(kubectl)
        before = kubectl.children(NAMESPACE, NAME)
        writes_before = _child_writes(cluster)
        generation = patch_spec(
            kubectl, {"rules": [{"alert": "Broken", "expr": "rate(x[5m]", "severity": "critical"}]}
        )

        def invalid() -> dict[str, Any] | None:
            policy = kubectl.policy(NAMESPACE, NAME)
            valid = condition(policy, "Valid")
            if valid.get("status") == "False" and valid.get("observedGeneration") == generation:
                assert policy is not None  # it has a Valid condition
                return policy if kopf_done(policy) else None
            return None

        policy = eventually(invalid, what="Valid=False, and kopf done with the spec")
        eventually(lambda: _events(kubectl, "InvalidSpec"), what="a Warning event")
        time.sleep(3)  # three drift checks of the same invalid spec: no new event, no writes
        events = _events(kubectl, "InvalidSpec")
        assert kubectl.policy(NAMESPACE, NAME) == policy, "an unchanged verdict is not rewritten"
        assert kubectl.children(NAMESPACE, NAME) == before, "children must stay byte-identical"
        assert _child_writes(cluster) == writes_before
        assert operator.metrics.reconciles.labels("invalid")._value.get() >= 3, "timer ran"

        fixed = patch_spec(kubectl, {"rules": []})
        healed = eventually(lambda: ready(kubectl, fixed), what="Ready again once fixed")
    assert "spec.rules[0].expr" in condition(policy, "Valid")["message"]
    assert condition(policy, "Ready")["status"] == "False"
    assert policy["status"]["observedGeneration"] == generation
    assert len(events) == 1
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["uid"] == policy["metadata"]["uid"]
    assert "spec.rules[0].expr" in events[0]["message"]
    assert condition(healed, "Valid")["status"] == "True"
    assert (
        condition(healed, "Valid")["lastTransitionTime"]
        >= condition(policy, "Valid")["lastTransitionTime"]
    )


def _events(kubectl: Kubectl, reason: str) -> list[dict[str, Any]]:
    return [e for e in kubectl.list(EVENT, NAMESPACE) if e.get("reason") == reason]


def _child_writes(cluster: ClusterEmulator, since: int = 0) -> list[Any]:
    """Writes to children among the API calls from the ``since``-th on."""
    writes = {"create", "update", "patch", "delete"}
    plurals = {kind.plural for kind in (*RENDERED_KINDS, SECRET)}
    return [c for c in cluster.calls()[since:] if c.verb in writes and c.plural in plurals]


# --- delete -------------------------------------------------------------------------------------


def test_delete_leaves_children_to_the_garbage_collector(
    cluster: ClusterEmulator, kubectl: Kubectl
) -> None:
    with running_operator(cluster.url):
        policy = create_gateway(kubectl)
        uid = policy["metadata"]["uid"]
        kubectl.delete(POLICY, NAMESPACE, NAME)
        eventually(lambda: kubectl.policy(NAMESPACE, NAME) is None, what="policy gone")
    # What Kubernetes' garbage collector relies on: every child names the policy as its
    # controlling owner, by uid, in the same namespace, and that uid no longer exists.
    orphans = kubectl.children(NAMESPACE, NAME)
    assert orphans, "the emulator has no GC: the children are still there"
    for obj in orphans.values():
        owners = obj["metadata"]["ownerReferences"]
        assert [(o["uid"], o["controller"], o["blockOwnerDeletion"]) for o in owners] == [
            (uid, True, True)
        ]
        assert obj["metadata"]["namespace"] == NAMESPACE
    collected = cluster.collect_garbage()
    assert {(key[0], key[2]) for key in collected} >= {
        (resource_key(SECRET), f"lumen-{NAME}-threader"),
        (resource_key(PROMETHEUS_RULE), f"lumen-{NAME}"),
    }
    assert kubectl.children(NAMESPACE, NAME) == {}


# --- drift --------------------------------------------------------------------------------------


def test_drift_is_corrected_by_the_timer(cluster: ClusterEmulator, kubectl: Kubectl) -> None:
    with running_operator(cluster.url, drift_interval=1.0):
        create_gateway(kubectl)
        original = kubectl.children(NAMESPACE, NAME)
        rule = original[("PrometheusRule", f"lumen-{NAME}")]
        kubectl.merge_patch(
            PROMETHEUS_RULE, NAMESPACE, rule["metadata"]["name"], {"spec": {"groups": []}}
        )
        kubectl.delete(SERVICE, NAMESPACE, f"lumen-{NAME}-threader")
        kubectl.merge_patch(
            DEPLOYMENT, NAMESPACE, f"lumen-{NAME}-exporter", {"spec": {"replicas": 5}}
        )
        kubectl.delete(SECRET, NAMESPACE, f"lumen-{NAME}-threader")

        def restored() -> bool:
            now = kubectl.children(NAMESPACE, NAME)
            return set(now) == set(original) and all(
                now[key].get("spec") == original[key].get("spec") for key in original
            )

        eventually(restored, timeout=20, what="drift corrected")
    secret = kubectl.get(SECRET, NAMESPACE, f"lumen-{NAME}-threader")
    assert secret is not None
    old_secret = original[("Secret", f"lumen-{NAME}-threader")]
    assert set(secret["data"]) == set(old_secret["data"]) == {"webhook-token", "admin-token"}
    assert secret["data"] != old_secret["data"], "a deleted token Secret gets new tokens"


# --- restart ------------------------------------------------------------------------------------


def test_restart_converges_without_writes_or_flapping(
    cluster: ClusterEmulator, kubectl: Kubectl, kopf_log: LogRecorder
) -> None:
    with running_operator(cluster.url):
        create_gateway(kubectl)
        second = copy.deepcopy(GATEWAY)
        second["metadata"]["name"] = "gateway-two"
        kubectl.create(POLICY, second)
        eventually(
            lambda: (
                condition(kubectl.policy(NAMESPACE, "gateway-two"), "Ready").get("status") == "True"
            ),
            what="second policy Ready",
        )
    before = {name: kubectl.policy(NAMESPACE, name) for name in (NAME, "gateway-two")}
    children_before = kubectl.children(NAMESPACE, NAME)
    calls_before = len(cluster.calls())

    with running_operator(cluster.url) as operator:
        eventually(
            lambda: operator.metrics.reconciles.labels("unchanged")._value.get() >= 2,
            what="both policies resumed",
        )
    after_calls = cluster.calls()[calls_before:]
    writes = [c for c in after_calls if c.verb in {"create", "patch", "delete", "update"}]
    child_plurals = {kind.plural for kind in (*RENDERED_KINDS, SECRET)}
    assert [c for c in writes if c.plural in child_plurals] == []
    assert kubectl.children(NAMESPACE, NAME) == children_before
    for name, policy in before.items():
        now = kubectl.policy(NAMESPACE, name)
        assert now is not None and policy is not None, name
        assert now["status"]["conditions"] == policy["status"]["conditions"], name
    status_writes = [c for c in writes if c.plural == POLICY.plural]
    assert status_writes == [], f"restart wrote to policies: {status_writes}"
    assert kopf_log.errors() == []


# --- failures -----------------------------------------------------------------------------------


def test_transient_errors_are_retried(cluster: ClusterEmulator, kubectl: Kubectl) -> None:
    """503 three times and a 429 with Retry-After: retried with backoff; from the third failed
    attempt the status says Retrying; then everything converges."""
    cluster.fail("PATCH", resource_key(PROMETHEUS_RULE), status=503, times=3)
    cluster.fail("PATCH", resource_key(SERVICE_MONITOR), status=429, times=1, retry_after=1)
    with running_operator(cluster.url) as operator:
        kubectl.create(POLICY, copy.deepcopy(GATEWAY))
        retrying = eventually(
            lambda: (
                condition(kubectl.policy(NAMESPACE, NAME), "Ready").get("reason") == "Retrying"
                and kubectl.policy(NAMESPACE, NAME)
            ),
            what="Ready=False Retrying",
        )
        policy = eventually(lambda: ready(kubectl), timeout=20, what="Ready after the retries")
        assert operator.metrics.reconciles.labels("retry")._value.get() == 3
    assert "503" in condition(retrying, "Ready")["message"]
    assert f"PrometheusRule/lumen-{NAME}" in condition(retrying, "Ready")["message"]
    assert condition(policy, "Ready")["reason"] == "Applied"
    assert ("PrometheusRule", f"lumen-{NAME}") in kubectl.children(NAMESPACE, NAME)
    failures = [c for c in cluster.calls() if c.status in (429, 503)]
    assert len(failures) == 4


def _sets_ready(body: Any) -> bool:
    """A status patch that turns Ready to True."""
    conditions = ((body or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def test_status_converges_after_an_outage_even_if_its_write_is_lost(
    cluster: ClusterEmulator, kubectl: Kubectl
) -> None:
    """An outage of PrometheusRule writes makes the policy Retrying; when it ends, the status
    write that would bring Ready=True back fails every attempt kopf's own client makes
    (#8 item 11). The policy must still show Ready=True again, not Retrying forever."""
    delays = (0.1, 0.2, 0.3)  # kopf gives up a call after len(delays) + 1 attempts
    with running_operator(cluster.url, drift_interval=1.0, retry_delays=delays):
        create_gateway(kubectl)
        cluster.fail("PATCH", resource_key(PROMETHEUS_RULE), status=500, times=1_000_000)
        rule = cluster.get(resource_key(PROMETHEUS_RULE), NAMESPACE, f"lumen-{NAME}")
        assert rule is not None
        rule["spec"]["groups"] = []  # drift, so that the next resync must write
        cluster.put(resource_key(PROMETHEUS_RULE), rule)
        eventually(
            lambda: condition(kubectl.policy(NAMESPACE, NAME), "Ready").get("reason") == "Retrying",
            what="Ready=False Retrying during the outage",
        )
        cluster.fail(
            "PATCH",
            resource_key(POLICY),
            subresource="status",
            status=500,
            times=len(delays) + 1,
            when=_sets_ready,
        )
        cluster.lift("PATCH", resource_key(PROMETHEUS_RULE))
        policy = eventually(lambda: ready(kubectl), timeout=30, what="Ready=True after the outage")
    assert condition(policy, "Ready")["reason"] == "Applied"
    lost = [c for c in cluster.calls() if c.subresource == "status" and c.status == 500]
    assert len(lost) == len(delays) + 1, "the Ready write failed as injected"
    live_rule = kubectl.get(PROMETHEUS_RULE, NAMESPACE, f"lumen-{NAME}")
    assert live_rule is not None
    assert live_rule["spec"]["groups"], "the children were re-applied"


def test_permanent_errors_show_in_status_and_prune_nothing(
    cluster: ClusterEmulator, kubectl: Kubectl
) -> None:
    with running_operator(cluster.url):
        create_gateway(kubectl)
        cluster.fail("PATCH", resource_key(ALERTMANAGER_CONFIG), status=422, times=100)
        generation = patch_spec(
            kubectl,
            {
                "exporter": {"enabled": False},
                "labels": {"team": "x"},
                "routing": {"groupWait": "10s"},
            },
        )

        def failed() -> dict[str, Any] | None:
            policy = kubectl.policy(NAMESPACE, NAME)
            ready_condition = condition(policy, "Ready")
            if ready_condition.get("reason") == "ApplyFailed" and (
                ready_condition.get("observedGeneration") == generation
            ):
                return policy
            return None

        policy = eventually(failed, what="Ready=False ApplyFailed")
        events = eventually(
            lambda: [e for e in kubectl.list(EVENT, NAMESPACE) if e.get("reason") == "ApplyFailed"],
            what="a Warning event",
        )
    assert f"AlertmanagerConfig/lumen-{NAME}" in condition(policy, "Ready")["message"]
    assert condition(policy, "Valid")["status"] == "True"
    assert events[0]["type"] == "Warning"
    children = kubectl.children(NAMESPACE, NAME)
    assert ("Deployment", f"lumen-{NAME}-exporter") in children, "nothing pruned after a failure"
    rule = children[("PrometheusRule", f"lumen-{NAME}")]
    assert rule["spec"]["groups"][0]["rules"][0]["labels"]["team"] == "x", "the rest applied"


@pytest.mark.parametrize("beyond", [1, 80], ids=["just-over", "kopf-copy-refused-by-etcd"])
def test_a_policy_too_big_to_store_is_refused_and_its_children_stay(
    cluster: ClusterEmulator, kubectl: Kubectl, beyond: int
) -> None:
    """#8 item 12: the spec grows past what etcd would store with kopf's copy of it: just over
    the estimate, and so far over that etcd refuses kopf's copy (the operator's own small
    status write still says why)."""
    from tests.render.test_sizes import big_policy, largest_fitting

    with running_operator(cluster.url):
        create_gateway(kubectl)
        children_before = kubectl.children(NAMESPACE, NAME)
        generation = patch_spec(kubectl, big_policy(largest_fitting() + beyond)["spec"])

        def refused() -> dict[str, Any] | None:
            policy = kubectl.policy(NAMESPACE, NAME)
            valid = condition(policy, "Valid")
            if valid.get("status") == "False" and valid.get("observedGeneration") == generation:
                return policy
            return None

        policy = eventually(refused, timeout=30, what="Valid=False for the oversized spec")
    message = condition(policy, "Valid")["message"]
    assert "spec: the stored policy would take about " in message
    assert "over the API server's limit of 1572864 bytes (1.50 MiB)" in message
    assert condition(policy, "Ready")["reason"] == "InvalidSpec"
    assert kubectl.children(NAMESPACE, NAME) == children_before, "children untouched"


def test_a_policy_just_under_the_size_limit_applies(
    cluster: ClusterEmulator, kubectl: Kubectl
) -> None:
    """What validates applies: etcd's limit (enforced by the emulator) holds the policy with
    kopf's copy of its spec, and every child."""
    from tests.render.test_sizes import big_policy, largest_fitting

    def kopf_copy() -> dict[str, Any] | None:
        live = kubectl.policy(NAMESPACE, NAME)
        assert live is not None
        kopf: dict[str, Any] | None = live["status"].get("kopf")
        return kopf

    with running_operator(cluster.url):
        policy = create_gateway(kubectl, big_policy(largest_fitting()))
        assert "lastHandledConfiguration" in eventually(kopf_copy, what="kopf's copy")
    assert condition(policy, "Ready")["reason"] == "Applied"
    rule = kubectl.get(PROMETHEUS_RULE, NAMESPACE, f"lumen-{NAME}")
    assert rule is not None
    assert sum(len(group["rules"]) for group in rule["spec"]["groups"]) > largest_fitting()
    assert [c for c in cluster.calls() if c.status >= 500] == []


def test_namespaced_operator_ignores_other_namespaces(
    cluster: ClusterEmulator, kubectl: Kubectl
) -> None:
    elsewhere = copy.deepcopy(GATEWAY)
    elsewhere["metadata"]["namespace"] = "other"
    # kopf follows Namespace objects to find the watched namespaces, as in a real cluster.
    kubectl.create_namespace(NAMESPACE)
    kubectl.create_namespace("other")
    with running_operator(cluster.url, namespaces=(NAMESPACE,)):
        kubectl.create(POLICY, elsewhere)
        create_gateway(kubectl)
    assert kubectl.children("other", NAME) == {}
    assert "status" not in (kubectl.policy("other", NAME) or {})


# --- permissions --------------------------------------------------------------------------------


def test_rbac_rules_are_exactly_the_calls_made(cluster: ClusterEmulator, kubectl: Kubectl) -> None:
    """One full life cycle; every (group, resource, verb) it used must be granted, and nothing
    more may be granted. Namespaced mode: it makes every call the cluster-wide mode makes, and
    follows Namespace objects besides."""
    kubectl.create_namespace(NAMESPACE)
    with running_operator(cluster.url, drift_interval=1.0, namespaces=(NAMESPACE,)):
        create_gateway(kubectl, EVERY_KIND)
        assert set(kubectl.children(NAMESPACE, NAME)) >= expected_children(EVERY_KIND)
        # Prune every kind: no rules and no routing (AlertmanagerConfig), no exporter (ConfigMap,
        # PersistentVolumeClaim, NetworkPolicy, Deployment, Service, ServiceMonitor)...
        patch_spec(kubectl, {"exporter": {"enabled": False}, "presets": None, "routing": None})
        eventually(lambda: ready(kubectl), what="update Ready")
        assert {kind for kind, _ in kubectl.children(NAMESPACE, NAME)} == {
            "PrometheusRule",  # the threader's own alerts
            "NetworkPolicy",
            "Deployment",
            "Service",
            "ServiceMonitor",
            "Secret",
        }
        # ...then no threader: its alerts go with it (PrometheusRule). The Secret stays (owned).
        patch_spec(kubectl, {"threader": {"enabled": False}})
        eventually(lambda: ready(kubectl), what="update Ready")
        assert {kind for kind, _ in kubectl.children(NAMESPACE, NAME)} == {"Secret"}
        patch_spec(kubectl, {"rules": [{"alert": "X", "expr": "up ==", "severity": "page"}]})
        eventually(
            lambda: [e for e in kubectl.list(EVENT, NAMESPACE) if e.get("reason") == "InvalidSpec"],
            what="invalid",
        )
        kubectl.delete(POLICY, NAMESPACE, NAME)
        eventually(lambda: kubectl.policy(NAMESPACE, NAME) is None, what="deleted")
    test_client = "python-httpx"  # our own Kubectl calls are not the operator's
    used = set()
    for call in cluster.calls():
        if call.user_agent and call.user_agent.startswith(test_client):
            continue
        if call.plural is None:  # discovery: allowed to every authenticated user
            continue
        resource = f"{call.plural}/{call.subresource}" if call.subresource else call.plural
        used.add((call.group, resource, call.verb))
        if call.verb == "patch" and call.status == 201:  # apply that created the object
            used.add((call.group, resource, "create"))
    assert used == grants_of(operator_rules())


def test_rbac_file_is_up_to_date() -> None:
    import tools.operator_rbac as generator

    assert (REPO / "files" / "operator-rbac.yaml").read_text() == generator.document(), (
        "run `make rbac`"
    )


def test_the_scenario_policy_renders_every_kind() -> None:
    assert {kind for kind, _ in expected_children(EVERY_KIND)} == {k.kind for k in RENDERED_KINDS}
    assert ("PersistentVolumeClaim", f"lumen-{NAME}-exporter-state") in expected_children(
        EVERY_KIND
    )


# --- NetworkPolicies ----------------------------------------------------------------------------


def test_network_policies_follow_the_operators_flags(
    cluster: ClusterEmulator, kubectl: Kubectl, kopf_log: LogRecorder
) -> None:
    """Applied with the workloads by default; an operator restarted with
    ``--network-policies false`` prunes them and writes nothing else; one restarted with other
    peers puts them back with those peers."""
    threader, exporter = f"lumen-{NAME}-threader", f"lumen-{NAME}-exporter"

    def network_policies() -> dict[str, dict[str, Any]]:
        return {
            name: obj
            for (kind, name), obj in kubectl.children(NAMESPACE, NAME).items()
            if kind == NETWORK_POLICY.kind
        }

    with running_operator(cluster.url):
        create_gateway(kubectl)
    children = kubectl.children(NAMESPACE, NAME)
    assert set(network_policies()) == {threader, exporter}
    calls_before = len(cluster.calls())

    switched_off = replace(TEST_CONFIG.rendering, network_policies=False)
    with running_operator(cluster.url, rendering=switched_off):
        eventually(lambda: network_policies() == {}, what="NetworkPolicies pruned")
        eventually(lambda: ready(kubectl), what="Ready without them")
    writes = [(call.verb, call.plural, call.name) for call in _child_writes(cluster, calls_before)]
    assert sorted(writes) == [
        ("delete", NETWORK_POLICY.plural, exporter),
        ("delete", NETWORK_POLICY.plural, threader),
    ]
    assert kubectl.children(NAMESPACE, NAME) == {
        key: obj for key, obj in children.items() if key[0] != NETWORK_POLICY.kind
    }, "everything else untouched"

    no_prometheus = replace(TEST_CONFIG.rendering, prometheus_peers=())
    with running_operator(cluster.url, rendering=no_prometheus):
        eventually(lambda: set(network_policies()) == {threader, exporter}, what="back again")
    restored = network_policies()
    assert [rule["from"] for rule in restored[threader]["spec"]["ingress"]] == [
        list(no_prometheus.alertmanager_peers)
    ]
    assert "ingress" not in restored[exporter]["spec"], "the gateway's exporter: nobody left"
    for obj in restored.values():
        validate_object(_without_server_fields(obj))
    assert kopf_log.errors() == []


# --- two replicas -------------------------------------------------------------------------------


# kopf peers through one kind by its mode (see rbac.peering_rules): both modes are run.
PEERING_MODES = {  # clusterwide: (resource, kind, namespace of the peering object)
    True: ("kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", None),
    False: ("kopf.dev/v1/kopfpeerings", "KopfPeering", NAMESPACE),
}


@pytest.mark.timeout(300)  # the takeover may wait for the peering lifetime (below)
@pytest.mark.parametrize("clusterwide", [True, False], ids=["cluster-wide", "namespaced"])
def test_two_replicas_one_works_and_the_other_takes_over(
    cluster: ClusterEmulator, kubectl: Kubectl, clusterwide: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """kopf peering as documented, watching every namespace or with --namespace: the higher
    priority works, the other waits and takes over when the first stops; the peering calls are
    exactly the declared peering rules of that mode (clusterPeeringRules or
    namespacedPeeringRules), and with --namespace each is made in a watched namespace, as the
    chart's Role there grants it."""
    resource, kind, namespace = PEERING_MODES[clusterwide]
    for declared, declared_kind, in_namespace in PEERING_MODES.values():
        # Both kinds are served, as the chart's crds/ installs both: kopf picks by its mode.
        cluster.declare(declared, kind=declared_kind, namespaced=in_namespace is not None)
    metadata: dict[str, Any] = {"name": "lumen-operator"}
    if namespace is not None:
        kubectl.create_namespace(namespace)
        metadata["namespace"] = namespace
    cluster.put(resource, {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": metadata})
    settings = replace(
        TEST_CONFIG, standalone=False, namespaces=() if clusterwide else (NAMESPACE,)
    )
    leader = OperatorThread(cluster.url, replace(settings, priority=20)).start()
    follower = OperatorThread(cluster.url, replace(settings, priority=10)).start()
    try:
        eventually(
            lambda: len(_peers(cluster, resource, namespace)) == 2,
            what="both replicas in the peering",
        )
        create_gateway(kubectl)
        assert _reconciles(leader) >= 1
        assert _reconciles(follower) == 0, "the lower priority must wait"

        caplog.set_level(logging.INFO, logger=kopf_peering.__name__)
        calls_before_stop = len(cluster.calls())
        leader.stop()
        # A clean stop removes the leader from the peering at once; when a loaded machine delays
        # that, the follower still takes over once the leader's record expires (kopf's 60 s
        # lifetime, noticed at the follower's next peering event): wait past both.
        try:
            eventually(lambda: _reconciles(follower) >= 1, 180, what="the follower resumed")
        except AssertionError as timeout:
            # Seen once in CI, never reproduced in hundreds of runs: say what the follower saw.
            raise AssertionError(
                _takeover_report(cluster, kubectl, resource, namespace, calls_before_stop, caplog)
            ) from timeout
        generation = patch_spec(kubectl, {"labels": {"team": "after-failover"}})
        eventually(lambda: ready(kubectl, generation), what="the follower applied an update")
    finally:
        follower.stop()
        if leader._thread.is_alive():
            leader.stop()
    peering_calls = [
        call
        for call in cluster.calls()
        if call.group == PEERING_GROUP
        and call.plural  # not discovery
        and not (call.user_agent or "").startswith("python-httpx")
    ]
    used = {(call.group, call.plural, call.verb) for call in peering_calls}
    assert used == grants_of(peering_rules(clusterwide=clusterwide))
    assert {call.namespace for call in peering_calls} == {namespace}


@pytest.mark.parametrize("clusterwide", [True, False])
def test_peering_rules_are_on_the_peering_kind_kopf_selects(clusterwide: bool) -> None:
    """kopf's own choice of peering resources for a mode (kopf.dev's; the legacy zalando.org
    group is not installed by the chart) is what the rules of that mode grant."""
    settings = kopf.OperatorSettings()
    settings.peering.clusterwide = clusterwide
    selected = {
        (selector.group, selector.any_name)
        for selector in kopf_peering.guess_selectors(settings)
        if selector.group == PEERING_GROUP
    }
    granted = {
        (group, resource)
        for group, resource, _ in grants_of(peering_rules(clusterwide=clusterwide))
    }
    assert granted == selected


def _peers(cluster: ClusterEmulator, resource: str, namespace: str | None) -> dict[str, Any]:
    peering = cluster.get(resource, namespace, "lumen-operator") or {}
    return {k: v for k, v in (peering.get("status") or {}).items() if v}


def _takeover_report(
    cluster: ClusterEmulator,
    kubectl: Kubectl,
    resource: str,
    namespace: str | None,
    calls_before_stop: int,
    caplog: pytest.LogCaptureFixture,
) -> str:
    """What a failed takeover looked like: the peering record, the policy's kopf status, kopf's
    peering decisions and the API calls since the leader stopped."""
    policy = kubectl.get(POLICY, NAMESPACE, NAME) or {}
    kopf_status = policy.get("status", {}).get("kopf") or {}
    lines = [
        "the follower did not resume the policy within 180 s",
        f"peering status: {_peers(cluster, resource, namespace)}",
        f"policy status.kopf keys: {sorted(kopf_status)}, progress: {kopf_status.get('progress')}",
        "kopf peering log:",
        *(
            f"  {record.created:.3f} {record.threadName} {record.getMessage()}"
            for record in caplog.records
            if record.name == kopf_peering.__name__
        ),
        "API calls since the stop (last 40):",
        *(
            f"  {call.verb} {call.resource} {call.name or ''} -> {call.status} [{call.user_agent}]"
            for call in cluster.calls()[calls_before_stop:][-40:]
        ),
    ]
    return "\n".join(lines)


def _reconciles(operator: OperatorThread) -> float:
    return sum(
        sample.value
        for metric in operator.metrics.reconciles.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
