"""What an operator sees when the threader cannot start or Slack is failing (#8 item 9): one
line naming the flag and exit 2 for start-up problems, throttled WARNINGs with the next retry
time for transient Slack failures, the last Slack error in /stats, the token from a file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.polling import eventually
from tests.support.schemas import REPO
from tests.support.slack_api import SlackDouble
from tests.support.threader_run import (
    SLACK_TOKEN,
    WEBHOOK_TOKEN,
    ThreaderProcess,
    alert,
    notification,
)

pytestmark = pytest.mark.timeout(120)

# Store schemes whose files the threader opens itself. ``file:`` is the single-replica store
# (an alias of ``sqlite:`` once the SQLite store lands): the cases below hold for any of them.
FILE_STORES = ["file"]


@pytest.fixture()
def secrets(tmp_path: Path) -> Path:
    (tmp_path / "webhook").write_text(WEBHOOK_TOKEN)
    (tmp_path / "slack").write_text(SLACK_TOKEN + "\n")
    return tmp_path


def start(
    secrets: Path, *flags: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``lumen-threader`` expecting it to refuse to start (bounded: it must exit)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LUMEN_", "SLACK_"))}
    environ["PYTHONPATH"] = str(REPO / "operator")
    environ.update(env or {"SLACK_BOT_TOKEN": SLACK_TOKEN})
    command = [sys.executable, "-m", "lumen_alerting.cli.threader"]
    command += ["--webhook-token-file", str(secrets / "webhook"), "--default-channel", "#alerts"]
    return subprocess.run(
        [*command, *flags], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_line_naming(result: subprocess.CompletedProcess[str], flag: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("lumen-threader: error: ") and flag in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("scheme", FILE_STORES)
def test_a_store_path_under_a_file(scheme: str, secrets: Path) -> None:
    (secrets / "not-a-directory").write_text("")
    result = start(secrets, "--store", f"{scheme}:{secrets}/not-a-directory/threads.db")
    assert_one_line_naming(result, "--store")


@pytest.mark.parametrize("scheme", FILE_STORES)
def test_a_corrupt_store(scheme: str, secrets: Path) -> None:
    path = secrets / "threads.db"
    garbage = b"\x00\x01this is not a store\xff" * 64
    path.write_bytes(garbage)
    line = assert_one_line_naming(start(secrets, "--store", f"{scheme}:{path}"), "--store")
    assert str(path) in line
    assert path.read_bytes() == garbage, "nothing changed"


def test_a_port_in_use(secrets: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = assert_one_line_naming(start(secrets, "--listen", f"127.0.0.1:{port}"), "--listen")
    assert line.endswith(f"cannot listen on 127.0.0.1:{port}: Address already in use"), line


@pytest.mark.parametrize("flag", ["--webhook-token-file", "--slack-token-file"])
def test_an_unreadable_token_file(flag: str, secrets: Path) -> None:
    # A directory where the file should be: unreadable even for root.
    (secrets / "a-directory").mkdir()
    line = assert_one_line_naming(start(secrets, flag, str(secrets / "a-directory")), flag)
    assert "cannot read" in line


def test_an_empty_slack_token_file(secrets: Path) -> None:
    (secrets / "empty").write_text("\n")
    line = assert_one_line_naming(
        start(secrets, "--slack-token-file", str(secrets / "empty")), "--slack-token-file"
    )
    assert "is empty" in line


# --- running -------------------------------------------------------------------------------------


# Not tests/conftest.py's slack: rate limits on, 50 a second per channel, bursts of 50.
@pytest.fixture()
def slack() -> Iterator[SlackDouble]:
    with SlackDouble(rate_per_channel=50, burst=50) as double:
        yield double


def test_the_slack_token_comes_from_a_file_and_is_never_logged(
    slack: SlackDouble, secrets: Path
) -> None:
    threader = ThreaderProcess(
        slack.url, "memory", slack_token_file=str(secrets / "slack"), log_level="debug"
    )
    threader.env = {"SLACK_BOT_TOKEN": "xoxb-wrong-token"}  # the file wins
    threader.start()
    try:
        assert threader.post(notification([alert(1)])).status_code == 200
        eventually(
            lambda: slack.parents("#alerts"), what="the parent, posted with the file's token"
        )
        log = threader.log.read_text()
    finally:
        assert threader.stop() == 0
    assert all(c.ok for c in slack.calls()), slack.calls()
    assert SLACK_TOKEN not in log and "xoxb-wrong-token" not in log


def test_transient_slack_failures_warn_with_the_next_try_without_flooding(
    slack: SlackDouble,
) -> None:
    # A channel id: no conversations.list first, every failure is a chat.postMessage.
    channel = "C0ALERTS01"
    threader = ThreaderProcess(
        slack.url, "memory", channel_interval="0", default_channel=channel
    ).start()
    try:
        slack.go_down(6, "html503")  # Slack's edge answers 503 for 6 s
        answer = threader.post(notification([alert(n) for n in range(8)]))
        assert answer.status_code == 200
        failure = eventually(
            lambda: httpx.get(f"{threader.url}/stats", timeout=5).json()["last_slack_error"],
            what="the last Slack error in /stats",
        )
        assert failure["method"] == "chat.postMessage" and failure["error"] == "HTTP 503"
        assert failure["at"].endswith("+00:00") and failure["temporary"] is True
        eventually(lambda: len(slack.parents(channel)) == 8, timeout=60, what="all 8 parents")
        log = threader.log.read_text()
    finally:
        assert threader.stop() == 0
    failed_calls = sum(1 for c in slack.calls() if c.status == 503)
    warnings = [line for line in log.splitlines() if "HTTP 503" in line]
    assert failed_calls >= 8
    assert len(warnings) == 1, warnings  # one channel, one kind of failure, within 60 s
    assert "WARNING" in warnings[0] and "next try at 20" in warnings[0], warnings[0]
