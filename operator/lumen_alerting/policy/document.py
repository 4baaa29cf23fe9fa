"""Read ``LumenAlertPolicy`` manifests (YAML documents) into validated ``Policy`` objects."""

from __future__ import annotations

import re
from typing import Any

from .loading import InvalidPolicy, Problem, load
from .model import API_GROUP, API_VERSION, DNS_LABEL, KIND, MAX_POLICY_NAME, Policy, PolicySpec
from .validation import semantic_problems

API = f"{API_GROUP}/{API_VERSION}"


def policy_from_manifest(manifest: Any, default_namespace: str = "default") -> Policy:
    """The validated policy in ``manifest``, or InvalidPolicy listing every problem.

    ``manifest`` is one parsed YAML/JSON document, of any type (a list or a string is a
    problem, not a crash). ``default_namespace`` stands in when ``metadata.namespace`` is
    absent (``lumenctl -n``). Read: ``apiVersion`` (``lumen.dev/v1alpha1``), ``kind``,
    ``metadata.name`` and ``.namespace`` (DNS labels), and ``spec``; ``status`` and the rest
    of ``metadata`` are ignored, and the returned ``Policy`` has an empty ``uid`` (the
    operator sets it).

    Checks in two rounds, so the messages make sense: first the structure (the identity and
    ``policy.loading.load`` of the spec, which enforces the field declarations the generated
    CRD also carries, so ``lumenctl validate`` and the API server agree), every problem
    collected; then, on a well-formed spec, ``policy.validation`` (PromQL, cross references,
    which the API server cannot check). Raises only ``InvalidPolicy``, whose ``problems`` are
    ``path: reason`` pairs.
    """
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
