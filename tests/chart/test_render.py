"""`helm template` of the root chart: every object validates against its real schema, the output is
byte-identical across runs, and the objects are the ones the values ask for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import (
    NAMESPACE,
    RELEASE,
    Rendered,
    load_values,
    operator_container,
    run_helm,
    template,
    values_files,
)
from tests.support.schemas import REPO, validate_against_crd, validate_object

# kopf's peering kinds: validated against the CRDs the chart ships in crds/.
PEERING_CRDS = {
    "ClusterKopfPeering": REPO / "crds" / "kopf.dev_clusterkopfpeerings.yaml",
    "KopfPeering": REPO / "crds" / "kopf.dev_kopfpeerings.yaml",
}
CASES = [None, *values_files()]
CASE_IDS = ["defaults", *(path.stem for path in values_files())]


def rendered_for(case: Path | None, *, include_crds: bool = False) -> Rendered:
    return template([case] if case else [], include_crds=include_crds)


def validate(obj: dict[str, Any]) -> None:
    if obj["kind"] in PEERING_CRDS:
        validate_against_crd(obj, PEERING_CRDS[obj["kind"]])
    else:
        validate_object(obj)


def test_the_values_files_cover_the_required_cases() -> None:
    assert {path.stem for path in values_files()} >= {
        "cluster-wide",
        "namespaced",
        "subcharts",
        "policies",
        "two-replicas",
    }


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_object_validates_and_the_output_is_stable(case: Path | None) -> None:
    first = rendered_for(case, include_crds=True)
    second = rendered_for(case, include_crds=True)
    assert first.text == second.text, "helm template output differs between two runs"
    assert first.objects, "nothing rendered"
    problems = []
    for obj in first.objects:
        try:
            validate(obj)
        except AssertionError as error:
            problems.append(str(error))
    assert not problems, "\n".join(problems)
    # Every CRD in crds/ comes with the chart (Helm installs crds/ before the templates).
    crds = {obj["metadata"]["name"] for obj in first.of_kind("CustomResourceDefinition")}
    assert crds == {
        "lumenalertpolicies.lumen.dev",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    }


def test_the_validation_can_fail() -> None:
    """The checks above refuse a broken object (so passing them means something)."""
    deployment = rendered_for(None).one("Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(AssertionError):
        validate(deployment)
    peering = template(settings=["replicaCount=2"]).one("ClusterKopfPeering")
    peering["spec"] = {"unexpected": True}
    peering["apiVersion"] = "kopf.dev/v2"
    with pytest.raises(AssertionError):
        validate(peering)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_kps_release_label_on_service_monitors_and_prometheus_rules(case: Path | None) -> None:
    values = load_values(case) if case else {}
    from_global = values.get("global", {}).get("kpsRelease")
    expected = values.get("kpsRelease") or from_global or "kube-prometheus-stack"
    rendered = rendered_for(case)
    picked = rendered.of_kind("ServiceMonitor") + rendered.of_kind("PrometheusRule")
    assert picked
    for obj in picked:
        assert obj["metadata"]["labels"]["release"] == expected, obj["metadata"]


def test_operator_pod_is_locked_down() -> None:
    deployment = rendered_for(None).one("Deployment", "-operator")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = operator_container(rendered_for(None))
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsUser"] == 65532
    assert container["command"] == ["lumen-operator"]
    assert container["image"] == "ghcr.io/lumen-alerting/lumen:0.1.0"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": 8000, "healthz": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["resources"]["limits"] and container["resources"]["requests"]
    # A read-only root needs somewhere to write: /tmp is an emptyDir.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_one_replica_is_standalone_and_recreated() -> None:
    rendered = rendered_for(None)
    deployment = rendered.one("Deployment", "-operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "--standalone" in operator_container(rendered)["args"]
    assert not rendered.of_kind("PodDisruptionBudget")
    assert not rendered.of_kind("ClusterKopfPeering") and not rendered.of_kind("KopfPeering")


def test_two_replicas_peer_through_a_cluster_peering() -> None:
    rendered = rendered_for(REPO / "examples/chart-values/two-replicas.yaml")
    args = operator_container(rendered)["args"]
    assert "--standalone" not in args and "--peering=lumen-peers" in args
    (peering,) = rendered.of_kind("ClusterKopfPeering")
    assert peering["metadata"]["name"] == "lumen-peers"
    assert not rendered.of_kind("KopfPeering")
    pdb = rendered.one("PodDisruptionBudget")
    selector = rendered.one("Deployment", "-operator")["spec"]["selector"]
    assert pdb["spec"] == {"minAvailable": 1, "selector": selector}


def test_two_namespaced_replicas_peer_in_each_watched_namespace() -> None:
    rendered = rendered_for(REPO / "examples/chart-values/namespaced-two-replicas.yaml")
    peerings = rendered.of_kind("KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["payments", "shop"]
    assert {p["metadata"]["name"] for p in peerings} == {"lumen-operator"}
    assert not rendered.of_kind("ClusterKopfPeering")


def test_pdb_can_be_forced_on_and_off() -> None:
    forced = rendered_for(REPO / "examples/chart-values/namespaced.yaml")
    assert forced.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    off = template(settings=["replicaCount=2", "podDisruptionBudget.enabled=false"])
    assert not off.of_kind("PodDisruptionBudget")


def test_dashboards_one_config_map_per_file_for_the_grafana_sidecar() -> None:
    files = sorted((REPO / "dashboards").glob("*.json"))
    assert files
    rendered = rendered_for(REPO / "examples/chart-values/cluster-wide.yaml")
    maps = [
        cm
        for cm in rendered.of_kind("ConfigMap")
        if cm["metadata"]["labels"].get("grafana_dashboard")
    ]
    assert len(maps) == len(files)
    by_file = {next(iter(cm["data"])): cm for cm in maps}
    assert sorted(by_file) == [path.name for path in files]
    for path in files:
        config_map = by_file[path.name]
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["labels"]["team"] == "platform"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Platform"}
        assert config_map["metadata"]["namespace"] == "grafana"
        assert json.loads(config_map["data"][path.name]) == json.loads(path.read_text())
    off = template(settings=["dashboards.enabled=false"])
    assert not [
        cm for cm in off.of_kind("ConfigMap") if "grafana_dashboard" in cm["metadata"]["labels"]
    ]


def test_policies_from_values_carry_their_specs() -> None:
    values = load_values(REPO / "examples/chart-values/policies.yaml")
    rendered = rendered_for(REPO / "examples/chart-values/policies.yaml")
    policies = {p["metadata"]["name"]: p for p in rendered.of_kind("LumenAlertPolicy")}
    assert sorted(policies) == sorted(p["name"] for p in values["policies"])
    for wanted in values["policies"]:
        policy = policies[wanted["name"]]
        assert policy["metadata"]["namespace"] == wanted.get("namespace", NAMESPACE)
        assert policy["spec"] == wanted["spec"]
        for key, value in wanted.get("labels", {}).items():
            assert policy["metadata"]["labels"][key] == value
    example = yaml.safe_load((REPO / "examples" / "http-api.yaml").read_text())
    assert policies["http-api"]["spec"] == example["spec"]


def test_subcharts_are_off_by_default_and_on_when_enabled() -> None:
    def workloads(rendered: Rendered) -> set[str]:
        return {d["metadata"]["name"] for d in rendered.of_kind("Deployment")}

    assert workloads(rendered_for(None)) == {f"{RELEASE}-operator"}
    enabled = workloads(rendered_for(REPO / "examples/chart-values/subcharts.yaml"))
    assert f"{RELEASE}-operator" in enabled
    assert len(enabled) == 3, enabled


def test_operator_network_policy_admits_prometheus_and_reaches_the_api_server() -> None:
    rendered = rendered_for(REPO / "examples/chart-values/cluster-wide.yaml")
    policy = rendered.one("NetworkPolicy", "-operator")["spec"]
    deployment = rendered.one("Deployment", "-operator")
    assert policy["podSelector"] == deployment["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    test_pod = rendered.one("Pod", "-test")
    peers = ingress["from"]
    assert {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    } in peers
    # The helm test pod is let in (its labels match one of the peers).
    assert any(
        set(peer.get("podSelector", {}).get("matchLabels", {}).items())
        <= set(test_pod["metadata"]["labels"].items())
        and "namespaceSelector" not in peer
        and peer.get("podSelector", {}).get("matchLabels")
        for peer in peers
    )
    api, dns = policy["egress"]
    assert api["to"] == [
        {"ipBlock": {"cidr": "10.0.0.1/32"}},
        {"ipBlock": {"cidr": "192.168.10.0/24"}},
    ]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert not template(settings=["networkPolicy.enabled=false"]).of_kind("NetworkPolicy")


def test_metrics_service_and_service_monitor_reach_the_operator() -> None:
    rendered = rendered_for(None)
    service = rendered.one("Service", "-operator")
    deployment = rendered.one("Deployment", "-operator")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8000, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = rendered.one("ServiceMonitor")
    labels = service["metadata"]["labels"]
    assert all(labels[k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_operator_network_policy_without_peers_or_test_pod_admits_nobody() -> None:
    """No metricsPeers and no `helm test` pod: no ingress rule at all (deny), never a rule
    whose `from` is null (which would admit every source)."""
    rendered = template(settings=["helmTest.enabled=false", "networkPolicy.metricsPeers=[]"])
    policy = rendered.one("NetworkPolicy", "-operator")["spec"]
    assert "Ingress" in policy["policyTypes"]
    assert policy.get("ingress", []) == []
    validate(rendered.one("NetworkPolicy", "-operator"))
    # Either one alone still makes a rule with a non-empty `from`.
    for settings in (["helmTest.enabled=false"], ["networkPolicy.metricsPeers=[]"]):
        spec = template(settings=settings).one("NetworkPolicy", "-operator")["spec"]
        (rule,) = spec["ingress"]
        assert rule["from"], settings


def test_user_labels_never_repeat_or_replace_the_charts_keys() -> None:
    """A user label with a key the chart sets (the component, the release label) is not written
    a second time (duplicate YAML keys: an invalid object, or a selector that no longer matches
    the pods): the chart's value stays; the user's other labels are added."""
    clash = '{"app.kubernetes.io/component":"mine","release":"mine","team":"a"}'
    component = '{"app.kubernetes.io/component":"mine","team":"a"}'
    rendered = template(
        settings=[
            f"metrics.serviceMonitor.labels={clash}",
            f"metrics.prometheusRule.labels={clash}",
            f"dashboards.labels={component}",
            f'policies=[{{"name":"p","spec":{{}},"labels":{component}}}]',
            'podLabels={"team":"a"}',
        ]
    )
    for line in rendered.text.splitlines():
        assert "mine" not in line, line
    monitor = rendered.one("ServiceMonitor")["metadata"]["labels"]
    rule = rendered.one("PrometheusRule")["metadata"]["labels"]
    for labels in (monitor, rule):
        assert labels["release"] == "kube-prometheus-stack"
        assert labels["app.kubernetes.io/component"] == "operator"
        assert labels["team"] == "a"
    policy = rendered.one("LumenAlertPolicy")["metadata"]["labels"]
    assert policy["app.kubernetes.io/component"] == "policy" and policy["team"] == "a"
    for config_map in rendered.of_kind("ConfigMap"):
        labels = config_map["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "dashboard" and labels["team"] == "a"
    deployment = rendered.one("Deployment", "-operator")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["team"] == "a"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()


def test_pod_labels_cannot_name_a_selector_key() -> None:
    """The schema refuses podLabels that would change what the Deployment selects."""
    for key in (
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    ):
        proc = run_helm("template", RELEASE, ".", "--set-json", f'podLabels={{"{key}":"x"}}')
        assert proc.returncode != 0 and f"invalid propertyName '{key}'" in proc.stderr, proc.stderr


def test_global_kps_release_drives_the_root_chart_and_the_subcharts() -> None:
    """One setting, global.kpsRelease, names the kps release for everything; the root chart's
    own kpsRelease still wins over it."""

    def releases(*settings: str) -> set[str]:
        rendered = template(settings=["threader.enabled=true", "exporter.enabled=true", *settings])
        picked = rendered.of_kind("ServiceMonitor") + rendered.of_kind("PrometheusRule")
        assert len(rendered.of_kind("ServiceMonitor")) == 3
        found = {obj["metadata"]["labels"]["release"] for obj in picked}
        (flag,) = [a for a in operator_container(rendered)["args"] if a.startswith("--kps-")]
        return found | {flag.removeprefix("--kps-release=")}

    assert releases() == {"kube-prometheus-stack"}
    assert releases('global.kpsRelease="kps"') == {"kps"}
    root = template(settings=['global.kpsRelease="kps"', 'kpsRelease="own"'])
    assert root.one("ServiceMonitor")["metadata"]["labels"]["release"] == "own"
