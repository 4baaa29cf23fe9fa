"""The exporter workload of a policy: its probe ConfigMap, Deployment, Service, ServiceMonitor
and, with persistence, the PersistentVolumeClaim of its state directory."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..policy.model import Exporter, Policy, SecretKeyRef
from .objects import EXPORTER_PORT, ChildNames, Manifest, RenderOptions, metadata
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

EXPORTER_APP = "lumen-exporter"
EXPORTER_DIR = "/etc/lumen/exporter"
EXPORTER_CONFIG_KEY = "config.json"
PIPELINE_TOKEN_FILE = "pipeline-token"
CONFIG_HASH_ANNOTATION = "lumen.dev/config-hash"


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
    claim = ChildNames.of(policy).exporter_state if exporter.persistence.enabled else None
    return [*scratch_volumes(claim), token_volume("config", sources)]


def exporter_container(options: RenderOptions, exporter: Exporter) -> Manifest:
    mounts = [*scratch_mounts(), {"name": "config", "mountPath": EXPORTER_DIR, "readOnly": True}]
    return container(
        EXPORTER_APP,
        options.exporter_image,
        EXPORTER_PORT,
        exporter_args(exporter),
        mounts=mounts,
        resources=container_resources(options.exporter_resources),
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
    """ConfigMap, [PersistentVolumeClaim,] Deployment, Service and ServiceMonitor of the
    exporter; [] when it has none."""
    exporter = enabled_exporter(policy)
    if exporter is None:
        return []
    names = ChildNames.of(policy)
    name = names.exporter
    labels = workload_labels(policy, EXPORTER_APP, "exporter")
    config = exporter_config(exporter)
    pod = pod_spec(
        policy,
        EXPORTER_APP,
        exporter_container(options, exporter),
        exporter_volumes(policy, exporter),
        1,
    )
    claim = (
        [
            persistent_volume_claim(
                policy, options, names.exporter_state, labels, exporter.persistence
            )
        ]
        if exporter.persistence.enabled
        else []
    )
    return [
        exporter_config_map(policy, options, labels, config),
        *claim,
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
