"""Alertmanager routing: a policy's AlertmanagerConfig, and the same as plain alertmanager.yml.

``alertmanager_config`` renders the ``monitoring.coreos.com/v1alpha1`` AlertmanagerConfig that
kube-prometheus-stack's Alertmanager picks up. ``alertmanager_yaml`` renders, for plain
Alertmanager (``lumenctl render --format alertmanager``), the configuration prometheus-operator
generates from those AlertmanagerConfigs with the ``OnNamespace`` matcher strategy. It is built
*from the rendered AlertmanagerConfigs*, converting them the way prometheus-operator does, so both
outputs cannot drift apart:

- root route: receiver ``null`` (no configs), one child route per AlertmanagerConfig, sorted by
  ``<namespace>/<name>``, with ``namespace="<ns>"`` appended to its matchers and ``continue: true``;
- receiver names become ``<namespace>/<config name>/<receiver>``;
- inhibit rules get ``namespace="<ns>"`` appended to their source and target matchers;
- matchers use the ``matchers:`` string syntax (``name="value"``), never deprecated ``match``.

Secrets are never inlined. prometheus-operator reads Secret values into the generated config; the
plain file instead points at files where kube-prometheus-stack mounts the Secrets listed in
``alertmanager.alertmanagerSpec.secrets``: ``/etc/alertmanager/secrets/<secret>/<key>``.
Alertmanager 0.25 (checked with ``amtool check-config`` 0.25) accepts both fields used for that:

- ``http_config.authorization.credentials_file`` (webhook bearer tokens, the threader token);
- ``email_configs[].auth_password_file`` (SMTP password).

No field had to be left out.

Outside Kubernetes the plain file's two in-cluster assumptions are settings (``PlainOptions``,
``lumenctl render --format alertmanager --threader-url … --secrets-dir …``): the threader the
Slack receivers post to, and the directory of the credential files. Their defaults give the
in-cluster file above. ``credential_files`` lists the files a plain file references, for
``lumenctl render --write-secrets`` to write.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from ..policy.model import (
    EmailReceiver,
    InhibitRule,
    Matcher,
    Policy,
    Receiver,
    Route,
    Routing,
    SecretKeyRef,
    Severities,
    SlackReceiver,
    WebhookReceiver,
)
from .objects import (
    SLO_ALERT,
    THREADER_MAX_ALERTS,
    THREADER_PORT,
    WEBHOOK_TOKEN_KEY,
    ChildNames,
    Manifest,
    RenderOptions,
    metadata,
    service_url,
)
from .self_monitoring import self_matchers, self_route_receivers

ALERTMANAGER_CONFIG_API = "monitoring.coreos.com/v1alpha1"
# Receiver without configs: alerts routed to it are dropped (kube-prometheus-stack's root receiver).
NULL_RECEIVER = "null"
# Where kube-prometheus-stack mounts `alertmanager.alertmanagerSpec.secrets` in Alertmanager.
SECRETS_DIR = "/etc/alertmanager/secrets"
# What a `--threader-url` template may name: the policy's namespace and name.
THREADER_URL_FIELDS = ("namespace", "name")
# The threader's webhook path; a `--threader-url` is the base URL in front of it.
THREADER_PATH = "/alert"
# The label prometheus-operator's OnNamespace strategy matches on.
NAMESPACE_LABEL = "namespace"
# Root of the plain alertmanager.yml, as in kube-prometheus-stack's default `alertmanager.config`.
ROOT_ROUTE: dict[str, Any] = {
    "group_by": ["namespace"],
    "group_wait": "30s",
    "group_interval": "5m",
    "repeat_interval": "12h",
}

Obj = dict[str, Any]


@dataclass(frozen=True)
class PlainOptions:
    """Where the plain alertmanager.yml tells Alertmanager to find what kps has in the cluster.

    ``threader_url``: base URL of the threader the policies' Slack receivers post to (``/alert``
    is appended), a template that may name ``{namespace}`` and ``{name}`` of the policy (check it
    with ``threader_url_template``); None is each policy's threader Service,
    ``http://lumen-<name>-threader.<namespace>.svc:8080``. ``secrets_dir``: the directory of the
    credential files, ``<secrets_dir>/<secret>/<key>``.
    """

    threader_url: str | None = None
    secrets_dir: str = SECRETS_DIR


@dataclass(frozen=True)
class CredentialFile:
    """A file the plain alertmanager.yml reads a credential from.

    ``threader_urls`` is set for a threader's webhook token (Secret ``lumen-<policy>-threader``,
    key ``webhook-token``): the base URLs of the threaders that must check that token (more than
    one only when policies of different namespaces share a name, as the path has no namespace).
    It is empty for a Secret the policy names (SMTP password, webhook bearer token).
    ``receivers`` are the plain receiver names that use the file.
    """

    path: str
    secret: str
    key: str
    threader_urls: tuple[str, ...]
    receivers: tuple[str, ...]


# --- AlertmanagerConfig ----------------------------------------------------------------------


def alertmanager_config(
    policy: Policy, options: RenderOptions, *, threader_url: str | None = None
) -> Manifest | None:
    """The policy's AlertmanagerConfig; None when the policy has no ``routing``.

    ``threader_url``: base URL of the threader its Slack receivers post to; None is the policy's
    threader Service (the plain file may name another, ``PlainOptions``).
    """
    routing = policy.spec.routing
    if routing is None:
        return None
    return {
        "apiVersion": ALERTMANAGER_CONFIG_API,
        "kind": "AlertmanagerConfig",
        # kps selects every AlertmanagerConfig by default; the release label serves installs whose
        # alertmanagerConfigSelector matches on it, as their rule and monitor selectors do.
        "metadata": metadata(
            policy,
            options,
            ChildNames.of(policy).alertmanager_config,
            labels={"release": options.kps_release},
        ),
        "spec": {
            "route": route_tree(policy, routing),
            "receivers": receivers(policy, routing, threader_url),
            "inhibitRules": inhibit_rules(policy.spec.severities, routing),
        },
    }


def default_receiver(routing: Routing) -> str:
    """Receiver of alerts no route matches: ``routing.receiver`` or a config-less one (drop)."""
    if routing.receiver:
        return routing.receiver
    taken = {receiver.name for receiver in routing.receivers}
    name = NULL_RECEIVER
    while name in taken:  # a user receiver may be called "null" itself
        name = f"lumen-{name}"
    return name


def route_tree(policy: Policy, routing: Routing) -> Obj:
    """The CR's top route: the policy-wide grouping and the ordered child routes, Lumen's own
    alerts first."""
    top: Obj = {
        "receiver": default_receiver(routing),
        "groupBy": _unique(routing.group_by),
        "groupWait": routing.group_wait,
        "groupInterval": routing.group_interval,
        "repeatInterval": routing.repeat_interval,
    }
    routes = [*self_routes(policy), *(child_route(route) for route in routing.routes)]
    if routes:
        top["routes"] = routes
    return top


def self_routes(policy: Policy) -> list[Obj]:
    """Alerts about the policy's threader and exporter go to every e-mail and webhook receiver,
    around the threader (which cannot post its own alert when it is down), and stop there."""
    receivers = self_route_receivers(policy)
    return [
        {
            "receiver": name,
            "matchers": [cr_matcher(m) for m in self_matchers(policy)],
            "continue": i < len(receivers) - 1,
        }
        for i, name in enumerate(receivers)
    ]


def child_route(route: Route) -> Obj:
    """One route; grouping fields only when the route overrides them (None inherits)."""
    out: Obj = {"receiver": route.receiver}
    if route.matchers:
        out["matchers"] = [cr_matcher(m) for m in route.matchers]
    out["continue"] = route.continue_
    overrides = {
        "groupBy": None if route.group_by is None else _unique(route.group_by),
        "groupWait": route.group_wait,
        "groupInterval": route.group_interval,
        "repeatInterval": route.repeat_interval,
    }
    out.update({key: value for key, value in overrides.items() if value is not None})
    return out


def cr_matcher(matcher: Matcher) -> Obj:
    return {"name": matcher.name, "value": matcher.value, "matchType": matcher.match_type}


def receivers(policy: Policy, routing: Routing, threader_url: str | None = None) -> list[Obj]:
    """The policy's receivers in spec order, plus the drop receiver when it is the default."""
    out = [receiver_configs(policy, receiver, threader_url) for receiver in routing.receivers]
    if not routing.receiver:
        out.append({"name": default_receiver(routing)})
    return out


def receiver_configs(policy: Policy, receiver: Receiver, threader_url: str | None = None) -> Obj:
    """One receiver: Slack goes to the threader as a webhook, e-mail and webhook as they are."""
    out: Obj = {"name": receiver.name}
    if receiver.slack is not None:
        out["webhookConfigs"] = [threader_webhook(policy, receiver.slack, threader_url)]
    if receiver.email is not None:
        out["emailConfigs"] = [email_config(receiver.email)]
    if receiver.webhook is not None:
        out["webhookConfigs"] = [webhook_config(receiver.webhook)]
    return out


def threader_webhook(policy: Policy, slack: SlackReceiver, threader_url: str | None = None) -> Obj:
    """Alertmanager -> threader (one Slack thread per alert), bearer token from its Secret."""
    names = ChildNames.of(policy)
    path = f"{THREADER_PATH}?channel=" + quote(slack.channel, safe="")
    return {
        "url": (threader_url or threader_base_url(policy)) + path,
        "httpConfig": bearer(SecretKeyRef(name=names.threader_secret, key=WEBHOOK_TOKEN_KEY)),
        "sendResolved": slack.send_resolved,
        # Alertmanager truncates larger groups (and says so in `truncatedAlerts`); the threader
        # would refuse them with a 4xx that Alertmanager never retries.
        "maxAlerts": THREADER_MAX_ALERTS,
    }


def threader_base_url(policy: Policy, template: str | None = None) -> str:
    """The policy's threader: ``template`` with its namespace and name, or its Service."""
    if template is None:
        return service_url(policy, ChildNames.of(policy).threader, THREADER_PORT)
    return template.format(namespace=policy.namespace, name=policy.name)


def threader_url_template(text: str) -> str:
    """A ``--threader-url``: an http(s) base URL with a host, which may name ``{namespace}`` and
    ``{name}`` of the policy; returned without a trailing ``/``. ValueError says what is wrong."""
    template = text.strip().rstrip("/")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        raise ValueError(
            f"{text!r}: unbalanced braces (only {{namespace}} and {{name}} are replaced)"
        ) from None
    for _, field, spec, conversion in parsed:
        if field is not None and (field not in THREADER_URL_FIELDS or spec or conversion):
            raise ValueError(
                f"{text!r}: unknown placeholder {{{field}}} (only {{namespace}} and {{name}} "
                "are replaced)"
            )
    example = template.format(namespace="ns", name="policy")
    try:
        url = urlsplit(example)
        url.port  # noqa: B018 (a port out of range raises ValueError only when read)
    except ValueError as error:
        raise ValueError(f"{text!r}: not a URL: {error}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"{text!r}: not an http:// or https:// URL with a host")
    if url.query or url.fragment or example.endswith(("?", "#")):
        raise ValueError(f"{text!r}: no query or fragment: Lumen appends {THREADER_PATH}?channel=…")
    if url.path.endswith(THREADER_PATH):
        raise ValueError(
            f"{text!r}: give the threader's base URL; Lumen appends {THREADER_PATH} itself"
        )
    return template


def email_config(email: EmailReceiver) -> Obj:
    out: Obj = {"to": email.to, "from": email.from_, "smarthost": email.smarthost}
    if email.auth_username:
        out["authUsername"] = email.auth_username
    if email.auth_password is not None:
        out["authPassword"] = secret_ref(email.auth_password)
    out["requireTLS"] = email.require_tls
    out["sendResolved"] = email.send_resolved
    return out


def webhook_config(webhook: WebhookReceiver) -> Obj:
    out: Obj = {"url": webhook.url}
    if webhook.bearer_token is not None:
        out["httpConfig"] = bearer(webhook.bearer_token)
    out["sendResolved"] = webhook.send_resolved
    if webhook.max_alerts:
        out["maxAlerts"] = webhook.max_alerts
    return out


def bearer(ref: SecretKeyRef) -> Obj:
    return {"authorization": {"type": "Bearer", "credentials": secret_ref(ref)}}


def secret_ref(ref: SecretKeyRef) -> Obj:
    return {"name": ref.name, "key": ref.key}


def builtin_inhibit_rules(severities: Severities | None = None) -> list[InhibitRule]:
    """Always present: an SLO page mutes the ticket of the same SLO; the page severity
    (critical) mutes the ticket severity (warning) of the same alert, service and SLO (``slo``
    keeps one SLO's page from muting another SLO's ticket: all share one alert name; alerts
    without it compare equal)."""
    severities = severities or Severities()
    return [
        InhibitRule(
            source_matchers=[Matcher("alertname", SLO_ALERT), Matcher("tier", "page")],
            target_matchers=[Matcher("alertname", SLO_ALERT), Matcher("tier", "ticket")],
            equal=["slo", "lumen_policy"],
        ),
        InhibitRule(
            source_matchers=[Matcher("severity", severities.page)],
            target_matchers=[Matcher("severity", severities.ticket)],
            equal=["alertname", "service", "slo"],
        ),
    ]


def inhibit_rules(severities: Severities, routing: Routing) -> list[Obj]:
    """Built-in rules first, then the policy's own, as CR inhibit rules."""
    rules = [*builtin_inhibit_rules(severities), *routing.inhibit_rules]
    return [cr_inhibit_rule(rule) for rule in rules]


def cr_inhibit_rule(rule: InhibitRule) -> Obj:
    out: Obj = {
        "sourceMatch": [cr_matcher(m) for m in rule.source_matchers],
        "targetMatch": [cr_matcher(m) for m in rule.target_matchers],
    }
    if rule.equal:
        out["equal"] = list(rule.equal)
    return out


# --- plain alertmanager.yml --------------------------------------------------------------------


def alertmanager_yaml(policies: list[Policy], plain: PlainOptions | None = None) -> dict[str, Any]:
    """A complete alertmanager.yml equivalent to what kps generates from the policies' configs;
    ``plain`` (default: the in-cluster file) says where the threader and credential files are.

    Policies without routing contribute nothing. Raises ValueError when two policies share a
    namespace and name (their receivers would collide).
    """
    plain = plain or PlainOptions()
    configs = []
    for policy in policies:
        threader = threader_base_url(policy, plain.threader_url)
        config = alertmanager_config(policy, RenderOptions(), threader_url=threader)
        if config is not None:
            configs.append(config)
    return operator_config(configs, plain.secrets_dir)


def credential_files(
    policies: list[Policy], plain: PlainOptions | None = None
) -> list[CredentialFile]:
    """Every credential file ``alertmanager_yaml(policies, plain)`` references, once, sorted by
    path: the threaders' webhook tokens and the Secrets the policies name. Raises ValueError when
    a policy's Secret has the path of a threader's token (one file cannot be both)."""
    plain = plain or PlainOptions()
    uses: dict[str, list[tuple[SecretKeyRef, str, str | None]]] = {}
    for policy in policies:
        routing = policy.spec.routing
        if routing is None:
            continue
        names = ChildNames.of(policy)
        for receiver in routing.receivers:
            user = f"{policy.namespace}/{names.alertmanager_config}/{receiver.name}"
            refs: list[tuple[SecretKeyRef, str | None]] = []
            if receiver.slack is not None:
                url = threader_base_url(policy, plain.threader_url)
                refs.append((SecretKeyRef(names.threader_secret, WEBHOOK_TOKEN_KEY), url))
            if receiver.email is not None and receiver.email.auth_password is not None:
                refs.append((receiver.email.auth_password, None))
            if receiver.webhook is not None and receiver.webhook.bearer_token is not None:
                refs.append((receiver.webhook.bearer_token, None))
            for ref, threader_url in refs:
                path = secret_file(secret_ref(ref), plain.secrets_dir)
                uses.setdefault(path, []).append((ref, user, threader_url))
    files = []
    for path in sorted(uses):
        ref = uses[path][0][0]
        threaders = tuple(dict.fromkeys(t for _, _, t in uses[path] if t is not None))
        receivers = tuple(user for _, user, _ in uses[path])
        if threaders and any(t is None for _, _, t in uses[path]):
            raise ValueError(
                f"{path}: both a threader's webhook token and a Secret a policy names "
                f"({', '.join(receivers)}); rename that Secret"
            )
        files.append(CredentialFile(path, ref.name, ref.key, threaders, receivers))
    return files


def operator_config(configs: list[Manifest], secrets_dir: str = SECRETS_DIR) -> dict[str, Any]:
    """Convert AlertmanagerConfig objects as prometheus-operator does (OnNamespace strategy);
    Secret references become files under ``secrets_dir``."""
    by_key = {}
    for config in configs:
        key = config_key(config)
        if key in by_key:
            raise ValueError(f"AlertmanagerConfig {key} appears twice")
        by_key[key] = config
    ordered = [by_key[key] for key in sorted(by_key)]
    receivers_out = [
        am_receiver(config, r, secrets_dir)
        for config in ordered
        for r in config["spec"]["receivers"]
    ]
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": NULL_RECEIVER,
            **ROOT_ROUTE,
            "routes": [namespace_route(config) for config in ordered],
        },
        "receivers": [{"name": NULL_RECEIVER}, *sorted(receivers_out, key=lambda r: r["name"])],
        "inhibit_rules": [
            am_inhibit_rule(rule, config["metadata"]["namespace"])
            for config in ordered
            for rule in config["spec"].get("inhibitRules", [])
        ],
    }


def config_key(config: Manifest) -> str:
    return f"{config['metadata']['namespace']}/{config['metadata']['name']}"


def namespace_route(config: Manifest) -> Obj:
    """The config's top route, restricted to its namespace; later configs still see the alert."""
    route = am_route(config["spec"]["route"], config_key(config))
    namespace = config["metadata"]["namespace"]
    route["matchers"] = [
        *route.get("matchers", []),
        matcher_string(NAMESPACE_LABEL, "=", namespace),
    ]
    route["continue"] = True
    return _reorder(route, ["receiver", "matchers", "continue"])


def am_route(route: Obj, prefix: str) -> Obj:
    """A CR route in alertmanager.yml form; receiver names prefixed with ``<ns>/<config>/``."""
    out: Obj = {"receiver": f"{prefix}/{route['receiver']}"}
    if route.get("matchers"):
        out["matchers"] = [am_matcher(m) for m in route["matchers"]]
    if route.get("continue"):
        out["continue"] = True
    fields = {
        "groupBy": "group_by",
        "groupWait": "group_wait",
        "groupInterval": "group_interval",
        "repeatInterval": "repeat_interval",
    }
    out.update({am: route[cr] for cr, am in fields.items() if cr in route})
    if route.get("routes"):
        out["routes"] = [am_route(child, prefix) for child in route["routes"]]
    return out


def am_matcher(matcher: Obj) -> str:
    return matcher_string(matcher["name"], matcher.get("matchType", "="), matcher.get("value", ""))


def matcher_string(name: str, match_type: str, value: str) -> str:
    """``name="value"`` as prometheus-operator writes it (Go strconv.Quote of the value)."""
    return f"{name}{match_type}{json.dumps(value, ensure_ascii=False)}"


def am_receiver(config: Manifest, receiver: Obj, secrets_dir: str) -> Obj:
    out: Obj = {"name": f"{config_key(config)}/{receiver['name']}"}
    if "emailConfigs" in receiver:
        out["email_configs"] = [am_email(c, secrets_dir) for c in receiver["emailConfigs"]]
    if "webhookConfigs" in receiver:
        out["webhook_configs"] = [am_webhook(c, secrets_dir) for c in receiver["webhookConfigs"]]
    return out


def am_email(email: Obj, secrets_dir: str) -> Obj:
    out: Obj = {"to": email["to"], "from": email["from"], "smarthost": email["smarthost"]}
    if "authUsername" in email:
        out["auth_username"] = email["authUsername"]
    if "authPassword" in email:
        out["auth_password_file"] = secret_file(email["authPassword"], secrets_dir)
    out["require_tls"] = email["requireTLS"]
    out["send_resolved"] = email["sendResolved"]
    return out


def am_webhook(webhook: Obj, secrets_dir: str) -> Obj:
    out: Obj = {"url": webhook["url"]}
    authorization = webhook.get("httpConfig", {}).get("authorization")
    if authorization:
        out["http_config"] = {
            "authorization": {
                "type": authorization["type"],
                "credentials_file": secret_file(authorization["credentials"], secrets_dir),
            }
        }
    out["send_resolved"] = webhook["sendResolved"]
    if webhook.get("maxAlerts"):
        out["max_alerts"] = webhook["maxAlerts"]
    return out


def secret_file(ref: Obj, secrets_dir: str = SECRETS_DIR) -> str:
    """Path of a Secret key under ``secrets_dir``; by default where kps mounts the Secrets listed
    in ``alertmanagerSpec.secrets``."""
    return f"{secrets_dir.rstrip('/')}/{ref['name']}/{ref['key']}"


def am_inhibit_rule(rule: Obj, namespace: str) -> Obj:
    """A CR inhibit rule, scoped to its namespace as prometheus-operator does."""
    scope = matcher_string(NAMESPACE_LABEL, "=", namespace)
    out: Obj = {
        "source_matchers": [*(am_matcher(m) for m in rule["sourceMatch"]), scope],
        "target_matchers": [*(am_matcher(m) for m in rule["targetMatch"]), scope],
    }
    if rule.get("equal"):
        out["equal"] = list(rule["equal"])
    return out


def _unique(items: list[str]) -> list[str]:
    """Order-preserving de-duplication (CR ``groupBy`` is a list-type set)."""
    return list(dict.fromkeys(items))


def _reorder(obj: Obj, first: list[str]) -> Obj:
    return {**{k: obj[k] for k in first if k in obj}, **obj}
