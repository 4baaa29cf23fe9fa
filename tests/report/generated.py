"""Generated probe runs for the report's tests: seed 001's gateway probe, written as the
exporter's CSV log (or as OpenMetrics for Prometheus' backfill).

Seeded, so every run of the tests sees the same data. Besides normal noise the data has what the
report must find: injected spikes (anomalies), runs of failures (downtime), mock-mode stretches,
several personas (one of them HTML), and empty cells.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

GAUGES = (
    "lumen_creative_band",
    "lumen_entropy_rate",
    "lumen_gateway_status",
    "lumen_ion_confidence",
    "lumen_ion_health",
    "lumen_ion_mock_mode",
    "lumen_ion_response_time_ms",
    "lumen_phase_diff",
    "lumen_risk_band",
)
PERSONA = "lumen_ion_persona"
COLUMNS = (
    "timestamp",
    "probe",
    "success",
    "http_status",
    "duration_seconds",
    *GAUGES,
    PERSONA,
    "error",
)
# One persona is markup: the HTML report must show it as text.
PERSONAS = (
    ("Nana", 0.55),
    ("Lumi", 0.25),
    ("Ion", 0.15),
    ("<script>alert('x')</script>", 0.05),
)
START = datetime(2026, 11, 30, 0, 0, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Run:
    timestamp: float
    probe: str
    success: bool
    http_status: int | None
    duration_seconds: float
    gauges: dict[str, float]  # only the gauges the run had
    persona: str | None
    error: str = ""


@dataclass(frozen=True)
class Generated:
    runs: list[Run]
    downtime_runs: list[tuple[int, int]]  # (index of the first failed run, failed runs), per probe
    spikes: int  # response time spikes injected


def rfc3339(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def gateway_runs(
    count: int,
    *,
    seed: int = 1,
    probe: str = "ion-api",
    interval: float = 15.0,
    start: float = START,
    jitter: bool = True,
    empty_cells: bool = True,
    failed_fields: bool = False,
) -> Generated:
    """``count`` runs of ``probe``. ``failed_fields``: failed runs still have every gauge and an
    HTTP status (for Prometheus' backfill, where a missing sample is not a gap: a query would
    see the previous one for 5 minutes)."""
    rng = random.Random(seed)
    failed = [False] * count
    downtime: list[tuple[int, int]] = []
    position = 200
    while position < count - 50:  # runs of 1..40 failures, some hundreds of runs apart
        length = rng.randint(1, 40)
        downtime.append((position, length))
        for i in range(position, position + length):
            failed[i] = True
        position += length + rng.randint(150, 900)
    mock = [False] * count
    for block in range(count // 1000):  # a stretch of mock mode in every thousand runs
        first = block * 1000 + rng.randint(0, 900)
        for i in range(first, min(count, first + rng.randint(20, 90))):
            mock[i] = True
    spikes = set(rng.sample(range(count), count // 500))
    names = [name for name, _ in PERSONAS]
    weights = [weight for _, weight in PERSONAS]
    runs: list[Run] = []
    for i in range(count):
        timestamp = start + i * interval + (rng.randint(0, 999) / 1000 if jitter else 0.0)
        timestamp = round(timestamp, 3)
        if failed[i] and not failed_fields:
            runs.append(
                Run(
                    timestamp,
                    probe,
                    False,
                    rng.choice((500, 503, None)),
                    round(rng.uniform(0.5, 5.0), 5),
                    {"lumen_ion_health": 0.0},
                    None,
                    "HTTP 500" if rng.random() < 0.5 else "timed out",
                )
            )
            continue
        response_ms = rng.gauss(243.0, 18.0) * (4.0 if i in spikes else 1.0)
        if failed[i]:  # failed_fields: a failed run that still read its fields, slowly
            response_ms *= 10
        gauges = {
            "lumen_creative_band": round(rng.gauss(0.42, 0.09), 4),
            "lumen_entropy_rate": round(rng.gauss(0.24, 0.03), 4),
            "lumen_gateway_status": float(rng.choice((1, 2, 2, 2))),
            "lumen_ion_confidence": round(min(1.0, max(0.0, rng.gauss(0.87, 0.05))), 4),
            "lumen_ion_health": 0.0 if failed[i] else 1.0,
            "lumen_ion_mock_mode": 1.0 if mock[i] else 0.0,
            "lumen_ion_response_time_ms": round(response_ms, 2),
            "lumen_phase_diff": round(rng.uniform(0.0, 0.83), 4),
            "lumen_risk_band": round(abs(rng.gauss(0.12, 0.05)), 4),
        }
        if empty_cells:
            for name in ("lumen_phase_diff", "lumen_risk_band", "lumen_gateway_status"):
                if rng.random() < 0.01:
                    del gauges[name]
        persona: str | None = rng.choices(names, weights)[0]
        if (empty_cells and rng.random() < 0.01) or failed[i]:
            persona = None  # a failed run counts no persona
        status = 503 if failed[i] else 200
        duration = round(response_ms / 1000, 5)
        runs.append(Run(timestamp, probe, not failed[i], status, duration, gauges, persona))
    return Generated(runs, downtime, len(spikes))


def csv_rows(runs: list[Run]) -> list[list[str]]:
    """The runs as the exporter's CSV cells (columns ``COLUMNS``)."""
    return [
        [
            rfc3339(run.timestamp),
            run.probe,
            "1" if run.success else "0",
            "" if run.http_status is None else str(run.http_status),
            repr(run.duration_seconds),
            *(repr(run.gauges[g]) if g in run.gauges else "" for g in GAUGES),
            run.persona or "",
            run.error,
        ]
        for run in runs
    ]


def write_csv(path: Path, runs: list[Run]) -> None:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(csv_rows(runs))


def openmetrics(runs: list[Run], labels: str = 'job="lumen-exporter"') -> str:
    """The runs as the exporter's series in OpenMetrics text, for ``promtool tsdb
    create-blocks-from openmetrics``: the standard probe series, the gauges and the persona
    counter (a value's series appears on its first sighting, as the exporter's does)."""
    families: dict[str, list[str]] = {}

    def sample(family: str, name: str, run: Run, value: float, extra: str = "") -> None:
        families.setdefault(family, []).append(
            f'{name}{{{labels},probe="{run.probe}"{extra}}} {value!r} {run.timestamp:.3f}'
        )

    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        sample(
            "lumen_probe_success",
            "lumen_probe_success",
            run,
            1.0 if run.success else 0.0,
        )
        sample(
            "lumen_probe_duration_seconds",
            "lumen_probe_duration_seconds",
            run,
            run.duration_seconds,
        )
        if run.http_status is not None:
            sample(
                "lumen_probe_http_status",
                "lumen_probe_http_status",
                run,
                float(run.http_status),
            )
        for name, value in run.gauges.items():
            sample(name, name, run, value)
        if run.persona is not None:
            counts[run.probe, run.persona] = counts.get((run.probe, run.persona), 0) + 1
        for (probe, persona), count in counts.items():
            if probe == run.probe:
                escaped = persona.replace("\\", "\\\\").replace('"', '\\"')
                sample(
                    PERSONA,
                    PERSONA + "_total",
                    run,
                    float(count),
                    f',value="{escaped}"',
                )
    lines: list[str] = []
    for family, samples in families.items():
        kind = "counter" if family == PERSONA else "gauge"
        lines.append(f"# TYPE {family} {kind}")
        lines.extend(samples)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"
