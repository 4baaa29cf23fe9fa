"""Read ``LumenAlertPolicy`` manifests (YAML documents) into validated ``Policy`` objects."""

from __future__ import annotations

import re
from typing import Any

from .loading import InvalidPolicy, Problem, load
from .model import API_GROUP, API_VERSION, DNS_LABEL, KIND, MAX_POLICY_NAME, Policy, PolicySpec
from .validation import semantic_problems

API = f"{API_GROUP}/{API_VERSION}"


def policy_from_manifest(manifest: Any, default_namespace: str = "default") -> Policy:
    """The validated policy in ``manifest``, or InvalidPolicy listing every problem."""
    if not isinstance(manifest, dict):
        raise InvalidPolicy([Problem("<document>", "must be a LumenAlertPolicy object")])
    problems: list[Problem] = []
    if manifest.get("apiVersion") != API:
        problems.append(Problem("apiVersion", f"must be {API}"))
    if manifest.get("kind") != KIND:
        problems.append(Problem("kind", f"must be {KIND}"))
    meta = manifest.get("metadata")
    name, namespace = "", default_namespace
    if not isinstance(meta, dict):
        problems.append(Problem("metadata", "required"))
    else:
        name = meta.get("name") or ""
        namespace = meta.get("namespace") or default_namespace
        problems += _name_problems("metadata.name", name, MAX_POLICY_NAME)
        problems += _name_problems("metadata.namespace", namespace, 63)
    spec: PolicySpec | None = None
    try:
        spec = load(PolicySpec, manifest.get("spec"), "spec")
    except InvalidPolicy as invalid:
        problems += invalid.problems
    if problems or spec is None:
        raise InvalidPolicy(problems)
    policy = Policy(name=name, namespace=namespace, spec=spec)
    problems = semantic_problems(policy)
    if problems:
        raise InvalidPolicy(problems)
    return policy


def _name_problems(path: str, value: Any, longest: int) -> list[Problem]:
    if not isinstance(value, str) or not value:
        return [Problem(path, "required")]
    if len(value) > longest:
        return [Problem(path, f"must be at most {longest} characters")]
    if not re.match(DNS_LABEL, value):
        return [Problem(path, f"{value!r} must be a DNS label (lower-case letters, digits, '-')")]
    return []
