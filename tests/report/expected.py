"""The report's figures computed independently of the code under test: from CSV cells, with
Python's ``statistics`` module (exact arithmetic for mean and stdev) and ``itertools``.

Definitions as docs/lumenctl.md states them: the sample standard deviation, percentiles by
linear interpolation (``statistics.quantiles(method="inclusive")``), anomalies ``|z| > t``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime
from itertools import groupby
from typing import Any

import pytest

# Float figures agree to 1e-9 (numpy sums in a different order than exact arithmetic).
REL = ABS = 1e-9
NOT_STATISTICS = {
    "timestamp",
    "probe",
    "success",
    "http_status",
    "error",
    "lumen_ion_persona",
}


def seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def expected_probe(
    rows: list[dict[str, str]],
    z_threshold: float = 2.0,
    persona_rows: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Every figure for one probe's rows (in time order), in the JSON report's shape.
    ``persona_rows``: the rows the persona distribution covers, when not all of them."""
    fields = sorted(name for name in rows[0] if name not in NOT_STATISTICS)
    stats: dict[str, dict[str, Any]] = {}
    anomalies: set[tuple[str, str, float]] = set()
    for name in fields:
        values = [float(row[name]) for row in rows if row[name] != ""]
        if not values:
            continue
        mean = statistics.mean(values)
        stdev = statistics.stdev(values)
        percentiles = statistics.quantiles(values, n=100, method="inclusive")
        stats[name] = {
            "count": len(values),
            "min": min(values),
            "max": max(values),
            "mean": mean,
            "median": statistics.median(values),
            "stdev": stdev,
            "p95": percentiles[94],
            "p99": percentiles[98],
        }
        if stdev:
            anomalies |= {
                (name, row["timestamp"], float(row[name]))
                for row in rows
                if row[name] != "" and abs((float(row[name]) - mean) / stdev) > z_threshold
            }
    downtime = []
    index = 0
    for up, group in groupby(rows, key=lambda row: row["success"] == "1"):
        run = list(group)
        index += len(run)
        if not up:
            downtime.append(
                {
                    "start": run[0]["timestamp"],
                    "end": run[-1]["timestamp"],
                    "duration_seconds": seconds(run[-1]["timestamp"])
                    - seconds(run[0]["timestamp"]),
                    "records": len(run),
                    "recovered_at": rows[index]["timestamp"] if index < len(rows) else None,
                }
            )
    mock = [float(row["lumen_ion_mock_mode"]) for row in rows if row["lumen_ion_mock_mode"] != ""]
    personas = Counter(
        row["lumen_ion_persona"] for row in (persona_rows or rows) if row["lumen_ion_persona"]
    )
    successes = sum(row["success"] == "1" for row in rows)
    return {
        "summary": {
            "records": len(rows),
            "first": rows[0]["timestamp"],
            "last": rows[-1]["timestamp"],
            "span_seconds": seconds(rows[-1]["timestamp"]) - seconds(rows[0]["timestamp"]),
        },
        "statistics": stats,
        "anomalies": anomalies,
        "health": {
            "successes": successes,
            "failures": len(rows) - successes,
            "uptime_percent": 100 * successes / len(rows),
            "mock_records": mock.count(1.0),
            "mock_known": len(mock),
            "mock_mode_percent": 100 * mock.count(1.0) / len(mock),
            "downtime": downtime,
        },
        "personas": {
            value: (count, 100 * count / sum(personas.values()))
            for value, count in personas.items()
        },
    }


def assert_probe_report(report: dict[str, Any], expected: dict[str, Any]) -> None:
    """The JSON report of one probe holds exactly the expected figures."""
    summary = report["summary"]
    assert summary["records"] == expected["summary"]["records"]
    assert (summary["first"], summary["last"]) == (
        expected["summary"]["first"],
        expected["summary"]["last"],
    )
    assert summary["span_seconds"] == pytest.approx(expected["summary"]["span_seconds"], abs=1e-3)

    assert set(report["statistics"]) == set(expected["statistics"])
    for name, figures in expected["statistics"].items():
        got = report["statistics"][name]
        assert got["count"] == figures["count"], name
        for key in ("min", "max", "mean", "median", "stdev", "p95", "p99"):
            assert got[key] == pytest.approx(figures[key], rel=REL, abs=ABS), (
                name,
                key,
            )

    got_anomalies = {(a["field"], a["timestamp"], a["value"]) for a in report["anomalies"]}
    assert got_anomalies == expected["anomalies"]
    for anomaly in report["anomalies"]:
        figures = expected["statistics"][anomaly["field"]]
        z = (anomaly["value"] - figures["mean"]) / figures["stdev"]
        assert anomaly["z_score"] == pytest.approx(z, rel=REL, abs=ABS)

    health = report["health"]
    for key in ("successes", "failures", "mock_records", "mock_known"):
        assert health[key] == expected["health"][key], key
    for key in ("uptime_percent", "mock_mode_percent"):
        assert health[key] == pytest.approx(expected["health"][key], rel=REL, abs=ABS), key
    assert len(health["downtime"]) == len(expected["health"]["downtime"])
    for got, want in zip(health["downtime"], expected["health"]["downtime"], strict=True):
        assert {k: v for k, v in got.items() if k != "duration_seconds"} == {
            k: v for k, v in want.items() if k != "duration_seconds"
        }
        assert got["duration_seconds"] == pytest.approx(want["duration_seconds"], abs=1e-3)

    personas = {
        share["value"]: (share["count"], share["percent"]) for share in report["personas"]["values"]
    }
    assert set(personas) == set(expected["personas"])
    for value, (count, percent) in expected["personas"].items():
        assert personas[value][0] == count, value
        assert personas[value][1] == pytest.approx(percent, rel=REL, abs=ABS), value
    counts = [share["count"] for share in report["personas"]["values"]]
    assert counts == sorted(counts, reverse=True)  # most frequent first
