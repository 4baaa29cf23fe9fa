"""NOTES.txt says what the release installed and what Helm leaves to the user."""

from __future__ import annotations

from pathlib import Path

from tests.chart.helm import NAMESPACE, RELEASE, VALUES, run_helm


def notes(*args: str) -> str:
    proc = run_helm("install", RELEASE, ".", "--namespace", NAMESPACE, "--dry-run=client", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def values(name: str) -> str:
    return str(Path(VALUES / f"{name}.yaml"))


def test_notes_for_the_defaults() -> None:
    text = notes()
    assert "1 replica(s), standalone" in text
    assert "watching every namespace" in text
    assert "a ClusterRole" in text
    assert "kubectl apply --server-side -f crds/" in text  # CRDs are not upgraded by Helm
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{RELEASE}-operator" in text
    assert f"helm test {RELEASE}" in text
    assert "LumenAlertPolicy object(s) from values" not in text


def test_notes_follow_the_values() -> None:
    # policies.yaml puts one policy in the release namespace: it must be watched too.
    text = notes(
        "--values",
        values("namespaced-two-replicas"),
        "--values",
        values("policies"),
        "--set-json",
        f'watchNamespaces=["shop","payments","{NAMESPACE}"]',
    )
    assert '2 replica(s) with kopf peering (peering object "lumen-operator")' in text
    assert f"watching the namespaces shop, payments, {NAMESPACE}" in text
    assert "a Role per watched namespace" in text
    assert "2 LumenAlertPolicy object(s) from values" in text
    assert "empty `policies:`" in text
    off = notes("--set", "helmTest.enabled=false,networkPolicy.enabled=false")
    assert "helm test" not in off and "NetworkPolicy" not in off
