"""The Kubernetes resource kinds the operator reads and writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..policy.model import API_GROUP, API_VERSION, KIND


@dataclass(frozen=True)
class ResourceKind:
    """One namespaced resource type, as the API server addresses it."""

    group: str  # "" for the core API
    version: str
    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str | None = None, subresource: str = "") -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        path = f"{prefix}/namespaces/{namespace}/{self.plural}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path


POLICY = ResourceKind(API_GROUP, API_VERSION, KIND, "lumenalertpolicies")
PROMETHEUS_RULE = ResourceKind("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules")
ALERTMANAGER_CONFIG = ResourceKind(
    "monitoring.coreos.com", "v1alpha1", "AlertmanagerConfig", "alertmanagerconfigs"
)
SERVICE_MONITOR = ResourceKind("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors")
DEPLOYMENT = ResourceKind("apps", "v1", "Deployment", "deployments")
SERVICE = ResourceKind("", "v1", "Service", "services")
CONFIG_MAP = ResourceKind("", "v1", "ConfigMap", "configmaps")
PERSISTENT_VOLUME_CLAIM = ResourceKind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
NETWORK_POLICY = ResourceKind("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies")
SECRET = ResourceKind("", "v1", "Secret", "secrets")
EVENT = ResourceKind("", "v1", "Event", "events")

# Every kind the renderer produces. Only these are ever pruned: the threader's token Secret is
# created once and left to the garbage collector (it is owned by the policy). A state claim is
# pruned, with its data, when its workload's persistence is switched off (docs/workloads.md).
# NetworkPolicies are listed even with --network-policies false: that is how the ones rendered
# before the flag was turned off are found and pruned.
RENDERED_KINDS: tuple[ResourceKind, ...] = (
    PROMETHEUS_RULE,
    ALERTMANAGER_CONFIG,
    CONFIG_MAP,
    PERSISTENT_VOLUME_CLAIM,
    NETWORK_POLICY,
    SERVICE,
    DEPLOYMENT,
    SERVICE_MONITOR,
)
_BY_TYPE = {(k.api_version, k.kind): k for k in (*RENDERED_KINDS, SECRET)}


def kind_of(manifest: dict[str, Any]) -> ResourceKind:
    """The resource kind of a rendered object (KeyError for a kind Lumen never writes)."""
    return _BY_TYPE[(manifest["apiVersion"], manifest["kind"])]
