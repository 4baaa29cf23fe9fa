"""Read LumenAlertPolicy manifests from files, directories or stdin for ``lumenctl``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..policy import InvalidPolicy, Policy, Problem, policy_from_manifest
from ..render import render_policy
from ..render.sizes import size_problems


@dataclass(frozen=True)
class FileProblem:
    source: str
    problem: Problem

    def __str__(self) -> str:
        return f"{self.source}: {self.problem}"


@dataclass(frozen=True)
class LoadedPolicies:
    policies: list[tuple[str, Policy]]  # (source, policy) in the order given
    problems: list[FileProblem]


def _sources(paths: list[str]) -> list[tuple[str, str]]:
    """(name, text) for every file named; a directory stands for its *.yaml and *.yml files."""
    found = []
    for path in paths:
        if path == "-":
            found.append(("<stdin>", sys.stdin.read()))
            continue
        target = Path(path)
        files = (
            sorted([*target.glob("*.yaml"), *target.glob("*.yml")]) if target.is_dir() else [target]
        )
        for file in files:
            found.append((str(file), file.read_text(encoding="utf-8")))
    return found


def load_policies(paths: list[str], default_namespace: str = "default") -> LoadedPolicies:
    """Every policy in ``paths``, and every problem found (a file may hold several documents)."""
    policies: list[tuple[str, Policy]] = []
    problems: list[FileProblem] = []
    try:
        sources = _sources(paths)
    except OSError as error:
        return LoadedPolicies(
            [], [FileProblem(str(error.filename), Problem("<file>", error.strerror or str(error)))]
        )
    seen: dict[tuple[str, str], str] = {}
    for name, text in sources:
        try:
            documents = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as error:
            problems.append(FileProblem(name, Problem("<yaml>", str(error).replace("\n", " "))))
            continue
        for index, document in enumerate(documents):
            source = name if len(documents) == 1 else f"{name}[{index}]"
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
    return LoadedPolicies(policies, problems)
