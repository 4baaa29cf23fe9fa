"""Multi-window, multi-burn-rate arithmetic (Google SRE workbook, chapter 5).

An SLO with objective O has error budget B = 1 - O. Over a long window L an alert fires when the
error ratio over L and over its short window S = L/12 both exceed k·B, where
k = (fraction of the budget consumed) * period / L. For a 30-day period that gives the workbook's
14.4 / 6 (page) and 3 / 1 (ticket); other periods scale k with the period.

Exact fractions keep the factors and thresholds free of float noise (14.4, not 14.399999999999999).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Literal

Tier = Literal["page", "ticket"]
HOUR = 3600
DAY = 24 * HOUR


@dataclass(frozen=True)
class BurnWindow:
    tier: Tier
    long: int  # seconds
    budget_consumed: Fraction  # fraction of the period's budget this window may burn

    @property
    def short(self) -> int:
        return self.long // 12

    def factor(self, period: int) -> Fraction:
        """k: how many times faster than sustainable the budget burns when this alert fires."""
        return self.budget_consumed * period / self.long


WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow("page", 1 * HOUR, Fraction(2, 100)),
    BurnWindow("page", 6 * HOUR, Fraction(5, 100)),
    BurnWindow("ticket", 1 * DAY, Fraction(10, 100)),
    BurnWindow("ticket", 3 * DAY, Fraction(10, 100)),
)
TIERS: tuple[Tier, ...] = ("page", "ticket")


@cache
def error_budget(objective_percent: float) -> Fraction:
    """B for an objective given in percent (99.9 -> 1/1000), exact for decimal input."""
    return 1 - Fraction(str(objective_percent)) / 100


@cache
def burn_threshold(window: BurnWindow, period: int, objective_percent: float) -> Fraction:
    """k·B: the error ratio above which ``window`` alerts."""
    return window.factor(period) * error_budget(objective_percent)


@cache
def tier_windows(tier: Tier) -> tuple[BurnWindow, ...]:
    return tuple(w for w in WINDOWS if w.tier == tier)


def all_window_lengths() -> list[int]:
    """Every distinct window any alert reads, short and long, ascending."""
    return sorted({w.long for w in WINDOWS} | {w.short for w in WINDOWS})
