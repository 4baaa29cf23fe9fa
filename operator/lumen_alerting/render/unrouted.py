"""Alerts that reach no one: every alert a policy renders, walked through its rendered routes.

A policy whose routes match only some severities silently drops the others at its drop receiver
(``routing.receiver`` empty). This module finds such alerts before Alertmanager does: for every
alerting rule of the policy's PrometheusRule (presets, its own rules, SLO burn-rate alerts,
Lumen's own alerts) it takes the rule's labels and walks the plain ``alertmanager.yml`` route
tree rendered for the policy (``alertmanager_yaml``, the configuration prometheus-operator
generates from the policy's AlertmanagerConfig with the ``OnNamespace`` strategy) the way
Alertmanager's dispatcher does (``Route.Match`` in Alertmanager 0.25):

- a route matches when all its matchers match; a missing label has the value ``""``;
- a matching route descends into its children in order; a child that matches ends the search
  unless it has ``continue: true``; a route none of whose children match is itself the match;
- a route without ``receiver`` inherits its parent's;
- ``=~`` and ``!~`` are anchored (``^(?:regex)$``).

An alert "reaches no one" when every receiver it ends at has no notifier configs (the root's
``null`` and the policy's drop receiver).

Only the rule's **static** labels are known here: the policy's ``labels``, the rule's own, and
what Lumen adds (``namespace``, ``service``, ``severity``, ``lumen_policy``, ``slo``, ``tier``,
``lumen_self``). Labels that only exist when Prometheus evaluates the rule (those the
expression returns, values written as templates such as ``{{ $labels.stage }}``, Prometheus'
external labels, alert relabelling) are taken as absent. A route matching on one of them is
therefore not taken by this check, and the alert may be reported although some series would
route; routes matching on static labels (severity, tier, slo, team, ...) are judged exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..policy.model import Policy
from .prometheus_rule import rule_groups
from .routing import alertmanager_yaml

# `name<op>"value"`, as routing.matcher_string writes it (the value JSON-quoted).
_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(".*")\s*$', re.DOTALL)
# Labels shown, besides the alert name, to tell alerts of the same name apart.
_DISTINGUISHING = ("slo", "tier", "lumen_component", "severity")


@dataclass(frozen=True)
class UnroutedAlert:
    """An alert of the policy that ends at no receiver with a notifier."""

    alert: str
    labels: Mapping[str, str]

    def describe(self) -> str:
        """``CheckoutDown (severity=critical)``: the name and the labels that set it apart."""
        shown = [f"{key}={self.labels[key]}" for key in _DISTINGUISHING if key in self.labels]
        return f"{self.alert} ({', '.join(shown)})" if shown else self.alert


def static_labels(rule: Mapping[str, Any]) -> dict[str, str]:
    """The labels of a rendered alerting rule that are known before evaluation, plus
    ``alertname``; template values (``{{ ... }}``) are left out."""
    labels = {
        name: str(value)
        for name, value in (rule.get("labels") or {}).items()
        if "{{" not in str(value)
    }
    return {**labels, "alertname": str(rule["alert"])}


def receivers_for(route: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    """The receivers an alert with ``labels`` goes to in a plain alertmanager.yml ``route``, in
    tree order, as ``amtool config routes test`` prints them. The root matches every alert."""
    matched = _match(route, labels, inherited=str(route.get("receiver", "")), root=True)
    return [receiver for _, receiver in matched]


def _match(
    route: Mapping[str, Any], labels: Mapping[str, str], inherited: str, *, root: bool = False
) -> list[tuple[Mapping[str, Any], str]]:
    if not root and not all(matches(m, labels) for m in route.get("matchers") or []):
        return []
    receiver = str(route.get("receiver") or inherited)
    found: list[tuple[Mapping[str, Any], str]] = []
    for child in route.get("routes") or []:
        below = _match(child, labels, receiver)
        found += below
        if below and not child.get("continue", False):
            break
    return found or [(route, receiver)]


def matches(matcher: str, labels: Mapping[str, str]) -> bool:
    """One ``matchers:`` entry against an alert's labels; raises ValueError for a matcher
    written in another form than the renderer's ``name<op>"value"``, or a regular expression
    in RE2 syntax that Python's ``re`` does not share."""
    parsed = _MATCHER.match(matcher)
    if parsed is None:
        raise ValueError(f"unsupported matcher {matcher!r}")
    name, op, quoted = parsed.groups()
    value = str(json.loads(quoted))
    actual = labels.get(name, "")
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    try:  # Alertmanager anchors the expression: ^(?:value)$.
        found = re.fullmatch(f"(?:{value})", actual) is not None
    except re.error as error:  # RE2 syntax Python lacks (e.g. [[:alpha:]]): cannot judge
        raise ValueError(f"regular expression {value!r} not understood: {error}") from None
    return found if op == "=~" else not found


def silent_receivers(config: Mapping[str, Any]) -> set[str]:
    """Receivers of a plain alertmanager.yml without any notifier (``*_configs``)."""
    return {
        str(receiver["name"])
        for receiver in config.get("receivers") or []
        if not any(key.endswith("_configs") and receiver[key] for key in receiver)
    }


def unrouted_alerts(policy: Policy) -> list[UnroutedAlert]:
    """The alerts ``policy`` renders that reach no receiver with a notifier, in rule order,
    each distinct label set once. [] for a policy without ``routing``: its alerts follow
    whatever the Alertmanager's own configuration does, which the policy does not say."""
    if policy.spec.routing is None:
        return []
    config = alertmanager_yaml([policy])
    silent = silent_receivers(config)
    out: list[UnroutedAlert] = []
    for group in rule_groups(policy):
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            labels = static_labels(rule)
            try:
                receivers = receivers_for(config["route"], labels)
            except ValueError:
                continue  # a matcher this check cannot evaluate: no verdict rather than a wrong one
            if set(receivers) <= silent:
                unrouted = UnroutedAlert(str(rule["alert"]), labels)
                if unrouted not in out:
                    out.append(unrouted)
    return out


def unrouted_message(alerts: Sequence[UnroutedAlert]) -> str:
    """One sentence naming the alerts and what to change, for ``lumenctl validate`` (after
    ``warning: <namespace>/<name>: ``) and the operator's ``Routed`` condition."""
    names = ", ".join(alert.describe() for alert in alerts)
    if len(alerts) == 1:
        what = "1 alert matches no route and ends at the drop receiver"
        who = "it reaches"
    else:
        what = f"{len(alerts)} alerts match no route and end at the drop receiver"
        who = "they reach"
    return (
        f"{what} (routing.receiver is empty), so {who} no one: {names}; add a route for "
        f"{'it' if len(alerts) == 1 else 'them'} or set routing.receiver"
    )
