"""The PrometheusRule of a policy, and the same groups as a plain Prometheus rule file."""

from __future__ import annotations

from typing import Any

from ..policy.model import Policy
from ..presets import PACKS
from .alerts import preset_rules, user_alert_rules
from .objects import ChildNames, Manifest, RenderOptions, metadata
from .self_monitoring import self_rule_group
from .slo import slo_rule_group


def rule_groups(policy: Policy) -> list[dict[str, Any]]:
    """Presets, then the policy's own rules, then one group per SLO, then the alerts about the
    policy's own threader and exporter.

    Group names start with ``<namespace>/<policy>/`` so that rule files of many policies can be
    loaded side by side (``lumenctl render --format rules``).
    """
    prefix = f"{policy.namespace}/{policy.name}"
    groups = []
    for preset in policy.spec.presets:
        rules = preset_rules(policy, preset)
        if rules:
            groups.append({"name": f"{prefix}/{PACKS[preset.name].group}", "rules": rules})
    if policy.spec.rules:
        groups.append({"name": f"{prefix}/rules", "rules": user_alert_rules(policy)})
    for slo in policy.spec.slos:
        groups.append(slo_rule_group(policy, slo, f"{prefix}/slo/{slo.name}"))
    own = self_rule_group(policy, f"{prefix}/lumen-self")
    if own is not None:
        groups.append(own)
    return groups


def alert_count(groups: list[dict[str, Any]]) -> int:
    return sum(1 for group in groups for rule in group["rules"] if "alert" in rule)


def prometheus_rule(policy: Policy, options: RenderOptions) -> Manifest | None:
    """None when the policy has no rules at all."""
    groups = rule_groups(policy)
    if not groups:
        return None
    # kps' Prometheus selects rules by its release label; without it they are ignored.
    labels = {"release": options.kps_release}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(policy, options, ChildNames.of(policy).rules, labels=labels),
        "spec": {"groups": groups},
    }


def rules_file(policies: list[Policy]) -> dict[str, Any]:
    """One plain ``groups:`` file for all policies, as ``promtool check rules`` reads it."""
    return {"groups": [group for policy in policies for group in rule_groups(policy)]}
