"""SLO rules: per-window error ratios, budget metadata and multi-window burn-rate alerts.

Recording rules per window keep the alert expressions cheap. Every series they write carries
``namespace``, ``lumen_policy`` and ``slo``, so SLOs of different policies never mix.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .. import burnrate
from ..burnrate import (
    TIERS,
    WINDOWS,
    BurnWindow,
    Tier,
    all_window_lengths,
    error_budget,
    tier_windows,
)
from ..policy.durations import format_duration, parse_duration
from ..policy.model import SLO, Policy
from ..policy.sli import window_queries
from .alerts import AlertDraft, Rule, alert_rule, number, severity_of
from .objects import SLO_ALERT

ERROR_RATIO = "lumen_slo:error_ratio:rate{window}"
PERIOD_ERROR_RATIO = "lumen_slo:error_ratio:period"
EVENTS = "lumen_slo:events:increase{window}"
OBJECTIVE = "lumen_slo:objective:ratio"
ERROR_BUDGET = "lumen_slo:error_budget:ratio"
BUDGET_REMAINING = "lumen_slo:error_budget_remaining:ratio"
CURRENT_BURN_RATE = "lumen_slo:burn_rate:current"
PERIOD_SECONDS = "lumen_slo:period:seconds"


def slo_labels(policy: Policy, slo: SLO) -> dict[str, str]:
    return {"lumen_policy": policy.name, "namespace": policy.namespace, "slo": slo.name}


def _selector(policy: Policy, slo: SLO) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in slo_labels(policy, slo).items()) + "}"


def _record(name: str, expr: str, policy: Policy, slo: SLO) -> Rule:
    return {"record": name, "expr": expr, "labels": slo_labels(policy, slo)}


def sli_recording_rules(policy: Policy, slo: SLO) -> list[Rule]:
    """Error ratio for every window an alert reads, plus event counts for the traffic guard."""
    rules = []
    for seconds in all_window_lengths():
        window = format_duration(seconds)
        queries = window_queries(slo.sli, window)
        rules.append(_record(ERROR_RATIO.format(window=window), queries.error_ratio, policy, slo))
    if slo.min_events > 0:
        for seconds in sorted({w.long for w in WINDOWS}):
            window = format_duration(seconds)
            queries = window_queries(slo.sli, window)
            rules.append(_record(EVENTS.format(window=window), queries.events, policy, slo))
    return rules


def metadata_rules(policy: Policy, slo: SLO) -> list[Rule]:
    """Objective, budget, remaining budget and current burn rate, for dashboards.

    The period-long ratio is computed from events over the whole period, not as the mean of
    short-window ratios (which would weigh a quiet night like a busy day).
    """
    budget = number(error_budget(slo.objective))
    selector = _selector(policy, slo)
    shortest = format_duration(all_window_lengths()[0])
    period = window_queries(slo.sli, slo.period).error_ratio
    return [
        _record(PERIOD_ERROR_RATIO, period, policy, slo),
        _record(OBJECTIVE, f"vector({number(1 - error_budget(slo.objective))})", policy, slo),
        _record(ERROR_BUDGET, f"vector({budget})", policy, slo),
        _record(PERIOD_SECONDS, f"vector({int(parse_duration(slo.period))})", policy, slo),
        _record(BUDGET_REMAINING, f"1 - {PERIOD_ERROR_RATIO}{selector} / {budget}", policy, slo),
        _record(
            CURRENT_BURN_RATE,
            f"{ERROR_RATIO.format(window=shortest)}{selector} / {budget}",
            policy,
            slo,
        ),
    ]


def burn_rate_alerts(policy: Policy, slo: SLO) -> list[Rule]:
    """One alert per enabled tier: any of its window pairs burning faster than k·B fires it."""
    rules = []
    for tier in TIERS:
        options = getattr(slo.alerting, tier)
        if not options.enabled:
            continue
        pairs = [_window_pair(policy, slo, w) for w in tier_windows(tier)]
        rules.append(
            alert_rule(
                policy,
                AlertDraft(
                    alert=SLO_ALERT,
                    expr="\nor\n".join(pairs),
                    severity=options.severity or severity_of(policy, tier),
                    summary=_summary(slo, tier),
                    description=_description(slo, tier),
                    runbook=f"slo-{slo.name}",
                    labels={**options.labels, "slo": slo.name, "tier": tier},
                ),
            )
        )
    return rules


def burn_threshold(slo: SLO, window: BurnWindow) -> str:
    """k·B for one window of this SLO, as a PromQL literal."""
    return number(burnrate.burn_threshold(window, int(parse_duration(slo.period)), slo.objective))


def _window_pair(policy: Policy, slo: SLO, window: BurnWindow) -> str:
    selector = _selector(policy, slo)
    threshold = burn_threshold(slo, window)
    long, short = format_duration(window.long), format_duration(window.short)
    terms = [
        f"{ERROR_RATIO.format(window=long)}{selector} > {threshold}",
        f"{ERROR_RATIO.format(window=short)}{selector} > {threshold}",
    ]
    if slo.min_events > 0:
        terms.append(f"{EVENTS.format(window=long)}{selector} >= {slo.min_events}")
    return "(\n  " + "\n  and\n  ".join(terms) + "\n)"


def _summary(slo: SLO, tier: Tier) -> str:
    speed = "fast" if tier == "page" else "steadily"
    return f"SLO {slo.name} is burning its error budget {speed} ({tier})"


def _description(slo: SLO, tier: Tier) -> str:
    text = (
        f"The error budget of objective {slo.objective:g}% over {slo.period} is burning "
        f"faster than sustainable: {_speeds(tier, int(parse_duration(slo.period)))}."
    )
    return f"{slo.description} {text}" if slo.description else text


@cache
def _speeds(tier: Tier, period: int) -> str:
    return " or ".join(
        f"{float(w.factor(period)):.4g}x over {format_duration(w.long)}/{format_duration(w.short)}"
        for w in tier_windows(tier)
    )


def slo_rule_group(policy: Policy, slo: SLO, group_name: str) -> dict[str, Any]:
    """Recordings first: rules in a group run in order, so the alerts read this round's values."""
    return {
        "name": group_name,
        "rules": [
            *sli_recording_rules(policy, slo),
            *metadata_rules(policy, slo),
            *burn_rate_alerts(policy, slo),
        ],
    }
