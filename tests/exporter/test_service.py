"""The real ``lumen-exporter`` process: the gateway example against a stand-in ION API gives
seed 001's nine gauges, a hung target does not slow scrapes, it stops cleanly on SIGTERM, and
a bad config stops it before it listens."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lumen_alerting.exporter.app import make_app
from lumen_alerting.exporter.config import ExporterConfig
from lumen_alerting.exporter.metrics import ExporterMetrics
from tests.exporter.exporter_run import (
    ExporterProcess,
    environment,
    refused_start,
    rendered_config,
)
from tests.exporter.series import probe_series, samples
from tests.exporter.targets import ION_HEALTH, Answer, ProbeTargets
from tests.support.polling import eventually

pytestmark = pytest.mark.timeout(180)

SEED_001 = {
    "lumen_ion_health": 1.0,
    "lumen_ion_mock_mode": 0.0,
    "lumen_ion_confidence": 0.87,
    "lumen_gateway_status": 1.0,
    "lumen_phase_diff": 0.40,
    "lumen_entropy_rate": 0.24,
    "lumen_creative_band": 0.42,
    "lumen_risk_band": 0.12,
}
STANDARD = {
    "lumen_probe_success",
    "lumen_probe_duration_seconds",
    "lumen_probe_http_status",
    "lumen_probe_last_success_timestamp_seconds",
    "lumen_probe_runs_total",
}


# examples/gateway.yaml maps the gateway's status word to seed 001's number and counts the
# persona by value (spec.exporter.probes[].valueMaps, countValues). The renderer writes them into
# config.json; a rendering without them (before the policy side has them) gets the same keys here.
GATEWAY_VALUE_MAPS = {"lumen_gateway_status": {"down": 0, "locked": 1, "unlocked": 2}}
GATEWAY_COUNT_VALUES = {"lumen_ion_persona": "$.persona"}
PERSONA = ("lumen_ion_persona_total", (("probe", "ion-api"), ("value", "Nana")))
SUCCESSES = ("lumen_probe_runs_total", (("probe", "ion-api"), ("result", "success")))


def gateway_config(url: str) -> dict[str, Any]:
    """The gateway example's rendered config, pointed at the stand-in and probing every second
    (so the test needs not wait up to 20 s for the first run)."""
    config = rendered_config("gateway")
    (probe,) = config["probes"]
    assert probe["name"] == "ion-api" and probe["interval"] == "20s"
    probe["value_maps"] = probe.get("value_maps") or GATEWAY_VALUE_MAPS
    probe["count_values"] = probe.get("count_values") or GATEWAY_COUNT_VALUES
    assert (probe["value_maps"], probe["count_values"]) == (
        GATEWAY_VALUE_MAPS,
        GATEWAY_COUNT_VALUES,
    )
    probe.update(url=url, interval="1s")
    return config


def after_successes(exporter: ExporterProcess, runs: int) -> str:
    """/metrics once ion-api has succeeded ``runs`` times."""

    def scraped() -> str | None:
        text = exporter.metrics()
        return text if samples(text).get(SUCCESSES, 0) >= runs else None

    return eventually(scraped, 60, f"{runs} successful runs of ion-api")


def test_the_gateway_example_exposes_seed_001s_nine_gauges():
    """The nine gauges, the gateway's "locked" through the example's value map, and the persona
    counted once per successful run."""
    with ProbeTargets() as ion_api:
        ion_api.answers["/health"] = Answer.json(ION_HEALTH)
        with ExporterProcess(gateway_config(f"{ion_api.url}/health")) as exporter:
            text = after_successes(exporter, 2)
    found = samples(text)
    policy_series = {
        (name, labels): value
        for (name, labels), value in found.items()
        if name not in STANDARD and name != PERSONA[0]
    }
    nine = {name for name, _ in policy_series}
    assert nine == {*SEED_001, "lumen_ion_response_time_ms"}
    assert all(labels == (("probe", "ion-api"),) for _, labels in policy_series)
    values = probe_series(text, "ion-api")
    assert values.pop("lumen_ion_response_time_ms") > 0
    assert {name: values[name] for name in SEED_001} == SEED_001
    assert values["lumen_probe_success"] == 1.0
    # Every successful run saw persona "Nana" (the scrape reads both counters at one moment).
    assert found[PERSONA] == found[SUCCESSES] >= 2
    assert [key for key in found if key[0] == PERSONA[0]] == [PERSONA]


def test_a_hung_target_does_not_slow_scrapes():
    with ProbeTargets() as targets:
        targets.answers["/hung"] = Answer(hang=True)
        targets.answers["/health"] = Answer.json(ION_HEALTH)
        config = {
            "probes": [
                {"name": "hung", "url": f"{targets.url}/hung", "interval": "1s", "timeout": "30s"},
                {"name": "fine", "url": f"{targets.url}/health", "interval": "1s"},
            ],
            "pipeline": {"enabled": False},
        }
        with ExporterProcess(config) as exporter:
            eventually(lambda: targets.seen.in_flight >= 1, 60, "the hung probe in flight")
            eventually(lambda: targets.requests("/health") >= 2, 60, "two runs of the fine probe")
            latencies = []
            with httpx.Client(timeout=30) as client:
                for _ in range(20):
                    started = time.perf_counter()
                    answer = client.get(f"{exporter.url}/metrics")
                    latencies.append(time.perf_counter() - started)
                    assert answer.status_code == 200
            # The hung probe was in flight all along: it has 30 s before it gives up.
            assert targets.requests("/hung") == 1
            assert targets.seen.in_flight >= 1
            text = answer.text
            # SIGTERM does not wait for the hung probe either.
            stopping = time.monotonic()
            assert exporter.stop() == 0
            assert time.monotonic() - stopping < 20
    # A scrape that waited on the probe would take 30 s; these take milliseconds (roomy bound
    # for a loaded machine).
    assert statistics.median(latencies) < 0.5 and max(latencies) < 5, latencies
    assert probe_series(text, "fine")["lumen_probe_success"] == 1.0
    # Not run yet: nothing of the hung probe but its two run counters, still at 0.
    hung = {
        (name, labels): value
        for (name, labels), value in samples(text).items()
        if dict(labels).get("probe") == "hung"
    }
    assert {name for name, _ in hung} == {"lumen_probe_runs_total"}
    assert sorted(hung.values()) == [0.0, 0.0]


def test_health_ready_and_a_clean_stop():
    with ExporterProcess({"probes": []}) as exporter:
        assert httpx.get(f"{exporter.url}/health", timeout=10).json()["status"] == "ok"
        assert httpx.get(f"{exporter.url}/ready", timeout=10).json() == {"ready": True}
        assert exporter.stop() == 0


def test_the_pipeline_token_is_never_logged(tmp_path):
    token = "pipeline-token-never-logged-0123"
    (tmp_path / "token").write_text(token + "\n")
    config = {"probes": [], "pipeline": {"enabled": True}}
    flags = ("--pipeline-token-file", str(tmp_path / "token"), "--log-level", "debug")
    wrong = "wrong-token-also-never-logged-99"
    run = {"run_id": "ci-7", "stages": [{"stage": "build", "success": True, "duration_seconds": 1}]}
    with ExporterProcess(config, *flags) as exporter:
        runs = f"{exporter.url}/pipeline/runs"
        accepted = httpx.post(runs, json=run, headers={"Authorization": f"Bearer {token}"})
        refused = httpx.post(runs, json=run, headers={"Authorization": f"Bearer {wrong}"})
        bad = httpx.post(runs, content=b"{not json", headers={"Authorization": f"Bearer {token}"})
        assert (accepted.status_code, refused.status_code, bad.status_code) == (200, 401, 400)
        httpx.get(f"{exporter.url}/metrics", timeout=10)
        assert exporter.stop() == 0
    log = exporter.log.read_text()
    assert "Exporter listening" in log and "Pipeline run ci-7" in log  # the log was written
    assert token not in log and wrong not in log


def test_routes_handed_to_make_app_are_served():
    """How the pipeline endpoints plug in: ``make_app(..., routes=[...])``."""

    async def extra(request: web.Request) -> web.Response:
        return web.json_response({"extra": True})

    async def main() -> tuple[int, Any, int]:
        config = ExporterConfig()
        app = make_app(config, ExporterMetrics(config), routes=[web.post("/extra", extra)])
        async with TestClient(TestServer(app)) as client:
            answer = await client.post("/extra")
            metrics = await client.get("/metrics")
            return answer.status, await answer.json(), metrics.status

    assert asyncio.run(main()) == (200, {"extra": True}, 200)


def test_not_ready_until_the_probes_are_scheduled():
    async def main() -> tuple[int, int]:
        config = ExporterConfig()
        scheduled = False
        app = make_app(config, ExporterMetrics(config), ready=lambda: scheduled)
        async with TestClient(TestServer(app)) as client:
            before = (await client.get("/ready")).status
            scheduled = True
            return before, (await client.get("/ready")).status

    assert asyncio.run(main()) == (503, 200)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ('{"probes": [{"name": "a", "url": "http://x", "interval": "0s"}]}', "probes[0].interval"),
        ('{"probes": [{"name": "a", "url": "http://x", "fields": {"m": "mock"}}]}', "fields.m"),
        ('{"probes": [], "pipline": {}}', "pipline"),
        ("{not json", "not JSON"),
    ],
)
def test_a_bad_config_exits_2_with_one_line_before_listening(tmp_path, config, named):
    line, stdout = refused_start(config, tmp_path)
    assert line.startswith("lumen-exporter: error: --config: ") and named in line, line
    assert stdout == ""  # and one line on stderr (refused_start): no "listening on" line


def test_the_pipeline_endpoints_are_served_and_their_state_survives_a_restart(tmp_path):
    """``pipeline.enabled`` wires POST /pipeline/runs and /suppression into the real process,
    their series into /metrics, and the state file in --state-dir into the next start."""
    token = "pipeline-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    config = {"probes": [], "pipeline": {"enabled": True}}
    exporter = ExporterProcess(config, "--pipeline-token-file", str(tmp_path / "token"))
    run = {
        "run_id": "ci-1",
        "stages": [{"stage": "upload", "success": False, "duration_seconds": 3.5}],
        "integrity_ok": True,
        "report_generated": True,
    }
    authorized = {"Authorization": f"Bearer {token}"}
    failed_runs = ("lumen_pipeline_runs_total", (("result", "failure"),))
    upload = ("lumen_pipeline_success", (("stage", "upload"),))
    suppressed = ("lumen_alert_suppressed", ())

    with exporter:
        wrong = httpx.post(
            f"{exporter.url}/pipeline/runs", json=run, headers={"Authorization": "Bearer x"}
        )
        assert wrong.status_code == 401
        assert samples(exporter.metrics())[failed_runs] == 0
        answer = httpx.post(f"{exporter.url}/pipeline/runs", json=run, headers=authorized)
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"] == "failure"
        muted = httpx.post(
            f"{exporter.url}/suppression", json={"suppressed": True}, headers=authorized
        )
        assert muted.status_code == 200, muted.text
        before = samples(exporter.metrics())
        assert (before[failed_runs], before[upload], before[suppressed]) == (1, 0, 1)

    with exporter:  # the same --state-dir, a new process
        after = samples(exporter.metrics())
        assert (after[failed_runs], after[upload], after[suppressed]) == (1, 0, 1)
        again = httpx.post(f"{exporter.url}/pipeline/runs", json=run, headers=authorized)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert samples(exporter.metrics())[failed_runs] == 1  # a CI retry is not counted twice


def test_metrics_with_probes_and_the_pipeline_pass_promtool(tmp_path):
    """Probe and pipeline series side by side in the real process: every family once, well
    formed, as ``promtool check metrics`` (what Prometheus' own lint) sees it."""
    token = "pipeline-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    run = {
        "run_id": "ci-1",
        "stages": [{"stage": "build", "success": True, "duration_seconds": 12.5}],
        "integrity_ok": True,
        "report_generated": False,
    }
    with ProbeTargets() as ion_api:
        ion_api.answers["/health"] = Answer.json(ION_HEALTH)
        ajar = ION_HEALTH | {"gateway": {"status": "ajar"}}
        ion_api.answers["/other"] = Answer.json(ajar)
        config = gateway_config(f"{ion_api.url}/health") | {"pipeline": {"enabled": True}}
        # Seed 001's lumen_ion_response_time_ms is promtool's one lint ("abbreviated units"):
        # a name the seed fixes, not a fault of the exposition this test checks.
        config["probes"][0]["response_time_metric"] = "lumen_ion_response_time"
        # A second probe whose status word is not in the map (unmapped), and whose persona
        # changes past its cap of one value (__other__, too_many_values): every kind of series.
        other = config["probes"][0] | {
            "name": "other",
            "url": f"{ion_api.url}/other",
            "max_distinct_values": 1,
        }
        config["probes"].append(other)
        with ExporterProcess(config, "--pipeline-token-file", str(tmp_path / "token")) as exporter:
            exporter.push("/pipeline/runs", run, token)
            nana = ("lumen_ion_persona_total", (("probe", "other"), ("value", "Nana")))
            eventually(lambda: nana in samples(exporter.metrics()), 60, "other counting Nana")
            ion_api.answers["/other"] = Answer.json(ajar | {"persona": "Lua"})

            def with_every_reason() -> str | None:
                text = exporter.metrics()
                reasons = {
                    dict(labels).get("reason")
                    for name, labels in samples(text)
                    if name == "lumen_probe_field_errors_total"
                }
                return text if reasons == {"unmapped", "too_many_values"} else None

            text = eventually(with_every_reason, 60, "unmapped and too_many_values errors")
    assert "lumen_pipeline_success" in text and "lumen_probe_runs_total" in text
    found = samples(text)
    assert found["lumen_gateway_status", (("probe", "ion-api"),)] == 1.0
    assert ("lumen_gateway_status", (("probe", "other"),)) not in found  # "ajar": unmapped
    assert found[PERSONA] >= 1
    assert found["lumen_ion_persona_total", (("probe", "other"), ("value", "__other__"))] >= 1
    checked = subprocess.run(
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", ""), checked.stderr


def test_an_unreadable_pipeline_state_stops_the_start_with_one_line(tmp_path):
    """Starting empty would lose the run counters the SLOs read: refuse, and say which file."""
    (tmp_path / "token").write_text("pipeline-token-0123456789\n")
    config = {"probes": [], "pipeline": {"enabled": True}}
    exporter = ExporterProcess(config, "--pipeline-token-file", str(tmp_path / "token"))
    (exporter.dir / "state").mkdir()
    (exporter.dir / "state" / "pipeline-state.json").write_text("{not json")
    result = subprocess.run(
        exporter.command, env=environment(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lumen-exporter: error: --state-dir: "), lines[0]
    assert "pipeline-state.json" in lines[0]


def test_pipeline_gauges_not_pushed_within_expire_after_disappear(tmp_path):
    """``pipeline.expire_after`` reaches the store of the real process: the last run's gauges go
    once not pushed for that long; the run counters, the last run's time and the suppression
    toggle stay (their meaning does not age)."""
    token = "pipeline-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    config = {"probes": [], "pipeline": {"enabled": True, "expire_after": "3s"}}
    run = {
        "run_id": "ci-1",
        "stages": [{"stage": "build", "success": True, "duration_seconds": 12.5}],
        "integrity_ok": True,
        "report_generated": True,
    }
    expiring = {
        ("lumen_pipeline_success", (("stage", "build"),)),
        ("lumen_pipeline_duration_seconds", (("stage", "build"),)),
        ("lumen_remote_integrity_ok", ()),
        ("lumen_report_generated", ()),
    }
    staying = {
        ("lumen_pipeline_last_run_timestamp", ()),
        ("lumen_pipeline_runs_total", (("result", "success"),)),
        ("lumen_pipeline_stage_runs_total", (("result", "success"), ("stage", "build"))),
        ("lumen_alert_suppressed", ()),
    }
    with ExporterProcess(config, "--pipeline-token-file", str(tmp_path / "token")) as exporter:
        exporter.push("/pipeline/runs", run, token)
        pushed = time.monotonic()
        fresh = samples(exporter.metrics())
        if time.monotonic() - pushed < 3:  # else the machine was too slow to see them fresh
            assert expiring | staying <= fresh.keys()
        aged = eventually(
            lambda: not expiring & (s := samples(exporter.metrics())).keys() and s,
            60,
            "the pipeline's gauges expired",
        )
        assert time.monotonic() - pushed >= 3 - 0.5  # not before their time (clocks differ)
    assert staying <= aged.keys()
    assert aged["lumen_pipeline_runs_total", (("result", "success"),)] == 1.0
