"""Prometheus durations (``30s``, ``5m``, ``1h30m``, ``30d``) as the policy and rules use them."""

from __future__ import annotations

import re
from functools import cache

# Prometheus' own duration grammar: units in descending order, each at most once.
DURATION_PATTERN = r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$"
# What a field with DURATION_PATTERN says of a value that fails it, after the value.
DURATION_HINT = "is not a duration (use e.g. 30s, 5m, 1h30m, 7d)"
_DURATION = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


@cache
def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration; ValueError for anything Prometheus would reject."""
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"{text!r} {DURATION_HINT}")
    amounts = match.groups()[1::2]
    return sum(int(n) * unit for n, unit in zip(amounts, _UNIT_SECONDS, strict=True) if n)


@cache
def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for a whole number of seconds (``7200`` -> ``2h``)."""
    whole = int(seconds)
    if whole != seconds or whole < 0:
        raise ValueError(f"{seconds} is not a whole, non-negative number of seconds")
    if whole == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
