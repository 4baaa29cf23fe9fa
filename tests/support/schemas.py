"""Validate rendered objects against the real schemas: upstream prometheus-operator CRDs for
monitoring.coreos.com kinds, Kubernetes' own OpenAPI (kubernetes-validate) for core kinds, and our
generated LumenAlertPolicy CRD.

The upstream CRDs are not committed: ``make setup`` fills ``.cache/upstream-crds`` (from
``../shared/upstream-crds`` or a checksummed download) and exports ``LUMEN_UPSTREAM_CRDS``.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.32"

_UPSTREAM_FILES = {
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
    "AlertmanagerConfig": "monitoring.coreos.com_alertmanagerconfigs.yaml",
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
}


class _CrdLoader(yaml.SafeLoader):
    """The AlertmanagerConfig CRD has an unquoted ``- =`` enum value (YAML's 'value' tag)."""


def _construct_value(loader: _CrdLoader, node: yaml.Node) -> str:
    return loader.construct_yaml_str(node)


_CrdLoader.add_constructor("tag:yaml.org,2002:value", _construct_value)


def upstream_crd_dir() -> Path:
    configured = os.environ.get("LUMEN_UPSTREAM_CRDS")
    folder = Path(configured) if configured else REPO / ".cache" / "upstream-crds"
    if not folder.is_dir():
        raise RuntimeError(f"{folder} is missing: run `make setup` to fetch the upstream CRDs")
    return folder


def _go_patterns_to_python(node: Any) -> Any:
    """Go RE2 allows ``(?i)`` mid-pattern, Python only at the start (a bit looser; SOURCE.md)."""
    if isinstance(node, dict):
        out = {k: _go_patterns_to_python(v) for k, v in node.items()}
        pattern = out.get("pattern")
        if isinstance(pattern, str) and "(?i)" in pattern:
            out["pattern"] = "(?i)" + pattern.replace("(?i)", "")
        return out
    if isinstance(node, list):
        return [_go_patterns_to_python(v) for v in node]
    return node


# OpenAPI v3.0 schemas are JSON Schema draft 4 in the parts that matter here (a boolean
# exclusiveMinimum); newer drafts would misread them.
@cache
def crd_validator(path: Path) -> tuple[str, str, jsonschema.Draft4Validator]:
    """(group/version, kind, validator) of the served version of a CRD file."""
    crd = yaml.load(path.read_text(), Loader=_CrdLoader)
    spec = crd["spec"]
    (version,) = [v for v in spec["versions"] if v.get("served", True)][:1]
    schema = _go_patterns_to_python(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft4Validator.check_schema(schema)
    return (
        f"{spec['group']}/{version['name']}",
        spec["names"]["kind"],
        jsonschema.Draft4Validator(schema),
    )


def validate_against_crd(obj: dict[str, Any], crd_path: Path) -> None:
    api_version, kind, validator = crd_validator(crd_path)
    assert obj["apiVersion"] == api_version, (obj["apiVersion"], api_version)
    assert obj["kind"] == kind
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
        raise AssertionError(
            f"{kind} {obj['metadata'].get('name')} is invalid:\n" + "\n".join(lines)
        )


def validate_object(obj: dict[str, Any]) -> None:
    """Raise AssertionError unless ``obj`` is valid for its kind's real schema."""
    kind = obj["kind"]
    if kind in _UPSTREAM_FILES:
        validate_against_crd(obj, upstream_crd_dir() / _UPSTREAM_FILES[kind])
    elif kind == "LumenAlertPolicy":
        validate_against_crd(obj, REPO / "crds" / "lumen.dev_lumenalertpolicies.yaml")
    else:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{kind} {obj['metadata'].get('name')}: {error}") from error
