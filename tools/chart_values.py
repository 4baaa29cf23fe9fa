"""Write the chart-values section of README.md from values.yaml's `# --` comments.

Every value in values.yaml carries a description: a comment starting with `# --` right above it
(continued on the following `#` lines), as helm-docs reads them. A documented map or list is one
value (`resources`, the peer lists); an undocumented map is a group whose keys are the values.
Run ``make chart-docs``; tests/chart/test_values_doc.py fails when README.md is out of date or a
value has no description.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
VALUES = ROOT / "values.yaml"
README = ROOT / "README.md"
START = "<!-- chart-values:start -->"
END = "<!-- chart-values:end -->"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_.-]*):(?: |$)")
DESCRIPTION = "# --"
GENERATED = (
    "<!-- Generated from values.yaml by `make chart-docs` (tools/chart_values.py); do not edit. -->"
)

Path_ = tuple[str, ...]


def descriptions(text: str) -> dict[Path_, str]:
    """Dotted key path -> its `# --` description, from the YAML text (comments are not data)."""
    found: dict[Path_, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(DESCRIPTION):
            pending = [stripped[len(DESCRIPTION) :].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match:
            continue  # list items, blank lines
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if pending is not None:
            found[tuple(key for _, key in stack)] = " ".join(part for part in pending if part)
            pending = None
    return found


def values_of(
    node: dict[str, Any], documented: dict[Path_, str], path: Path_ = ()
) -> Iterator[tuple[Path_, Any]]:
    """Every value: documented keys, and the leaves of undocumented maps."""
    for key, value in node.items():
        here = (*path, key)
        if here not in documented and isinstance(value, dict) and value:
            yield from values_of(value, documented, here)
        else:
            yield here, value


def undocumented(text: str) -> list[str]:
    documented = descriptions(text)
    return [
        ".".join(p) for p, _ in values_of(yaml.safe_load(text), documented) if p not in documented
    ]


def type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def section(text: str) -> str:
    """The README section: a table of every value with its type, default and description."""
    documented = descriptions(text)
    missing = undocumented(text)
    if missing:
        raise ValueError(f"values.yaml: no `# --` description for {', '.join(missing)}")
    rows = [
        f"| `{'.'.join(path)}` | {type_of(value)} | `{cell(compact(value))}` "
        f"| {cell(documented[path])} |"
        for path, value in values_of(yaml.safe_load(text), documented)
    ]
    return "\n".join(
        [
            START,
            GENERATED,
            "",
            "| value | type | default | description |",
            "| --- | --- | --- | --- |",
            *rows,
            END,
        ]
    )


def updated_readme(readme: str, values_text: str) -> str:
    """README.md with the section replaced (or appended at the end when it is not there yet)."""
    new = section(values_text)
    if START in readme and END in readme:
        before, rest = readme.split(START, 1)
        _, after = rest.split(END, 1)
        return before + new + after
    return readme.rstrip("\n") + "\n\n## Chart values\n\n" + new + "\n"


def main(argv: list[str]) -> int:
    current = README.read_text()
    wanted = updated_readme(current, VALUES.read_text())
    if "--check" in argv:
        if current != wanted:
            print(
                "README.md's chart values are out of date: run `make chart-docs`", file=sys.stderr
            )
            return 1
        return 0
    README.write_text(wanted)
    print(f"wrote the chart values into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
