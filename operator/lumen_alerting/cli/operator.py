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
from ..operator.kube import ClusterAccess, connection_problem
from ..operator.metrics import OperatorMetrics
from ..operator.runtime import ApiOutageLines, run_operator

log = logging.getLogger("lumen.operator")


def configure_logging(config: OperatorConfig, server: str) -> None:
    """kopf's log handler on stderr: plain lines start with ``[namespace/name]`` of the policy
    they concern; JSON lines carry it under ``object``. Unreachable-API lines are tamed by
    ``ApiOutageLines`` (see docs/operator.md, Logs)."""
    json_lines = config.log_format == "json"
    root = logging.getLogger()
    before = set(root.handlers)
    kopf.configure(
        log_format=kopf.LogFormat.JSON if json_lines else kopf.LogFormat.FULL,
        log_prefix=not json_lines,
        log_refkey="object" if json_lines else None,
    )
    root.setLevel(config.log_level.upper())
    for handler in set(root.handlers) - before:
        handler.addFilter(ApiOutageLines(server, config.retry_delays))


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    # The server is known once logged in; nothing calls the API before the second set-up.
    configure_logging(config, "the cluster")
    try:
        access = ClusterAccess.from_environment(config.context)
    except Exception as error:  # the kubernetes package raises several unrelated types here
        log.error("Cannot log in to the cluster: %s", error)
        return 2
    configure_logging(config, access.server)
    metrics = OperatorMetrics()
    if config.metrics_port:
        start_http_server(config.metrics_port, registry=metrics.registry)
    scope = "all namespaces" if config.clusterwide else ", ".join(config.namespaces)
    log.info("Watching LumenAlertPolicies in %s on %s.", scope, access.server)
    try:
        asyncio.run(run_operator(config, access, metrics))
    except Exception as error:
        # kopf gives up when the API server stays unreachable while it starts (its discovery
        # of the API has no retry beyond the back-offs): one line, not aiohttp's traceback.
        why = connection_problem(error)
        if why is None:
            raise
        log.error("Stopped: cannot reach the Kubernetes API at %s: %s.", access.server, why)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
