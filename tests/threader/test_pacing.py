"""ChannelPace on a virtual clock: Slack counts arrivals, so the gap between two arrivals in
one channel is never shorter than the interval, whatever each call's latency."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from lumen_alerting.threader.pacing import ChannelPace


class VirtualTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def arrivals(latencies: list[tuple[float, float]], *, interval: float = 1.0) -> list[float]:
    """Make one call per (latency to Slack, latency back) pair in one channel; return when each
    reached Slack."""
    time = VirtualTime()
    pace = ChannelPace(interval, clock=time.clock, sleep=time.sleep)
    reached: list[float] = []

    async def calls() -> None:
        for there, back in latencies:
            async with pace.slot("#alerts"):
                await time.sleep(there)
                reached.append(time.now)
                await time.sleep(back)

    asyncio.run(calls())
    return reached


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


@pytest.mark.parametrize(
    "latencies",
    [
        [(0.0, 0.0)] * 4,
        [(0.8, 0.0), (0.0, 0.0)],  # a slow call, then a fast one
        [(0.0, 0.9), (0.0, 0.0), (2.5, 0.1), (0.0, 0.0)],
    ],
)
def test_arrivals_are_an_interval_apart_whatever_the_latency(
    latencies: list[tuple[float, float]],
) -> None:
    assert min(gaps(arrivals(latencies))) >= 1.0


def test_a_fast_channel_is_not_slowed_beyond_the_interval() -> None:
    assert gaps(arrivals([(0.0, 0.0)] * 3)) == [1.0, 1.0]


def test_a_pause_holds_the_channel_and_only_that_channel() -> None:
    time = VirtualTime()
    pace = ChannelPace(1.0, clock=time.clock, sleep=time.sleep)
    started: dict[str, float] = {}

    async def calls() -> None:
        async with pace.slot("#alerts"):
            pass
        pace.pause("#alerts", 30)  # Slack said 429, Retry-After: 30
        async with pace.slot("#other"):
            started["#other"] = time.now
        async with pace.slot("#alerts"):
            started["#alerts"] = time.now

    asyncio.run(calls())
    assert started == {"#other": 0.0, "#alerts": 30.0}


def test_a_shorter_pause_never_shortens_a_longer_one() -> None:
    time = VirtualTime()
    pace = ChannelPace(1.0, clock=time.clock, sleep=time.sleep)
    pace.pause("#alerts", 30)
    pace.pause("#alerts", 2)

    async def call() -> float:
        async with pace.slot("#alerts"):
            return time.now

    assert asyncio.run(call()) == 30.0
