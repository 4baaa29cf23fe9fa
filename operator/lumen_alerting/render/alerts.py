"""Alert rules as Prometheus sees them: the labels and annotations every Lumen alert carries,
the suppression guard, and the policy's own and preset rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ..policy.model import AlertRule, Policy, Preset
from ..presets import PACKS, PresetRule, Urgency

Rule = dict[str, Any]


@dataclass(frozen=True)
class AlertDraft:
    """One alert before Lumen adds its labels, guard and annotations."""

    alert: str
    expr: str
    severity: str
    for_: str = "0s"
    summary: str = ""
    description: str = ""
    runbook: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def number(value: float | Fraction) -> str:
    """A PromQL number literal without float noise (``0.0144``, ``10800``)."""
    as_float = float(value)
    return str(int(as_float)) if as_float.is_integer() else repr(as_float)


def severity_of(policy: Policy, urgency: Urgency) -> str:
    """The ``severity`` label of an alert of this urgency under the policy's ``severities``."""
    severities = policy.spec.severities
    return severities.page if urgency == "page" else severities.ticket


def namespace_selector(policy: Policy, selector: str) -> str:
    """The given label selector, or the policy's namespace when none is given."""
    return selector or f'{{namespace="{policy.namespace}"}}'


def suppression_guard(policy: Policy, expr: str) -> str:
    """Seed 004's toggle: nothing fires while the suppression metric is 1."""
    suppression = policy.spec.suppression
    if not suppression.enabled:
        return expr
    selector = namespace_selector(policy, suppression.selector)
    return f"({expr})\nunless on() (max({suppression.metric}{selector}) == 1)"


def runbook_url(policy: Policy, runbook: str) -> str:
    if runbook.startswith(("http://", "https://")):
        return runbook
    base = policy.spec.runbook_base_url
    return f"{base.rstrip('#')}#{runbook}" if runbook and base else ""


def alert_rule(policy: Policy, draft: AlertDraft) -> Rule:
    """The Prometheus alerting rule for ``draft`` with Lumen's labels, guard and annotations.

    ``namespace`` is always set: kps routes an AlertmanagerConfig only the alerts whose namespace
    label is the config's own namespace.
    """
    labels = {
        **policy.spec.labels,
        **draft.labels,
        "lumen_policy": policy.name,
        "namespace": policy.namespace,
        "service": policy.spec.service,
        "severity": draft.severity,
    }
    summary = draft.summary or draft.alert
    annotations = {
        **draft.annotations,
        "summary": summary,
        "description": draft.description or summary,
    }
    url = runbook_url(policy, draft.runbook)
    if url:
        annotations["runbook_url"] = url
    rule: Rule = {"alert": draft.alert, "expr": suppression_guard(policy, draft.expr)}
    if draft.for_ not in ("0s", "0m", "0"):
        rule["for"] = draft.for_
    rule["labels"] = dict(sorted(labels.items()))
    rule["annotations"] = dict(sorted(annotations.items()))
    return rule


def user_alert_rules(policy: Policy) -> list[Rule]:
    return [alert_rule(policy, _user_draft(policy, rule)) for rule in policy.spec.rules]


def _user_draft(policy: Policy, rule: AlertRule) -> AlertDraft:
    return AlertDraft(
        alert=rule.alert,
        expr=rule.expr,
        severity=rule.severity or severity_of(policy, "ticket"),
        for_=rule.for_,
        summary=rule.summary,
        description=rule.description,
        runbook=rule.runbook,
        labels=rule.labels,
        annotations=rule.annotations,
    )


def preset_rules(policy: Policy, preset: Preset) -> list[Rule]:
    """The preset's recording rules, then its alerts with the policy's overrides applied."""
    pack = PACKS[preset.name]
    selector = namespace_selector(policy, preset.selector)
    rules: list[Rule] = [
        {
            "record": r.record,
            "expr": r.expr.replace("{sel}", selector),
            "labels": {"lumen_policy": policy.name},
        }
        for r in pack.recording_rules
    ]
    for rule in pack.rules:
        draft = _preset_draft(policy, rule, preset, selector, f'{{lumen_policy="{policy.name}"}}')
        if draft is not None:
            rules.append(alert_rule(policy, draft))
    return rules


def _preset_draft(
    policy: Policy, rule: PresetRule, preset: Preset, selector: str, own_selector: str
) -> AlertDraft | None:
    override = preset.overrides.get(rule.alert)
    if override is not None and not override.enabled:
        return None
    threshold = rule.threshold
    if override is not None and override.threshold is not None:
        threshold = override.threshold
    expr = rule.expr.replace("{sel}", selector).replace("{own}", own_selector)
    if threshold is not None:
        expr = expr.replace("{threshold}", number(threshold))
    return AlertDraft(
        alert=rule.alert,
        expr=expr,
        severity=(override and override.severity) or severity_of(policy, rule.urgency),
        for_=(override and override.for_) or rule.for_,
        summary=rule.summary,
        description=rule.description,
        runbook=rule.runbook,
        labels=rule.labels,
    )
