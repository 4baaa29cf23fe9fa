"""
The real ``kubectl`` and ``helm`` against the API emulator, for tests of install commands.

:func:`kube_cli` starts a :class:`~tests.support.kube_api.ClusterEmulator` (without the
emulator's built-in declarations of Lumen's and prometheus-operator's kinds: a CRD must make
a kind served, as on a real cluster), writes a kubeconfig for it and gives a :class:`KubeCli`
that runs ``.tools/bin/kubectl`` and ``.tools/bin/helm`` with that kubeconfig and with every
home, cache, config and data directory under the test's temporary directory::

    with kube_cli(tmp_path) as cli:
        cli.kubectl("apply", "--server-side", "-f", "crds/")
        assert cli.cluster.get(CRDS, None, "lumenalertpolicies.lumen.dev") is not None

Commands run in the repository's root, so ``helm install lumen .`` installs the root chart.
A command that fails raises ``AssertionError`` with its command line, exit code and output,
unless ``check=False`` (then the ``CompletedProcess`` tells).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import yaml

from tests.support.kube_api import ClusterEmulator
from tests.support.polling import eventually
from tests.support.schemas import upstream_crd_dir

__all__ = ["CRDS", "REPO", "TOOLS", "KubeCli", "kube_cli"]

REPO: Final = Path(__file__).resolve().parents[2]
TOOLS: Final = REPO / ".tools" / "bin"
CRDS: Final = "apiextensions.k8s.io/v1/customresourcedefinitions"
# Roomy: a loaded CI machine with two cores; a command that works takes well under a second.
TIMEOUT: Final = 120.0
# Inherited variables that would point the tools elsewhere than this test's cluster and files.
FOREIGN_PREFIXES: Final = ("KUBE", "HELM_")
OUTPUT_TAIL: Final = 4000  # characters of stdout/stderr in a failure message


@dataclasses.dataclass(frozen=True)
class KubeCli:
    """kubectl and helm, configured for one emulated cluster and one temporary directory."""

    cluster: ClusterEmulator
    home: Path
    kubeconfig: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
        env.update(
            HOME=str(self.home),  # kubectl's ~/.kube/cache, helm's defaults: never the real ~
            KUBECONFIG=str(self.kubeconfig),
            KUBECACHEDIR=str(self.home / "kube-cache"),
            HELM_CACHE_HOME=str(self.home / "helm-cache"),
            HELM_CONFIG_HOME=str(self.home / "helm-config"),
            HELM_DATA_HOME=str(self.home / "helm-data"),
        )
        return env

    def run(
        self,
        tool: str,
        *args: str,
        check: bool = True,
        stdin: str | None = None,
        timeout: float = TIMEOUT,
        cwd: Path = REPO,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``tool`` (``kubectl`` or ``helm`` from ``.tools/bin``) in ``cwd`` (the repo)."""
        executable = TOOLS / tool
        if not executable.exists():
            raise RuntimeError(f"{executable} is missing: run `make setup`")
        command = [str(executable), *args]
        result = subprocess.run(
            command,
            env=self.env,
            cwd=cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`{tool} {shlex.join(args)}` exited with {result.returncode}\n"
                f"--- stdout ---\n{result.stdout[-OUTPUT_TAIL:]}\n"
                f"--- stderr ---\n{result.stderr[-OUTPUT_TAIL:]}"
            )
        return result

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, check=check, stdin=stdin)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, check=check)

    def complete_pod(self, namespace: str, name: str, phase: str = "Succeeded") -> None:
        """
        Play the kubelet for one Pod: wait until it exists, then give it a final ``phase``.
        No pod runs on the emulator; ``helm test`` waits for its test Pods to end, so a test
        runs this in a thread while ``helm test`` runs.
        """
        pod = eventually(lambda: self.cluster.get("v1/pods", namespace, name), what=f"pod {name}")
        self.cluster.put("v1/pods", {**pod, "status": {"phase": phase}})

    def install_kube_prometheus_stack_crds(self) -> None:
        """The prometheus-operator CRDs of kube-prometheus-stack (the upstream files), as the
        chart and the operator expect them on the cluster (ServiceMonitor, PrometheusRule…)."""
        self.kubectl("apply", "--server-side", "-f", str(upstream_crd_dir()))


def _kubeconfig(url: str) -> str:
    """A kubeconfig with one context for the emulator (a token: clients send one; none is
    checked)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "emulator-token"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "tester", "namespace": "default"},
            }
        ],
        "current-context": "emulator",
    }
    return yaml.safe_dump(config)


@contextlib.contextmanager
def kube_cli(tmp_path: Path, *, kube_prometheus_stack: bool = True) -> Iterator[KubeCli]:
    """
    An emulated cluster and kubectl/helm configured for it (files under ``tmp_path``).

    The cluster refuses objects in namespaces that do not exist (as a real one does), and
    serves only built-in kinds until CRDs are applied; ``kube_prometheus_stack`` applies the
    prometheus-operator CRDs first.
    """
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    with ClusterEmulator(strict_namespaces=True, declare_defaults=False) as cluster:
        kubeconfig = home / "kubeconfig"
        kubeconfig.write_text(_kubeconfig(cluster.url))
        kubeconfig.chmod(0o600)  # helm warns about group/world-readable kubeconfigs
        cli = KubeCli(cluster=cluster, home=home, kubeconfig=kubeconfig)
        if kube_prometheus_stack:
            cli.install_kube_prometheus_stack_crds()
        yield cli
