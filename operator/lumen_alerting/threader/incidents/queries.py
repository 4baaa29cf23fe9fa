"""The incident store's reads (list, get, find, matchers, counts): plain functions over a
connection, in the caller's transaction. ``store.IncidentStore`` runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from .records import (
    Incident,
    IncidentDetail,
    IncidentEvent,
    IncidentFilter,
    IncidentNotFound,
    IncidentPage,
    RawAlert,
    SortKey,
)
from .schema import incident_alerts, incident_events, incidents, raw_alerts

_SORT_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "opened_at": incidents.c.opened_at,
    "severity": incidents.c.severity_rank,
    "state": incidents.c.state_rank,
}


def incident_of(row: RowMapping) -> Incident:
    return Incident(
        id=row["id"],
        key=row["incident_key"],
        state=row["state"],
        title=row["title"],
        severity=row["severity"],
        service=row["service"],
        cluster=row["cluster"],
        namespace=row["namespace"],
        labels=_strings(row["labels"]),
        opened_at=row["opened_at"],
        alerts_firing=row["alerts_firing"],
        alerts_total=row["alerts_total"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        resolved_while_firing=bool(row["resolved_while_firing"]),
        silenced_until=row["silenced_until"],
        silenced_by=row["silenced_by"],
        silence_id=row["silence_id"],
        slack_channel=row["slack_channel"],
        slack_ts=row["slack_ts"],
        version=row["version"],
    )


def _strings(value: Any) -> dict[str, str]:
    return {str(name): str(text) for name, text in cast(Mapping[str, Any], value or {}).items()}


def _conditions(where: IncidentFilter) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    for column, wanted in (
        (incidents.c.cluster, where.cluster),
        (incidents.c.namespace, where.namespace),
        (incidents.c.service, where.service),
        (incidents.c.severity, where.severity),
        (incidents.c.state, where.state),
    ):
        if wanted is not None:
            conditions.append(column == wanted)
    if where.since is not None:
        conditions.append(incidents.c.opened_at >= where.since)
    if where.until is not None:
        conditions.append(incidents.c.opened_at <= where.until)
    return conditions


def order_by(sort: SortKey) -> tuple[sa.ColumnElement[Any], ...]:
    """The sort key's order, ties newest (highest id) first so that pages are stable."""
    column = _SORT_COLUMNS.get(sort.removeprefix("-"))
    if column is None:
        raise ValueError(f"unknown sort key {sort!r}")
    return (column.desc() if sort.startswith("-") else column.asc(), incidents.c.id.desc())


def list_incidents(
    connection: Connection, where: IncidentFilter, sort: SortKey, limit: int, offset: int
) -> IncidentPage:
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    conditions = _conditions(where)
    total = connection.execute(
        sa.select(sa.func.count()).select_from(incidents).where(*conditions)
    ).scalar_one()
    rows = connection.execute(
        sa.select(incidents)
        .where(*conditions)
        .order_by(*order_by(sort))
        .limit(limit)
        .offset(offset)
    ).mappings()
    return IncidentPage(
        items=tuple(incident_of(row) for row in rows), total=total, limit=limit, offset=offset
    )


def incident_row(connection: Connection, incident_id: int, *, lock: bool = False) -> Incident:
    query = sa.select(incidents).where(incidents.c.id == incident_id)
    if lock:
        # FOR UPDATE on PostgreSQL and MySQL; SQLite ignores it (BEGIN IMMEDIATE holds the lock).
        query = query.with_for_update()
    row = connection.execute(query).mappings().first()
    if row is None:
        raise IncidentNotFound(f"no incident {incident_id}")
    return incident_of(row)


def get_incident(connection: Connection, incident_id: int) -> IncidentDetail:
    incident = incident_row(connection, incident_id)
    alert_rows = connection.execute(
        sa.select(raw_alerts)
        .join(incident_alerts, incident_alerts.c.raw_alert_id == raw_alerts.c.id)
        .where(incident_alerts.c.incident_id == incident_id)
        .order_by(raw_alerts.c.received_at, raw_alerts.c.id)
    ).mappings()
    alerts = tuple(
        RawAlert(
            id=row["id"],
            source=row["source"],
            receiver=row["receiver"],
            group_key=row["group_key"],
            received_at=row["received_at"],
            fingerprint=row["fingerprint"],
            status=row["status"],
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            labels=_strings(row["labels"]),
            annotations=_strings(row["annotations"]),
            links=_strings(row["links"]),
        )
        for row in alert_rows
    )
    event_rows = connection.execute(
        sa.select(incident_events)
        .where(incident_events.c.incident_id == incident_id)
        .order_by(incident_events.c.at, incident_events.c.id)
    ).mappings()
    events = tuple(
        IncidentEvent(
            at=row["at"],
            kind=row["kind"],
            actor=row["actor"],
            state=row["state"],
            detail=row["detail"],
        )
        for row in event_rows
    )
    return IncidentDetail(incident=incident, alerts=alerts, events=events)


def newest_id_with_key(connection: Connection, key: str) -> int | None:
    return connection.execute(
        sa.select(incidents.c.id)
        .where(incidents.c.incident_key == key)
        .order_by(incidents.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def find_incident(connection: Connection, key: str) -> Incident | None:
    incident_id = newest_id_with_key(connection, key)
    return None if incident_id is None else incident_row(connection, incident_id)


def matchers_of(connection: Connection, incident_id: int) -> dict[str, str]:
    """The labels (same name and value) every alert of the incident has: the matchers of a
    silence that holds exactly its alerts, and the others' only when they share all of them."""
    incident = incident_row(connection, incident_id)
    label_sets = connection.execute(
        sa.select(raw_alerts.c.labels)
        .join(incident_alerts, incident_alerts.c.raw_alert_id == raw_alerts.c.id)
        .where(incident_alerts.c.incident_id == incident_id)
    ).scalars()
    common: dict[str, str] | None = None
    for labels in label_sets:
        these = _strings(labels)
        common = (
            these
            if common is None
            else {name: value for name, value in common.items() if these.get(name) == value}
        )
    # Its raw alerts pruned (only once it resolved): the first alert's labels still say it.
    return dict(incident.labels) if common is None else common


def open_counts(connection: Connection) -> dict[tuple[str, str], int]:
    rows = connection.execute(
        sa.select(incidents.c.severity, incidents.c.service, sa.func.count())
        .where(incidents.c.state != "resolved")
        .group_by(incidents.c.severity, incidents.c.service)
    )
    return {(severity, service): count for severity, service, count in rows}
