"""The README's install section, run as written: every command in its shell blocks, with the
real ``helm`` and ``kubectl``, against the emulated API server (``tests/support/kube_cli.py``).

The emulator has no controllers and no kubelet, so two commands get a stand-in for the part of
the cluster they wait on, and nothing more: ``kubectl rollout status`` gets the status the
Deployment controller would write once the pods are available, and ``helm test`` gets its test
Pod marked as the kubelet would when the Pod's script exits 0 (the script itself is tested
against a real metrics endpoint in ``tests/chart/test_helm_test_pod.py``). A command the
runner does not know fails the test, so a new README command cannot go unrun.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.operator.rbac import PEERING_GROUP, grants_of, peering_rules
from tests.support.kube_cli import CRDS, REPO, KubeCli, kube_cli

pytestmark = pytest.mark.timeout(600)

DEPLOYMENTS = "apps/v1/deployments"
POLICIES = "lumen.dev/v1alpha1/lumenalertpolicies"
ROLES = "rbac.authorization.k8s.io/v1/roles"
CLUSTER_ROLES = "rbac.authorization.k8s.io/v1/clusterroles"
KOPF_PEERINGS = "kopf.dev/v1/kopfpeerings"
SECRETS = "v1/secrets"


@dataclass(frozen=True)
class ShellBlock:
    """One ```sh block of the install section: its leading comment and its commands."""

    title: str
    commands: list[list[str]]


def install_blocks() -> list[ShellBlock]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("<!-- install:start -->", 1)[1].split("<!-- install:end -->", 1)[0]
    blocks = []
    for body in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
        lines = body.replace("\\\n", " ").splitlines()
        title = next(line for line in lines if line.startswith("#"))
        commands = [shlex.split(line) for line in lines if line.strip() and line[0] != "#"]
        blocks.append(ShellBlock(title.lstrip("# ").split(":", 1)[0], commands))
    return blocks


def block(title: str) -> ShellBlock:
    found = [b for b in install_blocks() if b.title == title]
    assert len(found) == 1, f"the README's install section has no single {title!r} block"
    return found[0]


def run_block(cli: KubeCli, shell_block: ShellBlock) -> None:
    for command in shell_block.commands:
        run_command(cli, command)


def run_command(cli: KubeCli, command: list[str]) -> None:
    tool, *args = command
    assert tool in ("helm", "kubectl"), f"the README runs {shlex.join(command)!r}: not run here"
    if tool == "kubectl" and "rollout" in args and "status" in args:
        namespace = args[args.index("-n") + 1]
        name = args[-1].removeprefix("deployment/")
        mark_deployment_available(cli, namespace, name)
        cli.kubectl(*args)
    elif tool == "helm" and args[:1] == ["test"]:
        release, namespace = args[1], args[args.index("--namespace") + 1]
        with kubelet_completing(cli, namespace, helm_test_pod(cli, release, namespace)):
            cli.helm(*args)
    else:
        cli.run(tool, *args)


def mark_deployment_available(cli: KubeCli, namespace: str, name: str) -> None:
    """The status the Deployment controller writes once every replica is up to date."""
    deployment = cli.cluster.get(DEPLOYMENTS, namespace, name)
    assert deployment is not None, f"no Deployment {namespace}/{name} to wait for"
    replicas = deployment["spec"].get("replicas", 1)
    status = {
        "observedGeneration": deployment["metadata"]["generation"],
        **dict.fromkeys(
            ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"), replicas
        ),
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    }
    cli.cluster.put(DEPLOYMENTS, {**deployment, "status": status})


def helm_test_pod(cli: KubeCli, release: str, namespace: str) -> str:
    """The name of the release's `helm test` Pod, from its stored manifest."""
    manifest = cli.helm("get", "hooks", release, "--namespace", namespace).stdout
    pods = [
        doc["metadata"]["name"]
        for doc in yaml.safe_load_all(manifest)
        if doc and doc["kind"] == "Pod" and "test" in doc["metadata"]["annotations"]["helm.sh/hook"]
    ]
    assert len(pods) == 1, pods
    return str(pods[0])


@contextlib.contextmanager
def kubelet_completing(cli: KubeCli, namespace: str, pod: str) -> Iterator[None]:
    """While the block runs, a thread marks ``pod`` Succeeded as soon as it exists."""
    errors: list[BaseException] = []

    def complete() -> None:
        try:
            cli.complete_pod(namespace, pod)
        except BaseException as error:  # re-raised below, in the test's thread
            errors.append(error)

    thread = threading.Thread(target=complete, daemon=True)
    thread.start()
    yield
    thread.join(timeout=120)
    assert not errors, errors


def release_secrets(cli: KubeCli, namespace: str) -> list[dict[str, Any]]:
    return [
        s for s in cli.cluster.list(SECRETS, namespace) if s.get("type") == "helm.sh/release.v1"
    ]


@pytest.fixture()
def cli(tmp_path: Path) -> Iterator[KubeCli]:
    with kube_cli(tmp_path) as emulated:
        yield emulated


def test_the_install_section_has_its_four_blocks() -> None:
    titles = [b.title for b in install_blocks()]
    assert titles == ["install", "or", "upgrade", "uninstall"], titles


def test_install_upgrade_and_uninstall_as_the_readme_says(cli: KubeCli) -> None:
    run_block(cli, block("install"))
    assert cli.cluster.get(DEPLOYMENTS, "lumen", "lumen-operator") is not None
    assert cli.cluster.get(POLICIES, "lumen", "gateway") is not None
    listed = cli.kubectl("get", "lumenalertpolicies", "-A").stdout
    assert "gateway" in listed, listed

    run_block(cli, block("upgrade"))
    assert "2" in cli.helm("history", "lumen", "--namespace", "lumen", "-o", "json").stdout
    revisions = sorted(s["metadata"]["labels"]["version"] for s in release_secrets(cli, "lumen"))
    assert revisions == ["1", "2"], revisions

    run_block(cli, block("uninstall"))
    # What the README promises: the operator goes; the CRDs and the policies applied stay.
    assert cli.cluster.get(DEPLOYMENTS, "lumen", "lumen-operator") is None
    assert release_secrets(cli, "lumen") == []
    assert cli.cluster.get(POLICIES, "lumen", "gateway") is not None
    assert cli.cluster.get(CRDS, None, "lumenalertpolicies.lumen.dev") is not None


def test_the_namespaced_two_replica_install(cli: KubeCli) -> None:
    run_block(cli, block("or"))
    for namespace in ("shop", "payments"):
        (role,) = cli.cluster.list(ROLES, namespace)
        peering = cli.cluster.get(KOPF_PEERINGS, namespace, "lumen-operator")
        assert peering is not None, f"no KopfPeering in {namespace}"
        # kopf peers through that KopfPeering: the namespace's Role lets it.
        assert grants_of(peering_rules(clusterwide=False)) <= grants_of(role["rules"]), namespace
    deployment = cli.cluster.get(DEPLOYMENTS, "lumen", "lumen-operator")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--standalone" not in args
    cluster_roles = cli.cluster.list(CLUSTER_ROLES)
    assert cluster_roles, "the cluster-scoped reads need a ClusterRole"
    cluster_grants = {grant for r in cluster_roles for grant in grants_of(r.get("rules") or [])}
    assert not [g for g in cluster_grants if g[0] == PEERING_GROUP], "peering is per namespace"
