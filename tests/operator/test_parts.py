"""The operator's pure parts: settings, the convergence plan and the status conditions."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from lumen_alerting.operator.config import OperatorConfig, parse_config
from lumen_alerting.operator.convergence import (
    DESIRED_HASH_ANNOTATION,
    contains,
    plan_convergence,
    with_desired_hash,
)
from lumen_alerting.operator.kinds import CONFIG_MAP, PROMETHEUS_RULE, RENDERED_KINDS, kind_of
from lumen_alerting.operator.runs import _conditions
from lumen_alerting.operator.status import (
    READY,
    VALID,
    Condition,
    Observation,
    next_status,
    status_changes,
)
from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.render import render_policy
from lumen_alerting.render.objects import RenderOptions
from tests.support.schemas import REPO

UID = "0b0e4c55-7a3e-4f4b-9d0c-9b1d3c1f0001"


def example_manifests() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in REPO.glob("examples/*.yaml")}


# --- settings -----------------------------------------------------------------------------------


def test_defaults_watch_every_namespace() -> None:
    config = parse_config([], {})
    assert config == OperatorConfig()
    assert config.clusterwide
    assert config.rendering.managed_by == "lumen-operator"


def test_flags_win_over_environment() -> None:
    env = {"LUMEN_OPERATOR_KPS_RELEASE": "from-env", "LUMEN_OPERATOR_METRICS_PORT": "9000"}
    config = parse_config(["--kps-release", "from-flag"], env)
    assert config.metrics_port == 9000
    assert config.rendering.kps_release == "from-flag"


def test_a_scope_flag_wins_over_the_scope_variables() -> None:
    env = {"LUMEN_OPERATOR_NAMESPACE": "shop", "LUMEN_OPERATOR_ALL_NAMESPACES": "true"}
    assert parse_config(["-A"], env).clusterwide
    assert parse_config(["-n", "payments"], env).namespaces == ("payments",)


def test_every_setting_from_environment() -> None:
    env = {
        "LUMEN_OPERATOR_NAMESPACE": "shop, payments,shop",
        "LUMEN_OPERATOR_STANDALONE": "true",
        "LUMEN_OPERATOR_PEERING": "team-a",
        "LUMEN_OPERATOR_PRIORITY": "7",
        "LUMEN_OPERATOR_THREADER_IMAGE": "registry.local/lumen:1",
        "LUMEN_OPERATOR_EXPORTER_IMAGE": "registry.local/lumen:2",
        "LUMEN_OPERATOR_THREADER_RESOURCES": '{"requests": {"cpu": "100m"}}',
        "LUMEN_OPERATOR_EXPORTER_RESOURCES": '{"limits": {"memory": "1Gi"}}',
        "LUMEN_OPERATOR_NETWORK_POLICIES": "False",
        "LUMEN_OPERATOR_ALERTMANAGER_PEERS": '[{"namespaceSelector": {}}]',
        "LUMEN_OPERATOR_PROMETHEUS_PEERS": "[]",
        "LUMEN_OPERATOR_PIPELINE_PEERS": '[{"ipBlock": {"cidr": "10.0.0.0/8"}}]',
        "LUMEN_OPERATOR_DRIFT_INTERVAL": "60",
        "LUMEN_OPERATOR_LIVENESS_PORT": "0",
        "LUMEN_OPERATOR_LOG_FORMAT": "JSON",
        "LUMEN_OPERATOR_LOG_LEVEL": "debug",
        "LUMEN_OPERATOR_CONTEXT": "kind-dev",
    }
    config = parse_config([], env)
    assert config.namespaces == ("shop", "payments")
    assert not config.clusterwide
    assert (config.standalone, config.peering, config.priority) == (True, "team-a", 7)
    assert config.rendering.threader_resources == {"requests": {"cpu": "100m"}}
    assert config.rendering.exporter_resources == {"limits": {"memory": "1Gi"}}
    assert (config.drift_interval, config.liveness_port) == (60.0, 0)
    assert (config.log_format, config.log_level, config.context) == ("json", "debug", "kind-dev")
    options = config.rendering
    assert (options.threader_image, options.exporter_image) == (
        "registry.local/lumen:1",
        "registry.local/lumen:2",
    )
    assert not options.network_policies
    assert options.alertmanager_peers == ({"namespaceSelector": {}},)
    assert options.prometheus_peers == ()
    assert options.pipeline_peers == ({"ipBlock": {"cidr": "10.0.0.0/8"}},)


def test_network_policies_by_default_with_kube_prometheus_stacks_labels() -> None:
    options = parse_config([], {}).rendering
    assert options.network_policies
    assert options.alertmanager_peers == (
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}},
        },
    )
    assert options.prometheus_peers == (
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        },
    )
    assert options.pipeline_peers == ({"podSelector": {}},)
    # An empty variable is unset, as for every other setting; `[]` is a value.
    unset = {"LUMEN_OPERATOR_NETWORK_POLICIES": "", "LUMEN_OPERATOR_PIPELINE_PEERS": " "}
    assert parse_config([], unset).rendering == options


def test_network_policy_flags_reach_the_rendered_policies() -> None:
    policy = policy_from_manifest(example_manifests()["pipeline.yaml"])
    peers = '[{"podSelector": {"matchLabels": {"role": "ci"}}}]'
    env = {"LUMEN_OPERATOR_PIPELINE_PEERS": '[{"podSelector": {}}]'}  # the flag wins
    config = parse_config(["--pipeline-peers", peers], env)
    (exporter,) = [
        obj for obj in render_policy(policy, config.rendering) if obj["kind"] == "NetworkPolicy"
    ]
    assert exporter["spec"]["ingress"][-1]["from"] == json.loads(peers)
    off = parse_config(["--network-policies", "false"], {}).rendering
    assert not [obj for obj in render_policy(policy, off) if obj["kind"] == "NetworkPolicy"]


def test_resources_flag_reaches_the_rendered_deployments() -> None:
    config = parse_config(["--threader-resources", '{"limits": {"cpu": "2"}}'], {})
    policy = policy_from_manifest(example_manifests()["gateway.yaml"])
    threader = next(
        obj
        for obj in render_policy(policy, config.rendering)
        if obj["kind"] == "Deployment" and obj["metadata"]["name"].endswith("-threader")
    )
    container = threader["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"limits": {"cpu": "2"}}


@pytest.mark.parametrize(
    ("metrics", "liveness"), [("0", "0"), ("9000", "0"), ("0", "8000"), ("8080", "8000")]
)
def test_ports_of_their_own_or_off(metrics: str, liveness: str) -> None:
    """Both endpoints bind 0.0.0.0:<port>, so one port for both is refused (next test), but two
    ports turned off are no clash, nor the two defaults swapped."""
    config = parse_config(["--metrics-port", metrics, "--liveness-port", liveness], {})
    assert (config.metrics_port, config.liveness_port) == (int(metrics), int(liveness))


@pytest.mark.parametrize(
    ("argv", "env", "complaint"),
    [
        (["-A", "-n", "shop"], {}, "not allowed with argument"),
        (
            [],
            {"LUMEN_OPERATOR_NAMESPACE": "shop", "LUMEN_OPERATOR_ALL_NAMESPACES": "1"},
            "exclude each other",
        ),
        (["-n", "Shop_1"], {}, "not a namespace name"),
        (["--metrics-port", "http"], {}, "not a whole number"),
        ([], {"LUMEN_OPERATOR_LIVENESS_PORT": "70000"}, "outside 0..65535"),
        ([], {"LUMEN_OPERATOR_STANDALONE": "maybe"}, "not true or false"),
        (["--log-format", "xml"], {}, "not one of plain, json"),
        (["--drift-interval", "1"], {}, "between 10 and 86400"),
        (["--threader-resources", "{"], {}, "not JSON"),
        (["--threader-resources", '{"cpu": "1"}'], {}, '"requests" and/or "limits"'),
        (["--exporter-resources", '{"limits": {"cpu": "lots"}}'], {}, "is not a quantity"),
        (["--kps-release", " "], {}, "must not be empty"),
        (
            ["--metrics-port", "9000", "--liveness-port", "9000"],
            {},
            "--metrics-port and --liveness-port: both are 9000",
        ),
        (
            ["--liveness-port", "8000"],  # the default metrics port
            {},
            "--metrics-port and --liveness-port: both are 8000",
        ),
        (
            [],
            {"LUMEN_OPERATOR_METRICS_PORT": "8080"},  # the default liveness port
            "--metrics-port and --liveness-port: both are 8080",
        ),
        (["--network-policies", "maybe"], {}, "--network-policies: 'maybe' is not true or false"),
        (["--prometheus-peers", "{"], {}, "--prometheus-peers: not JSON"),
        (["--pipeline-peers", '{"podSelector": {}}'], {}, "--pipeline-peers: must be a JSON list"),
        (
            [],
            {"LUMEN_OPERATOR_ALERTMANAGER_PEERS": '[{"podSelector": 1}]'},
            "--alertmanager-peers: [0].podSelector: must be a label selector",
        ),
    ],
)
def test_bad_settings_exit_with_a_clear_message(
    argv: list[str], env: dict[str, str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv, env)
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


# --- convergence --------------------------------------------------------------------------------


def rendered(name: str = "gateway.yaml") -> list[dict[str, Any]]:
    policy = policy_from_manifest(example_manifests()[name])
    policy = type(policy)(policy.name, policy.namespace, policy.spec, uid=UID)
    return [with_desired_hash(obj) for obj in render_policy(policy, RenderOptions())]


def as_live(obj: dict[str, Any], **extra_meta: str) -> dict[str, Any]:
    """What the API server would return: our fields plus server-set ones."""
    live = copy.deepcopy(obj)
    live["metadata"].update({"uid": f"uid-{obj['metadata']['name']}", "resourceVersion": "7"})
    live["metadata"].update(extra_meta)
    live["status"] = {"observedGeneration": 1}
    return live


def test_every_rendered_kind_is_known() -> None:
    kinds = {kind_of(obj) for name in example_manifests() for obj in rendered(name)}
    assert kinds == set(RENDERED_KINDS)


def test_hash_changes_with_content_and_is_stable() -> None:
    first, second = rendered()[0], rendered()[0]
    assert first == second
    assert first["metadata"]["annotations"][DESIRED_HASH_ANNOTATION]
    changed = copy.deepcopy(first)
    changed["spec"]["groups"][0]["name"] += "-x"
    del changed["metadata"]["annotations"][DESIRED_HASH_ANNOTATION]
    assert (
        with_desired_hash(changed)["metadata"]["annotations"][DESIRED_HASH_ANNOTATION]
        != first["metadata"]["annotations"][DESIRED_HASH_ANNOTATION]
    )


def test_containment_allows_server_defaults_but_not_changes() -> None:
    desired = {"spec": {"ports": [{"port": 80, "name": "http"}], "replicas": 1}}
    live: dict[str, Any] = {
        "spec": {"ports": [{"port": 80, "name": "http", "protocol": "TCP"}], "replicas": 1}
    }
    assert contains(live, desired)
    assert not contains({"spec": {"ports": [], "replicas": 1}}, desired)
    assert not contains({"spec": {"ports": live["spec"]["ports"] * 2, "replicas": 1}}, desired)
    assert not contains({"spec": {"ports": live["spec"]["ports"], "replicas": 2}}, desired)
    assert not contains({"spec": {"ports": live["spec"]["ports"], "replicas": "1"}}, desired)
    assert contains({"x": 1.0}, {"x": 1})
    assert not contains({"x": True}, {"x": 1})


def test_plan_for_an_empty_namespace_applies_everything() -> None:
    desired = rendered()
    plan = plan_convergence(desired, [], UID)
    assert plan.apply == desired
    assert plan.unchanged == [] and plan.prune == [] and plan.foreign == []


def test_plan_leaves_objects_in_sync_alone() -> None:
    desired = rendered()
    plan = plan_convergence(desired, [as_live(obj) for obj in desired], UID)
    assert plan.apply == [] and plan.prune == []
    assert plan.unchanged == desired


def test_plan_reapplies_an_edited_object_and_a_stale_render() -> None:
    desired = rendered()
    live = [as_live(obj) for obj in desired]
    live[0]["spec"]["groups"] = []  # someone edited our PrometheusRule
    live[1]["metadata"]["annotations"][DESIRED_HASH_ANNOTATION] = "older-render"
    plan = plan_convergence(desired, live, UID)
    assert plan.apply == desired[:2]


def test_plan_prunes_only_our_own_leftovers() -> None:
    desired = rendered()
    ours = as_live(desired[0])
    ours["metadata"]["name"] = "lumen-old-name"
    strangers = as_live(desired[0])
    strangers["metadata"]["name"] = "someone-elses"
    strangers["metadata"]["ownerReferences"][0]["uid"] = "another-policy"
    unowned = as_live(desired[0])
    unowned["metadata"]["name"] = "labelled-by-hand"
    del unowned["metadata"]["ownerReferences"]
    live = [as_live(obj) for obj in desired] + [ours, strangers, unowned]
    plan = plan_convergence(desired, live, UID)
    assert [(obj.kind, obj.name, obj.uid) for obj in plan.prune] == [
        (PROMETHEUS_RULE, "lumen-old-name", ours["metadata"]["uid"])
    ]


def test_plan_refuses_objects_controlled_by_someone_else() -> None:
    desired = rendered()
    live = [as_live(obj) for obj in desired]
    config_map = next(obj for obj in live if obj["kind"] == "ConfigMap")
    config_map["metadata"]["ownerReferences"][0]["uid"] = "another-controller"
    plan = plan_convergence(desired, live, UID)
    assert [(obj.kind, obj.name) for obj in plan.foreign] == [
        (CONFIG_MAP, config_map["metadata"]["name"])
    ]
    assert all(obj["kind"] != "ConfigMap" for obj in plan.apply + plan.unchanged)


# --- status -------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


def observation(generation: int, ready: bool = True, valid: bool = True) -> Observation:
    return Observation(
        generation=generation,
        valid=Condition(VALID, "True" if valid else "False", "R", "valid" if valid else "bad"),
        ready=Condition(READY, "True" if ready else "False", "R", "m"),
        children=None if not valid else rendered()[:2],
        rules=3 if valid else None,
        slos=1 if valid else None,
    )


def test_first_status_has_conditions_children_and_counts() -> None:
    status = next_status({}, observation(4), T0)
    assert status["observedGeneration"] == 4
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [
        (READY, "True"),
        (VALID, "True"),
    ]
    assert {c["lastTransitionTime"] for c in status["conditions"]} == {"2026-11-22T10:00:00Z"}
    assert [c["kind"] for c in status["children"]] == ["PrometheusRule", "AlertmanagerConfig"]
    assert (status["rules"], status["slos"]) == (3, 1)


def test_transition_time_moves_only_on_a_transition() -> None:
    first = next_status({}, observation(1), T0)
    again = next_status(first, observation(2), T0 + timedelta(minutes=5))
    assert [c["lastTransitionTime"] for c in again["conditions"]] == [
        c["lastTransitionTime"] for c in first["conditions"]
    ]
    assert status_changes(first, again) == {
        "observedGeneration": 2,
        "conditions": again["conditions"],
    }
    broken = next_status(again, observation(3, ready=False), T0 + timedelta(minutes=9))
    times = {c["type"]: c["lastTransitionTime"] for c in broken["conditions"]}
    assert times == {READY: "2026-11-22T10:09:00Z", VALID: "2026-11-22T10:00:00Z"}


def test_resync_of_an_unchanged_policy_changes_nothing() -> None:
    first = next_status({}, observation(1), T0)
    assert status_changes(first, next_status(first, observation(1), T0 + timedelta(hours=1))) == {}


def test_invalid_spec_keeps_the_children_of_the_last_valid_one() -> None:
    first = next_status({}, observation(1), T0)
    invalid = next_status(first, observation(2, ready=False, valid=False), T0)
    assert invalid["children"] == first["children"]
    assert (invalid["rules"], invalid["slos"]) == (3, 1)
    assert invalid["observedGeneration"] == 2


def test_conditions_read_back_from_the_status_skip_what_is_malformed() -> None:
    """A status edited by hand may hold anything; only well-formed conditions are compared
    with the next observation (a missing reason or message reads as empty)."""
    status = {
        "conditions": [
            {"type": "Valid", "status": "True", "reason": "Rendered", "message": "ok"},
            {"type": "Ready", "status": "False"},
            {"type": "Odd", "status": "Maybe", "reason": "x"},
            {"status": "True"},
            "not a condition",
        ]
    }
    assert _conditions(status) == {
        "Valid": ("True", "Rendered", "ok"),
        "Ready": ("False", "", ""),
    }
    assert _conditions({}) == {}
