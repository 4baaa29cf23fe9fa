"""Slack's pace per channel: at most one call per interval, as Slack sees it.

The next slot is counted from the *end* of the previous call. Counted from its start, a slow
call (a fresh connection, a busy Slack) followed by a fast one arrives at Slack closer together
than the interval, and Slack counts arrivals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable


class ChannelPace:
    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._next: dict[str, float] = {}

    @contextlib.asynccontextmanager
    async def slot(self, channel: str) -> AsyncIterator[None]:
        """Wait for the channel's next slot and hold it for one call."""
        wait = self._next.get(channel, 0.0) - self._clock()
        if wait > 0:
            await self._sleep(wait)
        try:
            yield
        finally:
            self.pause(channel, self._interval)

    def pause(self, channel: str, seconds: float) -> None:
        """Nothing goes to ``channel`` for ``seconds`` from now (a 429's Retry-After)."""
        self._next[channel] = max(self._next.get(channel, 0.0), self._clock() + seconds)
