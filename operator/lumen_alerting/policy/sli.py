"""The PromQL an SLI stands for over one window: its error ratio and its number of events.

Each SLI kind counts events, never averages ratios, so a window's error ratio is
bad events / all events over that window, however long the window is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .durations import parse_duration
from .model import SLI, LatencySLI

WINDOW_PLACEHOLDER = "{{window}}"


@dataclass(frozen=True)
class WindowQueries:
    error_ratio: str  # bad events / all events over the window, 0..1
    events: str  # how many events the window saw (for the low-traffic guard)


@lru_cache(maxsize=4096)  # the same SLI is rendered for 7 windows on every reconcile
def window_queries(sli: SLI, window: str) -> WindowQueries:
    if sli.ratio is not None:
        errors = sli.ratio.errors.replace(WINDOW_PLACEHOLDER, window)
        total = sli.ratio.total.replace(WINDOW_PLACEHOLDER, window)
        seconds = int(parse_duration(window))
        return WindowQueries(f"({errors})\n/\n({total})", f"({total}) * {seconds}")
    if sli.latency is not None:
        total = f"sum(rate({sli.latency.metric}_count{_inner(sli.latency.selector)}[{window}]))"
        good = f"sum(rate({sli.latency.metric}_bucket{_bucket_selector(sli.latency)}[{window}]))"
        events = (
            f"sum(increase({sli.latency.metric}_count{_inner(sli.latency.selector)}[{window}]))"
        )
        return WindowQueries(f"({total} - {good})\n/\n{total}", events)
    assert sli.runs is not None, "the loader guarantees exactly one SLI kind"
    success = f"sum(increase({sli.runs.success}[{window}]))"
    total = f"sum(increase({sli.runs.total}[{window}]))"
    return WindowQueries(f"({total} - {success})\n/\n{total}", total)


def sli_queries(sli: SLI, window: str) -> dict[str, str]:
    """The queries built from each SLI field, keyed by the field's path under ``sli``."""
    if sli.ratio is not None:
        return {
            "ratio.errors": sli.ratio.errors.replace(WINDOW_PLACEHOLDER, window),
            "ratio.total": sli.ratio.total.replace(WINDOW_PLACEHOLDER, window),
        }
    key = "latency.selector" if sli.latency is not None else "runs"
    return {key: window_queries(sli, window).error_ratio}


def _inner(selector: str) -> str:
    """``{job="api"}`` as given (empty allowed), normalised to braces."""
    body = _matchers(selector)
    return "{" + body + "}" if body else ""


def _bucket_selector(latency: LatencySLI) -> str:
    threshold = latency.threshold
    # Go clients write le="1", Python and Prometheus 3 le="1.0": accept both for whole numbers.
    if threshold == int(threshold):
        le = f'le=~"{int(threshold)}(\\\\.0)?"'
    else:
        le = f'le="{threshold!r}"'
    body = _matchers(latency.selector)
    return "{" + (f"{body}, {le}" if body else le) + "}"


def _matchers(selector: str) -> str:
    text = selector.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    return text.strip().rstrip(",")
