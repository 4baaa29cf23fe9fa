"""Acknowledge, resolve and silence an incident: the one implementation behind Slack's buttons,
the REST API and the web page, so the three agree on what an action does.

Silencing touches two systems, Alertmanager and the store, with no transaction over both. The
order keeps them consistent: the Alertmanager silence is created first (if that fails, nothing is
stored), then the store records it; if the store then refuses (the incident resolved meanwhile)
or fails, the silence just created is expired again, so nothing is left behind.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ..metrics import ActionResult, ActionVia, IncidentAction, ThreaderMetrics
from .records import ActionOutcome, ActionRefused, Incident, IncidentNotFound
from .store import IncidentStore

log = logging.getLogger("lumen.threader.incidents")

# The silences a person can choose (Slack's menu, the page's buttons, the API's enum).
SILENCE_DURATIONS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}


class SilenceClient(Protocol):
    """Alertmanager's silences, as ``threader.silences.AlertmanagerSilences`` speaks them."""

    async def create(
        self,
        matchers: Mapping[str, str],
        *,
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str: ...

    async def expire(self, silence_id: str) -> None: ...


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class _Counted:
    """Counts one action's outcome (``lumen_threader_incident_actions_total``) and observes the
    response times it completes."""

    metrics: ThreaderMetrics | None
    action: IncidentAction
    via: ActionVia

    async def __call__(self, work: Awaitable[ActionOutcome]) -> ActionOutcome:
        try:
            outcome = await work
        except (ActionRefused, IncidentNotFound):
            self._note("refused")
            raise
        except Exception:
            self._note("failed")
            raise
        self._note("changed" if outcome.changed else "unchanged")
        if self.metrics is not None and outcome.changed:
            if self.action == "acknowledge":
                self.metrics.observe_acknowledged(outcome.incident)
            elif self.action == "resolve":
                self.metrics.observe_resolved(outcome.incident)
        return outcome

    def _note(self, result: ActionResult) -> None:
        if self.metrics is not None:
            self.metrics.note_action(self.action, self.via, result)


class IncidentActions:
    def __init__(
        self,
        store: IncidentStore,
        silences: SilenceClient | None,
        on_change: Callable[[Incident], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = now_utc,
        *,
        metrics: ThreaderMetrics | None = None,
        via: ActionVia = "api",
    ) -> None:
        self._store = store
        self._silences = silences
        self._on_change = on_change
        self._clock = clock
        self._metrics = metrics
        self._via: ActionVia = via

    def via(self, surface: ActionVia) -> IncidentActions:
        """The same actions, counted as coming from ``surface`` (Slack, the API, the page)."""
        return IncidentActions(
            self._store,
            self._silences,
            self._on_change,
            self._clock,
            metrics=self._metrics,
            via=surface,
        )

    def _counted(self, action: IncidentAction) -> _Counted:
        return _Counted(self._metrics, action, self._via)

    @property
    def can_silence(self) -> bool:
        """Whether silences are configured (the page hides its silence buttons otherwise)."""
        return self._silences is not None

    async def acknowledge(self, incident_id: int, actor: str) -> ActionOutcome:
        outcome = await self._counted("acknowledge")(
            self._store.acknowledge(incident_id, actor, self._clock())
        )
        return await self._announced(outcome)

    async def resolve(self, incident_id: int, actor: str) -> ActionOutcome:
        outcome = await self._counted("resolve")(
            self._store.resolve(incident_id, actor, self._clock())
        )
        return await self._announced(outcome)

    async def silence(self, incident_id: int, actor: str, duration: timedelta) -> ActionOutcome:
        return await self._counted("silence")(self._silence(incident_id, actor, duration))

    async def end_silence(self, incident_id: int, actor: str) -> ActionOutcome:
        return await self._counted("end_silence")(self._end_silence(incident_id, actor))

    async def _silence(self, incident_id: int, actor: str, duration: timedelta) -> ActionOutcome:
        """A real Alertmanager silence over the labels all the incident's alerts share.
        Raises ActionRefused (no silences configured, no labels, resolved incident),
        IncidentNotFound, SilenceFailed (Alertmanager; nothing stored) and
        IncidentStoreUnavailable (the silence created is expired again)."""
        if self._silences is None:
            raise ActionRefused("silences need --alertmanager-url")
        if duration <= timedelta(0):
            raise ActionRefused("a silence needs a positive duration")
        detail = await self._store.get(incident_id)  # IncidentNotFound before Alertmanager
        if detail.incident.state == "resolved":
            raise ActionRefused("the incident is resolved: nothing to silence")
        matchers = await self._store.matchers_of(incident_id)
        if not matchers:
            raise ActionRefused("no labels to silence")
        at = self._clock()
        until = at + duration
        silence_id = await self._silences.create(
            matchers,
            starts_at=at,
            ends_at=until,
            created_by=actor,
            comment=f"Lumen incident {incident_id}: {detail.incident.title}",
        )
        try:
            outcome = await self._store.silence(incident_id, actor, at, until, silence_id)
        except BaseException:
            # Refused (resolved meanwhile) or the database failed: the silence must not hold
            # alerts that no incident shows as silenced.
            await self._expire_quietly(silence_id)
            raise
        previous = detail.incident.silence_id
        if previous and previous != silence_id:
            # A new silence replaced the running one: the old one would end later or earlier
            # than the incident says.
            await self._expire_quietly(previous)
        return await self._announced(outcome)

    async def _end_silence(self, incident_id: int, actor: str) -> ActionOutcome:
        detail = await self._store.get(incident_id)
        silence_id = detail.incident.silence_id
        if detail.incident.state == "silenced" and silence_id:
            if self._silences is None:
                raise ActionRefused("silences need --alertmanager-url")
            # Alertmanager first: a failure there leaves the incident silenced, as it still is.
            await self._silences.expire(silence_id)
        outcome = await self._store.end_silence(incident_id, actor, self._clock())
        return await self._announced(outcome)

    async def find(self, key: str) -> Incident | None:
        return await self._store.find(key)

    async def _announced(self, outcome: ActionOutcome) -> ActionOutcome:
        if outcome.changed and self._on_change is not None:
            try:
                await self._on_change(outcome.incident)
            except Exception:
                # The action happened; a Slack message that could not follow is only logged.
                log.exception("incident %s changed, but its follow-up failed", outcome.incident.id)
        return outcome

    async def _expire_quietly(self, silence_id: str) -> None:
        assert self._silences is not None
        try:
            await self._silences.expire(silence_id)
        except Exception:
            log.exception("could not expire Alertmanager silence %s", silence_id)
