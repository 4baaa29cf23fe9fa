"""The incident REST API under ``/api/v1`` (aiohttp), described by ``GET /api/v1/openapi.json``.

Every request is validated by the pydantic models of ``openapi.py`` (query and path through
``model_validate``, bodies through ``model_validate_json``), the same models the OpenAPI document
is generated from. Every route but the document needs ``Authorization: Bearer <api token>``;
without an API token (no ``--api-token-file``) the API answers 503, so an unprotected threader
never lets anyone change incidents.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ...service_http import bearer_matches, json_error
from ..silences import SilenceFailed
from .actions import SILENCE_DURATIONS, IncidentActions
from .openapi import (
    API_PREFIX,
    ActionRequest,
    ActionResultOut,
    IncidentDetailOut,
    IncidentListQuery,
    IncidentOut,
    IncidentPageOut,
    IncidentPath,
    SilenceRequest,
    openapi_document,
    problems_of,
)
from .records import ActionOutcome, ActionRefused, IncidentNotFound, IncidentStoreUnavailable
from .store import IncidentStore
from .web import add_incident_pages

log = logging.getLogger("lumen.threader.incidents.api")

API_DISABLED = "incident API disabled: start the threader with --api-token-file"
STORE_RETRY_AFTER = "5"  # seconds; a database that failed is usually back soon

_M = TypeVar("_M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_incident_routes(
    app: web.Application,
    actions: IncidentActions,
    store: IncidentStore,
    *,
    api_token: str,
    pages: bool = True,
) -> None:
    """``/api/v1/...`` and, with ``pages``, the ``/incidents`` web page, on ``app``. An empty
    ``api_token`` keeps the routes but answers 503 (the page too): the token is the only
    credential of both."""
    api = _IncidentApi(actions.via("api"), store, api_token)
    app.router.add_get(f"{API_PREFIX}/openapi.json", api.openapi)
    app.router.add_get(f"{API_PREFIX}/incidents", api.guarded(api.list_incidents))
    app.router.add_get(f"{API_PREFIX}/incidents/{{id}}", api.guarded(api.get_incident))
    for action in ("acknowledge", "resolve", "silence", "end-silence"):
        app.router.add_post(
            f"{API_PREFIX}/incidents/{{id}}/{action}", api.guarded(api.action_handler(action))
        )
    if pages:
        add_incident_pages(app, actions.via("web"), store, api_token=api_token)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=model.model_dump_json(), content_type="application/json"
    )


class _IncidentApi:
    def __init__(self, actions: IncidentActions, store: IncidentStore, api_token: str) -> None:
        self._actions = actions
        self._store = store
        self._token = api_token
        # Generated once: the models do not change while the process runs.
        self._document = json.dumps(openapi_document())

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(text=self._document, content_type="application/json")

    def guarded(self, handler: Handler) -> Handler:
        """Auth first, then the handler; the incident errors mapped to their statuses."""

        async def guarded_handler(request: web.Request) -> web.StreamResponse:
            if not self._token:
                return json_error(503, API_DISABLED)
            if not bearer_matches(request, self._token):
                return json_error(
                    401,
                    "missing or wrong bearer token",
                    headers={"WWW-Authenticate": 'Bearer realm="lumen-incidents"'},
                )
            try:
                return await handler(request)
            except _Invalid as invalid:
                return json_error(400, invalid.message, problems=invalid.problems)
            except IncidentNotFound as error:
                return json_error(404, str(error) or "no such incident")
            except ActionRefused as error:
                return json_error(409, str(error))
            except SilenceFailed as error:
                return json_error(502, f"Alertmanager: {error}")
            except IncidentStoreUnavailable as error:
                log.warning("incident API: %s", error)
                return json_error(
                    503,
                    f"incident store unavailable: {error}",
                    headers={"Retry-After": STORE_RETRY_AFTER},
                )

        return guarded_handler

    async def list_incidents(self, request: web.Request) -> web.Response:
        query = validated_query(request)
        page = await self._store.list(
            query.where(), sort=query.sort, limit=query.limit, offset=query.offset
        )
        return _json(
            IncidentPageOut(
                items=[IncidentOut.of(incident) for incident in page.items],
                total=page.total,
                limit=page.limit,
                offset=page.offset,
            )
        )

    async def get_incident(self, request: web.Request) -> web.Response:
        incident_id = validated_id(request)
        detail = await self._store.get(incident_id)
        return _json(IncidentDetailOut.of(detail))

    def action_handler(self, action: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            incident_id = validated_id(request)
            body = await request.read()
            outcome: ActionOutcome
            if action == "silence":
                silence = _validated_body(SilenceRequest, body)
                outcome = await self._actions.silence(
                    incident_id, silence.by, SILENCE_DURATIONS[silence.duration]
                )
            else:
                actor = _validated_body(ActionRequest, body).by
                if action == "acknowledge":
                    outcome = await self._actions.acknowledge(incident_id, actor)
                elif action == "resolve":
                    outcome = await self._actions.resolve(incident_id, actor)
                else:
                    outcome = await self._actions.end_silence(incident_id, actor)
            return _json(
                ActionResultOut(incident=IncidentOut.of(outcome.incident), changed=outcome.changed)
            )

        return handle


class _Invalid(Exception):
    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems


def query_dict(request: web.Request, *, drop_empty: bool = False) -> dict[str, Any]:
    """The query as a plain dict; a parameter given twice is a 400 (which one would count?)."""
    repeated = sorted({key for key in request.query if len(request.query.getall(key)) > 1})
    if repeated:
        raise _Invalid("invalid query", [f"query.{key}: given more than once" for key in repeated])
    return {key: value for key, value in request.query.items() if not (drop_empty and value == "")}


def validated_query(request: web.Request, *, drop_empty: bool = False) -> IncidentListQuery:
    try:
        return IncidentListQuery.model_validate(query_dict(request, drop_empty=drop_empty))
    except ValidationError as error:
        raise _Invalid("invalid query", problems_of(error, where="query")) from None


def validated_id(request: web.Request) -> int:
    try:
        return IncidentPath.model_validate({"id": request.match_info["id"]}).id
    except ValidationError as error:
        raise _Invalid("invalid incident id", problems_of(error, where="path")) from None


def _validated_body(model: type[_M], body: bytes) -> _M:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise _Invalid("invalid request body", problems_of(error, where="body")) from None
