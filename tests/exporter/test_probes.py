"""Probes against real local HTTP servers: healthy, slow, failing with 500, hung past the
timeout, bad JSON, a missing or non-numeric field. The right series come out, nothing stale
stays, failures are counted; the schedule is spread and the number in flight is bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import generate_latest

from lumen_alerting.exporter.config import ExporterConfig, ProbeConfig
from lumen_alerting.exporter.metrics import ExporterMetrics
from lumen_alerting.exporter.values import FieldReading
from lumen_alerting.exporter.probes import (
    MAX_BODY,
    ProbeScheduler,
    first_run_offset,
    next_slot,
)
from tests.exporter.series import probe_series, samples
from tests.exporter.targets import Answer, ProbeTargets
from tests.support.polling import eventually

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
    return probe_series(generate_latest(metrics.registry).decode(), name)


def field_errors(metrics: ExporterMetrics) -> dict[tuple[str, str], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (dict(labels)["field"], dict(labels)["reason"]): value
        for (name, labels), value in samples(text).items()
        if name == "lumen_probe_field_errors_total"
    }


def test_both_run_counters_of_every_probe_start_at_zero():
    config = ExporterConfig(probes=[probe("http://a/health"), probe("http://b/", name="b")])
    runs = {
        (dict(labels)["probe"], dict(labels)["result"]): value
        for (name, labels), value in samples(
            generate_latest(ExporterMetrics(config).registry).decode()
        ).items()
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
