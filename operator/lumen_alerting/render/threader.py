"""The threader workload of a policy: Deployment, Service, ServiceMonitor, the NetworkPolicy that
lets only Alertmanager and Prometheus in (everyone, once Slack or people call in through an
ingress) and, with persistence, the PersistentVolumeClaim of its state directory.

The threader's token Secret is the one piece of state that is not rendered: ``threader_secret``
describes it so the operator can create it once, with random tokens, when it is absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..policy.durations import parse_duration
from ..policy.model import DEFAULT_REPLICA_ACK_TIMEOUT, DEFAULT_REPLICA_ACKS, Policy, Threader
from .network_policies import threader_network_policy
from .objects import (
    ADMIN_TOKEN_KEY,
    THREADER_PORT,
    WEBHOOK_TOKEN_KEY,
    ChildNames,
    Manifest,
    RenderOptions,
)
from .pods import (
    STATE_DIR,
    container,
    container_resources,
    deployment,
    persistent_volume_claim,
    pod_spec,
    scratch_mounts,
    scratch_volumes,
    secret_source,
    service,
    service_monitor,
    token_volume,
    workload_labels,
)

THREADER_APP = "lumen-threader"
THREADER_DIR = "/etc/lumen/threader"
DATABASE_URL_FILE = "database-url"
SLACK_TOKEN_FILE = "slack-token"
SIGNING_SECRET_FILE = "slack-signing-secret"
API_TOKEN_FILE = "api-token"
STORE_URL_FILE = "store-url"  # store.databaseURL (type postgresql): `--store-file`
STORE_PASSWORD_FILE = "store-password"  # store.passwordSecret (type redis)
# The threader's own default (--raw-alert-retention); the flag is left out while the policy
# keeps it, so the pod spec names only what the policy changed.
DEFAULT_RAW_ALERT_RETENTION = "30d"
SQLITE_STORE = f"sqlite:{STATE_DIR}/threader.db"
DEFAULT_DATABASE_URL = f"sqlite:///{STATE_DIR}/incidents.db"


@dataclass(frozen=True)
class SecretRequest:
    """A Secret the operator creates once with random values for ``keys`` (never rendered)."""

    name: str
    namespace: str
    keys: tuple[str, ...] = (ADMIN_TOKEN_KEY, WEBHOOK_TOKEN_KEY)


def enabled_threader(policy: Policy) -> Threader | None:
    threader = policy.spec.threader
    return threader if threader is not None and threader.enabled else None


def threader_secret(policy: Policy) -> SecretRequest | None:
    """The webhook/admin token Secret the operator must ensure; None when there is no threader."""
    if enabled_threader(policy) is None:
        return None
    return SecretRequest(name=ChildNames.of(policy).threader_secret, namespace=policy.namespace)


def key_prefix(policy: Policy) -> str:
    """Redis keys (the PostgreSQL store's scope) of this policy's threader: two policies on one
    Redis or database never share an outbox."""
    return f"lumen:{policy.namespace}:{policy.name}:"


def seconds_arg(duration: str) -> str:
    """A duration as the seconds a flag takes, to the millisecond: ``1500ms`` -> ``1.5``,
    ``2m`` -> ``120`` (the standalone chart's template computes the same text)."""
    millis = round(parse_duration(duration) * 1000)
    whole, fraction = divmod(millis, 1000)
    return f"{whole}.{fraction:03d}".rstrip("0").rstrip(".")


def store_args(policy: Policy, threader: Threader) -> list[str]:
    store = threader.store
    if store.type == "redis":
        args = ["--store", store.url, "--key-prefix", key_prefix(policy)]
        if store.allow_volatile:
            args.append("--allow-volatile-store")
        if store.password_secret is not None:
            args += ["--store-password-file", f"{THREADER_DIR}/{STORE_PASSWORD_FILE}"]
        # The threader's own defaults are left out, so the pod spec names only what changed.
        if store.replica_acks != DEFAULT_REPLICA_ACKS:
            args += ["--replica-acks", store.replica_acks]
        if parse_duration(store.replica_ack_timeout) != parse_duration(DEFAULT_REPLICA_ACK_TIMEOUT):
            args += ["--replica-ack-timeout", seconds_arg(store.replica_ack_timeout)]
        return args
    if store.type == "postgresql":
        # The URL holds a password: a file, never a flag. The prefix scopes the rows.
        args = [
            "--store-file", f"{THREADER_DIR}/{STORE_URL_FILE}",
            "--key-prefix", key_prefix(policy),
        ]  # fmt: skip
        return args + (["--allow-volatile-store"] if store.allow_volatile else [])
    if store.type in ("sqlite", "file"):  # `file` is the deprecated name of the SQLite store
        return ["--store", SQLITE_STORE]
    return ["--store", "memory"]


def database_args(threader: Threader) -> list[str]:
    """Where incidents go: incidents.databaseURL; else the PostgreSQL store's database (the
    threader's default with a postgresql store: no flag); else SQLite on the state volume."""
    if threader.incidents.database_url is not None:
        return ["--database-url-file", f"{THREADER_DIR}/{DATABASE_URL_FILE}"]
    if threader.store.type == "postgresql":
        return []
    return ["--database-url", DEFAULT_DATABASE_URL]


def threader_args(policy: Policy, threader: Threader) -> list[str]:
    args = [
        "--listen", f"0.0.0.0:{THREADER_PORT}",
        *store_args(policy, threader),
        "--webhook-token-file", f"{THREADER_DIR}/{WEBHOOK_TOKEN_KEY}",
        "--admin-token-file", f"{THREADER_DIR}/{ADMIN_TOKEN_KEY}",
        "--thread-key", threader.thread_key,
    ]  # fmt: skip
    if not threader.reply_on_repeat:
        args.append("--no-reply-on-repeat")
    args += database_args(threader)
    if threader.bot_token is not None:
        # A file rather than an environment variable: not in `kubectl describe`, nor inherited.
        args += ["--slack-token-file", f"{THREADER_DIR}/{SLACK_TOKEN_FILE}"]
    return args + incident_args(threader)


def incident_args(threader: Threader) -> list[str]:
    """The incident settings beyond the database: secrets as files, the rest as values."""
    incidents = threader.incidents
    args: list[str] = []
    if incidents.signing_secret is not None:
        args += ["--slack-signing-secret-file", f"{THREADER_DIR}/{SIGNING_SECRET_FILE}"]
    if incidents.api_token is not None:
        args += ["--api-token-file", f"{THREADER_DIR}/{API_TOKEN_FILE}"]
    if incidents.alertmanager_url is not None:
        args += ["--alertmanager-url", incidents.alertmanager_url]
    if incidents.public_url is not None:
        args += ["--public-url", incidents.public_url]
    if incidents.group_by:
        args += ["--incident-group-by", ",".join(incidents.group_by)]
    if incidents.raw_alert_retention != DEFAULT_RAW_ALERT_RETENTION:
        args += ["--raw-alert-retention", incidents.raw_alert_retention]
    return args


def public(threader: Threader) -> bool:
    """Whether callers from outside the cluster reach the threader: Slack posts interactions
    (``signingSecret``) and people open its pages (``publicURL``) through the team's ingress."""
    incidents = threader.incidents
    return incidents.signing_secret is not None or incidents.public_url is not None


def state_claim(policy: Policy, threader: Threader) -> str | None:
    return ChildNames.of(policy).threader_state if threader.persistence.enabled else None


def threader_volumes(policy: Policy, threader: Threader) -> list[dict[str, Any]]:
    tokens = ChildNames.of(policy).threader_secret
    sources = [secret_source(tokens, [(key, key) for key in (ADMIN_TOKEN_KEY, WEBHOOK_TOKEN_KEY)])]
    store_url = threader.store.database_url
    if store_url is not None:
        sources.append(secret_source(store_url.name, [(store_url.key, STORE_URL_FILE)]))
    store_password = threader.store.password_secret
    if store_password is not None:
        sources.append(
            secret_source(store_password.name, [(store_password.key, STORE_PASSWORD_FILE)])
        )
    database = threader.incidents.database_url
    if database is not None:
        sources.append(secret_source(database.name, [(database.key, DATABASE_URL_FILE)]))
    bot = threader.bot_token
    if bot is not None:
        sources.append(secret_source(bot.name, [(bot.key, SLACK_TOKEN_FILE)]))
    signing = threader.incidents.signing_secret
    if signing is not None:
        sources.append(secret_source(signing.name, [(signing.key, SIGNING_SECRET_FILE)]))
    api = threader.incidents.api_token
    if api is not None:
        sources.append(secret_source(api.name, [(api.key, API_TOKEN_FILE)]))
    return [*scratch_volumes(state_claim(policy, threader)), token_volume("secrets", sources)]


def threader_container(policy: Policy, options: RenderOptions, threader: Threader) -> Manifest:
    mounts = [*scratch_mounts(), {"name": "secrets", "mountPath": THREADER_DIR, "readOnly": True}]
    return container(
        THREADER_APP,
        options.threader_image,
        THREADER_PORT,
        threader_args(policy, threader),
        mounts=mounts,
        resources=container_resources(options.threader_resources),
    )


def threader_objects(policy: Policy, options: RenderOptions) -> list[Manifest]:
    """[PersistentVolumeClaim,] [NetworkPolicy,] Deployment, Service and ServiceMonitor of the
    policy's threader; [] when it has none. The NetworkPolicy comes before the Deployment: the
    operator applies in this order, so no pod of it is ever reachable from everywhere."""
    threader = enabled_threader(policy)
    if threader is None:
        return []
    names = ChildNames.of(policy)
    labels = workload_labels(policy, THREADER_APP, "threader")
    replicas = threader.replicas
    pod = pod_spec(
        policy,
        THREADER_APP,
        threader_container(policy, options, threader),
        threader_volumes(policy, threader),
        replicas,
    )
    claim = (
        [
            persistent_volume_claim(
                policy, options, names.threader_state, labels, threader.persistence
            )
        ]
        if threader.persistence.enabled
        else []
    )
    return [
        *claim,
        *threader_network_policy(
            policy, options, names.threader, THREADER_APP, labels, open_to_all=public(threader)
        ),
        deployment(
            policy,
            options,
            names.threader,
            THREADER_APP,
            labels=labels,
            replicas=replicas,
            # A SQLite store or a ReadWriteOnce claim: the old pod must let go before the new one.
            # Redis and PostgreSQL stores take several writers: a rolling update.
            single_writer=threader.store.type in ("sqlite", "file") or threader.persistence.enabled,
            pod=pod,
        ),
        service(policy, options, names.threader, THREADER_APP, labels, THREADER_PORT),
        service_monitor(policy, options, names.threader, THREADER_APP, labels),
    ]
