"""
The README's install commands, run for real: ``kubectl`` 1.35 and ``helm`` 4 from ``.tools/bin``
against the API emulator (tests/support/kube_cli.py). Each test asserts on the tools' output
and on the objects the emulator stored.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube_cli import CRDS, REPO, KubeCli, kube_cli

LAP = "lumen.dev/v1alpha1/lumenalertpolicies"
LAP_CRD = "lumenalertpolicies.lumen.dev"
SECRETS = "v1/secrets"


@pytest.fixture()
def cli(tmp_path: Path) -> Iterator[KubeCli]:
    with kube_cli(tmp_path) as tools:
        yield tools


def condition(obj: dict[str, Any], kind: str) -> str | None:
    for entry in obj.get("status", {}).get("conditions", []):
        if entry["type"] == kind:
            return str(entry["status"])
    return None


def release_secrets(cli: KubeCli, namespace: str) -> dict[str, dict[str, str]]:
    """Helm's release records (Secrets of type helm.sh/release.v1): name → labels."""
    return {
        secret["metadata"]["name"]: secret["metadata"]["labels"]
        for secret in cli.cluster.list(SECRETS, namespace, "owner=helm")
        if secret["type"] == "helm.sh/release.v1"
    }


def test_the_server_reports_the_kubernetes_version_charts_are_checked_against(
    cli: KubeCli,
) -> None:
    version = json.loads(cli.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["major"] == "1"
    assert version["serverVersion"]["minor"] == "35"
    assert version["serverVersion"]["gitVersion"].startswith("v1.35.")


def test_built_in_kinds_resolve_by_short_name_with_their_scope(cli: KubeCli) -> None:
    listed = cli.kubectl("get", "ns", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(listed)
    resources = cli.kubectl("api-resources", "-o", "wide").stdout
    rows = {line.split()[0]: line.split() for line in resources.splitlines()[1:]}
    for name, short, namespaced in (
        ("namespaces", "ns", "false"),
        ("services", "svc", "true"),
        ("deployments", "deploy", "true"),
        ("clusterroles", None, "false"),
        ("poddisruptionbudgets", "pdb", "true"),
        ("networkpolicies", "netpol", "true"),
        ("customresourcedefinitions", "crd", "false"),
        ("servicemonitors", "smon", "true"),  # from the prometheus-operator CRDs
    ):
        row = rows[name]
        assert namespaced in row, row
        if short is not None:
            assert short in row[1].split(","), row


def test_applied_crds_make_lumenalertpolicies_served(cli: KubeCli) -> None:
    before = cli.kubectl("get", "lumenalertpolicies", "-A", check=False)
    assert before.returncode != 0
    assert 'the server doesn\'t have a resource type "lumenalertpolicies"' in before.stderr

    applied = cli.kubectl("apply", "--server-side", "-f", "crds/")
    assert f"customresourcedefinition.apiextensions.k8s.io/{LAP_CRD} serverside-applied" in (
        applied.stdout
    )
    crd = cli.cluster.get(CRDS, None, LAP_CRD)
    assert crd is not None
    assert condition(crd, "Established") == "True"
    assert condition(crd, "NamesAccepted") == "True"
    assert crd["status"]["acceptedNames"]["kind"] == "LumenAlertPolicy"
    waited = cli.kubectl("wait", "--for=condition=Established", f"crd/{LAP_CRD}", "--timeout=60s")
    assert "condition met" in waited.stdout

    after = cli.kubectl("get", "lumenalertpolicies", "-A")
    assert after.stdout == ""
    assert "No resources found" in after.stderr


def test_a_policy_from_examples_applies_with_kubectl_and_reads_back(cli: KubeCli) -> None:
    cli.kubectl("apply", "-f", "crds/")  # the README's client-side apply
    example = yaml.safe_load((REPO / "examples" / "pipeline.yaml").read_text())
    namespace, name = example["metadata"]["namespace"], example["metadata"]["name"]

    refused = cli.kubectl("apply", "--server-side", "-f", "examples/pipeline.yaml", check=False)
    assert refused.returncode != 0
    assert f'namespaces "{namespace}" not found' in refused.stderr

    assert f"namespace/{namespace} created" in cli.kubectl("create", "namespace", namespace).stdout
    applied = cli.kubectl("apply", "--server-side", "-f", "examples/pipeline.yaml")
    assert f"lumenalertpolicy.lumen.dev/{name} serverside-applied" in applied.stdout

    stored = cli.cluster.get(LAP, namespace, name)
    assert stored is not None
    assert stored["spec"] == example["spec"]
    read = json.loads(cli.kubectl("get", "lap", "-n", namespace, name, "-o", "json").stdout)
    assert read["spec"] == example["spec"]
    assert read["metadata"]["uid"] == stored["metadata"]["uid"]


def test_a_misspelt_field_is_refused_by_kubectls_strict_validation(
    cli: KubeCli, tmp_path: Path
) -> None:
    cli.kubectl("apply", "--server-side", "-f", "crds/")
    cli.kubectl("create", "namespace", "lumen")
    misspelt = tmp_path / "misspelt.yaml"
    text = (REPO / "examples" / "pipeline.yaml").read_text()
    misspelt.write_text(text.replace("runbookBaseURL:", "runbookBaseUrl:"))

    refused = cli.kubectl("apply", "--server-side", "-f", str(misspelt), check=False)
    assert refused.returncode != 0
    assert 'strict decoding error: unknown field "spec.runbookBaseUrl"' in refused.stderr
    assert cli.cluster.get(LAP, "lumen", "pipeline") is None

    warned = cli.kubectl("apply", "--server-side", "--validate=warn", "-f", str(misspelt))
    assert 'Warning: unknown field "spec.runbookBaseUrl"' in warned.stderr
    stored = cli.cluster.get(LAP, "lumen", "pipeline")
    assert stored is not None
    assert "runbookBaseUrl" not in stored["spec"]  # pruned, as the API server does
    assert stored["spec"]["service"] == "lumen-pipeline"


def test_kubectl_get_shows_the_crds_printer_columns(cli: KubeCli) -> None:
    cli.kubectl("apply", "--server-side", "-f", "crds/")
    cli.kubectl("create", "namespace", "lumen")
    cli.kubectl("apply", "--server-side", "-f", "examples/pipeline.yaml")
    stored = cli.cluster.get(LAP, "lumen", "pipeline")
    assert stored is not None
    # The operator's status, as it would write it (READY, RULES, SLOS come from it).
    ready = {"type": "Ready", "status": "True", "reason": "Applied", "message": ""}
    valid = {"type": "Valid", "status": "True", "reason": "Valid", "message": ""}
    cli.cluster.put(
        LAP, {**stored, "status": {"conditions": [valid, ready], "rules": 7, "slos": 1}}
    )

    listed = cli.kubectl("get", "lumenalertpolicies", "-A").stdout.splitlines()
    assert listed[0].split() == ["NAMESPACE", "NAME", "READY", "RULES", "SLOS", "AGE"]
    (row,) = [line.split() for line in listed[1:]]
    assert row[:5] == ["lumen", "pipeline", "True", "7", "1"]
    assert row[5].endswith(("s", "m"))  # an age, e.g. 0s
    crds = cli.kubectl("get", "crd", LAP_CRD).stdout.splitlines()
    assert crds[0].split() == ["NAME", "CREATED", "AT"]
    crd = cli.cluster.get(CRDS, None, LAP_CRD)
    assert crd is not None
    assert crds[1].split() == [LAP_CRD, crd["metadata"]["creationTimestamp"]]


def test_deleting_the_crd_deletes_its_policies_and_stops_serving_them(cli: KubeCli) -> None:
    cli.kubectl("apply", "--server-side", "-f", "crds/")
    cli.kubectl("create", "namespace", "lumen")
    cli.kubectl("apply", "--server-side", "-f", "examples/pipeline.yaml")
    cli.kubectl("delete", "-f", "crds/")
    assert cli.cluster.get(CRDS, None, LAP_CRD) is None
    assert cli.cluster.get(LAP, "lumen", "pipeline") is None
    # kubectl still has the kind in its discovery cache: the server's 404 tells.
    gone = cli.kubectl("get", "lumenalertpolicies", "-A", check=False)
    assert gone.returncode != 0
    assert "Error from server (NotFound)" in gone.stderr
    assert cli.kubectl("api-resources", "--api-group=lumen.dev", "-o", "name").stdout == ""


def test_helm_install_upgrade_list_and_uninstall_of_the_chart(cli: KubeCli) -> None:
    installed = cli.helm("install", "lumen", ".", "-n", "lumen", "--create-namespace")
    assert "STATUS: deployed" in installed.stdout
    assert "REVISION: 1" in installed.stdout
    namespace = cli.cluster.get("v1/namespaces", None, "lumen")
    assert namespace is not None
    assert namespace["status"] == {"phase": "Active"}
    crd = cli.cluster.get(CRDS, None, LAP_CRD)  # from the chart's crds/
    assert crd is not None
    assert condition(crd, "Established") == "True"
    assert release_secrets(cli, "lumen") == {
        "sh.helm.release.v1.lumen.v1": {
            "name": "lumen",
            "owner": "helm",
            "status": "deployed",
            "version": "1",
            "modifiedAt": release_secrets(cli, "lumen")["sh.helm.release.v1.lumen.v1"][
                "modifiedAt"
            ],
        }
    }
    manifest = cli.helm("get", "manifest", "lumen", "-n", "lumen").stdout
    objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
    if objects:  # every object the chart renders is on the cluster
        live = json.loads(cli.kubectl("get", "-f", "-", "-o", "json", stdin=manifest).stdout)
        rendered = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
        items = live["items"] if live["kind"] == "List" else [live]
        assert sorted((o["kind"], o["metadata"]["name"]) for o in items) == rendered

    (listed,) = json.loads(cli.helm("list", "-n", "lumen", "-o", "json").stdout)
    assert (listed["name"], listed["status"], listed["revision"]) == ("lumen", "deployed", "1")

    upgraded = cli.helm("upgrade", "lumen", ".", "-n", "lumen", "--set", "kpsRelease=kps-other")
    assert "REVISION: 2" in upgraded.stdout
    secrets = release_secrets(cli, "lumen")
    assert secrets["sh.helm.release.v1.lumen.v1"]["status"] == "superseded"
    assert secrets["sh.helm.release.v1.lumen.v2"]["status"] == "deployed"
    values = json.loads(cli.helm("get", "values", "lumen", "-n", "lumen", "-o", "json").stdout)
    assert values == {"kpsRelease": "kps-other"}
    (listed,) = json.loads(cli.helm("list", "-A", "-o", "json").stdout)
    assert (listed["name"], listed["revision"]) == ("lumen", "2")

    uninstalled = cli.helm("uninstall", "lumen", "-n", "lumen")
    assert 'release "lumen" uninstalled' in uninstalled.stdout
    assert release_secrets(cli, "lumen") == {}
    assert json.loads(cli.helm("list", "-A", "-o", "json").stdout) == []
    if objects:
        left = cli.kubectl("get", "-f", "-", "-o", "name", stdin=manifest, check=False)
        assert left.stdout == ""
    assert cli.cluster.get(CRDS, None, LAP_CRD) is not None  # helm never deletes crds/


# A chart with one object of every kind Lumen's chart installs, and a `helm test` Pod.
KINDS_CHART: dict[str, str] = {
    "Chart.yaml": """
apiVersion: v2
name: kinds
version: 0.1.0
kubeVersion: ">=1.27.0-0"
""",
    "templates/objects.yaml": """
apiVersion: v1
kind: ServiceAccount
metadata: {name: op}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {level: info}
---
apiVersion: v1
kind: Secret
metadata: {name: token}
stringData: {token: abc}
---
apiVersion: v1
kind: Service
metadata: {name: op}
spec:
  selector: {app: op}
  ports: [{name: metrics, port: 8080, targetPort: metrics}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: op}
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: op}}
  template:
    metadata: {labels: {app: op}}
    spec:
      serviceAccountName: op
      containers: [{name: op, image: "lumen:0.1.0", ports: [{name: metrics, containerPort: 8080}]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kinds-op}
rules: [{apiGroups: [lumen.dev], resources: [lumenalertpolicies], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kinds-op}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kinds-op}
subjects: [{kind: ServiceAccount, name: op, namespace: {{ .Release.Namespace }}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: op}
rules: [{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, update]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: op}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: op}
subjects: [{kind: ServiceAccount, name: op}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: op}
spec: {minAvailable: 1, selector: {matchLabels: {app: op}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: op}
spec: {podSelector: {matchLabels: {app: op}}, policyTypes: [Ingress]}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: op, labels: {release: kps}}
spec: {selector: {matchLabels: {app: op}}, endpoints: [{port: metrics}]}
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: op, labels: {release: kps}}
spec: {groups: [{name: op, rules: [{alert: OpDown, expr: up == 0}]}]}
---
apiVersion: lumen.dev/v1alpha1
kind: LumenAlertPolicy
metadata: {name: checkout}
spec: {service: checkout-api}
""",
    "templates/tests/test-pod.yaml": """
apiVersion: v1
kind: Pod
metadata:
  name: kinds-test
  annotations: {"helm.sh/hook": test, "helm.sh/hook-delete-policy": before-hook-creation}
spec:
  restartPolicy: Never
  containers: [{name: probe, image: "curl:8", args: ["http://op:8080/metrics"]}]
""",
    "values.yaml": "replicas: 1\n",
}

# (resource, namespaced, name) of every object KINDS_CHART renders.
KINDS_CHART_OBJECTS: list[tuple[str, bool, str]] = [
    ("v1/serviceaccounts", True, "op"),
    ("v1/configmaps", True, "settings"),
    ("v1/secrets", True, "token"),
    ("v1/services", True, "op"),
    ("apps/v1/deployments", True, "op"),
    ("rbac.authorization.k8s.io/v1/clusterroles", False, "kinds-op"),
    ("rbac.authorization.k8s.io/v1/clusterrolebindings", False, "kinds-op"),
    ("rbac.authorization.k8s.io/v1/roles", True, "op"),
    ("rbac.authorization.k8s.io/v1/rolebindings", True, "op"),
    ("policy/v1/poddisruptionbudgets", True, "op"),
    ("networking.k8s.io/v1/networkpolicies", True, "op"),
    ("monitoring.coreos.com/v1/servicemonitors", True, "op"),
    ("monitoring.coreos.com/v1/prometheusrules", True, "op"),
    (LAP, True, "checkout"),
]


@pytest.fixture()
def kinds_chart(tmp_path: Path) -> Path:
    chart = tmp_path / "kinds-chart"
    for name, text in KINDS_CHART.items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(text.lstrip())
    (chart / "crds").mkdir()
    shutil.copy(REPO / "crds" / "lumen.dev_lumenalertpolicies.yaml", chart / "crds")
    return chart


def test_helm_installs_every_kind_of_the_chart_and_runs_its_test(
    cli: KubeCli, kinds_chart: Path
) -> None:
    cli.helm("install", "kinds", str(kinds_chart), "-n", "lumen", "--create-namespace")
    for resource, namespaced, name in KINDS_CHART_OBJECTS:
        obj = cli.cluster.get(resource, "lumen" if namespaced else None, name)
        assert obj is not None, (resource, name)
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert obj["metadata"]["annotations"]["meta.helm.sh/release-name"] == "kinds"
    deployment = cli.cluster.get("apps/v1/deployments", "lumen", "op")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1

    with concurrent.futures.ThreadPoolExecutor(1) as kubelet:
        ran = kubelet.submit(cli.complete_pod, "lumen", "kinds-test")
        tested = cli.helm("test", "kinds", "-n", "lumen", "--timeout", "60s")
        ran.result()
    assert "TEST SUITE:     kinds-test" in tested.stdout
    assert "Phase:          Succeeded" in tested.stdout

    cli.helm("upgrade", "kinds", str(kinds_chart), "-n", "lumen", "--set", "replicas=3")
    deployment = cli.cluster.get("apps/v1/deployments", "lumen", "op")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 3

    cli.helm("uninstall", "kinds", "-n", "lumen")
    for resource, namespaced, name in KINDS_CHART_OBJECTS:
        assert cli.cluster.get(resource, "lumen" if namespaced else None, name) is None
    assert release_secrets(cli, "lumen") == {}
