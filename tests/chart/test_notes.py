"""NOTES.txt says what the release installed and what Helm leaves to the user."""

from __future__ import annotations

from pathlib import Path

from tests.chart.helm import NAMESPACE, RELEASE, VALUES, run_helm, template


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
    # CRDs are not upgraded by Helm; Helm owns their fields, so the apply must take them over.
    assert "kubectl apply --server-side --force-conflicts -f crds/" in text
    assert "(label release=kube-prometheus-stack)" in text
    assert "token Secret" not in text
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


def test_notes_name_the_threaders_token_secret() -> None:
    """The subchart's NOTES are not shown (without --render-subchart-notes), so the root NOTES
    name the Secret the threader pod waits for, as the threader Deployment mounts it."""
    for settings in ([], ["--set", "threader.tokens.secretName=alert-tokens"]):
        text = notes("--set", "threader.enabled=true", *settings)
        as_json = [setting.replace("=alert-tokens", '="alert-tokens"') for setting in settings[1:]]
        rendered = template(settings=["threader.enabled=true", *as_json])
        (threader,) = [
            d for d in rendered.of_kind("Deployment") if d["metadata"]["name"] == "lumen-threader"
        ]
        volumes = threader["spec"]["template"]["spec"]["volumes"]
        (projected,) = [v["projected"] for v in volumes if v["name"] == "secrets"]
        (secret,) = [
            source["secret"]["name"]
            for source in projected["sources"]
            if any(item["key"] == "webhook-token" for item in source["secret"]["items"])
        ]
        assert secret == ("alert-tokens" if settings else "lumen-threader")
        assert f"The threader's token Secret {secret}" in text
        assert f"kubectl -n {NAMESPACE} create secret generic {secret}" in text


def test_notes_name_the_release_label_only_for_objects_that_carry_it() -> None:
    off = notes(
        "--set", "metrics.serviceMonitor.enabled=false,metrics.prometheusRule.enabled=false"
    )
    assert "- Metrics Service on port 8000." in off
    assert "label release=" not in off
    assert "(label release=kps)" in notes("--set", "global.kpsRelease=kps")


def test_notes_say_when_the_operator_network_policy_lets_nobody_in() -> None:
    assert "metrics from Prometheus only" in notes()
    closed = notes("--set", "helmTest.enabled=false", "--set-json", "networkPolicy.metricsPeers=[]")
    assert "no ingress at all: metricsPeers is empty" in closed
