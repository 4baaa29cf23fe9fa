"""lumen-threader's settings: what the renderer passes is accepted, bad values are refused with
the flag's name, and every setting is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.render.workloads import THREADER_DIR, enabled_threader, threader_args
from lumen_alerting.threader.config import _parser, parse_config
from tests.schemas import REPO
from tests.settings_docs import undocumented

TOKEN = "0123456789abcdef0123"


@pytest.fixture()
def secrets_dir(tmp_path: Path) -> Path:
    for name in ("webhook-token", "admin-token"):
        (tmp_path / name).write_text(TOKEN + "\n")
    (tmp_path / "database-url").write_text("postgresql://lumen@db/incidents")
    return tmp_path


@pytest.mark.parametrize("example", ["gateway.yaml", "http-api.yaml"])
def test_the_rendered_arguments_are_accepted(example: str, secrets_dir: Path) -> None:
    policy = policy_from_manifest(yaml.safe_load((REPO / "examples" / example).read_text()))
    threader = enabled_threader(policy)
    assert threader is not None
    argv = [arg.replace(THREADER_DIR, str(secrets_dir)) for arg in threader_args(threader)]
    config = parse_config(argv, {"SLACK_BOT_TOKEN": "xoxb-1"})
    assert (config.webhook_token, config.admin_token) == (TOKEN, TOKEN)
    assert config.thread_key == threader.thread_key
    assert config.reply_on_repeat == threader.reply_on_repeat
    assert config.port == 8080 and config.slack_token == "xoxb-1"
    if threader.store.type == "redis":
        assert config.store == threader.store.url
        assert config.database_url == "postgresql://lumen@db/incidents"


def test_environment_forms(secrets_dir: Path) -> None:
    env = {
        "LUMEN_THREADER_LISTEN": "127.0.0.1:9000",
        "LUMEN_THREADER_STORE": "redis://redis:6379/2",
        "LUMEN_THREADER_SLACK_API_URL": "http://slack.local/api",
        "LUMEN_THREADER_DEFAULT_CHANNEL": "#ops",
        "LUMEN_THREADER_WEBHOOK_TOKEN_FILE": str(secrets_dir / "webhook-token"),
        "LUMEN_THREADER_THREAD_KEY": "labels",
        "LUMEN_THREADER_NO_REPLY_ON_REPEAT": "true",
        "LUMEN_THREADER_CHANNEL_INTERVAL": "0.5",
        "LUMEN_THREADER_DEDUPE_WINDOW": "600",
        "LUMEN_THREADER_CONSUMER": "pod-1",
        "LUMEN_THREADER_LOG_FORMAT": "json",
    }
    config = parse_config([], env)
    assert (config.host, config.port, config.store) == ("127.0.0.1", 9000, "redis://redis:6379/2")
    assert (config.slack_api_url, config.default_channel) == ("http://slack.local/api", "#ops")
    assert (config.thread_key, config.reply_on_repeat) == ("labels", False)
    assert (config.channel_interval, config.dedupe_window) == (0.5, 600.0)
    assert (config.consumer, config.log_format) == ("pod-1", "json")
    assert parse_config(["--store", "memory"], env).store == "memory", "a flag wins"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ([], "--webhook-token-file: required"),
        (["--webhook-token-file", "/nonexistent"], "cannot read /nonexistent"),
        (["--listen", "8080"], "--listen: '8080' is not HOST:PORT"),
        (["--store", "postgres://x"], "--store: 'postgres://x' is not memory"),
        (["--default-channel", "alerts"], "--default-channel: 'alerts' is not #name"),
        (["--thread-key", "hash"], "--thread-key: 'hash' is not occurrence or labels"),
        (["--channel-interval", "fast"], "--channel-interval: not a number"),
        (["--dedupe-window", "0"], "--dedupe-window: must be between"),
        (["--log-format", "xml"], "--log-format: 'xml' is not plain or json"),
    ],
)
def test_bad_settings_name_the_flag(
    argv: list[str], complaint: str, secrets_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if argv and argv[0] != "--webhook-token-file":
        argv = [*argv, "--webhook-token-file", str(secrets_dir / "webhook-token")]
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv, {})
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


def test_a_short_token_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "token").write_text("short")
    with pytest.raises(SystemExit):
        parse_config(["--webhook-token-file", str(tmp_path / "token")], {})
    assert "shorter than 16 characters" in capsys.readouterr().err


def test_every_flag_and_variable_is_documented() -> None:
    docs = (REPO / "docs" / "threader.md").read_text()
    assert undocumented(_parser(), docs, "LUMEN_THREADER_") == []
    assert "`SLACK_BOT_TOKEN`" in docs


def test_key_prefix_and_volatile_store(
    secrets_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = ["--webhook-token-file", str(secrets_dir / "webhook-token")]
    default = parse_config(token, {})
    assert (default.key_prefix, default.allow_volatile_store) == ("lumen:threader:", False)
    env = {
        "LUMEN_THREADER_KEY_PREFIX": "lumen:monitoring:checkout:",
        "LUMEN_THREADER_ALLOW_VOLATILE_STORE": "true",
    }
    config = parse_config(token, env)
    assert (config.key_prefix, config.allow_volatile_store) == ("lumen:monitoring:checkout:", True)
    flagged = parse_config([*token, "--key-prefix", "{p1}:", "--allow-volatile-store"], {})
    assert (flagged.key_prefix, flagged.allow_volatile_store) == ("{p1}:", True)
    for bad in ("", "lumen threader:", "lumen:\t:", "lumen:\n", "lümen:", "x" * 201):
        with pytest.raises(SystemExit) as exit_info:
            parse_config([*token, "--key-prefix", bad], {})
        assert exit_info.value.code == 2
        assert "--key-prefix: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(token, {"LUMEN_THREADER_KEY_PREFIX": ""})
    assert "--key-prefix: '' is not 1 to 200 printable ASCII" in capsys.readouterr().err
