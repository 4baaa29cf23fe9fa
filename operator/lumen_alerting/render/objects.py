"""Names, labels and ownership shared by every object rendered for a policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..policy.model import API_GROUP, API_VERSION, KIND, Policy

Manifest = dict[str, Any]

POLICY_LABEL = "lumen.dev/policy"
DEFAULT_KPS_RELEASE = "kube-prometheus-stack"
DEFAULT_IMAGE = "ghcr.io/lumen-alerting/lumen:0.1.0"
THREADER_PORT = 8080
EXPORTER_PORT = 9108
# Keys of the threader's token Secret (created by the operator, referenced by the renderer).
WEBHOOK_TOKEN_KEY = "webhook-token"  # Alertmanager presents it to the threader
ADMIN_TOKEN_KEY = "admin-token"  # guards the threader's /cache endpoints
# Every SLO burn-rate alert has this name; labels `slo` and `tier` (page|ticket) tell them apart.
SLO_ALERT = "LumenSLOErrorBudgetBurn"
# Most alerts Alertmanager puts in one notification to the threader: the threader refuses larger
# bodies (its MAX_ALERTS), and Alertmanager does not retry a 4xx, so it must truncate instead.
THREADER_MAX_ALERTS = 1000

# A container's `resources`: {"requests": {"cpu": "50m", ...}, "limits": {...}}.
ResourceRequirements = Mapping[str, Mapping[str, str]]
DEFAULT_THREADER_RESOURCES: ResourceRequirements = {
    "requests": {"cpu": "50m", "memory": "96Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}
DEFAULT_EXPORTER_RESOURCES: ResourceRequirements = {
    "requests": {"cpu": "20m", "memory": "64Mi"},
    "limits": {"cpu": "200m", "memory": "192Mi"},
}

# A NetworkPolicyPeer (podSelector / namespaceSelector / ipBlock), as the API writes it.
Peer = Mapping[str, Any]
# prometheus-operator labels the pods it runs `app.kubernetes.io/name: alertmanager|prometheus`
# (kube-prometheus-stack's Alertmanager and Prometheus among them), in whatever namespace.
DEFAULT_ALERTMANAGER_PEERS: tuple[Peer, ...] = (
    {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}},
    },
)
DEFAULT_PROMETHEUS_PEERS: tuple[Peer, ...] = (
    {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    },
)
# CI jobs posting pipeline runs usually run next to the service: any pod of the policy's namespace.
DEFAULT_PIPELINE_PEERS: tuple[Peer, ...] = ({"podSelector": {}},)


@dataclass(frozen=True)
class RenderOptions:
    """What the renderer needs to know beyond the policy: the cluster it renders for."""

    kps_release: str = DEFAULT_KPS_RELEASE
    threader_image: str = DEFAULT_IMAGE
    exporter_image: str = DEFAULT_IMAGE
    threader_resources: ResourceRequirements = field(
        default_factory=lambda: DEFAULT_THREADER_RESOURCES
    )
    exporter_resources: ResourceRequirements = field(
        default_factory=lambda: DEFAULT_EXPORTER_RESOURCES
    )
    managed_by: str = "lumenctl"
    # A NetworkPolicy per threader and exporter, letting in only these peers (network_policies.py).
    network_policies: bool = True
    alertmanager_peers: tuple[Peer, ...] = DEFAULT_ALERTMANAGER_PEERS
    prometheus_peers: tuple[Peer, ...] = DEFAULT_PROMETHEUS_PEERS
    pipeline_peers: tuple[Peer, ...] = DEFAULT_PIPELINE_PEERS


@dataclass(frozen=True)
class ChildNames:
    """Names of the objects rendered for one policy (all in the policy's namespace)."""

    rules: str
    alertmanager_config: str
    threader: str
    threader_secret: str
    threader_state: str
    exporter: str
    exporter_state: str

    @classmethod
    def of(cls, policy: Policy) -> ChildNames:
        base = f"lumen-{policy.name}"
        return cls(
            rules=base,
            alertmanager_config=base,
            threader=f"{base}-threader",
            # Holds the webhook and admin tokens; created by the operator, never rendered.
            threader_secret=f"{base}-threader",
            # PersistentVolumeClaims of the state directories (with `persistence.enabled`).
            threader_state=f"{base}-threader-state",
            exporter=f"{base}-exporter",
            exporter_state=f"{base}-exporter-state",
        )


def common_labels(policy: Policy, options: RenderOptions) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": options.managed_by,
        "app.kubernetes.io/part-of": "lumen",
        POLICY_LABEL: policy.name,
    }


def metadata(
    policy: Policy,
    options: RenderOptions,
    name: str,
    *,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Object metadata: namespace, Lumen's labels and, from the operator, the owner."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": policy.namespace,
        "labels": {**common_labels(policy, options), **(labels or {})},
    }
    if policy.uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": KIND,
                "name": policy.name,
                "uid": policy.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return meta


def service_url(policy: Policy, name: str, port: int, path: str = "") -> str:
    """In-cluster URL of one of the policy's Services."""
    return f"http://{name}.{policy.namespace}.svc:{port}{path}"
