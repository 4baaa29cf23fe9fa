"""Burn-rate alerts proven with real ``promtool test rules``, independently of ``lumenctl test``.

Each case keeps the error ratio at a constant value for exactly one long window L after a quiet
stretch without errors, then looks at the alerts. The window L and its short window see the full
ratio; longer windows see it diluted. The expected tiers are derived here from the SRE
workbook's numbers, not from Lumen's code. The quiet stretch is as short as the case allows
(page cases at 1-minute resolution, ticket cases at 5 minutes) to keep promtool quick.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.burnrate import WINDOWS, error_budget
from lumen_alerting.policy import policy_from_manifest
from lumen_alerting.render.prometheus_rule import rules_file
from lumen_alerting.render.slo import burn_threshold

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
REQUESTS_PER_MINUTE = 1000
STEP = {"page": MINUTE, "ticket": 5 * MINUTE}  # sample and evaluation interval per tier

# (tier, long window, short window, k for a 30-day period) from the SRE workbook, table 5-8.
WORKBOOK = [
    ("page", HOUR, 5 * MINUTE, Fraction(144, 10)),
    ("page", 6 * HOUR, 30 * MINUTE, Fraction(6)),
    ("ticket", DAY, 2 * HOUR, Fraction(3)),
    ("ticket", 3 * DAY, 6 * HOUR, Fraction(1)),
]
PERIODS = {"30d": 30 * DAY, "28d": 28 * DAY, "7d": 7 * DAY}
OBJECTIVE = 99.9


def workbook_factor(k30: Fraction, period: int) -> Fraction:
    return k30 * period / (30 * DAY)


def test_factors_for_30_days_are_the_workbooks():
    assert [w.factor(30 * DAY) for w in WINDOWS] == [Fraction(72, 5), 6, 3, 1]
    assert [float(w.factor(30 * DAY)) for w in WINDOWS] == [14.4, 6.0, 3.0, 1.0]
    assert [(w.tier, w.long, w.short) for w in WINDOWS] == [
        (t, lo, sh) for t, lo, sh, _ in WORKBOOK
    ]


@pytest.mark.parametrize("period", [28 * DAY, 7 * DAY, 90 * DAY])
def test_factors_scale_with_the_period(period):
    assert [w.factor(period) for w in WINDOWS] == [workbook_factor(k, period) for *_, k in WORKBOOK]


def test_28_day_factors():
    assert [round(float(w.factor(28 * DAY)), 3) for w in WINDOWS] == [13.44, 5.6, 2.8, 0.933]


def _policy(period: str):
    return policy_from_manifest(
        {
            "apiVersion": "lumen.dev/v1alpha1",
            "kind": "LumenAlertPolicy",
            "metadata": {"name": "burn", "namespace": "team"},
            "spec": {
                "service": "api",
                "slos": [
                    {
                        "name": "availability",
                        "objective": OBJECTIVE,
                        "period": period,
                        "sli": {
                            "ratio": {
                                "errors": "sum(rate(test_errors_total[{{window}}]))",
                                "total": "sum(rate(test_requests_total[{{window}}]))",
                            }
                        },
                    }
                ],
            },
        }
    )


def quiet_before(tier: str, burst: int) -> int:
    """Enough error-free history that the tier's longer windows see the burst diluted."""
    return max(long for t, long, _, _ in WORKBOOK if t == tier) - burst


def seen_ratio(ratio: Fraction, burst: int, quiet: int, window: int) -> Fraction:
    """Error ratio a window ending with the burst sees: errors over the burst, traffic over all
    the data in the window (series start at time 0, so a window may reach past their start)."""
    return ratio * min(burst, window) / min(window, quiet + burst)


def expected_tiers(ratio: Fraction, burst: int, quiet: int, period: int) -> set[str]:
    """Tiers of which some long and short window both see more than k·B."""
    budget = 1 - Fraction(str(OBJECTIVE)) / 100
    firing = set()
    for tier, long, short, k30 in WORKBOOK:
        threshold = workbook_factor(k30, period) * budget
        if all(seen_ratio(ratio, burst, quiet, w) > threshold for w in (long, short)):
            firing.add(tier)
    return firing


def _case(
    ratio: Fraction, burst: int, quiet: int, step: int, period: int, tiers: set[str]
) -> dict[str, Any]:
    quiet_points, burst_points = quiet // step, burst // step
    errors_per_step = float(ratio * REQUESTS_PER_MINUTE * step / MINUTE)
    requests_per_step = REQUESTS_PER_MINUTE * step // MINUTE
    errors = f"0+{errors_per_step!r}x{burst_points}"
    if quiet_points:
        errors = f"0x{quiet_points - 1} {errors}"
    return {
        "interval": f"{step // MINUTE}m",
        "input_series": [
            {
                "series": "test_requests_total",
                "values": f"0+{requests_per_step}x{quiet_points + burst_points}",
            },
            {"series": "test_errors_total", "values": errors},
        ],
        "alert_rule_test": [
            {
                "eval_time": f"{(quiet + burst) // MINUTE}m",
                "alertname": "LumenSLOErrorBudgetBurn",
                "exp_alerts": [_expected_alert(tier, period) for tier in sorted(tiers)],
            }
        ],
    }


def _expected_alert(tier: str, period: int) -> dict[str, Any]:
    speed = "fast" if tier == "page" else "steadily"
    factors = [
        (workbook_factor(k, period), long, short) for t, long, short, k in WORKBOOK if t == tier
    ]
    names = {
        MINUTE * 5: "5m",
        MINUTE * 30: "30m",
        HOUR: "1h",
        2 * HOUR: "2h",
        6 * HOUR: "6h",
        DAY: "1d",
        3 * DAY: "3d",
    }
    speeds = " or ".join(f"{float(k):.4g}x over {names[lo]}/{names[sh]}" for k, lo, sh in factors)
    period_name = {v: k for k, v in PERIODS.items()}[period]
    return {
        "exp_labels": {
            "lumen_policy": "burn",
            "namespace": "team",
            "service": "api",
            # The default spec.severities: the page tier is critical, the ticket tier warning.
            "severity": {"page": "critical", "ticket": "warning"}[tier],
            "slo": "availability",
            "tier": tier,
        },
        "exp_annotations": {
            "summary": f"SLO availability is burning its error budget {speed} ({tier})",
            "description": f"The error budget of objective {OBJECTIVE:g}% over {period_name} is "
            f"burning faster than sustainable: {speeds}.",
        },
    }


def _run_promtool(
    tmp_path: Path, rules: dict[str, Any], tests: list[dict[str, Any]], step: int = MINUTE
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    (tmp_path / "test.yaml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["rules.yaml"],
                "evaluation_interval": f"{step // MINUTE}m",
                "tests": tests,
            },
            sort_keys=False,
        )
    )
    return subprocess.run(
        ["promtool", "test", "rules", "test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("tier", ["page", "ticket"])
@pytest.mark.parametrize("period_name", list(PERIODS))
def test_each_window_fires_just_above_and_stays_silent_just_below(tmp_path, period_name, tier):
    period = PERIODS[period_name]
    budget = error_budget(OBJECTIVE)
    tests, described = [], []
    for window_tier, long, _short, k30 in WORKBOOK:
        if window_tier != tier:
            continue
        threshold = workbook_factor(k30, period) * budget
        quiet = quiet_before(tier, long)
        for margin in (Fraction(11, 10), Fraction(9, 10)):
            ratio = threshold * margin
            tiers = expected_tiers(ratio, long, quiet, period)
            # The case must test this window: above it fires (this tier), below it is silent.
            assert (tier in tiers) == (margin > 1), (tier, long, margin, tiers)
            tests.append(_case(ratio, long, quiet, STEP[tier], period, tiers))
            described.append(f"{tier} {long // 60}m x{float(margin)} -> {sorted(tiers)}")
    result = _run_promtool(tmp_path, rules_file([_policy(period_name)]), tests, STEP[tier])
    assert result.returncode == 0, "\n".join(described) + "\n" + result.stdout + result.stderr


def test_rendered_thresholds_are_k_times_budget():
    policy = _policy("28d")
    slo = policy.spec.slos[0]
    assert [burn_threshold(slo, w) for w in WINDOWS] == [
        repr(float(workbook_factor(k, 28 * DAY) * Fraction(1, 1000))) for *_, k in WORKBOOK
    ]


def test_promtool_sees_a_wrong_expectation(tmp_path):
    """The harness above can fail: a case expecting silence where the page fires is rejected."""
    period = PERIODS["30d"]
    ratio = workbook_factor(Fraction(144, 10), period) * error_budget(OBJECTIVE) * 2
    case = _case(ratio, HOUR, quiet_before("page", HOUR), MINUTE, period, set())
    result = _run_promtool(tmp_path, rules_file([_policy("30d")]), [case])
    assert result.returncode != 0
    assert "LumenSLOErrorBudgetBurn" in result.stdout + result.stderr
