"""What ``lumen-operator`` prints, as users read it: plain lines name the policy they concern;
an API server that cannot be reached is one line per back-off, then one line when the operator
stops, never a traceback (issue 12)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lumen_alerting.operator.kinds import POLICY
from tests.cli.test_lumen_operator import GATEWAY, OPERATOR, clean_env, kubeconfig
from tests.support.kube_api import ClusterEmulator
from tests.support.operator_run import Kubectl
from tests.support.polling import eventually, free_port

pytestmark = pytest.mark.timeout(60)

# Short back-offs, so the whole retry chain of kopf's start-up passes in a few seconds; long
# enough that the requests failing together (/api and /apis) fall within one back-off on a
# loaded machine, where their one line is logged once.
DELAYS = (0.5, 1.0, 1.5)
TIMESTAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] "


def test_plain_lines_name_the_policy(cluster: ClusterEmulator, tmp_path: Path) -> None:
    env = clean_env(KUBECONFIG=str(kubeconfig(tmp_path, cluster.url)))
    log = tmp_path / "stderr"
    kubectl = Kubectl(cluster.url)
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*OPERATOR, "--standalone", "--metrics-port=0", "--liveness-port=0"],
            env=env,
            stderr=stderr,
        )
    try:
        kubectl.create(POLICY, copy.deepcopy(GATEWAY))
        # The last line of the policy's creation; the logs are all this test reads, so the
        # process is then killed rather than waiting for kopf's graceful stop.
        err = eventually(
            lambda: (text := log.read_text()) and "Creation is processed" in text and text,
            what="the creation's lines",
        )
    finally:
        kubectl.close()
        process.kill()
        process.wait(10)
    lines = err.splitlines()
    applied = [line for line in lines if "Applied PrometheusRule/lumen-gateway." in line]
    assert len(applied) == 1, err
    assert re.fullmatch(
        TIMESTAMP + r"kopf\.objects +\[INFO +\] \[lumen/gateway\] Applied "
        r"PrometheusRule/lumen-gateway\.",
        applied[0],
    ), applied[0]
    handled = [line for line in lines if "Handler 'create' succeeded." in line]
    assert handled and all("[lumen/gateway] Handler 'create'" in line for line in handled), err
    assert "Activity 'start' succeeded." in err
    # Not kopf's name for a nested function, nor a line for every event of the policy.
    assert "<locals>" not in err
    assert "'forget'" not in err


# lumen-operator's main() with the back-offs shortened (they are not a flag), in a process of
# its own as users run it.
SHORT_BACK_OFFS = f"""
import sys
from dataclasses import replace
from lumen_alerting.cli import operator
from lumen_alerting.operator.config import parse_config
operator.parse_config = lambda argv, env: replace(parse_config(argv, env), retry_delays={DELAYS})
sys.exit(operator.main())
"""


@pytest.fixture()
def closed_port(tmp_path: Path) -> str:
    return f"http://127.0.0.1:{free_port()}"  # free: nothing listens there


def run_operator(server: str, tmp_path: Path, *flags: str) -> tuple[int, str]:
    """Run lumen-operator (short back-offs) against ``server`` until it exits: code, stderr."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SHORT_BACK_OFFS,
            "--standalone",
            "--metrics-port=0",
            "--liveness-port=0",
            *flags,
        ],
        env=clean_env(KUBECONFIG=str(kubeconfig(tmp_path, server))),
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode, result.stderr


def test_unreachable_api_is_one_plain_line_per_back_off(closed_port: str, tmp_path: Path) -> None:
    code, err = run_operator(closed_port, tmp_path)
    assert code == 1, err
    assert "Traceback" not in err
    api = re.escape(f"the Kubernetes API at {closed_port}: connection refused")
    lines = [line for line in err.splitlines() if f"API at {closed_port}" in line]
    # kopf discovers /api and /apis at once: both fail, one line per back-off.
    expected = [
        *(
            rf"kopf\.\S+ +\[WARNING \] Cannot reach {api}; retrying in {delay:g} s "
            rf"\(attempt {attempt} of 4\)\."
            for attempt, delay in enumerate(DELAYS, start=1)
        ),
        rf"kopf\.\S+ +\[ERROR +\] Cannot reach {api}; no retry left after 4 attempts\.",
        # kopf's task that discovers the API fails on it: said the same way, no traceback
        rf"kopf\.\S+ +\[ERROR +\] Resource observer has failed: cannot reach {api}",
        rf"lumen\.operator +\[ERROR +\] Stopped: cannot reach {api}\.",
    ]
    assert len(lines) == len(expected), err
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(TIMESTAMP + pattern, line), (line, pattern)


def test_unreachable_api_in_json_lines(closed_port: str, tmp_path: Path) -> None:
    code, err = run_operator(closed_port, tmp_path, "--log-format=json")
    assert code == 1, err
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    unreachable = f"the Kubernetes API at {closed_port}: connection refused"
    about = [r for r in records if unreachable in r["message"]]
    assert [(r["severity"], r["message"]) for r in about] == [
        *(
            ("warn", f"Cannot reach {unreachable}; retrying in {delay:g} s (attempt {n} of 4).")
            for n, delay in enumerate(DELAYS, start=1)
        ),
        ("error", f"Cannot reach {unreachable}; no retry left after 4 attempts."),
        ("error", f"Resource observer has failed: cannot reach {unreachable}"),
        ("error", f"Stopped: cannot reach {unreachable}."),
    ]
    assert not [r for r in records if "exc_info" in r], "a traceback reached the JSON lines"


def test_debug_level_keeps_the_traceback(closed_port: str, tmp_path: Path) -> None:
    code, err = run_operator(closed_port, tmp_path, "--log-level=debug")
    assert code == 1
    retrying = f"Cannot reach the Kubernetes API at {closed_port}: connection refused; retrying"
    # Every failed request is shown at debug (here /api and /apis), each with its traceback.
    assert err.count(f"{retrying} in {DELAYS[0]:g} s (attempt 1 of 4).\nTraceback") == 2, err
    assert "ConnectionRefusedError" in err
