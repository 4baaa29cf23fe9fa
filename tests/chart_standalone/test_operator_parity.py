"""The standalone charts run what the operator runs.

For each values file, the chart's objects are compared with what ``render_policy`` makes of a
policy whose ``spec.threader`` / ``spec.exporter`` is the values' spec part (built through
``policy_from_manifest``, so the values are a valid spec too), rendered with the chart's image,
resources and release label. The container (image, command, args, ports, probes, resources,
securityContext, env, volumeMounts) and the whole pod spec must be equal, as must the
Deployment's replicas and strategy, the Service, the ServiceMonitor, the claim and config.json.

What may differ is named here, and nothing else:

- names: ``<full name>`` (``shared-lumen-threader``) for ``lumen-<policy>-threader``,
  ``<full name>-state`` for the claim, ``tokens.secretName`` (default: the full name) for the
  token Secret;
- labels and selectors: Helm's standard labels, selecting on ``app.kubernetes.io/name`` and
  ``app.kubernetes.io/instance`` instead of ``lumen.dev/policy`` (there is no policy);
- the Redis key prefix: ``keyPrefix``, default ``lumen:<namespace>:<full name>:``;
- the config-hash annotation hashes the chart's config.json text (Go formats the same JSON
  document differently from Python);
- the claim's size is written as given: the operator writes the canonical quantity because it
  compares with the live claim, Helm does not;
- ``image.pullPolicy`` (the operator always writes ``IfNotPresent``, the chart's default),
  ``podAnnotations``, ``nodeSelector``, ``tolerations`` and ``affinity`` exist only in the charts.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.policy.model import Policy
from lumen_alerting.policy.schema import object_schema
from lumen_alerting.render import render_policy
from lumen_alerting.render.objects import (
    DEFAULT_EXPORTER_RESOURCES,
    DEFAULT_IMAGE,
    DEFAULT_KPS_RELEASE,
    DEFAULT_THREADER_RESOURCES,
    ChildNames,
    RenderOptions,
)
from lumen_alerting.render.pods import canonical_quantity
from tests.chart_standalone.generator import STANDALONE, Chart
from tests.chart_standalone.rendering import (
    NAMESPACE,
    RELEASE,
    Manifest,
    by_kind,
    deep_merge,
    merged_values,
    render,
    values_files,
)

THREADER, EXPORTER = STANDALONE
POLICY = "shared"
SCHEDULING = ("nodeSelector", "tolerations", "affinity")


@dataclass(frozen=True)
class Case:
    chart: Chart
    files: tuple[Path, ...]

    @property
    def id(self) -> str:
        return self.files[0].stem if self.files else f"{self.chart.spec_field}-defaults"

    @property
    def values(self) -> dict[str, Any]:
        return merged_values(self.chart, self.files)

    @property
    def fullname(self) -> str:
        return f"{RELEASE}-{self.chart.name}"


CASES = [
    case
    for chart in STANDALONE
    for case in (
        Case(chart, ()),
        *(Case(chart, (path,)) for path in values_files(chart.spec_field)),
    )
]


def spec_part(chart: Chart, values: dict[str, Any]) -> dict[str, Any]:
    fields = object_schema(chart.model)["properties"]
    return {key: value for key, value in values.items() if key in fields}


def equivalent_policy(case: Case) -> Policy:
    manifest = {
        "apiVersion": "lumen.dev/v1alpha1",
        "kind": "LumenAlertPolicy",
        "metadata": {"name": POLICY, "namespace": NAMESPACE},
        "spec": {"service": "shop", case.chart.spec_field: spec_part(case.chart, case.values)},
    }
    return policy_from_manifest(manifest)


def chart_image(values: dict[str, Any]) -> str:
    chart = yaml.safe_load((THREADER.directory / "Chart.yaml").read_text())
    return f"{values['image']['repository']}:{values['image']['tag'] or chart['appVersion']}"


def kps_release(values: dict[str, Any]) -> str:
    global_release = (values.get("global") or {}).get("kpsRelease")
    return str(values["kpsRelease"] or global_release or DEFAULT_KPS_RELEASE)


# The chart's networkPolicy values and the render options (operator flags) they stand for.
NETWORK_OPTIONS = {
    "enabled": "network_policies",
    "alertmanagerPeers": "alertmanager_peers",
    "prometheusPeers": "prometheus_peers",
    "pipelinePeers": "pipeline_peers",
}


def network_options(values: dict[str, Any]) -> dict[str, Any]:
    """RenderOptions fields for the chart's networkPolicy values, as far as this renderer has
    them (NetworkPolicies came to the renderer alongside these charts)."""
    fields = {field.name for field in dataclasses.fields(RenderOptions)}
    return {
        NETWORK_OPTIONS[key]: value if key == "enabled" else tuple(value)
        for key, value in values["networkPolicy"].items()
        if NETWORK_OPTIONS[key] in fields
    }


def operator_objects(case: Case) -> dict[str, Manifest]:
    values = case.values
    options = RenderOptions(
        kps_release=kps_release(values),
        threader_image=chart_image(values),
        exporter_image=chart_image(values),
        threader_resources=values["resources"],
        exporter_resources=values["resources"],
    )
    options = dataclasses.replace(options, **network_options(values))
    return by_kind(render_policy(equivalent_policy(case), options, only="workloads"))


def chart_selector(case: Case) -> dict[str, str]:
    return {"app.kubernetes.io/name": case.chart.name, "app.kubernetes.io/instance": RELEASE}


def with_chart_names(case: Case, rendered: Manifest) -> Manifest:
    """The operator's pod spec with the chart-only differences applied (module docstring)."""
    policy = equivalent_policy(case)
    names = ChildNames.of(policy)
    values = case.values
    pod = copy.deepcopy(rendered)
    token_secret = values.get("tokens", {}).get("secretName") or case.fullname
    for volume in pod["volumes"]:
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"]["claimName"] = f"{case.fullname}-state"
        for source in volume.get("projected", {}).get("sources", []):
            if case.chart is THREADER and source.get("secret", {}).get("name") == (
                names.threader_secret
            ):
                source["secret"]["name"] = token_secret
            if source.get("configMap", {}).get("name") == names.exporter:
                source["configMap"]["name"] = case.fullname
    operator_prefix = f"lumen:{NAMESPACE}:{POLICY}:"
    chart_prefix = values.get("keyPrefix") or f"lumen:{NAMESPACE}:{case.fullname}:"
    for container in pod["containers"]:
        container["imagePullPolicy"] = values["image"]["pullPolicy"]
        container["args"] = [chart_prefix if a == operator_prefix else a for a in container["args"]]
    for constraint in pod.get("topologySpreadConstraints", []):
        constraint["labelSelector"]["matchLabels"] = chart_selector(case)
    for key in SCHEDULING:
        if values[key]:
            pod[key] = values[key]
    return pod


@pytest.fixture(params=CASES, ids=lambda case: case.id)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


def test_every_chart_has_cases_beyond_its_defaults() -> None:
    for chart in STANDALONE:
        assert len([c for c in CASES if c.chart is chart and c.files]) >= 2, chart.name


def test_same_kinds_as_the_operator(case: Case) -> None:
    """The chart's NetworkPolicy is compared in test_charts.py (the operator's is optional)."""
    ours = set(by_kind(render(case.chart, case.files))) - {"NetworkPolicy"}
    theirs = set(operator_objects(case)) - {"NetworkPolicy"}
    assert ours == theirs


def test_container_equals_the_operators(case: Case) -> None:
    (ours,) = by_kind(render(case.chart, case.files))["Deployment"]["spec"]["template"]["spec"][
        "containers"
    ]
    rendered = operator_objects(case)["Deployment"]["spec"]["template"]["spec"]
    (theirs,) = with_chart_names(case, rendered)["containers"]
    for part in ("image", "command", "args", "ports", "startupProbe", "livenessProbe"):
        assert ours.get(part) == theirs.get(part), part
    for part in ("readinessProbe", "resources", "securityContext", "env", "volumeMounts"):
        assert ours.get(part) == theirs.get(part), part
    assert ours == theirs


def test_pod_spec_equals_the_operators(case: Case) -> None:
    ours = by_kind(render(case.chart, case.files))["Deployment"]["spec"]["template"]["spec"]
    rendered = operator_objects(case)["Deployment"]["spec"]["template"]["spec"]
    theirs = with_chart_names(case, rendered)
    assert ours["securityContext"] == theirs["securityContext"]
    assert ours["volumes"] == theirs["volumes"]
    assert ours == theirs


def test_deployment_equals_the_operators(case: Case) -> None:
    ours = by_kind(render(case.chart, case.files))["Deployment"]["spec"]
    theirs = operator_objects(case)["Deployment"]["spec"]
    for part in ("replicas", "revisionHistoryLimit", "strategy"):
        assert ours[part] == theirs[part], part
    assert ours["selector"] == {"matchLabels": chart_selector(case)}
    assert ours["template"]["metadata"]["labels"].items() >= chart_selector(case).items()


def test_pod_annotations(case: Case) -> None:
    """The exporter's pod rolls with its config.json, as the operator's does; the chart's hash
    is of its own ConfigMap's text."""
    objects = by_kind(render(case.chart, case.files))
    annotations = objects["Deployment"]["spec"]["template"]["metadata"].get("annotations", {})
    expected = dict(case.values["podAnnotations"])
    if case.chart is EXPORTER:
        config = objects["ConfigMap"]["data"]["config.json"]
        expected["lumen.dev/config-hash"] = hashlib.sha256(config.encode()).hexdigest()
        assert set(
            operator_objects(case)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
        ) == {"lumen.dev/config-hash"}
    assert annotations == expected


def test_service_and_service_monitor_equal_the_operators(case: Case) -> None:
    ours = by_kind(render(case.chart, case.files))
    theirs = operator_objects(case)
    selector = chart_selector(case)
    service = copy.deepcopy(theirs["Service"]["spec"])
    service["selector"] = selector
    assert ours["Service"]["spec"] == service
    monitor = copy.deepcopy(theirs["ServiceMonitor"]["spec"])
    monitor["selector"] = {"matchLabels": selector}
    assert ours["ServiceMonitor"]["spec"] == monitor
    release = theirs["ServiceMonitor"]["metadata"]["labels"]["release"]
    assert ours["ServiceMonitor"]["metadata"]["labels"]["release"] == release


def test_claim_equals_the_operators(case: Case) -> None:
    ours = by_kind(render(case.chart, case.files)).get("PersistentVolumeClaim")
    theirs = operator_objects(case).get("PersistentVolumeClaim")
    assert (ours is None) == (theirs is None)
    if ours is None or theirs is None:
        return
    assert ours["metadata"]["name"] == f"{case.fullname}-state"
    spec = copy.deepcopy(ours["spec"])
    storage = spec["resources"]["requests"]["storage"]
    spec["resources"]["requests"]["storage"] = canonical_quantity(storage)
    assert spec == theirs["spec"]


@pytest.mark.parametrize("case", [c for c in CASES if c.chart is EXPORTER], ids=lambda c: c.id)
def test_config_json_equals_the_operators(case: Case) -> None:
    ours = by_kind(render(case.chart, case.files))["ConfigMap"]["data"]["config.json"]
    theirs = operator_objects(case)["ConfigMap"]["data"]["config.json"]
    assert json.loads(ours) == json.loads(theirs)


def test_network_policy_equals_the_operators_when_it_renders_one(case: Case) -> None:
    """Once the renderer makes NetworkPolicies, the chart's must match for the same peers, and
    both leave it out when it is switched off."""
    if "network_policies" not in network_options(case.values):
        pytest.skip("this renderer makes no NetworkPolicy")
    for enabled in (True, False):
        sets = [f"networkPolicy.enabled={str(enabled).lower()}"]
        ours = by_kind(render(case.chart, case.files, sets)).get("NetworkPolicy")
        values = deep_merge(case.values, {"networkPolicy": {"enabled": enabled}})
        options = dataclasses.replace(RenderOptions(), **network_options(values))
        theirs = by_kind(render_policy(equivalent_policy(case), options, only="workloads")).get(
            "NetworkPolicy"
        )
        assert (ours is None) == (theirs is None) == (not enabled)
    ours = by_kind(render(case.chart, case.files))["NetworkPolicy"]["spec"]
    theirs = operator_objects(case)["NetworkPolicy"]
    expected = copy.deepcopy(theirs["spec"])
    expected["podSelector"] = {"matchLabels": chart_selector(case)}
    assert ours == expected


def test_chart_defaults_are_the_models() -> None:
    """values.yaml's spec part is the model's defaults (a policy with an empty spec.threader),
    and the chart-only defaults are the operator's: image, resources, release label."""
    for chart, resources in (
        (THREADER, DEFAULT_THREADER_RESOURCES),
        (EXPORTER, DEFAULT_EXPORTER_RESOURCES),
    ):
        values = merged_values(chart, ())
        case = Case(chart, ())
        empty = policy_from_manifest(
            {
                "apiVersion": "lumen.dev/v1alpha1",
                "kind": "LumenAlertPolicy",
                "metadata": {"name": POLICY, "namespace": NAMESPACE},
                "spec": {"service": "shop", chart.spec_field: {}},
            }
        )
        assert equivalent_policy(case).spec == empty.spec, chart.name
        assert chart_image(values) == DEFAULT_IMAGE
        assert values["resources"] == resources
        assert kps_release(values) == DEFAULT_KPS_RELEASE
