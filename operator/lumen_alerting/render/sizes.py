"""Pure: will a policy and the objects rendered from it fit in the cluster's store?

etcd refuses a write bigger than its ``--max-request-bytes`` (1.5 MiB by default); the API server
then answers 500 ``etcdserver: request is too large``, and the object never changes again. A
policy is stored with copies of itself: the ``kubectl.kubernetes.io/last-applied-configuration``
annotation that ``kubectl apply`` and Argo CD's client-side apply add (up to the API server's
256 KiB limit on annotations; bigger policies need server-side apply), and kopf's own
``status.kopf.lastHandledConfiguration`` (the operator needs it to tell spec changes). Both are
JSON strings, so every quote in them is escaped. ``lumenctl validate`` and the operator refuse
a policy whose estimate, or any of whose rendered objects, does not fit, so a policy that
validates also applies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..policy.loading import Problem
from .objects import Manifest

# etcd's default --max-request-bytes (1.5 MiB), the practical limit of one stored object.
MAX_OBJECT_BYTES: Final = 1_572_864
# Room for what the API server and the operator add around an object: metadata.managedFields,
# uid, timestamps, the operator's status (conditions, children) and the desired-hash annotation.
METADATA_ALLOWANCE: Final = 64 * 1024
LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
# The API server's limit on all annotations of an object: a policy bigger than this cannot be
# applied client-side (kubectl apply says so); server-side apply keeps no such copy.
MAX_ANNOTATIONS_BYTES: Final = 256 * 1024


def json_bytes(document: Any) -> int:
    """Bytes of ``document`` as compact JSON, the way clients send it and etcd stores it."""
    return len(
        json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=dict).encode()
    )


def stored_policy_bytes(manifest: Mapping[str, Any]) -> int:
    """Estimated bytes of the stored policy: itself, the last-applied annotation, kopf's copy."""
    meta = manifest.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    labels = meta.get("labels") or {}
    written = {
        "apiVersion": manifest.get("apiVersion"),
        "kind": manifest.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": manifest.get("spec"),
    }
    essence_meta: dict[str, Any] = {"labels": labels}
    if annotations:
        essence_meta["annotations"] = annotations
    essence = {"metadata": essence_meta, "spec": manifest.get("spec")}
    last_applied = json_bytes(json.dumps(written))  # both copies are JSON strings
    if last_applied > MAX_ANNOTATIONS_BYTES:
        last_applied = 0  # only server-side apply can write it, and that keeps no copy
    kopf_copy = json_bytes(json.dumps(essence))
    return json_bytes(written) + last_applied + kopf_copy + METADATA_ALLOWANCE


def size_problems(manifest: Mapping[str, Any], children: Sequence[Manifest]) -> list[Problem]:
    """Why the policy in ``manifest`` or one of its rendered ``children`` would not fit."""
    problems = []
    stored = stored_policy_bytes(manifest)
    if stored > MAX_OBJECT_BYTES:
        problems.append(
            Problem(
                "spec",
                f"the stored policy would take about {_size(stored)} with the copies that "
                f"kubectl apply and the operator keep in it, over the API server's limit of "
                f"{_size(MAX_OBJECT_BYTES)}; split it into several policies",
            )
        )
    for child in children:
        size = json_bytes(child) + METADATA_ALLOWANCE
        if size > MAX_OBJECT_BYTES:
            name = f"{child['kind']}/{child['metadata']['name']}"
            problems.append(
                Problem(
                    "spec",
                    f"renders {name} of about {_size(size)}, over the API server's limit of "
                    f"{_size(MAX_OBJECT_BYTES)}; split the policy into several policies",
                )
            )
    return problems


def _size(count: int) -> str:
    return f"{count} bytes ({count / 1_048_576:.2f} MiB)"
