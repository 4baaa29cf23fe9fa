"""Failover under load: are acknowledged alerts kept when the store fails over? (issue 14)

Run: ``.venv/bin/python bench/store_failover.py [--runs NAME,…] [--lag SECONDS]``.

Per run: 2,000 Alertmanager notifications of one new alert each, sent at a fixed 100 a second,
each to one of two ``lumen-threader`` processes (consumers ``r0`` and ``r1``, one store, one key
prefix) chosen round-robin, in front of the Slack double (no rate limit; ``--channel-interval
0`` so one channel can take them all). The sender behaves like Alertmanager: a non-2xx answer or
a connection error is sent again (Alertmanager's backoff: 0.5 s, x1.5, +-50 % jitter, here
capped at 5 s; the retry goes to the other replica, as through a Service) for up to 2 minutes;
the ledger notes, per alert, whether and when it got a 2xx ("acknowledged"). Once half the
alerts are sent the fault is injected while the sender keeps its pace. When every alert is
acknowledged or given up on and the shared outbox is empty, the Slack double's parents are
counted per alert: an acknowledged alert without a parent is **lost**, an alert with more than
one parent is a **duplicate**.

Runs:

- ``redis-restart-empty``: the harness can fail. A standalone Redis without AOF (the threaders
  started with ``--allow-volatile-store``), killed -9 and started again empty while the Slack
  double is down, so the acknowledged alerts still in the outbox are gone and must be counted.
- ``sentinel-wait`` / ``sentinel-nowait``: a Sentinel set (master, replica, 3 sentinels), the
  master killed -9, Sentinel promotes the replica; ``--replica-acks 1`` / ``0``. Once the
  replica is promoted the old master is started again (as Kubernetes restarts the pod) and
  Sentinel makes it the new master's replica: until then no replica can confirm a write, so
  with ``--replica-acks 1`` every notification is answered 503 and sent again.
- ``sentinel-wait-lag`` / ``sentinel-nowait-lag`` / ``sentinel-auto-lag``: the same with the
  replication stream delayed by ``--lag`` seconds (default 0.15) by a TCP proxy between the
  replica and the master (:class:`LagProxy`), as replication is over a real network: on
  loopback a replica is microseconds behind and a kill rarely catches a write that only the
  master had. ``auto`` (the default) waits for one replica while the master has one connected.
- ``sentinel-wait-lag-outage`` / ``sentinel-nowait-lag-outage``: the same, lag on, with Slack
  down from a second before the kill until the promotion. The delivery workers take every entry
  within a millisecond of its acceptance and deliver what they hold from memory even when the
  store is gone; so an alert the replica never got is lost only if no worker holds it, as
  when a failing delivery puts it back into the store (postponed). The outage makes that so.
- ``postgresql-restart``: a private PostgreSQL, killed -9 and started again on its data.

The numbers go to docs/PERFORMANCE.md ("Failover"); tests/threader/test_store_failover.py runs
the same scenarios with assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.background_loop import BackgroundLoop  # noqa: E402
from tests.support.polling import eventually  # noqa: E402
from tests.support.postgres_run import PostgresServer  # noqa: E402
from tests.support.redis_topologies import RedisSentinelSet  # noqa: E402
from tests.support.slack_api import SlackDouble, StoredMessage  # noqa: E402
from tests.support.threader_run import (  # noqa: E402
    SLACK_TOKEN,
    WEBHOOK_TOKEN,
    RedisServer,
    ThreaderProcess,
    alert,
    notification,
    thread_key,
)

ALERTS = 2000
RATE = 100.0  # notifications a second
RETRY_FOR = 120.0  # seconds Alertmanager keeps sending one notification again
REQUEST_TIMEOUT = 10.0
# Alertmanager's retry backoff (cenkalti/backoff's defaults: 0.5 s, x1.5, +-50 % jitter), capped
# at 5 s instead of its 60 s to keep a run short.
BACKOFF_START = 0.5
BACKOFF_FACTOR = 1.5
BACKOFF_JITTER = 0.5
BACKOFF_CAP = 5.0
DRAIN_TIMEOUT = 300.0  # seconds for the outbox to empty after the last acknowledgement
CHANNEL = "#alerts"
DEFAULT_LAG = 0.15
SLACK_OUTAGE = 1.0  # seconds of Slack outage before the kill (the -outage runs)

Fault = Callable[[], None]


# --- the replication lag ------------------------------------------------------------------------


class LagProxy(BackgroundLoop):
    """A TCP proxy on a free port of 127.0.0.1 to ``upstream_port``, in a thread of its own. What
    the upstream sends (the master's replication stream) reaches the client ``delay`` seconds
    later, in order; what the client sends goes through at once. When one side closes or fails,
    both are closed; a connection the upstream refuses is closed at once.

    When the upstream goes away, what it sent in the last ``delay`` seconds is dropped, not
    delivered: the master's host (or the network to it) failed with that much replication in
    flight. A master process killed alone would have its last bytes, already in the kernel's
    socket buffers, reach the replica; a lost node would not."""

    thread_name = "lag-proxy"
    title = "The lag proxy"

    def __init__(self, upstream_port: int, delay: float) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.delay = delay
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        self._url = f"tcp://127.0.0.1:{self.port}"
        self._ready.set()
        async with server:
            await self._stopped.wait()
            for writer in list(self._writers):
                writer.close()

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
        except OSError:
            client_writer.close()
            return
        writers = (client_writer, upstream_writer)
        self._writers.update(writers)
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, 0.0, writers),
                self._pipe(upstream_reader, client_writer, self.delay, writers),
            )
        finally:
            for writer in writers:
                writer.close()
                self._writers.discard(writer)

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        delay: float,
        both: tuple[asyncio.StreamWriter, ...],
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                due, data = await queue.get()
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                if not data:
                    return
                writer.write(data)
                await writer.drain()

        forwarding = asyncio.create_task(forward())
        try:
            while True:
                try:
                    data = await reader.read(65536)
                except OSError:
                    data = b""
                if not data and delay:
                    return  # what is still in flight is lost with the master's host
                queue.put_nowait((loop.time() + delay, data))
                if not data:
                    break
            with contextlib.suppress(OSError):
                await forwarding
        finally:
            forwarding.cancel()
            for other in both:  # one side gone: so is the other
                other.close()


class LaggedSentinelSet(RedisSentinelSet):
    """``RedisSentinelSet`` whose replica, once in sync, replicates through a :class:`LagProxy`
    (``REPLICAOF 127.0.0.1 <proxy port>``), ``lag`` seconds behind.

    Sentinel notices that the replica follows another address than the master's and points it
    at the master directly once ``failover-timeout`` has passed, so that is a minute here, well
    past a run's fault; :meth:`replicating_through_proxy` checks."""

    def __init__(self, lag: float = DEFAULT_LAG) -> None:
        super().__init__(failover_timeout_ms=60_000)
        self.lag = lag
        self.proxy = LagProxy(self.master.port, lag)

    def start(self) -> LaggedSentinelSet:
        super().start()
        try:
            self.proxy.start()
            with self.client(self.replica.port) as replica:
                replica.replicaof("127.0.0.1", self.proxy.port)
            eventually(self.replicating_through_proxy, 60, "the replica in sync through the proxy")
        except BaseException:
            self.remove()
            raise
        return self

    def replicating_through_proxy(self) -> bool:
        """The replica still takes its stream through the proxy (Sentinel has not re-pointed
        it), with the link up."""
        info = self._info(self.replica.port, "replication")
        return info.get("master_port") == self.proxy.port and info.get("master_link_status") == "up"

    def remove(self) -> None:
        super().remove()
        self.proxy.stop()


# --- the load and the ledger --------------------------------------------------------------------


@dataclass
class Ledger:
    """Per alert (index n): when it was first sent and when it got its first 2xx, in seconds
    from the start of the run; the refusals (non-2xx answers and connection errors) seen."""

    count: int
    first_sent: list[float | None] = field(default_factory=list)
    acknowledged: list[float | None] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    refusals: list[tuple[float, str]] = field(default_factory=list)
    fault_started: float | None = None
    fault_ended: float | None = None

    def __post_init__(self) -> None:
        self.first_sent = [None] * self.count
        self.acknowledged = [None] * self.count
        self.attempts = [0] * self.count


def body(n: int) -> bytes:
    return json.dumps(notification([alert(n)], group_key=f"failover-{n}")).encode()


async def _send_one(
    session: aiohttp.ClientSession,
    urls: Sequence[str],
    n: int,
    ledger: Ledger,
    started: float,
    retry_for: float,
) -> None:
    """Like Alertmanager: again on anything but a 2xx, with a backoff, until ``retry_for``."""
    loop = asyncio.get_running_loop()
    payload = body(n)
    replica = n % len(urls)
    first = loop.time()
    ledger.first_sent[n] = first - started
    backoff = BACKOFF_START
    jitter = random.Random(n)  # the same waits every run
    while True:
        ledger.attempts[n] += 1
        try:
            async with session.post(urls[replica], data=payload) as response:
                await response.read()
                outcome = str(response.status)
                ok = 200 <= response.status < 300
        except (TimeoutError, aiohttp.ClientError) as error:
            outcome, ok = type(error).__name__, False
        now = loop.time()
        if ok:
            ledger.acknowledged[n] = now - started
            return
        ledger.refusals.append((now - started, outcome))
        if now - first >= retry_for:
            return
        await asyncio.sleep(backoff * jitter.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER))
        backoff = min(BACKOFF_FACTOR * backoff, BACKOFF_CAP)
        replica = (replica + 1) % len(urls)  # as through a Service: maybe the other one


async def drive(
    urls: Sequence[str],
    count: int,
    rate: float,
    fault: Fault | None,
    fault_after: int,
    retry_for: float = RETRY_FOR,
) -> Ledger:
    """Send ``count`` notifications at ``rate`` a second, each on its own (a slow one does not
    hold the next back); run ``fault`` in a thread once ``fault_after`` are sent."""
    ledger = Ledger(count)
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout
    ) as session:
        started = loop.time()
        tasks: list[asyncio.Task[None]] = []
        faulting: asyncio.Task[None] | None = None

        async def inject(fault: Fault) -> None:
            ledger.fault_started = loop.time() - started
            await asyncio.to_thread(fault)
            ledger.fault_ended = loop.time() - started

        for n in range(count):
            due = started + n / rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            tasks.append(
                asyncio.create_task(_send_one(session, urls, n, ledger, started, retry_for))
            )
            if fault is not None and n + 1 == fault_after:
                faulting = asyncio.create_task(inject(fault))
        await asyncio.gather(*tasks)
        if faulting is not None:
            await faulting
    return ledger


# --- a run and its outcome ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    name: str
    sent: int
    acknowledged: int
    lost: list[int]  # acknowledged, and no parent in Slack
    duplicates: list[int]  # more than one parent
    never_acknowledged: list[int]
    delivered_unacknowledged: int  # a parent, but never a 2xx (a write the 503 did not undo)
    outbox_left: int | None  # entries still queued when the wait gave up (None: no answer)
    seconds: float  # from the first send until the outbox was empty
    refusals: int
    refused_for: float  # seconds from the first to the last refusal
    fault_seconds: float  # how long the fault took (kill, restart or promotion)
    max_ack_wait: float  # the longest time from first send to 2xx
    ledger: Ledger = field(repr=False, compare=False)
    logs: list[str] = field(default_factory=list, repr=False, compare=False)  # the replicas'
    parents: list[StoredMessage] = field(default_factory=list, repr=False, compare=False)

    def row(self) -> str:
        return (
            f"| {self.name} | {self.sent} | {self.acknowledged} | {len(self.lost)} "
            f"| {len(self.duplicates)} | {len(self.never_acknowledged)} | {self.refusals} "
            f"| {self.refused_for:.1f} | {self.max_ack_wait:.1f} | {self.seconds:.1f} |"
        )


TABLE_HEADER = (
    "| run | sent | acknowledged | lost | duplicates | never acknowledged | refusals "
    "| refused for (s) | longest ack wait (s) | time (s) |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def outbox(urls: Sequence[str]) -> int | None:
    """Entries still to deliver in the shared outbox, from whichever replica answers."""
    for url in urls:
        try:
            answer = httpx.get(f"{url}/stats", timeout=10)
        except httpx.HTTPError:
            continue
        if answer.status_code == 200:
            return int(answer.json()["outbox"])
    return None


def alert_number(parent_key: str) -> int:
    """``#alerts/<fingerprint>@<startsAt>`` -> n (the fingerprint is n in hex)."""
    return int(parent_key.split("/", 1)[1].split("@", 1)[0], 16)


def reconcile(
    name: str,
    ledger: Ledger,
    slack: SlackDouble,
    outbox_left: int | None,
    seconds: float,
) -> Outcome:
    messages = slack.parents(CHANNEL)
    parents = Counter(alert_number(thread_key(p)) for p in messages)
    acknowledged = [n for n in range(ledger.count) if ledger.acknowledged[n] is not None]
    waits = [
        ack - sent
        for ack, sent in zip(ledger.acknowledged, ledger.first_sent, strict=True)
        if ack is not None and sent is not None
    ]
    refusal_times = [moment for moment, _ in ledger.refusals]
    return Outcome(
        name=name,
        sent=sum(sent is not None for sent in ledger.first_sent),
        acknowledged=len(acknowledged),
        lost=[n for n in acknowledged if parents[n] == 0],
        duplicates=sorted(n for n, times in parents.items() if times > 1),
        never_acknowledged=[n for n in range(ledger.count) if ledger.acknowledged[n] is None],
        delivered_unacknowledged=sum(
            1 for n in range(ledger.count) if ledger.acknowledged[n] is None and parents[n]
        ),
        outbox_left=outbox_left,
        seconds=seconds,
        refusals=len(ledger.refusals),
        refused_for=max(refusal_times) - min(refusal_times) if refusal_times else 0.0,
        fault_seconds=(
            ledger.fault_ended - ledger.fault_started
            if ledger.fault_started is not None and ledger.fault_ended is not None
            else 0.0
        ),
        max_ack_wait=max(waits, default=0.0),
        ledger=ledger,
        parents=messages,
    )


def run(
    name: str,
    store: str,
    fault: Fault,
    *,
    slack: SlackDouble,
    count: int = ALERTS,
    rate: float = RATE,
    fault_after: int | None = None,
    retry_for: float = RETRY_FOR,
    drain_timeout: float = DRAIN_TIMEOUT,
    before_fault: Callable[[], None] | None = None,
    **flags: str | bool,
) -> Outcome:
    """Two threaders on ``store`` in front of ``slack``; the load, ``fault`` half-way; the
    reconciliation once the outbox is empty (or ``drain_timeout`` passed)."""
    replicas = [
        ThreaderProcess(
            slack.url,
            store,
            slack_token=SLACK_TOKEN,
            **{"consumer": f"r{index}", "channel_interval": "0", "log_level": "warning", **flags},
        )
        for index in range(2)
    ]
    try:
        for replica in replicas:
            replica.start()
        urls = [replica.url for replica in replicas]

        def injected() -> None:
            if before_fault is not None:
                before_fault()
            fault()

        started = time.monotonic()
        ledger = asyncio.run(
            drive(
                [f"{url}/alert" for url in urls],
                count,
                rate,
                injected,
                count // 2 if fault_after is None else fault_after,
                retry_for,
            )
        )
        left: int | None = None
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            left = outbox(urls)
            if left == 0:
                break
            time.sleep(0.2)
        seconds = time.monotonic() - started
        outcome = reconcile(name, ledger, slack, left, seconds)
        for replica in replicas:
            outcome.logs.append(replica.log.read_text(errors="replace"))
        return outcome
    finally:
        for replica in replicas:
            if replica.process is not None:
                replica.stop()


def describe(outcome: Outcome) -> str:
    lines = [outcome.row()]
    if outcome.lost:
        lines.append(f"  lost: {_ranges(outcome.lost)}")
    if outcome.duplicates:
        fault = outcome.ledger.fault_started
        before = [
            n for n in outcome.duplicates if fault and (outcome.ledger.first_sent[n] or 0) < fault
        ]
        deliveries: dict[int, set[str]] = {}
        for parent in outcome.parents:
            assert parent.metadata is not None
            n = alert_number(thread_key(parent))
            deliveries.setdefault(n, set()).add(parent.metadata["event_payload"]["delivery_id"])
        same = sum(len(deliveries[n]) == 1 for n in outcome.duplicates)
        lines.append(
            f"  duplicates: {_ranges(outcome.duplicates)} ({len(before)} of them sent before "
            f"the fault; {same} posted twice under one delivery id)"
        )
    if outcome.never_acknowledged:
        lines.append(f"  never acknowledged: {_ranges(outcome.never_acknowledged)}")
    if outcome.outbox_left:
        lines.append(f"  OUTBOX NOT EMPTY after the wait: {outcome.outbox_left} entries")
    if outcome.delivered_unacknowledged:
        lines.append(f"  delivered but never acknowledged: {outcome.delivered_unacknowledged}")
    lines.append(f"  the fault took {outcome.fault_seconds:.1f} s")
    return "\n".join(lines)


def _ranges(numbers: Sequence[int]) -> str:
    """1,2,3,7 -> '1-3, 7' (the alerts' numbers in send order)."""
    parts: list[str] = []
    for n in sorted(numbers):
        if parts and parts[-1].split("-")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ", ".join(parts)


# --- the scenarios ------------------------------------------------------------------------------


def redis_restart_empty(**options: Any) -> Outcome:
    """A standalone Redis without AOF, killed and started again empty while Slack is down: the
    acknowledged alerts still queued are lost, and the harness must say so."""
    server = RedisServer("--appendonly", "no").start()
    try:
        with SlackDouble(rate_limit=False) as slack:

            def slack_down() -> None:
                # Entries pile up in the outbox (the workers back off), as behind Slack's pace.
                slack.go_down(3600)
                time.sleep(2)

            def fault() -> None:
                server.kill()
                server.start()
                slack.go_down(0)

            return run(
                "redis-restart-empty",
                server.url,
                fault,
                slack=slack,
                before_fault=slack_down,
                allow_volatile_store=True,
                **options,
            )
    finally:
        server.remove()


def sentinel(
    replica_acks: str, lag: float = 0.0, slack_outage: float = 0.0, **options: Any
) -> Outcome:
    """A Sentinel set, its master killed -9 half-way. ``lag``: the replica that far behind.
    ``slack_outage``: Slack down from that many seconds before the kill until the promotion,
    so that the workers put what they took back into the store (postponed) instead of holding
    it until it is delivered: the alerts acknowledged but not yet replicated are then nowhere
    else."""
    kind = {"0": "nowait", "auto": "auto"}.get(replica_acks, "wait")
    name = f"sentinel-{kind}" + ("-lag" if lag else "") + ("-outage" if slack_outage else "")
    topology = LaggedSentinelSet(lag).start() if lag else RedisSentinelSet().start()
    try:
        with SlackDouble(rate_limit=False) as slack:

            def before_fault() -> None:
                if isinstance(topology, LaggedSentinelSet) and not (
                    topology.replicating_through_proxy()
                ):
                    raise AssertionError("the replica no longer replicates through the lag proxy")
                if slack_outage:
                    slack.go_down(3600)
                    time.sleep(slack_outage)

            def fault() -> None:
                topology.master.kill()
                topology.wait_for_promotion(90)
                slack.go_down(0)
                # As Kubernetes restarts the pod: Sentinel makes it a replica of the new
                # master, so that a replica can confirm writes again (the set has one replica,
                # now the master).
                topology.master.start()

            return run(
                name,
                topology.url,
                fault,
                slack=slack,
                before_fault=before_fault,
                replica_acks=replica_acks,
                **options,
            )
    finally:
        topology.remove()


def postgresql_restart(**options: Any) -> Outcome:
    """A private PostgreSQL killed -9 half-way and started again on its data."""
    server = PostgresServer().start()

    def fault() -> None:
        server.kill()
        server.start()

    try:
        with SlackDouble(rate_limit=False) as slack:
            return run("postgresql-restart", server.url, fault, slack=slack, **options)
    finally:
        server.remove()


RUNS: dict[str, Callable[..., Outcome]] = {
    "redis-restart-empty": redis_restart_empty,
    "sentinel-wait": lambda lag, **o: sentinel("1", **o),
    "sentinel-nowait": lambda lag, **o: sentinel("0", **o),
    "sentinel-wait-lag": lambda lag, **o: sentinel("1", lag, **o),
    "sentinel-nowait-lag": lambda lag, **o: sentinel("0", lag, **o),
    "sentinel-auto-lag": lambda lag, **o: sentinel("auto", lag, **o),
    "sentinel-wait-lag-outage": lambda lag, **o: sentinel("1", lag, SLACK_OUTAGE, **o),
    "sentinel-nowait-lag-outage": lambda lag, **o: sentinel("0", lag, SLACK_OUTAGE, **o),
    "postgresql-restart": postgresql_restart,
}


@contextlib.contextmanager
def _timer(label: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"  ({label}: {time.monotonic() - started:.0f} s wall)", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", default=",".join(RUNS), help=f"comma-separated, of: {', '.join(RUNS)}"
    )
    parser.add_argument("--alerts", type=int, default=ALERTS)
    parser.add_argument("--rate", type=float, default=RATE, help="notifications a second")
    parser.add_argument("--lag", type=float, default=DEFAULT_LAG, help="seconds (the -lag runs)")
    args = parser.parse_args()
    names = [name for name in args.runs.split(",") if name]
    unknown = [name for name in names if name not in RUNS]
    if unknown:
        parser.error(f"unknown run(s): {', '.join(unknown)}")
    print(
        f"{args.alerts} alerts at {args.rate:g}/s through two threaders, fault after "
        f"{args.alerts // 2}; lag runs: replication {args.lag * 1000:.0f} ms behind"
    )
    print(TABLE_HEADER)
    ok = True
    for name in names:
        options: dict[str, Any] = {"count": args.alerts, "rate": args.rate}
        if name.startswith("sentinel"):
            options["lag"] = args.lag
        with _timer(name):
            outcome = RUNS[name](**options)
        print(describe(outcome), flush=True)
        if name != "redis-restart-empty":
            ok &= not outcome.never_acknowledged and not outcome.outbox_left
        if "nowait" not in name and name != "redis-restart-empty":
            ok &= not outcome.lost
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
