"""The incident store's writes (record, the actions, prune): plain functions over a connection,
in the caller's write transaction. ``store.IncidentStore`` runs them, each in one transaction.

Every change to an incident happens with its row locked (``SELECT ... FOR UPDATE``; SQLite's
``BEGIN IMMEDIATE`` locks the whole database instead), so two replicas acting at once serialise
and the second sees the first's result: no lost update.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import lifecycle
from .queries import incident_of, incident_row, newest_id_with_key
from .records import (
    SYSTEM_ACTOR,
    ActionOutcome,
    EventKind,
    Incident,
    IncidentChange,
    ReceivedAlert,
)
from .schema import incident_alerts, incident_events, incidents, raw_alerts

Occurrence = tuple[str, datetime]  # (fingerprint, startsAt): one alert occurrence
_KEY_LOCK_TIMEOUT = 60  # seconds MySQL waits for another replica's record() of the same key
_PRUNE_CHUNK = 500  # ids per DELETE ... IN (...), well under every database's parameter limit


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def title_of(alert: ReceivedAlert) -> str:
    title = alert.labels.get("alertname", "") or alert.fingerprint
    summary = alert.annotations.get("summary", "")
    return f"{title} — {summary}" if summary else title


def _event(
    connection: Connection,
    incident_id: int,
    at: datetime,
    kind: EventKind,
    actor: str,
    state: str,
    detail: str = "",
) -> None:
    connection.execute(
        incident_events.insert().values(
            incident_id=incident_id, at=at, kind=kind, actor=actor, state=state, detail=detail
        )
    )


def _raw_values(alert: ReceivedAlert) -> dict[str, Any]:
    return {
        "source": alert.source,
        "receiver": alert.receiver,
        "group_key": alert.group_key,
        "received_at": alert.received_at,
        "incident_key": alert.incident_key,
        "fingerprint": alert.fingerprint,
        "status": alert.status,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "payload": dict(alert.payload),
        "links": dict(alert.links),
        "alert_values": dict(alert.values),
    }


def _insert_raw(connection: Connection, alert: ReceivedAlert) -> int:
    return _new_id(connection.execute(raw_alerts.insert(), _raw_values(alert)))


def _new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every supported database reports it
        raise RuntimeError("the database did not report the new row's id")
    return int(key[0])


def _open_incident(connection: Connection, alert: ReceivedAlert) -> int:
    labels = alert.labels
    severity = labels.get("severity", "")
    result = connection.execute(
        incidents.insert().values(
            incident_key=alert.incident_key,
            state="triggered",
            state_rank=lifecycle.STATE_RANKS["triggered"],
            title=title_of(alert),
            severity=severity,
            severity_rank=lifecycle.severity_rank(severity),
            service=labels.get("service", ""),
            cluster=labels.get("cluster", ""),
            namespace=labels.get("namespace", ""),
            labels=dict(labels),
            opened_at=alert.starts_at,
            alerts_firing=0,
            alerts_total=0,
            resolved_while_firing=False,
            version=1,
        )
    )
    return _new_id(result)


def lock_keys(connection: Connection, keys: Sequence[str]) -> None:
    """Serialise record() per incident key across replicas, so that the same new alert
    recorded by two replicas at once (an Alertmanager HA pair) opens one incident, not two: the
    incident to lock does not exist yet. Keys in sorted order, so no two callers deadlock.

    PostgreSQL: transaction-level advisory locks, released at commit. MySQL: named locks,
    released by ``release_key_locks`` after commit. SQLite: BEGIN IMMEDIATE already serialises.
    """
    dialect = connection.dialect.name
    for key in sorted(set(keys)):
        if dialect == "postgresql":
            connection.execute(
                sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(key, 0)))
            )
        elif dialect == "mysql":
            name = "lumen:" + hashlib.sha1(key.encode()).hexdigest()  # names: at most 64 chars
            got = connection.execute(sa.select(sa.func.get_lock(name, _KEY_LOCK_TIMEOUT))).scalar()
            if got != 1:
                raise sa.exc.OperationalError(
                    "GET_LOCK", {}, TimeoutError(f"incident key {key!r} stayed locked")
                )


def release_key_locks(connection: Connection) -> None:
    if connection.dialect.name == "mysql":
        connection.execute(sa.select(sa.func.release_all_locks()))


def record_alerts(connection: Connection, alerts: Sequence[ReceivedAlert]) -> list[IncidentChange]:
    """Store each alert raw and apply it to its incident (grouping and auto-resolution).

    Set-based, so that a batch costs a few statements, not a dozen per alert: the incidents the
    batch touches are read (and locked) at once, changed in memory alert by alert in the batch's
    order, and written back with the raw alerts, links and events at the end.
    """
    lock_keys(connection, [alert.incident_key for alert in alerts])
    occurrences = [(alert.fingerprint, _utc(alert.starts_at)) for alert in alerts]
    linked = _linked_incidents(connection, {fingerprint for fingerprint, _ in occurrences})
    open_by_key = _open_incidents_with_keys(connection, {alert.incident_key for alert in alerts})
    existing = set(linked.values()) | set(open_by_key.values())
    state = _incident_rows(connection, existing)
    statuses_of = _occurrences_of(connection, existing)
    raw_ids = _insert_raws(connection, alerts)
    links: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    touched: dict[int, tuple[bool, bool]] = {}  # incident id -> (opened, resolved) by this call

    def event(
        incident_id: int, at: datetime, kind: EventKind, state_after: str, detail: str
    ) -> None:
        events.append(
            {
                "incident_id": incident_id,
                "at": at,
                "kind": kind,
                "actor": SYSTEM_ACTOR,
                "state": state_after,
                "detail": detail,
            }
        )

    for alert, occurrence, raw_id in zip(alerts, occurrences, raw_ids, strict=True):
        incident_id = linked.get(occurrence)
        if incident_id is None:
            candidate = open_by_key.get(alert.incident_key)
            # An incident this batch resolved is no longer open: a new one opens.
            if candidate is not None and state[candidate].state != "resolved":
                incident_id = candidate
        opened = incident_id is None
        if incident_id is None:
            incident_id = _open_incident(connection, alert)
            state[incident_id] = _new_incident(incident_id, alert)
            statuses_of[incident_id] = {}
            open_by_key[alert.incident_key] = incident_id
        linked[occurrence] = incident_id
        statuses = statuses_of.setdefault(incident_id, {})
        before = statuses.get(occurrence)
        statuses[occurrence] = alert.status
        links.append({"raw_alert_id": raw_id, "incident_id": incident_id})
        firing = sum(1 for status in statuses.values() if status == "firing")
        after = replace(state[incident_id], alerts_firing=firing, alerts_total=len(statuses))
        at = alert.received_at
        what = f"alert {alert.fingerprint}"
        if opened:
            event(incident_id, at, "opened", after.state, what)
        elif alert.status == "firing":
            again = " again" if before is not None else ""
            event(incident_id, at, "alert_firing", after.state, f"{what} firing{again}")
        auto_resolved = False
        if alert.status == "resolved" and before != "resolved":
            event(incident_id, at, "alert_resolved", after.state, f"{what} resolved")
            if firing == 0 and after.state != "resolved":
                after = replace(
                    after,
                    state="resolved",
                    resolved_at=alert.ends_at or at,
                    resolved_by=SYSTEM_ACTOR,
                    resolved_while_firing=False,
                )
                auto_resolved = True
                event(incident_id, at, "auto_resolved", "resolved", "")
        # The alert that opens an incident creates it at version 1; every later one changes it.
        state[incident_id] = after if opened else replace(after, version=after.version + 1)
        was_opened, was_resolved = touched.get(incident_id, (False, False))
        touched[incident_id] = (was_opened or opened, was_resolved or auto_resolved)
    connection.execute(incident_alerts.insert(), links)
    if events:
        connection.execute(incident_events.insert(), events)
    for incident_id in touched:
        _write_incident(connection, state[incident_id])
    return [
        IncidentChange(incident=state[incident_id], opened=opened, resolved=resolved)
        for incident_id, (opened, resolved) in touched.items()
    ]


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i : i + _PRUNE_CHUNK] for i in range(0, len(values), _PRUNE_CHUNK)]


def _linked_incidents(connection: Connection, fingerprints: set[str]) -> dict[Occurrence, int]:
    """The incident each known occurrence of these fingerprints belongs to (its newest link)."""
    found: dict[Occurrence, int] = {}
    for chunk in _chunks(sorted(fingerprints)):
        rows = connection.execute(
            sa.select(
                raw_alerts.c.fingerprint, raw_alerts.c.starts_at, incident_alerts.c.incident_id
            )
            .join(incident_alerts, incident_alerts.c.raw_alert_id == raw_alerts.c.id)
            .where(raw_alerts.c.fingerprint.in_(chunk))
            .order_by(raw_alerts.c.id)
        )
        for fingerprint, starts_at, incident_id in rows:
            found[(fingerprint, _utc(starts_at))] = incident_id
    return found


def _open_incidents_with_keys(connection: Connection, keys: set[str]) -> dict[str, int]:
    """The newest open incident of each key, locked as it is found: one resolved meanwhile by a
    person is no longer found."""
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(keys)):
        rows = connection.execute(
            sa.select(incidents.c.incident_key, incidents.c.id)
            .where(incidents.c.incident_key.in_(chunk), incidents.c.state != "resolved")
            .order_by(incidents.c.id)
            .with_for_update()
        )
        for key, incident_id in rows:
            found[key] = incident_id
    return found


def _incident_rows(connection: Connection, ids: set[int]) -> dict[int, Incident]:
    found: dict[int, Incident] = {}
    for chunk in _chunks(sorted(ids)):
        rows = connection.execute(
            sa.select(incidents).where(incidents.c.id.in_(chunk)).with_for_update()
        ).mappings()
        found.update((row["id"], incident_of(row)) for row in rows)
    return found


def _occurrences_of(connection: Connection, ids: set[int]) -> dict[int, dict[Occurrence, str]]:
    """Each alert occurrence of the incidents and its latest status."""
    found: dict[int, dict[Occurrence, str]] = {}
    for chunk in _chunks(sorted(ids)):
        rows = connection.execute(
            sa.select(
                incident_alerts.c.incident_id,
                raw_alerts.c.fingerprint,
                raw_alerts.c.starts_at,
                raw_alerts.c.status,
            )
            .join(incident_alerts, incident_alerts.c.raw_alert_id == raw_alerts.c.id)
            .where(incident_alerts.c.incident_id.in_(chunk))
            .order_by(raw_alerts.c.id)
        )
        for incident_id, fingerprint, starts_at, status in rows:
            found.setdefault(incident_id, {})[(fingerprint, _utc(starts_at))] = status
    return found


def _insert_raws(connection: Connection, alerts: Sequence[ReceivedAlert]) -> list[int]:
    """Insert the raw alerts; their ids, in order. One statement where the database reports
    the ids of a many-row insert in order (PostgreSQL, SQLite), else one per alert."""
    if not connection.dialect.insert_executemany_returning_sort_by_parameter_order:
        return [_insert_raw(connection, alert) for alert in alerts]
    result = connection.execute(
        raw_alerts.insert().returning(raw_alerts.c.id, sort_by_parameter_order=True),
        [_raw_values(alert) for alert in alerts],
    )
    return [int(row[0]) for row in result]


def _new_incident(incident_id: int, alert: ReceivedAlert) -> Incident:
    """The incident ``_open_incident`` just inserted, as ``incident_row`` would read it."""
    labels = alert.labels
    return Incident(
        id=incident_id,
        key=alert.incident_key,
        state="triggered",
        title=title_of(alert),
        severity=labels.get("severity", ""),
        service=labels.get("service", ""),
        cluster=labels.get("cluster", ""),
        namespace=labels.get("namespace", ""),
        labels=dict(labels),
        opened_at=_utc(alert.starts_at),
        alerts_firing=0,
        alerts_total=0,
    )


def _write_incident(connection: Connection, incident: Incident) -> None:
    """The incident's changeable columns, as the lifecycle left them."""
    connection.execute(
        incidents.update()
        .where(incidents.c.id == incident.id)
        .values(
            state=incident.state,
            state_rank=lifecycle.STATE_RANKS[incident.state],
            alerts_firing=incident.alerts_firing,
            alerts_total=incident.alerts_total,
            acknowledged_at=incident.acknowledged_at,
            acknowledged_by=incident.acknowledged_by,
            resolved_at=incident.resolved_at,
            resolved_by=incident.resolved_by,
            resolved_while_firing=incident.resolved_while_firing,
            silenced_until=incident.silenced_until,
            silenced_by=incident.silenced_by,
            silence_id=incident.silence_id,
            version=incident.version,
        )
    )


def act(
    connection: Connection,
    incident_id: int,
    actor: str,
    at: datetime,
    action: Callable[[Incident], lifecycle.Transition],
    detail: str | None = None,
) -> ActionOutcome:
    """One action on one incident, under its row lock; an event and version + 1 if it changed."""
    incident = incident_row(connection, incident_id, lock=True)
    transition = action(incident)
    if transition.event is None:
        return ActionOutcome(incident=incident, changed=False)
    after = replace(transition.incident, version=incident.version + 1)
    _write_incident(connection, after)
    _event(
        connection,
        incident_id,
        at,
        transition.event,
        actor,
        after.state,
        transition.detail if detail is None else detail,
    )
    return ActionOutcome(incident=after, changed=True)


def expire_silences(connection: Connection, at: datetime) -> list[Incident]:
    ids = (
        connection.execute(
            sa.select(incidents.c.id)
            .where(incidents.c.state == "silenced", incidents.c.silenced_until <= at)
            .order_by(incidents.c.id)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    ended: list[Incident] = []
    for incident_id in ids:
        outcome = act(
            connection,
            incident_id,
            SYSTEM_ACTOR,
            at,
            lambda incident: lifecycle.end_silence(incident, SYSTEM_ACTOR, at),
            detail="the silence ran out",
        )
        ended.append(outcome.incident)
    return ended


def prune(connection: Connection, before: datetime) -> int:
    """Delete the raw alerts received before ``before`` that no open incident needs."""
    still_needed = (
        sa.select(incident_alerts.c.raw_alert_id)
        .join(incidents, incidents.c.id == incident_alerts.c.incident_id)
        .where(incident_alerts.c.raw_alert_id == raw_alerts.c.id, incidents.c.state != "resolved")
    )
    ids: list[Any] = list(
        connection.execute(
            sa.select(raw_alerts.c.id).where(
                raw_alerts.c.received_at < before, ~sa.exists(still_needed)
            )
        ).scalars()
    )
    for start in range(0, len(ids), _PRUNE_CHUNK):
        chunk = ids[start : start + _PRUNE_CHUNK]
        connection.execute(
            incident_alerts.delete().where(incident_alerts.c.raw_alert_id.in_(chunk))
        )
        connection.execute(raw_alerts.delete().where(raw_alerts.c.id.in_(chunk)))
    return len(ids)


def note_slack_message(connection: Connection, key: str, channel: str, ts: str) -> bool:
    """Whether an incident with that key was there to take the message."""
    incident_id = newest_id_with_key(connection, key)
    if incident_id is None:
        return False
    connection.execute(
        incidents.update()
        .where(incidents.c.id == incident_id)
        .values(slack_channel=channel, slack_ts=ts)
    )
    return True
