"""The engine: bring one policy's children in line with its spec.

validate -> render -> compare with the live children -> server-side apply what differs ->
create the threader's token Secret once -> prune children no longer rendered. The result is an
``Observation`` for the status; nothing here knows about kopf.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..policy.document import policy_from_manifest
from ..policy.loading import InvalidPolicy
from ..policy.model import Policy
from ..render import RenderOptions, render_policy
from ..render.objects import POLICY_LABEL, Manifest, common_labels, metadata
from ..render.sizes import size_problems
from ..render.threader import SecretRequest, threader_secret
from ..render.unrouted import unrouted_alerts, unrouted_message
from .convergence import LiveObject, plan_convergence, with_desired_hash
from .kinds import POLICY, RENDERED_KINDS, SECRET, ResourceKind, kind_of
from .kube import ApiError, KubeClient
from .status import READY, ROUTED, VALID, Condition, Observation

TOKEN_BYTES = 32


def random_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


class TransientFailure(Exception):
    """The reconcile hit errors that may go away by themselves; retry after ``delay`` seconds."""

    def __init__(self, errors: list[ApiError], delay: float | None) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = errors
        self.delay = delay


@dataclass(frozen=True)
class ReconcileResult:
    observation: Observation
    applied: list[str] = field(default_factory=list)  # "Kind/name"
    pruned: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def outcome(self) -> str:
        """For the reconciles counter: applied, unchanged, invalid or failed."""
        state = self.observation.state
        if state != "ready":
            return state
        return "applied" if self.applied or self.pruned else "unchanged"


class Reconciler:
    """Reconciles policies through one API client with fixed render options.

    ``new_token`` makes the threader's webhook token (tests pass a fixed one). One instance
    serves every policy; it keeps no state between calls, and the caller makes sure that one
    policy is reconciled by one call at a time (``runs.PolicyRuns`` holds a lock per policy).
    """

    def __init__(
        self,
        client: KubeClient,
        options: RenderOptions,
        *,
        new_token: Callable[[], str] = random_token,
    ) -> None:
        self._client = client
        self._options = options
        self._new_token = new_token

    async def reconcile(
        self,
        body: Mapping[str, Any],
        logger: logging.Logger | logging.LoggerAdapter[Any],
        *,
        new: bool = False,
    ) -> ReconcileResult:
        """Converge the children of the policy in ``body``; raises TransientFailure to retry.

        ``body`` is the policy as the API server shows it (kopf's ``body``): ``metadata.name``,
        ``namespace``, ``uid`` and ``generation``, and ``spec``; its ``status`` is not read.
        Steps: ``policy_from_manifest`` -> ``render_policy`` -> size check -> list the live
        children -> apply what differs (server-side apply) and create the token Secret once ->
        prune children no longer rendered, only when everything else succeeded and no rendered
        name is controlled by another owner.

        Returns the ``ReconcileResult``: the ``Observation`` for the status and what was
        applied and pruned. It does not write the status; the caller does. An invalid or
        oversized spec is not an exception: the observation says ``Valid=False`` and nothing in
        the cluster is touched. Permanent API errors (403, 422, ...) are reported the same way,
        as ``Ready=False`` (``ApplyFailed``) with the objects named.

        Raises ``TransientFailure`` when a call failed with a transient ``ApiError``
        (``ApiError.transient``): a listing at once, applies once every apply was tried, and
        then nothing is pruned. Its ``delay`` is the longest ``Retry-After`` seen, or None.
        The call is idempotent, so retrying it is always safe.

        ``new``: the policy was just created, so no child controlled by it can exist yet; the
        live objects are not listed and everything is applied (saves seven calls per policy).
        """
        meta = body.get("metadata", {})
        generation = int(meta.get("generation") or 0)
        try:
            policy = replace(_policy_of(body), uid=meta.get("uid", ""))
        except InvalidPolicy as invalid:
            return ReconcileResult(observation=_invalid(generation, invalid))

        desired = [with_desired_hash(obj) for obj in render_policy(policy, self._options)]
        oversized = size_problems(body, desired)
        if oversized:  # etcd would refuse it: say so instead of failing halfway
            return ReconcileResult(observation=_invalid(generation, InvalidPolicy(oversized)))
        live, errors = ([], []) if new else await self._live_children(policy)
        plan = plan_convergence(desired, live, policy.uid)
        request = threader_secret(policy)
        if request is not None:
            errors += await self._ensure_token_secret(policy, request, logger, new=new)
        applied = await self._apply(plan.apply, errors, logger)
        _raise_transient(errors)
        pruned = []
        if not errors and not plan.foreign:
            # Only once everything new is in place: a failed apply must not cost the old objects.
            pruned = await self._prune(policy, plan.prune, errors, logger)
            _raise_transient(errors)

        observation = Observation(
            generation=generation,
            valid=Condition(VALID, "True", "SpecValid", "The spec is valid."),
            ready=_readiness(len(desired), errors, plan.foreign),
            children=desired,
            rules=_alert_rules(desired),
            slos=len(policy.spec.slos),
            routed=routed(policy),
        )
        return ReconcileResult(observation, applied, pruned, len(plan.unchanged))

    async def _live_children(self, policy: Policy) -> tuple[list[Manifest], list[ApiError]]:
        """The objects labelled as the policy's children, of every kind Lumen renders."""
        selector = f"{POLICY_LABEL}={policy.name}"
        listings = await asyncio.gather(
            *(self._client.list(kind, policy.namespace, selector) for kind in RENDERED_KINDS),
            return_exceptions=True,
        )
        live: list[Manifest] = []
        errors: list[ApiError] = []
        for kind, outcome in zip(RENDERED_KINDS, listings, strict=True):
            if isinstance(outcome, ApiError):
                errors.append(_listing_error(kind, outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                live += outcome
        _raise_transient(errors)
        return live, errors

    async def _apply(
        self,
        manifests: list[Manifest],
        errors: list[ApiError],
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> list[str]:
        """Server-side apply each object; failures go to ``errors`` and the rest carry on."""
        applied = []
        for manifest in manifests:
            label = f"{manifest['kind']}/{manifest['metadata']['name']}"
            try:
                await self._client.apply(kind_of(manifest), manifest)
            except ApiError as error:
                errors.append(_about(label, error))
                continue
            applied.append(label)
            logger.info("Applied %s.", label)
        return applied

    async def _prune(
        self,
        policy: Policy,
        leftovers: list[LiveObject],
        errors: list[ApiError],
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> list[str]:
        pruned = []
        for obj in leftovers:
            label = f"{obj.kind.kind}/{obj.name}"
            try:
                if await self._client.delete(obj.kind, policy.namespace, obj.name, obj.uid):
                    pruned.append(label)
                    logger.info("Pruned %s: no longer rendered.", label)
            except ApiError as error:
                errors.append(_about(label, error))
        return pruned

    async def _ensure_token_secret(
        self,
        policy: Policy,
        request: SecretRequest,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        *,
        new: bool,
    ) -> list[ApiError]:
        """Create the threader's token Secret if it is missing; never touch an existing one."""
        label = f"Secret/{request.name}"
        try:
            # A resync looks first (a read is cheaper than a refused create); a new policy
            # almost never has one, so it creates straight away.
            if not new and await self._client.get(SECRET, request.namespace, request.name):
                return []
            tokens = {key: self._new_token() for key in request.keys}
            await self._client.create(SECRET, token_secret(policy, request, tokens, self._options))
        except ApiError as error:
            if error.status == 409:  # created meanwhile (by another replica): fine
                return []
            return [_about(label, error)]
        logger.info("Created %s with new random tokens.", label)
        return []


def token_secret(
    policy: Policy, request: SecretRequest, tokens: Mapping[str, str], options: RenderOptions
) -> Manifest:
    """The threader's token Secret, owned by the policy so the garbage collector removes it."""
    meta = metadata(policy, options, request.name)
    meta["labels"] = {**common_labels(policy, options), "app.kubernetes.io/component": "threader"}
    return {
        "apiVersion": SECRET.api_version,
        "kind": SECRET.kind,
        "metadata": meta,
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in tokens.items()},
    }


def _policy_of(body: Mapping[str, Any]) -> Policy:
    meta = body.get("metadata", {})
    manifest = {
        "apiVersion": body.get("apiVersion", POLICY.api_version),
        "kind": body.get("kind", POLICY.kind),
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": body.get("spec"),
    }
    return policy_from_manifest(manifest)


def _invalid(generation: int, invalid: InvalidPolicy) -> Observation:
    message = "; ".join(f"{problem.path}: {problem.reason}" for problem in invalid.problems)
    return Observation(
        generation=generation,
        valid=Condition(VALID, "False", "InvalidSpec", message),
        ready=Condition(
            READY,
            "False",
            "InvalidSpec",
            "The spec is invalid; the objects of the last valid spec stay as they are.",
        ),
    )


def routed(policy: Policy) -> Condition:
    """Routed=False names the alerts that reach no receiver; advice, the objects are applied
    all the same. Unknown without routing: the Alertmanager's own routes decide."""
    if policy.spec.routing is None:
        return Condition(
            ROUTED, "Unknown", "NoRouting", "No spec.routing: the Alertmanager's own routes decide."
        )
    unrouted = unrouted_alerts(policy)
    if unrouted:
        return Condition(ROUTED, "False", "AlertsUnrouted", unrouted_message(unrouted) + ".")
    return Condition(ROUTED, "True", "AllAlertsRouted", "Every alert reaches a receiver.")


def _readiness(count: int, errors: list[ApiError], foreign: list[LiveObject]) -> Condition:
    if foreign:
        names = ", ".join(f"{obj.kind.kind}/{obj.name}" for obj in foreign)
        message = (
            f"{names}: controlled by another owner; delete or rename it to let Lumen manage it."
        )
        return Condition(READY, "False", "OwnershipConflict", message)
    if errors:
        return Condition(READY, "False", "ApplyFailed", "; ".join(str(e) for e in errors))
    return Condition(READY, "True", "Applied", f"{count} objects applied and in sync.")


def _alert_rules(desired: list[Manifest]) -> int:
    return sum(
        1
        for obj in desired
        if obj["kind"] == "PrometheusRule"
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    )


def _about(label: str, error: ApiError) -> ApiError:
    """The same error, its message prefixed with the object it concerns."""
    return ApiError(error.status, error.reason, f"{label}: {error.message}", error.retry_after)


def _listing_error(kind: ResourceKind, error: ApiError) -> ApiError:
    hint = " (is its CRD installed? kube-prometheus-stack brings it)" if error.status == 404 else ""
    return _about(f"list {kind.plural}.{kind.group or 'core'}{hint}", error)


def _raise_transient(errors: list[ApiError]) -> None:
    transient = [error for error in errors if error.transient]
    if transient:
        delays = [error.retry_after for error in transient if error.retry_after is not None]
        raise TransientFailure(transient, max(delays) if delays else None)
