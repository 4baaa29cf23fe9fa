"""The exporter's ``/metrics`` body without HTTP: formatting every probe's series on each scrape
(the old way, ``tests/exporter/reference_metrics.py``) against joining the text kept since each
probe's last result (``ExporterMetrics.exposition``), in one process.

Run: ``.venv/bin/python bench/exporter_exposition.py [--probes N] [--rounds N]``.

The probes are ``bench/exporter.py``'s gateway probes, each with one successful result. Timed:
``--rounds`` new scrapes, each followed by a record (re-rendering one probe), then as many old
scrapes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prometheus_client import generate_latest  # noqa: E402

from bench.exporter import FIELDS  # noqa: E402
from lumen_alerting.exporter.config import ExporterConfig  # noqa: E402
from lumen_alerting.exporter.metrics import ExporterMetrics, ProbeResult  # noqa: E402
from tests.exporter.reference_metrics import ReferenceMetrics  # noqa: E402


def config(probes: int) -> ExporterConfig:
    return ExporterConfig.model_validate(
        {
            "probes": [
                {
                    "name": f"gateway-{number:03d}",
                    "url": "http://gateway/",
                    "health_metric": "lumen_ion_health",
                    "response_time_metric": "lumen_ion_response_time_ms",
                    "fields": FIELDS,
                    "value_maps": {"lumen_gateway_status": {"locked": 1, "unlocked": 2}},
                    "count_values": {"lumen_ion_persona": "$.persona"},
                }
                for number in range(probes)
            ]
        }
    )


def timed(action: Callable[[], object], into: list[float]) -> None:
    started = time.perf_counter()
    action()
    into.append(time.perf_counter() - started)


def summary(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[max(0, round(0.99 * len(ordered)) - 1)]
    return f"p50 {p50 * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=100, help="gateway probes (default 100)")
    parser.add_argument("--rounds", type=int, default=400, help="timed rounds (default 400)")
    args = parser.parse_args()
    probes = config(args.probes)
    new, old = ExporterMetrics(probes), ReferenceMetrics(probes)
    values = dict.fromkeys(FIELDS, 0.5)
    result = ProbeResult(True, 0.01, time.time(), 200, values, {"lumen_ion_persona": "Nana"})
    names = [probe.name for probe in probes.probes]
    for name in names:
        new.record(name, result)
        old.record(name, result)
    body = new.exposition()
    lines = body.count(b"\n")
    print(f"load average {os.getloadavg()[0]:.2f}; {args.probes} probes: ", end="")
    print(f"{lines} lines, {len(body)} bytes")
    scrapes_old: list[float] = []
    scrapes_new: list[float] = []
    records: list[float] = []
    # Not turn about: the old way's garbage (~2,000 objects a scrape) would be collected
    # during the new way's turns, which the exporter no longer has.
    for number in range(args.rounds):
        timed(new.exposition, scrapes_new)
        timed(lambda: new.record(names[number % len(names)], result), records)  # noqa: B023
    for _ in range(args.rounds):
        timed(lambda: generate_latest(old.registry), scrapes_old)
    print(f"old scrape, all probes formatted:  {summary(scrapes_old)}")
    print(f"new scrape, kept text joined:      {summary(scrapes_new)}")
    print(f"new record, one probe re-rendered: {summary(records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
