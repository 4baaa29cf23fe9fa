"""Pure decisions of a reconcile: which rendered objects to apply and which live ones to prune.

An object is left alone when the live one already holds everything we would apply *and* was last
applied from the same render. The render's hash travels in an annotation, because a field that we
stop rendering is still present on the live object: containment alone cannot see that it must go.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..render.objects import Manifest
from .kinds import ResourceKind, kind_of

DESIRED_HASH_ANNOTATION = "lumen.dev/desired-hash"


@dataclass(frozen=True)
class LiveObject:
    """The identity of an object found in the cluster."""

    kind: ResourceKind
    name: str
    uid: str


@dataclass(frozen=True)
class ConvergencePlan:
    apply: list[Manifest]
    unchanged: list[Manifest]
    prune: list[LiveObject]
    # Objects that exist under a rendered name but are controlled by something else.
    foreign: list[LiveObject]


def with_desired_hash(manifest: Manifest) -> Manifest:
    """``manifest`` with the hash of its own content in an annotation."""
    digest = hashlib.sha256(
        json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:20]
    meta = manifest["metadata"]
    annotations = {**meta.get("annotations", {}), DESIRED_HASH_ANNOTATION: digest}
    return {**manifest, "metadata": {**meta, "annotations": annotations}}


def contains(live: Any, desired: Any) -> bool:
    """Whether ``live`` holds every field of ``desired`` with the same value.

    Dicts may have extra keys (server defaults, other field managers); lists must match item by
    item, because apply replaces our lists as a whole.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and contains(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return (live == desired and type(live) is type(desired)) or _same_number(live, desired)


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def controller_uid(manifest: Manifest) -> str | None:
    for reference in manifest.get("metadata", {}).get("ownerReferences") or []:
        if reference.get("controller"):
            uid = reference.get("uid")
            return uid if isinstance(uid, str) else None
    return None


def plan_convergence(
    desired: list[Manifest], live: list[Manifest], owner_uid: str
) -> ConvergencePlan:
    """Compare the hashed render of one policy with the live objects labelled as its children."""
    live_by_key = {(kind_of(obj), obj["metadata"]["name"]): obj for obj in live}
    wanted = set()
    apply, unchanged, foreign = [], [], []
    for manifest in desired:
        key = (kind_of(manifest), manifest["metadata"]["name"])
        wanted.add(key)
        current = live_by_key.get(key)
        if current is None:
            apply.append(manifest)
        elif controller_uid(current) not in (None, owner_uid):
            foreign.append(_identity(current))
        elif contains(current, manifest):
            unchanged.append(manifest)
        else:
            apply.append(manifest)
    prune = [
        _identity(obj)
        for key, obj in live_by_key.items()
        if key not in wanted and controller_uid(obj) == owner_uid
    ]
    return ConvergencePlan(apply=apply, unchanged=unchanged, prune=prune, foreign=foreign)


def _identity(obj: Manifest) -> LiveObject:
    meta = obj["metadata"]
    return LiveObject(kind=kind_of(obj), name=meta["name"], uid=meta.get("uid", ""))
