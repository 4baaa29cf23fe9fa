"""lumen-threader's settings: what the renderer passes is accepted, bad values are refused with
the flag's name, and every setting is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.policy.durations import parse_duration
from lumen_alerting.policy.model import Incidents, ThreaderStore
from lumen_alerting.render.threader import (
    DEFAULT_RAW_ALERT_RETENTION,
    THREADER_DIR,
    enabled_threader,
    threader_args,
)
from lumen_alerting.threader.config import (
    ThreaderConfig,
    _parser,
    _replica_acks,
    default_database_url,
    parse_config,
)
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
        (["--store", "mongodb://x"], "--store: 'mongodb://x' is not memory"),
        (["--store", "mongodb://u:hunter2@x"], "--store: the URL is not memory"),
        (["--store", "redis://:hunter2@x:6379/0"], "--store: the URL holds a password"),
        (["--store", "postgresql://u:hunter2@db/lumen"], "put the URL in a file (--store-file)"),
        (["--store", "file:"], "--store: file: needs a path"),
        (["--replica-acks", "some"], "--replica-acks: 'some' is not a whole number"),
        (["--replica-acks", "-1"], "--replica-acks: must be between 0 and 16"),
        (["--replica-ack-timeout", "0"], "--replica-ack-timeout: must be between 0.01 and 60"),
        (["--store-password-file", "/nonexistent"], "--store-password-file: only for a Redis"),
        (
            ["--store", "redis+cluster://h:7000", "--key-prefix", "lumen:{a}:"],
            "--key-prefix: a Redis Cluster store needs a prefix without { or }",
        ),
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


def test_store_urls_with_a_password_come_from_files(
    secrets_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook = ["--webhook-token-file", str(secrets_dir / "webhook-token")]
    url = "postgresql://lumen:hunter2@db:5432/lumen"
    (secrets_dir / "store").write_text(url + "\n")
    (secrets_dir / "redis-password").write_text("s3cret\n")
    config = parse_config([*webhook, "--store-file", str(secrets_dir / "store")], {})
    assert config.store == url
    assert config.incident_database_url == url, "incidents default to the store's database"
    assert (config.replica_acks, config.replica_ack_timeout) == ("auto", 1.0)
    sentinel = "redis+sentinel://s1:26379,s2:26379/lumen-master/0"
    config = parse_config(
        [
            *webhook,
            *("--store", sentinel),
            *("--store-password-file", str(secrets_dir / "redis-password")),
            *("--replica-acks", "2", "--replica-ack-timeout", "0.5"),
        ],
        {},
    )
    assert (config.store, config.store_password) == (sentinel, "s3cret")
    assert (config.replica_acks, config.replica_ack_timeout) == (2, 0.5)
    assert config.incident_database_url is None, "Redis: no incident store unless named"
    assert parse_config([*webhook, "--replica-acks", "0"], {}).replica_acks == 0
    # The file's URL is never echoed, even when it is not a store URL at all.
    (secrets_dir / "store").write_text("mongodb://u:hunter2@x/db")
    with pytest.raises(SystemExit):
        parse_config([*webhook, "--store-file", str(secrets_dir / "store")], {})
    error = capsys.readouterr().err
    assert "is not memory" in error and "hunter2" not in error
    with pytest.raises(SystemExit):
        parse_config(
            [*webhook, "--store", "memory", "--store-file", str(secrets_dir / "store")], {}
        )
    assert "give one" in capsys.readouterr().err


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


# --- incidents ----------------------------------------------------------------------------------


SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture()
def incident_secrets(secrets_dir: Path) -> Path:
    (secrets_dir / "slack-signing-secret").write_text(SIGNING_SECRET + "\n")
    (secrets_dir / "api-token").write_text("api-token-0123456789\n")
    (secrets_dir / "mysql-url").write_text("mysql://lumen:s3cret@db:3306/lumen\n")
    return secrets_dir


def test_incident_flags(incident_secrets: Path) -> None:
    config = parse_config(
        [
            "--webhook-token-file", str(incident_secrets / "webhook-token"),
            "--database-url-file", str(incident_secrets / "mysql-url"),
            "--slack-signing-secret-file", str(incident_secrets / "slack-signing-secret"),
            "--api-token-file", str(incident_secrets / "api-token"),
            "--alertmanager-url", "http://alertmanager-operated.monitoring:9093/",
            "--public-url", "https://lumen.example.com",
            "--incident-group-by", "alertname, service",
            "--raw-alert-retention", "12h",
        ],
        {},
    )  # fmt: skip
    assert config.database_url == "mysql://lumen:s3cret@db:3306/lumen"
    assert config.incident_database_url == config.database_url
    assert config.slack_signing_secret == SIGNING_SECRET
    assert config.api_token == "api-token-0123456789"
    # No trailing slash: the clients append /api/v2/... and /slack/interactions.
    assert config.alertmanager_url == "http://alertmanager-operated.monitoring:9093"
    assert config.public_url == "https://lumen.example.com"
    assert config.incident_group_by == ("alertname", "service")
    assert config.raw_alert_retention == 12 * 3600


def test_incident_environment_forms(incident_secrets: Path) -> None:
    env = {
        "LUMEN_THREADER_WEBHOOK_TOKEN_FILE": str(incident_secrets / "webhook-token"),
        "LUMEN_THREADER_DATABASE_URL": "postgresql://lumen@db/incidents",
        "LUMEN_THREADER_SLACK_SIGNING_SECRET_FILE": str(incident_secrets / "slack-signing-secret"),
        "LUMEN_THREADER_API_TOKEN_FILE": str(incident_secrets / "api-token"),
        "LUMEN_THREADER_ALERTMANAGER_URL": "https://am.example.com:9093",
        "LUMEN_THREADER_PUBLIC_URL": "http://localhost:8080",
        "LUMEN_THREADER_INCIDENT_GROUP_BY": "cluster,namespace,service",
        "LUMEN_THREADER_RAW_ALERT_RETENTION": "86400",
    }
    config = parse_config([], env)
    assert config.database_url == "postgresql://lumen@db/incidents"
    assert (config.slack_signing_secret, config.api_token) == (
        SIGNING_SECRET,
        "api-token-0123456789",
    )
    assert (config.alertmanager_url, config.public_url) == (
        "https://am.example.com:9093",
        "http://localhost:8080",
    )
    assert config.incident_group_by == ("cluster", "namespace", "service")
    assert config.raw_alert_retention == 86400
    flagged = parse_config(["--incident-group-by", "alertname"], env)
    assert flagged.incident_group_by == ("alertname",), "a flag wins"


def test_incident_defaults(secrets_dir: Path) -> None:
    token = ["--webhook-token-file", str(secrets_dir / "webhook-token")]
    config = parse_config(token, {})
    assert (config.slack_signing_secret, config.api_token) == ("", ""), "interactivity, API off"
    assert (config.alertmanager_url, config.public_url) == (None, None)
    assert config.incident_group_by == (), "one incident per alert occurrence"
    assert config.raw_alert_retention == 30 * 86400


@pytest.mark.parametrize(
    ("store", "database"),
    [
        ("sqlite:/var/lib/lumen/threader.db", "sqlite:////var/lib/lumen/incidents.db"),
        ("file:/data/threads", "sqlite:////data/incidents.db"),
        ("memory", "sqlite:///:memory:"),
        ("redis://redis:6379/0", None),
    ],
)
def test_the_default_database_follows_the_store(
    store: str, database: str | None, secrets_dir: Path
) -> None:
    token = ["--webhook-token-file", str(secrets_dir / "webhook-token")]
    assert parse_config([*token, "--store", store], {}).database_url == database
    assert ThreaderConfig(store=store).incident_database_url == database
    assert default_database_url(store) == database


def test_a_relative_sqlite_store_puts_incidents_beside_it(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(secrets_dir)
    token = ["--webhook-token-file", str(secrets_dir / "webhook-token")]
    config = parse_config([*token, "--store", "sqlite:state/threader.db"], {})
    assert config.database_url == f"sqlite:///{secrets_dir}/state/incidents.db"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (
            ["--database-url", "sqlite:///x.db", "--database-url-file", "{dir}/database-url"],
            "--database-url and --database-url-file: give one",
        ),
        (["--database-url-file", "/nonexistent"], "--database-url-file: cannot read /nonexistent"),
        (["--database-url-file", "{dir}/empty"], "--database-url-file: {dir}/empty is empty"),
        (
            ["--slack-signing-secret-file", "/nonexistent"],
            "--slack-signing-secret-file: cannot read /nonexistent",
        ),
        (["--slack-signing-secret-file", "{dir}/empty"], "--slack-signing-secret-file: "),
        (["--api-token-file", "/nonexistent"], "--api-token-file: cannot read /nonexistent"),
        (["--api-token-file", "{dir}/empty"], "--api-token-file: the token in"),
        (["--alertmanager-url", "alertmanager:9093"], "--alertmanager-url: 'alertmanager:9093'"),
        (["--alertmanager-url", "ftp://am:9093"], "is not an http:// or https:// URL"),
        (["--public-url", "https://"], "--public-url: 'https://' is not an http"),
        (["--public-url", "https://a b"], "--public-url: 'https://a b' is not an http"),
        (["--incident-group-by", "service-name"], "--incident-group-by: 'service-name' is not"),
        (["--incident-group-by", "1abc"], "--incident-group-by: '1abc' is not a label name"),
        (["--incident-group-by", "a,b,a"], "--incident-group-by: a label is named twice"),
        (["--raw-alert-retention", "1 day"], "--raw-alert-retention: '1 day' is not a duration"),
        (["--raw-alert-retention", "30s"], "--raw-alert-retention: must be between 1m and 100y"),
        (["--raw-alert-retention", "nan"], "--raw-alert-retention: must be between"),
    ],
)
def test_bad_incident_settings_name_the_flag(
    argv: list[str], complaint: str, secrets_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (secrets_dir / "empty").write_text("\n")
    argv = [arg.replace("{dir}", str(secrets_dir)) for arg in argv]
    token = ["--webhook-token-file", str(secrets_dir / "webhook-token")]
    with pytest.raises(SystemExit) as exit_info:
        parse_config([*token, *argv], {})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert complaint.replace("{dir}", str(secrets_dir)) in err
    assert "s3cret" not in err


def test_a_database_url_with_a_password_is_never_a_flag_value_in_errors(
    incident_secrets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--webhook-token-file", str(incident_secrets / "webhook-token"),
        "--database-url-file", str(incident_secrets / "mysql-url"),
        "--database-url", "sqlite:///x.db",
    ]  # fmt: skip
    with pytest.raises(SystemExit):
        parse_config(argv, {})
    assert "s3cret" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--database-url", "mysql://lumen:s3cret@db:3306/lumen"], {}),
        ([], {"LUMEN_THREADER_DATABASE_URL": "postgresql://lumen:s3cret@db/lumen"}),
    ],
)
def test_a_database_password_is_refused_outside_a_file(
    argv: list[str], env: dict[str, str], secrets_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = ["--webhook-token-file", str(secrets_dir / "webhook-token")]
    with pytest.raises(SystemExit) as exit_info:
        parse_config([*token, *argv], env)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--database-url: the URL holds a password; put it in a file" in err
    assert "s3cret" not in err


def test_rendered_incident_settings_are_accepted(incident_secrets: Path) -> None:
    # The renderer mounts every Secret key under the file name the flag reads.
    (incident_secrets / "database-url").write_text("mysql://lumen:s3cret@db:3306/lumen\n")
    manifest = yaml.safe_load((REPO / "examples" / "gateway.yaml").read_text())
    manifest["spec"]["threader"]["incidents"] = {
        "databaseURL": {"name": "lumen-db", "key": "mysql-url"},
        "signingSecret": {"name": "slack-app", "key": "signing-secret"},
        "apiToken": {"name": "lumen-api", "key": "token"},
        "alertmanagerURL": "http://alertmanager-operated.monitoring:9093",
        "publicURL": "https://lumen.example.com",
        "groupBy": ["alertname", "service"],
        "rawAlertRetention": "7d",
    }
    policy = policy_from_manifest(manifest)
    threader = enabled_threader(policy)
    assert threader is not None
    argv = [
        arg.replace(THREADER_DIR, str(incident_secrets)) for arg in threader_args(policy, threader)
    ]
    config = parse_config(argv, {})
    assert config.database_url == "mysql://lumen:s3cret@db:3306/lumen"
    assert (config.slack_signing_secret, config.api_token) == (
        SIGNING_SECRET,
        "api-token-0123456789",
    )
    assert config.alertmanager_url == "http://alertmanager-operated.monitoring:9093"
    assert config.public_url == "https://lumen.example.com"
    assert config.incident_group_by == ("alertname", "service")
    assert config.raw_alert_retention == 7 * 86400


def test_the_policy_and_the_threader_agree_on_the_retention_default(secrets_dir: Path) -> None:
    # The renderer leaves --raw-alert-retention out while the policy keeps its default.
    token = ["--webhook-token-file", str(secrets_dir / "webhook-token")]
    default = Incidents().raw_alert_retention
    assert default == DEFAULT_RAW_ALERT_RETENTION
    assert parse_config(token, {}).raw_alert_retention == parse_duration(default)


@pytest.mark.parametrize("name", ["workloads-postgresql", "workloads-redis-sentinel"])
def test_the_threader_takes_what_the_operator_renders_for_each_store(
    name: str, secrets_dir: Path
) -> None:
    """The rendered container's flags, with its mounted Secret files put in a directory of the
    test's own, parse as the policy says; the model's defaults are the threader's."""
    manifest = yaml.safe_load((REPO / "tests" / "policies" / f"{name}.yaml").read_text())
    policy = policy_from_manifest(manifest)
    threader = policy.spec.threader
    assert threader is not None
    files = {
        "webhook-token": "webhook-token-0123456789abcdef",
        "admin-token": "admin-token-0123456789abcdef",
        "store-url": "postgresql://lumen:hunter2@postgres:5432/lumen",
        "store-password": "s3cret",
        "database-url": "postgresql://lumen:hunter2@postgres:5432/incidents",
        "slack-token": "xoxb-rendered",
    }
    for file, content in files.items():
        (secrets_dir / file).write_text(content + "\n")
    argv = [arg.replace(THREADER_DIR, str(secrets_dir)) for arg in threader_args(policy, threader)]
    config = parse_config(argv, {})
    if name == "workloads-postgresql":
        assert config.store == files["store-url"]
        assert config.incident_database_url == files["store-url"], "one database for both"
        assert (config.replica_acks, config.replica_ack_timeout) == ("auto", 1.0)
    else:
        assert config.store == threader.store.url
        assert config.store_password == "s3cret"
        assert (config.replica_acks, config.replica_ack_timeout) == (2, 1.5)
        assert config.incident_database_url == files["database-url"]
    assert config.key_prefix == f"lumen:{policy.namespace}:{policy.name}:"
    defaults = ThreaderStore()
    assert _replica_acks(defaults.replica_acks) == ThreaderConfig().replica_acks
    assert parse_duration(defaults.replica_ack_timeout) == ThreaderConfig().replica_ack_timeout
