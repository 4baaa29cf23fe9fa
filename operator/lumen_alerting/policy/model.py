"""The typed ``LumenAlertPolicy`` spec (``lumen.dev/v1alpha1``).

These dataclasses are the single source of truth for the resource: their field declarations carry
the descriptions, defaults and constraints from which ``crds/`` is generated (``lumenctl crd``),
and the loader enforces the same constraints when it builds them from YAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from ..presets import DEFAULT_SEVERITIES
from .durations import DURATION_PATTERN
from .fields import Cel, contains, one_of, spec_field
from .store_patterns import REDIS_URL, REPLICA_ACKS, URL_PASSWORD

API_GROUP = "lumen.dev"
API_VERSION = "v1alpha1"
KIND = "LumenAlertPolicy"
PLURAL = "lumenalertpolicies"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
HTTP_URL = r"^https?://[^\s/$.?#][^\s]*$"
EMAIL = r"^[^@\s,]+@[^@\s,]+$"
HOST_PORT = r"^[^:\s/]+:[0-9]{1,5}$"
SLACK_CHANNEL = r"^[#@]?[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"
HTTP_HEADER_NAME = r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$"  # an RFC 9110 token
MAX_VALUE_MAP_ENTRIES = 64  # strings one probe field maps to numbers
# Longest policy name whose derived names (``lumen-<name>-threader``) stay valid Service names.
MAX_POLICY_NAME = 48


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Secret in the policy's namespace. Secrets are referenced, never inlined."""

    name: str = spec_field(
        "Name of a Secret in the policy's namespace.", pattern=DNS_SUBDOMAIN, max_length=253
    )
    key: str = spec_field("Key inside that Secret.", pattern=SECRET_KEY, max_length=253)


@dataclass(frozen=True)
class Suppression:
    enabled: bool = spec_field(
        "Guard every alert so it cannot fire while the suppression metric equals 1.",
        default=False,
    )
    metric: str = spec_field(
        "Gauge that mutes the policy's alerts while it is 1 (seed: lumen_alert_suppressed).",
        default="lumen_alert_suppressed",
        pattern=METRIC_NAME,
    )
    selector: str = spec_field(
        'Label matchers for the suppression metric. Empty: `{namespace="<policy namespace>"}`; '
        "`{}` reads it from every namespace.",
        default="",
        max_length=1024,
    )


@dataclass(frozen=True)
class RuleOverride:
    threshold: float | None = spec_field(
        "Replaces the preset rule's threshold (the number its expression compares against).",
        default=None,
    )
    for_: str | None = spec_field(
        "Replaces how long the condition must hold before the alert fires.",
        default=None,
        key="for",
        pattern=DURATION_PATTERN,
    )
    severity: str | None = spec_field(
        "Replaces the preset rule's severity label.", default=None, pattern=LABEL_NAME
    )
    enabled: bool = spec_field("Set false to leave this preset rule out.", default=True)


@dataclass(frozen=True)
class Preset:
    name: Literal["gateway", "pipeline"] = spec_field(
        "Rule pack to include: `gateway` (Lumen Gateway / ION API health, seeds 000-001) or "
        "`pipeline` (report pipeline stalls, stage failures, integrity, seed 004)."
    )
    overrides: dict[str, RuleOverride] = spec_field(
        "Per-rule changes, keyed by the preset's alert name.",
        default_factory=dict,
        key_pattern=LABEL_NAME,
        max_properties=32,
    )
    selector: str = spec_field(
        "Label matchers that pick the preset's series. Empty: `{namespace=\"<policy "
        'namespace>"}`, the namespace the exporter runs in; `{}` reads every namespace (plain '
        "Prometheus without a namespace label).",
        default="",
        max_length=1024,
    )


@dataclass(frozen=True)
class AlertRule:
    alert: str = spec_field("Alert name.", pattern=LABEL_NAME, max_length=128)
    expr: str = spec_field(
        "PromQL expression; every series it returns becomes a firing alert.",
        min_length=1,
        max_length=4096,
    )
    for_: str = spec_field(
        "How long the expression must return a series before the alert fires.",
        default="0s",
        key="for",
        pattern=DURATION_PATTERN,
    )
    severity: str = spec_field(
        "Value of the alert's `severity` label (routes usually match on it). Empty: "
        "`spec.severities.ticket` (`warning` unless changed).",
        default="",
        pattern=r"^([a-zA-Z_][a-zA-Z0-9_]*)?$",
    )
    summary: str = spec_field(
        "One-line `summary` annotation. Defaults to the alert name.", default="", max_length=1024
    )
    description: str = spec_field(
        "Longer `description` annotation; may use Prometheus template syntax.",
        default="",
        max_length=4096,
    )
    runbook: str = spec_field(
        "Runbook anchor or URL: a full http(s) URL is used as is, anything else is appended to "
        "`runbookBaseURL` as `#<runbook>`.",
        default="",
        max_length=1024,
    )
    labels: dict[str, str] = spec_field(
        "Extra labels for this alert.", default_factory=dict, key_pattern=LABEL_NAME
    )
    annotations: dict[str, str] = spec_field(
        "Extra annotations for this alert.", default_factory=dict, key_pattern=LABEL_NAME
    )


@dataclass(frozen=True)
class RatioSLI:
    errors: str = spec_field(
        "PromQL per-second rate of bad events; must contain `{{window}}` as the range, e.g. "
        '`sum(rate(http_requests_total{code=~"5.."}[{{window}}]))`.',
        min_length=1,
        max_length=4096,
        rules=(contains("{{window}}"),),
    )
    total: str = spec_field(
        "PromQL per-second rate of all events, with `{{window}}` as the range.",
        min_length=1,
        max_length=4096,
        rules=(contains("{{window}}"),),
    )


@dataclass(frozen=True)
class LatencySLI:
    metric: str = spec_field(
        "Base name of a Prometheus histogram (without `_bucket`/`_count`).", pattern=METRIC_NAME
    )
    threshold: float = spec_field(
        "Requests slower than this many seconds are bad; must equal one of the histogram's `le` "
        "bucket bounds.",
        minimum=0,
        exclusive_minimum=True,
    )
    selector: str = spec_field(
        'Label matchers selecting the histogram\'s series, e.g. `{job="api"}`.',
        default="",
        max_length=1024,
        pattern=r"^(\{.*\})?$",
    )


@dataclass(frozen=True)
class RunsSLI:
    success: str = spec_field(
        'Counter selector of successful runs, e.g. `lumen_pipeline_runs_total{result="success"}`.',
        min_length=1,
        max_length=1024,
    )
    total: str = spec_field(
        "Counter selector of all runs, e.g. `lumen_pipeline_runs_total`.",
        min_length=1,
        max_length=1024,
    )


@dataclass(frozen=True)
class SLI:
    __rules__: ClassVar[tuple[Cel, ...]] = (one_of("ratio", "latency", "runs"),)

    ratio: RatioSLI | None = spec_field(
        "Event-ratio SLI: bad events over all events.", default=None
    )
    latency: LatencySLI | None = spec_field(
        "Latency SLI over a histogram: requests slower than a threshold are bad.", default=None
    )
    runs: RunsSLI | None = spec_field(
        "Execution-based SLI (seed 004): failed runs over all runs, from run counters.",
        default=None,
    )


@dataclass(frozen=True)
class AlertTier:
    enabled: bool = spec_field("Set false to render no alert for this tier.", default=True)
    severity: str = spec_field(
        "Severity label of this tier's alert. Empty: `spec.severities.page` for the page tier, "
        "`spec.severities.ticket` for the ticket tier (`critical` and `warning` unless changed).",
        default="",
        pattern=r"^([a-zA-Z_][a-zA-Z0-9_]*)?$",
    )
    labels: dict[str, str] = spec_field(
        "Extra labels on this tier's alert.", default_factory=dict, key_pattern=LABEL_NAME
    )


@dataclass(frozen=True)
class SLOAlerting:
    page: AlertTier = spec_field(
        "Fast burn: 2% of the budget in 1h or 5% in 6h (for a 30d period).",
        default_factory=AlertTier,
    )
    ticket: AlertTier = spec_field(
        "Slow burn: 10% of the budget in 1d or 10% in 3d (for a 30d period).",
        default_factory=AlertTier,
    )


@dataclass(frozen=True)
class Severities:
    """Lumen's one severity scheme: every alert Lumen writes (presets, SLO tiers, its own alerts)
    is either urgent (page) or can wait (ticket); this says which `severity` label each gets."""

    page: str = spec_field(
        "`severity` of alerts that need someone now: SLO fast burn, the presets' critical alerts "
        "(IONAPIDown, LumenPipelineStalled, ...), LumenThreaderDown.",
        default=DEFAULT_SEVERITIES["page"],
        pattern=LABEL_NAME,
    )
    ticket: str = spec_field(
        "`severity` of alerts that can wait for working hours: SLO slow burn, the presets' "
        "warnings (IONHighResponseTime, LumenStageFailed, ...), rules without a severity.",
        default=DEFAULT_SEVERITIES["ticket"],
        pattern=LABEL_NAME,
    )


@dataclass(frozen=True)
class SLO:
    name: str = spec_field("SLO name, unique in the policy.", pattern=DNS_LABEL, max_length=63)
    objective: float = spec_field(
        "Target percentage of good events over the period, e.g. 99.9.",
        minimum=0,
        maximum=100,
        exclusive_minimum=True,
        exclusive_maximum=True,
    )
    sli: SLI = spec_field("How good and bad events are counted; exactly one kind.")
    period: str = spec_field(
        "Window the objective applies to. Burn-rate factors scale with it.",
        default="30d",
        pattern=DURATION_PATTERN,
    )
    min_events: int = spec_field(
        "Do not alert while the alert window saw fewer events than this (no page on low "
        "traffic). 0 disables the guard.",
        default=0,
        minimum=0,
    )
    description: str = spec_field("What the SLO promises, for people.", default="")
    alerting: SLOAlerting = spec_field(
        "Multi-window, multi-burn-rate alerts.", default_factory=SLOAlerting
    )


@dataclass(frozen=True)
class Matcher:
    name: str = spec_field("Label name.", pattern=LABEL_NAME)
    value: str = spec_field("Label value (a regular expression for `=~` and `!~`).", default="")
    match_type: Literal["=", "!=", "=~", "!~"] = spec_field(
        "How the value is compared.", default="="
    )


@dataclass(frozen=True)
class Route:
    receiver: str = spec_field("Receiver that gets matching alerts.", pattern=DNS_LABEL)
    matchers: list[Matcher] = spec_field(
        "All must match for the alert to take this route.", default_factory=list, max_items=16
    )
    continue_: bool = spec_field(
        "Keep evaluating later routes after this one matched.", default=False, key="continue"
    )
    group_by: list[str] | None = spec_field(
        "Overrides `routing.groupBy` for this route.", default=None, max_items=16
    )
    group_wait: str | None = spec_field(
        "Overrides `routing.groupWait`.", default=None, pattern=DURATION_PATTERN
    )
    group_interval: str | None = spec_field(
        "Overrides `routing.groupInterval`.", default=None, pattern=DURATION_PATTERN
    )
    repeat_interval: str | None = spec_field(
        "Overrides `routing.repeatInterval`.", default=None, pattern=DURATION_PATTERN
    )


@dataclass(frozen=True)
class SlackReceiver:
    channel: str = spec_field(
        "Slack channel (`#name` or ID). Delivered through the policy's threader, one thread per "
        "alert.",
        pattern=SLACK_CHANNEL,
    )
    send_resolved: bool = spec_field("Also notify when alerts resolve.", default=True)


@dataclass(frozen=True)
class EmailReceiver:
    to: str = spec_field("Recipient address.", pattern=EMAIL)
    from_: str = spec_field("Sender address.", key="from", pattern=EMAIL)
    smarthost: str = spec_field("SMTP server as host:port.", pattern=HOST_PORT)
    auth_username: str = spec_field("SMTP user name.", default="")
    auth_password: SecretKeyRef | None = spec_field("SMTP password.", default=None)
    require_tls: bool = spec_field("Require STARTTLS.", default=True, key="requireTLS")
    send_resolved: bool = spec_field("Also notify when alerts resolve.", default=False)


@dataclass(frozen=True)
class WebhookReceiver:
    url: str = spec_field("Endpoint that receives Alertmanager's webhook JSON.", pattern=HTTP_URL)
    bearer_token: SecretKeyRef | None = spec_field(
        "Sent as `Authorization: Bearer <token>`.", default=None
    )
    send_resolved: bool = spec_field("Also notify when alerts resolve.", default=True)
    max_alerts: int = spec_field("Most alerts in one message; 0 sends all.", default=0, minimum=0)


@dataclass(frozen=True)
class Receiver:
    __rules__: ClassVar[tuple[Cel, ...]] = (one_of("slack", "email", "webhook"),)

    name: str = spec_field("Receiver name, unique in the policy.", pattern=DNS_LABEL, max_length=63)
    slack: SlackReceiver | None = spec_field("Post to Slack through the threader.", default=None)
    email: EmailReceiver | None = spec_field("Send e-mail.", default=None)
    webhook: WebhookReceiver | None = spec_field("POST to an HTTP endpoint.", default=None)


@dataclass(frozen=True)
class InhibitRule:
    source_matchers: list[Matcher] = spec_field(
        "Alerts matching all of these mute the targets.", min_items=1, max_items=16
    )
    target_matchers: list[Matcher] = spec_field(
        "Alerts matching all of these are muted.", min_items=1, max_items=16
    )
    equal: list[str] = spec_field(
        "Labels that must be equal in source and target.", default_factory=list, max_items=16
    )


@dataclass(frozen=True)
class Routing:
    __rules__: ClassVar[tuple[Cel, ...]] = (
        Cel(
            rule="self.routes.all(r, self.receivers.exists(x, x.name == r.receiver))",
            message="every route's receiver must name one of the receivers",
        ),
        Cel(
            rule="self.receiver == '' || self.receivers.exists(x, x.name == self.receiver)",
            message="receiver must name one of the receivers",
        ),
    )

    receiver: str = spec_field(
        "Receiver for alerts no route matches. Empty: such alerts are dropped.",
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
    )
    group_by: list[str] = spec_field(
        "Labels that group alerts into one notification.",
        default_factory=lambda: ["alertname", "service"],
        max_items=16,
    )
    group_wait: str = spec_field(
        "Wait before the first notification of a new group.",
        default="30s",
        pattern=DURATION_PATTERN,
    )
    group_interval: str = spec_field(
        "Wait before notifying about new alerts in a group.",
        default="5m",
        pattern=DURATION_PATTERN,
    )
    repeat_interval: str = spec_field(
        "Wait before repeating a notification that has not changed.",
        default="4h",
        pattern=DURATION_PATTERN,
    )
    routes: list[Route] = spec_field(
        "Evaluated in order; the first match wins unless `continue` is set.",
        default_factory=list,
        max_items=64,
    )
    receivers: list[Receiver] = spec_field(
        "Where notifications go.", default_factory=list, max_items=64, list_map_key="name"
    )
    inhibit_rules: list[InhibitRule] = spec_field(
        "Extra inhibitions. Lumen always adds: an SLO page alert mutes the ticket alert of the "
        "same SLO, and a critical alert mutes the warning of the same alert and service.",
        default_factory=list,
        max_items=32,
    )


DEFAULT_REPLICA_ACKS = "auto"
DEFAULT_REPLICA_ACK_TIMEOUT = "1s"


def _replica_wait_is_default(store: ThreaderStore) -> bool:
    return (
        store.replica_acks == DEFAULT_REPLICA_ACKS
        and store.replica_ack_timeout == DEFAULT_REPLICA_ACK_TIMEOUT
    )


@dataclass(frozen=True)
class ThreaderStore:
    __rules__: ClassVar[tuple[Cel, ...]] = (
        Cel(
            rule="!self.allowVolatile || self.type in ['redis', 'postgresql']",
            message="allowVolatile only applies to store.type redis or postgresql",
            check=lambda s: not s.allow_volatile or s.type in ("redis", "postgresql"),
        ),
        Cel(
            rule="!has(self.passwordSecret) || self.type == 'redis'",
            message="passwordSecret only applies to store.type redis",
            check=lambda s: s.password_secret is None or s.type == "redis",
        ),
        Cel(
            rule="!has(self.databaseURL) || self.type == 'postgresql'",
            message="databaseURL only applies to store.type postgresql (a Redis store takes url)",
            check=lambda s: s.database_url is None or s.type == "postgresql",
        ),
        Cel(
            rule="self.type != 'postgresql' || has(self.databaseURL)",
            message="store.type postgresql needs store.databaseURL (a Secret key holding the URL)",
            check=lambda s: s.type != "postgresql" or s.database_url is not None,
        ),
        Cel(
            rule=f"self.type == 'redis' || (self.replicaAcks == '{DEFAULT_REPLICA_ACKS}' && "
            f"self.replicaAckTimeout == '{DEFAULT_REPLICA_ACK_TIMEOUT}')",
            message="replicaAcks and replicaAckTimeout only apply to store.type redis",
            check=lambda s: s.type == "redis" or _replica_wait_is_default(s),
        ),
    )

    type: Literal["sqlite", "redis", "postgresql", "memory", "file"] = spec_field(
        "Where thread state lives (the thread map, idempotency keys and the Slack outbox): "
        "`sqlite` (one replica, a SQLite file in the pod's state directory; set `persistence` "
        "to keep it across pod moves), `redis` (several replicas on one Redis, a Sentinel set "
        "or a Redis Cluster, see `url`; each policy gets its own key prefix "
        "`lumen:<namespace>:<policy>:`), `postgresql` (several replicas on one PostgreSQL "
        "database, `databaseURL`, which also holds the incidents unless "
        "`incidents.databaseURL` is set), `memory` (tests only; lost on restart). `file` is a "
        "deprecated alias of `sqlite`. Which to pick for which scale: docs/threader-stores.md.",
        default="sqlite",
    )
    url: str = spec_field(
        "Redis URL for `type: redis`: `redis://redis:6379/0` (one server), `rediss://…` (TLS), "
        "`redis+sentinel://sentinel-0:26379,sentinel-1:26379/MASTER/0` (Sentinel: the "
        "threader follows failovers), `redis+cluster://node-0:6379,node-1:6379` (Redis "
        "Cluster: one threader's keys share one hash slot). No password in it: put that in "
        "`passwordSecret`. The Redis must persist (`appendonly yes`): the threader stays "
        "unready on a Redis without it.",
        default="",
        pattern=REDIS_URL,
        max_length=2048,  # bounds the CEL rule's cost too
        rules=(
            Cel(
                rule=f"!self.matches('{URL_PASSWORD}')",
                message="store.url must not hold a password: put it in store.passwordSecret",
                check=lambda url: re.search(URL_PASSWORD, url) is None,
            ),
        ),
    )
    password_secret: SecretKeyRef | None = spec_field(
        "Secret key holding the Redis password (`AUTH`), for `type: redis`; used for the data "
        "nodes and, with `redis+sentinel://`, the sentinels too. Mounted as a file, never in "
        "the pod spec.",
        default=None,
    )
    database_url: SecretKeyRef | None = spec_field(
        "Secret key holding the PostgreSQL URL for `type: postgresql`, e.g. "
        "`postgresql://lumen:password@postgres:5432/lumen`. Threads, idempotency keys and the "
        "outbox live in `threader_*` tables, each policy's rows apart (its key prefix); the "
        "incidents go to the same database unless `incidents.databaseURL` is set.",
        default=None,
        key="databaseURL",
    )
    allow_volatile: bool = spec_field(
        "Let the threader run on a store that may lose acknowledged alerts: a Redis without "
        "persistence (no AOF, eviction on), a PostgreSQL with `fsync` or `synchronous_commit` "
        "off. Only for a store whose crash you accept to lose acknowledged alerts and their "
        "threads with.",
        default=False,
    )
    replica_acks: str = spec_field(
        "Redis replicas that must have an accepted alert before the threader answers "
        "Alertmanager 2xx (`WAIT`), so a failover loses no acknowledged alert: `auto` (1 while "
        "the master has a connected replica, else 0), a whole number, or `0` (off: faster, but "
        'a failover may lose what was just acknowledged). Quote it in YAML (`"0"`). When '
        "no replica confirms in `replicaAckTimeout`, the webhook answers 503 and Alertmanager "
        "retries. `type: redis` only.",
        default=DEFAULT_REPLICA_ACKS,
        pattern=REPLICA_ACKS,
        max_length=4,
    )
    replica_ack_timeout: str = spec_field(
        "How long an accept waits for `replicaAcks` replicas before it answers 503, more than "
        "0. `type: redis` only.",
        default=DEFAULT_REPLICA_ACK_TIMEOUT,
        pattern=DURATION_PATTERN,
        max_length=32,
        rules=(
            Cel(
                rule="self.matches('[1-9]')",
                message="replicaAckTimeout must be more than 0",
                check=lambda timeout: re.search("[1-9]", timeout) is not None,
            ),
        ),
    )


@dataclass(frozen=True)
class Persistence:
    enabled: bool = spec_field(
        "Keep the state directory (`/var/lib/lumen`) on a PersistentVolumeClaim instead of an "
        "emptyDir, so it survives pod moves. The claim is owned by the policy: deleting the "
        "policy, or setting this false, deletes the claim (and, with the usual `Delete` reclaim "
        "policy, the data).",
        default=False,
    )
    size: str = spec_field(
        "Requested storage: a whole number with an optional unit, e.g. `1Gi`, `500Mi`, `10G`.",
        default="1Gi",
        pattern=r"^[1-9][0-9]*(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$",
        max_length=32,
    )
    storage_class_name: str | None = spec_field(
        "StorageClass of the claim. Unset: the cluster's default class; empty: no class "
        "(a pre-provisioned volume). Fixed once the claim exists.",
        default=None,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$",
        max_length=253,
    )
    access_modes: list[Literal["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]] = spec_field(
        "Access modes of the claim. Fixed once the claim exists.",
        default_factory=lambda: ["ReadWriteOnce"],
        min_items=1,
        max_items=3,
    )


def _label_names(names: list[str]) -> bool:
    return all(re.fullmatch(LABEL_NAME, name) for name in names)


@dataclass(frozen=True)
class Incidents:
    database_url: SecretKeyRef | None = spec_field(
        "Secret key holding the URL of the incident database: PostgreSQL "
        "(`postgresql://user:password@host:5432/lumen`) or MySQL/MariaDB "
        "(`mysql://user:password@host:3306/lumen`), shared by every replica. Unset: SQLite at "
        "`/var/lib/lumen/incidents.db` on the pod's state volume, or, with `store.type: "
        "postgresql`, the store's database.",
        default=None,
        key="databaseURL",
    )
    signing_secret: SecretKeyRef | None = spec_field(
        "Secret key holding the Slack app's signing secret. Set: parent messages get "
        "Acknowledge, Resolve and Silence buttons, the threader takes Slack's "
        "`POST /slack/interactions` (the app's Interactivity Request URL is "
        "`<publicURL>/slack/interactions`), and its NetworkPolicy admits every source on its "
        "port (Slack calls in through your ingress). Unset: no buttons.",
        default=None,
    )
    api_token: SecretKeyRef | None = spec_field(
        "Secret key holding the bearer token of the incident REST API, also the password of "
        "the `/incidents` web page (at least 16 characters). Unset: the API and the page are "
        "off.",
        default=None,
    )
    alertmanager_url: str | None = spec_field(
        "Alertmanager that the Silence button creates silences in (its v2 API), e.g. "
        "`http://alertmanager-operated.monitoring:9093` for kube-prometheus-stack in "
        "`monitoring`. Unset: no Silence button.",
        default=None,
        key="alertmanagerURL",
        pattern=HTTP_URL,
        max_length=2048,
    )
    public_url: str | None = spec_field(
        "The threader's external URL, as Slack and people reach it through your ingress, e.g. "
        "`https://lumen.example.com`; used in links to the incident pages. Unset: no links.",
        default=None,
        key="publicURL",
        pattern=HTTP_URL,
        max_length=2048,
    )
    group_by: list[str] = spec_field(
        "Label names whose values make an alert's incident: alerts with the same values share "
        "one incident while it is open. Empty: one incident per alert occurrence (fingerprint "
        "and startsAt).",
        default_factory=list,
        max_items=16,
        rules=(
            Cel(
                rule=f"self.all(l, l.matches('{LABEL_NAME}'))",
                message="groupBy entries must be label names",
                check=_label_names,
            ),
        ),
    )
    raw_alert_retention: str = spec_field(
        "How long every received alert is kept as received; older ones not linked to an open "
        "incident are pruned.",
        default="30d",
        pattern=DURATION_PATTERN,
    )


@dataclass(frozen=True)
class Threader:
    __rules__: ClassVar[tuple[Cel, ...]] = (
        Cel(
            rule="self.store.type in ['redis', 'postgresql'] || self.replicas == 1",
            message="more than one replica needs store.type redis or postgresql",
            check=lambda t: t.store.type in ("redis", "postgresql") or t.replicas == 1,
        ),
        Cel(
            rule="self.store.type != 'redis' || self.store.url != ''",
            message="store.type redis needs store.url",
            check=lambda t: t.store.type != "redis" or t.store.url != "",
        ),
        # Each replica would otherwise keep its own SQLite file and see a part of the incidents.
        # A PostgreSQL store holds them too unless incidents.databaseURL says otherwise.
        Cel(
            rule="self.replicas == 1 || has(self.incidents.databaseURL) || "
            "self.store.type == 'postgresql'",
            message="more than one replica needs incidents.databaseURL (a shared PostgreSQL or "
            "MySQL/MariaDB) or store.type postgresql",
            check=lambda t: (
                t.replicas == 1
                or t.incidents.database_url is not None
                or t.store.type == "postgresql"
            ),
        ),
        # The volume is mounted by one pod at a time (and SQLite wants one writer anyway).
        Cel(
            rule="!self.persistence.enabled || self.replicas == 1",
            message="persistence needs replicas 1 (several replicas share state through "
            "store.type redis and incidents.databaseURL, or store.type postgresql, instead)",
            check=lambda t: not t.persistence.enabled or t.replicas == 1,
        ),
    )

    enabled: bool = spec_field("Set false to run no threader.", default=True)
    bot_token: SecretKeyRef | None = spec_field(
        "Slack bot token (xoxb-...). Required when a receiver posts to Slack.", default=None
    )
    store: ThreaderStore = spec_field("Thread state store.", default_factory=ThreaderStore)
    incidents: Incidents = spec_field("Incident store.", default_factory=Incidents)
    replicas: int = spec_field("Pod replicas.", default=1, minimum=1, maximum=10)
    thread_key: Literal["occurrence", "labels"] = spec_field(
        "One thread per alert occurrence (fingerprint + startsAt), or per "
        "alertname|severity|service|cluster|env label set.",
        default="occurrence",
    )
    reply_on_repeat: bool = spec_field(
        "Reply in the thread when Alertmanager repeats a firing alert.", default=True
    )
    persistence: Persistence = spec_field(
        "A PersistentVolumeClaim for the thread store and the default SQLite incident database.",
        default_factory=Persistence,
    )


@dataclass(frozen=True)
class ProbeHeader:
    name: str = spec_field(
        "HTTP header name (an RFC 9110 token), e.g. `Authorization` or `X-Api-Key`; each at most "
        "once per probe, whatever its case.",
        pattern=HTTP_HEADER_NAME,
        max_length=128,
    )
    secret: SecretKeyRef = spec_field(
        "Secret key holding the header's whole value, e.g. `Bearer <token>` (one line). It is "
        "mounted into the exporter's pod as a file: never in its ConfigMap, never logged."
    )


def _value_maps_name_fields(probe: Probe) -> bool:
    return all(metric in probe.fields for metric in probe.value_maps)


def _value_maps_are_small(maps: dict[str, dict[str, float]]) -> bool:
    return all(len(mapping) <= MAX_VALUE_MAP_ENTRIES for mapping in maps.values())


@dataclass(frozen=True)
class Probe:
    __rules__: ClassVar[tuple[Cel, ...]] = (
        Cel(
            rule="!has(self.valueMaps) || self.valueMaps.all(k, has(self.fields) && "
            "k in self.fields)",
            message="every key of valueMaps must be a key of fields (a value map converts "
            "that field's strings)",
            check=_value_maps_name_fields,
        ),
    )

    name: str = spec_field("Probe name, unique in the policy.", pattern=DNS_LABEL, max_length=63)
    url: str = spec_field(
        "Health endpoint to request (with `method`). No credentials in it (`user:pass@`): send "
        "them in `headers` from a Secret.",
        pattern=HTTP_URL,
    )
    interval: str = spec_field(
        "Time between probes (never at scrape time).", default="20s", pattern=DURATION_PATTERN
    )
    timeout: str = spec_field("Probe timeout.", default="5s", pattern=DURATION_PATTERN)
    method: Literal["GET", "HEAD", "POST"] = spec_field(
        "HTTP method of the probe request (`POST` sends no body). `HEAD` answers have no body, "
        "so a `HEAD` probe may have no `fields` or `countValues`.",
        default="GET",
    )
    expected_status: list[int] = spec_field(
        "HTTP statuses that count as success, e.g. `[200, 204]`. Empty: any 2xx.",
        default_factory=list,
        max_items=16,
        rules=(
            Cel(
                rule="self.all(s, s >= 100 && s <= 599)",
                message="every status must be between 100 and 599",
                check=lambda statuses: all(100 <= s <= 599 for s in statuses),
            ),
        ),
    )
    headers: list[ProbeHeader] = spec_field(
        "Request headers whose values come from Secrets, e.g. `Authorization`. A probe with "
        "headers follows no redirect (the secrets would go wherever it points).",
        default_factory=list,
        max_items=16,
        list_map_key="name",
    )
    health_metric: str = spec_field(
        "Gauge set to 1 while the endpoint answers as expected (`expectedStatus`) in time, else "
        "0 (seed 001: `lumen_ion_health`).",
        default="lumen_probe_up",
        pattern=METRIC_NAME,
    )
    response_time_metric: str = spec_field(
        "Gauge of the last response time in milliseconds (seed 001: `lumen_ion_response_time_ms`).",
        default="lumen_probe_response_time_ms",
        pattern=METRIC_NAME,
    )
    fields: dict[str, str] = spec_field(
        "Gauges read from the JSON body: metric name -> JSONPath, e.g. "
        "`lumen_ion_mock_mode: $.mock`. Numbers, booleans (1/0) and numeric strings export as "
        "they are; other strings need a `valueMaps` entry.",
        default_factory=dict,
        key_pattern=METRIC_NAME,
        max_properties=32,
    )
    value_maps: dict[str, dict[str, float]] = spec_field(
        "String -> number maps for `fields`: field metric -> {string: number}, e.g. seed 001's "
        "`lumen_gateway_status: {down: 0, locked: 1, unlocked: 2}`. A JSON string of that "
        "field must be a key of its map, matched exactly (case-sensitive), else the field has "
        "no value that run (counted as `unmapped`); numbers, booleans and numeric strings that "
        "are not keys convert as before.",
        default_factory=dict,
        key_pattern=METRIC_NAME,
        max_properties=32,
        rules=(
            Cel(
                rule=f"self.all(k, self[k].size() <= {MAX_VALUE_MAP_ENTRIES})",
                message=f"each value map has at most {MAX_VALUE_MAP_ENTRIES} entries",
                check=_value_maps_are_small,
            ),
        ),
    )
    count_values: dict[str, str] = spec_field(
        "Fields counted by value: counter name -> JSONPath of a string field, e.g. seed 001's "
        "persona distribution `lumen_ion_persona: $.persona`. Each successful run adds 1 to "
        '`<name>_total{probe="...", value="<what it read>"}` (numbers and booleans as their '
        "JSON text); a series appears on its value's first sighting. A value longer than 128 "
        "characters, or not valid UTF-8, is not counted (a `too_long` or `not_text` field "
        "error). Give the name without `_total`.",
        default_factory=dict,
        key_pattern=METRIC_NAME,
        max_properties=16,
    )
    max_distinct_values: int = spec_field(
        "Distinct values each `countValues` counter keeps per probe, first come first kept; "
        'later ones are counted under `value="__other__"` (and as `too_many_values` field '
        "errors), so a chatty field cannot flood Prometheus with series.",
        default=20,
        minimum=1,
        maximum=1000,
    )


@dataclass(frozen=True)
class Pipeline:
    enabled: bool = spec_field(
        "Accept pipeline stage results over HTTP and export `lumen_pipeline_*` metrics.",
        default=False,
    )
    token: SecretKeyRef | None = spec_field(
        "Bearer token CI must send with stage results. Required when enabled.", default=None
    )
    expire_after: str | None = spec_field(
        "Remove the last run's `lumen_pipeline_success` and `lumen_pipeline_duration_seconds` "
        "(per stage), `lumen_remote_integrity_ok` and `lumen_report_generated` when not pushed "
        "again within this duration, e.g. `2d` for a daily pipeline. Unset: they keep their "
        "last value. Never expired: `lumen_pipeline_last_run_timestamp` (what "
        "LumenPipelineStalled measures), the run counters and `lumen_alert_suppressed`.",
        default=None,
        pattern=DURATION_PATTERN,
    )


@dataclass(frozen=True)
class Exporter:
    __rules__: ClassVar[tuple[Cel, ...]] = (
        Cel(
            rule="!self.pipeline.enabled || has(self.pipeline.token)",
            message="pipeline.enabled needs pipeline.token",
            check=lambda e: not e.pipeline.enabled or e.pipeline.token is not None,
        ),
    )

    enabled: bool = spec_field("Set false to run no exporter.", default=True)
    probes: list[Probe] = spec_field(
        "HTTP health probes.", default_factory=list, max_items=32, list_map_key="name"
    )
    pipeline: Pipeline = spec_field("Pipeline-run metrics endpoint.", default_factory=Pipeline)
    persistence: Persistence = spec_field(
        "A PersistentVolumeClaim for the exporter's state (pipeline runs' counters, gauges).",
        default_factory=Persistence,
    )


@dataclass(frozen=True)
class PolicySpec:
    __rules__: ClassVar[tuple[Cel, ...]] = (
        Cel(
            rule="!has(self.routing) || !self.routing.receivers.exists(r, has(r.slack)) || "
            "(has(self.threader) && self.threader.enabled && has(self.threader.botToken))",
            message="Slack receivers are delivered through the threader: set threader.botToken",
        ),
    )

    service: str = spec_field(
        "Service the alerts are about; becomes the `service` label of every alert.",
        pattern=r"^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$",
        max_length=63,
    )
    labels: dict[str, str] = spec_field(
        "Labels added to every alert.", default_factory=dict, key_pattern=LABEL_NAME
    )
    runbook_base_url: str = spec_field(
        "Base URL that rule `runbook` anchors are appended to.",
        default="",
        key="runbookBaseURL",
        pattern=r"^(https?://\S+)?$",
    )
    suppression: Suppression = spec_field(
        "Mute every alert while a metric is 1 (seed 004's toggle).", default_factory=Suppression
    )
    severities: Severities = spec_field(
        "The `severity` label of urgent (page) and non-urgent (ticket) alerts, kube-prometheus-"
        "stack's `critical` and `warning` by default; routes match on these values.",
        default_factory=Severities,
    )
    presets: list[Preset] = spec_field(
        "Rule packs from Lumen's source documents.",
        default_factory=list,
        max_items=8,
        list_map_key="name",
    )
    rules: list[AlertRule] = spec_field(
        "Free-form alert rules.", default_factory=list, max_items=256
    )
    slos: list[SLO] = spec_field(
        "Service level objectives with multi-window burn-rate alerts.",
        default_factory=list,
        max_items=32,
        list_map_key="name",
    )
    routing: Routing | None = spec_field(
        "Alertmanager routing, rendered as an AlertmanagerConfig.", default=None
    )
    threader: Threader | None = spec_field("The Slack threader and incident store.", default=None)
    exporter: Exporter | None = spec_field("Health probes and pipeline-run metrics.", default=None)


@dataclass(frozen=True)
class Policy:
    """A policy as the renderer needs it: identity plus spec."""

    name: str
    namespace: str
    spec: PolicySpec
    uid: str = ""  # set when rendered by the operator: children get an ownerReference
