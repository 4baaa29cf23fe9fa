"""Pure: the ``status`` a policy should show after a reconcile.

Conditions follow the Kubernetes API conventions: ``lastTransitionTime`` changes only when a
condition's status changes, so a resync that finds nothing new writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..render.objects import Manifest

READY = "Ready"
VALID = "Valid"
ROUTED = "Routed"
ConditionStatus = Literal["True", "False", "Unknown"]
# Keys of `status` this module owns; kopf keeps its own bookkeeping under `status.kopf`.
OWNED_KEYS = ("observedGeneration", "conditions", "children", "rules", "slos")


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Observation:
    """What a reconcile found out about one generation of a policy."""

    generation: int
    valid: Condition
    ready: Condition
    # None when the spec is invalid: the children of the last valid spec stay, and so does their
    # description in the status.
    children: list[Manifest] | None = None
    rules: int | None = None
    slos: int | None = None
    # Whether every alert reaches a receiver; None when the spec is invalid (the last valid
    # spec's verdict stays, as its objects do).
    routed: Condition | None = None

    @property
    def state(self) -> str:
        """One word for dashboards: ready, invalid or failed."""
        if self.valid.status != "True":
            return "invalid"
        return "ready" if self.ready.status == "True" else "failed"


def next_status(current: Mapping[str, Any], seen: Observation, now: datetime) -> dict[str, Any]:
    """The operator-owned part of the status after ``seen``, given the ``current`` status."""
    previous = {c.get("type"): c for c in current.get("conditions") or [] if isinstance(c, dict)}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [
        _condition(condition, previous.get(condition.type), seen.generation, stamp)
        for condition in (seen.ready, seen.valid)
    ]
    if seen.routed is not None:
        conditions.append(_condition(seen.routed, previous.get(ROUTED), seen.generation, stamp))
    elif ROUTED in previous:
        conditions.append(dict(previous[ROUTED]))
    status: dict[str, Any] = {"observedGeneration": seen.generation, "conditions": conditions}
    if seen.children is not None:
        status["children"] = [child_reference(child) for child in seen.children]
        status["rules"] = seen.rules
        status["slos"] = seen.slos
    else:
        status.update(
            {key: current[key] for key in ("children", "rules", "slos") if key in current}
        )
    return status


def status_changes(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``wanted`` whose value differs from ``current`` (a merge patch of status)."""
    return {key: value for key, value in wanted.items() if current.get(key) != value}


def child_reference(manifest: Manifest) -> dict[str, str]:
    return {
        "apiVersion": manifest["apiVersion"],
        "kind": manifest["kind"],
        "name": manifest["metadata"]["name"],
    }


def _condition(
    condition: Condition, previous: Mapping[str, Any] | None, generation: int, stamp: str
) -> dict[str, Any]:
    transitioned = stamp
    if previous is not None and previous.get("status") == condition.status:
        transitioned = previous.get("lastTransitionTime", stamp)
    return {
        "type": condition.type,
        "status": condition.status,
        "reason": condition.reason,
        "message": condition.message,
        "lastTransitionTime": transitioned,
        "observedGeneration": generation,
    }
