"""Probes against real local HTTP servers: healthy, slow, failing with 500, hung past the
timeout, bad JSON, a missing or non-numeric field. The right series come out, nothing stale
stays, failures are counted; the schedule is spread and the number in flight is bounded."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from lumen_alerting.exporter.app import make_app
from lumen_alerting.exporter.body_reader import (
    decode_reading,
    decode_request,
    encode_reading,
    encode_request,
)
from lumen_alerting.exporter.config import ExporterConfig, ProbeConfig
from lumen_alerting.exporter.csv_log import ProbeCsvLog
from lumen_alerting.exporter.metrics import ExporterMetrics, ProbeResult
from lumen_alerting.exporter.probes import (
    INLINE_BODY,
    MAX_BODY,
    MAX_ERROR_TEXT,
    BodyReaders,
    ProbeScheduler,
    _describe,
    first_run_offset,
    next_slot,
)
from lumen_alerting.exporter.values import BodyFields, FieldProblem, FieldReading, read_fields
from tests.exporter.exporter_run import environment
from tests.exporter.series import probe_series, samples
from tests.exporter.targets import Answer, ProbeTargets
from tests.support.polling import eventually
from tests.support.schemas import REPO

pytestmark = pytest.mark.timeout(120)
T = TypeVar("T")

BODY = {"mock": False, "confidence": "0.87", "gateway": {"status": 1}}
FIELDS = {"m_mock": "$.mock", "m_confidence": "$.confidence", "m_status": "$.gateway.status"}


def probe(url: str, **overrides: Any) -> ProbeConfig:
    options: dict[str, Any] = {
        "name": "api",
        "url": url,
        "interval": "1s",
        "timeout": "2s",
        "health_metric": "m_up",
        "response_time_metric": "m_ms",
        "fields": FIELDS,
    }
    return ProbeConfig.model_validate(options | overrides)


def run(
    probes: list[ProbeConfig],
    body: Callable[[ProbeScheduler, ExporterMetrics], Awaitable[T]],
    *,
    max_concurrent: int = 4,
    headers: dict[str, dict[str, str]] | None = None,
) -> tuple[T, ExporterMetrics]:
    """``body(scheduler, metrics)`` with the scheduler's HTTP session open (no timers unless
    it calls ``start()``)."""
    config = ExporterConfig(probes=probes)
    metrics = ExporterMetrics(config)

    async def main() -> T:
        scheduler = ProbeScheduler(config, metrics, max_concurrent=max_concurrent, headers=headers)
        await scheduler.start_session()
        try:
            return await body(scheduler, metrics)
        finally:
            await scheduler.stop()

    return asyncio.run(main()), metrics


def series(metrics: ExporterMetrics, name: str = "api") -> dict[str, float]:
    return probe_series(metrics.exposition().decode(), name)


def field_errors(metrics: ExporterMetrics) -> dict[tuple[str, str], float]:
    text = metrics.exposition().decode()
    return {
        (dict(labels)["field"], dict(labels)["reason"]): value
        for (name, labels), value in samples(text).items()
        if name == "lumen_probe_field_errors_total"
    }


def test_both_run_counters_of_every_probe_start_at_zero():
    config = ExporterConfig(probes=[probe("http://a/health"), probe("http://b/", name="b")])
    runs = {
        (dict(labels)["probe"], dict(labels)["result"]): value
        for (name, labels), value in samples(ExporterMetrics(config).exposition().decode()).items()
        if name == "lumen_probe_runs_total"
    }
    assert runs == {
        (name, result): 0.0 for name in ("api", "b") for result in ("success", "failure")
    }


def test_a_healthy_target_gives_every_series():
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer.json(BODY)
        config = probe(f"{targets.url}/health")
        before = time.time()
        result, metrics = run([config], lambda s, _: s.run_once(config))
    assert result.success
    got = series(metrics)
    assert got.pop("lumen_probe_last_success_timestamp_seconds") >= before
    assert 0 < got.pop("lumen_probe_duration_seconds") < 2
    assert got.pop("m_ms") > 0
    assert got == {
        "lumen_probe_success": 1.0,
        "lumen_probe_http_status": 200.0,
        "m_up": 1.0,
        "m_mock": 0.0,
        "m_confidence": 0.87,
        "m_status": 1.0,
    }
    assert field_errors(metrics) == {}


def test_a_slow_target_within_the_timeout_succeeds_with_its_time():
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer.json(BODY, delay=0.5)
        config = probe(f"{targets.url}/health", timeout="10s")
        _, metrics = run([config], lambda s, _: s.run_once(config))
    got = series(metrics)
    assert got["lumen_probe_success"] == 1.0
    assert got["lumen_probe_duration_seconds"] >= 0.5
    assert got["m_ms"] >= 500


def test_a_500_fails_and_leaves_no_stale_field():
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer.json(BODY)
        config = probe(f"{targets.url}/health")

        async def healthy_then_failing(
            scheduler: ProbeScheduler, metrics: ExporterMetrics
        ) -> dict[str, float]:
            await scheduler.run_once(config)
            first = series(metrics)
            targets.answers["/health"] = Answer.json({"error": "boom"}, status=500)
            await scheduler.run_once(config)
            return first

        first, metrics = run([config], healthy_then_failing)
    got = series(metrics)
    assert first["m_confidence"] == 0.87  # the field was there
    assert got["lumen_probe_success"] == 0.0
    assert got["m_up"] == 0.0
    assert got["lumen_probe_http_status"] == 500.0
    assert "m_ms" in got  # it answered, slowly or not
    # The time of the last success stays; the fields go, not kept at their last value.
    assert (
        got["lumen_probe_last_success_timestamp_seconds"]
        == (first["lumen_probe_last_success_timestamp_seconds"])
    )
    assert not {"m_mock", "m_confidence", "m_status"} & got.keys()
    assert field_errors(metrics) == {}  # the probe's failure says it; not a field's


def test_a_target_hung_past_the_timeout_fails_at_the_timeout():
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer(hang=True)
        config = probe(f"{targets.url}/health", timeout="500ms")
        started = time.monotonic()
        result, metrics = run([config], lambda s, _: s.run_once(config))
        took = time.monotonic() - started
    assert not result.success and result.error == "no answer within 500ms"
    assert 0.5 <= took < 30
    got = series(metrics)
    assert got["lumen_probe_success"] == 0.0 and got["m_up"] == 0.0
    assert got["lumen_probe_duration_seconds"] >= 0.5
    # No answer: no status, no response time, no fields, no last success.
    assert got.keys() == {"lumen_probe_success", "lumen_probe_duration_seconds", "m_up"}


def test_a_refused_connection_fails_without_a_crash():
    with ProbeTargets() as targets:
        url = targets.url
    config = probe(f"{url}/health")  # the server is gone: connection refused
    result, metrics = run([config], lambda s, _: s.run_once(config))
    assert not result.success and result.error
    assert series(metrics)["m_up"] == 0.0


def test_bad_json_removes_every_field_and_counts_each():
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer(body=b"<html>maintenance</html>")
        config = probe(f"{targets.url}/health")
        result, metrics = run([config], lambda s, _: s.run_once(config))
    assert result.success  # it answered 200 in time; only its body is unreadable
    got = series(metrics)
    assert got["m_up"] == 1.0
    assert not {"m_mock", "m_confidence", "m_status"} & got.keys()
    assert field_errors(metrics) == {
        ("m_mock", "invalid_json"): 1.0,
        ("m_confidence", "invalid_json"): 1.0,
        ("m_status", "invalid_json"): 1.0,
    }


def healthy_then(
    targets: ProbeTargets, config: ProbeConfig, answer: Answer
) -> Callable[[ProbeScheduler, ExporterMetrics], Awaitable[dict[str, float]]]:
    """A healthy run (its series returned), then one more against ``answer``."""

    async def body(scheduler: ProbeScheduler, metrics: ExporterMetrics) -> dict[str, float]:
        targets.answers["/health"] = Answer.json(BODY)
        await scheduler.run_once(config)
        first = series(metrics)
        targets.answers["/health"] = answer
        await scheduler.run_once(config)
        return first

    return body


def test_a_body_nested_too_deep_to_parse_is_invalid_json_not_a_stale_value():
    with ProbeTargets() as targets:
        config = probe(f"{targets.url}/health")
        first, metrics = run([config], healthy_then(targets, config, Answer(body=b"[" * 100_000)))
    assert first["m_confidence"] == 0.87
    got = series(metrics)
    assert got["m_up"] == 1.0 and got["lumen_probe_success"] == 1.0
    assert not {"m_mock", "m_confidence", "m_status"} & got.keys()
    assert field_errors(metrics) == {
        ("m_mock", "invalid_json"): 1.0,
        ("m_confidence", "invalid_json"): 1.0,
        ("m_status", "invalid_json"): 1.0,
    }


def test_a_descendant_path_over_a_deeply_nested_body_is_unreadable_not_stale():
    deep = b"[" * 500 + b'{"x": 1}' + b"]" * 500  # JSON, deeper than $.. will go
    with ProbeTargets() as targets:
        config = probe(f"{targets.url}/health", fields={"m_mock": "$.mock", "m_x": "$..x"})
        first, metrics = run([config], healthy_then(targets, config, Answer(body=deep)))
    assert first["m_mock"] == 0.0 and "m_x" not in first  # BODY has no x
    got = series(metrics)
    assert got["lumen_probe_success"] == 1.0
    assert not {"m_mock", "m_x"} & got.keys()
    assert field_errors(metrics)[("m_x", "unreadable")] == 1.0


def test_an_unexpected_error_in_a_run_records_a_failure_not_the_last_result(monkeypatch, caplog):
    from lumen_alerting.exporter import probes

    with ProbeTargets() as targets:
        config = probe(f"{targets.url}/health")

        async def healthy_then_broken(
            scheduler: ProbeScheduler, metrics: ExporterMetrics
        ) -> dict[str, float]:
            targets.answers["/health"] = Answer.json(BODY)
            await scheduler.run_once(config)
            first = series(metrics)

            def broken(*_: object) -> FieldReading:
                raise RuntimeError("a bug quoting secret-header-value")

            monkeypatch.setattr(probes, "read_fields", broken)
            for _ in range(2):
                result = await scheduler.run_once(config)
                assert not result.success
            return first

        caplog.set_level("DEBUG", logger="lumen.exporter.probes")
        first, metrics = run([config], healthy_then_broken)
    assert first["m_confidence"] == 0.87
    got = series(metrics)
    assert got["lumen_probe_success"] == 0.0 and got["m_up"] == 0.0
    assert not {"m_mock", "m_confidence", "m_status"} & got.keys()
    failures = [r for r in caplog.records if "api" in r.getMessage() and r.levelname == "ERROR"]
    assert len(failures) == 1 and "RuntimeError" in failures[0].getMessage()
    assert "secret-header-value" not in caplog.text


def test_an_unexpected_error_in_the_schedule_records_a_failure(monkeypatch):
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer.json(BODY)
        config = probe(f"{targets.url}/health", interval="1s")

        async def scheduled(scheduler: ProbeScheduler, metrics: ExporterMetrics) -> None:
            await scheduler.run_once(config)
            assert series(metrics)["lumen_probe_success"] == 1.0

            async def broken(_: ProbeConfig) -> None:
                raise RuntimeError("boom")

            monkeypatch.setattr(scheduler, "run_once", broken)
            await scheduler.start()
            await asyncio.to_thread(
                eventually,
                lambda: series(metrics)["lumen_probe_success"] == 0.0,
                60,
                "the scheduled run's failure recorded",
            )

        _, metrics = run([config], scheduled)
    assert not {"m_mock", "m_confidence", "m_status"} & series(metrics).keys()


def test_a_body_past_the_limit_is_not_read_whole():
    with ProbeTargets() as targets:
        padding = "x" * (MAX_BODY + 1024)
        targets.answers["/health"] = Answer.json({"mock": False, "padding": padding})
        config = probe(f"{targets.url}/health", fields={"m_mock": "$.mock"})
        result, metrics = run([config], lambda s, _: s.run_once(config))
    assert result.success and "m_mock" not in series(metrics)
    assert field_errors(metrics) == {("m_mock", "invalid_json"): 1.0}


def test_a_missing_or_non_numeric_field_removes_only_that_series():
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer.json(BODY)
        config = probe(f"{targets.url}/health")

        async def twice(scheduler: ProbeScheduler, _: ExporterMetrics) -> None:
            await scheduler.run_once(config)
            targets.answers["/health"] = Answer.json({"mock": False, "confidence": "high"})
            await scheduler.run_once(config)
            await scheduler.run_once(config)

        _, metrics = run([config], twice)
    got = series(metrics)
    assert got["m_mock"] == 0.0
    assert "m_confidence" not in got and "m_status" not in got
    assert field_errors(metrics) == {
        ("m_confidence", "not_a_number"): 2.0,
        ("m_status", "missing"): 2.0,
    }


def test_expected_status_method_and_secret_headers(tmp_path: Path):
    with ProbeTargets() as targets:
        targets.answers["/up"] = Answer(
            status=204, body=b"", require_header=("Authorization", "Bearer s3cret")
        )
        config = probe(f"{targets.url}/up", method="HEAD", expected_status=[204], fields={})
        headers = {"api": {"Authorization": "Bearer s3cret"}}
        result, _ = run([config], lambda s, _: s.run_once(config), headers=headers)
        assert result.success and result.status == 204
        assert targets.seen.methods == ["HEAD"]
        # Without the header the target answers 401: not an expected status.
        result, _ = run([config], lambda s, _: s.run_once(config))
        assert not result.success and result.status == 401


def test_probes_in_flight_are_bounded():
    with ProbeTargets() as targets:
        targets.answers["/slow"] = Answer.json(BODY, delay=0.3)
        probes = [
            probe(f"{targets.url}/slow", name=f"p{n}", interval="1h", fields={}) for n in range(6)
        ]

        async def all_once(scheduler: ProbeScheduler, _: ExporterMetrics) -> None:
            # Every probe at once, through the scheduler's own gate.
            await asyncio.gather(*(scheduler.run_gated(p) for p in probes))

        run(probes, all_once, max_concurrent=2)
        assert targets.requests("/slow") == 6
        assert targets.seen.most_in_flight == 2


def test_the_schedule_runs_each_probe_on_its_interval():
    with ProbeTargets() as targets:
        for n in range(3):
            targets.answers[f"/p{n}"] = Answer.json(BODY)
        probes = [probe(f"{targets.url}/p{n}", name=f"p{n}", interval="200ms") for n in range(3)]

        async def a_while(scheduler: ProbeScheduler, _: ExporterMetrics) -> None:
            await scheduler.start()
            await asyncio.to_thread(
                eventually,
                lambda: all(targets.requests(f"/p{n}") >= 3 for n in range(3)),
                60,
                "three runs of every probe",
            )

        _, metrics = run(probes, a_while)
    for n in range(3):
        assert series(metrics, f"p{n}")["m_up"] == 1.0


def test_the_scheduler_starts_each_probe_at_its_offset():
    # Two names whose offsets into a 4 s interval are far apart (0.02 s and 3.79 s): started
    # together, the scheduler must run them about 3.8 s apart, not at once.
    early, late = "p-5", "p-11"
    assert first_run_offset(early, 4.0) < 0.1 and first_run_offset(late, 4.0) > 3.7
    first_seen: dict[str, float] = {}
    with ProbeTargets() as targets:
        for name in (early, late):
            targets.answers[f"/{name}"] = Answer.json(BODY)
        probes = [probe(f"{targets.url}/{n}", name=n, interval="4s") for n in (early, late)]

        async def until_both_ran(scheduler: ProbeScheduler, _: ExporterMetrics) -> None:
            await scheduler.start()

            def both_ran() -> bool:
                for name in (early, late):
                    if name not in first_seen and targets.requests(f"/{name}"):
                        first_seen[name] = time.monotonic()
                return len(first_seen) == 2

            await asyncio.to_thread(eventually, both_ran, 60, "both probes' first runs")

        run(probes, until_both_ran)
    assert first_seen[late] - first_seen[early] > 2.0, first_seen


def test_first_runs_are_spread_over_the_interval_and_stable():
    names = [f"probe-{n}" for n in range(400)]
    offsets = [first_run_offset(name, 20.0) for name in names]
    assert offsets == [first_run_offset(name, 20.0) for name in names]  # same on every start
    assert all(0 <= offset < 20 for offset in offsets)
    # Spread: every second of the interval gets some probes, none gets a crowd (400/20 = 20).
    per_second = [sum(1 for o in offsets if s <= o < s + 1) for s in range(20)]
    assert min(per_second) >= 5 and max(per_second) <= 45, per_second


def test_a_late_run_skips_the_slots_it_missed():
    assert next_slot(100.0, 5.0, 20.0, now=90.0) == 105.0  # not started yet
    assert next_slot(100.0, 5.0, 20.0, now=105.0) == 125.0
    assert next_slot(100.0, 5.0, 20.0, now=187.0) == 205.0  # 125, 145, 165 and 185 missed


def test_a_probe_with_secret_headers_follows_no_redirect(tmp_path: Path):
    """aiohttp forwards custom headers to a redirect's target: a probe carrying secrets must
    not take the redirect, or another host (or plain http) would get its API key."""
    with ProbeTargets() as targets, ProbeTargets() as elsewhere:
        elsewhere.answers["/collect"] = Answer.json(BODY)
        targets.answers["/moved"] = Answer(
            status=302, body=b"", location=f"{elsewhere.url}/collect"
        )
        config = probe(f"{targets.url}/moved", fields={})
        secret = {"api": {"X-Api-Key": "s3cret-key"}}
        result, _ = run([config], lambda s, _: s.run_once(config), headers=secret)
        assert (result.success, result.status) == (False, 302)
        assert elsewhere.requests("/collect") == 0
        # Without secret headers the redirect is followed, as before.
        result, _ = run([config], lambda s, _: s.run_once(config))
        assert (result.success, result.status) == (True, 200)
        assert elsewhere.requests("/collect") == 1


def heavy_body() -> bytes:
    """Just under MAX_BODY of small nested values (the most work per byte for a JSON parser:
    0.4 s and more here), with the fields the probe reads up front."""
    items = [
        {"i": n, "v": [n, 0.5, True, None, {"s": "x", "t": [1, [2, [3]]]}]} for n in range(64_000)
    ]
    document = {"mock": False, "gateway": {"status": "locked"}, "persona": "Nana", "items": items}
    body = json.dumps(document, separators=(",", ":")).encode()
    assert INLINE_BODY < len(body) <= MAX_BODY
    return body


async def scrape_latencies(url: str, series: str, steps: int) -> list[float]:
    """Latencies of back-to-back scrapes of ``url`` from another process (``scraper.py``),
    until ``series`` has gone up by ``steps``."""
    scraper = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.exporter.scraper",
        url,
        series,
        str(steps),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env=environment() | {"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'operator'}"},
    )
    out, err = await scraper.communicate()
    assert scraper.returncode == 0, err.decode()
    latencies: list[float] = json.loads(out)
    return latencies


def scrapes_while_probing_a_heavy_body(body: bytes) -> list[float]:
    """The exporter's /metrics (served on the loop the probes run on) scraped while a probe
    reads ``body`` every second (the worker then has time to spare: not a busy core)."""
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer(body=body)
        config = probe(
            f"{targets.url}/health",
            interval="1s",
            timeout="30s",
            fields={"m_status": "$.gateway.status"},
            value_maps={"m_status": {"locked": 1}},
            count_values={"m_persona": "$.persona"},
        )

        async def scraped(scheduler: ProbeScheduler, metrics: ExporterMetrics) -> list[float]:
            runner = web.AppRunner(make_app(ExporterConfig(probes=[config]), metrics))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            try:
                port = runner.addresses[0][1]
                await scheduler.start()
                return await scrape_latencies(
                    f"http://127.0.0.1:{port}/metrics",
                    'm_persona_total{probe="api",value="Nana"}',
                    4,
                )
            finally:
                await runner.cleanup()

        latencies, metrics = run([config], scraped)
    assert series(metrics)["m_status"] == 1.0  # the body's fields were read, through the map
    return latencies


def test_a_big_body_is_parsed_off_the_event_loop_and_scrapes_stay_fast(monkeypatch):
    """Parsed on the loop, a 4 MiB body holds up every scrape that arrives meanwhile for up to
    its parse time; in a worker process it does not. The same scrapes with parsing forced onto
    the loop are the control: they show the load is heavy enough to be seen on this machine.

    Scrapes go back to back, so each stall of the loop catches one (it waits the stall out);
    "slow" is half the body's own parse time, measured here (the machine may be busy)."""
    from lumen_alerting.exporter import probes

    body = heavy_body()
    began = time.perf_counter()
    json.loads(body)
    slow = max(0.1, (time.perf_counter() - began) / 2)
    off_loop = scrapes_while_probing_a_heavy_body(body)
    monkeypatch.setattr(probes, "INLINE_BODY", MAX_BODY)
    on_loop = scrapes_while_probing_a_heavy_body(body)
    report = (
        f"slow: over {slow * 1000:.0f} ms; off the loop: {len(off_loop)} scrapes, median "
        f"{statistics.median(off_loop) * 1000:.1f} ms, worst {max(off_loop) * 1000:.0f} ms; on "
        f"the loop: {len(on_loop)} scrapes, median {statistics.median(on_loop) * 1000:.1f} ms, "
        f"slowest {[round(t * 1000) for t in sorted(on_loop)[-4:]]} ms"
    )
    print(report)
    # One hiccup of a loaded machine is allowed, not one per run.
    assert sum(t > slow for t in off_loop) <= 1, report
    assert statistics.median(off_loop) < 0.05, report
    assert sum(t > slow for t in on_loop) >= 2, report


def counted(metrics: ExporterMetrics, name: str = "m_persona") -> dict[tuple[str, str], float]:
    """``{(probe, value): count}`` of the counter ``<name>_total``."""
    text = metrics.exposition().decode()
    return {
        (dict(labels)["probe"], dict(labels)["value"]): value
        for (sample, labels), value in samples(text).items()
        if sample == f"{name}_total"
    }


GATEWAY = {"m_status": {"down": 0, "locked": 1, "unlocked": 2}}


def test_a_value_map_turns_the_gateway_status_into_its_number():
    with ProbeTargets() as targets:
        config = probe(f"{targets.url}/health", fields={"m_status": "$.status"}, value_maps=GATEWAY)

        async def statuses(scheduler: ProbeScheduler, metrics: ExporterMetrics) -> list[Any]:
            seen = []
            for status in ("locked", "unlocked", 2, "2", "Locked"):
                targets.answers["/health"] = Answer.json({"status": status})
                await scheduler.run_once(config)
                seen.append(series(metrics).get("m_status"))
            return seen

        seen, metrics = run([config], statuses)
    # A word not in the map (the case differs) is no value: the series goes, not a stale 2.
    assert seen == [1.0, 2.0, 2.0, 2.0, None]
    assert field_errors(metrics) == {("m_status", "unmapped"): 1.0}


def test_a_field_is_counted_by_value_on_successful_runs():
    with ProbeTargets() as targets:
        config = probe(f"{targets.url}/health", fields={}, count_values={"m_persona": "$.persona"})

        async def personas(scheduler: ProbeScheduler, metrics: ExporterMetrics) -> None:
            assert counted(metrics) == {}  # values are not known in advance: no series yet
            for persona in ("Nana", "Nana", "Lua", 7, True, None):
                targets.answers["/health"] = Answer.json({"persona": persona})
                await scheduler.run_once(config)
            targets.answers["/health"] = Answer.json({"persona": "Nana"}, status=500)
            await scheduler.run_once(config)  # a failure reads nothing: not counted
            targets.answers["/health"] = Answer.json({"name": "Nana"})
            await scheduler.run_once(config)  # no persona: a field error, not a count

        _, metrics = run([config], personas)
    assert counted(metrics) == {
        ("api", "Nana"): 2.0,
        ("api", "Lua"): 1.0,
        ("api", "7"): 1.0,
        ("api", "true"): 1.0,
    }
    assert field_errors(metrics) == {
        ("m_persona", "not_a_number"): 1.0,
        ("m_persona", "missing"): 1.0,
    }


def test_distinct_values_past_the_cap_are_counted_as_other():
    with ProbeTargets() as targets:
        config = probe(
            f"{targets.url}/health",
            fields={},
            count_values={"m_persona": "$.persona"},
            max_distinct_values=2,
        )

        async def personas(scheduler: ProbeScheduler, _: ExporterMetrics) -> None:
            for persona in ("Nana", "Lua", "Mira", "Nana", "Kai", "Lua", "Mira"):
                targets.answers["/health"] = Answer.json({"persona": persona})
                await scheduler.run_once(config)

        _, metrics = run([config], personas)
    # First come, first kept; later values are all __other__, and counted as field errors.
    assert counted(metrics) == {
        ("api", "Nana"): 2.0,
        ("api", "Lua"): 2.0,
        ("api", "__other__"): 3.0,
    }
    assert field_errors(metrics) == {("m_persona", "too_many_values"): 3.0}


def test_the_cap_bounds_what_is_kept_whatever_the_values():
    """A field with ever-new values (an id, a time) keeps the cap's values and one more."""
    config = probe("http://api/health", fields={}, count_values={"m_id": "$.id"})
    metrics = ExporterMetrics(ExporterConfig(probes=[config]))
    for n in range(10_000):
        metrics.record("api", ProbeResult(True, 0.01, float(n), 200, counted={"m_id": str(n)}))
    kept = counted(metrics, "m_id")
    assert len(kept) == config.max_distinct_values + 1 == 21
    assert kept[("api", "__other__")] == 10_000 - 20
    assert sum(kept.values()) == 10_000
    assert sum(len(values) for values in metrics.counted._tallies.values()) == 21


def test_the_counter_says_what_it_counts_and_its_limit():
    config = probe(
        "http://api/health", count_values={"m_persona": "$.persona"}, max_distinct_values=5
    )
    metrics = ExporterMetrics(ExporterConfig(probes=[config]))
    metrics.record("api", ProbeResult(True, 0.01, 1767225600.0, 200, counted={"m_persona": "N"}))
    text = metrics.exposition().decode()
    assert "# TYPE m_persona_total counter" in text
    (help_line,) = [line for line in text.splitlines() if line.startswith("# HELP m_persona_t")]
    assert "$.persona" in help_line and "at most 5 distinct values" in help_line
    assert "__other__" in help_line
    assert 'm_persona_created{probe="api",value="N"} 1.7672256e+09' in text
    errors = next(line for line in text.splitlines() if "HELP lumen_probe_field_errors" in line)
    assert "unmapped" in errors and "too_many_values" in errors


def test_a_body_reader_that_fails_fails_that_run_only():
    """A reader process that dies (killed for memory, say) records its run as a failure (no
    stale fields); the next run starts a new reader."""
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer(body=heavy_body())
        config = probe(
            f"{targets.url}/health",
            fields={"m_status": "$.gateway.status"},
            value_maps={"m_status": {"locked": 1}},
        )

        async def dying_then_fine(
            scheduler: ProbeScheduler, metrics: ExporterMetrics
        ) -> list[dict[str, float]]:
            seen = []
            readers = scheduler._readers
            command = readers.command
            await scheduler.run_once(config)
            seen.append(series(metrics))
            readers.command = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), 9)"]
            assert not (await scheduler.run_once(config)).success
            seen.append(series(metrics))
            readers.command = command
            await scheduler.run_once(config)
            seen.append(series(metrics))
            return seen

        (fine, failed, again), metrics = run([config], dying_then_fine)
    assert fine["m_status"] == again["m_status"] == 1.0
    assert failed["lumen_probe_success"] == 0.0 and "m_status" not in failed
    assert field_errors(metrics) == {}


def test_a_body_reading_crosses_processes_intact():
    wanted = BodyFields(
        gauges={"m_status": "$.gateway.status", "m_x": "$.x"},
        value_maps={"m_status": {"locked": 1}},
        counted={"m_persona": "$.persona", "m_y": "$.y"},
    )
    body = heavy_body()
    assert decode_request(encode_request(body, wanted)) == (body, wanted)
    reading = read_fields(body, wanted)
    assert reading.problems == {"m_x": FieldProblem.MISSING, "m_y": FieldProblem.MISSING}
    assert decode_reading(encode_reading(reading)) == reading

    async def elsewhere() -> FieldReading:
        return await BodyReaders().read(body, wanted)

    assert asyncio.run(elsewhere()) == reading


def test_only_a_successful_run_moves_a_counted_value():
    config = probe("http://api/health", fields={}, count_values={"m_persona": "$.persona"})
    metrics = ExporterMetrics(ExporterConfig(probes=[config]))
    failed = ProbeResult(False, 0.01, 1.0, 500, counted={"m_persona": "Nana"}, error="HTTP 500")
    metrics.record("api", failed)
    assert counted(metrics) == {}
    metrics.record("api", ProbeResult(True, 0.01, 2.0, 200, counted={"m_persona": "Nana"}))
    assert counted(metrics) == {("api", "Nana"): 1.0}


def test_a_counted_value_that_is_no_label_is_a_field_error_and_breaks_nothing(tmp_path: Path):
    """A lone surrogate (JSON's "\\ud800") and a 1 MB persona are field problems: /metrics
    still encodes and parses, and the CSV log keeps writing the other rows."""
    huge = b'{"persona": "' + b"N" * 1_000_000 + b'"}'
    answers = [
        Answer.json({"persona": "Nana"}),
        Answer(body=b'{"persona": "\\ud800"}'),
        Answer(body=huge),  # past INLINE_BODY: read in the body reader's process
        Answer.json({"persona": "Lua"}),
    ]
    path = tmp_path / "metrics.csv"
    with ProbeTargets() as targets:
        config = probe(f"{targets.url}/health", fields={}, count_values={"m_persona": "$.persona"})
        scrapes: list[str] = []

        async def personas(scheduler: ProbeScheduler, metrics: ExporterMetrics) -> None:
            log = ProbeCsvLog(path, ExporterConfig(probes=[config]), metrics.registry)
            log.start()
            for answer in answers:
                targets.answers["/health"] = answer
                log.add("api", await scheduler.run_once(config))
                scrapes.append(metrics.exposition().decode("utf-8"))
            await log.close()

        _, metrics = run([config], personas)
    for text in scrapes:
        assert list(text_string_to_metric_families(text))  # parses (raises if not)
    assert counted(metrics) == {("api", "Nana"): 1.0, ("api", "Lua"): 1.0}
    assert field_errors(metrics) == {("m_persona", "not_text"): 1.0, ("m_persona", "too_long"): 1.0}
    with path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(row["success"], row["m_persona"]) for row in rows] == [
        ("1", "Nana"),
        ("1", ""),
        ("1", ""),
        ("1", "Lua"),
    ]


def test_the_body_reader_loads_no_policy_nor_service(tmp_path: Path):
    """The reader is started for every big body: it imports ``values`` and the ``json_paths``
    leaf, not the policy package (its model, loader, PromQL parser) nor pydantic or aiohttp."""
    request = encode_request(b'{"a": 1}', BodyFields(gauges={"m": "$.a"}))
    reader = BodyReaders()
    done = subprocess.run(
        [*reader.command[:1], "-X", "importtime", *reader.command[1:]],
        input=request,
        capture_output=True,
        env=reader._environment,
        timeout=60,
        check=True,
    )
    assert decode_reading(done.stdout).numbers == {"m": 1.0}
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.decode().splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    ours = sorted(name for name in imported if name.startswith("lumen_alerting"))
    assert ours == [
        "lumen_alerting",
        "lumen_alerting.exporter",
        "lumen_alerting.exporter.values",
        "lumen_alerting.json_paths",
    ]
    assert not imported & {"pydantic", "aiohttp", "prometheus_client", "promql_parser"}


class SpawnedReaders:
    """Every process the body readers start, kept to check it was reaped; ``started`` is set
    at the first."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.processes: list[asyncio.subprocess.Process] = []
        self.started: asyncio.Event | None = None
        spawn = asyncio.create_subprocess_exec

        async def spawned(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
            process = await spawn(*args, **kwargs)
            self.processes.append(process)
            if self.started is not None:
                self.started.set()
            return process

        monkeypatch.setattr(asyncio, "create_subprocess_exec", spawned)

    def all_reaped(self) -> bool:
        """Every reader has exited and was waited for: no process, no zombie, is left."""
        for process in self.processes:
            if process.returncode is None:
                return False
            try:
                os.kill(process.pid, 0)  # a zombie (exited, not waited for) still answers
            except ProcessLookupError:
                continue
            return False
        return True


HANGING_READER = [sys.executable, "-c", "import time; time.sleep(3600)"]


def test_a_body_reader_out_of_time_fails_its_run_and_is_reaped(monkeypatch):
    monkeypatch.setattr("lumen_alerting.exporter.probes.READ_TIMEOUT", 0.5)
    spawned = SpawnedReaders(monkeypatch)
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer(body=heavy_body())
        config = probe(f"{targets.url}/health", fields={"m_status": "$.gateway.status"})

        async def hung(scheduler: ProbeScheduler, metrics: ExporterMetrics) -> ProbeResult:
            scheduler._readers.command = HANGING_READER
            return await scheduler.run_once(config)

        result, metrics = run([config], hung)
    assert not result.success and result.status == 200
    assert result.error == "the body reader gave no reading within 0.5 s"
    assert "m_status" not in series(metrics) and series(metrics)["lumen_probe_success"] == 0.0
    assert len(spawned.processes) == 1 and spawned.all_reaped()
    assert spawned.processes[0].returncode == -signal.SIGKILL


def test_stopping_the_scheduler_while_a_body_reader_runs_reaps_it(monkeypatch):
    spawned = SpawnedReaders(monkeypatch)
    with ProbeTargets() as targets:
        targets.answers["/health"] = Answer(body=heavy_body())
        config = probe(f"{targets.url}/health", interval="1s", timeout="30s")

        async def stopped(scheduler: ProbeScheduler, _: ExporterMetrics) -> float:
            spawned.started = asyncio.Event()
            scheduler._readers.command = HANGING_READER
            await scheduler.start()
            await asyncio.wait_for(spawned.started.wait(), 60)
            begun = time.monotonic()
            await scheduler.stop()
            return time.monotonic() - begun

        took, _ = run([config], stopped)
    assert took < 10  # not READ_TIMEOUT (60 s): the reader is killed with the run
    assert len(spawned.processes) == 1 and spawned.all_reaped()


def test_a_failures_text_is_one_short_utf8_line():
    """It goes to the log and the CSV log's error column: whatever an error quotes (a target's
    bytes, line breaks, a long message), the text encodes and stays one bounded line."""
    text = _describe(ValueError("bad\r\nstatus line \udcff" + "x" * 1000))
    assert text.startswith("ValueError: bad status line \\udcff")
    assert len(text) == MAX_ERROR_TEXT and text.endswith("…")
    text.encode("utf-8")  # raises if it cannot be encoded
    assert _describe(TimeoutError()) == "TimeoutError"
