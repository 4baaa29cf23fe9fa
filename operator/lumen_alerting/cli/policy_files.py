"""Read LumenAlertPolicy manifests from files, directories or stdin for ``lumenctl``."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from ..policy import InvalidPolicy, Policy, Problem, policy_from_manifest
from ..policy.model import API_GROUP, KIND
from ..render import render_policy
from ..render.sizes import size_problems


@dataclass(frozen=True)
class FileProblem:
    source: str
    problem: Problem

    def __str__(self) -> str:
        # A YAML error has no path inside the document: its source is ``file:line:column``.
        return f"{self.source}: {self.problem if self.problem.path else self.problem.reason}"


@dataclass(frozen=True)
class LoadedPolicies:
    policies: list[tuple[str, Policy]]  # (source, policy) in the order given
    problems: list[FileProblem]
    skipped: list[str] = field(default_factory=list)  # "source Kind/name" of other objects

    def skipped_note(self) -> str | None:
        """The one stderr line about the documents that are not LumenAlertPolicy, if any."""
        if not self.skipped:
            return None
        shown = ", ".join(self.skipped[:_SKIPPED_SHOWN])
        more = len(self.skipped) - _SKIPPED_SHOWN
        documents = "document that is" if len(self.skipped) == 1 else "documents that are"
        return f"lumenctl: skipped {len(self.skipped)} {documents} not {KIND}: {shown}" + (
            f", and {more} more" if more > 0 else ""
        )


_SKIPPED_SHOWN = 5
EXTENSIONS = (".yaml", ".yml")  # what a directory stands for; a file named with -f is always read


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last)."""

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: set[tuple[str, str]] = set()
        for key, _ in node.value:
            # Checked as written, before a merge (<<) adds keys: a key may override a merged one.
            if isinstance(key, yaml.ScalarNode):
                if (key.tag, key.value) in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key.value!r}", key.start_mark
                    )
                seen.add((key.tag, key.value))
        return node


def _yaml_problem(name: str, error: yaml.YAMLError) -> FileProblem:
    """One line: ``file:line:column: problem (context at line L, column C)``."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        if mark is not None:
            reason = error.problem or error.context or "invalid YAML"
            if error.problem and error.context:
                context = error.context_mark
                where = (
                    f" at line {context.line + 1}, column {context.column + 1}"
                    if context is not None
                    and (context.line, context.column) != (mark.line, mark.column)
                    else ""
                )
                reason += f" ({error.context}{where})"
            return FileProblem(f"{name}:{mark.line + 1}:{mark.column + 1}", Problem("", reason))
    return FileProblem(name, Problem("<yaml>", " ".join(str(error).split())))


def _is_other_object(document: object) -> bool:
    """A Kubernetes object of another kind (a Namespace, a ConfigMap): skipped, not an error.
    A document without a kind, or one that claims to be Lumen's (kind LumenAlertPolicy or
    apiVersion lumen.dev/*), is read as a policy, so its mistakes are reported."""
    if not isinstance(document, dict):
        return False
    kind, api_version = document.get("kind"), document.get("apiVersion")
    return (
        isinstance(kind, str)
        and kind != ""
        and kind != KIND
        and not (isinstance(api_version, str) and api_version.startswith(f"{API_GROUP}/"))
    )


def _describe(document: dict[object, object]) -> str:
    meta = document.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{document['kind']}/{name}" if isinstance(name, str) and name else str(document["kind"])


def _sources(paths: list[str], recursive: bool = False) -> list[tuple[str, str]]:
    """(name, text) for every file named; a directory stands for its *.yaml and *.yml files
    (and, with ``recursive``, those of its subdirectories), sorted."""
    found = []
    for path in paths:
        if path == "-":
            found.append(("<stdin>", _text("<stdin>", sys.stdin.read)))
            continue
        target = Path(path)
        files = (
            sorted(
                f
                for f in (target.rglob("*") if recursive else target.glob("*"))
                if f.suffix in EXTENSIONS and f.is_file()
            )
            if target.is_dir()
            else [target]
        )
        for file in files:
            found.append((str(file), _text(str(file), partial(file.read_text, encoding="utf-8"))))
    return found


def _text(name: str, read: Callable[[], str]) -> str:
    """What ``read`` returns; a file that is not UTF-8 is an OSError naming it, like an
    unreadable one (a policy is YAML text, and YAML is Unicode)."""
    try:
        return read()
    except UnicodeDecodeError as error:
        raise OSError(errno.EILSEQ, f"not UTF-8 text (byte {error.start})", name) from None


def load_policies(
    paths: list[str], default_namespace: str = "default", recursive: bool = False
) -> LoadedPolicies:
    """Every policy in ``paths``, every problem found (a file may hold several documents), and
    the documents skipped as other Kubernetes objects."""
    policies: list[tuple[str, Policy]] = []
    problems: list[FileProblem] = []
    skipped: list[str] = []
    try:
        sources = _sources(paths, recursive)
    except OSError as error:
        return LoadedPolicies(
            [], [FileProblem(str(error.filename), Problem("<file>", error.strerror or str(error)))]
        )
    seen: dict[tuple[str, str], str] = {}
    for name, text in sources:
        try:
            documents = [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]
        except yaml.YAMLError as error:
            problems.append(_yaml_problem(name, error))
            continue
        for index, document in enumerate(documents):
            source = name if len(documents) == 1 else f"{name}[{index}]"
            if _is_other_object(document):
                skipped.append(f"{source} {_describe(document)}")
                continue
            try:
                policy = policy_from_manifest(document, default_namespace)
            except InvalidPolicy as invalid:
                problems += [FileProblem(source, p) for p in invalid.problems]
                continue
            oversized = size_problems(document, render_policy(policy))
            if oversized:  # it would not fit in the cluster: as invalid as a schema error
                problems += [FileProblem(source, p) for p in oversized]
                continue
            key = (policy.namespace, policy.name)
            if key in seen:
                problems.append(
                    FileProblem(
                        source,
                        Problem(
                            "metadata.name",
                            f"{policy.namespace}/{policy.name} is also defined in {seen[key]}",
                        ),
                    )
                )
                continue
            seen[key] = source
            policies.append((source, policy))
    return LoadedPolicies(policies, problems, skipped)
