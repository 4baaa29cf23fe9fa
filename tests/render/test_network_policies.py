"""The NetworkPolicies of threaders and exporters: what they select, which port they open to
whom, the flag that turns them off, and the peer lists read from JSON.

Besides the shape of the objects, ``admitted`` below evaluates the rendered policies the way a
CNI does (ingress only, by pod and namespace labels and port), so the tests can say in plain
terms who reaches what: Alertmanager the threader, Prometheus both, a CI pod the exporter only
while the pipeline is on, and nobody else either.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.operator.convergence import contains
from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.policy.model import Policy
from lumen_alerting.render import render_policy
from lumen_alerting.render.network_policies import parse_peers, peers_json
from lumen_alerting.render.objects import (
    DEFAULT_ALERTMANAGER_PEERS,
    DEFAULT_PIPELINE_PEERS,
    DEFAULT_PROMETHEUS_PEERS,
    Peer,
    RenderOptions,
)
from tests.support.schemas import REPO, validate_object

Manifest = dict[str, Any]
POLICY_FILES = sorted(
    [*(REPO / "tests" / "policies").glob("workloads-*.yaml"), *(REPO / "examples").glob("*.yaml")]
)
UID = "5d0f3c1e-2b7a-4e0c-8f61-1a2b3c4d5e6f"
# Distinct peer lists, so a list reaching the wrong port or service shows.
CUSTOM = RenderOptions(
    alertmanager_peers=({"namespaceSelector": {"matchLabels": {"team": "am"}}},),
    prometheus_peers=({"ipBlock": {"cidr": "10.9.0.0/16", "except": ["10.9.8.0/24"]}},),
    pipeline_peers=(
        {
            "podSelector": {
                "matchExpressions": [{"key": "ci", "operator": "In", "values": ["runner"]}]
            }
        },
    ),
)


def load(path: Path, uid: str = UID) -> Policy:
    return dataclasses.replace(policy_from_manifest(yaml.safe_load(path.read_text())), uid=uid)


def named(name: str) -> Path:
    (path,) = [p for p in POLICY_FILES if p.name == name]
    return path


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] == kind]


def by_name(objects: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {obj["metadata"]["name"]: obj for obj in of_kind(objects, kind)}


def policy_files() -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in POLICY_FILES]


# --- a CNI's view of ingress ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str]
    ip: str = "192.0.2.10"  # outside every CIDR of these tests unless one names it


# prometheus-operator labels the pods it runs like this (kube-prometheus-stack's default names);
# the operator's own sources list them as the pod selector labels of its StatefulSets.
ALERTMANAGER = Pod(
    "monitoring",
    {
        "app.kubernetes.io/name": "alertmanager",
        "app.kubernetes.io/managed-by": "prometheus-operator",
        "app.kubernetes.io/instance": "kube-prometheus-stack-alertmanager",
        "alertmanager": "kube-prometheus-stack-alertmanager",
    },
)
PROMETHEUS = Pod(
    "monitoring",
    {
        "app.kubernetes.io/name": "prometheus",
        "app.kubernetes.io/managed-by": "prometheus-operator",
        "app.kubernetes.io/instance": "kube-prometheus-stack-prometheus",
        "prometheus": "kube-prometheus-stack-prometheus",
    },
)
NAMESPACE_LABELS = {"monitoring": {"kubernetes.io/metadata.name": "monitoring", "team": "am"}}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector against labels; ``{}`` selects everything."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def peer_admits(peer: dict[str, Any], source: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(source.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    namespace_labels = NAMESPACE_LABELS.get(
        source.namespace, {"kubernetes.io/metadata.name": source.namespace}
    )
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif source.namespace != policy_namespace:  # a podSelector alone: the policy's namespace
        return False
    return selects(peer.get("podSelector", {}), source.labels)


def admitted(
    policies: list[Manifest], target: Manifest, port: int, source: Pod, namespace: str
) -> bool:
    """Whether ``source`` may open a TCP connection to ``port`` of a pod of Deployment
    ``target``: allowed when no policy selects the pod, else when any rule of any selecting
    policy allows it (NetworkPolicies add up)."""
    labels = target["spec"]["template"]["metadata"]["labels"]
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == namespace and selects(p["spec"]["podSelector"], labels)
    ]
    if not selecting:
        return True
    return any(
        any(p["port"] == port and p.get("protocol", "TCP") == "TCP" for p in rule["ports"])
        # A rule without `from` admits every source.
        and (
            "from" not in rule or any(peer_admits(peer, source, namespace) for peer in rule["from"])
        )
        for policy in selecting
        for rule in policy["spec"].get("ingress", [])
    )


def http_port(deployment: Manifest) -> int:
    """The container port named ``http``: the one the Service targets and the ServiceMonitor
    scrapes (test_workloads holds those two to it)."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "http"]
    return int(port)


# --- the objects ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", policy_files())
def test_one_valid_policy_per_workload_selecting_exactly_its_pods(path: Path) -> None:
    objects = render_policy(load(path), RenderOptions(managed_by="lumen-operator"))
    deployments = by_name(objects, "Deployment")
    policies = by_name(objects, "NetworkPolicy")
    assert set(policies) == set(deployments)
    for name, network_policy in policies.items():
        validate_object(network_policy)
        spec = network_policy["spec"]
        assert spec["policyTypes"] == ["Ingress"] and "egress" not in spec
        own = deployments[name]
        assert spec["podSelector"] == own["spec"]["selector"]
        assert selects(spec["podSelector"], own["spec"]["template"]["metadata"]["labels"])
        for other_name, other in deployments.items():
            if other_name != name:
                assert not selects(
                    spec["podSelector"], other["spec"]["template"]["metadata"]["labels"]
                )
        meta = network_policy["metadata"]
        assert meta["labels"] == own["metadata"]["labels"]
        assert meta["ownerReferences"][0]["uid"] == UID
        # Only its own port is opened, to every listed peer.
        assert {p["port"] for rule in spec["ingress"] for p in rule["ports"]} == {http_port(own)}


def test_a_policy_selects_only_its_own_policys_pods() -> None:
    both = render_policy(load(named("workloads-memory-both.yaml")))
    other = load(named("workloads-memory-both.yaml"))
    other = dataclasses.replace(other, name="another")
    foreign = by_name(render_policy(other), "Deployment")
    for network_policy in of_kind(both, "NetworkPolicy"):
        for deployment in foreign.values():
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert not selects(network_policy["spec"]["podSelector"], labels)


def test_each_peer_list_opens_its_service_port_only() -> None:
    policy = load(named("workloads-memory-both.yaml"))
    assert policy.spec.exporter and not policy.spec.exporter.pipeline.enabled
    objects = render_policy(policy, CUSTOM)
    policies = by_name(objects, "NetworkPolicy")
    deployments = by_name(objects, "Deployment")
    threader = policies["lumen-both-threader"]["spec"]["ingress"]
    exporter = policies["lumen-both-exporter"]["spec"]["ingress"]
    threader_port = http_port(deployments["lumen-both-threader"])
    exporter_port = http_port(deployments["lumen-both-exporter"])
    assert threader_port != exporter_port
    # The threader: Alertmanager's notifications, and Prometheus on the same port for /metrics.
    assert threader == [
        rule(CUSTOM.alertmanager_peers, threader_port),
        rule(CUSTOM.prometheus_peers, threader_port),
    ]
    # The exporter: Prometheus only; the pipeline's peers are not let in while it is off.
    assert exporter == [rule(CUSTOM.prometheus_peers, exporter_port)]


def rule(peers: tuple[Peer, ...], port: int) -> dict[str, Any]:
    return {"from": list(peers), "ports": [{"port": port, "protocol": "TCP"}]}


def test_the_pipeline_peers_come_in_with_the_pipeline() -> None:
    policy = load(named("workloads-exporter-only.yaml"))
    assert policy.spec.exporter and policy.spec.exporter.pipeline.enabled
    (network_policy,) = of_kind(render_policy(policy, CUSTOM), "NetworkPolicy")
    assert [rule["from"] for rule in network_policy["spec"]["ingress"]] == [
        list(CUSTOM.prometheus_peers),
        list(CUSTOM.pipeline_peers),
    ]
    off = dataclasses.replace(
        policy,
        spec=dataclasses.replace(
            policy.spec,
            exporter=dataclasses.replace(
                policy.spec.exporter,
                pipeline=dataclasses.replace(policy.spec.exporter.pipeline, enabled=False),
            ),
        ),
    )
    (closed,) = of_kind(render_policy(off, CUSTOM), "NetworkPolicy")
    assert [rule["from"] for rule in closed["spec"]["ingress"]] == [list(CUSTOM.prometheus_peers)]


def test_who_gets_in_with_the_defaults() -> None:
    """kube-prometheus-stack's Alertmanager reaches the threader, its Prometheus both services,
    a CI pod in the policy's namespace the exporter only while the pipeline is on, and pods
    elsewhere nothing."""
    for name, pipeline in (("workloads-memory-both.yaml", False), ("examples/pipeline", True)):
        path = named(name) if name.endswith(".yaml") else REPO / f"{name}.yaml"
        policy = load(path)
        objects = render_policy(policy)
        policies = of_kind(objects, "NetworkPolicy")
        namespace = policy.namespace
        ci_pod = Pod(namespace, {"app": "ci-job"})
        stranger = Pod("elsewhere", {"app": "ci-job"})
        impostor = Pod("elsewhere", {"app.kubernetes.io/name": "alertmanager-ish"})
        for deployment in of_kind(objects, "Deployment"):
            port = http_port(deployment)
            is_threader = deployment["metadata"]["name"].endswith("-threader")
            where = deployment["metadata"]["name"]
            assert admitted(policies, deployment, port, PROMETHEUS, namespace), where
            assert admitted(policies, deployment, port, ALERTMANAGER, namespace) == is_threader
            assert admitted(policies, deployment, port, ci_pod, namespace) == (
                not is_threader and pipeline
            )
            for outsider in (stranger, impostor):
                assert not admitted(policies, deployment, port, outsider, namespace), where
            assert not admitted(policies, deployment, port + 1, PROMETHEUS, namespace), (
                "no other port is opened"
            )


def test_the_evaluator_is_not_blind() -> None:
    """It admits anyone to pods no policy selects (another policy's, rendered without
    NetworkPolicies), so the refusals above come from the rendered policies' selectors."""
    policy = load(named("workloads-memory-both.yaml"))
    guarded = of_kind(render_policy(policy), "NetworkPolicy")
    other = dataclasses.replace(policy, name="another")
    unguarded = render_policy(other, RenderOptions(network_policies=False))
    stranger = Pod("elsewhere", {})
    for deployment in of_kind(unguarded, "Deployment"):
        assert admitted(guarded, deployment, http_port(deployment), stranger, policy.namespace)
    for deployment in of_kind(render_policy(policy), "Deployment"):
        assert not admitted(guarded, deployment, http_port(deployment), stranger, policy.namespace)


def test_switched_off_nothing_else_changes() -> None:
    for path in POLICY_FILES:
        policy = load(path)
        on = render_policy(policy)
        off = render_policy(policy, RenderOptions(network_policies=False))
        assert of_kind(off, "NetworkPolicy") == []
        assert [obj for obj in on if obj["kind"] != "NetworkPolicy"] == off


def test_rendered_before_the_deployment_it_protects() -> None:
    objects = render_policy(load(named("workloads-persistent.yaml")), only="workloads")
    assert [(o["kind"], o["metadata"]["name"].rsplit("-", 1)[-1]) for o in objects] == [
        ("PersistentVolumeClaim", "state"), ("NetworkPolicy", "threader"),
        ("Deployment", "threader"), ("Service", "threader"), ("ServiceMonitor", "threader"),
        ("ConfigMap", "exporter"), ("PersistentVolumeClaim", "state"),
        ("NetworkPolicy", "exporter"), ("Deployment", "exporter"), ("Service", "exporter"),
        ("ServiceMonitor", "exporter"),
    ]  # fmt: skip


def test_an_empty_peer_list_lets_nobody_in_rather_than_everybody() -> None:
    """A rule without ``from`` admits every source: an empty list must add no rule at all."""
    policy = load(named("workloads-memory-both.yaml"))
    none = RenderOptions(alertmanager_peers=(), prometheus_peers=())
    objects = render_policy(policy, none)
    policies = by_name(objects, "NetworkPolicy")
    for network_policy in policies.values():
        validate_object(network_policy)
        assert "ingress" not in network_policy["spec"], "no rule: no ingress at all"
        assert network_policy["spec"]["policyTypes"] == ["Ingress"]
    for deployment in of_kind(objects, "Deployment"):
        for source in (PROMETHEUS, ALERTMANAGER, Pod(policy.namespace, {})):
            assert not admitted(
                list(policies.values()), deployment, http_port(deployment), source, policy.namespace
            )
    only_prometheus = by_name(
        render_policy(policy, RenderOptions(alertmanager_peers=())), "NetworkPolicy"
    )
    assert [r["from"] for r in only_prometheus["lumen-both-threader"]["spec"]["ingress"]] == [
        list(DEFAULT_PROMETHEUS_PEERS)
    ]


def test_deterministic_plain_json_and_apart_from_the_options() -> None:
    policy = load(named("workloads-exporter-only.yaml"))
    first = of_kind(render_policy(policy, CUSTOM), "NetworkPolicy")
    second = of_kind(render_policy(policy, CUSTOM), "NetworkPolicy")
    assert first == second
    assert json.dumps(first, sort_keys=False) == json.dumps(second, sort_keys=False)
    for network_policy in first:
        # What the API server hands back (plain JSON) holds everything rendered: no tuples or
        # other types that would make the operator re-apply on every pass.
        assert contains(json.loads(json.dumps(network_policy)), network_policy)
        network_policy["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] = "0.0.0.0/0"
    assert CUSTOM.prometheus_peers[0]["ipBlock"]["cidr"] == "10.9.0.0/16", "options untouched"


# --- peer lists from JSON -------------------------------------------------------------------------


def test_the_defaults_round_trip_through_their_flag_form() -> None:
    for peers in (DEFAULT_ALERTMANAGER_PEERS, DEFAULT_PROMETHEUS_PEERS, DEFAULT_PIPELINE_PEERS):
        assert parse_peers(peers_json(peers)) == peers
    assert parse_peers("[]") == ()


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ('[{"podSelector": {"matchLabels": {}}}]', ({"podSelector": {}},)),
        ('[{"podSelector": {"matchLabels": null}}]', ({"podSelector": {}},)),
        (
            '[{"namespaceSelector": {"matchExpressions": []}, "podSelector": {}}]',
            ({"podSelector": {}, "namespaceSelector": {}},),
        ),
        (
            '[{"ipBlock": {"cidr": "10.0.0.0/8", "except": []}}]',
            ({"ipBlock": {"cidr": "10.0.0.0/8"}},),
        ),
        (
            '[{"podSelector": {"matchExpressions": [{"key": "a/b", "operator": "Exists", '
            '"values": []}]}}]',
            ({"podSelector": {"matchExpressions": [{"key": "a/b", "operator": "Exists"}]}},),
        ),
        (
            '[{"ipBlock": {"cidr": "fd00::/8", "except": ["fd00:1::/32"]}}]',
            ({"ipBlock": {"cidr": "fd00::/8", "except": ["fd00:1::/32"]}},),
        ),
    ],
)
def test_empty_parts_are_dropped_as_the_api_server_drops_them(
    text: str, canonical: tuple[dict[str, Any], ...]
) -> None:
    peers = parse_peers(text)
    assert peers == canonical
    options = RenderOptions(prometheus_peers=peers)
    for obj in of_kind(
        render_policy(load(named("workloads-memory-both.yaml")), options), "NetworkPolicy"
    ):
        validate_object(obj)


def labels(match_labels: dict[str, str]) -> str:
    """A peer list of one pod selector with these matchLabels, as flag text."""
    return json.dumps([{"podSelector": {"matchLabels": match_labels}}])


def expressions(**expression: Any) -> str:
    """A peer list of one pod selector with one match expression, as flag text."""
    return json.dumps([{"podSelector": {"matchExpressions": [expression]}}])


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{", "not JSON"),
        ('{"podSelector": {}}', "must be a JSON list"),
        ("[3]", "[0]: a peer is an object"),
        ("[{}]", "[0]: a peer is an object"),
        ('[{"podSelector": {}}, {"podselector": {}}]', "[1]: unknown field 'podselector'"),
        ('[{"podSelector": []}]', "[0].podSelector: must be a label selector object"),
        ('[{"podSelector": {"matchLabel": {}}}]', "unknown field 'matchLabel'"),
        ('[{"podSelector": {"matchLabels": {"app": 1}}}]', "1 is not a label value"),
        ('[{"podSelector": {"matchLabels": []}}]', "matchLabels: must map label keys to values"),
        ('[{"podSelector": {"matchExpressions": {}}}]', "matchExpressions: must be a list"),
        (
            '[{"ipBlock": {"cidr": "10.0.0.0/8", "except": "10.1.0.0/16"}}]',
            "must be a list of CIDRs",
        ),
        ('[{"podSelector": {"matchLabels": {"-app": "x"}}}]', "'-app' is not a label key"),
        ('[{"podSelector": {"matchLabels": {"a/b/c": "x"}}}]', "'a/b/c' is not a label key"),
        ('[{"podSelector": {"matchLabels": {"Bad_Prefix/app": "x"}}}]', "is not a label key"),
        (labels({"/app": "x"}), "'/app' is not a label key (the prefix before / is empty)"),
        (labels({"/": "x"}), "'/' is not a label key (the prefix before / is empty)"),
        (labels({"example.com/": "x"}), "'example.com/' is not a label key (the name must"),
        (labels({"a" * 254 + "/app": "x"}), "up to 253 characters)"),
        (labels({"-a.io/app": "x"}), "must be a lower-case DNS subdomain"),
        (labels({"a" * 64: "x"}), "(the name must be up to 63 characters"),
        (labels({"app\n": "x"}), "'app\\n' is not a label key"),
        (labels({"a.io\n/app": "x"}), "'a.io\\n/app' is not a label key"),
        (labels({"app": "x\n"}), "'x\\n' is not a label value"),
        (expressions(key="/app", operator="Exists"), "'/app' is not a label key"),
        ('[{"podSelector": {"matchLabels": {"app": "' + "x" * 64 + '"}}}]', "not a label value"),
        (expressions(key="a", operator="in", values=["x"]), "'in' is not one of In, NotIn, Exists"),
        (expressions(key="a", operator="In"), "In needs at least one value"),
        (expressions(key="a", operator="Exists", values=["x"]), "Exists takes no values"),
        (expressions(key="a b", operator="Exists"), "'a b' is not a label key"),
        ('[{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]', "cannot be combined"),
        ('[{"ipBlock": {"cidr": "10.0.0.1"}}]', "is not a CIDR"),
        ('[{"ipBlock": {"cidr": "10.0.0.0/33"}}]', "is not a CIDR"),
        ('[{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]', "is not inside"),
        ('[{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]', "is not inside"),
        ('[{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/8"]}}]', "is not inside"),
    ],
)
def test_bad_peer_lists_are_refused_with_where_and_why(text: str, complaint: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_peers(text)
    assert complaint in str(refused.value)


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "app.kubernetes.io/name",
        "kubernetes.io/metadata.name",
        "A_b-c.D9",
        "x" * 63,
        ".".join(["a" * 63] * 3 + ["b" * 61]) + "/" + "n" * 63,  # a prefix of 253 characters
    ],
)
def test_label_keys_the_api_server_takes_are_taken(key: str) -> None:
    """The other side of the refusals: every form of a qualified name the API server accepts."""
    assert parse_peers(labels({key: "v"})) == ({"podSelector": {"matchLabels": {key: "v"}}},)
    assert parse_peers(expressions(key=key, operator="Exists"))


def test_peers_are_copied_not_shared() -> None:
    mutable = [{"podSelector": {"matchLabels": {"app": "x"}}}]
    peers = parse_peers(json.dumps(mutable))
    snapshot = copy.deepcopy(peers)
    (network_policy,) = of_kind(
        render_policy(
            load(named("workloads-exporter-only.yaml")), RenderOptions(prometheus_peers=peers)
        ),
        "NetworkPolicy",
    )
    network_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app"] = "y"
    assert peers == snapshot


def test_slack_and_browsers_get_in_once_the_threader_is_public() -> None:
    """With Slack interactivity or a public URL the threader's port admits every source (Slack
    and browsers come through an ingress Lumen cannot name), only that port; without either the
    peers alone, as before."""
    public = load(named("workloads-incidents.yaml"))
    objects = render_policy(public, CUSTOM)
    (policy,) = of_kind(objects, "NetworkPolicy")
    (deployment,) = of_kind(objects, "Deployment")
    port = http_port(deployment)
    assert policy["spec"]["ingress"] == [{"ports": [{"port": port, "protocol": "TCP"}]}]
    ingress_controller = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    for source in (ingress_controller, ALERTMANAGER, PROMETHEUS):
        assert admitted([policy], deployment, port, source, public.namespace)
    assert not admitted([policy], deployment, port + 1, ingress_controller, public.namespace)
    validate_object(policy)
    for changes in ({"signing_secret": None}, {"public_url": None}):
        one_way = with_incidents(public, **changes)
        (still_open,) = of_kind(render_policy(one_way, CUSTOM), "NetworkPolicy")
        assert still_open["spec"]["ingress"] == policy["spec"]["ingress"], changes
    private = with_incidents(public, signing_secret=None, public_url=None)
    (closed,) = of_kind(render_policy(private, CUSTOM), "NetworkPolicy")
    assert not admitted([closed], deployment, port, ingress_controller, public.namespace)
    assert all(rule["from"] for rule in closed["spec"]["ingress"])


def with_incidents(policy: Policy, **changes: Any) -> Policy:
    threader = policy.spec.threader
    assert threader is not None
    incidents = dataclasses.replace(threader.incidents, **changes)
    spec = dataclasses.replace(
        policy.spec, threader=dataclasses.replace(threader, incidents=incidents)
    )
    return dataclasses.replace(policy, spec=spec)
