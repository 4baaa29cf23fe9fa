"""``lumenctl report --prometheus``: generated probe runs backfilled into a real ``prometheus``
(``promtool tsdb create-blocks-from openmetrics``), then the report from a range query compared
with the same figures computed from the runs with ``statistics`` (tests/report/expected.py).

The runs are 15 s apart on the step grid, so a 15 s step sees each sample once. Failed runs keep
every gauge here (``failed_fields``): a backfilled block has no staleness markers, so a missing
sample would read as the previous one for 5 minutes."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lumen_alerting.cli.lumenctl import main as lumenctl
from lumen_alerting.report.prometheus import POINTS_PER_QUERY
from tests.report.expected import assert_probe_report, expected_probe
from tests.report.generated import (
    COLUMNS,
    Run,
    csv_rows,
    gateway_runs,
    openmetrics,
    rfc3339,
)
from tests.support.polling import eventually, free_port

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
STEP = 15
RUNS = 2_000
SELECTOR = '{job="lumen-exporter"}'
# A probe whose exporter pod was replaced (a config change): the runs before RESTART come from
# one instance, the runs after it from another; the run at RESTART is the scrape that found the
# old pod gone.
ROLLED_SELECTOR = '{job="lumen-rolled"}'
ROLLED_RUNS = 600
RESTART = 300
OLD_POD = 'job="lumen-rolled",instance="10.0.0.1:8080",pod="lumen-exporter-6f9c-a"'
NEW_POD = 'job="lumen-rolled",instance="10.0.0.2:8080",pod="lumen-exporter-6f9c-b"'

pytestmark = [
    pytest.mark.skipif(
        PROMETHEUS is None or PROMTOOL is None,
        reason="prometheus/promtool not on PATH (make setup)",
    ),
    pytest.mark.timeout(600),
]


@dataclass
class Backfilled:
    url: str
    runs: list[Run]
    directory: Path
    rolled: list[Run]  # the rolled-api probe's runs, from both pods (RESTART's run is missing)

    def rows(self, first: int, last: int, runs: list[Run] | None = None) -> list[dict[str, str]]:
        """Runs first..last (inclusive) as CSV rows, the shape tests/report/expected.py reads."""
        chosen = (self.runs if runs is None else runs)[first : last + 1]
        return [dict(zip(COLUMNS, row, strict=True)) for row in csv_rows(chosen)]

    def report(self, *args: str) -> tuple[int, dict[str, Any] | None]:
        output = self.directory / "report.json"
        output.unlink(missing_ok=True)
        code = lumenctl(["report", "--prometheus", self.url, *args, "--output", str(output)])
        return code, json.loads(output.read_text()) if code == 0 else None

    def report_range(
        self, start: str, end: str, *more: str, step: str = f"{STEP}s", selector: str = SELECTOR
    ) -> tuple[int, dict[str, Any] | None]:
        """The report of ``selector`` from ``start`` to ``end``; ``more`` options come last, so
        a repeated one wins (argparse keeps the last value)."""
        return self.report(
            "--start", start, "--end", end, "--step", step, "--selector", selector, *more
        )


def merged_openmetrics(*texts: str) -> str:
    """OpenMetrics texts as one: each family's samples together (a family is declared once)."""
    families: dict[str, list[str]] = {}
    for text in texts:
        samples: list[str] = []
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                samples = families.setdefault(line, [])
            elif line != "# EOF":
                samples.append(line)
    return (
        "".join(
            f"{kind}\n" + "".join(f"{s}\n" for s in samples) for kind, samples in families.items()
        )
        + "# EOF\n"
    )


def stale(text: str, at: float) -> str:
    """A sample ``NaN`` at ``at`` for every series of ``text``: as Prometheus' staleness marker
    does when a target disappears, it ends the series for queries (the report skips NaN; without
    it a query would repeat the last sample for 5 minutes)."""
    series = {line.rsplit(" ", 2)[0] for line in text.splitlines() if not line.startswith("#")}
    lines = text.removesuffix("# EOF\n").splitlines()
    for name in sorted(series):
        family = name.split("{")[0].removesuffix("_total")
        index = next(i for i, line in enumerate(lines) if line.startswith(f"# TYPE {family} "))
        end = next(
            (i for i in range(index + 1, len(lines)) if lines[i].startswith("#")), len(lines)
        )
        lines.insert(end, f"{name} NaN {at:.3f}")
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    directory = tmp_path_factory.mktemp("report-prometheus")
    # Two days back on a 15 s grid: inside the retention, and whole hours for the 2 h blocks.
    start = (int(time.time()) // 3600 - 48) * 3600
    runs = gateway_runs(
        RUNS,
        seed=31,
        interval=STEP,
        start=start,
        jitter=False,
        empty_cells=False,
        failed_fields=True,
    ).runs
    rolled = gateway_runs(
        ROLLED_RUNS,
        seed=32,
        probe="rolled-api",
        interval=STEP,
        start=start,
        jitter=False,
        empty_cells=False,
        failed_fields=True,
    ).runs
    old_pod = stale(openmetrics(rolled[:RESTART], OLD_POD), rolled[RESTART].timestamp)
    new_pod = openmetrics(rolled[RESTART + 1 :], NEW_POD)
    text = merged_openmetrics(openmetrics(runs), old_pod, new_pod)
    # The same probe from another job: a report must be told which one (--selector).
    family = "# TYPE lumen_ion_confidence gauge\n"
    text = text.replace(
        family,
        family + f'lumen_ion_confidence{{job="other",probe="ion-api"}} 0.5 {start + 300}\n',
    )
    (directory / "metrics.om").write_text(text, encoding="utf-8")
    assert PROMTOOL is not None and PROMETHEUS is not None
    subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "metrics.om", "data"],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (directory / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    with (directory / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                "--storage.tsdb.retention.time=30d",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (directory / "prometheus.log").read_text()
        try:
            return httpx.get(url + "/-/ready", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        eventually(ready, timeout=120, what="prometheus ready")
        yield Backfilled(url, runs, directory, rolled[:RESTART] + rolled[RESTART + 1 :])
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def test_the_report_from_prometheus_matches_statistics(prometheus):
    runs = prometheus.runs
    first, last = (
        10,
        RUNS - 1,
    )  # start after the first runs: the persona counters exist before
    code, document = prometheus.report_range(
        rfc3339(runs[first].timestamp), str(runs[last].timestamp)
    )
    assert code == 0 and document is not None
    assert document["sources"] == [prometheus.url]
    assert list(document["probes"]) == ["ion-api"]
    # The persona distribution is the counters' increase over the range: the runs after the
    # first step (the counter's value at the first step is where the range starts from).
    expected = expected_probe(
        prometheus.rows(first, last), persona_rows=prometheus.rows(first + 1, last)
    )
    assert_probe_report(document["probes"]["ion-api"], expected)
    health = document["probes"]["ion-api"]["health"]
    assert health["downtime"] and 0 < health["mock_mode_percent"] < 100


def test_a_range_of_more_points_than_one_query_is_asked_in_chunks(prometheus):
    runs = prometheus.runs
    first, last = 10, RUNS - 1
    # 1 s steps: each run's sample is seen at 15 steps (the last one too: the range ends 14 s
    # after it), so the mean, median, extremes and personas are the 15 s report's.
    end = runs[last].timestamp + STEP - 1
    assert (end - runs[first].timestamp) > 2 * POINTS_PER_QUERY
    code, fine = prometheus.report_range(str(runs[first].timestamp), str(end), step="1")
    assert code == 0 and fine is not None
    ion = fine["probes"]["ion-api"]
    assert ion["summary"]["records"] == (last - first + 1) * STEP
    expected = expected_probe(
        prometheus.rows(first, last), persona_rows=prometheus.rows(first + 1, last)
    )
    for name, figures in expected["statistics"].items():
        got = ion["statistics"][name]
        assert got["count"] == figures["count"] * STEP
        for key in ("min", "max", "mean", "median"):
            assert got[key] == pytest.approx(figures[key], rel=1e-9, abs=1e-9), (
                name,
                key,
            )
    assert {s["value"]: s["count"] for s in ion["personas"]["values"]} == {
        value: count for value, (count, _) in expected["personas"].items()
    }
    assert ion["health"]["uptime_percent"] == pytest.approx(expected["health"]["uptime_percent"])


def test_two_series_for_one_field_need_a_selector(prometheus, capsys):
    start = prometheus.runs[0].timestamp
    code, _ = prometheus.report("--start", str(start), "--end", str(start + 3600), "--step", "15s")
    assert code == 1
    err = capsys.readouterr().err
    # The other job's one sample is seen at the steps of the 5 minutes after it.
    assert err.startswith(
        f"two series of lumen_ion_confidence{{probe='ion-api'}} at {rfc3339(start + 300)}: "
    ), err
    assert (
        '{job="lumen-exporter"} and {job="other"}' in err
        or '{job="other"} and {job="lumen-exporter"}' in err
    )
    assert err.endswith("narrow the query with --selector\n") and err.count("\n") == 1


def test_series_of_two_pods_one_after_the_other_are_one_probe(prometheus):
    """An exporter pod replaced in the range (new instance and pod labels): its series and the
    new pod's never share a step, so they make one probe's runs; the persona counters of both
    pods add up (the new pod's start from 0)."""
    runs = prometheus.rolled
    first, last = 10, len(runs) - 1
    code, document = prometheus.report_range(
        str(runs[first].timestamp), str(runs[last].timestamp), selector=ROLLED_SELECTOR
    )
    assert code == 0 and document is not None
    assert list(document["probes"]) == ["rolled-api"]
    rows = prometheus.rows(first, last, runs)
    expected = expected_probe(rows, persona_rows=rows[1:])
    assert_probe_report(document["probes"]["rolled-api"], expected)
    assert document["probes"]["rolled-api"]["summary"]["records"] == len(rows)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--selector", '{job=~"("}'], "Prometheus refused the query (400): "),
        (
            ["--selector", 'job="x"'],
            "--selector 'job=\"x\"': give label matchers in braces",
        ),
        (["--step", "1ms"], "too many points: "),
        (["--selector", '{job="nobody"}'], "no probe runs (lumen_probe_success) for"),
        (["--end", "0"], "is not after --start"),
    ],
)
def test_errors_from_a_running_prometheus(prometheus, capsys, args, complaint):
    start = prometheus.runs[0].timestamp
    # A repeated option's last value wins (argparse): args override these.
    code, _ = prometheus.report_range(str(start), str(start + 3 * 86400), *args, step="15s")
    assert code == 1
    err = capsys.readouterr().err
    assert complaint in err and err.count("\n") == 1, err


def test_an_unreachable_prometheus(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    output = tmp_path / "r.json"
    code = lumenctl(
        [
            "report",
            "--prometheus",
            url,
            "--start",
            "0",
            "--end",
            "60",
            "--output",
            str(output),
        ]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith(f"cannot reach Prometheus at {url}: ")
    assert not output.exists()


def test_a_url_that_is_not_prometheus(tmp_path, capsys, prometheus):
    output = tmp_path / "r.json"
    code = lumenctl(
        [
            "report",
            "--prometheus",
            prometheus.url + "/graph",
            "--start",
            "0",
            "--end",
            "60",
            "--output",
            str(output),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "without a JSON body" in err or "refused" in err, err
    assert not output.exists()
