"""Threader settings from flags, each with a ``LUMEN_THREADER_*`` environment form (see
``lumen_alerting.settings``).

The Slack bot token is read from ``--slack-token-file`` (a mounted Secret) or else from
``SLACK_BOT_TOKEN``, and the tokens the threader checks, the Slack signing secret and a database
URL with a password come from files too, so no secret is ever a command-line argument.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ..policy.durations import parse_duration
from ..settings import (
    Setting,
    add_version_flag,
    flag_or_environment,
    listen_address,
    parse_or_exit,
    seconds,
    secret_file,
    token_file,
    true_or_false,
    whole_number,
)
from .store.contract import ReplicaAcks

ENV_PREFIX = "LUMEN_THREADER_"
DEFAULT_SLACK_API = "https://slack.com/api"
ThreadKeyMode = Literal["occurrence", "labels"]
CHANNEL = re.compile(r"#[a-z0-9][a-z0-9._-]{0,79}|[CDG][A-Z0-9]{5,}")  # whole string: fullmatch
DEFAULT_KEY_PREFIX = "lumen:threader:"
MAX_KEY_PREFIX = 200
# Printable ASCII without spaces: the prefix shows up in redis-cli, logs and SCAN patterns.
KEY_PREFIX = re.compile(r"[!-~]+")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")  # Prometheus' (fullmatch)
HTTP_URL = re.compile(r"https?://[^\s/?#]+[^\s]*")  # fullmatch
DEFAULT_RAW_ALERT_RETENTION = 30 * 86400.0
# With a Redis store (several replicas, no file of their own) and no --database-url: the state
# directory the renderer mounts, as for the SQLite store.
DEFAULT_STATE_DIR = "/var/lib/lumen"
# The memory store keeps nothing across a restart; its incidents do not outlive it either. One
# in-memory database for the whole process: the incident store opens it with a single shared
# connection (SQLAlchemy's StaticPool), else each connection would see an empty database.
MEMORY_DATABASE_URL = "sqlite:///:memory:"
REDIS_SCHEMES = ("redis://", "rediss://", "redis+sentinel://", "redis+cluster://")
POSTGRESQL_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
STORE_FORMS = (
    "memory, sqlite:PATH, file:PATH, redis://, rediss://, redis+sentinel://, redis+cluster:// "
    "or postgresql:// URL"
)


@dataclass(frozen=True)
class ThreaderConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    # memory | sqlite:PATH (file:PATH alias) | a Redis URL (REDIS_SCHEMES) | a PostgreSQL URL
    store: str = "memory"
    store_password: str = ""  # Redis AUTH, for the data nodes and the sentinels (never logged)
    replica_acks: ReplicaAcks = "auto"
    replica_ack_timeout: float = 1.0
    slack_api_url: str = DEFAULT_SLACK_API
    slack_token: str = ""
    default_channel: str | None = None
    webhook_token: str = ""
    admin_token: str = ""
    thread_key: ThreadKeyMode = "occurrence"
    reply_on_repeat: bool = True
    channel_interval: float = 1.0
    dedupe_window: float = 3600.0
    max_outbox_entries: int = 10_000
    max_outbox_bytes: int = 64 * 1024 * 1024
    consumer: str = ""
    key_prefix: str = DEFAULT_KEY_PREFIX
    allow_volatile_store: bool = False
    # None: derived from the store (``default_database_url``); parse_config always fills it in.
    database_url: str | None = None
    slack_signing_secret: str = ""  # empty: no buttons, no POST /slack/interactions
    api_token: str = ""  # empty: no incident REST API and no web page
    alertmanager_url: str | None = None  # None: no Silence button
    public_url: str | None = None
    incident_group_by: tuple[str, ...] = ()  # (): one incident per alert occurrence
    raw_alert_retention: float = DEFAULT_RAW_ALERT_RETENTION  # seconds
    log_format: Literal["plain", "json"] = "plain"
    log_level: str = "info"
    slack_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 310.0
    max_connections: int = 1000

    @property
    def incident_database_url(self) -> str | None:
        """The incident database: ``database_url``, else the default for the store (None: no
        incident store)."""
        return self.database_url or default_database_url(self.store)


def default_database_url(store: str) -> str | None:
    """The incident database when none is given: SQLite next to a SQLite store's file
    (``sqlite:/var/lib/lumen/threader.db`` -> ``sqlite:////var/lib/lumen/incidents.db``), in
    memory with the memory store, the store's own database with a PostgreSQL store (one database
    for threads and incidents), and none with a Redis store: its replicas would each keep a
    file of their own (the renderer always names the database)."""
    if store.startswith(POSTGRESQL_SCHEMES):
        return store
    if store == "memory":
        return MEMORY_DATABASE_URL
    if store.startswith(("sqlite:", "file:")):
        directory = os.path.dirname(os.path.abspath(store.partition(":")[2]))
        return f"sqlite:///{os.path.join(directory, 'incidents.db')}"
    return None


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> ThreaderConfig:
    """Settings from ``argv`` and ``environ``; exits with a usage message on bad input."""
    return parse_or_exit(
        _parser(),
        argv,
        lambda args: _config(flag_or_environment(args, environ, ENV_PREFIX), environ),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lumen-threader",
        description="Receive Alertmanager webhooks and keep one Slack thread per alert.",
        epilog="Every flag can also be set as LUMEN_THREADER_<FLAG>; the Slack bot token comes "
        "from --slack-token-file, else from SLACK_BOT_TOKEN.",
    )
    add = parser.add_argument
    add("--listen", metavar="HOST:PORT", help="address to serve on (default: 0.0.0.0:8080)")
    add(
        "--store",
        metavar="STORE",
        help="memory, sqlite:PATH (file:PATH is an alias), redis://HOST:PORT/DB, "
        "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB], "
        "redis+cluster://HOST:PORT[,HOST:PORT...] or postgresql://USER@HOST:PORT/DB; without a "
        "password (see --store-file, --store-password-file) (default: memory)",
    )
    add(
        "--store-file", metavar="FILE",
        help="file holding the store URL, for a URL with a password (not with --store)",
    )  # fmt: skip
    add(
        "--store-password-file", metavar="FILE",
        help="file holding the Redis password, for the Redis servers and the sentinels",
    )  # fmt: skip
    add(
        "--replica-acks", metavar="auto|N",
        help="Redis replicas that must have an accepted alert before POST /alert answers 200 "
        "(WAIT); 0 is off; auto: 1 while the master has a replica, else 0 (default: auto)",
    )  # fmt: skip
    add(
        "--replica-ack-timeout", metavar="SECONDS",
        help="how long to wait for the replicas; past it POST /alert answers 503 (default: 1)",
    )  # fmt: skip
    add("--slack-api-url", metavar="URL", help=f"Slack Web API base (default: {DEFAULT_SLACK_API})")
    add("--default-channel", metavar="CHANNEL", help="channel when a request names none")
    add("--webhook-token-file", metavar="FILE", help="bearer token Alertmanager must present")
    add("--admin-token-file", metavar="FILE", help="bearer token of the /cache endpoints")
    add(
        "--thread-key", metavar="occurrence|labels",
        help="one thread per alert occurrence (fingerprint + start, default) or per the seed's "
        "label key alertname|severity|service|cluster|env",
    )  # fmt: skip
    add(
        "--no-reply-on-repeat", action="store_true", default=None,
        help="do not reply in the thread when Alertmanager repeats a firing alert",
    )  # fmt: skip
    add(
        "--channel-interval",
        metavar="SECONDS",
        help="pause between messages to one channel (default: 1)",
    )
    add(
        "--dedupe-window", metavar="SECONDS",
        help="how long the same alert of the same notification counts as a duplicate (default: "
        "3600; keep it below Alertmanager's repeat_interval)",
    )  # fmt: skip
    add(
        "--max-outbox-entries", metavar="N",
        help="messages the outbox holds at most; past it POST /alert answers 503 (default: 10000)",
    )  # fmt: skip
    add(
        "--max-outbox-bytes", metavar="BYTES",
        help="bytes of queued alerts the outbox holds at most; past it POST /alert answers 503 "
        "(default: 67108864, 64 MiB)",
    )  # fmt: skip
    add(
        "--consumer",
        metavar="NAME",
        help="this replica's outbox consumer name (default: host name)",
    )
    add(
        "--key-prefix", metavar="PREFIX",
        help=f"prefix of every Redis key; threaders sharing one Redis database need one each "
        f"(default: {DEFAULT_KEY_PREFIX})",
    )  # fmt: skip
    add(
        "--allow-volatile-store", action="store_true", default=None,
        help="be ready even when Redis may lose acknowledged alerts (no AOF, eviction, or its "
        "persistence cannot be read)",
    )  # fmt: skip
    add(
        "--database-url", metavar="URL",
        help="incident database without a password: sqlite:///PATH, postgresql://..., "
        "mysql://... (default: SQLite incidents.db next to a sqlite: store's file, in memory "
        "with the memory store; with Redis, no incident store unless one is given)",
    )  # fmt: skip
    add(
        "--database-url-file", metavar="FILE",
        help="file holding the incident database URL, for a URL with a password (not with "
        "--database-url)",
    )  # fmt: skip
    add(
        "--slack-signing-secret-file", metavar="FILE",
        help="file holding the Slack app's signing secret; turns on the buttons of parent "
        "messages and POST /slack/interactions (default: off)",
    )  # fmt: skip
    add(
        "--api-token-file", metavar="FILE",
        help="file holding the bearer token of the incident REST API, also the password of the "
        "/incidents page (default: both off)",
    )  # fmt: skip
    add(
        "--alertmanager-url", metavar="URL",
        help="Alertmanager the Silence button creates silences in, http(s)://HOST:PORT "
        "(default: no Silence button)",
    )  # fmt: skip
    add(
        "--public-url",
        metavar="URL",
        help="the threader's external http(s) URL, for links to incident pages (default: none)",
    )
    add(
        "--incident-group-by", metavar="LABELS",
        help="comma-separated label names whose values make one incident (default: empty, one "
        "incident per alert occurrence)",
    )  # fmt: skip
    add(
        "--raw-alert-retention", metavar="DURATION",
        help="how long received alerts are kept, a Prometheus duration such as 30d or 12h, or "
        "seconds (default: 30d)",
    )  # fmt: skip
    add("--log-format", metavar="plain|json", help="log format (default: plain)")
    add("--log-level", metavar="LEVEL", help="debug, info, warning or error (default: info)")
    add(
        "--slack-timeout",
        metavar="SECONDS",
        help="how long to wait for one Slack API answer (default: 10)",
    )
    add(
        "--slack-token-file",
        metavar="FILE",
        help="file holding the Slack bot token (default: the SLACK_BOT_TOKEN variable)",
    )
    add(
        "--header-timeout",
        metavar="SECONDS",
        help="time for a request's headers to arrive, from its first byte (default: 10)",
    )
    add(
        "--body-timeout",
        metavar="SECONDS",
        help="time for a notification's body to arrive after its headers (default: 30)",
    )
    add(
        "--idle-timeout",
        metavar="SECONDS",
        help="close a kept-alive connection idle this long (default: 310)",
    )
    add(
        "--max-connections",
        metavar="N",
        help="open connections at most; past it the longest waiting is closed (default: 1000)",
    )
    add_version_flag(parser)
    return parser


def _config(setting: Setting, environ: Mapping[str, str]) -> ThreaderConfig:
    host, port = listen_address(setting("listen") or "0.0.0.0:8080")
    store = _store(setting("store"), setting("store-file"))
    key_prefix = _key_prefix(setting("key-prefix"))
    if store.startswith("redis+cluster://") and ("{" in key_prefix or "}" in key_prefix):
        # The prefix becomes the hash tag of every key: a brace in it would cut the tag short.
        raise ValueError("--key-prefix: a Redis Cluster store needs a prefix without { or }")
    channel = setting("default-channel") or None
    if channel is not None and not CHANNEL.fullmatch(channel):
        raise ValueError(f"--default-channel: {channel!r} is not #name or a channel id")
    thread_key = setting("thread-key") or "occurrence"
    if thread_key not in ("occurrence", "labels"):
        raise ValueError(f"--thread-key: {thread_key!r} is not occurrence or labels")
    no_repeat = _switch(setting, "no-reply-on-repeat")
    try:
        interval = float(setting("channel-interval") or "1")
    except ValueError:
        raise ValueError("--channel-interval: not a number of seconds") from None
    if not 0 <= interval <= 60:
        raise ValueError("--channel-interval: must be between 0 and 60 seconds")
    try:
        dedupe_window = float(setting("dedupe-window") or "3600")
    except ValueError:
        raise ValueError("--dedupe-window: not a number of seconds") from None
    if not 1 <= dedupe_window <= 7 * 86400:
        raise ValueError("--dedupe-window: must be between 1 second and 7 days")
    max_outbox_entries = whole_number(
        "max-outbox-entries", setting("max-outbox-entries"), 10_000, low=1, high=10**9
    )
    max_outbox_bytes = whole_number(
        "max-outbox-bytes", setting("max-outbox-bytes"), 64 * 1024**2, low=1, high=2**50
    )
    log_format = (setting("log-format") or "plain").lower()
    if log_format not in ("plain", "json"):
        raise ValueError(f"--log-format: {log_format!r} is not plain or json")
    database_url = _database_url(setting("database-url"), setting("database-url-file"), store)
    webhook_token = token_file("--webhook-token-file", setting("webhook-token-file")) or ""
    if not webhook_token:
        raise ValueError("--webhook-token-file: required; Alertmanager must authenticate")
    return ThreaderConfig(
        host=host,
        port=port,
        store=store,
        slack_api_url=setting("slack-api-url") or DEFAULT_SLACK_API,
        slack_token=_slack_token(setting("slack-token-file"), environ),
        default_channel=channel,
        webhook_token=webhook_token,
        admin_token=token_file("--admin-token-file", setting("admin-token-file")) or "",
        thread_key=thread_key,  # type: ignore[arg-type]
        reply_on_repeat=not no_repeat,
        channel_interval=interval,
        dedupe_window=dedupe_window,
        max_outbox_entries=max_outbox_entries,
        max_outbox_bytes=max_outbox_bytes,
        consumer=setting("consumer") or socket.gethostname(),
        key_prefix=key_prefix,
        store_password=_store_password(setting("store-password-file"), store),
        replica_acks=_replica_acks(setting("replica-acks")),
        replica_ack_timeout=seconds(
            "replica-ack-timeout", setting("replica-ack-timeout"), 1.0, low=0.01, high=60
        ),
        allow_volatile_store=_switch(setting, "allow-volatile-store"),
        database_url=database_url,
        slack_signing_secret=_signing_secret(setting("slack-signing-secret-file")),
        api_token=token_file("--api-token-file", setting("api-token-file")) or "",
        alertmanager_url=_http_url("alertmanager-url", setting("alertmanager-url")),
        public_url=_http_url("public-url", setting("public-url")),
        incident_group_by=_label_names("incident-group-by", setting("incident-group-by")),
        raw_alert_retention=_retention(setting("raw-alert-retention")),
        log_format=log_format,  # type: ignore[arg-type]
        log_level=(setting("log-level") or "info").lower(),
        slack_timeout=seconds("slack-timeout", setting("slack-timeout"), 10.0, low=0.1, high=300),
        header_timeout=seconds(
            "header-timeout", setting("header-timeout"), 10.0, low=0.1, high=3600
        ),
        body_timeout=seconds("body-timeout", setting("body-timeout"), 30.0, low=0.1, high=3600),
        idle_timeout=seconds("idle-timeout", setting("idle-timeout"), 310.0, low=0.1, high=86400),
        max_connections=whole_number(
            "max-connections", setting("max-connections"), 1000, low=1, high=1_000_000
        ),
    )


def _store(spec: str | None, path: str | None) -> str:
    """``--store``, or the URL in ``--store-file`` (never both); checked for its form only: the
    store itself says at start whether it can be reached."""
    if spec and path:
        raise ValueError("--store and --store-file: give one (the file for a URL with a password)")
    if path:
        store = secret_file("--store-file", path)
        if not store:
            raise ValueError(f"--store-file: {path} is empty")
        where = f"--store-file: {path}"  # never the URL itself: it may hold a password
    else:
        store = spec or "memory"
        where = "--store: the URL" if _has_password(store) else f"--store: {store!r}"
    if not (
        store == "memory"
        or store.startswith(("sqlite:", "file:", *REDIS_SCHEMES, *POSTGRESQL_SCHEMES))
    ):
        raise ValueError(f"{where} is not {STORE_FORMS}")
    if store.startswith(("sqlite:", "file:")) and not store.partition(":")[2]:
        raise ValueError(f"{where.partition(':')[0]}: {store.partition(':')[0]}: needs a path")
    if not path and _has_password(store):
        raise ValueError(
            "--store: the URL holds a password; put the URL in a file (--store-file), or the "
            "Redis password in one (--store-password-file)"
        )
    return store


def _store_password(path: str | None, store: str) -> str:
    if not path:
        return ""
    if not store.startswith(REDIS_SCHEMES):
        raise ValueError("--store-password-file: only for a Redis store")
    password = secret_file("--store-password-file", path)
    if not password:
        raise ValueError(f"--store-password-file: {path} is empty")
    return password


def _replica_acks(value: str | None) -> ReplicaAcks:
    if not value or value.strip().lower() == "auto":
        return "auto"
    return whole_number("replica-acks", value, 0, low=0, high=16)


def _slack_token(path: str | None, environ: Mapping[str, str]) -> str:
    """The bot token from ``--slack-token-file``, else ``SLACK_BOT_TOKEN`` (never logged)."""
    if not path:
        return environ.get("SLACK_BOT_TOKEN", "").strip()
    token = secret_file("--slack-token-file", path)
    if not token:
        raise ValueError(f"--slack-token-file: {path} is empty")
    return token


def _switch(setting: Setting, flag: str) -> bool:
    """An on/off flag: given, or its variable set to a true/false word (empty means off)."""
    value = setting(flag)
    if not value:
        return False
    try:
        return true_or_false(value)
    except ValueError as error:
        raise ValueError(f"--{flag}: {error}") from None


def _key_prefix(value: str | None) -> str:
    if value is None:
        return DEFAULT_KEY_PREFIX
    if not 0 < len(value) <= MAX_KEY_PREFIX or not KEY_PREFIX.fullmatch(value):
        raise ValueError(
            f"--key-prefix: {value!r} is not 1 to {MAX_KEY_PREFIX} printable ASCII characters "
            "without spaces"
        )
    return value


def _database_url(url: str | None, path: str | None, store: str) -> str | None:
    """``--database-url``, or the content of ``--database-url-file`` (never both), else the
    store's default."""
    if url and path:
        raise ValueError(
            "--database-url and --database-url-file: give one (the file for a URL with a password)"
        )
    if path:
        url = secret_file("--database-url-file", path)
        if not url:
            raise ValueError(f"--database-url-file: {path} is empty")
        return url
    if url and _has_password(url):
        # Never echo the URL: the error line would carry the password into logs.
        raise ValueError(
            "--database-url: the URL holds a password; put it in a file (--database-url-file)"
        )
    return url or default_database_url(store)


def _has_password(url: str) -> bool:
    try:
        return bool(urlsplit(url).password)
    except ValueError:  # a malformed port; the store reports the URL itself as unusable
        return False


def _signing_secret(path: str | None) -> str:
    if not path:
        return ""
    secret = secret_file("--slack-signing-secret-file", path)
    if not secret:
        raise ValueError(f"--slack-signing-secret-file: {path} is empty")
    return secret


def _http_url(flag: str, value: str | None) -> str | None:
    if not value:
        return None
    if not HTTP_URL.fullmatch(value):
        raise ValueError(f"--{flag}: {value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


def _label_names(flag: str, value: str | None) -> tuple[str, ...]:
    names = tuple(name.strip() for name in (value or "").split(",") if name.strip())
    for name in names:
        if not LABEL_NAME.fullmatch(name):
            raise ValueError(f"--{flag}: {name!r} is not a label name")
    if len(set(names)) != len(names):
        raise ValueError(f"--{flag}: a label is named twice")
    return names


def _retention(value: str | None) -> float:
    """A Prometheus duration (``30d``, ``12h``) or a number of seconds; at least one minute."""
    if not value:
        return DEFAULT_RAW_ALERT_RETENTION
    try:
        retention = float(value)
    except ValueError:
        try:
            retention = parse_duration(value)
        except ValueError:
            raise ValueError(
                f"--raw-alert-retention: {value!r} is not a duration (e.g. 30d, 12h) nor seconds"
            ) from None
    if not 60 <= retention <= 100 * 365 * 86400:
        raise ValueError("--raw-alert-retention: must be between 1m and 100y")
    return retention
