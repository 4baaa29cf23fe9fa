"""Pod building blocks shared by the threader's and the exporter's workloads: labels, hardening,
probes, volumes, and the Deployment, Service, ServiceMonitor and PersistentVolumeClaim around them.

Pure functions: the same policy and options always render the same objects in the same order.
"""

from __future__ import annotations

import re
from typing import Any

from ..policy.model import Persistence, Policy
from .objects import (
    POLICY_LABEL,
    Manifest,
    RenderOptions,
    ResourceRequirements,
    metadata,
)

RUN_AS = 65532
PORT_NAME = "http"
SCRAPE_INTERVAL = "30s"
STATE_DIR = "/var/lib/lumen"
STATE_VOLUME = "state"
SECRET_FILE_MODE = 0o440  # readable by the pod's fsGroup only
BINARY_UNITS = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
DECIMAL_UNITS = ("", "k", "M", "G", "T", "P", "E")


def selector_labels(policy: Policy, app: str) -> dict[str, str]:
    """What Deployments and Services select on; never change it (selectors are immutable).

    No ``app.kubernetes.io/instance``: Argo CD's label tracking reads it as the name of the
    Application owning the object, so a child carrying the policy's name there would be claimed
    (and pruned) by an Application of that name (docs/argocd.md)."""
    return {"app.kubernetes.io/name": app, POLICY_LABEL: policy.name}


def workload_labels(policy: Policy, app: str, component: str) -> dict[str, str]:
    return {**selector_labels(policy, app), "app.kubernetes.io/component": component}


def container_resources(requirements: ResourceRequirements) -> dict[str, Any]:
    return {part: dict(amounts) for part, amounts in requirements.items()}


def container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def http_probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def health_probes() -> dict[str, Any]:
    """Startup and liveness on ``/health``, readiness on ``/ready``."""
    return {
        "startupProbe": http_probe("/health", period=2, failures=30),
        "livenessProbe": http_probe("/health", period=10, failures=3),
        "readinessProbe": http_probe("/ready", period=5, failures=2),
    }


def scratch_volumes(claim: str | None) -> list[dict[str, Any]]:
    """Writable state and /tmp: the root filesystem is read-only. The state directory is the
    claim ``claim`` when the workload has persistence, else an emptyDir lost with the pod."""
    state: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": claim}}
        if claim is not None
        else {"emptyDir": {"sizeLimit": "1Gi"}}
    )
    return [
        {"name": STATE_VOLUME, **state},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]


def scratch_mounts() -> list[dict[str, Any]]:
    return [
        {"name": STATE_VOLUME, "mountPath": STATE_DIR},
        {"name": "tmp", "mountPath": "/tmp"},  # a private emptyDir
    ]


def secret_source(secret: str, items: list[tuple[str, str]]) -> dict[str, Any]:
    """A projected-volume source exposing Secret ``secret``'s keys as files (key, file name)."""
    return {
        "secret": {
            "name": secret,
            "items": [{"key": key, "path": path} for key, path in items],
        }
    }


def token_volume(name: str, sources: list[dict[str, Any]]) -> dict[str, Any]:
    """One read-only directory of token (and config) files, owned by the pod's fsGroup."""
    return {"name": name, "projected": {"defaultMode": SECRET_FILE_MODE, "sources": sources}}


def container(
    app: str,
    image: str,
    port: int,
    args: list[str],
    *,
    mounts: list[dict[str, Any]],
    resources: dict[str, Any],
) -> dict[str, Any]:
    """A service's container; it takes secrets as mounted files only, never as environment
    variables (those are inherited by child processes and show in process listings)."""
    spec: dict[str, Any] = {
        "name": app.removeprefix("lumen-"),
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [app],
        "args": args,
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        **health_probes(),
        "resources": resources,
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    return spec


def pod_spec(
    policy: Policy, app: str, main: dict[str, Any], volumes: list[dict[str, Any]], replicas: int
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # neither service talks to the Kubernetes API
        "enableServiceLinks": False,
        "securityContext": pod_security(),
        "terminationGracePeriodSeconds": 30,
        "containers": [main],
        "volumes": volumes,
    }
    if replicas > 1:
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(policy, app)},
            }
        ]
    return spec


def deployment_strategy(single_writer: bool) -> dict[str, Any]:
    """Recreate when pods own on-disk state one writer at a time; otherwise surge one pod."""
    if single_writer:
        return {"type": "Recreate"}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def deployment(
    policy: Policy,
    options: RenderOptions,
    name: str,
    app: str,
    *,
    labels: dict[str, str],
    replicas: int,
    single_writer: bool,
    pod: dict[str, Any],
    annotations: dict[str, str] | None = None,
) -> Manifest:
    template_meta: dict[str, Any] = {"labels": labels}
    if annotations:
        template_meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(policy, options, name, labels=labels),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(policy, app)},
            "strategy": deployment_strategy(single_writer),
            "template": {"metadata": template_meta, "spec": pod},
        },
    }


def service(
    policy: Policy, options: RenderOptions, name: str, app: str, labels: dict[str, str], port: int
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(policy, options, name, labels=labels),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(policy, app),
            "ports": [
                {"name": PORT_NAME, "port": port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def service_monitor(
    policy: Policy, options: RenderOptions, name: str, app: str, labels: dict[str, str]
) -> Manifest:
    """Scrapes the Service's ``http`` port; ``release`` makes kube-prometheus-stack pick it up."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(
            policy, options, name, labels={**labels, "release": options.kps_release}
        ),
        "spec": {
            "selector": {"matchLabels": selector_labels(policy, app)},
            "namespaceSelector": {"matchNames": [policy.namespace]},
            "endpoints": [
                {
                    "port": PORT_NAME,
                    "path": "/metrics",
                    "scheme": "http",
                    "interval": SCRAPE_INTERVAL,
                    "scrapeTimeout": "10s",
                }
            ],
        },
    }


def persistent_volume_claim(
    policy: Policy,
    options: RenderOptions,
    name: str,
    labels: dict[str, str],
    persistence: Persistence,
) -> Manifest:
    """The claim behind a workload's state directory. Owned by the policy like every child, so
    the garbage collector deletes it with the policy (docs/workloads.md says so)."""
    spec: dict[str, Any] = {
        "accessModes": list(persistence.access_modes),
        "resources": {"requests": {"storage": canonical_quantity(persistence.size)}},
    }
    if persistence.storage_class_name is not None:
        spec["storageClassName"] = persistence.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(policy, options, name, labels=labels),
        "spec": spec,
    }


def canonical_quantity(size: str) -> str:
    """``size`` as the API server writes it back (``1024Mi`` -> ``1Gi``, ``2000M`` -> ``2G``), so
    the live claim contains what we render and the operator does not re-apply it on every pass.

    ``size`` is a whole number with an optional unit (the model's pattern)."""
    match = re.fullmatch(r"([0-9]+)([A-Za-z]*)", size)
    if match is None:
        raise ValueError(f"not a whole-number quantity: {size!r}")
    number, unit = int(match[1]), match[2]
    units, base = (BINARY_UNITS, 1024) if unit in BINARY_UNITS[1:] else (DECIMAL_UNITS, 1000)
    step = units.index(unit)
    while number and number % base == 0 and step < len(units) - 1:
        number, step = number // base, step + 1
    return f"{number}{units[step]}"
