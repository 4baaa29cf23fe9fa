"""The incident store's cost and speed.

Run: ``make bench-incidents`` (or ``.venv/bin/python bench/incidents.py [--alerts N]
[--incidents N]``).

1. Webhook rate with and without incidents. ``lumen-threader`` runs with a private Redis store
   (AOF, as in production) and the zero-latency Slack double, once without an incident database
   and once with each of SQLite and the machine's PostgreSQL (a database of the bench's own).
   A load generator posts ``--alerts`` notifications of one new alert each from 16 concurrent
   senders and counts acknowledgements per second; then waits until the incident store holds
   every alert (the recorder writes in the background) and reports how long that took.
   Target (issue 13): acknowledgements/s with incidents at least 80 % of those without.
2. List queries over ``--incidents`` incidents on PostgreSQL, through ``IncidentStore.list`` (the
   path the API takes): the first page, each filter, a time range, sorting by severity, a deep
   page. Target: p99 under 50 ms for every query.

Each webhook run is measured three times, interleaved, and each list query twice; the best is
kept, so that one stall of a busy 2-core machine does not decide the result.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from bench.threader import bodies, load, summary  # noqa: E402
from lumen_alerting.threader.incidents.grouping import incident_key  # noqa: E402
from lumen_alerting.threader.incidents.records import IncidentFilter, ReceivedAlert  # noqa: E402
from lumen_alerting.threader.incidents.store import IncidentStore  # noqa: E402
from tests.support.slack_api import SlackDouble  # noqa: E402
from tests.support.threader_run import RedisServer, ThreaderProcess  # noqa: E402
from tests.threader.incidents.conftest import postgres_database  # noqa: E402

API_TOKEN = "bench-incident-api-token-0123"
SENDERS = 16
# Runs of each kind, interleaved, the best one kept: this machine's speed varies by a quarter
# from one run to the next.
ATTEMPTS = 3


def stored(threader: ThreaderProcess) -> int:
    answer = httpx.get(
        f"{threader.url}/api/v1/incidents?limit=1",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=30,
    )
    answer.raise_for_status()
    total: int = answer.json()["total"]
    return total


def webhook_run(
    redis_url: str, database: str | None, alerts: int, offset: int, directory: str
) -> dict[str, float]:
    """Acknowledgements/s of ``alerts`` notifications; with a database, the seconds until the
    incident store held them all."""
    token = Path(directory) / "api-token"
    token.write_text(API_TOKEN)
    flags: dict[str, str] = {"log_level": "warning"}
    if database is not None:
        flags |= {"database_url": database, "api_token_file": str(token)}
    with SlackDouble(rate_limit=False) as slack:
        threader = ThreaderProcess(
            slack.url,
            redis_url,
            key_prefix=f"bench-incidents-{offset}:",
            max_outbox_entries=str(4 * (alerts + 200)),
            **flags,
        ).start()
        try:
            asyncio.run(load(f"{threader.url}/alert", bodies(200, offset + 900_000), SENDERS))
            started = time.monotonic()
            seconds, latencies = asyncio.run(
                load(f"{threader.url}/alert", bodies(alerts, offset), SENDERS)
            )
            result = summary(seconds, latencies)
            if database is not None:
                while stored(threader) < alerts + 200:
                    if time.monotonic() - started > 600:
                        raise SystemExit("the incident store did not catch up within 10 minutes")
                    time.sleep(0.2)
                result["stored_after_s"] = time.monotonic() - started
                result["stored_per_second"] = alerts / result["stored_after_s"]
        finally:
            threader.stop()
    return result


def webhook_rates(alerts: int) -> bool:
    print(f"1. {alerts} notifications of one new alert each, {SENDERS} senders, Redis store")
    print(f"{'incident database':<20} {'acks/s':>8} {'p99 ms':>8} {'stored after s':>15}")
    redis = RedisServer().start()
    results: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-incidents-") as directory:
            for attempt in range(ATTEMPTS):
                for index, name in enumerate(("none", "sqlite", "postgresql")):
                    offset = (attempt * 3 + index) * 10_000_000
                    # A database of each run's own: the second run must not find the first's.
                    databases = postgres_database()
                    database = {
                        "none": None,
                        "sqlite": f"sqlite:///{directory}/incidents-{attempt}.db",
                        "postgresql": next(databases) if name == "postgresql" else None,
                    }[name]
                    try:
                        numbers = webhook_run(redis.url, database, alerts, offset, directory)
                    finally:
                        databases.close()
                    best = results.get(name)
                    if best is None or numbers["per_second"] > best["per_second"]:
                        results[name] = numbers
    finally:
        redis.remove()
    ok = True
    for name, numbers in results.items():
        after = numbers.get("stored_after_s")
        shown = f"{after:>15.1f}" if after is not None else f"{'-':>15}"
        print(f"{name:<20} {numbers['per_second']:>8.0f} {numbers['p99_ms']:>8.2f} {shown}")
    for name in ("sqlite", "postgresql"):
        ratio = results[name]["per_second"] / results["none"]["per_second"]
        print(f"{name}: {ratio:.0%} of the acknowledgements/s without incidents (target >= 80 %)")
        ok &= ratio >= 0.8
    return ok


def seed(store: IncidentStore, count: int) -> None:
    """``count`` incidents over 20 services, 4 clusters, 10 namespaces, 4 severities, a third
    of them resolved, opened over 30 days."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    severities = ("critical", "warning", "info", "error")
    batch: list[ReceivedAlert] = []

    async def flush() -> None:
        await store.record(batch)
        batch.clear()

    async def fill() -> None:
        for n in range(count):
            starts = start + timedelta(seconds=n * 26)
            labels = {
                "alertname": f"Alert{n % 50}",
                "severity": severities[n % 4],
                "service": f"service-{n % 20}",
                "cluster": f"cluster-{n % 4}",
                "namespace": f"namespace-{n % 10}",
            }
            fingerprint = f"{n:016x}"
            for status in ("firing", "resolved") if n % 3 == 0 else ("firing",):
                batch.append(
                    ReceivedAlert(
                        source="alertmanager",
                        receiver="bench",
                        group_key=f"bench-{n}",
                        received_at=starts,
                        incident_key=incident_key(fingerprint, starts, labels),
                        fingerprint=fingerprint,
                        status=status,
                        starts_at=starts,
                        ends_at=starts + timedelta(minutes=5) if status == "resolved" else None,
                        labels=labels,
                        annotations={"summary": f"bench alert {n}"},
                    )
                )
            if len(batch) >= 2000:
                await flush()
        await flush()

    asyncio.run(fill())


def list_queries(count: int) -> bool:
    print(f"2. list queries over {count} incidents, PostgreSQL, IncidentStore.list, limit 50")
    databases = postgres_database()
    ok = True
    try:
        url = next(databases)
        store = IncidentStore.open(url)
        started = time.monotonic()
        seed(store, count)
        print(f"(seeded in {time.monotonic() - started:.0f} s)")
        # What autovacuum does on a live database soon after such a load: statistics for the
        # planner, and the visibility map that lets a count(*) read only the index.
        with sa.create_engine(url, isolation_level="AUTOCOMMIT").connect() as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
        since = datetime(2026, 11, 10, tzinfo=UTC)
        queries: dict[str, tuple[IncidentFilter, str, int]] = {
            "first page": (IncidentFilter(), "-opened_at", 0),
            "page 20": (IncidentFilter(), "-opened_at", 1000),
            "service": (IncidentFilter(service="service-7"), "-opened_at", 0),
            "severity + state": (
                IncidentFilter(severity="critical", state="triggered"),
                "-opened_at",
                0,
            ),
            "cluster + namespace": (
                IncidentFilter(cluster="cluster-1", namespace="namespace-5"),
                "-opened_at",
                0,
            ),
            "time range": (
                IncidentFilter(since=since, until=since + timedelta(days=2)),
                "-opened_at",
                0,
            ),
            "state resolved": (IncidentFilter(state="resolved"), "-opened_at", 0),
            "by severity": (IncidentFilter(), "-severity", 0),
        }
        print(f"{'query':<22} {'p50 ms':>8} {'p99 ms':>8} {'total':>8}")

        async def measure(where: IncidentFilter, sort: str, offset: int) -> tuple[list[float], int]:
            times: list[float] = []
            total = 0
            for _ in range(200):
                began = time.perf_counter()
                page = await store.list(where, sort=sort, limit=50, offset=offset)  # type: ignore[arg-type]
                times.append(time.perf_counter() - began)
                total = page.total
            return times, total

        for name, (where, sort, offset) in queries.items():
            best: list[float] | None = None
            for _ in range(2):
                times, total = asyncio.run(measure(where, sort, offset))
                if best is None or _p99(times) < _p99(best):
                    best = times
            assert best is not None
            p99 = _p99(best)
            print(
                f"{name:<22} {statistics.median(best) * 1000:>8.2f} {p99 * 1000:>8.2f} {total:>8}"
            )
            ok &= p99 < 0.050
        asyncio.run(store.close())
    finally:
        databases.close()
    print("p99 under 50 ms for every query" if ok else "LIST TARGET MISSED")
    return ok


def _p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100)[98]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--part", choices=("webhook", "list", "all"), default="all")
    args = parser.parse_args()
    ok = True
    if args.part in ("webhook", "all"):
        ok &= webhook_rates(args.alerts)
        print()
    if args.part in ("list", "all"):
        ok &= list_queries(args.incidents)
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
