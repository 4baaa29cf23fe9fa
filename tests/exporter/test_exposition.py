"""The probes' part of ``/metrics`` is kept rendered, probe by probe, and merged family by family
at scrape time. It must say exactly what formatting every probe on each scrape said
(``reference_metrics.py``, the code that did): same families, HELP and TYPE lines, samples and
number and label formatting, each family once with its samples together, never a probe's old
result after a new one. And ``promtool`` must accept it."""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import threading
from typing import Any

import prometheus_client.metrics
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from lumen_alerting.exporter import metrics as metrics_module
from lumen_alerting.exporter.app import make_app
from lumen_alerting.exporter.config import ExporterConfig
from lumen_alerting.exporter.exposition import MergedExposition, render, split_families
from lumen_alerting.exporter.metrics import ExporterMetrics, ProbeResult
from lumen_alerting.exporter.values import FieldProblem
from tests.exporter.reference_metrics import ReferenceMetrics

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not on PATH (make setup)")

GATEWAY = {"down": 0, "locked": 1, "unlocked": 2}
# A persona that needs every escape of a label value: a quote, a backslash, a newline.
ESCAPED = 'a"b\\c\nd'


def rich_config() -> ExporterConfig:
    """Probes sharing gauges (with different JSONPaths, so different HELP texts) and a counter,
    value maps, counted values with a cap of 2, a probe of its own names, one never run."""
    return ExporterConfig.model_validate(
        {
            "probes": [
                {
                    "name": "gateway-a",
                    "url": "http://a/health",
                    "health_metric": "lumen_ion_health",
                    "response_time_metric": "lumen_ion_response_time",
                    "fields": {
                        "lumen_gateway_status": "$.gateway.status",
                        "lumen_phase_diff": "$.resonance.phase_diff",
                    },
                    "value_maps": {"lumen_gateway_status": GATEWAY},
                    "count_values": {"lumen_ion_persona": "$.persona"},
                    "max_distinct_values": 2,
                },
                {
                    "name": "gateway-b",
                    "url": "http://b/health",
                    "health_metric": "lumen_ion_health",
                    "response_time_metric": "lumen_ion_response_time",
                    "fields": {"lumen_gateway_status": "$.status", "lumen_entropy_rate": "$.e"},
                    "value_maps": {"lumen_gateway_status": GATEWAY},
                    "count_values": {"lumen_ion_persona": "$.who", "lumen_ion_mode": "$.mode"},
                },
                {
                    "name": "batch",
                    "url": "http://batch/",
                    "health_metric": "batch_up",
                    "response_time_metric": "batch_response_time",
                    "fields": {"batch_size": "$.size", "batch_ratio": "$.ratio"},
                },
                {"name": "idle", "url": "http://idle/", "health_metric": "lumen_ion_health"},
            ]
        }
    )


class Clock:
    """``time.time()`` for the counters' ``_created``, the same for both paths."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.123

    def time(self) -> float:
        return self.now


Record = tuple[str, ProbeResult, dict[str, FieldProblem]]


def ok(at: float, fields: dict[str, float], counted: dict[str, str] | None = None) -> ProbeResult:
    return ProbeResult(True, 0.24322, at, 200, fields, counted or {})


# Rounds of records; both paths are compared before the first and after each round.
ROUNDS: list[list[Record]] = [
    [
        (
            "gateway-a",
            ok(
                1.5,
                {"lumen_gateway_status": 2.0, "lumen_phase_diff": 0.4},
                {"lumen_ion_persona": "Nana"},
            ),
            {},
        ),
        (
            "gateway-b",
            ok(
                2.0,
                {"lumen_gateway_status": 1.0, "lumen_entropy_rate": 1e-7},
                {"lumen_ion_persona": ESCAPED, "lumen_ion_mode": "나나 mode"},
            ),
            {},
        ),
        ("batch", ProbeResult(False, 2.0, 3.0, None, error="timed out"), {}),
    ],
    [
        # gateway-a loses its status (unmapped), gateway-b fails: no status family at all.
        (
            "gateway-a",
            ok(11.5, {"lumen_phase_diff": -0.0}, {"lumen_ion_persona": "Lua"}),
            {"lumen_gateway_status": FieldProblem.UNMAPPED},
        ),
        # Past the cap of 2: counted as __other__ and as a too_many_values field error.
        ("gateway-a", ok(12.0, {"lumen_phase_diff": 243.22}, {"lumen_ion_persona": "Mira"}), {}),
        ("gateway-b", ProbeResult(False, 0.5, 12.5, 503, error="HTTP 503"), {}),
        (
            "batch",
            ok(13.0, {"batch_size": 1e21, "batch_ratio": math.inf}),
            {},
        ),
    ],
    [
        # gateway-a fails: the status family's HELP now comes from gateway-b's JSONPath.
        ("gateway-a", ProbeResult(False, 0.1, 21.0, 500, error="HTTP 500"), {}),
        (
            "gateway-b",
            ok(
                22.0,
                {"lumen_gateway_status": 0.0},
                {"lumen_ion_persona": ESCAPED, "lumen_ion_mode": "x"},
            ),
            {"lumen_entropy_rate": FieldProblem.MISSING},
        ),
        (
            "batch",
            ok(23.0, {"batch_size": 9007199254740993.0}),
            {"batch_ratio": FieldProblem.NOT_A_NUMBER},
        ),
    ],
]


def family_lines(text: str) -> list[str]:
    """Every line, cut at newlines only (a label value may hold other line breaks)."""
    return text.split("\n")[:-1]


def assert_well_formed(text: str) -> None:
    """Each family's HELP and TYPE once, then all its samples: a sample under another family's
    header would be read as a family of its own, written twice."""
    seen: set[str] = set()
    current = None
    for line in family_lines(text):
        if line.startswith("# HELP "):
            current = line.split(" ")[2]
            assert current not in seen, f"family {current} written twice"
            seen.add(current)
        elif line.startswith("# TYPE "):
            assert line.split(" ")[2] == current, f"{line!r} after the HELP of {current}"
        else:
            name = line.split("{")[0].split(" ")[0]
            assert name == current, f"sample {line!r} under the header of {current}"


def families(text: str) -> dict[str, tuple[str, str, list[tuple[Any, ...]]]]:
    """The parsed families by name: HELP, type and samples (values by repr: NaN equals NaN)."""
    parsed = list(text_string_to_metric_families(text))
    found = {
        family.name: (
            family.documentation,
            family.type,
            sorted(
                (s.name, sorted(s.labels.items()), repr(s.value), s.timestamp)
                for s in family.samples
            ),
        )
        for family in parsed
    }
    assert len(found) == len(parsed), "a family was parsed twice"
    return found


def assert_same_exposition(served: bytes, reference: bytes) -> None:
    text, expected = served.decode(), reference.decode()
    assert_well_formed(text)
    assert families(text) == families(expected)
    # Byte for byte, line by line: the same escaping and number formatting (the order of the
    # samples of a family may differ: a probe's are together, in the configuration's order).
    assert sorted(family_lines(text)) == sorted(family_lines(expected))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(prometheus_client.metrics, "time", clock)
    monkeypatch.setattr(metrics_module, "time", clock)
    return clock


def test_the_kept_exposition_says_what_formatting_every_scrape_said(clock):
    config = rich_config()
    served, reference = ExporterMetrics(config), ReferenceMetrics(config)
    assert_same_exposition(served.exposition(), generate_latest(reference.registry))
    status_helps = []
    for number, records in enumerate(ROUNDS):
        clock.now += 10 * (number + 1)  # field errors first seen in a round get its time
        for probe, result, problems in records:
            served.record(probe, result, problems)
            reference.record(probe, result, problems)
        assert_same_exposition(served.exposition(), generate_latest(reference.registry))
        status_helps.append(
            [
                line
                for line in family_lines(served.exposition().decode())
                if "HELP lumen_gat" in line
            ]
        )
    text = served.exposition().decode()
    # The rounds did reach what they are about (else the comparison proves little).
    assert 'lumen_ion_persona_total{probe="gateway-b",value="a\\"b\\\\c\\nd"} 2.0' in text
    assert 'lumen_ion_persona_total{probe="gateway-a",value="__other__"} 1.0' in text
    assert 'reason="too_many_values"' in text and 'reason="not_a_number"' in text
    assert 'batch_size{probe="batch"} 9.007199254740992e+15' in text
    assert 'lumen_probe_success{probe="gateway-a"} 0.0' in text  # its last run, not an older
    # The HELP of a family the probes describe differently is the first probe's that has it.
    assert [[line.split(" ")[4] for line in helps] for helps in status_helps] == [
        ["$.gateway.status"],
        [],
        ["$.status"],
    ]
    assert 'probe="idle"' in text  # its run counters, at 0


def test_without_created_series_as_prometheus_client_was_told(clock, monkeypatch):
    """``PROMETHEUS_DISABLE_CREATED_SERIES`` turned the run and field-error counters'
    ``_created`` off (they were ``prometheus_client`` Counters); it still does."""
    monkeypatch.setattr(prometheus_client.metrics, "_use_created", False)
    config = rich_config()
    served, reference = ExporterMetrics(config), ReferenceMetrics(config)
    for records in ROUNDS:
        for probe, result, problems in records:
            served.record(probe, result, problems)
            reference.record(probe, result, problems)
    assert_same_exposition(served.exposition(), generate_latest(reference.registry))
    assert b"lumen_probe_runs_created" not in served.exposition()


def test_without_probes_the_families_are_still_declared(clock):
    config = ExporterConfig()
    served, reference = ExporterMetrics(config), ReferenceMetrics(config)
    assert_same_exposition(served.exposition(), generate_latest(reference.registry))
    assert b"# TYPE lumen_probe_success gauge" in served.exposition()


def test_a_scrape_serves_the_probes_then_the_registry_series(clock):
    config = rich_config()
    metrics = ExporterMetrics(config)
    pipeline = Gauge(
        "lumen_pipeline_success", "Pipeline stage.", ["stage"], registry=metrics.registry
    )
    pipeline.labels("build").set(1)
    for probe, result, problems in ROUNDS[0]:
        metrics.record(probe, result, problems)

    async def scrape() -> tuple[int, str | None, bytes]:
        async with TestClient(TestServer(make_app(config, metrics))) as client:
            answer = await client.get("/metrics")
            return answer.status, answer.headers.get("Content-Type"), await answer.read()

    status, content_type, body = asyncio.run(scrape())
    assert (status, content_type) == (200, "text/plain; charset=utf-8")
    assert body == metrics.exposition()
    assert body.endswith(generate_latest(metrics.registry))
    assert_well_formed(body.decode())
    assert 'lumen_pipeline_success{stage="build"} 1.0' in body.decode()


@needs_promtool
def test_promtool_accepts_the_kept_exposition():
    metrics = ExporterMetrics(rich_config())
    for records in ROUNDS:
        for probe, result, problems in records:
            metrics.record(probe, result, problems)
    assert PROMTOOL is not None
    checked = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=metrics.exposition(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")


def test_a_record_for_a_probe_not_configured_is_refused_and_changes_nothing():
    metrics = ExporterMetrics(rich_config())
    before = metrics.exposition()
    with pytest.raises(ValueError, match="no probe named 'elsewhere'"):
        metrics.record("elsewhere", ProbeResult(True, 0.1, 1.0, 200))
    assert metrics.exposition() == before


def test_scrapes_from_another_thread_while_probes_record_stay_whole():
    """Records happen on the event loop, scrapes may come from another thread (tests): each
    scrape sees whole probes and well-formed text, whatever it falls between."""
    config = rich_config()
    metrics = ExporterMetrics(config)
    scrapes: list[bytes] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def scrape() -> None:
        try:
            while len(scrapes) < 300:
                scrapes.append(metrics.exposition())
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=scrape)
    thread.start()
    count = 0
    while not done.is_set():
        for probe, result, problems in ROUNDS[count % len(ROUNDS)]:
            metrics.record(probe, result, problems)
        count += 1
    thread.join(60)
    assert not failures
    for text in {*scrapes}:
        assert_well_formed(text.decode())
        families(text.decode())


def test_one_source_merged_alone_is_generate_latest_itself():
    gauge = GaugeMetricFamily("g", "A gauge.", labels=["probe"])
    gauge.add_metric(["a"], 0.5)
    counter = CounterMetricFamily("c", "A counter\\ with a\nnewline.", labels=["probe"])
    counter.add_metric([ESCAPED], 3, created=12.5)
    source: list[Metric] = [gauge, counter, GaugeMetricFamily("empty", "None.", labels=["p"])]
    merged = MergedExposition(["a"], [])
    merged.update("a", render(source))
    registry = CollectorRegistry()
    registry.register(_Families(source))
    assert merged.text() == generate_latest(registry)
    assert list(render(source)) == ["g", "c_total", "c_created", "empty"]


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def test_text_that_is_not_generate_latest_is_refused():
    with pytest.raises(ValueError, match="HELP line"):
        split_families(b"g 1.0\n")
    with pytest.raises(ValueError, match="appears twice"):
        split_families(b"# HELP g x\n# TYPE g gauge\n# HELP g x\n# TYPE g gauge\n")


def test_the_check_catches_a_family_split_between_probes():
    """What the comparison above is for: the text of probes concatenated probe by probe (a
    family's samples apart) and a family declared twice are both caught."""
    split = (
        '# HELP up Up.\n# TYPE up gauge\nup{probe="a"} 1.0\n'
        '# HELP ms Ms.\n# TYPE ms gauge\nms{probe="a"} 2.0\n'
        'up{probe="b"} 1.0\n'
    )
    with pytest.raises(AssertionError, match="under the header of ms"):
        assert_well_formed(split)
    twice = split.replace(
        'up{probe="b"} 1.0\n', '# HELP up Up.\n# TYPE up gauge\nup{probe="b"} 1.0\n'
    )
    with pytest.raises(AssertionError, match="family up written twice"):
        assert_well_formed(twice)
