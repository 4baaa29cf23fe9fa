"""Read ``LumenAlertPolicy`` manifests (YAML documents) into validated ``Policy`` objects."""

from __future__ import annotations

import re
from typing import Any

from .loading import InvalidPolicy, Partial, Problem, load_partial, unknown_field
from .model import API_GROUP, API_VERSION, DNS_LABEL, KIND, MAX_POLICY_NAME, Policy, PolicySpec
from .validation import semantic_problems

API = f"{API_GROUP}/{API_VERSION}"
# A manifest's own fields; ``status`` (the operator's) and the rest of ``metadata`` are ignored.
MANIFEST_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


def policy_from_manifest(manifest: Any, default_namespace: str = "default") -> Policy:
    """The validated policy in ``manifest``, or InvalidPolicy listing every problem.

    ``manifest`` is one parsed YAML/JSON document, of any type (a list or a string is a
    problem, not a crash). ``default_namespace`` stands in when ``metadata.namespace`` is
    absent (``lumenctl -n``). Read: ``apiVersion`` (``lumen.dev/v1alpha1``), ``kind``,
    ``metadata.name`` and ``.namespace`` (DNS labels), and ``spec``; ``status`` and the rest
    of ``metadata`` are ignored, and the returned ``Policy`` has an empty ``uid`` (the
    operator sets it). Any other top-level field is a problem (a typo such as ``sepc``).

    Every problem in one pass: the structure (the identity and ``policy.loading`` of the spec,
    which enforces the field declarations the generated CRD also carries, so ``lumenctl
    validate`` and the API server agree), and ``policy.validation`` (PromQL, cross references,
    which the API server cannot check) on the parts of the spec that loaded; a check whose
    input has a structural problem is skipped, as its answer would be about a default or a
    missing part, not what was written. Raises only ``InvalidPolicy``, whose ``problems`` are
    ``path: reason`` pairs in path order (``sorted_problems``).
    """
    if not isinstance(manifest, dict):
        raise InvalidPolicy([Problem("<document>", "must be a LumenAlertPolicy object")])
    problems: list[Problem] = [
        Problem(str(key) or "''", unknown_field(str(key), MANIFEST_FIELDS))
        for key in manifest
        if key not in MANIFEST_FIELDS
    ]
    if manifest.get("apiVersion") != API:
        problems.append(Problem("apiVersion", f"must be {API}"))
    if manifest.get("kind") != KIND:
        problems.append(Problem("kind", f"must be {KIND}"))
    meta = manifest.get("metadata")
    name, namespace = "", default_namespace
    policy: Policy | None = None
    if not isinstance(meta, dict):
        problems.append(Problem("metadata", "required"))
    else:
        name = meta.get("name") or ""
        namespace = meta.get("namespace") or default_namespace
        problems += _name_problems("metadata.name", name, MAX_POLICY_NAME)
        problems += _name_problems("metadata.namespace", namespace, 63)
    spec = manifest.get("spec")
    if spec is None:
        problems.append(Problem("spec", "required"))
    else:
        partial = load_partial(PolicySpec, spec, "spec")
        problems += partial.problems
        if partial.value is None and isinstance(spec, dict):
            # Only a required field can leave no spec at all, and ``service`` is the one: with a
            # stand-in for it the rest is still checked (no check reads it; ``touches`` would
            # skip one that did). Its problems are those of the first load.
            stand_in = load_partial(PolicySpec, spec | {"service": "service"}, "spec")
            partial = Partial(stand_in.value, partial.problems, stand_in.kept)
        if partial.value is not None:
            policy = Policy(name=name, namespace=namespace, spec=partial.value)
            problems += [
                Problem(partial.original_path(p.path), p.reason)
                for p in semantic_problems(
                    policy, lambda path: partial.touches(partial.original_path(path))
                )
            ]
    if problems or policy is None:  # no policy without a problem saying why
        raise InvalidPolicy(sorted_problems(problems))
    return policy


def sorted_problems(problems: list[Problem]) -> list[Problem]:
    """In the order of their paths, list indexes by number (``[2]`` before ``[10]``), the
    identity first; problems at one path keep their order."""
    return sorted(problems, key=lambda p: _path_key(p.path))


_ORDER = {"<document>": 0, "apiVersion": 1, "kind": 2, "metadata": 3, "spec": 4}


def _path_key(path: str) -> tuple[Any, ...]:
    head = re.split(r"[.\[]", path, maxsplit=1)[0]
    parts = [
        (1, int(index), "") if index else (0, 0, name)
        for index, name in re.findall(r"\[([0-9]+)\]|([^.\[\]]+)", path)
    ]
    return (_ORDER.get(head, _ORDER["spec"]), *parts)  # a top-level typo sorts by its name


def _name_problems(path: str, value: Any, longest: int) -> list[Problem]:
    if not isinstance(value, str) or not value:
        return [Problem(path, "required")]
    if len(value) > longest:
        return [Problem(path, f"must be at most {longest} characters")]
    if not re.match(DNS_LABEL, value):
        return [Problem(path, f"{value!r} must be a DNS label (lower-case letters, digits, '-')")]
    return []
