"""The incident store's values, as every layer sees them: the store returns them, the API, the
page, Slack and the metrics read them. Pure declarations, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# triggered: firing, nobody acted; acknowledged: someone is on it; silenced: an Alertmanager
# silence holds its alerts (until silenced_until); resolved: its alerts resolved, or a person
# resolved it.
IncidentState = Literal["triggered", "acknowledged", "silenced", "resolved"]
INCIDENT_STATES: tuple[IncidentState, ...] = ("triggered", "acknowledged", "silenced", "resolved")
AlertSource = Literal["alertmanager", "grafana"]
# What the state-change log records. "alert_*" come from the alerts, the rest from people.
EventKind = Literal[
    "opened",  # first alert arrived
    "alert_firing",  # another alert joined, or a repeat of one
    "alert_resolved",  # one alert resolved (the incident resolves when all have)
    "acknowledged",
    "resolved",  # by a person (``resolved_while_firing`` says if alerts still fired)
    "auto_resolved",  # every alert resolved
    "silenced",
    "silence_ended",  # by a person, or because silenced_until passed
]
SortKey = Literal["opened_at", "-opened_at", "severity", "-severity", "state", "-state"]
# Who acts when nobody does: alerts resolving, a silence running out.
SYSTEM_ACTOR = "lumen"


@dataclass(frozen=True)
class ReceivedAlert:
    """One alert of one notification, as received: what the store keeps raw."""

    source: AlertSource
    receiver: str
    group_key: str
    received_at: datetime  # UTC
    incident_key: str  # grouping.incident_key(...) of this alert
    fingerprint: str
    status: Literal["firing", "resolved"]
    starts_at: datetime  # UTC
    ends_at: datetime | None  # UTC; None while firing
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    # Grafana's silenceURL, dashboardURL, panelURL, imageURL and the generatorURL, when given.
    links: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, float] = field(default_factory=dict)  # Grafana's per-alert values
    payload: Mapping[str, Any] = field(default_factory=dict)  # the alert's JSON as received


@dataclass(frozen=True)
class Incident:
    id: int
    key: str
    state: IncidentState
    title: str  # alertname, with the summary when there is one
    severity: str  # "" when the alert has no severity label
    service: str
    cluster: str
    namespace: str
    labels: Mapping[str, str]  # the first alert's labels
    opened_at: datetime
    alerts_firing: int  # alerts of this incident still firing
    alerts_total: int
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    # A person resolved it while some of its alerts still fired: shown, not hidden.
    resolved_while_firing: bool = False
    silenced_until: datetime | None = None
    silenced_by: str | None = None
    silence_id: str | None = None  # the Alertmanager silence's id
    slack_channel: str | None = None
    slack_ts: str | None = None
    version: int = 1  # +1 on every change


@dataclass(frozen=True)
class RawAlert:
    """A stored alert of an incident's timeline."""

    id: int
    source: AlertSource
    receiver: str
    group_key: str
    received_at: datetime
    fingerprint: str
    status: Literal["firing", "resolved"]
    starts_at: datetime
    ends_at: datetime | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    links: Mapping[str, str]


@dataclass(frozen=True)
class IncidentEvent:
    """One line of an incident's state-change log."""

    at: datetime
    kind: EventKind
    actor: str  # a person, or SYSTEM_ACTOR
    state: IncidentState  # the incident's state after the event
    detail: str = ""  # "alert 3fa2… resolved", "until 14:00 UTC (silence 8d1…)"


@dataclass(frozen=True)
class IncidentDetail:
    incident: Incident
    alerts: tuple[RawAlert, ...]  # oldest first
    events: tuple[IncidentEvent, ...]  # oldest first


@dataclass(frozen=True)
class IncidentFilter:
    """List filters; None matches anything. ``since``/``until`` bound ``opened_at``."""

    cluster: str | None = None
    namespace: str | None = None
    service: str | None = None
    severity: str | None = None
    state: IncidentState | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class IncidentPage:
    items: tuple[Incident, ...]
    total: int  # matching the filter, all pages
    limit: int
    offset: int


@dataclass(frozen=True)
class ActionOutcome:
    """What an action did: the incident after it; ``changed`` False when it was already so
    (a repeated acknowledge, Slack's retry)."""

    incident: Incident
    changed: bool


@dataclass(frozen=True)
class IncidentChange:
    """What recording alerts did to one incident (for the metrics and Slack)."""

    incident: Incident
    opened: bool
    resolved: bool


class IncidentNotFound(LookupError):
    """No incident with that id (404)."""


class ActionRefused(ValueError):
    """The action does not apply in the incident's state, e.g. acknowledging a resolved
    incident (409); the message says why."""


class IncidentStoreUnavailable(Exception):
    """The database cannot be reached or written (503)."""
