"""The kopf registry: thin handlers around the reconcile engine.

Create, update (of ``spec``), resume and a drift timer all run the same level-triggered
reconcile, one at a time per policy. kopf keeps its own bookkeeping in ``status.kopf`` (never in
annotations) so the operator writes nothing but ``status``, plus the finalizer kopf puts on
objects that have a timer.

The operator writes its part of ``status`` itself, under the policy's lock, rather than through
kopf's patch: kopf sends that patch after the handler returns, retries it on its own and, when
it finally fails, drops it (and a timer whose patch fails stops for good). A status write that
fails here is retried like any transient failure, and what the policy shows is always compared
with the status read from the object, so it converges to the truth after any outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from .config import OperatorConfig
from .kinds import POLICY
from .kube import ApiError, ClusterAccess, KubeClient
from .metrics import OperatorMetrics
from .reconcile import Reconciler, TransientFailure
from .status import (
    OWNED_KEYS,
    READY,
    VALID,
    Condition,
    ConditionStatus,
    Observation,
    next_status,
    status_changes,
)

FINALIZER = "lumen.dev/operator"
# After how many failed attempts in a row the status shows Retrying.
RETRIES_BEFORE_REPORTING = 3
WATCH_TIMEOUT = 300  # seconds a watch request lasts before kopf renews it
SUPERSEDED_KEPT = 8  # our own earlier writes the watch may still be catching up with


@dataclass(frozen=True)
class _StatusWrite:
    """A status write the API server confirmed: the operator-owned status it stored, and the
    ones it superseded. Until the watch brings the policy with the new status, ``body`` still
    shows one of those: several, when two writes land before the watch brings the first."""

    superseded: tuple[dict[str, Any], ...]
    stored: dict[str, Any]


class StatusNotWritten(Exception):
    """The API server refused the status write; the reconcile is retried."""


@dataclass
class _PolicyMemory:
    """Per-policy state of this process: the reconcile lock and the last confirmed status write."""

    lock: asyncio.Lock
    reconciled: bool = False  # a reconcile of this policy has completed in this process
    last_write: _StatusWrite | None = None


class _Engine:
    """One reconcile of one policy, as every handler runs it: the engine under the policy's
    lock, then status, metrics and events. Made on the operator's event loop at start-up
    (the HTTP client belongs to that loop)."""

    def __init__(self, config: OperatorConfig, access: ClusterAccess, metrics: OperatorMetrics):
        self.client = KubeClient(access)
        self._reconciler = Reconciler(self.client, config.rendering)
        self._metrics = metrics
        self._retry_delays = config.retry_delays

    async def run(
        self,
        body: kopf.Body,
        memo: kopf.Memo,
        logger: Any,
        *,
        retry: int,
        fresh: bool,
    ) -> None:
        memory = _memory_of(memo)
        started = time.monotonic()
        delays = self._retry_delays
        async with memory.lock:
            current = _current_status(body, memory)
            try:
                result = await self._reconciler.reconcile(
                    body, logger, new=fresh and not memory.reconciled
                )
                memory.reconciled = True
                await self._write_status(body, memory, current, result.observation)
            except TransientFailure as failure:
                self._metrics.reconciles.labels("retry").inc()
                delay = failure.delay or delays[min(retry, len(delays) - 1)]
                if retry + 1 >= RETRIES_BEFORE_REPORTING:
                    try:
                        retrying = _retrying(body, current, str(failure))
                        await self._write_status(body, memory, current, retrying)
                    except StatusNotWritten:
                        pass  # the outage goes on; a later attempt writes it
                raise kopf.TemporaryError(f"Will retry: {failure}", delay=delay) from None
            except StatusNotWritten as failure:
                self._metrics.reconciles.labels("retry").inc()
                delay = delays[min(retry, len(delays) - 1)]
                raise kopf.TemporaryError(f"Will retry: {failure}", delay=delay) from None
        seen = result.observation
        self._metrics.reconcile_seconds.observe(time.monotonic() - started)
        self._metrics.reconciles.labels(result.outcome).inc()
        self._metrics.policies.set(
            body["metadata"]["namespace"], body["metadata"]["name"], seen.state
        )
        _report_transitions(body, _conditions(current), seen)

    async def _write_status(
        self,
        body: kopf.Body,
        memory: _PolicyMemory,
        current: dict[str, Any],
        seen: Observation,
    ) -> None:
        """Write what changed in the operator's part of the status, and remember it only once
        the API server has stored it."""
        wanted = next_status(current, seen, datetime.now(UTC))
        changes = status_changes(current, wanted)
        if not changes:
            return
        meta = body["metadata"]
        try:
            stored = await self.client.patch_status(
                POLICY, meta["namespace"], meta["name"], changes
            )
        except ApiError as error:
            if error.status == 404:
                return  # deleted meanwhile: nothing to show any more
            raise StatusNotWritten(f"status not written: {error}") from None
        last = memory.last_write
        # ``current`` is our last write when the watch had not brought it yet: the statuses
        # the watch may still show are then that write's and the ones it superseded.
        if last is not None and current == last.stored:
            superseded = (*last.superseded, last.stored)[-SUPERSEDED_KEPT:]
        else:
            superseded = (current,)
        memory.last_write = _StatusWrite(superseded, _owned(stored.get("status") or {}))


def build_registry(
    config: OperatorConfig, access: ClusterAccess, metrics: OperatorMetrics
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    policies = (POLICY.group, POLICY.version, POLICY.plural)
    engines: list[_Engine] = []  # exactly one once started

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(access)

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, config)
        engines.append(_Engine(config, access, metrics))

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        for engine in engines:
            await engine.client.aclose()

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
        await engines[0].run(body, memo, logger, retry=retry, fresh=fresh)

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
    @kopf.on.event(*policies, registry=registry)
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


def _memory_of(memo: kopf.Memo) -> _PolicyMemory:
    memory = memo.get("lumen")
    if memory is None:
        memory = memo["lumen"] = _PolicyMemory(lock=asyncio.Lock())
    return memory


def _owned(status: Mapping[str, Any]) -> dict[str, Any]:
    return {key: status[key] for key in OWNED_KEYS if key in status}


def _current_status(body: kopf.Body, memory: _PolicyMemory) -> dict[str, Any]:
    """The operator-owned status the policy shows: the one read from the object, unless the
    watch has not yet brought our own last confirmed write (then that write is the truth)."""
    live = _owned(body.get("status") or {})
    last = memory.last_write
    if last is not None and live != last.stored and live in last.superseded:
        return dict(last.stored)
    return live


def _retrying(body: kopf.Body, current: Mapping[str, Any], message: str) -> Observation:
    """Ready=False while transient errors persist; Valid is untouched by API trouble."""
    valid = _conditions(current).get(VALID)
    return Observation(
        generation=int(body["metadata"].get("generation") or 0),
        valid=Condition(VALID, *valid) if valid else Condition(VALID, "Unknown", "NotChecked", ""),
        ready=Condition(READY, "False", "Retrying", message),
    )


def _conditions(status: Mapping[str, Any]) -> dict[str, tuple[ConditionStatus, str, str]]:
    """(status, reason, message) of each condition, by type; malformed ones are left out."""
    return {
        c["type"]: (c["status"], str(c.get("reason") or ""), str(c.get("message") or ""))
        for c in status.get("conditions") or []
        if isinstance(c, dict)
        and isinstance(c.get("type"), str)
        and c.get("status") in ("True", "False", "Unknown")
    }


def _report_transitions(
    body: kopf.Body, before: dict[str, tuple[ConditionStatus, str, str]], seen: Observation
) -> None:
    """A Warning event when the policy turns bad or its complaint changes; not on every resync."""
    if seen.valid.status == "False":
        complaint = seen.valid
    elif seen.ready.status == "False":
        complaint = seen.ready
    else:
        return
    if before.get(complaint.type) != (complaint.status, complaint.reason, complaint.message):
        kopf.warn(body, reason=complaint.reason, message=complaint.message)


def _spread(interval: float) -> Any:
    """First drift check in (interval/2, interval], fixed per policy: no thundering herd."""

    def initial_delay(uid: str, **_: Any) -> float:
        fraction = int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return interval * (0.5 + fraction / 2)

    return initial_delay
