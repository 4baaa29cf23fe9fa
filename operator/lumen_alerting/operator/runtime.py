"""Run the operator: kopf with Lumen's registry, liveness endpoint and peering settings."""

from __future__ import annotations

import random
import threading

import kopf

from .config import OperatorConfig
from .handlers import build_registry
from .kube import ClusterAccess
from .metrics import OperatorMetrics


async def run_operator(
    config: OperatorConfig,
    access: ClusterAccess,
    metrics: OperatorMetrics,
    *,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (in the main thread) or until ``stop_flag`` is set."""
    liveness = f"http://0.0.0.0:{config.liveness_port}/healthz" if config.liveness_port else None
    # Replicas with equal priorities would both work; a random one makes exactly one the leader.
    priority = config.priority if config.priority is not None else random.randint(1, 2**30)
    await kopf.operator(
        registry=build_registry(config, access, metrics),
        standalone=config.standalone,
        priority=priority,
        clusterwide=config.clusterwide,
        namespaces=list(config.namespaces),
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
