"""lumen-threader's settings: what the renderer passes is accepted, bad values are refused with
the flag's name, and every setting is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.render.threader import THREADER_DIR, enabled_threader, threader_args
from lumen_alerting.threader.config import _parser, parse_config
from tests.support.schemas import REPO
from tests.support.settings_docs import undocumented

TOKEN = "0123456789abcdef0123"


@pytest.fixture()
def secrets_dir(tmp_path: Path) -> Path:
    for name in ("webhook-token", "admin-token"):
        (tmp_path / name).write_text(TOKEN + "\n")
    (tmp_path / "database-url").write_text("postgresql://lumen@db/incidents")
    (tmp_path / "slack-token").write_text("xoxb-1\n")
    return tmp_path


@pytest.mark.parametrize("example", ["gateway.yaml", "http-api.yaml"])
def test_the_rendered_arguments_are_accepted(example: str, secrets_dir: Path) -> None:
    policy = policy_from_manifest(yaml.safe_load((REPO / "examples" / example).read_text()))
    threader = enabled_threader(policy)
    assert threader is not None
    argv = [arg.replace(THREADER_DIR, str(secrets_dir)) for arg in threader_args(policy, threader)]
    config = parse_config(argv, {})  # the bot token comes from the rendered token file
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
        "LUMEN_THREADER_MAX_OUTBOX_ENTRIES": "500",
        "LUMEN_THREADER_MAX_OUTBOX_BYTES": "1048576",
        "LUMEN_THREADER_CONSUMER": "pod-1",
        "LUMEN_THREADER_LOG_FORMAT": "json",
    }
    config = parse_config([], env)
    assert (config.host, config.port, config.store) == ("127.0.0.1", 9000, "redis://redis:6379/2")
    assert (config.slack_api_url, config.default_channel) == ("http://slack.local/api", "#ops")
    assert (config.thread_key, config.reply_on_repeat) == ("labels", False)
    assert (config.channel_interval, config.dedupe_window) == (0.5, 600.0)
    assert (config.consumer, config.log_format) == ("pod-1", "json")
    assert (config.max_outbox_entries, config.max_outbox_bytes) == (500, 1048576)
    assert parse_config(["--store", "memory"], env).store == "memory", "a flag wins"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ([], "--webhook-token-file: required"),
        (["--webhook-token-file", "/nonexistent"], "cannot read /nonexistent"),
        (["--listen", "8080"], "--listen: '8080' is not HOST:PORT"),
        (["--store", "postgres://x"], "--store: 'postgres://x' is not memory"),
        (["--default-channel", "alerts"], "--default-channel: 'alerts' is not #name"),
        (["--default-channel", "#ops\n"], "--default-channel: '#ops\\n' is not #name"),
        (["--thread-key", "hash"], "--thread-key: 'hash' is not occurrence or labels"),
        (["--channel-interval", "fast"], "--channel-interval: not a number"),
        (["--dedupe-window", "0"], "--dedupe-window: must be between"),
        (["--store", "sqlite:"], "--store: sqlite: needs a path"),
        (["--max-outbox-entries", "0"], "--max-outbox-entries: must be between 1 and"),
        (["--max-outbox-bytes", "64MiB"], "--max-outbox-bytes: '64MiB' is not a whole number"),
        (["--log-format", "xml"], "--log-format: 'xml' is not plain or json"),
        (["--slack-timeout", "0"], "--slack-timeout: must be between 0.1 and 300 seconds"),
        (["--header-timeout", "soon"], "--header-timeout: 'soon' is not a number of seconds"),
        (["--max-connections", "0"], "--max-connections: must be between 1 and 1000000"),
        (["--max-connections", "1.5"], "--max-connections: '1.5' is not a whole number"),
        (["--slack-token-file", "/nonexistent"], "--slack-token-file: cannot read /nonexistent"),
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


def test_connection_limits_and_the_slack_token_file(secrets_dir: Path) -> None:
    (secrets_dir / "slack-token").write_text("xoxb-from-a-file\n")
    env = {
        "LUMEN_THREADER_WEBHOOK_TOKEN_FILE": str(secrets_dir / "webhook-token"),
        "LUMEN_THREADER_HEADER_TIMEOUT": "5",
        "LUMEN_THREADER_BODY_TIMEOUT": "20",
        "LUMEN_THREADER_IDLE_TIMEOUT": "400",
        "LUMEN_THREADER_MAX_CONNECTIONS": "50",
        "LUMEN_THREADER_SLACK_TIMEOUT": "2.5",
        "LUMEN_THREADER_SLACK_TOKEN_FILE": str(secrets_dir / "slack-token"),
        "SLACK_BOT_TOKEN": "xoxb-from-the-environment",
    }
    config = parse_config([], env)
    assert (config.header_timeout, config.body_timeout, config.idle_timeout) == (5, 20, 400)
    assert (config.max_connections, config.slack_timeout) == (50, 2.5)
    assert config.slack_token == "xoxb-from-a-file", "the file wins over the variable"
    defaults = parse_config(["--webhook-token-file", str(secrets_dir / "webhook-token")], {})
    assert (defaults.header_timeout, defaults.body_timeout, defaults.idle_timeout) == (10, 30, 310)
    assert (defaults.max_connections, defaults.slack_timeout, defaults.slack_token) == (
        1000,
        10,
        "",
    )


def test_a_short_token_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "token").write_text("short")
    with pytest.raises(SystemExit):
        parse_config(["--webhook-token-file", str(tmp_path / "token")], {})
    assert "shorter than 16 characters" in capsys.readouterr().err


def test_store_forms_and_outbox_defaults(secrets_dir: Path) -> None:
    token = ["--webhook-token-file", str(secrets_dir / "webhook-token")]
    for spec in ("sqlite:/var/lib/lumen/threader.db", "file:/var/lib/lumen/threads"):
        assert parse_config([*token, "--store", spec], {}).store == spec
    config = parse_config(token, {})
    assert (config.max_outbox_entries, config.max_outbox_bytes) == (10_000, 64 * 1024 * 1024)


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


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LUMEN_THREADER_ALLOW_VOLATILE_STORE", "Yes", True),
        ("LUMEN_THREADER_ALLOW_VOLATILE_STORE", "0", False),
        ("LUMEN_THREADER_ALLOW_VOLATILE_STORE", "", False),
        ("LUMEN_THREADER_NO_REPLY_ON_REPEAT", "on", True),
        ("LUMEN_THREADER_NO_REPLY_ON_REPEAT", "off", False),
    ],
)
def test_switch_variables_take_the_shared_true_false_words(
    variable: str, value: str, expected: bool, secrets_dir: Path
) -> None:
    env = {"LUMEN_THREADER_WEBHOOK_TOKEN_FILE": str(secrets_dir / "webhook-token"), variable: value}
    config = parse_config(["--store", "memory"], env)
    if variable.endswith("VOLATILE_STORE"):
        assert config.allow_volatile_store is expected
    else:
        assert config.reply_on_repeat is not expected


@pytest.mark.parametrize(
    "variable", ["LUMEN_THREADER_ALLOW_VOLATILE_STORE", "LUMEN_THREADER_NO_REPLY_ON_REPEAT"]
)
def test_a_switch_variable_that_is_no_true_false_word_is_refused(
    variable: str, secrets_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "LUMEN_THREADER_WEBHOOK_TOKEN_FILE": str(secrets_dir / "webhook-token"),
        variable: "maybe",
    }
    with pytest.raises(SystemExit) as exit_info:
        parse_config([], env)
    assert exit_info.value.code == 2
    flag = "--" + variable.removeprefix("LUMEN_THREADER_").lower().replace("_", "-")
    assert f"{flag}: 'maybe' is not true or false" in capsys.readouterr().err
