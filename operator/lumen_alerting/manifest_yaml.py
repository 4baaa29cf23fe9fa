"""YAML as people read it: multi-line PromQL as literal blocks, keys in the order rendered."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

try:
    from yaml import CSafeDumper as _SafeDumper  # libyaml: ~20x faster
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as _SafeDumper  # type: ignore[assignment]


class _ManifestDumper(_SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: _ManifestDumper, value: str) -> yaml.Node:
    style = (
        "|"
        if "\n" in value and not any(line != line.rstrip() for line in value.split("\n"))
        else None
    )
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def to_yaml(document: Any) -> str:
    return yaml.dump(
        document, Dumper=_ManifestDumper, sort_keys=False, allow_unicode=True, width=100
    )


def to_yaml_documents(documents: Iterable[Any]) -> str:
    """A multi-document YAML stream (``---`` before each document)."""
    return "".join(f"---\n{to_yaml(doc)}" for doc in documents)
