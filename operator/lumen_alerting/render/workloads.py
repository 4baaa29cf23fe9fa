"""The threader and exporter workloads of a policy: Deployments, Services, ServiceMonitors and the
exporter's probe ConfigMap.

Pure functions: the same policy and options always render the same objects in the same order. The
threader's token Secret is the one piece of state that is not rendered; ``threader_secret``
describes it so the operator can create it once, with random tokens, when it is absent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..policy.model import Exporter, Policy, SecretKeyRef, Threader
from .objects import (
    ADMIN_TOKEN_KEY,
    EXPORTER_PORT,
    POLICY_LABEL,
    THREADER_PORT,
    WEBHOOK_TOKEN_KEY,
    ChildNames,
    Manifest,
    RenderOptions,
    ResourceRequirements,
    metadata,
)

CONFIG_HASH_ANNOTATION = "lumen.dev/config-hash"
RUN_AS = 65532
PORT_NAME = "http"
SCRAPE_INTERVAL = "30s"
STATE_DIR = "/var/lib/lumen"
THREADER_DIR = "/etc/lumen/threader"
EXPORTER_DIR = "/etc/lumen/exporter"
EXPORTER_CONFIG_KEY = "config.json"
DATABASE_URL_FILE = "database-url"
PIPELINE_TOKEN_FILE = "pipeline-token"
FILE_STORE = f"file:{STATE_DIR}/threads"
DEFAULT_DATABASE_URL = f"sqlite:///{STATE_DIR}/incidents.db"
SECRET_FILE_MODE = 0o440  # readable by the pod's fsGroup only


@dataclass(frozen=True)
class SecretRequest:
    """A Secret the operator creates once with random values for ``keys`` (never rendered)."""

    name: str
    namespace: str
    keys: tuple[str, ...] = (ADMIN_TOKEN_KEY, WEBHOOK_TOKEN_KEY)


# --- shared building blocks ---------------------------------------------------------------------


def selector_labels(policy: Policy, app: str) -> dict[str, str]:
    """What Deployments and Services select on; never change it (selectors are immutable)."""
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": policy.name,
        POLICY_LABEL: policy.name,
    }


def workload_labels(policy: Policy, app: str, component: str) -> dict[str, str]:
    return {**selector_labels(policy, app), "app.kubernetes.io/component": component}


def _resources(requirements: ResourceRequirements) -> dict[str, Any]:
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


def scratch_volumes() -> list[dict[str, Any]]:
    """Writable state and /tmp: the root filesystem is read-only."""
    return [
        {"name": "state", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]


def scratch_mounts() -> list[dict[str, Any]]:
    return [
        {"name": "state", "mountPath": STATE_DIR},
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


def secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def container(
    app: str,
    image: str,
    port: int,
    args: list[str],
    *,
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    resources: dict[str, Any],
) -> dict[str, Any]:
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
    if env:
        spec["env"] = env
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


# --- threader -----------------------------------------------------------------------------------

THREADER_APP = "lumen-threader"


def enabled_threader(policy: Policy) -> Threader | None:
    threader = policy.spec.threader
    return threader if threader is not None and threader.enabled else None


def threader_secret(policy: Policy) -> SecretRequest | None:
    """The webhook/admin token Secret the operator must ensure; None when there is no threader."""
    if enabled_threader(policy) is None:
        return None
    return SecretRequest(name=ChildNames.of(policy).threader_secret, namespace=policy.namespace)


def threader_store_arg(threader: Threader) -> str:
    store = threader.store
    if store.type == "redis":
        return store.url
    if store.type == "file":
        return FILE_STORE
    return "memory"


def threader_args(threader: Threader) -> list[str]:
    args = [
        "--listen", f"0.0.0.0:{THREADER_PORT}",
        "--store", threader_store_arg(threader),
        "--webhook-token-file", f"{THREADER_DIR}/{WEBHOOK_TOKEN_KEY}",
        "--admin-token-file", f"{THREADER_DIR}/{ADMIN_TOKEN_KEY}",
        "--thread-key", threader.thread_key,
    ]  # fmt: skip
    if not threader.reply_on_repeat:
        args.append("--no-reply-on-repeat")
    if threader.incidents.database_url is not None:
        args += ["--database-url-file", f"{THREADER_DIR}/{DATABASE_URL_FILE}"]
    else:
        args += ["--database-url", DEFAULT_DATABASE_URL]
    return args


def threader_volumes(policy: Policy, threader: Threader) -> list[dict[str, Any]]:
    tokens = ChildNames.of(policy).threader_secret
    sources = [secret_source(tokens, [(key, key) for key in (ADMIN_TOKEN_KEY, WEBHOOK_TOKEN_KEY)])]
    database = threader.incidents.database_url
    if database is not None:
        sources.append(secret_source(database.name, [(database.key, DATABASE_URL_FILE)]))
    return [*scratch_volumes(), token_volume("secrets", sources)]


def threader_container(policy: Policy, options: RenderOptions, threader: Threader) -> Manifest:
    env = []
    if threader.bot_token is not None:
        env.append(secret_env("SLACK_BOT_TOKEN", threader.bot_token))
    mounts = [*scratch_mounts(), {"name": "secrets", "mountPath": THREADER_DIR, "readOnly": True}]
    return container(
        THREADER_APP,
        options.threader_image,
        THREADER_PORT,
        threader_args(threader),
        env=env,
        mounts=mounts,
        resources=_resources(options.threader_resources),
    )


def threader_objects(policy: Policy, options: RenderOptions) -> list[Manifest]:
    """Deployment, Service and ServiceMonitor of the policy's threader; [] when it has none."""
    threader = enabled_threader(policy)
    if threader is None:
        return []
    name = ChildNames.of(policy).threader
    labels = workload_labels(policy, THREADER_APP, "threader")
    replicas = threader.replicas
    pod = pod_spec(
        policy,
        THREADER_APP,
        threader_container(policy, options, threader),
        threader_volumes(policy, threader),
        replicas,
    )
    return [
        deployment(
            policy,
            options,
            name,
            THREADER_APP,
            labels=labels,
            replicas=replicas,
            single_writer=threader.store.type == "file",
            pod=pod,
        ),
        service(policy, options, name, THREADER_APP, labels, THREADER_PORT),
        service_monitor(policy, options, name, THREADER_APP, labels),
    ]


# --- exporter -----------------------------------------------------------------------------------

EXPORTER_APP = "lumen-exporter"


def enabled_exporter(policy: Policy) -> Exporter | None:
    exporter = policy.spec.exporter
    return exporter if exporter is not None and exporter.enabled else None


def exporter_config(exporter: Exporter) -> str:
    """``config.json`` of the exporter: probes and pipeline switch, serialised deterministically.

    JSON (which YAML readers read too) because it is two orders of magnitude cheaper to write
    than YAML, and this runs on every reconcile."""
    document = {
        "probes": [
            {
                "name": probe.name,
                "url": probe.url,
                "interval": probe.interval,
                "timeout": probe.timeout,
                "health_metric": probe.health_metric,
                "response_time_metric": probe.response_time_metric,
                "fields": dict(probe.fields),
            }
            for probe in exporter.probes
        ],
        "pipeline": {"enabled": exporter.pipeline.enabled},
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def config_hash(config: str) -> str:
    return hashlib.sha256(config.encode()).hexdigest()


def pipeline_token(exporter: Exporter) -> SecretKeyRef | None:
    return exporter.pipeline.token if exporter.pipeline.enabled else None


def exporter_args(exporter: Exporter) -> list[str]:
    args = [
        "--listen", f"0.0.0.0:{EXPORTER_PORT}",
        "--config", f"{EXPORTER_DIR}/{EXPORTER_CONFIG_KEY}",
        "--state-dir", STATE_DIR,
    ]  # fmt: skip
    if pipeline_token(exporter) is not None:
        args += ["--pipeline-token-file", f"{EXPORTER_DIR}/{PIPELINE_TOKEN_FILE}"]
    return args


def exporter_volumes(policy: Policy, exporter: Exporter) -> list[dict[str, Any]]:
    config_map = {
        "configMap": {
            "name": ChildNames.of(policy).exporter,
            "items": [{"key": EXPORTER_CONFIG_KEY, "path": EXPORTER_CONFIG_KEY}],
        }
    }
    sources = [config_map]
    token = pipeline_token(exporter)
    if token is not None:
        sources.append(secret_source(token.name, [(token.key, PIPELINE_TOKEN_FILE)]))
    return [*scratch_volumes(), token_volume("config", sources)]


def exporter_container(options: RenderOptions, exporter: Exporter) -> Manifest:
    mounts = [*scratch_mounts(), {"name": "config", "mountPath": EXPORTER_DIR, "readOnly": True}]
    return container(
        EXPORTER_APP,
        options.exporter_image,
        EXPORTER_PORT,
        exporter_args(exporter),
        env=[],
        mounts=mounts,
        resources=_resources(options.exporter_resources),
    )


def exporter_config_map(
    policy: Policy, options: RenderOptions, labels: dict[str, str], config: str
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(policy, options, ChildNames.of(policy).exporter, labels=labels),
        "data": {EXPORTER_CONFIG_KEY: config},
    }


def exporter_objects(policy: Policy, options: RenderOptions) -> list[Manifest]:
    """ConfigMap, Deployment, Service and ServiceMonitor of the exporter; [] when it has none."""
    exporter = enabled_exporter(policy)
    if exporter is None:
        return []
    name = ChildNames.of(policy).exporter
    labels = workload_labels(policy, EXPORTER_APP, "exporter")
    config = exporter_config(exporter)
    pod = pod_spec(
        policy,
        EXPORTER_APP,
        exporter_container(options, exporter),
        exporter_volumes(policy, exporter),
        1,
    )
    return [
        exporter_config_map(policy, options, labels, config),
        deployment(
            policy,
            options,
            name,
            EXPORTER_APP,
            labels=labels,
            replicas=1,
            # Pipeline state lives in the pod's state directory: one writer at a time.
            single_writer=True,
            pod=pod,
            annotations={CONFIG_HASH_ANNOTATION: config_hash(config)},
        ),
        service(policy, options, name, EXPORTER_APP, labels, EXPORTER_PORT),
        service_monitor(policy, options, name, EXPORTER_APP, labels),
    ]
