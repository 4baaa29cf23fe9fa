"""Pure rendering: a validated policy in, the Kubernetes objects it stands for out.

Nothing in this package does I/O, reads a clock or draws random numbers: the same policy always
renders byte-identical objects in the same order, so Argo CD diffs stay clean and the operator can
compare desired with actual state.
"""

from __future__ import annotations

from typing import Literal

from ..policy.model import Policy
from .exporter import exporter_objects
from .objects import Manifest, RenderOptions
from .prometheus_rule import prometheus_rule
from .routing import alertmanager_config
from .threader import threader_objects

ObjectGroup = Literal["prometheusrule", "alertmanagerconfig", "workloads"]
OBJECT_GROUPS: tuple[ObjectGroup, ...] = ("prometheusrule", "alertmanagerconfig", "workloads")


def render_policy(
    policy: Policy,
    options: RenderOptions | None = None,
    only: ObjectGroup | None = None,
) -> list[Manifest]:
    """Every object of ``policy``: PrometheusRule, AlertmanagerConfig, threader, exporter.

    ``policy`` must come from ``policy_from_manifest`` (validated); for a validated policy this
    never raises (total: the policy fuzz test holds it to that). With ``policy.uid``
    set (the operator sets it) every object gets the policy as its controlling owner; offline
    (``lumenctl``) it is empty and no ownerReference is written. ``options``: the cluster's
    side (kube-prometheus-stack release label, images, resources, ``managed-by``, whether to
    render NetworkPolicies and the peers they let in); None means the defaults. ``only`` keeps
    one ``ObjectGroup`` (``workloads`` includes the workloads' NetworkPolicies).

    Returns the objects as plain dicts in a fixed order: the PrometheusRule, the
    AlertmanagerConfig (each left out when the policy has nothing for it), then the threader's
    and the exporter's objects (each service's NetworkPolicy before its Deployment). Pure: the
    same arguments give equal objects every time.
    """
    options = options or RenderOptions()
    objects: list[Manifest] = []
    if only in (None, "prometheusrule"):
        rule = prometheus_rule(policy, options)
        objects += [rule] if rule else []
    if only in (None, "alertmanagerconfig"):
        config = alertmanager_config(policy, options)
        objects += [config] if config else []
    if only in (None, "workloads"):
        objects += threader_objects(policy, options) + exporter_objects(policy, options)
    return objects


__all__ = ["OBJECT_GROUPS", "Manifest", "ObjectGroup", "RenderOptions", "render_policy"]
