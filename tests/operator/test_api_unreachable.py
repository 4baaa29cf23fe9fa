"""What the operator's own API client says when no answer comes back, and the one reason its
reconcile gives kopf's log line for an API server out of reach (issue 12)."""

from __future__ import annotations

import asyncio
import errno

import aiohttp

from lumen_alerting.operator.kinds import PROMETHEUS_RULE, SECRET
from lumen_alerting.operator.kube import (
    UNREACHABLE,
    ApiError,
    ClusterAccess,
    KubeClient,
    connection_problem,
)
from lumen_alerting.operator.reconcile import TransientFailure
from lumen_alerting.operator.runs import _in_short
from tests.support.polling import free_port


async def _get(server: str) -> ApiError:
    client = KubeClient(ClusterAccess(server=server), timeout=5)
    try:
        await client.get(SECRET, "lumen", "x")
    except ApiError as error:
        return error
    finally:
        await client.aclose()
    raise AssertionError("the call succeeded")


def test_refused_connection_names_the_server_and_why() -> None:
    server = f"http://127.0.0.1:{free_port()}"  # free: nothing listens there
    error = asyncio.run(_get(server))
    assert error.status == UNREACHABLE and error.transient
    assert str(error) == f"cannot reach the Kubernetes API at {server}: connection refused"


def test_other_ways_of_no_answer_in_words() -> None:
    assert (
        connection_problem(aiohttp.ServerDisconnectedError()) == "the server closed the connection"
    )
    assert connection_problem(aiohttp.ConnectionTimeoutError()) == "no answer in time"
    reset = aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer")
    assert connection_problem(reset) == "connection reset by peer"
    # An answer that came back is not a connection problem.
    assert connection_problem(ValueError("bad JSON")) is None


def test_a_reconcile_out_of_reach_is_one_reason_in_the_log() -> None:
    server = "https://10.0.0.1:6443"
    refused = ApiError(
        UNREACHABLE, "connection refused", f"cannot reach the Kubernetes API at {server}"
    )
    listings = [
        ApiError(e.status, e.reason, f"list {plural}: {e.message}")
        for e, plural in ((refused, "prometheusrules"), (refused, "services"))
    ]
    assert _in_short(TransientFailure(listings, None), server) == (
        f"cannot reach the Kubernetes API at {server}: connection refused"
    )
    # Other transient failures are told in full, each with the object it concerns.
    throttled = ApiError(429, "TooManyRequests", f"{PROMETHEUS_RULE.kind}/x: slow down")
    mixed = TransientFailure([*listings, throttled], 3.0)
    assert _in_short(mixed, server) == str(mixed)
    assert "429 TooManyRequests: PrometheusRule/x: slow down" in str(mixed)
