"""Alerts about Lumen itself: for each threader and exporter a policy deploys, whether it is
scraped and up, and for the threader whether its outbox is late or lost messages.

A threader that is down cannot post its own alert to Slack. These alerts therefore carry
``lumen_self="true"``, and the policy's AlertmanagerConfig routes them first to its e-mail and
webhook receivers (``self_routes``), ahead of the user's routes. A policy without such receivers
sends them along its own routes like any alert; ``lumenctl validate`` warns about it.

The series come from the ServiceMonitors the renderer adds: prometheus-operator sets ``job`` to
the scraped Service's name and ``namespace`` to its namespace, so both select exactly this
policy's pods.

Each alert links ``runbookBaseURL#<runbook id>`` as the presets' alerts do; docs/runbooks.md has
a section for every id (tests/test_runbooks.py holds the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..policy.model import Matcher, Policy, Routing
from .alerts import AlertDraft, Rule, alert_rule, severity_of
from .exporter import enabled_exporter
from .objects import ChildNames
from .threader import enabled_threader

SELF_LABEL = "lumen_self"
COMPONENT_LABEL = "lumen_component"
# The threader's outbox metrics (docs/threader.md): how long the oldest accepted entry waits.
BACKLOG_AGE_METRIC = "lumen_threader_outbox_oldest_age_seconds"
DEAD_LETTERS_METRIC = "lumen_threader_dead_letters_total"
BACKLOG_AGE_LIMIT = 600  # seconds: past this, Slack hears about alerts ten minutes late


@dataclass(frozen=True)
class Monitored:
    """One deployed Lumen service: its component name and the ``job`` its scrapes carry."""

    component: str  # threader | exporter
    job: str


def monitored(policy: Policy) -> list[Monitored]:
    """The services the policy deploys, threader first."""
    names = ChildNames.of(policy)
    out = []
    if enabled_threader(policy) is not None:
        out.append(Monitored("threader", names.threader))
    if enabled_exporter(policy) is not None:
        out.append(Monitored("exporter", names.exporter))
    return out


def self_rules(policy: Policy) -> list[Rule]:
    """The alerts about the policy's own threader and exporter; [] when it deploys neither."""
    return [alert_rule(policy, draft) for m in monitored(policy) for draft in _drafts(policy, m)]


def _drafts(policy: Policy, service: Monitored) -> list[AlertDraft]:
    selector = f'{{job="{service.job}",namespace="{policy.namespace}"}}'
    title = service.component.capitalize()
    labels = {SELF_LABEL: "true", COMPONENT_LABEL: service.component}
    # Without a threader, Slack notifications stop; without an exporter, probe metrics stop.
    severity = severity_of(policy, "page" if service.component == "threader" else "ticket")
    impact = (
        "Slack notifications of this policy are not delivered"
        if service.component == "threader"
        else "probe and pipeline metrics of this policy are not updated"
    )
    drafts = [
        AlertDraft(
            alert=f"Lumen{title}Down",
            # max: with several replicas, down means no replica answers.
            expr=f"max by (namespace, job) (up{selector}) == 0",
            for_="5m",
            severity=severity,
            summary=f"Lumen {service.component} {service.job} is down",
            description=f"No pod of {service.job} has answered a scrape for 5 minutes: {impact}.",
            runbook=f"{service.component}-down",
            labels=labels,
        ),
        AlertDraft(
            alert=f"Lumen{title}Absent",
            expr=f"absent(up{selector})",
            for_="10m",
            severity=severity,
            summary=f"Lumen {service.component} {service.job} is not scraped",
            description=f"Prometheus has no target for {service.job} in {policy.namespace} "
            f"(Deployment gone, no ready pod, or its ServiceMonitor not selected): {impact}.",
            runbook=f"{service.component}-absent",
            labels=labels,
        ),
    ]
    if service.component == "threader":
        drafts += [
            AlertDraft(
                alert="LumenThreaderBacklogOld",
                expr=f"max by (namespace, job) ({BACKLOG_AGE_METRIC}{selector}) > "
                f"{BACKLOG_AGE_LIMIT}",
                for_="5m",
                severity=severity_of(policy, "page"),
                summary=f"Lumen threader {service.job} is behind on Slack",
                description="The oldest alert in the outbox was accepted {{ $value }} seconds "
                "ago: Slack is failing or rate-limiting, and alerts reach it late.",
                runbook="threader-backlog-old",
                labels=labels,
            ),
            AlertDraft(
                alert="LumenThreaderDeadLetters",
                expr=f"sum by (namespace, job) (increase({DEAD_LETTERS_METRIC}{selector}[15m])) "
                "> 0",
                severity=severity_of(policy, "ticket"),
                summary=f"Lumen threader {service.job} gave up on Slack messages",
                description="Messages went to dead letters in the last 15 minutes (Slack refused "
                "them for good, e.g. channel_not_found or invalid_auth); see the threader's "
                "/stats and logs.",
                runbook="threader-dead-letters",
                labels=labels,
            ),
        ]
    return drafts


def self_rule_group(policy: Policy, name: str) -> dict[str, Any] | None:
    rules = self_rules(policy)
    return {"name": name, "rules": rules} if rules else None


def self_receivers(routing: Routing) -> list[str]:
    """Receivers that do not go through the threader: e-mail and webhook, in spec order."""
    return [r.name for r in routing.receivers if r.email is not None or r.webhook is not None]


def self_matchers(policy: Policy) -> list[Matcher]:
    # lumen_policy too: another policy's config in the same namespace sees these alerts as well.
    return [Matcher(SELF_LABEL, "true"), Matcher("lumen_policy", policy.name)]


def self_route_receivers(policy: Policy) -> list[str]:
    """Where Lumen's own alerts go first: every e-mail and webhook receiver of the policy, or
    nothing when it deploys no service or has no such receiver."""
    routing = policy.spec.routing
    if routing is None or not monitored(policy):
        return []
    return self_receivers(routing)


def self_monitoring_warning(policy: Policy) -> str | None:
    """What ``lumenctl validate`` says when Lumen's own alerts have no way around the threader."""
    components = [m.component for m in monitored(policy)]
    if not components or self_route_receivers(policy):
        return None
    where = (
        "follow the Alertmanager's own routes (the policy has no routing)"
        if policy.spec.routing is None
        else "follow the policy's routes (it has no e-mail or webhook receiver)"
    )
    threader = "threader" in components
    what = " and ".join(components) + (
        " (down, absent, backlog, dead letters)" if threader else " (down, absent)"
    )
    consequence = "; a threader that is down cannot post its own alert to Slack" if threader else ""
    return (
        f"warning: {policy.namespace}/{policy.name}: alerts about its {what} {where}{consequence}"
    )
