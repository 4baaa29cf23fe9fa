"""No child of a policy carries what Argo CD tracks its own resources by.

Argo CD marks the objects of an Application with the label ``app.kubernetes.io/instance``
(label tracking, its default before 3.0) or the annotation ``argocd.argoproj.io/tracking-id``
(annotation tracking). A policy synced by Argo CD carries one of them; a child carrying one too
would show as part of the Application, be pruned by it (it is not in Git), or be fought over.
So every policy here is given both, plus other labels and annotations, and the objects the
operator would apply for it (the rendered children with their hash annotation, and the
threader's token Secret) must hold none of them: no key and no value, anywhere in the object,
pod templates and selectors included.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.operator.convergence import with_desired_hash
from lumen_alerting.operator.reconcile import token_secret
from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.render import RenderOptions, render_policy
from lumen_alerting.render.threader import threader_secret

TESTS = Path(__file__).resolve().parents[1]
POLICIES = sorted((TESTS.parent / "examples").glob("*.yaml")) + sorted(
    (TESTS / "policies").glob("*.yaml")
)
INSTANCE_LABEL = "app.kubernetes.io/instance"
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
# Values no child may contain: the Application's name and the tracking id, and the values of
# other labels and annotations on the policy (none of the policy's metadata reaches a child).
APP = "argo-app-7f3c"
TRACKING_ID = f"{APP}:lumen.dev/LumenAlertPolicy:shop/checkout"
OTHER_LABEL = ("example.com/team", "team-label-5b1e")
OTHER_ANNOTATION = ("example.com/note", "note-annotation-9d2a")
OPTIONS = RenderOptions(managed_by="lumen-operator")
UID = "0b6f2a8e-4c1d-4e57-9d0a-7f3c2b1e5a90"
Manifest = dict[str, Any]


def tracked(path: Path) -> dict[str, Any]:
    """The policy in ``path`` as Argo CD applies it: both tracking marks and more metadata."""
    manifest: dict[str, Any] = copy.deepcopy(yaml.safe_load(path.read_text()))
    meta = manifest.setdefault("metadata", {})
    meta.setdefault("namespace", "shop")
    meta["labels"] = {
        **(meta.get("labels") or {}),
        INSTANCE_LABEL: APP,
        OTHER_LABEL[0]: OTHER_LABEL[1],
    }
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        TRACKING_ANNOTATION: TRACKING_ID,
        OTHER_ANNOTATION[0]: OTHER_ANNOTATION[1],
    }
    meta["uid"] = UID
    return manifest


def children(manifest: dict[str, Any]) -> list[Manifest]:
    """What the operator applies for ``manifest`` (Reconciler.reconcile's objects)."""
    policy = dataclasses.replace(policy_from_manifest(manifest), uid=UID)
    objects = [with_desired_hash(obj) for obj in render_policy(policy, OPTIONS)]
    request = threader_secret(policy)
    if request is not None:
        tokens = dict.fromkeys(request.keys, "token")
        objects.append(token_secret(policy, request, tokens, OPTIONS))
    return objects


def keys_and_strings(value: Any) -> Iterator[str]:
    """Every mapping key and every string anywhere in ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from keys_and_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys_and_strings(item)
    elif isinstance(value, str):
        yield value


def metadata_of(obj: Manifest) -> Iterator[dict[str, Any]]:
    """The object's metadata and that of the pod template it holds, if any."""
    yield obj["metadata"]
    template = (obj.get("spec") or {}).get("template")
    if isinstance(template, dict) and "metadata" in template:
        yield template["metadata"]


@pytest.mark.parametrize("path", POLICIES, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_no_child_carries_argo_cd_tracking(path: Path) -> None:
    manifest = tracked(path)
    objects = children(manifest)
    forbidden = {
        INSTANCE_LABEL, TRACKING_ANNOTATION, APP, TRACKING_ID, *OTHER_LABEL, *OTHER_ANNOTATION,
    }  # fmt: skip
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        for meta in metadata_of(obj):
            assert INSTANCE_LABEL not in (meta.get("labels") or {}), where
            assert TRACKING_ANNOTATION not in (meta.get("annotations") or {}), where
        found = forbidden.intersection(keys_and_strings(obj))
        assert not found, f"{where} carries {sorted(found)}"


def test_the_policies_cover_every_kind_of_child() -> None:
    kinds = {obj["kind"] for path in POLICIES for obj in children(tracked(path))}
    assert kinds >= {
        "PrometheusRule", "AlertmanagerConfig", "Deployment", "Service", "ServiceMonitor",
        "ConfigMap", "PersistentVolumeClaim", "NetworkPolicy", "Secret",
    }  # fmt: skip
    assert len(POLICIES) >= 20


def test_children_still_say_which_policy_they_belong_to() -> None:
    """The tracking label's job inside Lumen is done by ``lumen.dev/policy``."""
    manifest = tracked(TESTS / "policies" / "workloads-memory-both.yaml")
    for obj in children(manifest):
        assert obj["metadata"]["labels"]["lumen.dev/policy"] == manifest["metadata"]["name"]
        if obj["kind"] == "Deployment":
            template = obj["spec"]["template"]["metadata"]["labels"]
            assert template["lumen.dev/policy"] == manifest["metadata"]["name"]
            assert (
                obj["spec"]["selector"]["matchLabels"]["lumen.dev/policy"]
                == (manifest["metadata"]["name"])
            )
