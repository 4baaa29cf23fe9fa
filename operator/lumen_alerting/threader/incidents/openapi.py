"""The incident API's models and the OpenAPI 3.1 document generated from them.

The same pydantic models validate the requests (``api.py`` and the page) and describe them here,
so the description cannot drift from what the server accepts. Only the table of routes below is
written by hand; every schema, query parameter and path parameter is generated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .records import (
    AlertSource,
    EventKind,
    Incident,
    IncidentDetail,
    IncidentEvent,
    IncidentFilter,
    IncidentState,
    RawAlert,
    SortKey,
)

API_PREFIX = "/api/v1"
REF_TEMPLATE = "#/components/schemas/{model}"
# PostgreSQL and MySQL refuse NUL and most databases mangle control characters: text a person or
# a filter gives is printable, so such input is a 400, not a database error.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
# Ids fit a 32-bit integer column on every database the store supports.
MAX_INCIDENT_ID = 2**31 - 1

FilterText = Annotated[str, StringConstraints(max_length=200, pattern=_PRINTABLE)]
Actor = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_PRINTABLE),
]
SilenceDuration = Literal["1h", "4h", "1d"]


# --- requests ---------------------------------------------------------------------------------


class IncidentListQuery(BaseModel):
    """``GET /api/v1/incidents`` query parameters (and the page's filter form)."""

    model_config = ConfigDict(extra="forbid")

    cluster: FilterText | None = Field(default=None, description="Exact cluster label")
    namespace: FilterText | None = Field(default=None, description="Exact namespace label")
    service: FilterText | None = Field(default=None, description="Exact service label")
    severity: FilterText | None = Field(default=None, description="Exact severity label")
    state: IncidentState | None = None
    since: AwareDatetime | None = Field(
        default=None, description="Opened at or after (RFC 3339 with offset)"
    )
    until: AwareDatetime | None = Field(
        default=None, description="Opened at or before (RFC 3339 with offset)"
    )
    sort: SortKey = Field(default="-opened_at", description="A leading '-' sorts descending")
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=1_000_000_000)

    def where(self) -> IncidentFilter:
        return IncidentFilter(
            cluster=self.cluster,
            namespace=self.namespace,
            service=self.service,
            severity=self.severity,
            state=self.state,
            since=self.since,
            until=self.until,
        )


class IncidentPath(BaseModel):
    """The ``{id}`` of ``/api/v1/incidents/{id}``."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=1, le=MAX_INCIDENT_ID, description="The incident's id")


class ActionRequest(BaseModel):
    """Body of acknowledge, resolve and end-silence: who acts (recorded and shown)."""

    model_config = ConfigDict(extra="forbid")

    by: Actor = Field(description="Who acts, e.g. a user name; at most 200 characters")


class SilenceRequest(BaseModel):
    """Body of silence: who acts, and for how long the Alertmanager silence holds."""

    model_config = ConfigDict(extra="forbid")

    by: Actor = Field(description="Who acts, e.g. a user name; at most 200 characters")
    duration: SilenceDuration


# --- responses --------------------------------------------------------------------------------


class IncidentOut(BaseModel):
    id: int
    key: str
    state: IncidentState
    title: str
    severity: str
    service: str
    cluster: str
    namespace: str
    labels: dict[str, str]
    opened_at: datetime
    alerts_firing: int
    alerts_total: int
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolved_while_firing: bool
    silenced_until: datetime | None
    silenced_by: str | None
    silence_id: str | None
    slack_channel: str | None
    slack_ts: str | None
    version: int

    @classmethod
    def of(cls, incident: Incident) -> IncidentOut:
        return cls(
            id=incident.id,
            key=incident.key,
            state=incident.state,
            title=incident.title,
            severity=incident.severity,
            service=incident.service,
            cluster=incident.cluster,
            namespace=incident.namespace,
            labels=dict(incident.labels),
            opened_at=incident.opened_at,
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
            slack_channel=incident.slack_channel,
            slack_ts=incident.slack_ts,
            version=incident.version,
        )


class IncidentPageOut(BaseModel):
    items: list[IncidentOut]
    total: int = Field(description="Incidents matching the filters, all pages")
    limit: int
    offset: int


class AlertEntry(BaseModel):
    """A received alert in the timeline (``at`` is when it was received)."""

    type: Literal["alert"] = "alert"
    at: datetime
    alert_id: int
    source: AlertSource
    receiver: str
    group_key: str
    fingerprint: str
    status: Literal["firing", "resolved"]
    starts_at: datetime
    ends_at: datetime | None
    labels: dict[str, str]
    annotations: dict[str, str]
    links: dict[str, str] = Field(description="Grafana's dashboard, panel, silence and image URLs")

    @classmethod
    def of(cls, alert: RawAlert) -> AlertEntry:
        return cls(
            at=alert.received_at,
            alert_id=alert.id,
            source=alert.source,
            receiver=alert.receiver,
            group_key=alert.group_key,
            fingerprint=alert.fingerprint,
            status=alert.status,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            links=dict(alert.links),
        )


class EventEntry(BaseModel):
    """A state change in the timeline, with who made it."""

    type: Literal["event"] = "event"
    at: datetime
    kind: EventKind
    actor: str
    state: IncidentState = Field(description="The incident's state after the event")
    detail: str

    @classmethod
    def of(cls, event: IncidentEvent) -> EventEntry:
        return cls(
            at=event.at, kind=event.kind, actor=event.actor, state=event.state, detail=event.detail
        )


TimelineEntry = Annotated[AlertEntry | EventEntry, Field(discriminator="type")]


class IncidentDetailOut(BaseModel):
    incident: IncidentOut
    timeline: list[TimelineEntry] = Field(description="Alerts and state changes, oldest first")

    @classmethod
    def of(cls, detail: IncidentDetail) -> IncidentDetailOut:
        return cls(incident=IncidentOut.of(detail.incident), timeline=timeline(detail))


class ActionResultOut(BaseModel):
    incident: IncidentOut
    changed: bool = Field(description="False when the incident already was so (a repeat)")


class ErrorOut(BaseModel):
    ok: Literal[False] = False
    error: str
    problems: list[str] | None = None


def timeline(detail: IncidentDetail) -> list[AlertEntry | EventEntry]:
    """Alerts and events merged by time; at the same instant the alert comes first (it is what
    caused the event)."""
    entries: list[tuple[datetime, int, int, AlertEntry | EventEntry]] = []
    for n, alert in enumerate(detail.alerts):
        entries.append((alert.received_at, 0, n, AlertEntry.of(alert)))
    for n, event in enumerate(detail.events):
        entries.append((event.at, 1, n, EventEntry.of(event)))
    entries.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in entries]


def problems_of(error: ValidationError, *, where: str) -> list[str]:
    """``"body.by: String should have at least 1 character"``, one per problem."""
    problems = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in (where, *item["loc"]) if part != "")
        problems.append(f"{path}: {item['msg']}")
    return problems


# --- the document -----------------------------------------------------------------------------

# (method, path, operationId, summary, request body model, 200 response model, error statuses)
_Route = tuple[str, str, str, str, type[BaseModel] | None, type[BaseModel], tuple[int, ...]]
ROUTES: tuple[_Route, ...] = (
    (
        "get",
        "/incidents",
        "listIncidents",
        "Incidents matching the filters, one page",
        None,
        IncidentPageOut,
        (400, 401, 503),
    ),
    (
        "get",
        "/incidents/{id}",
        "getIncident",
        "An incident with its timeline of alerts and state changes",
        None,
        IncidentDetailOut,
        (400, 401, 404, 503),
    ),
    (
        "post",
        "/incidents/{id}/acknowledge",
        "acknowledgeIncident",
        "Acknowledge (idempotent: a repeat answers changed=false)",
        ActionRequest,
        ActionResultOut,
        (400, 401, 404, 409, 503),
    ),
    (
        "post",
        "/incidents/{id}/resolve",
        "resolveIncident",
        "Resolve, even while alerts still fire (recorded as such)",
        ActionRequest,
        ActionResultOut,
        (400, 401, 404, 503),
    ),
    (
        "post",
        "/incidents/{id}/silence",
        "silenceIncident",
        "Create an Alertmanager silence for the incident's labels",
        SilenceRequest,
        ActionResultOut,
        (400, 401, 404, 409, 502, 503),
    ),
    (
        "post",
        "/incidents/{id}/end-silence",
        "endIncidentSilence",
        "Expire the incident's Alertmanager silence",
        ActionRequest,
        ActionResultOut,
        (400, 401, 404, 409, 502, 503),
    ),
)

_ERROR_TEXT = {
    400: "The request is invalid; `problems` says where",
    401: "Missing or wrong bearer token",
    404: "No incident with that id",
    409: "The action does not apply in the incident's state",
    502: "Alertmanager refused or could not be reached",
    503: "The database is unavailable, or the API is disabled (no --api-token-file)",
}


def _parameters(model: type[BaseModel], where: Literal["query", "path"]) -> list[dict[str, Any]]:
    """One OpenAPI parameter per field of ``model``, its schema generated by pydantic."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", ()))
    parameters: list[dict[str, Any]] = []
    for name, field_schema in schema["properties"].items():
        field_schema = dict(field_schema)
        description = field_schema.pop("description", None)
        field_schema.pop("title", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": field_schema,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``/api/v1``."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorOut, "serialization")]
    for _method, _path, _op, _summary, body, response, _errors in ROUTES:
        if body is not None:
            models.append((body, "validation"))
        models.append((response, "serialization"))
    _, top = models_json_schema(models, ref_template=REF_TEMPLATE)
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, str]:
        return {"$ref": REF_TEMPLATE.format(model=model.__name__)}

    def error(status: int) -> dict[str, Any]:
        return {
            "description": _ERROR_TEXT[status],
            "content": {"application/json": {"schema": ref(ErrorOut)}},
        }

    paths: dict[str, dict[str, Any]] = {}
    for method, path, operation_id, summary, body, response, errors in ROUTES:
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["incidents"],
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": ref(response)}},
                },
                **{str(status): error(status) for status in errors},
            },
        }
        parameters: list[dict[str, Any]] = []
        if "{id}" in path:
            parameters += _parameters(IncidentPath, "path")
        if operation_id == "listIncidents":
            parameters += _parameters(IncidentListQuery, "query")
        if parameters:
            operation["parameters"] = parameters
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(body)}},
            }
        paths.setdefault(API_PREFIX + path, {})[method] = operation

    paths[API_PREFIX + "/openapi.json"] = {
        "get": {
            "operationId": "getOpenAPI",
            "summary": "This document",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Lumen incidents",
            "version": "1",
            "description": (
                "Incidents of the Lumen threader: list, detail with timeline, acknowledge, "
                "resolve, silence. Every operation but this document needs "
                "`Authorization: Bearer <token of --api-token-file>`."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }
