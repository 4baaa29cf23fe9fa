"""Operator settings from flags, each with a ``LUMEN_OPERATOR_*`` environment form.

A flag wins over its environment variable; the variable wins over the default. The variable's
name is the flag's, upper-cased with dashes as underscores: ``--kps-release`` is
``LUMEN_OPERATOR_KPS_RELEASE``. Lists (``--namespace``) take commas in the environment.

The NetworkPolicy flags (``NETWORK_POLICY_FLAGS``) are defined here once for both programs that
take them: ``lumenctl render`` adds the same flags, with the same help and parsers.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from ..render.network_policies import parse_peers, peers_json
from ..render.objects import (
    DEFAULT_ALERTMANAGER_PEERS,
    DEFAULT_IMAGE,
    DEFAULT_KPS_RELEASE,
    DEFAULT_PIPELINE_PEERS,
    DEFAULT_PROMETHEUS_PEERS,
    RenderOptions,
    ResourceRequirements,
)
from ..settings import (
    Setting,
    add_version_flag,
    flag_or_environment,
    parse_or_exit,
    seconds,
    true_or_false,
    whole_number,
)

ENV_PREFIX = "LUMEN_OPERATOR_"
MANAGED_BY = "lumen-operator"
LogFormat = Literal["plain", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
# A Kubernetes resource quantity: 500m, 1.5, 256Mi, 1e3.
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
# Seconds between retries of transient API failures, kopf's own calls and reconciles alike.
RETRY_DELAYS: tuple[float, ...] = (1, 2, 5, 10, 30, 60)
T = TypeVar("T")


@dataclass(frozen=True)
class RenderFlag:
    """A flag that sets one field of RenderOptions, in lumen-operator and ``lumenctl render``
    alike: one name, metavar, help text and parser for both."""

    name: str  # the flag without its dashes; the RenderOptions field is it with underscores
    metavar: str
    help: str
    parse: Callable[[str], Any]  # a given value -> the field's value; ValueError says why not

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")


NETWORK_POLICY_FLAGS: tuple[RenderFlag, ...] = (
    RenderFlag(
        "network-policies",
        "true|false",
        "render a NetworkPolicy for every threader and exporter, letting in only the peers "
        "below (default: true; with false lumen-operator prunes the ones it rendered before)",
        true_or_false,
    ),
    RenderFlag(
        "alertmanager-peers",
        "JSON",
        "NetworkPolicyPeers let in to the threader's port, to post notifications (default: "
        f"{peers_json(DEFAULT_ALERTMANAGER_PEERS)}); [] lets none in",
        parse_peers,
    ),
    RenderFlag(
        "prometheus-peers",
        "JSON",
        "NetworkPolicyPeers let in to the threader's and the exporter's port, to scrape "
        f"/metrics (default: {peers_json(DEFAULT_PROMETHEUS_PEERS)})",
        parse_peers,
    ),
    RenderFlag(
        "pipeline-peers",
        "JSON",
        "NetworkPolicyPeers let in to the exporter's port when its policy enables the pipeline, "
        f"to post runs (default: {peers_json(DEFAULT_PIPELINE_PEERS)}, the policy's namespace)",
        parse_peers,
    ),
)


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator is told at start-up."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    standalone: bool = False
    peering: str = "lumen-operator"
    priority: int | None = None  # None: a random priority, so two replicas never tie
    # The cluster the objects are rendered for: release label, images, container resources.
    rendering: RenderOptions = field(default_factory=lambda: RenderOptions(managed_by=MANAGED_BY))
    drift_interval: float = 300.0
    metrics_port: int = 8000
    liveness_port: int = 8080
    log_format: LogFormat = "plain"
    log_level: LogLevel = "info"
    context: str | None = None
    # Not a flag: the tests shorten it to run an outage's whole retry chain in seconds.
    retry_delays: tuple[float, ...] = RETRY_DELAYS

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> OperatorConfig:
    """Settings from ``argv`` and ``environ``; exits with a usage message on bad input."""
    return parse_or_exit(
        _parser(), argv, lambda args: _config(args, flag_or_environment(args, environ, ENV_PREFIX))
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lumen-operator",
        description="Reconcile LumenAlertPolicy objects into PrometheusRules, "
        "AlertmanagerConfigs and the threader and exporter workloads.",
        epilog="Every flag can also be set as LUMEN_OPERATOR_<FLAG> in the environment, e.g. "
        "LUMEN_OPERATOR_KPS_RELEASE=monitoring; --namespace takes commas there, JSON settings "
        "take the same JSON.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", default=None,
        help="watch policies in every namespace (the default when no --namespace is given)",
    )  # fmt: skip
    scope.add_argument(
        "-n", "--namespace", action="append", metavar="NS", dest="namespace",
        help="watch policies in this namespace only; repeat for several",
    )  # fmt: skip
    parser.add_argument(
        "--standalone", action="store_true", default=None,
        help="run without kopf peering (only when a single replica runs)",
    )  # fmt: skip
    parser.add_argument(
        "--peering", metavar="NAME",
        help="name of the KopfPeering/ClusterKopfPeering object replicas coordinate through "
        "(default: lumen-operator)",
    )  # fmt: skip
    parser.add_argument(
        "--priority", metavar="N",
        help="peering priority; the highest live replica works, the others wait "
        "(default: random, so replicas never tie)",
    )  # fmt: skip
    parser.add_argument(
        "--kps-release", metavar="NAME",
        help=f"the kube-prometheus-stack release label (default: {DEFAULT_KPS_RELEASE})",
    )  # fmt: skip
    parser.add_argument(
        "--image", metavar="IMAGE",
        help=f"image of threader and exporter pods: Lumen's one image (default: {DEFAULT_IMAGE})",
    )  # fmt: skip
    parser.add_argument(
        "--threader-image", metavar="IMAGE", help="image of threader pods (default: --image)"
    )
    parser.add_argument(
        "--exporter-image", metavar="IMAGE", help="image of exporter pods (default: --image)"
    )
    parser.add_argument(
        "--threader-resources", metavar="JSON",
        help='container resources of threader pods, e.g. {"requests":{"cpu":"50m"}}',
    )  # fmt: skip
    parser.add_argument(
        "--exporter-resources", metavar="JSON", help="container resources of exporter pods"
    )
    for flag in NETWORK_POLICY_FLAGS:
        parser.add_argument(f"--{flag.name}", metavar=flag.metavar, help=flag.help)
    parser.add_argument(
        "--drift-interval", metavar="SECONDS",
        help="how often every policy is re-checked against the cluster (default: 300)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-port", metavar="PORT",
        help="port of the Prometheus /metrics endpoint, not --liveness-port's; 0 disables it "
        "(default: 8000)",
    )  # fmt: skip
    parser.add_argument(
        "--liveness-port", metavar="PORT",
        help="port of the /healthz liveness endpoint; 0 disables it (default: 8080)",
    )  # fmt: skip
    parser.add_argument("--log-format", metavar="plain|json", help="log format (default: plain)")
    parser.add_argument(
        "--log-level", metavar="LEVEL", help="debug, info, warning or error (default: info)"
    )
    parser.add_argument(
        "--context", metavar="NAME", help="kubeconfig context outside a cluster (default: current)"
    )
    add_version_flag(parser)
    return parser


def _config(args: argparse.Namespace, setting: Setting) -> OperatorConfig:
    if args.all_namespaces or args.namespace:  # a scope flag wins over both variables
        namespaces = args.namespace or []
    else:
        all_namespaces = _switch("all-namespaces", setting("all-namespaces"))
        namespaces = _split(setting("namespace") or "")
        if all_namespaces and namespaces:
            raise ValueError(
                "LUMEN_OPERATOR_ALL_NAMESPACES and LUMEN_OPERATOR_NAMESPACE exclude each other"
            )
    for namespace in namespaces:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
            raise ValueError(f"--namespace: {namespace!r} is not a namespace name")
    defaults = OperatorConfig()
    rendering = defaults.rendering
    image = _text("image", setting("image"), DEFAULT_IMAGE)
    metrics_port = _port("metrics-port", setting("metrics-port"), defaults.metrics_port)
    liveness_port = _port("liveness-port", setting("liveness-port"), defaults.liveness_port)
    if metrics_port and metrics_port == liveness_port:
        raise ValueError(
            f"--metrics-port and --liveness-port: both are {metrics_port}; each endpoint needs "
            "a port of its own (0 turns one off)"
        )
    return OperatorConfig(
        namespaces=tuple(dict.fromkeys(namespaces)),
        standalone=_switch("standalone", setting("standalone")),
        peering=_text("peering", setting("peering"), defaults.peering),
        priority=_priority(setting("priority")),
        rendering=replace(
            rendering,
            kps_release=_text("kps-release", setting("kps-release"), rendering.kps_release),
            threader_image=_text("threader-image", setting("threader-image"), image),
            exporter_image=_text("exporter-image", setting("exporter-image"), image),
            threader_resources=_resources(
                "threader-resources", setting("threader-resources"), rendering.threader_resources
            ),
            exporter_resources=_resources(
                "exporter-resources", setting("exporter-resources"), rendering.exporter_resources
            ),
            **{
                flag.field: _parsed(
                    flag.name, setting(flag.name), getattr(rendering, flag.field), flag.parse
                )
                for flag in NETWORK_POLICY_FLAGS
            },
        ),
        drift_interval=seconds(
            "drift-interval", setting("drift-interval"), 300.0, low=10, high=86400
        ),
        metrics_port=metrics_port,
        liveness_port=liveness_port,
        log_format=_choice("log-format", setting("log-format"), ("plain", "json"), "plain"),
        log_level=_choice(
            "log-level", setting("log-level"), ("debug", "info", "warning", "error"), "info"
        ),
        context=setting("context") or None,
    )


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _parsed(flag: str, value: str | None, default: T, parse: Callable[[str], T]) -> T:
    """``parse(value)``, its complaint naming the flag; unset or empty: ``default`` (so ``[]``
    is a peer list's value, and an empty variable is unset)."""
    if value is None or not value.strip():
        return default
    try:
        return parse(value)
    except ValueError as error:
        raise ValueError(f"--{flag}: {error}") from None


def _switch(flag: str, value: str | None, default: bool = False) -> bool:
    """A true/false setting (``settings.true_or_false``); unset or empty: ``default``."""
    return _parsed(flag, value, default, true_or_false)


def _text(flag: str, value: str | None, default: str) -> str:
    if value is None:
        return default
    if not value.strip():
        raise ValueError(f"--{flag}: must not be empty")
    return value.strip()


def _port(flag: str, value: str | None, default: int) -> int:
    return whole_number(flag, value, default, low=0, high=65535)


def _priority(value: str | None) -> int | None:
    """kopf's peering priority; None (kopf's default) when unset."""
    if value is None or value == "":
        return None
    return whole_number("priority", value, 0, low=-(2**31), high=2**31 - 1)


def _choice(flag: str, value: str | None, choices: tuple[str, ...], default: str) -> Any:
    if value is None or value == "":
        return default
    if value.lower() not in choices:
        raise ValueError(f"--{flag}: {value!r} is not one of {', '.join(choices)}")
    return value.lower()


def _resources(flag: str, value: str | None, default: ResourceRequirements) -> ResourceRequirements:
    if value is None or value == "":
        return default
    try:
        parsed = json.loads(value)
    except ValueError as error:
        raise ValueError(f"--{flag}: not JSON ({error})") from None
    if not isinstance(parsed, dict) or not parsed or set(parsed) - {"requests", "limits"}:
        raise ValueError(f'--{flag}: must be an object with "requests" and/or "limits"')
    for part, amounts in parsed.items():
        if not isinstance(amounts, dict) or not amounts:
            raise ValueError(f"--{flag}: {part} must map resource names to quantities")
        for resource, amount in amounts.items():
            if not isinstance(amount, str) or not QUANTITY.match(amount):
                raise ValueError(f"--{flag}: {part}.{resource}: {amount!r} is not a quantity")
    return parsed
