"""charts/threader and charts/exporter as Helm charts: they lint, render valid and stable objects,
refuse bad values with clear messages, document every value, and work as the umbrella chart's
aliased subcharts."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.policy.durations import parse_duration
from lumen_alerting.policy.loading import InvalidPolicy
from lumen_alerting.render.threader import seconds_arg
from tests.chart.helm import run_helm
from tests.chart_standalone.generator import (
    SCRIPT,
    STANDALONE,
    TEMPLATE_RULES,
    Chart,
    leaves,
    readme_text,
    schema_text,
)
from tests.chart_standalone.rendering import (
    NAMESPACE,
    RELEASE,
    by_kind,
    documents,
    merged_values,
    render,
    template_args,
    template_text,
    values_files,
)
from tests.render import test_network_policies as operator_peers
from tests.support.schemas import REPO, validate_object

THREADER, EXPORTER = STANDALONE
CHARTS = {chart.spec_field: chart for chart in STANDALONE}
RENDERINGS = [
    (chart, files)
    for chart in STANDALONE
    for files in ((), *((path,) for path in values_files(chart.spec_field)))
]
RENDERING_IDS = [files[0].stem if files else f"{c.spec_field}-defaults" for c, files in RENDERINGS]
PORTS = {THREADER: 8080, EXPORTER: 9108}


@pytest.fixture(params=STANDALONE, ids=lambda chart: chart.spec_field)
def chart(request: pytest.FixtureRequest) -> Chart:
    return request.param  # type: ignore[no-any-return]


def refusal(chart: Chart, *sets: str, values: dict[str, Any] | None = None) -> str:
    """helm's complaint about the values; fails the test when helm renders them."""
    args = template_args(chart.directory, (), sets)
    if values is not None:
        for key, value in values.items():
            args += ["--set-json", f"{key}={json.dumps(value)}"]
    proc = run_helm(*args)
    assert proc.returncode != 0, f"helm rendered {sets or values} instead of refusing them"
    return proc.stderr


# --- chart metadata, lint, rendering -------------------------------------------------------------


def test_chart_metadata(chart: Chart) -> None:
    meta = yaml.safe_load((chart.directory / "Chart.yaml").read_text())
    assert (meta["name"], meta["version"], meta["appVersion"]) == (chart.name, "0.1.0", "0.1.0")
    values = merged_values(chart, ())
    assert values["image"] == {
        "repository": "ghcr.io/lumen-alerting/lumen",
        "tag": "",  # the appVersion
        "pullPolicy": "IfNotPresent",
    }


@pytest.mark.parametrize(("chart", "files"), RENDERINGS, ids=RENDERING_IDS)
def test_helm_lint_strict(chart: Chart, files: tuple[Path, ...]) -> None:
    args = ["lint", "--strict", str(chart.directory), "--namespace", NAMESPACE]
    for path in files:
        args += ["--values", str(path)]
    proc = run_helm(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize(("chart", "files"), RENDERINGS, ids=RENDERING_IDS)
def test_rendered_objects_validate_and_are_stable(chart: Chart, files: tuple[Path, ...]) -> None:
    first = template_text(chart, files)
    assert template_text(chart, files) == first, "two renders differ"
    objects = documents(first)
    assert {"Deployment", "Service"} <= {obj["kind"] for obj in objects}
    for obj in objects:
        validate_object(obj)
        assert obj["metadata"]["namespace"] == NAMESPACE
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "lumen"


@pytest.mark.parametrize(("chart", "files"), RENDERINGS, ids=RENDERING_IDS)
def test_selectors_line_up(chart: Chart, files: tuple[Path, ...]) -> None:
    objects = by_kind(render(chart, files))
    selector = objects["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": chart.name, "app.kubernetes.io/instance": RELEASE}
    assert objects["Deployment"]["spec"]["template"]["metadata"]["labels"].items() >= (
        selector.items()
    )
    assert objects["Service"]["spec"]["selector"] == selector
    if "ServiceMonitor" in objects:
        assert objects["ServiceMonitor"]["spec"]["selector"] == {"matchLabels": selector}
    if "NetworkPolicy" in objects:
        assert objects["NetworkPolicy"]["spec"]["podSelector"] == {"matchLabels": selector}


def expected_ingress(chart: Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The contract's shape: one rule per peer group on the service's one port; an empty group
    adds no rule (a rule without `from` admits everyone). A threader Slack or browsers call
    through an ingress (incidents.signingSecret or publicURL) admits every source on its port."""
    policy = values["networkPolicy"]
    port = [{"port": PORTS[chart], "protocol": "TCP"}]
    incidents = values.get("incidents") or {}
    if chart is THREADER and (incidents.get("signingSecret") or incidents.get("publicURL")):
        return [{"ports": port}]
    if chart is THREADER:
        groups = [policy["alertmanagerPeers"], policy["prometheusPeers"]]
    else:
        groups = [policy["prometheusPeers"]]
        if values["pipeline"]["enabled"]:
            groups.append(policy["pipelinePeers"])
    return [{"from": peers, "ports": port} for peers in groups if peers]


@pytest.mark.parametrize(("chart", "files"), RENDERINGS, ids=RENDERING_IDS)
def test_network_policy_admits_only_the_peers(chart: Chart, files: tuple[Path, ...]) -> None:
    values = merged_values(chart, files)
    spec = by_kind(render(chart, files))["NetworkPolicy"]["spec"]
    assert spec["policyTypes"] == ["Ingress"]  # egress (Slack, probe targets) stays open
    assert spec.get("ingress", []) == expected_ingress(chart, values)


def test_network_policy_with_no_peers_admits_nobody() -> None:
    objects = by_kind(
        render(
            THREADER,
            sets=["networkPolicy.alertmanagerPeers=null", "networkPolicy.prometheusPeers=null"],
        )
    )
    spec = objects["NetworkPolicy"]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert "ingress" not in spec  # no rule: nothing may connect (an empty list is dropped)


def test_pipeline_peers_only_with_the_pipeline() -> None:
    (files,) = [path for path in values_files("exporter") if path.stem == "exporter-probes"]
    on = by_kind(render(EXPORTER, (files,)))["NetworkPolicy"]["spec"]["ingress"]
    off = by_kind(render(EXPORTER, (files,), ["pipeline.enabled=false"]))["NetworkPolicy"]
    assert len(on) == 2
    assert [rule["from"] for rule in off["spec"]["ingress"]] == [on[0]["from"]]


def test_optional_objects_can_be_left_out(chart: Chart) -> None:
    kinds = set(by_kind(render(chart)))
    assert {"ServiceMonitor", "NetworkPolicy"} <= kinds
    fewer = set(
        by_kind(render(chart, sets=["serviceMonitor.enabled=false", "networkPolicy.enabled=false"]))
    )
    assert kinds - fewer == {"ServiceMonitor", "NetworkPolicy"}
    assert render(chart, sets=["enabled=false"]) == []


def test_pod_annotations_never_duplicate_the_config_hash() -> None:
    """podAnnotations join the exporter's config-hash annotation in one map, the hash winning: a
    user key of the same name neither writes the key twice nor stops the pod rolling."""
    annotations = {"lumen.dev/config-hash": "mine", "team": "shop"}
    args = template_args(EXPORTER.directory, (), ())
    proc = run_helm(*args, "--set-json", f"podAnnotations={json.dumps(annotations)}")
    assert proc.returncode == 0, proc.stderr
    objects = by_kind(documents(proc.stdout))  # refuses a key written twice
    config = objects["ConfigMap"]["data"]["config.json"]
    pod = objects["Deployment"]["spec"]["template"]["metadata"]
    assert pod["annotations"] == {
        "lumen.dev/config-hash": hashlib.sha256(config.encode()).hexdigest(),
        "team": "shop",
    }


def test_release_label(chart: Chart) -> None:
    def release(*sets: str) -> str:
        monitor = by_kind(render(chart, sets=sets))["ServiceMonitor"]
        return str(monitor["metadata"]["labels"]["release"])

    assert release() == "kube-prometheus-stack"
    assert release("global.kpsRelease=from-global") == "from-global"
    assert release("global.kpsRelease=from-global", "kpsRelease=own") == "own"


def test_names_follow_the_release(chart: Chart) -> None:
    def name(release: str, *sets: str) -> str:
        args = ["template", release, str(chart.directory), *[f"--set={s}" for s in sets]]
        proc = run_helm(*args)
        assert proc.returncode == 0, proc.stderr
        return str(by_kind(documents(proc.stdout))["Deployment"]["metadata"]["name"])

    assert name("alerts") == f"alerts-{chart.name}"
    assert name(f"team-{chart.name}") == f"team-{chart.name}"
    assert name("lumen") == chart.name
    assert name("alerts", "fullnameOverride=mine") == "mine"


def test_a_release_name_that_cannot_name_a_service_needs_fullname_override(chart: Chart) -> None:
    """Helm takes release names a Service cannot have (a leading digit, dots): the chart says so
    instead of rendering objects the API server refuses."""
    for release in ("1st", "team.alerts"):
        proc = run_helm("template", release, str(chart.directory))
        assert proc.returncode != 0, f"release {release} rendered"
        assert "is not a Service name" in proc.stderr and "fullnameOverride" in proc.stderr
        fixed = run_helm("template", release, str(chart.directory), "--set", "fullnameOverride=ok")
        assert fixed.returncode == 0, fixed.stderr


def test_resources_take_kubernetes_quantities(chart: Chart) -> None:
    sets = ["resources.limits.cpu=1", "resources.limits.memory=1.5Gi", "resources.requests.cpu=0.1"]
    pod = by_kind(render(chart, sets=sets))["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": 1, "memory": "1.5Gi"}


def test_threader_token_secret_is_referenced_never_rendered() -> None:
    """The chart renders no Secret: the tokens come from one the user created (README)."""
    for files in ((), *((path,) for path in values_files("threader"))):
        objects = render(THREADER, files)
        assert "Secret" not in {obj["kind"] for obj in objects}
    pod = by_kind(render(THREADER, sets=["tokens.secretName=team-tokens"]))["Deployment"]
    (volume,) = [v for v in pod["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets"]
    (tokens,) = volume["projected"]["sources"]
    assert tokens["secret"]["name"] == "team-tokens"
    assert {item["key"] for item in tokens["secret"]["items"]} == {"webhook-token", "admin-token"}


def test_notes_tell_how_to_create_the_token_secret() -> None:
    proc = run_helm("install", "alerts", str(THREADER.directory), "--dry-run=client", "-n", "mon")
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n mon create secret generic alerts-lumen-threader" in notes
    assert "http://alerts-lumen-threader.mon.svc:8080/alert?channel=" in notes


def threader_notes(*sets: str) -> str:
    args = ["install", "alerts", str(THREADER.directory), "--dry-run=client", "-n", "mon"]
    for assignment in sets:
        args += ["--set-json", assignment]
    proc = run_helm(*args)
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split("NOTES:", 1)[1].split())  # lines joined


@pytest.mark.parametrize(
    ("sets", "admitted"),
    [
        ((), ["alertmanagerPeers", "prometheusPeers"]),
        (("networkPolicy.alertmanagerPeers=[]",), ["prometheusPeers"]),
        (("networkPolicy.prometheusPeers=[]",), ["alertmanagerPeers"]),
    ],
    ids=["both", "prometheus-only", "alertmanager-only"],
)
def test_notes_name_every_peer_list_the_network_policy_admits(
    sets: tuple[str, ...], admitted: list[str]
) -> None:
    """Both peer lists open the one port (Prometheus scrapes /metrics on it): the NOTES name
    exactly the lists the rendered NetworkPolicy has a rule for."""
    rules = by_kind(render(THREADER, sets=[s.replace("[]", "null") for s in sets]))
    assert len(rules["NetworkPolicy"]["spec"]["ingress"]) == len(admitted)
    notes = threader_notes(*sets)
    (said,) = [line for line in notes.split(". ") if "NetworkPolicy admits" in line]
    for group in ("alertmanagerPeers", "prometheusPeers"):
        assert (f"networkPolicy.{group} (" in said) is (group in admitted), said
    assert "to port 8080" in said


def test_notes_say_when_the_network_policy_admits_nobody() -> None:
    notes = threader_notes("networkPolicy.alertmanagerPeers=[]", "networkPolicy.prometheusPeers=[]")
    assert "NetworkPolicy admits nobody" in notes
    assert "admits only" not in notes
    assert (
        "NetworkPolicy" not in threader_notes("networkPolicy.enabled=false").split("Installed")[1]
    )


# --- values: schema, rules, documentation ---------------------------------------------------------


def test_schema_and_readme_are_generated(chart: Chart) -> None:
    fix = "run `make chart-docs` (tools/standalone_chart_values.py --write)"
    assert (chart.directory / "values.schema.json").read_text() == schema_text(chart), fix
    assert (chart.directory / "README.md").read_text() == readme_text(chart), fix


def test_generator_runs_as_a_script_and_from_make_chart_docs() -> None:
    """tools/standalone_chart_values.py checks (exit 0: nothing stale) without --write, and
    `make chart-docs` runs it with --write next to tools/chart_values.py (the root chart's)."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\nchart-docs:", 1)[1].split("\n\n", 1)[0]
    assert "\t$(VPY) tools/standalone_chart_values.py --write\n" in recipe + "\n"
    assert "\t$(VPY) tools/chart_values.py\n" in recipe


def test_default_values_pass_the_schema(chart: Chart) -> None:
    schema = json.loads((chart.directory / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(merged_values(chart, ()))
    for path in values_files(chart.spec_field):
        jsonschema.Draft7Validator(schema).validate(merged_values(chart, (path,)))


def test_every_object_in_the_schema_is_closed(chart: Chart) -> None:
    """additionalProperties false everywhere but free-form maps and pass-through objects."""
    open_objects = {"affinity", "global", "tolerations[]"}

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node and path not in open_objects:
            assert node.get("additionalProperties") is False, path
        if node.get("type") == "object" and "properties" not in node and path not in open_objects:
            assert isinstance(node.get("additionalProperties"), dict), f"{path}: an open object"
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}" if path else key)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(json.loads((chart.directory / "values.schema.json").read_text()), "")


def test_readme_documents_every_value(chart: Chart) -> None:
    readme = (chart.directory / "README.md").read_text()
    values = merged_values(chart, ())
    schema = json.loads((chart.directory / "values.schema.json").read_text())
    for path, _ in leaves(schema):
        assert f"| `{path}` |" in readme, path
    for key in values:
        assert f"| `{key}" in readme, key


@pytest.mark.parametrize(
    ("field", "sets", "message"),
    [
        ("threader", ["typo=1"], "at '': additional properties 'typo' not allowed"),
        ("threader", ["store.typo=1"], "at '/store': additional properties 'typo' not allowed"),
        ("threader", ["replicas=two"], "at '/replicas': got string, want integer"),
        ("threader", ["replicas=11"], "at '/replicas'"),
        ("threader", ["threadKey=thread"], "at '/threadKey': value must be one of"),
        ("threader", ["botToken.name=Bad_Name", "botToken.key=k"], "at '/botToken/name'"),
        ("threader", ["botToken.name=slack"], "at '/botToken': missing property 'key'"),
        ("threader", ["image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        ("threader", ["networkPolicy.alertmanagerPeers[0].pods=x"], "additional properties"),
        ("threader", ["tokens.secretName=Not A Name"], "at '/tokens/secretName'"),
        ("exporter", ["probes[0].name=a", "probes[0].url=ftp://x"], "at '/probes/0/url'"),
        (
            "exporter",
            ["probes[0].name=a", "probes[0].url=http://x", "probes[0].method=PUT"],
            ("at '/probes/0/method'"),
        ),
        ("exporter", ["pipeline.expireAfter=2 days"], "at '/pipeline/expireAfter'"),
        ("exporter", ["persistence.size=1.5Gi"], "at '/persistence/size'"),
        ("exporter", ["resources.claims=x"], "at '/resources': additional properties 'claims'"),
        ("exporter", ["resources.limits.cpu=lots"], "at '/resources/limits/cpu'"),
        ("threader", ["resources.requests.memory=-1"], "at '/resources/requests/memory'"),
        ("threader", ["fullnameOverride=my.threader"], "at '/fullnameOverride'"),  # a Service
        ("exporter", ["fullnameOverride=1-exporter"], "at '/fullnameOverride'"),
        ("exporter", ["nameOverride=Exporter_2"], "at '/nameOverride'"),  # a label value too
        ("threader", ["global.kpsRelease=kps stack"], "at '/global/kpsRelease'"),
        ("threader", ["incidents.groupBy[0]=service-name"], "at '/incidents/groupBy/0'"),
        ("threader", ["incidents.alertmanagerURL=am:9093"], "at '/incidents/alertmanagerURL'"),
        ("threader", ["incidents.publicURL=ftp://x"], "at '/incidents/publicURL'"),
        ("threader", ["incidents.rawAlertRetention=1 day"], "at '/incidents/rawAlertRetention'"),
        ("threader", ["incidents.signingSecret.name=slack"], "missing property 'key'"),
        ("threader", ["store.type=postgres"], "at '/store/type': value must be one of"),
        ("threader", ["store.url=postgresql://pg/lumen"], "at '/store/url'"),
        ("threader", ["store.url=redis+ha://r:6379"], "at '/store/url'"),
        ("threader", ["store.replicaAcks=0"], "at '/store/replicaAcks': got number, want string"),
        ("threader", ["store.replicaAcks=all"], "at '/store/replicaAcks'"),
        ("threader", ["store.replicaAckTimeout=1.5s"], "at '/store/replicaAckTimeout'"),
        ("threader", ["store.passwordSecret.name=redis"], "missing property 'key'"),
        (
            "threader",
            ["store.databaseURL.name=Bad_Name", "store.databaseURL.key=url"],
            "at '/store/databaseURL/name'",
        ),
        ("threader", ["keyPrefix=lumen:{team}:"], "at '/keyPrefix'"),  # Cluster hash tag
    ],
)
def test_schema_refuses_bad_values(field: str, sets: list[str], message: str) -> None:
    assert message in refusal(CHARTS[field], *sets)


def test_schema_refuses_bad_probe_fields() -> None:
    probe: dict[str, Any] = {"name": "a", "url": "http://x"}
    for extra, message in (
        ({"fields": {"not-a-metric": "$.a"}}, "invalid propertyName 'not-a-metric'"),
        ({"expectedStatus": [200, 700]}, "at '/probes/0/expectedStatus/1'"),
        ({"color": "blue"}, "additional properties 'color'"),
    ):
        assert message in refusal(EXPORTER, values={"probes": [{**probe, **extra}]})


# --- NetworkPolicy peers: the schema refuses what the operator and the API server refuse ---------


def parametrized(test: Any) -> list[Any]:
    """The cases of a test's ``parametrize`` mark."""
    (mark,) = [mark for mark in vars(test)["pytestmark"] if mark.name == "parametrize"]
    return list(mark.args[1])


def peer_list(text: str) -> str:
    return f"[{{{text}}}]"


def selector(**expression: Any) -> str:
    return json.dumps([{"podSelector": {"matchExpressions": [expression]}}])


# Every peer list parse_peers refuses (tests/render), but `except` outside `cidr` (a JSON schema
# cannot compare CIDRs) and text that is not JSON (helm's --set-json refuses it first); and more.
PEER_REFUSALS = [
    text
    for text, complaint in parametrized(
        operator_peers.test_bad_peer_lists_are_refused_with_where_and_why
    )
    if "is not inside" not in complaint and complaint != "not JSON"
] + [
    peer_list('"podSelector": {"matchLabels": {"/foo": "x"}}'),  # empty prefix
    peer_list('"podSelector": {"matchLabels": {"bad key!": "x"}}'),
    peer_list('"namespaceSelector": {"matchLabels": {"a": "bad value"}}'),
    peer_list('"podSelector": {"matchLabels": {"a": "-x"}}'),
    peer_list('"ipBlock": {"cidr": "nonsense"}'),
    peer_list('"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0"]}'),
    peer_list('"ipBlock": {"cidr": "fd00::/129"}'),
    peer_list('"ipBlock": {"cidr": "1::2::3/64"}'),
    peer_list('"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}'),
    selector(key="a", operator="NotIn"),
    selector(key="a", operator="In", values=[]),
    selector(key="a", operator="In", values=None),
    selector(key="a", operator="DoesNotExist", values=["x"]),
    selector(key="/a", operator="Exists"),
]

# Peer lists the operator accepts (tests/render), and more the API server accepts.
PEERS_ACCEPTED = [
    text
    for text, _ in parametrized(
        operator_peers.test_empty_parts_are_dropped_as_the_api_server_drops_them
    )
] + [
    peer_list('"podSelector": {"matchLabels": {"lumen.dev/x_Y.z": "A-b_c.9", "k": ""}}'),
    peer_list('"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}'),
    peer_list('"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8::ffff:10.0.0.0/120"]}'),
    peer_list('"ipBlock": {"cidr": "::/0"}'),
    selector(key="a.b/c", operator="NotIn", values=["x", "y"]),
    selector(key="a", operator="DoesNotExist", values=None),
]

PEER_VALUES = {
    THREADER: "networkPolicy.alertmanagerPeers",
    EXPORTER: "networkPolicy.prometheusPeers",
}


@pytest.mark.parametrize("text", PEER_REFUSALS, ids=range(len(PEER_REFUSALS)))
def test_schema_refuses_peers_the_api_server_refuses(text: str) -> None:
    """A peer the operator refuses at start (and the API server in a NetworkPolicy) stops
    `helm install` at the schema, instead of a NetworkPolicy the API server refuses."""
    for chart, key in PEER_VALUES.items():
        proc = run_helm(*template_args(chart.directory, (), ()), "--set-json", f"{key}={text}")
        assert proc.returncode != 0, f"{chart.name} rendered {key}={text}"
        assert "don't meet the specifications of the schema" in proc.stderr, proc.stderr


@pytest.mark.parametrize("text", PEERS_ACCEPTED, ids=range(len(PEERS_ACCEPTED)))
def test_schema_accepts_peers_the_api_server_accepts(text: str) -> None:
    for chart, key in PEER_VALUES.items():
        proc = run_helm(*template_args(chart.directory, (), ()), "--set-json", f"{key}={text}")
        assert proc.returncode == 0, proc.stderr
        policy = by_kind(documents(proc.stdout))["NetworkPolicy"]
        validate_object(policy)
        assert policy["spec"]["ingress"][0]["from"] == json.loads(text)


def test_every_peer_list_has_the_same_schema() -> None:
    """The lists the tests above send stand for all: each is the same NetworkPolicyPeer schema."""
    items = [
        peers["items"]
        for chart in STANDALONE
        for peers in json.loads((chart.directory / "values.schema.json").read_text())["properties"][
            "networkPolicy"
        ]["properties"].values()
        if peers.get("type") == "array"
    ]
    assert len(items) == 4
    assert all(item == items[0] for item in items)


def test_schema_refuses_labels_and_annotations_the_api_server_refuses(chart: Chart) -> None:
    """nodeSelector is checked as labels (keys and values), annotation keys as label keys."""
    for values, message in (
        ({"nodeSelector": {"disk": "fast ssd"}}, "at '/nodeSelector/disk'"),
        ({"nodeSelector": {"/disk": "ssd"}}, "invalid propertyName '/disk'"),
        ({"podAnnotations": {"bad key": "x"}}, "invalid propertyName 'bad key'"),
    ):
        assert message in refusal(chart, values=values)
    fine = {"nodeSelector": {"node.kubernetes.io/disk": "ssd"}, "podAnnotations": {"a/b": "x y"}}
    args = template_args(chart.directory, (), ())
    for key, value in fine.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    proc = run_helm(*args)
    assert proc.returncode == 0, proc.stderr
    pod = by_kind(documents(proc.stdout))["Deployment"]["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == fine["nodeSelector"]
    assert pod["metadata"]["annotations"]["a/b"] == "x y"


# Values breaking each CEL rule of the CRD that the templates check (TEMPLATE_RULES of the
# generator).
PG_URL = {"name": "lumen-postgres", "key": "url"}
RULE_BREAKERS: dict[str, dict[str, Any]] = {
    "allowVolatile only applies to store.type redis or postgresql": {
        "store": {"allowVolatile": True}
    },
    "store.url must not hold a password: put it in store.passwordSecret": {
        "store": {"type": "redis", "url": "redis+sentinel://lumen:pw@s-0:26379/m"}
    },
    "replicaAckTimeout must be more than 0": {
        "store": {"type": "redis", "url": "redis://r:6379/0", "replicaAckTimeout": "0ms"}
    },
    "passwordSecret only applies to store.type redis": {
        "store": {"passwordSecret": {"name": "redis", "key": "password"}}
    },
    "databaseURL only applies to store.type postgresql (a Redis store takes url)": {
        "store": {"type": "redis", "url": "redis://r:6379/0", "databaseURL": PG_URL}
    },
    "store.type postgresql needs store.databaseURL (a Secret key holding the URL)": {
        "store": {"type": "postgresql"}
    },
    "replicaAcks and replicaAckTimeout only apply to store.type redis": {
        "store": {"type": "postgresql", "databaseURL": PG_URL, "replicaAcks": "0"}
    },
    "more than one replica needs store.type redis or postgresql": {"replicas": 2},
    "store.type redis needs store.url": {"store": {"type": "redis"}},
    "more than one replica needs incidents.databaseURL (a shared PostgreSQL or MySQL/MariaDB) or "
    "store.type postgresql": {
        "replicas": 2,
        "store": {"type": "redis", "url": "redis://r:6379/0"},
    },
    "persistence needs replicas 1 (several replicas share state through store.type redis and "
    "incidents.databaseURL, or store.type postgresql, instead)": {
        "replicas": 2,
        "store": {"type": "redis", "url": "redis://r:6379/0"},
        "incidents": {"databaseURL": {"name": "pg", "key": "url"}},
        "persistence": {"enabled": True},
    },
    "pipeline.enabled needs pipeline.token": {"pipeline": {"enabled": True}},
    "every key of valueMaps must be a key of fields (a value map converts that field's strings)": {
        "probes": [{"name": "a", "url": "http://x", "valueMaps": {"lumen_s": {"up": 1}}}],
    },
}


@pytest.mark.parametrize("message", list(RULE_BREAKERS), ids=range(len(RULE_BREAKERS)))
def test_chart_refuses_what_the_crd_refuses(message: str) -> None:
    """Each rule the templates check: the chart refuses the values with the message the API
    server (and lumenctl validate) give for a policy with that spec."""
    (chart,) = [c for c in STANDALONE if message in TEMPLATE_RULES[c.name]]
    values = RULE_BREAKERS[message]
    assert message in refusal(chart, values=values)
    manifest = {
        "apiVersion": "lumen.dev/v1alpha1",
        "kind": "LumenAlertPolicy",
        "metadata": {"name": "p", "namespace": NAMESPACE},
        "spec": {"service": "shop", chart.spec_field: values},
    }
    with pytest.raises(InvalidPolicy) as invalid:
        policy_from_manifest(manifest)
    assert any(message in problem.reason for problem in invalid.value.problems)


def test_every_template_rule_is_exercised() -> None:
    assert sorted(RULE_BREAKERS) == sorted(m for c in STANDALONE for m in TEMPLATE_RULES[c.name])


def test_list_keys_are_unique() -> None:
    """The CRD's list-map keys: probe names, and a probe's header names whatever their case."""
    twice = [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]
    assert 'duplicate probe name "a"' in refusal(EXPORTER, values={"probes": twice})
    secret = {"name": "s", "key": "k"}
    headers = [{"name": "X-Key", "secret": secret}, {"name": "x-key", "secret": secret}]
    probe = {"name": "a", "url": "http://x", "headers": headers}
    assert 'duplicate header "x-key"' in refusal(EXPORTER, values={"probes": [probe]})


# --- as subcharts of the umbrella chart -----------------------------------------------------------

UMBRELLA = {
    "apiVersion": "v2",
    "name": "lumen",
    "version": "0.1.0",
    "appVersion": "0.1.0",
    "dependencies": [
        {
            "name": c.name,
            "version": "0.1.0",
            "alias": c.spec_field,
            "condition": f"{c.spec_field}.enabled",
        }
        for c in STANDALONE
    ],
}


@pytest.fixture()
def umbrella(tmp_path: Path) -> Path:
    """A stand-in for the root chart: both charts under charts/, aliased, off by default."""
    root = tmp_path / "lumen"
    (root / "templates").mkdir(parents=True)
    (root / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: umbrella\n"
    )
    (root / "Chart.yaml").write_text(yaml.safe_dump(UMBRELLA))
    (root / "values.yaml").write_text(
        yaml.safe_dump({"threader": {"enabled": False}, "exporter": {"enabled": False}})
    )
    for chart in STANDALONE:
        shutil.copytree(chart.directory, root / "charts" / chart.spec_field)
    return root


def test_subcharts_are_off_by_default(umbrella: Path) -> None:
    proc = run_helm("template", "lumen", str(umbrella), "-n", NAMESPACE)
    assert proc.returncode == 0, proc.stderr
    assert [obj["kind"] for obj in documents(proc.stdout)] == ["ConfigMap"]


def test_subcharts_render_under_their_aliases(umbrella: Path) -> None:
    values = umbrella / "on.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "global": {"kpsRelease": "kps", "imageRegistry": "ignored"},
                "threader": {"enabled": True, "botToken": {"name": "slack", "key": "token"}},
                "exporter": {"enabled": True, "probes": [{"name": "a", "url": "http://a"}]},
            }
        )
    )
    proc = run_helm("template", "lumen", str(umbrella), "-n", NAMESPACE, "-f", str(values))
    assert proc.returncode == 0, proc.stderr
    objects = documents(proc.stdout)
    for obj in objects:
        validate_object(obj)
    named = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    for chart in STANDALONE:
        assert ("Deployment", chart.name) in named  # release `lumen`: lumen-threader
    monitors = [obj for obj in objects if obj["kind"] == "ServiceMonitor"]
    assert [m["metadata"]["labels"]["release"] for m in monitors] == ["kps", "kps"]
    names = {obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") for obj in objects}
    assert names >= {"lumen-threader", "lumen-exporter"}  # not the aliases
    lint = run_helm("lint", "--strict", str(umbrella), "-f", str(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_subchart_values_are_checked_by_their_schema(umbrella: Path) -> None:
    proc = run_helm(
        "template", "lumen", str(umbrella), "--set", "threader.enabled=true", "--set",
        "threader.replicas=many",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "at '/replicas': got string, want integer" in proc.stderr


@pytest.mark.parametrize(
    "timeout", ["1s", "1000ms", "1500ms", "250ms", "1m30s", "2h", "1d1ms", "01s", "1w", "10s"]
)
def test_replica_ack_timeout_is_the_operators_seconds(timeout: str) -> None:
    """The template's duration arithmetic gives the renderer's text (render/threader.py
    seconds_arg), and leaves the flag out for the threader's default, however written."""
    values = {"store": {"type": "redis", "url": "redis://r:6379/0", "replicaAckTimeout": timeout}}
    args = template_args(THREADER.directory, (), ())
    args += ["--set-json", f"store={json.dumps(values['store'])}"]
    proc = run_helm(*args)
    assert proc.returncode == 0, proc.stderr
    (deployment,) = [d for d in documents(proc.stdout) if d["kind"] == "Deployment"]
    chart_args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    if parse_duration(timeout) == 1:
        assert "--replica-ack-timeout" not in chart_args
    else:
        flag = chart_args.index("--replica-ack-timeout")
        assert chart_args[flag + 1] == seconds_arg(timeout)
