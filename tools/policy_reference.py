"""Write docs/policy-reference.md from the CRD schema and the preset catalogue.

Run ``make docs``; tests/test_docs.py fails when the committed file is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lumen_alerting.policy.schema import crd
from lumen_alerting.presets import PACKS

TARGET = Path(__file__).resolve().parent.parent / "docs" / "policy-reference.md"


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type", "")
    if kind == "array":
        return f"list of {_type(node['items'])}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'])}"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    return kind


def _constraints(node: dict[str, Any], required: bool) -> str:
    parts = ["**required**"] if required else []
    if "default" in node and node["default"] not in ({}, [], ""):
        parts.append(f"default `{json.dumps(node['default'])}`")
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None:
        parts.append(f"{'>' if node.get('exclusiveMinimum') else '≥'} {low:g}")
    if high is not None:
        parts.append(f"{'<' if node.get('exclusiveMaximum') else '≤'} {high:g}")
    if "maxItems" in node:
        parts.append(f"at most {node['maxItems']} items")
    if node.get("x-kubernetes-list-map-keys"):
        parts.append(f"unique `{node['x-kubernetes-list-map-keys'][0]}`")
    for rule in node.get("x-kubernetes-validations", []):
        parts.append(rule["message"])
    return "; ".join(parts)


def _rows(node: dict[str, Any], path: str) -> list[str]:
    rows = []
    required = set(node.get("required", []))
    for key, sub in node.get("properties", {}).items():
        here = f"{path}.{key}"
        description = sub.get("description", "").replace("|", "\\|").replace("\n", " ")
        rows.append(
            f"| `{here}` | {_type(sub)} | {description} | {_constraints(sub, key in required)} |"
        )
        target = sub
        if sub.get("type") == "array":
            target, here = sub["items"], here + "[]"
        elif isinstance(sub.get("additionalProperties"), dict):
            target, here = sub["additionalProperties"], here + ".<key>"
        if target.get("properties"):
            rows += _rows(target, here)
    return rows


def reference() -> str:
    version = crd()["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    lines = [
        "# LumenAlertPolicy reference (`lumen.dev/v1alpha1`)",
        "",
        "Generated from the model by `make docs` (tools/policy_reference.py); do not edit by hand.",
        "`kubectl explain lumenalertpolicy.spec` shows the same descriptions.",
        "",
        "| field | type | meaning | constraints |",
        "| --- | --- | --- | --- |",
        *_rows(spec, "spec"),
        "",
        "## Presets",
        "",
    ]
    for pack in PACKS.values():
        lines += [
            f"### `{pack.name}` (rule group `{pack.group}`)",
            "",
            "| alert | severity | for | threshold | expression |",
            "| --- | --- | --- | --- | --- |",
        ]
        for rule in pack.rules:
            threshold = "" if rule.threshold is None else f"{rule.threshold:g}"
            expr = rule.expr.replace("|", "\\|")
            lines.append(
                f"| {rule.alert} | {rule.severity} | {rule.for_} | {threshold} | `{expr}` |"
            )
        for record in pack.recording_rules:
            lines.append(f"| _record_ `{record.record}` | | | | `{record.expr}` |")
        lines.append("")
    lines += [
        "`{sel}` is the preset's `selector` (default: the policy's namespace), `{own}` selects the",
        "series this policy's own recording rules wrote, `{threshold}` the threshold or its "
        "override.",
        "",
        "Every preset alert, and every alert about the policy's own threader and exporter,",
        "links `<runbookBaseURL>#<runbook id>`; [runbooks.md](runbooks.md) has a section for each",
        "id: point `spec.runbookBaseURL` at your copy of docs/runbooks.md, or at the project's",
        "(`https://github.com/lumen-alerting/lumen/blob/main/docs/runbooks.md`).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if TARGET.read_text() == reference() else 1)
    TARGET.write_text(reference())
