"""Pipeline runs: the strict bodies, the state and its series, expiry, the state file across
restarts and crashes, and the HTTP endpoints (auth, limits, 4xx that change nothing)."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from lumen_alerting.exporter import pipeline
from lumen_alerting.exporter.pipeline import (
    MAX_KNOWN_STAGES,
    STATE_FILE,
    PipelineCollector,
    PipelineRun,
    PipelineState,
    PipelineStore,
    RunRejected,
    StateFileError,
    Suppression,
    parse_problems,
)
from lumen_alerting.exporter.pipeline_http import MAX_BODY
from tests.exporter.pipeline_server import PipelineServer
from tests.support.raw_http import post_with_raw_header

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def run(**fields: object) -> PipelineRun:
    body: dict[str, object] = {
        "stages": [
            {"stage": "build", "success": True, "duration_seconds": 12},
            {"stage": "verify", "success": True, "duration_seconds": 3.5},
        ],
        "integrity_ok": True,
        "report_generated": True,
    }
    body.update(fields)
    return PipelineRun.model_validate(body)


def text(state: PipelineState) -> str:
    registry = CollectorRegistry()
    registry.register(PipelineCollector(state))
    return generate_latest(registry).decode()


def samples(state: PipelineState) -> list[str]:
    """The sample lines only (no HELP/TYPE), in exposition order."""
    return [line for line in text(state).splitlines() if not line.startswith("#")]


def problems(body: object, model: type[PipelineRun] | type[Suppression] = PipelineRun) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return parse_problems(caught.value)


# ---- the bodies ----


def test_a_full_run_parses():
    parsed = PipelineRun.model_validate(
        {
            "run_id": "gh-123",
            "finished_at": 1_700_000_000,
            "stages": [{"stage": "pdf", "success": False, "duration_seconds": 1.25}],
            "integrity_ok": True,
            "report_generated": False,
        }
    )
    assert parsed.run_id == "gh-123"
    assert parsed.finished_at == 1_700_000_000.0
    assert parsed.stages[0].duration_seconds == 1.25
    assert parsed.result == "failure"


@pytest.mark.parametrize(
    ("fields", "result"),
    [
        ({}, "success"),
        ({"integrity_ok": None, "report_generated": None}, "success"),
        ({"stages": []}, "success"),
        ({"integrity_ok": False}, "failure"),
        ({"report_generated": False}, "failure"),
        ({"stages": [{"stage": "upload", "success": False, "duration_seconds": 0}]}, "failure"),
    ],
)
def test_a_run_succeeds_only_when_nothing_failed(fields, result):
    assert run(**fields).result == result


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"stages": [], "extra": 1}, ["extra: Extra inputs are not permitted"]),
        ({"integrity_ok": 1}, ["integrity_ok: Input should be a valid boolean"]),
        ({"integrity_ok": "true"}, ["integrity_ok: Input should be a valid boolean"]),
        ({"finished_at": "1700000000"}, ["finished_at: Input should be a valid number"]),
        ({"finished_at": 0}, ["finished_at: Input should be greater than 0"]),
        (
            {"stages": [{"stage": "a", "success": True, "duration_seconds": True}]},
            ["stages[0].duration_seconds: Input should be a valid number"],
        ),
        (
            {"stages": [{"stage": "a", "success": True, "duration_seconds": -1}]},
            ["stages[0].duration_seconds: Input should be greater than or equal to 0"],
        ),
        (
            {"stages": [{"stage": "a", "success": True, "duration_seconds": float("nan")}]},
            ["stages[0].duration_seconds: Input should be a finite number"],
        ),
        (
            {"stages": [{"stage": 'a"b', "success": True, "duration_seconds": 1}]},
            ["stages[0].stage: String should match pattern '^[A-Za-z0-9_.:-]+$'"],
        ),
        (
            {"stages": [{"stage": "a", "success": True}]},
            ["stages[0].duration_seconds: Field required"],
        ),
        (
            {"stages": [{"stage": "a", "success": True, "duration_seconds": 1}] * 2},
            ["stages: stage named more than once: a"],
        ),
        (
            {
                "stages": [
                    {"stage": f"s{i}", "success": True, "duration_seconds": 1} for i in range(65)
                ]
            },
            ["stages: List should have at most 64 items after validation, not 65"],
        ),
        ({"run_id": ""}, ["run_id: String should have at least 1 character"]),
        (
            {"run_id": "a\nforged log line"},
            ["run_id: String should match pattern '^[^\\x00-\\x1f\\x7f]+$'"],
        ),
        ([], ["body: Input should be an object"]),
    ],
)
def test_bad_runs_are_refused_with_every_problem_named(body, expected):
    assert problems(body) == expected


@pytest.mark.parametrize(
    "body", [{}, {"stages": []}, {"run_id": "x", "integrity_ok": None, "report_generated": None}]
)
def test_a_run_that_reports_nothing_is_refused(body):
    assert problems(body) == [
        "body: a run must report at least one stage, integrity_ok or report_generated"
    ]


def test_suppression_body_is_strict():
    assert Suppression.model_validate({"suppressed": True}).suppressed is True
    assert problems({"suppressed": 1}, Suppression) == [
        "suppressed: Input should be a valid boolean"
    ]
    assert problems({}, Suppression) == ["suppressed: Field required"]


# ---- the state and its series ----

EMPTY_TEXT = """\
# HELP lumen_pipeline_runs_total Pipeline runs received, by result (success: every stage, \
integrity and report ok).
# TYPE lumen_pipeline_runs_total counter
lumen_pipeline_runs_total{result="success"} 0.0
lumen_pipeline_runs_total{result="failure"} 0.0
# HELP lumen_alert_suppressed 1 while the policy's alerts are muted (POST /suppression), else 0.
# TYPE lumen_alert_suppressed gauge
lumen_alert_suppressed 0.0
"""


def test_a_new_state_exposes_zero_counters_and_no_gauges():
    assert text(PipelineState()) == EMPTY_TEXT


def test_a_run_sets_the_seed_series_and_the_counters():
    state = PipelineState()
    outcome = state.apply_run(
        run(
            finished_at=1000,
            stages=[
                {"stage": "build", "success": True, "duration_seconds": 12},
                {"stage": "pdf", "success": False, "duration_seconds": 1.5},
            ],
            integrity_ok=False,
        ),
        now=1010.0,
    )
    assert (outcome.result, outcome.duplicate, outcome.current) == ("failure", False, True)
    assert text(state) == (
        "# HELP lumen_pipeline_last_run_timestamp When the last pipeline run finished (success "
        "or not), seconds since the epoch.\n"
        "# TYPE lumen_pipeline_last_run_timestamp gauge\n"
        "lumen_pipeline_last_run_timestamp 1000.0\n"
        "# HELP lumen_pipeline_success 1 if the stage succeeded in the last run that included "
        "it, else 0.\n"
        "# TYPE lumen_pipeline_success gauge\n"
        'lumen_pipeline_success{stage="build"} 1.0\n'
        'lumen_pipeline_success{stage="pdf"} 0.0\n'
        "# HELP lumen_pipeline_duration_seconds How long the stage took in the last run that "
        "included it.\n"
        "# TYPE lumen_pipeline_duration_seconds gauge\n"
        'lumen_pipeline_duration_seconds{stage="build"} 12.0\n'
        'lumen_pipeline_duration_seconds{stage="pdf"} 1.5\n'
        "# HELP lumen_remote_integrity_ok 1 if the remote copy matched the local one (integrity "
        "check), 0 on a mismatch.\n"
        "# TYPE lumen_remote_integrity_ok gauge\n"
        "lumen_remote_integrity_ok 0.0\n"
        "# HELP lumen_report_generated 1 if the run produced the day's report (MD/PDF), else 0.\n"
        "# TYPE lumen_report_generated gauge\n"
        "lumen_report_generated 1.0\n"
        "# HELP lumen_pipeline_runs_total Pipeline runs received, by result (success: every "
        "stage, integrity and report ok).\n"
        "# TYPE lumen_pipeline_runs_total counter\n"
        'lumen_pipeline_runs_total{result="success"} 0.0\n'
        'lumen_pipeline_runs_total{result="failure"} 1.0\n'
        "# HELP lumen_pipeline_stage_runs_total Stage executions received, by stage and result.\n"
        "# TYPE lumen_pipeline_stage_runs_total counter\n"
        'lumen_pipeline_stage_runs_total{result="success",stage="build"} 1.0\n'
        'lumen_pipeline_stage_runs_total{result="failure",stage="build"} 0.0\n'
        'lumen_pipeline_stage_runs_total{result="success",stage="pdf"} 0.0\n'
        'lumen_pipeline_stage_runs_total{result="failure",stage="pdf"} 1.0\n'
        "# HELP lumen_alert_suppressed 1 while the policy's alerts are muted (POST /suppression), "
        "else 0.\n"
        "# TYPE lumen_alert_suppressed gauge\n"
        "lumen_alert_suppressed 0.0\n"
    )


def test_runs_accumulate_and_leave_other_gauges_alone():
    state = PipelineState()
    state.apply_run(run(finished_at=100, report_generated=False), now=100.0)
    state.apply_run(
        run(
            finished_at=200,
            stages=[{"stage": "build", "success": False, "duration_seconds": 7}],
            integrity_ok=None,
            report_generated=None,
        ),
        now=200.0,
    )
    assert samples(state) == [
        "lumen_pipeline_last_run_timestamp 200.0",
        'lumen_pipeline_success{stage="build"} 0.0',
        'lumen_pipeline_success{stage="verify"} 1.0',  # not in the second run: kept
        'lumen_pipeline_duration_seconds{stage="build"} 7.0',
        'lumen_pipeline_duration_seconds{stage="verify"} 3.5',
        "lumen_remote_integrity_ok 1.0",  # left out of the second run: kept
        "lumen_report_generated 0.0",
        'lumen_pipeline_runs_total{result="success"} 0.0',
        'lumen_pipeline_runs_total{result="failure"} 2.0',
        'lumen_pipeline_stage_runs_total{result="success",stage="build"} 1.0',
        'lumen_pipeline_stage_runs_total{result="failure",stage="build"} 1.0',
        'lumen_pipeline_stage_runs_total{result="success",stage="verify"} 1.0',
        'lumen_pipeline_stage_runs_total{result="failure",stage="verify"} 0.0',
        "lumen_alert_suppressed 0.0",
    ]


def test_a_late_older_run_is_counted_but_does_not_overwrite_the_last_run():
    state = PipelineState()
    state.apply_run(run(finished_at=500), now=500.0)
    outcome = state.apply_run(run(finished_at=400, integrity_ok=False), now=510.0)
    assert (outcome.result, outcome.current) == ("failure", False)
    assert "lumen_pipeline_last_run_timestamp 500.0" in samples(state)
    assert "lumen_remote_integrity_ok 1.0" in samples(state)
    assert 'lumen_pipeline_runs_total{result="failure"} 1.0' in samples(state)


def test_a_repeated_run_id_changes_nothing():
    state = PipelineState()
    state.apply_run(run(run_id="ci-1", finished_at=100), now=100.0)
    before = state.to_json()
    outcome = state.apply_run(run(run_id="ci-1", finished_at=200, integrity_ok=False), now=200.0)
    assert outcome.duplicate
    assert state.to_json() == before


def test_a_run_from_the_future_is_refused_and_changes_nothing():
    state = PipelineState()
    with pytest.raises(RunRejected, match="finished_at: 2000 is more than 300 s in the future"):
        state.apply_run(run(finished_at=2000), now=1000.0)
    assert state == PipelineState()


def test_distinct_stage_names_are_bounded():
    state = PipelineState()
    for start in range(0, MAX_KNOWN_STAGES, 64):
        stages = [
            {"stage": f"s{i}", "success": True, "duration_seconds": 1}
            for i in range(start, start + 64)
        ]
        state.apply_run(run(stages=stages), now=1.0)
    before = state.to_json()
    with pytest.raises(RunRejected, match="more than 256 distinct stage names"):
        state.apply_run(run(stages=[{"stage": "new", "success": True, "duration_seconds": 1}]), 2)
    assert state.to_json() == before
    state.apply_run(run(stages=[{"stage": "s0", "success": True, "duration_seconds": 1}]), 3.0)


def test_suppression_sets_its_gauge():
    state = PipelineState()
    state.set_suppressed(True, now=5.0)
    assert samples(state)[-1] == "lumen_alert_suppressed 1.0"
    state.set_suppressed(False, now=6.0)
    assert samples(state)[-1] == "lumen_alert_suppressed 0.0"


def test_expiry_removes_only_gauges_not_pushed_in_time():
    state = PipelineState()
    state.apply_run(run(finished_at=100), now=100.0)  # build, verify, integrity, report
    state.apply_run(
        run(
            finished_at=250,
            stages=[{"stage": "build", "success": True, "duration_seconds": 1}],
            integrity_ok=None,
            report_generated=False,
        ),
        now=250.0,
    )
    state.set_suppressed(True, now=100.0)
    assert state.expire(now=300.0, max_age=100.0) == ["stage verify", "integrity_ok"]
    assert samples(state) == [
        "lumen_pipeline_last_run_timestamp 250.0",  # never expires: LumenPipelineStalled reads it
        'lumen_pipeline_success{stage="build"} 1.0',
        'lumen_pipeline_duration_seconds{stage="build"} 1.0',
        "lumen_report_generated 0.0",
        'lumen_pipeline_runs_total{result="success"} 1.0',
        'lumen_pipeline_runs_total{result="failure"} 1.0',
        'lumen_pipeline_stage_runs_total{result="success",stage="build"} 2.0',
        'lumen_pipeline_stage_runs_total{result="failure",stage="build"} 0.0',
        'lumen_pipeline_stage_runs_total{result="success",stage="verify"} 1.0',
        'lumen_pipeline_stage_runs_total{result="failure",stage="verify"} 0.0',
        "lumen_alert_suppressed 1.0",
    ]
    assert state.expire(now=350.0, max_age=100.0) == []  # exactly max_age old: kept
    assert state.expire(now=351.0, max_age=100.0) == ["stage build", "report_generated"]


def test_state_json_round_trips():
    state = PipelineState()
    state.apply_run(run(run_id="x", finished_at=10, integrity_ok=False), now=11.0)
    state.set_suppressed(True, now=12.0)
    data = json.loads(json.dumps(state.to_json()))
    assert PipelineState.from_json(data) == state


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": 2},
        [],
        {**PipelineState().to_json(), "runs_total": {"success": -1, "failure": 0}},
        {**PipelineState().to_json(), "runs_total": {"success": 1.5, "failure": 0}},
        {**PipelineState().to_json(), "surprise": True},
    ],
)
def test_state_json_is_checked_on_the_way_in(data):
    with pytest.raises(ValidationError):
        PipelineState.from_json(data)


# ---- the store: its file, restarts, crashes ----


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store_text(store: PipelineStore) -> str:
    registry = CollectorRegistry()
    registry.register(store.collector())
    return generate_latest(registry).decode()


def test_a_restart_restores_counters_and_gauges(tmp_path):
    clock = Clock()
    store = PipelineStore(tmp_path, clock=clock)
    store.apply_run(run(finished_at=990, integrity_ok=False))
    store.apply_run(run(finished_at=995))
    store.set_suppressed(True)
    before = store_text(store)
    assert 'lumen_pipeline_runs_total{result="success"} 1.0' in before
    restarted = PipelineStore(tmp_path, clock=clock)
    assert store_text(restarted) == before
    assert restarted.state == store.state
    restarted.apply_run(run(finished_at=999))
    assert 'lumen_pipeline_runs_total{result="success"} 2.0' in store_text(restarted)


def test_the_state_file_is_json_the_store_wrote(tmp_path):
    store = PipelineStore(tmp_path, clock=Clock())
    store.apply_run(run(run_id="r1"))
    saved = json.loads((tmp_path / STATE_FILE).read_text())
    assert saved["recent_run_ids"] == ["r1"]
    assert saved["runs_total"] == {"success": 1, "failure": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]  # no temporary left


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "Expecting property name"),
        (b'{"version": 1}', "last_run: Field required"),
        (b"\xff\xfe", "codec can't decode"),
    ],
)
def test_a_corrupt_state_file_stops_the_start(tmp_path, content, reason):
    (tmp_path / STATE_FILE).write_bytes(content)
    with pytest.raises(StateFileError) as caught:
        PipelineStore(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / STATE_FILE}: not a pipeline state file (")
    assert reason in message
    assert (tmp_path / STATE_FILE).read_bytes() == content  # left for a person to look at


def test_a_crash_before_the_rename_keeps_the_old_file(tmp_path, monkeypatch):
    store = PipelineStore(tmp_path, clock=Clock())
    store.apply_run(run(run_id="first"))
    old = (tmp_path / STATE_FILE).read_bytes()
    state = store.state

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="No space left"):
        store.apply_run(run(run_id="second", integrity_ok=False))
    with pytest.raises(OSError, match="No space left"):
        store.set_suppressed(True)
    monkeypatch.undo()
    assert (tmp_path / STATE_FILE).read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]
    assert store.state == state  # nothing changed in memory either
    assert PipelineStore(tmp_path).state == state


def test_a_directory_that_cannot_be_synced_after_the_rename_keeps_the_change(
    tmp_path, monkeypatch, caplog
):
    """The rename put the new state on disk: adopting it is the truth (an error would say
    nothing changed while the file, and the next start, say otherwise)."""
    store = PipelineStore(tmp_path, clock=Clock())
    store.apply_run(run(run_id="first"))
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            raise OSError(5, "Input/output error")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    outcome = store.apply_run(run(run_id="second", integrity_ok=False))
    store.set_suppressed(True)
    monkeypatch.undo()
    assert not outcome.duplicate
    assert "could not be synced" in caplog.text and "Input/output error" in caplog.text
    assert store.state == PipelineStore(tmp_path).state  # memory and disk agree
    assert store.state.suppressed.value == 1.0
    assert store.apply_run(run(run_id="second", integrity_ok=False)).duplicate


def test_a_scrape_expires_in_memory_and_never_writes(tmp_path, monkeypatch):
    """A scrape runs on the event loop: expiry there drops the series but writes nothing (a
    save is two fsyncs); the next change saves it, and a restart expires by ``pushed_at``."""
    clock = Clock(1000.0)
    store = PipelineStore(tmp_path, max_age=60, clock=clock)
    store.apply_run(run())
    saved = (tmp_path / STATE_FILE).read_bytes()
    assert "lumen_remote_integrity_ok 1.0" in store_text(store)
    saves: list[PipelineState] = []
    save = store._save

    def no_save_at_scrape(state: PipelineState) -> None:
        saves.append(state)
        raise AssertionError("a scrape wrote the state file")

    monkeypatch.setattr(store, "_save", no_save_at_scrape)
    clock.now = 1061.0
    scraped = store_text(store)
    assert saves == []
    assert "lumen_remote_integrity_ok" not in scraped
    assert "lumen_pipeline_success" not in scraped
    assert "lumen_pipeline_last_run_timestamp 1000.0" in scraped
    assert (tmp_path / STATE_FILE).read_bytes() == saved  # untouched
    # A restart before the next change expires the same series from their pushed_at.
    assert PipelineStore(tmp_path, max_age=60, clock=clock).state.integrity_ok is None
    assert "lumen_remote_integrity_ok" not in store_text(
        PipelineStore(tmp_path, max_age=60, clock=clock)
    )
    # The next change (off the loop) saves the expiry with it.
    monkeypatch.setattr(store, "_save", save)
    store.set_suppressed(True)
    restored = PipelineStore(tmp_path, clock=clock).state
    assert restored.integrity_ok is None and restored.stages == {}
    assert restored.suppressed.value == 1.0


@pytest.mark.parametrize("max_age", [0, -1, float("inf"), float("nan")])
def test_max_age_must_be_positive(tmp_path, max_age):
    with pytest.raises(ValueError, match="max_age must be a positive number"):
        PipelineStore(tmp_path, max_age=max_age)


# ---- HTTP ----


@pytest.fixture
def server(tmp_path) -> Iterator[PipelineServer]:
    with PipelineServer(PipelineStore(tmp_path), TOKEN) as running:
        yield running


def post(server: PipelineServer, path: str, **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]


def metrics(server: PipelineServer) -> str:
    return httpx.get(server.url + "/metrics", timeout=10).text


def state_file(server: PipelineServer) -> bytes | None:
    path = server.store.path
    return path.read_bytes() if path.exists() else None


GOOD_RUN = {
    "run_id": "ci-42",
    "stages": [{"stage": "build", "success": True, "duration_seconds": 12.5}],
    "integrity_ok": True,
    "report_generated": True,
}


def test_a_run_is_accepted_and_exposed(server):
    response = post(server, "/pipeline/runs", json=GOOD_RUN, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "result": "success",
        "stages": 1,
        "duplicate": False,
        "current": True,
    }
    exposed = metrics(server)
    assert 'lumen_pipeline_success{stage="build"} 1.0' in exposed
    assert 'lumen_pipeline_runs_total{result="success"} 1.0' in exposed
    again = post(server, "/pipeline/runs", json=GOOD_RUN, headers=AUTH)
    assert again.json()["duplicate"] is True
    assert 'lumen_pipeline_runs_total{result="success"} 1.0' in metrics(server)


def test_suppression_toggles_its_gauge(server):
    response = post(server, "/suppression", json={"suppressed": True}, headers=AUTH)
    assert (response.status_code, response.json()) == (200, {"ok": True, "suppressed": True})
    assert "lumen_alert_suppressed 1.0" in metrics(server)
    post(server, "/suppression", json={"suppressed": False}, headers=AUTH)
    assert "lumen_alert_suppressed 0.0" in metrics(server)


@pytest.mark.parametrize("path", ["/pipeline/runs", "/suppression"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
)
def test_a_missing_or_wrong_token_gets_401_and_changes_nothing(server, path, headers):
    before = metrics(server)
    body = GOOD_RUN if path == "/pipeline/runs" else {"suppressed": True}
    response = post(server, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"ok": False, "error": "missing or wrong bearer token"}
    assert TOKEN not in response.text
    assert metrics(server) == before
    assert state_file(server) is None


@pytest.mark.parametrize("path", ["/pipeline/runs", "/suppression"])
def test_a_token_that_is_not_utf8_gets_401_and_the_server_keeps_serving(server, path):
    """aiohttp hands such header bytes over as surrogates: no 500 from encoding them."""
    status = post_with_raw_header(server.url + path, "Authorization", b"Bearer \xff\xfe")
    assert status == 401
    assert state_file(server) is None
    body = GOOD_RUN if path == "/pipeline/runs" else {"suppressed": True}
    assert post(server, path, json=body, headers=AUTH).status_code == 200


@pytest.mark.parametrize("path", ["/pipeline/runs", "/suppression"])
def test_without_a_token_the_endpoints_answer_403(tmp_path, path):
    with PipelineServer(PipelineStore(tmp_path), None) as server:
        response = post(server, path, json={"suppressed": True}, headers=AUTH)
        assert response.status_code == 403
        assert "no --pipeline-token-file" in response.json()["error"]
        assert state_file(server) is None


def test_a_body_over_the_limit_gets_413(server):
    big = b'{"run_id": "' + b"x" * MAX_BODY + b'"}'
    response = post(server, "/pipeline/runs", content=big, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"] == f"body larger than {MAX_BODY} bytes"


def test_a_chunked_body_over_the_limit_gets_413(server):
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    response = post(server, "/pipeline/runs", content=chunks(), headers=AUTH)
    assert response.status_code == 413
    assert state_file(server) is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{", "body: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (b"", "body: Expecting value: line 1 column 1 (char 0)"),
        (b'{"suppressed": NaN}', "body: NaN is not a JSON number"),
        (b'{"stages": [], "stages": []}', "body: key given more than once: stages"),
        (b"\xff", "body: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    ],
)
def test_a_body_that_is_not_json_gets_400_with_the_problem(server, content, problem):
    response = post(server, "/pipeline/runs", content=content, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": "body is not JSON", "problems": [problem]}
    assert state_file(server) is None


def test_a_body_that_breaks_the_schema_gets_422_and_changes_nothing(server):
    assert post(server, "/pipeline/runs", json=GOOD_RUN, headers=AUTH).status_code == 200
    before, saved = metrics(server), state_file(server)
    bad = {
        "stages": [
            {"stage": "build", "success": "yes", "duration_seconds": 1},
            {"stage": "pdf", "success": False, "duration_seconds": -2},
        ],
        "integrity_ok": False,
        "colour": "red",
    }
    response = post(server, "/pipeline/runs", json=bad, headers=AUTH)
    assert response.status_code == 422
    assert response.json() == {
        "ok": False,
        "error": "invalid body",
        "problems": [
            "stages[0].success: Input should be a valid boolean",
            "stages[1].duration_seconds: Input should be greater than or equal to 0",
            "colour: Extra inputs are not permitted",
        ],
    }
    suppression = post(server, "/suppression", json={"suppressed": "on"}, headers=AUTH)
    assert suppression.status_code == 422
    assert suppression.json()["problems"] == ["suppressed: Input should be a valid boolean"]
    assert metrics(server) == before
    assert state_file(server) == saved


def test_an_empty_run_gets_422_and_changes_nothing(server):
    before = metrics(server)
    response = post(server, "/pipeline/runs", json={"run_id": "ci-empty"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["problems"] == [
        "body: a run must report at least one stage, integrity_ok or report_generated"
    ]
    assert metrics(server) == before and state_file(server) is None


def test_a_run_from_the_future_gets_422(server):
    response = post(server, "/pipeline/runs", json=GOOD_RUN | {"finished_at": 4e9}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["problems"][0].startswith("finished_at: 4000000000 is more than")
    assert state_file(server) is None


def test_a_write_stuck_in_fsync_does_not_hold_up_scrapes(server, monkeypatch):
    """The store's fsyncs run off the event loop, and /metrics reads the committed state
    without waiting for the writer: a slow disk never slows a scrape."""
    real_fsync = os.fsync
    in_fsync, release = threading.Event(), threading.Event()

    def slow_fsync(descriptor: int) -> None:
        if not stat.S_ISDIR(os.fstat(descriptor).st_mode):
            in_fsync.set()
            release.wait(120)
        real_fsync(descriptor)

    before = metrics(server)
    monkeypatch.setattr(os, "fsync", slow_fsync)
    with ThreadPoolExecutor(1) as pool:
        try:
            posted = pool.submit(post, server, "/pipeline/runs", json=GOOD_RUN, headers=AUTH)
            assert in_fsync.wait(60), "the write never reached fsync"
            during = httpx.get(server.url + "/metrics", timeout=10)
            assert during.status_code == 200 and during.text == before  # not committed yet
        finally:
            release.set()
        assert posted.result(60).status_code == 200
    assert 'lumen_pipeline_success{stage="build"} 1.0' in metrics(server)


def test_a_state_that_cannot_be_saved_gets_503_and_changes_nothing(server, monkeypatch):
    before = metrics(server)

    def full(path: Path, data: bytes, *, mode: int = 0o600) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "write_atomically", full)
    response = post(server, "/pipeline/runs", json=GOOD_RUN, headers=AUTH)
    assert (response.status_code, response.headers["Retry-After"]) == (503, "5")
    assert post(server, "/suppression", json={"suppressed": True}, headers=AUTH).status_code == 503
    monkeypatch.undo()
    assert metrics(server) == before
