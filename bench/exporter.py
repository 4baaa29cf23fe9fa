"""Exporter scrape latency against a floor, with hung targets, and probe schedule keeping.

Run: ``make bench-exporter`` (or ``.venv/bin/python bench/exporter.py [--quick]``).

The real ``lumen-exporter`` process (the console script of the venv) probes ``--probes`` local
targets (default 100), each a gateway-like probe of seed 001 (health and response time, seven
JSONPath fields, a value map for the gateway status, the persona counted by value), every
``--interval`` with a ``--timeout``. The targets run in their own process
(``bench/exporter_targets.py``): most answer at once, ``--hung`` of them (default 10) never
answer, so each of their runs holds one of the ``--max-concurrent-probes`` slots until its
timeout. The targets record when each request arrives.

Once every probe has run, the exporter is scraped once and its series are rebuilt in a bare
``prometheus_client`` registry served the same way (aiohttp, ``generate_latest``) in its own
process: the floor (``bench/exporter_floor.py``). This process then scrapes both over
``--duration`` seconds, ``--scrapes`` times each, a pair at a time in alternating order, so both
see the same machine load, and times each scrape from request to last byte.

Targets (issue 10): exporter scrape p99 under 20 ms and at most 2x the floor's p99; every
probe's start within 1 s of its schedule: its k-th start against first start + k * interval, as
the target saw it (a run that waits for a slot is late by that wait).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.exporter.exporter_run import ExporterProcess  # noqa: E402
from tests.support.polling import free_port  # noqa: E402

SCRAPE_P99_LIMIT_MS = 20.0
FLOOR_RATIO_LIMIT = 2.0
LATENESS_LIMIT_S = 1.0

# Seed 001's gateway probe: the nine gauges (health and response time are the probe's own).
FIELDS = {
    "lumen_ion_mock_mode": "$.mock",
    "lumen_ion_confidence": "$.confidence",
    "lumen_gateway_status": "$.gateway.status",
    "lumen_phase_diff": "$.resonance.phase_diff",
    "lumen_entropy_rate": "$.resonance.entropy_rate",
    "lumen_creative_band": "$.resonance.creative_band",
    "lumen_risk_band": "$.resonance.risk_band",
}


@dataclass(frozen=True)
class Options:
    probes: int
    hung: int
    interval: float
    timeout: float
    duration: float
    scrapes: int
    max_concurrent: int


def hung_probes(probes: int, hung: int) -> set[int]:
    """Which probes (by index) get a hung target: spread evenly over the list."""
    return {round(n * probes / hung) for n in range(hung)} if hung else set()


def exporter_config(options: Options, targets_url: str) -> dict[str, Any]:
    hung = hung_probes(options.probes, options.hung)
    probes = []
    for number in range(options.probes):
        name = f"gateway-{number:03d}"
        probes.append(
            {
                "name": name,
                "url": f"{targets_url}/{'hung' if number in hung else 'ok'}/{name}",
                "interval": f"{round(options.interval * 1000)}ms",
                "timeout": f"{round(options.timeout * 1000)}ms",
                "health_metric": "lumen_ion_health",
                "response_time_metric": "lumen_ion_response_time_ms",
                "fields": FIELDS,
                "value_maps": {"lumen_gateway_status": {"down": 0, "locked": 1, "unlocked": 2}},
                "count_values": {"lumen_ion_persona": "$.persona"},
            }
        )
    return {"probes": probes, "pipeline": {"enabled": False}}


def start_server(script: str, *arguments: str) -> tuple[subprocess.Popen[bytes], str]:
    """``bench/<script> PORT ARGUMENTS...`` in its own process, once it accepts connections."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / script), str(port), *arguments]
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{script} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{script} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def samples(scrape: str) -> list[str]:
    return [line for line in scrape.splitlines() if line and not line.startswith("#")]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scrape_both(
    exporter_url: str, floor_url: str, count: int, duration: float
) -> dict[str, list[float]]:
    """Scrape each server ``count`` times over ``duration`` seconds, a pair per tick, the order
    alternating; every scrape's seconds from request to last byte, by server."""
    urls = {"exporter": f"{exporter_url}/metrics", "floor": f"{floor_url}/metrics"}
    latencies: dict[str, list[float]] = {name: [] for name in urls}
    pace = duration / count
    # Keep-alive, as Prometheus scrapes; one connection to each.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2)) as session:

        async def scrape(name: str) -> None:
            started = time.perf_counter()
            async with session.get(urls[name]) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"{urls[name]} answered {response.status}")
            latencies[name].append(time.perf_counter() - started)

        for name in urls:  # warm-up: connections open, first-request costs paid
            for _ in range(20):
                await scrape(name)
            latencies[name].clear()
        begun = time.monotonic()
        for tick in range(count):
            order = ("exporter", "floor") if tick % 2 == 0 else ("floor", "exporter")
            for name in order:
                await scrape(name)
            await asyncio.sleep(max(0.0, begun + (tick + 1) * pace - time.monotonic()))
    return latencies


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    return ordered[max(0, round(fraction * len(ordered)) - 1)]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50": percentile(ordered, 0.5) * 1000,
        "p90": percentile(ordered, 0.9) * 1000,
        "p99": percentile(ordered, 0.99) * 1000,
        "max": ordered[-1] * 1000,
    }


@dataclass(frozen=True)
class Schedule:
    """How well the probes kept their grids: lateness of every start after each probe's first
    (negative: early), and the slots no run took."""

    starts: int
    lateness: list[float]
    skipped_slots: int

    @property
    def late(self) -> int:
        return sum(1 for value in self.lateness if abs(value) > LATENESS_LIMIT_S)


def schedule(arrivals: dict[str, list[float]], interval: float) -> Schedule:
    """Each probe's k-th start against its grid, first start + k * interval."""
    lateness: list[float] = []
    skipped = starts = 0
    for times in arrivals.values():
        starts += len(times)
        first = times[0]
        previous_slot = 0
        for started in times[1:]:
            slot = round((started - first) / interval)
            lateness.append(started - (first + slot * interval))
            skipped += max(0, slot - previous_slot - 1)
            previous_slot = slot
    return Schedule(starts, sorted(lateness), skipped)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{os.cpu_count()} cores of {model}, Python {platform.python_version()}"


def run(options: Options) -> bool:
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    directory = Path(tempfile.mkdtemp(prefix="bench-exporter-"))
    targets, targets_url = start_server("exporter_targets.py")
    floor: subprocess.Popen[bytes] | None = None
    config = exporter_config(options, targets_url)
    exporter = ExporterProcess(
        config,
        "--max-concurrent-probes",
        str(options.max_concurrent),
        "--log-level",
        "warning",
    )
    # The installed console script, as deployed (the tests run the same main with -m).
    exporter.command = [
        str(Path(sys.executable).with_name("lumen-exporter")),
        *exporter.command[3:],
    ]
    try:
        with exporter:
            assert exporter.process is not None
            # Every probe's first run lies within one interval of the start; its timeout after.
            time.sleep(options.interval + options.timeout + 1)
            scrape = exporter.metrics()
            (directory / "scrape.txt").write_text(scrape)
            floor, floor_url = start_server("exporter_floor.py", str(directory / "scrape.txt"))
            floor_series = len(samples(asyncio.run(fetch(f"{floor_url}/metrics"))))
            cpu_before, wall_before = (
                cpu_seconds(exporter.process.pid),
                time.monotonic(),
            )
            latencies = asyncio.run(
                scrape_both(exporter.url, floor_url, options.scrapes, options.duration)
            )
            cpu = cpu_seconds(exporter.process.pid) - cpu_before
            wall = time.monotonic() - wall_before
            last = exporter.metrics()
            arrivals: dict[str, list[float]] = json.loads(
                asyncio.run(fetch(f"{targets_url}/arrivals"))
            )
    finally:
        if floor is not None:
            stop(floor)
        stop(targets)
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(exporter.dir, ignore_errors=True)
    return report(options, scrape, last, floor_series, latencies, arrivals, cpu / wall)


async def fetch(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


def report(
    options: Options,
    scrape: str,
    last: str,
    floor_series: int,
    latencies: dict[str, list[float]],
    arrivals: dict[str, list[float]],
    exporter_cpu: float,
) -> bool:
    series = len(samples(scrape))
    succeeding = sum(1 for line in samples(last) if line.startswith("lumen_probe_success{"))
    up = sum(
        1
        for line in samples(last)
        if line.startswith("lumen_probe_success{") and line[-3:] == "1.0"
    )
    print(
        f"{options.probes} probes ({options.hung} hung), interval {options.interval:g} s, "
        f"timeout {options.timeout:g} s, --max-concurrent-probes {options.max_concurrent}; "
        f"{options.scrapes} scrapes of each over {options.duration:g} s"
    )
    print(
        f"series per scrape: exporter {series} ({len(scrape)} bytes), floor {floor_series}; "
        f"probes succeeding at the end: {up} of {succeeding}; exporter CPU during the scrapes: "
        f"{exporter_cpu * 100:.1f} % of a core; load average {os.getloadavg()[0]:.2f} at end"
    )
    print(f"{'scrape ms':<10} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}")
    numbers = {name: latency_summary(values) for name, values in latencies.items()}
    for name, summary in numbers.items():
        print(
            f"{name:<10} {summary['p50']:>7.2f} {summary['p90']:>7.2f} "
            f"{summary['p99']:>7.2f} {summary['max']:>7.2f}"
        )
    ratio = numbers["exporter"]["p99"] / numbers["floor"]["p99"]
    print(
        f"exporter p99 / floor p99 = {ratio:.2f}x (target <= {FLOOR_RATIO_LIMIT:g}x); "
        f"exporter p99 {numbers['exporter']['p99']:.2f} ms (target < {SCRAPE_P99_LIMIT_MS:g} ms)"
    )
    kept = schedule(arrivals, options.interval)
    lateness = kept.lateness
    print(
        f"probe starts: {kept.starts} over {len(arrivals)} probes; lateness against each "
        f"probe's grid (s): p50 {percentile(lateness, 0.5):+.4f}, "
        f"p99 {percentile(lateness, 0.99):+.4f}, max {lateness[-1]:+.4f}, "
        f"min {lateness[0]:+.4f}; off by more than {LATENESS_LIMIT_S:g} s: {kept.late}; "
        f"slots skipped: {kept.skipped_slots}"
    )
    missed = []
    if numbers["exporter"]["p99"] >= SCRAPE_P99_LIMIT_MS:
        missed.append("scrape p99 not under 20 ms")
    if ratio > FLOOR_RATIO_LIMIT:
        missed.append("scrape p99 more than 2x the floor's")
    if kept.late or kept.skipped_slots:
        missed.append("probe starts off their schedule by more than 1 s")
    if len(arrivals) != options.probes:
        missed.append(f"only {len(arrivals)} of {options.probes} probes ever started")
    print("targets met" if not missed else f"TARGETS MISSED: {'; '.join(missed)}")
    return not missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=100, help="probe targets (default 100)")
    parser.add_argument("--hung", type=int, default=10, help="of which hung (default 10)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument(
        "--duration", type=float, help="seconds of scraping (default 60; --quick 15)"
    )
    parser.add_argument("--scrapes", type=int, help="scrapes of each (default 1200; --quick 300)")
    parser.add_argument(
        "--max-concurrent-probes",
        type=int,
        default=16,
        help="the exporter's (default 16)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (15 s, 300 scrapes)")
    args = parser.parse_args()
    if not 0 <= args.hung <= args.probes or args.probes < 1:
        parser.error("--hung must be between 0 and --probes, --probes at least 1")
    if not 0 < args.timeout < args.interval:
        parser.error("--timeout must be above 0 and below --interval")
    options = Options(
        probes=args.probes,
        hung=args.hung,
        interval=args.interval,
        timeout=args.timeout,
        duration=args.duration or (15.0 if args.quick else 60.0),
        scrapes=args.scrapes or (300 if args.quick else 1200),
        max_concurrent=args.max_concurrent_probes,
    )
    return 0 if run(options) else 1


if __name__ == "__main__":
    sys.exit(main())
