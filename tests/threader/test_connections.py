"""Slow, half-sent and idle connections are cut in time, and real senders are still served
(#8 item 6): a real ``lumen-threader`` process, raw sockets from asyncio, short flags."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.support.slack_api import SlackDouble
from tests.support.threader_run import WEBHOOK_TOKEN, ThreaderProcess, alert, notification

pytestmark = pytest.mark.timeout(180)

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0
IDLE_TIMEOUT = 4.0
LINGER = 2.0  # threader/connections.py: a body nobody reads is drained this long at most
# Room for a loaded machine (2 cores shared with other test runs) on top of each deadline.
MARGIN = 4.0
# How long a real sender may wait for its answer while hundreds of bad connections are held
# open: room for a loaded 2-core CI machine, where a first answer once took 2.03 s.
SENDER_BOUND = 5.0
# How long the test waits for any connection at most: far past every deadline.
GIVE_UP = 40.0


@dataclass
class Outcome:
    kind: str
    cut_after: float | None  # seconds from connecting (or from going idle) to EOF/reset


def threader_with_limits(slack: SlackDouble, **flags: str) -> ThreaderProcess:
    limits = {
        "header_timeout": str(HEADER_TIMEOUT),
        "body_timeout": str(BODY_TIMEOUT),
        "idle_timeout": str(IDLE_TIMEOUT),
    }
    return ThreaderProcess(slack.url, "memory", channel_interval="0", **{**limits, **flags}).start()


async def _until_cut(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bytes, started: float
) -> float | None:
    """Trickle ``trickle`` every 0.5 s (if any) and read until the server closes; the seconds
    from ``started`` to the close, or None if it stayed open for GIVE_UP seconds."""
    deadline = started + GIVE_UP
    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(reader.read(65536), 0.5)
        except TimeoutError:
            data = None
        except (ConnectionError, OSError):
            return time.monotonic() - started
        if data == b"":
            return time.monotonic() - started
        if trickle:
            try:
                writer.write(trickle)
                await writer.drain()
            except (ConnectionError, OSError):
                return time.monotonic() - started
    return None


async def slowloris(port: int) -> Outcome:
    """A request head that never ends: a header line now and then."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /alert HTTP/1.1\r\nHost: threader\r\n")
        await writer.drain()
        return Outcome("slowloris", await _until_cut(reader, writer, b"X-Slow: 1\r\n", started))
    finally:
        writer.close()


async def half_body(port: int) -> Outcome:
    """A complete head, then a tenth of the body, then a byte now and then."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(
            b"POST /alert HTTP/1.1\r\nHost: threader\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {WEBHOOK_TOKEN}\r\nContent-Length: 1000\r\n\r\n".encode()
            + b"{" * 100
        )
        await writer.drain()
        return Outcome("half_body", await _until_cut(reader, writer, b" ", started))
    finally:
        writer.close()


async def idle_keep_alive(port: int) -> Outcome:
    """One request answered, then silence on the kept-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: threader\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await asyncio.wait_for(reader.readexactly(length), GIVE_UP)
        return Outcome("idle", await _until_cut(reader, writer, b"", time.monotonic()))
    finally:
        writer.close()


async def real_sender(url: str, stop: asyncio.Event) -> list[float]:
    """Alertmanager-like notifications every 0.2 s until ``stop``; each answer's latency."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    async with httpx.AsyncClient(timeout=30) as client:
        for n in range(1000):  # bounded; ``stop`` ends it long before
            if stop.is_set():
                break
            body = json.dumps(notification([alert(n)], group_key=f'{{}}:{{n="{n}"}}'))
            started = time.monotonic()
            answer = await client.post(f"{url}/alert", content=body, headers=headers)
            latencies.append(time.monotonic() - started)
            assert answer.status_code == 200, answer.text
            await asyncio.sleep(0.2)
    return latencies


async def attack(
    threader: ThreaderProcess, kinds: dict[str, int]
) -> tuple[list[Outcome], list[float]]:
    makers = {"slowloris": slowloris, "half_body": half_body, "idle": idle_keep_alive}
    stop = asyncio.Event()
    sender = asyncio.create_task(real_sender(threader.url, stop))
    bad = [makers[kind](threader.port) for kind, count in kinds.items() for _ in range(count)]
    outcomes = await asyncio.gather(*bad)
    stop.set()
    return list(outcomes), await sender


def test_slow_half_sent_and_idle_connections_are_cut_while_senders_are_served(
    slack: SlackDouble,
) -> None:
    threader = threader_with_limits(slack)
    try:
        kinds = {"slowloris": 300, "half_body": 300, "idle": 100}
        outcomes, latencies = asyncio.run(attack(threader, kinds))
        metrics = threader.metrics()
    finally:
        assert threader.stop() == 0
    limits = {
        "slowloris": HEADER_TIMEOUT,
        "half_body": BODY_TIMEOUT + LINGER,
        "idle": IDLE_TIMEOUT,
    }
    for kind, limit in limits.items():
        cut = [o.cut_after for o in outcomes if o.kind == kind]
        assert len(cut) == kinds[kind]
        assert None not in cut, f"{cut.count(None)} {kind} connections never cut"
        slowest = max(c for c in cut if c is not None)
        assert slowest <= limit + MARGIN, f"{kind}: slowest cut after {slowest:.1f} s"
    assert latencies and max(latencies) < SENDER_BOUND, (
        f"slowest real notification {max(latencies):.2f} s"
    )
    assert 'lumen_threader_connections_cut_total{reason="header_timeout"} 300.0' in metrics
    assert 'lumen_threader_connections_cut_total{reason="body_timeout"} 300.0' in metrics


def test_at_the_connection_limit_waiting_connections_make_room(slack: SlackDouble) -> None:
    # 200 slowloris connections against a limit of 100: real senders still get through,
    # because each new connection evicts one that is only waiting.
    threader = threader_with_limits(
        slack, max_connections="100", header_timeout="15", idle_timeout="30"
    )
    try:
        outcomes, latencies = asyncio.run(attack(threader, {"slowloris": 200}))
        metrics = threader.metrics()
    finally:
        assert threader.stop() == 0
    assert all(o.cut_after is not None for o in outcomes)
    assert latencies and max(latencies) < SENDER_BOUND, (
        f"slowest real notification {max(latencies):.2f} s"
    )
    evicted = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('lumen_threader_connections_cut_total{reason="evicted"}')
    ]
    # The first 100 fill the server; (nearly) each later one evicts one of them.
    assert evicted and evicted[0] >= 90, evicted


def test_when_every_connection_is_busy_a_new_one_gets_503(slack: SlackDouble) -> None:
    # Five notifications whose bodies are still coming (being served: not evicted) fill a
    # limit of five; a sixth connection is answered 503 with Retry-After, not left hanging.
    threader = threader_with_limits(slack, max_connections="5", body_timeout="60")

    async def scenario() -> tuple[bytes, int]:
        busy = []
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", threader.port)
            writer.write(
                b"POST /alert HTTP/1.1\r\nHost: threader\r\nContent-Length: 100\r\n"
                + f"Authorization: Bearer {WEBHOOK_TOKEN}\r\n\r\n{{".encode()
            )
            await writer.drain()
            busy.append(writer)
        await asyncio.sleep(0.5)  # let the server start serving them (no condition to poll)
        reader, writer = await asyncio.open_connection("127.0.0.1", threader.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: threader\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), GIVE_UP)
        writer.close()
        for each in busy:
            each.close()
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(100):  # the busy ones are gone once the server sees them close
                status = (await client.get(f"{threader.url}/health")).status_code
                if status == 200:
                    break
                await asyncio.sleep(0.1)
        return answer, status

    try:
        answer, status_after = asyncio.run(scenario())
        metrics = threader.metrics()
    finally:
        assert threader.stop() == 0
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
    assert b"Retry-After: 1\r\n" in answer
    assert status_after == 200
    assert 'lumen_threader_connections_cut_total{reason="refused"} 1.0' in metrics
