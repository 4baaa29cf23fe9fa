"""The kopf registry: thin handlers around the reconcile engine.

Create, update (of ``spec``), resume and a drift timer all run the same level-triggered
reconcile, one at a time per policy. kopf keeps its own bookkeeping in ``status.kopf`` (never in
annotations) so the operator writes nothing but ``status``, plus the finalizer kopf puts on
objects that have a timer.

Each handler hands the event to ``runs.PolicyRuns``, which runs the engine under the policy's
lock and writes the operator's part of ``status``.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import kopf

from .config import OperatorConfig
from .kinds import POLICY
from .kube import ClusterAccess
from .metrics import OperatorMetrics
from .runs import PolicyRuns

FINALIZER = "lumen.dev/operator"
# Handlers whose every success kopf would log at info: ``forget`` runs on every event of every
# policy. ``runtime.ApiOutageLines`` makes those lines debug.
QUIET_SUCCESSES = ("forget",)
WATCH_TIMEOUT = 300  # seconds a watch request lasts before kopf renews it


def build_registry(
    config: OperatorConfig, access: ClusterAccess, metrics: OperatorMetrics
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    policies = (POLICY.group, POLICY.version, POLICY.plural)
    runs: list[PolicyRuns] = []  # exactly one once started

    # Named ids: kopf's lines say "Activity 'start' succeeded", not 'build_registry.<locals>.start'.
    @kopf.on.login(id="login", registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(access)

    @kopf.on.startup(id="start", registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, config)
        runs.append(PolicyRuns(config, access, metrics))

    @kopf.on.cleanup(id="stop", registry=registry)
    async def stop(**_: Any) -> None:
        for started in runs:
            await started.aclose()

    @kopf.on.probe(id="policies", registry=registry)
    def probe(**_: Any) -> int:
        return len(metrics.policies)

    async def reconcile(
        body: kopf.Body,
        memo: kopf.Memo,
        logger: Any,
        retry: int = 0,
        reason: str | None = None,
        **_: Any,
    ) -> None:
        fresh = reason == kopf.Reason.CREATE  # nothing of a just-created policy exists yet
        await runs[0].run(body, memo, logger, retry=retry, fresh=fresh)

    # One handler id per cause, so kopf's per-handler progress never mixes them up.
    kopf.on.create(*policies, id="create", registry=registry)(reconcile)
    kopf.on.update(*policies, id="update", field="spec", registry=registry)(reconcile)
    kopf.on.resume(*policies, id="resume", registry=registry)(reconcile)
    kopf.timer(
        *policies,
        id="drift",
        interval=config.drift_interval,
        initial_delay=_spread(config.drift_interval),
        registry=registry,
    )(reconcile)

    # async: kopf runs a plain function in a thread, a hop for every event of every policy.
    @kopf.on.event(*policies, id="forget", registry=registry)
    async def forget(event: kopf.RawEvent, namespace: str | None, name: str, **_: Any) -> None:
        if event.get("type") == "DELETED" and namespace is not None:
            metrics.policies.forget(namespace, name)

    return registry


def configure_kopf(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf settings the operator relies on (see the module docstring)."""
    # Peering is used when its CRD exists; without it kopf warns and runs alone (not mandatory,
    # so a local `make run` without the peering CRDs does not sit paused).
    settings.peering.name = config.peering
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.lastHandledConfiguration"
    )
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING  # events: our warnings only, not every success
    settings.posting.reporting_component = "lumen-operator"
    settings.watching.server_timeout = WATCH_TIMEOUT
    settings.watching.client_timeout = WATCH_TIMEOUT + 30
    settings.networking.error_backoffs = config.retry_delays


def connection_info(access: ClusterAccess) -> kopf.ConnectionInfo:
    token = access.bearer_token()
    basic = access.basic_auth()
    return kopf.ConnectionInfo(
        server=access.server,
        ca_path=access.ca_path,
        insecure=access.insecure,
        scheme="Bearer" if token else None,
        token=token,
        username=basic[0] if basic else None,
        password=basic[1] if basic else None,
        certificate_path=access.client_cert,
        private_key_path=access.client_key,
        default_namespace=access.default_namespace,
    )


def _spread(interval: float) -> Any:
    """First drift check in (interval/2, interval], fixed per policy: no thundering herd."""

    def initial_delay(uid: str, **_: Any) -> float:
        fraction = int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return interval * (0.5 + fraction / 2)

    return initial_delay
