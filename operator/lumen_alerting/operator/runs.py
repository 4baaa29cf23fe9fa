"""Runs of the reconcile engine, as every kopf handler starts them: one at a time per policy,
under the policy's lock; then the operator's part of ``status``, metrics and events.

The operator writes its part of ``status`` itself, under the policy's lock, rather than through
kopf's patch: kopf sends that patch after the handler returns, retries it on its own and, when
it finally fails, drops it (and a timer whose patch fails stops for good). A status write that
fails here is retried like any transient failure, and what the policy shows is always compared
with the status read from the object, so it converges to the truth after any outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from .config import OperatorConfig
from .kinds import POLICY
from .kube import UNREACHABLE, ApiError, ClusterAccess, KubeClient
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

# After how many failed attempts in a row the status shows Retrying.
RETRIES_BEFORE_REPORTING = 3
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


class PolicyRuns:
    """Every run of the engine in this operator. Made on the operator's event loop at start-up
    (the HTTP client belongs to that loop); ``aclose`` at shutdown."""

    def __init__(self, config: OperatorConfig, access: ClusterAccess, metrics: OperatorMetrics):
        self._client = KubeClient(access)
        self._reconciler = Reconciler(self._client, config.rendering)
        self._metrics = metrics
        self._retry_delays = config.retry_delays
        self._server = access.server  # for log lines

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(
        self,
        body: kopf.Body,
        memo: kopf.Memo,
        logger: Any,
        *,
        retry: int,
        fresh: bool,
    ) -> None:
        """Reconcile the policy in ``body`` and write the outcome to its status.

        ``retry`` is kopf's count of failed attempts of this handler (the status shows
        Retrying from the third); ``fresh`` says the policy was just created, so nothing of it
        can exist yet. Raises ``kopf.TemporaryError`` (with the delay before the next attempt)
        on a transient failure or a status the API server did not store; anything else is a
        bug and reaches kopf as such."""
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
                raise kopf.TemporaryError(
                    f"Will retry: {_in_short(failure, self._server)}", delay=delay
                ) from None
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
            stored = await self._client.patch_status(
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


def _in_short(failure: TransientFailure, server: str) -> str:
    """The failure for kopf's log line: an API server out of reach once, not once per call
    that found it so (a reconcile lists eight kinds at once)."""
    if failure.errors and all(error.status == UNREACHABLE for error in failure.errors):
        reasons = ", ".join(dict.fromkeys(error.reason for error in failure.errors))
        return f"cannot reach the Kubernetes API at {server}: {reasons}"
    return str(failure)


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
    """A Warning event when the policy turns bad or its complaint changes, and when alerts start
    reaching no one or the list of them changes; not on every resync."""
    routed = seen.routed
    if (
        routed is not None
        and routed.status == "False"
        and before.get(routed.type) != (routed.status, routed.reason, routed.message)
    ):
        kopf.warn(body, reason=routed.reason, message=routed.message)
    if seen.valid.status == "False":
        complaint = seen.valid
    elif seen.ready.status == "False":
        complaint = seen.ready
    else:
        return
    if before.get(complaint.type) != (complaint.status, complaint.reason, complaint.message):
        kopf.warn(body, reason=complaint.reason, message=complaint.message)
