"""Run the real helm (``.tools/bin/helm``) on the chart at the repository root; read its output."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.schemas import REPO

VALUES = Path(__file__).resolve().parents[2] / "examples" / "chart-values"
RELEASE = "lumen"
NAMESPACE = "monitoring"


def helm() -> str:
    path = shutil.which("helm") or shutil.which("helm", path=str(REPO / ".tools" / "bin"))
    if path is None:
        pytest.fail("helm is not on PATH; run `make setup` (installs .tools/bin/helm)")
    return path


def run_helm(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """helm with ``args``, whatever its exit code (the caller checks it)."""
    return subprocess.run(
        [helm(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def values_files() -> list[Path]:
    return sorted(VALUES.glob("*.yaml"))


@dataclass(frozen=True)
class Rendered:
    """`helm template` output: the text as helm printed it, and its objects."""

    text: str
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        (found,) = [
            obj for obj in self.of_kind(kind) if obj["metadata"]["name"].endswith(name_suffix)
        ]
        return found


def template(
    values: Iterable[Path] = (),
    settings: Iterable[str] = (),
    *,
    include_crds: bool = False,
) -> Rendered:
    """`helm template` of the root chart as release ``lumen`` in ``monitoring``; fails on error."""
    args = ["template", RELEASE, ".", "--namespace", NAMESPACE]
    for path in values:
        args += ["--values", str(path)]
    for setting in settings:
        args += ["--set-json", setting]
    if include_crds:
        args.append("--include-crds")
    proc = run_helm(*args)
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    objects = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return Rendered(proc.stdout, objects)


def operator_container(rendered: Rendered) -> dict[str, Any]:
    deployment = rendered.one("Deployment", "-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def load_values(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded
