"""One log line per kind of trouble every few seconds, with a count of the lines left out: an
outage of Slack or of the store is visible in the log without a line per message or request."""

from __future__ import annotations

import time
from collections.abc import Callable


class WarningThrottle:
    """Lets one log line per key through every ``interval`` seconds and counts the others."""

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._left_out: dict[tuple[str, str], int] = {}

    def allow(self, key: tuple[str, str]) -> int | None:
        """None to stay quiet; else how many lines for ``key`` were left out since the last."""
        now = self._clock()
        if now - self._last.get(key, float("-inf")) < self._interval:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._left_out.pop(key, 0)


def left_out_note(count: int) -> str:
    """What a let-through line adds about the lines left out before it."""
    return f" ({count} more like it since the last such line.)" if count else ""
