"""``lumen-operator``: reconcile LumenAlertPolicy objects in the cluster (see docs/operator.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

import kopf
from prometheus_client import start_http_server

from ..operator.config import OperatorConfig, parse_config
from ..operator.kube import ClusterAccess
from ..operator.metrics import OperatorMetrics
from ..operator.runtime import run_operator

log = logging.getLogger("lumen.operator")


def configure_logging(config: OperatorConfig) -> None:
    log_format = kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(
        log_format=log_format, log_refkey="object" if config.log_format == "json" else None
    )
    logging.getLogger().setLevel(config.log_level.upper())


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    configure_logging(config)
    try:
        access = ClusterAccess.from_environment(config.context)
    except Exception as error:  # the kubernetes package raises several unrelated types here
        log.error("Cannot log in to the cluster: %s", error)
        return 2
    metrics = OperatorMetrics()
    if config.metrics_port:
        start_http_server(config.metrics_port, registry=metrics.registry)
    scope = "all namespaces" if config.clusterwide else ", ".join(config.namespaces)
    log.info("Watching LumenAlertPolicies in %s on %s.", scope, access.server)
    asyncio.run(run_operator(config, access, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
