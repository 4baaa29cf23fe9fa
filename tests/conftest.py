"""Fixtures shared by several areas; an area's own fixtures stay in its test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kube_api import ClusterEmulator
from tests.support.slack_api import SlackDouble


@pytest.fixture()
def cluster() -> Iterator[ClusterEmulator]:
    """An emulated Kubernetes API server of its own, stopped afterwards."""
    with ClusterEmulator() as emulator:
        yield emulator


@pytest.fixture()
def slack() -> Iterator[SlackDouble]:
    """A Slack double without rate limits, for tests that are not about pacing. Modules that need
    Slack's limits (tests/threader/test_end_to_end.py, test_startup.py) define their own."""
    with SlackDouble(rate_limit=False) as double:
        yield double
