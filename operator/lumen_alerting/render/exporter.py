"""The exporter workload of a policy: its probe ConfigMap, Deployment, Service, ServiceMonitor,
the NetworkPolicy that lets only Prometheus (and the pipeline's clients) in and, with
persistence, the PersistentVolumeClaim of its state directory."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..policy.model import Exporter, Policy, Probe, SecretKeyRef
from .network_policies import exporter_network_policy
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
HEADERS_DIR = "headers"  # probes' secret header values, one file each
CONFIG_HASH_ANNOTATION = "lumen.dev/config-hash"


def enabled_exporter(policy: Policy) -> Exporter | None:
    exporter = policy.spec.exporter
    return exporter if exporter is not None and exporter.enabled else None


def exporter_config(exporter: Exporter) -> str:
    """``config.json`` of the exporter: probes and pipeline, serialised deterministically.

    Every key is written, defaults included, so the file says everything the exporter will do;
    ``header_files`` only when a probe has headers. JSON (which YAML readers read too) because it
    is two orders of magnitude cheaper to write than YAML, and this runs on every reconcile."""
    pipeline: dict[str, Any] = {"enabled": exporter.pipeline.enabled}
    if exporter.pipeline.expire_after is not None:
        pipeline["expire_after"] = exporter.pipeline.expire_after
    document = {
        "probes": [probe_config(probe) for probe in exporter.probes],
        "pipeline": pipeline,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def probe_config(probe: Probe) -> dict[str, Any]:
    """One probe of ``config.json``, keys in the exporter's snake_case."""
    config: dict[str, Any] = {
        "name": probe.name,
        "url": probe.url,
        "interval": probe.interval,
        "timeout": probe.timeout,
        "method": probe.method,
        "expected_status": list(probe.expected_status),
        "health_metric": probe.health_metric,
        "response_time_metric": probe.response_time_metric,
        "fields": dict(probe.fields),
        "value_maps": {metric: dict(mapping) for metric, mapping in probe.value_maps.items()},
        "count_values": dict(probe.count_values),
        "max_distinct_values": probe.max_distinct_values,
    }
    if probe.headers:
        config["header_files"] = {
            header.name: f"{EXPORTER_DIR}/{header_file(probe, index)}"
            for index, header in enumerate(probe.headers)
        }
    return config


def header_file(probe: Probe, index: int) -> str:
    """Where the value of the probe's ``index``-th header is mounted, relative to EXPORTER_DIR.

    By position rather than header name: a directory per probe (probe names are unique DNS
    labels) and a number per header keep every path distinct and free of odd characters."""
    return f"{HEADERS_DIR}/{probe.name}/{index}"


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
    # Each header value is a file of the same read-only directory, so the exporter reads it like
    # the token; the Secret's value never enters the ConfigMap.
    sources += [
        secret_source(header.secret.name, [(header.secret.key, header_file(probe, index))])
        for probe in exporter.probes
        for index, header in enumerate(probe.headers)
    ]
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
    """ConfigMap, [PersistentVolumeClaim,] [NetworkPolicy,] Deployment, Service and
    ServiceMonitor of the exporter; [] when it has none (the NetworkPolicy before the
    Deployment, as for the threader)."""
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
        *exporter_network_policy(policy, options, exporter, name, EXPORTER_APP, labels),
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
