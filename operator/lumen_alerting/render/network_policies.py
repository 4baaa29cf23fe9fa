"""The NetworkPolicies of a policy's threader and exporter, and the peer lists they let in.

Each service listens on one port (``http``) for everything it serves, so a NetworkPolicy, which
filters by address and port only, cannot tell its endpoints apart: every peer list opens the
whole port, and the bearer tokens still guard the paths behind it (the threader's webhook and
``/cache``, the exporter's ``/pipeline/runs``). What the policies do keep out is everyone else.

- threader: Alertmanager (``alertmanager_peers``; it POSTs notifications to ``/alert``) and
  Prometheus (``prometheus_peers``; the ServiceMonitor scrapes ``/metrics`` on the same port).
  With Slack interactivity (``incidents.signingSecret``) or a ``publicURL``, every source: Slack
  and people's browsers come in through the team's ingress controller, which Lumen cannot name
  as a selector; the signature and the bearer tokens guard every path but ``/health``,
  ``/ready`` and ``/metrics``;
- exporter: Prometheus (``prometheus_peers``), and while ``pipeline.enabled`` the CI jobs that
  POST pipeline runs (``pipeline_peers``).

Only ingress is restricted (``policyTypes: [Ingress]``): the threader must reach Slack, its
Redis, its incident database (PostgreSQL, MySQL/MariaDB) and Alertmanager's API for silences,
and the exporter the URLs it probes, none of which Lumen can know as selectors; an egress policy
would break them and keep little out.

``parse_peers`` reads a peer list from JSON (the ``--*-peers`` flags) and checks it the way the
API server would, so a mistake stops the operator at start instead of failing every apply. It is
pure, like the rendering.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from typing import Any

from ..policy.model import Exporter, Policy
from .objects import EXPORTER_PORT, THREADER_PORT, Manifest, Peer, RenderOptions, metadata
from .pods import selector_labels

# The name part of a label key (after an optional DNS-subdomain prefix and "/"), and a non-empty
# label value: up to 63 characters. Used with fullmatch (``$`` would let a trailing newline in).
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_PEER_FIELDS = ("podSelector", "namespaceSelector", "ipBlock")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network_policy(
    policy: Policy,
    options: RenderOptions,
    name: str,
    app: str,
    labels: dict[str, str],
    port: int,
    peer_lists: list[tuple[Peer, ...]],
    *,
    open_to_all: bool = False,
) -> Manifest:
    """Ingress to the pods of ``app`` only on ``port``, only from the peers of ``peer_lists``.

    One rule per non-empty list. An empty list adds no rule: a rule without ``from`` would let
    in every source, the opposite of what an empty list says. With no rule at all the pods take
    no ingress (``ingress`` is left out rather than written empty, since the API server drops an
    empty list and the live object would then never match the rendered one). ``open_to_all``:
    one rule without ``from`` instead, admitting every source on ``port``."""
    if open_to_all:
        peer_lists = []
    rules = [
        {
            "from": [copy.deepcopy(dict(peer)) for peer in peers],
            "ports": [{"port": port, "protocol": "TCP"}],
        }
        for peers in peer_lists
        if peers
    ]
    if open_to_all:
        rules = [{"ports": [{"port": port, "protocol": "TCP"}]}]
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": selector_labels(policy, app)},
        "policyTypes": ["Ingress"],
    }
    if rules:
        spec["ingress"] = rules
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(policy, options, name, labels=labels),
        "spec": spec,
    }


def threader_peer_lists(options: RenderOptions) -> list[tuple[Peer, ...]]:
    """Alertmanager sends notifications; Prometheus scrapes ``/metrics`` on the same port."""
    return [options.alertmanager_peers, options.prometheus_peers]


def exporter_peer_lists(options: RenderOptions, exporter: Exporter) -> list[tuple[Peer, ...]]:
    """Prometheus scrapes; the pipeline's clients post runs, only while the pipeline is on."""
    lists = [options.prometheus_peers]
    if exporter.pipeline.enabled:
        lists.append(options.pipeline_peers)
    return lists


def threader_network_policy(
    policy: Policy,
    options: RenderOptions,
    name: str,
    app: str,
    labels: dict[str, str],
    *,
    open_to_all: bool = False,
) -> list[Manifest]:
    """[NetworkPolicy] of the threader; [] with ``options.network_policies`` off. ``open_to_all``
    when callers come through an ingress (Slack interactivity, a public URL)."""
    if not options.network_policies:
        return []
    lists = threader_peer_lists(options)
    return [
        network_policy(
            policy, options, name, app, labels, THREADER_PORT, lists, open_to_all=open_to_all
        )
    ]


def exporter_network_policy(
    policy: Policy,
    options: RenderOptions,
    exporter: Exporter,
    name: str,
    app: str,
    labels: dict[str, str],
) -> list[Manifest]:
    """[NetworkPolicy] of the exporter; [] with ``options.network_policies`` off."""
    if not options.network_policies:
        return []
    lists = exporter_peer_lists(options, exporter)
    return [network_policy(policy, options, name, app, labels, EXPORTER_PORT, lists)]


# --- peer lists from JSON -----------------------------------------------------------------------


def parse_peers(text: str) -> tuple[Peer, ...]:
    """A JSON list of NetworkPolicyPeer objects, checked and in canonical form.

    Raises ValueError naming the first problem (``[1].podSelector.matchLabels: ...``). Canonical:
    empty ``matchLabels``, ``matchExpressions``, ``values`` and ``except`` are dropped, as the API
    server drops them, so the live NetworkPolicy equals the rendered one and is not re-applied on
    every pass; and keys come in sorted order (as the defaults are written), so the same peers
    render the same bytes however the JSON spelled them. ``[]`` is allowed: nobody from that list
    gets in."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ValueError(f"not JSON ({error})") from None
    if not isinstance(document, list):
        raise ValueError(
            'must be a JSON list of NetworkPolicyPeer objects, e.g. [{"podSelector": {}}]'
        )
    return tuple(_peer(f"[{index}]", peer) for index, peer in enumerate(document))


def _peer(where: str, peer: Any) -> Peer:
    if not isinstance(peer, dict) or not peer:
        raise ValueError(
            f"{where}: a peer is an object with podSelector, namespaceSelector or ipBlock"
        )
    unknown = sorted(set(peer) - set(_PEER_FIELDS))
    if unknown:
        raise ValueError(
            f"{where}: unknown field {unknown[0]!r} "
            "(a peer has podSelector, namespaceSelector or ipBlock)"
        )
    if "ipBlock" in peer and len(peer) > 1:
        raise ValueError(f"{where}: ipBlock cannot be combined with a selector")
    canonical: dict[str, Any] = {}
    for field in _PEER_FIELDS:
        if field not in peer:
            continue
        if field == "ipBlock":
            canonical[field] = _ip_block(f"{where}.ipBlock", peer[field])
        else:
            canonical[field] = _selector(f"{where}.{field}", peer[field])
    return dict(sorted(canonical.items()))


def _selector(where: str, selector: Any) -> dict[str, Any]:
    """A LabelSelector; ``{}`` selects everything (every pod, or every namespace)."""
    if not isinstance(selector, dict):
        raise ValueError(f"{where}: must be a label selector object ({{}} selects all)")
    unknown = sorted(set(selector) - {"matchLabels", "matchExpressions"})
    if unknown:
        raise ValueError(
            f"{where}: unknown field {unknown[0]!r} (a selector has matchLabels, matchExpressions)"
        )
    canonical: dict[str, Any] = {}
    labels = _absent_as(selector.get("matchLabels"), {})
    if not isinstance(labels, dict):
        raise ValueError(f"{where}.matchLabels: must map label keys to values")
    for key, value in labels.items():
        _label_key(f"{where}.matchLabels", key)
        _label_value(f"{where}.matchLabels[{key}]", value)
    if labels:
        canonical["matchLabels"] = dict(sorted(labels.items()))
    expressions = _absent_as(selector.get("matchExpressions"), [])
    if not isinstance(expressions, list):
        raise ValueError(f"{where}.matchExpressions: must be a list")
    checked = [
        _expression(f"{where}.matchExpressions[{index}]", expression)
        for index, expression in enumerate(expressions)
    ]
    if checked:
        canonical["matchExpressions"] = checked
    return dict(sorted(canonical.items()))


def _expression(where: str, expression: Any) -> dict[str, Any]:
    if not isinstance(expression, dict) or set(expression) - {"key", "operator", "values"}:
        raise ValueError(f"{where}: must be an object with key, operator and values")
    _label_key(f"{where}.key", expression.get("key"))
    operator = expression.get("operator")
    if operator not in _OPERATORS:
        raise ValueError(f"{where}.operator: {operator!r} is not one of {', '.join(_OPERATORS)}")
    values = _absent_as(expression.get("values"), [])
    if not isinstance(values, list):
        raise ValueError(f"{where}.values: must be a list of label values")
    for index, value in enumerate(values):
        _label_value(f"{where}.values[{index}]", value)
    if operator in ("In", "NotIn") and not values:
        raise ValueError(f"{where}.values: {operator} needs at least one value")
    if operator in ("Exists", "DoesNotExist") and values:
        raise ValueError(f"{where}.values: {operator} takes no values")
    canonical = {"key": expression["key"], "operator": operator}
    return {**canonical, "values": list(values)} if values else canonical


def _ip_block(where: str, block: Any) -> dict[str, Any]:
    if not isinstance(block, dict) or "cidr" not in block or set(block) - {"cidr", "except"}:
        raise ValueError(f"{where}: must be an object with cidr and optionally except")
    network = _cidr(f"{where}.cidr", block["cidr"])
    excepted = _absent_as(block.get("except"), [])
    if not isinstance(excepted, list):
        raise ValueError(f"{where}.except: must be a list of CIDRs")
    for index, text in enumerate(excepted):
        inner = _cidr(f"{where}.except[{index}]", text)
        if not _strictly_inside(inner, network):
            raise ValueError(f"{where}.except[{index}]: {text!r} is not inside {block['cidr']!r}")
    canonical: dict[str, Any] = {"cidr": block["cidr"]}
    return {**canonical, "except": list(excepted)} if excepted else canonical


def _absent_as(value: Any, empty: Any) -> Any:
    """JSON ``null`` means the field is absent, as for the API server; other values stay (and a
    wrong type is refused by the caller)."""
    return empty if value is None else value


def _strictly_inside(inner: Network, outer: Network) -> bool:
    """The API server's rule for ``except``: a strict subset of ``cidr``."""
    return (
        inner.version == outer.version
        and inner != outer
        and int(inner.network_address) >= int(outer.network_address)
        and int(inner.broadcast_address) <= int(outer.broadcast_address)
    )


def _cidr(where: str, text: Any) -> Network:
    if not isinstance(text, str) or "/" not in text:
        raise ValueError(f"{where}: {text!r} is not a CIDR like 10.0.0.0/8")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a CIDR like 10.0.0.0/8") from None


def _label_key(where: str, key: Any) -> None:
    """The API server's rule for a label key (a qualified name): ``name`` or ``prefix/name``, the
    name up to 63 characters of ``[-A-Za-z0-9_.]`` starting and ending alphanumeric, the prefix a
    non-empty DNS-1123 subdomain of up to 253 characters."""
    if not isinstance(key, str) or key.count("/") > 1:
        raise ValueError(f"{where}: {key!r} is not a label key")
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        raise ValueError(f"{where}: {key!r} is not a label key (the prefix before / is empty)")
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise ValueError(
            f"{where}: {key!r} is not a label key (the prefix before / must be a lower-case "
            "DNS subdomain of up to 253 characters)"
        )
    if not _LABEL_NAME.fullmatch(name):
        raise ValueError(
            f"{where}: {key!r} is not a label key (the name must be up to 63 characters of "
            "A-Z, a-z, 0-9, -, _ and ., starting and ending with a letter or digit)"
        )


def _label_value(where: str, value: Any) -> None:
    if not isinstance(value, str) or (value and not _LABEL_NAME.fullmatch(value)):
        raise ValueError(f"{where}: {value!r} is not a label value (a string of up to 63 chars)")


def peers_json(peers: tuple[Peer, ...]) -> str:
    """The flag form of a peer list (compact JSON), for help texts and docs."""
    return json.dumps([dict(peer) for peer in peers], separators=(",", ":"))


__all__ = [
    "exporter_network_policy",
    "network_policy",
    "parse_peers",
    "peers_json",
    "threader_network_policy",
]
