"""Run the real ``helm`` on the standalone charts and read what it renders."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.chart.helm import run_helm
from tests.chart_standalone.generator import Chart

VALUES_DIR = Path(__file__).resolve().parent / "values"
RELEASE = "shared"
NAMESPACE = "alerts"

Manifest = dict[str, Any]


def template_args(chart: Path, values: Sequence[Path], sets: Sequence[str]) -> list[str]:
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    for path in values:
        args += ["--values", str(path)]
    for assignment in sets:
        args += ["--set", assignment]
    return args


def template_text(chart: Chart, values: Sequence[Path] = (), sets: Sequence[str] = ()) -> str:
    proc = run_helm(*template_args(chart.directory, values, sets))
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return proc.stdout


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader refusing a key twice in one mapping, as the API server's strict decoding
    does (PyYAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def documents(text: str) -> list[Manifest]:
    """The rendered objects; a duplicate key in any mapping fails the test."""
    return [doc for doc in yaml.load_all(text, Loader=UniqueKeyLoader) if doc is not None]


def render(chart: Chart, values: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[Manifest]:
    return documents(template_text(chart, values, sets))


def by_kind(objects: Sequence[Manifest]) -> dict[str, Manifest]:
    """The objects keyed by kind; each chart renders at most one object of a kind."""
    kinds = [obj["kind"] for obj in objects]
    assert len(kinds) == len(set(kinds)), kinds
    return {obj["kind"]: obj for obj in objects}


def merged_values(chart: Chart, files: Sequence[Path]) -> dict[str, Any]:
    """The values helm hands the templates: values.yaml, then each file (maps merge, anything
    else replaces)."""
    values: dict[str, Any] = yaml.safe_load((chart.directory / "values.yaml").read_text())
    for path in files:
        values = deep_merge(values, yaml.safe_load(path.read_text()) or {})
    return values


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def values_files(prefix: str) -> list[Path]:
    return sorted(VALUES_DIR.glob(f"{prefix}-*.yaml"))
