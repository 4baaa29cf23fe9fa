"""Which state changes are allowed (pure): what acknowledge, resolve, silence and the end of a
silence do to an incident, and what the store writes for them. The store applies the result
under a row lock; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from .records import ActionRefused, EventKind, Incident, IncidentState

# Ranks for sorting (records.SortKey): "-severity" lists the most severe first, "state" lists
# what needs a person first. Unknown severities rank below info.
SEVERITY_RANKS: dict[str, int] = {"critical": 4, "error": 3, "warning": 2, "info": 1}
STATE_RANKS: dict[IncidentState, int] = {
    "triggered": 0,
    "acknowledged": 1,
    "silenced": 2,
    "resolved": 3,
}


def severity_rank(severity: str) -> int:
    return SEVERITY_RANKS.get(severity.lower(), 0)


def format_moment(moment: datetime) -> str:
    """For event details: minutes in UTC, e.g. ``2026-12-02 14:00 UTC``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Transition:
    """An action's result: the incident after it, and the event to log (None: unchanged)."""

    incident: Incident
    event: EventKind | None
    detail: str = ""

    @property
    def changed(self) -> bool:
        return self.event is not None


def acknowledge(incident: Incident, actor: str, at: datetime) -> Transition:
    """triggered -> acknowledged; silenced stays silenced but records who acknowledged;
    acknowledged: unchanged; resolved: refused."""
    if incident.state == "resolved":
        raise ActionRefused(f"incident {incident.id} is resolved; it cannot be acknowledged")
    if incident.state == "acknowledged":
        return Transition(incident, None)
    if incident.state == "silenced":
        if incident.acknowledged_at is not None:
            return Transition(incident, None)
        after = replace(incident, acknowledged_at=at, acknowledged_by=actor)
        return Transition(after, "acknowledged", "while silenced")
    after = replace(incident, state="acknowledged", acknowledged_at=at, acknowledged_by=actor)
    return Transition(after, "acknowledged")


def resolve(incident: Incident, actor: str, at: datetime) -> Transition:
    """Any open state -> resolved, noting whether alerts still fired; resolved: unchanged."""
    if incident.state == "resolved":
        return Transition(incident, None)
    firing = incident.alerts_firing > 0
    after = replace(
        incident,
        state="resolved",
        resolved_at=at,
        resolved_by=actor,
        resolved_while_firing=firing,
    )
    detail = f"while {incident.alerts_firing} alert(s) still fired" if firing else ""
    return Transition(after, "resolved", detail)


def silence(
    incident: Incident, actor: str, at: datetime, until: datetime, silence_id: str
) -> Transition:
    """triggered|acknowledged -> silenced; silenced: a new end and silence; resolved: refused."""
    del at  # the event's time; the incident keeps no "silenced at"
    if incident.state == "resolved":
        raise ActionRefused(f"incident {incident.id} is resolved; it cannot be silenced")
    after = replace(
        incident,
        state="silenced",
        silenced_until=until,
        silenced_by=actor,
        silence_id=silence_id,
    )
    return Transition(after, "silenced", f"until {format_moment(until)} (silence {silence_id})")


def end_silence(incident: Incident, actor: str, at: datetime) -> Transition:
    """silenced -> acknowledged if someone acknowledged it, else triggered; others: unchanged."""
    del actor, at
    if incident.state != "silenced":
        return Transition(incident, None)
    state: IncidentState = "acknowledged" if incident.acknowledged_at is not None else "triggered"
    after = replace(incident, state=state, silenced_until=None, silenced_by=None, silence_id=None)
    return Transition(after, "silence_ended", f"silence {incident.silence_id}")
