"""``lumenctl report --prometheus`` against a stand-in that answers what a real Prometheus never
does (a malformed matrix) and records what it is asked (the exact step): an HTTP server on a free
port, serving one prepared JSON body per test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from lumen_alerting.cli.lumenctl import main as lumenctl

pytestmark = pytest.mark.timeout(120)

NOT_A_RESULT = "Prometheus answered something that is not a query_range result"


class StandIn:
    """Answers every request with ``body``; ``asked`` holds each request's query parameters."""

    def __init__(self) -> None:
        self.body: Any = {}
        self.asked: list[dict[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                stand_in.asked.append({k: v[-1] for k, v in query.items()})
                data = json.dumps(stand_in.body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer_matrix(self, result: Any) -> None:
        self.body = {"status": "success", "data": {"resultType": "matrix", "result": result}}


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(timeout=30)


def success_series(*times: float) -> dict[str, Any]:
    return {
        "metric": {"__name__": "lumen_probe_success", "probe": "ion-api", "job": "x"},
        "values": [[t, "1"] for t in times],
    }


def report(stand_in: StandIn, tmp_path: Path, *args: str) -> int:
    return lumenctl(
        ["report", "--prometheus", stand_in.url, *args, "--output", str(tmp_path / "r.json")]
    )


def test_the_step_is_sent_exactly(stand_in, tmp_path):
    """The chunks are cut with the exact step; Prometheus must be asked for that step, not a
    rounded one (``1.23457e+06`` for 1234567 s)."""
    step = 1_234_567
    stand_in.answer_matrix([success_series(0, step, 2 * step)])
    code = report(stand_in, tmp_path, "--start", "0", "--end", str(2 * step), "--step", str(step))
    assert code == 0
    assert [asked["step"] for asked in stand_in.asked] == ["1234567.0"]
    assert (stand_in.asked[0]["start"], stand_in.asked[0]["end"]) == ("0.000", "2469134.000")
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["probes"]["ion-api"]["summary"]["records"] == 3


MALFORMED: list[tuple[Any, str]] = [
    ({"status": "success", "data": []}, "data is a list"),
    ({"status": "success"}, "data is missing"),
    ({"status": "success", "data": {"resultType": "vector", "result": []}}, "resultType is"),
    ({"status": "success", "data": {"resultType": "matrix", "result": {}}}, "result is a dict"),
    ({"status": "success", "data": {"resultType": "matrix", "result": [7]}}, "a series is"),
    (
        {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": []}]}},
        "a series' metric is not a map",
    ),
    (
        {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [{**success_series(0), "values": [[0, "high"]]}],
            },
        },
        "[0, 'high'] is not a [time, value] pair",
    ),
    (
        {
            "status": "success",
            "data": {"resultType": "matrix", "result": [{**success_series(0), "values": [[0]]}]},
        },
        "[0] is not a [time, value] pair",
    ),
    (
        {
            "status": "success",
            "data": {"resultType": "matrix", "result": [{**success_series(0), "values": "1"}]},
        },
        "the values of a series are a str",
    ),
]


@pytest.mark.parametrize(("body", "complaint"), MALFORMED)
def test_an_answer_that_is_not_a_matrix_is_one_line(stand_in, tmp_path, capsys, body, complaint):
    stand_in.body = body
    code = report(stand_in, tmp_path, "--start", "0", "--end", "60", "--step", "15s")
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith(f"{stand_in.url}: {NOT_A_RESULT} (") and complaint in err
    assert err.endswith(")\n") and err.count("\n") == 1
    assert not (tmp_path / "r.json").exists()


def test_a_range_of_more_than_200000_steps_is_not_asked_for(stand_in, tmp_path, capsys):
    """Each step of each probe becomes a record in memory: the range is bounded before any
    query."""
    assert report(stand_in, tmp_path, "--start", "0", "--end", "199999", "--step", "1") == 1
    assert stand_in.asked  # 200,000 steps: asked (the stand-in's answer has no probe runs)
    capsys.readouterr()
    stand_in.asked.clear()
    assert report(stand_in, tmp_path, "--start", "0", "--end", "200000", "--step", "1") == 1
    assert capsys.readouterr().err.startswith("too many points: 200001 steps of 1 s from ")
    assert stand_in.asked == []
