"""The ``/incidents`` web page: a list with filters and counts, a detail with its timeline, and
the actions as plain HTML forms (no JavaScript, nothing fetched from elsewhere).

Auth is HTTP Basic, which every browser prompts for natively: the password is the API token, the
user name is recorded as who acted. It is meant to sit behind the team's SSO proxy as well (which
can fill in the Basic credentials); the page itself only knows the one token. Forms carry a CSRF
token (HMAC of the user name under the API token) and a POST whose Origin or Referer names another
host is refused, so another site cannot make a logged-in browser act.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import jinja2
from aiohttp import BasicAuth, web
from pydantic import BaseModel, ConfigDict, ValidationError

from ..silences import SilenceFailed
from .actions import SILENCE_DURATIONS, IncidentActions
from .openapi import (
    MAX_INCIDENT_ID,
    AlertEntry,
    IncidentListQuery,
    problems_of,
    timeline,
)
from .records import (
    INCIDENT_STATES,
    ActionOutcome,
    ActionRefused,
    IncidentNotFound,
    IncidentStoreUnavailable,
)
from .store import IncidentStore

log = logging.getLogger("lumen.threader.incidents.web")

PAGE_DISABLED = "The incident page is disabled: start the threader with --api-token-file."
REALM = 'Basic realm="Lumen incidents", charset="UTF-8"'
MAX_ACTOR = 200
PageAction = Literal["acknowledge", "resolve", "silence", "end-silence"]
ACTIONS: tuple[PageAction, ...] = ("acknowledge", "resolve", "silence", "end-silence")

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("lumen_alerting.threader.incidents", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _utc(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _safe_url(value: str) -> bool:
    """Only http(s) links become anchors: a ``javascript:`` URL in an alert must not run."""
    return urlsplit(value).scheme in ("http", "https")


# Grafana's link fields (and Prometheus's generatorURL) as a person reads them.
LINK_NAMES = {
    "dashboardURL": "Grafana dashboard",
    "panelURL": "Grafana panel",
    "silenceURL": "Silence in Grafana",
    "imageURL": "Panel image",
    "generatorURL": "Source query",
}


def _link_name(key: str) -> str:
    return LINK_NAMES.get(key, key)


_templates.filters["utc"] = _utc
_templates.filters["link_name"] = _link_name
_templates.tests["safe_url"] = _safe_url


def csrf_token(api_token: str, user: str) -> str:
    """The hidden form field: bound to the user and unknown to anyone without the token."""
    message = b"lumen-incidents-csrf:" + user.encode("utf-8", "surrogateescape")
    return hmac.new(api_token.encode(), message, hashlib.sha256).hexdigest()


class ActionForm(BaseModel):
    """The fields a page form posts."""

    model_config = ConfigDict(extra="ignore")

    csrf: str
    duration: Literal["1h", "4h", "1d"] | None = None


def add_incident_pages(
    app: web.Application, actions: IncidentActions, store: IncidentStore, *, api_token: str
) -> None:
    pages = _IncidentPages(actions, store, api_token)
    app.router.add_get("/incidents", pages.list_page)
    app.router.add_get("/incidents/{id}", pages.detail_page)
    app.router.add_post("/incidents/{id}/{action}", pages.act)


class _IncidentPages:
    def __init__(self, actions: IncidentActions, store: IncidentStore, api_token: str) -> None:
        self._actions = actions
        self._store = store
        self._token = api_token

    # --- auth ---

    def _user(self, request: web.Request) -> str | web.Response:
        """The Basic-auth user name, or the answer to send instead."""
        if not self._token:
            return _message_page(503, "Disabled", PAGE_DISABLED)
        try:
            credentials = BasicAuth.decode(
                request.headers.get("Authorization", ""), encoding="utf-8"
            )
        except ValueError:
            credentials = None
        if credentials is None or not hmac.compare_digest(
            credentials.password.encode("utf-8", "surrogateescape"), self._token.encode()
        ):
            return _message_page(
                401,
                "Sign in",
                "Sign in with your name as the user and the incident API token as the password.",
                headers={"WWW-Authenticate": REALM},
            )
        user = str(credentials.login).strip()
        if not user or len(user) > MAX_ACTOR or not user.isprintable():
            return _message_page(
                401,
                "Sign in",
                f"The user name is recorded as who acted: 1 to {MAX_ACTOR} printable characters.",
                headers={"WWW-Authenticate": REALM},
            )
        return user

    # --- pages ---

    async def list_page(self, request: web.Request) -> web.Response:
        user = self._user(request)
        if isinstance(user, web.Response):
            return user
        # The filter form sends every field; an empty one means "any".
        raw = {key: value for key, value in request.query.items() if value != ""}
        try:
            query = IncidentListQuery.model_validate(raw)
        except ValidationError as error:
            return _render(
                "list.html",
                status=400,
                user=user,
                problems=problems_of(error, where="query"),
                query=raw,
                page=None,
                counts={},
                states=INCIDENT_STATES,
                links={},
            )
        try:
            page = await self._store.list(
                query.where(), sort=query.sort, limit=query.limit, offset=query.offset
            )
            counts: dict[str, int] = {}
            unfiltered = query.model_copy(update={"state": None})
            for state in INCIDENT_STATES:
                where = unfiltered.model_copy(update={"state": state}).where()
                counts[state] = (await self._store.list(where, limit=1)).total
        except IncidentStoreUnavailable as error:
            return _message_page(503, "Unavailable", f"Incident store unavailable: {error}")
        filters = {key: value for key, value in raw.items() if key not in ("offset",)}
        links: dict[str, str] = {}
        if query.offset > 0:
            links["previous"] = _list_url(filters, max(0, query.offset - query.limit))
        if query.offset + len(page.items) < page.total:
            links["next"] = _list_url(filters, query.offset + query.limit)
        return _render(
            "list.html",
            user=user,
            problems=[],
            query=raw,
            page=page,
            counts=counts,
            states=INCIDENT_STATES,
            links=links,
            state_links={
                state: _list_url({**filters, "state": state}, 0) for state in INCIDENT_STATES
            },
        )

    async def detail_page(self, request: web.Request) -> web.Response:
        user = self._user(request)
        if isinstance(user, web.Response):
            return user
        incident_id = _incident_id(request)
        if incident_id is None:
            return _message_page(404, "Not found", "No such incident.")
        return await self._detail(incident_id, user)

    async def _detail(
        self, incident_id: int, user: str, *, status: int = 200, error: str = ""
    ) -> web.Response:
        try:
            detail = await self._store.get(incident_id)
        except IncidentNotFound:
            return _message_page(404, "Not found", f"No incident {incident_id}.")
        except IncidentStoreUnavailable as unavailable:
            return _message_page(503, "Unavailable", f"Incident store unavailable: {unavailable}")
        return _render(
            "detail.html",
            status=status,
            user=user,
            incident=detail.incident,
            timeline=timeline(detail),
            alert_type=AlertEntry,
            csrf=csrf_token(self._token, user),
            durations=list(SILENCE_DURATIONS),
            can_silence=self._actions.can_silence,
            error=error,
        )

    async def act(self, request: web.Request) -> web.Response:
        if not _same_origin(request):
            return _message_page(403, "Refused", "The form was posted from another site.")
        user = self._user(request)
        if isinstance(user, web.Response):
            return user
        incident_id = _incident_id(request)
        action = request.match_info["action"]
        if incident_id is None or action not in ACTIONS:
            return _message_page(404, "Not found", "No such incident action.")
        try:
            form = ActionForm.model_validate(dict(await request.post()))
        except ValidationError as invalid:
            return _message_page(400, "Invalid form", "; ".join(problems_of(invalid, where="form")))
        if not hmac.compare_digest(form.csrf, csrf_token(self._token, user)):
            return _message_page(403, "Refused", "The form's token is stale: reload the page.")
        try:
            await self._act(incident_id, action, user, form)
        except IncidentNotFound:
            return _message_page(404, "Not found", f"No incident {incident_id}.")
        except ActionRefused as refused:
            return await self._detail(incident_id, user, status=409, error=str(refused))
        except SilenceFailed as failed:
            return await self._detail(
                incident_id, user, status=502, error=f"Alertmanager: {failed}"
            )
        except IncidentStoreUnavailable as unavailable:
            return _message_page(503, "Unavailable", f"Incident store unavailable: {unavailable}")
        # Post/redirect/get: reloading the detail does not post again.
        raise web.HTTPSeeOther(f"/incidents/{incident_id}")

    async def _act(
        self, incident_id: int, action: str, user: str, form: ActionForm
    ) -> ActionOutcome:
        if action == "acknowledge":
            return await self._actions.acknowledge(incident_id, user)
        if action == "resolve":
            return await self._actions.resolve(incident_id, user)
        if action == "silence":
            if form.duration is None:
                raise ActionRefused("choose how long to silence")
            return await self._actions.silence(incident_id, user, SILENCE_DURATIONS[form.duration])
        return await self._actions.end_silence(incident_id, user)


def _incident_id(request: web.Request) -> int | None:
    text = request.match_info["id"]
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if 1 <= value <= MAX_INCIDENT_ID else None


def _same_origin(request: web.Request) -> bool:
    """A POST without Origin and Referer passes (old browsers, curl); with one, it must name
    this host (or the host the proxy in front says it forwarded)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source is None:
        return True
    netloc = urlsplit(source).netloc.lower()
    hosts = {request.host.lower()}
    forwarded = request.headers.get("X-Forwarded-Host")
    if forwarded:
        hosts.add(forwarded.split(",")[0].strip().lower())
    return netloc != "" and netloc in hosts


def _list_url(filters: dict[str, str], offset: int) -> str:
    parameters = dict(filters)
    if offset:
        parameters["offset"] = str(offset)
    return "/incidents?" + urlencode(parameters) if parameters else "/incidents"


def _render(template: str, *, status: int = 200, **context: Any) -> web.Response:
    html = _templates.get_template(template).render(**context)
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8")


def _message_page(
    status: int, title: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    html = _templates.get_template("message.html").render(title=title, message=message)
    return web.Response(
        status=status, text=html, content_type="text/html", charset="utf-8", headers=headers
    )
