"""Threader acknowledge throughput and latency, against a floor.

Run: ``make bench-threader`` (or ``.venv/bin/python bench/threader.py [--notifications N]``).

``lumen-threader`` runs as its own process once per store (``--store KIND``, default all):
``redis`` (a private redis-server with AOF, started for the run), ``redis-sentinel`` (a private
master, replica and three sentinels; the threader waits for the replica, its default there),
``redis-cluster`` (three private masters), ``postgresql`` (a new database on the machine's
PostgreSQL) and ``sqlite``, against a zero-latency Slack double. A load generator (this
process, aiohttp client) posts Alertmanager notifications of one new alert each, from 1 and
from 16 concurrent senders, and times every answer: the threader answers only once the alert
is durably in the outbox. The floor is the same stack doing the least work: an aiohttp handler
that does one write per request to the same store (``bench/floor_server.py``), measured the
same way in the same run.
Targets (issue 4): at least 500 notifications/s, p99 under 50 ms, within 3x of the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.polling import free_port  # noqa: E402
from tests.support.postgres_run import fresh_database  # noqa: E402
from tests.support.redis_topologies import RedisClusterServers, RedisSentinelSet  # noqa: E402
from tests.support.slack_api import SlackDouble  # noqa: E402
from tests.support.threader_run import (  # noqa: E402
    WEBHOOK_TOKEN,
    RedisServer,
    ThreaderProcess,
    alert,
    notification,
)


def bodies(count: int, offset: int) -> list[bytes]:
    return [
        json.dumps(notification([alert(offset + n)], group_key=f"bench-{offset + n}")).encode()
        for n in range(count)
    ]


async def load(url: str, payloads: list[bytes], senders: int) -> tuple[float, list[float]]:
    """Post every payload with ``senders`` concurrent clients; (seconds, latencies)."""
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def sender() -> None:
            while not queue.empty():
                payload = queue.get_nowait()
                started = time.perf_counter()
                async with session.post(url, data=payload) as response:
                    await response.read()
                    if response.status != 200:
                        raise SystemExit(f"{url} answered {response.status}")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)))
        return time.perf_counter() - started, latencies


def summary(seconds: float, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "per_second": len(ordered) / seconds,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[max(0, round(0.99 * len(ordered)) - 1)] * 1000,
    }


def measure(url: str, count: int, senders: int, offset: int) -> dict[str, float]:
    asyncio.run(load(url, bodies(200, offset + 10_000_000), senders))  # warm-up
    seconds, latencies = asyncio.run(load(url, bodies(count, offset), senders))
    return summary(seconds, latencies)


def start_floor(store: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "floor_server.py"), str(port), store]
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"http://127.0.0.1:{port}/alert"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the floor server did not start")


KINDS = ("redis", "redis-sentinel", "redis-cluster", "postgresql", "sqlite")
# Private servers, AOF on: one Redis, a Sentinel set (master, replica, 3 sentinels), 3 masters.
REDIS_SERVERS: dict[str, type[RedisServer | RedisSentinelSet | RedisClusterServers]] = {
    "redis": RedisServer,
    "redis-sentinel": RedisSentinelSet,
    "redis-cluster": RedisClusterServers,
}


@contextlib.contextmanager
def store_servers(kind: str, directory: str) -> Iterator[tuple[str, str]]:
    """The ``--store`` of the threader and the floor's store, on servers of the run's own."""
    if kind in REDIS_SERVERS:
        servers = REDIS_SERVERS[kind]().start()
        try:
            yield servers.url, servers.url
        finally:
            servers.remove()
    elif kind == "postgresql":
        for url in fresh_database():
            yield url, url
    else:
        yield f"sqlite:{directory}/threader.db", f"sqlite:{directory}/floor.db"


def run_store(kind: str, notifications: int, directory: str) -> dict[str, dict[str, float]]:
    """Threader and floor on one kind of store (``KINDS``), 1 and 16 senders."""
    results: dict[str, dict[str, float]] = {}
    with (
        store_servers(kind, directory) as (threader_store, floor_store),
        SlackDouble(rate_limit=False) as slack,
    ):
        # Every alert goes to one channel, which Slack's pace empties at one message a second:
        # the outbox grows by every notification, past the default bound of 10,000 entries.
        # This measures acknowledgements, so the bound is raised above what the run queues.
        threader = ThreaderProcess(
            slack.url,
            threader_store,
            log_level="warning",
            max_outbox_entries=str(4 * (notifications + 200)),
        ).start()
        floor, floor_url = start_floor(floor_store)
        try:
            for senders in (1, 16):
                offset = senders * 1_000_000
                results[f"threader, {senders} sender(s)"] = measure(
                    f"{threader.url}/alert", notifications, senders, offset
                )
                results[f"floor, {senders} sender(s)"] = measure(
                    floor_url, notifications, senders, offset
                )
        finally:
            threader.stop()
            floor.terminate()
            floor.wait(10)
    return results


def report(kind: str, notifications: int, results: dict[str, dict[str, float]]) -> bool:
    print(f"{notifications} notifications of one new alert each, {kind} store, per run")
    print(f"{'run':<26} {'notif/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, numbers in results.items():
        print(
            f"{name:<26} {numbers['per_second']:>9.0f} "
            f"{numbers['p50_ms']:>8.2f} {numbers['p99_ms']:>8.2f}"
        )
    ok = True
    for senders in (1, 16):
        mine, floor_numbers = (
            results[f"threader, {senders} sender(s)"],
            results[f"floor, {senders} sender(s)"],
        )
        ratio = floor_numbers["per_second"] / mine["per_second"]
        print(f"{senders:>2} sender(s): floor/threader throughput = {ratio:.2f}x (target <= 3x)")
        ok &= ratio <= 3
    best = results["threader, 16 sender(s)"]
    ok &= best["per_second"] >= 500 and best["p99_ms"] < 50
    print("targets met" if ok else "TARGETS MISSED")
    print()
    return ok


def side_by_side(notifications: int, every: dict[str, dict[str, dict[str, float]]]) -> None:
    """One table of every store, for docs/PERFORMANCE.md."""
    print(f"All stores, {notifications} notifications per run (Markdown):")
    print("| store | senders | threader/s | floor/s | floor/threader | threader p99 | floor p99 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind, results in every.items():
        for senders in (1, 16):
            mine = results[f"threader, {senders} sender(s)"]
            floor = results[f"floor, {senders} sender(s)"]
            print(
                f"| {kind} | {senders} | {mine['per_second']:.0f} | {floor['per_second']:.0f} | "
                f"{floor['per_second'] / mine['per_second']:.2f}x | {mine['p99_ms']:.2f} ms | "
                f"{floor['p99_ms']:.2f} ms |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=5000)
    parser.add_argument("--store", choices=(*KINDS, "all"), default="all", help="default: all")
    args = parser.parse_args()
    kinds = KINDS if args.store == "all" else (args.store,)
    ok = True
    every: dict[str, dict[str, dict[str, float]]] = {}
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="bench-threader-") as directory:
            every[kind] = run_store(kind, args.notifications, directory)
        ok &= report(kind, args.notifications, every[kind])
    side_by_side(args.notifications, every)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
