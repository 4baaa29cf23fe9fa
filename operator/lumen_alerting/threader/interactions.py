"""``POST /slack/interactions``: the incident buttons of the parent Slack messages.

Slack posts a click as ``application/x-www-form-urlencoded`` with one field, ``payload``, holding
the JSON of a ``block_actions`` interaction, signed with the app's signing secret. The order here
is what makes it safe and quick:

1. the raw body is read, at most ``MAX_BODY`` bytes (413 past it);
2. its signature is checked before anything is parsed (401, nothing else happens);
3. the payload is parsed (400 on anything malformed, nothing happens);
4. 200 with an empty body at once: Slack shows an error to the user after 3 seconds, and
   retries (``X-Slack-Retry-Num``), while silencing waits on Alertmanager and the database;
5. the action runs in a background task: ``find(key)``, then acknowledge/resolve/silence/end.

Idempotence: a click is known by (action_ts, action_id, user id); one seen in the last
``REMEMBER_SECONDS`` is skipped, so a Slack retry acts once. The incident's state machine makes a
second click a no-op anyway (``ActionOutcome.changed`` False).

Updating the parent message is not done here: the actions object's ``on_change`` does it. A
failure is told to the user who clicked, as an ephemeral message through the payload's
``response_url``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Protocol
from urllib.parse import parse_qs

import httpx
from aiohttp import web

from ..service_http import json_error
from .incident_messages import (
    ACKNOWLEDGE,
    END_SILENCE,
    INCIDENT_ACTION_IDS,
    RESOLVE,
    SILENCE,
    SILENCE_CHOICES,
    key_from_message,
    parse_silence_value,
)
from .incidents.records import (
    ActionOutcome,
    ActionRefused,
    Incident,
    IncidentNotFound,
    IncidentStoreUnavailable,
)
from .metrics import SlackInteraction, ThreaderMetrics
from .slack_signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureRefused,
    verify_slack_signature,
)

log = logging.getLogger("lumen.threader.interactions")

PATH: Final = "/slack/interactions"
# A block_actions payload carries the whole message (50 blocks of up to 3000 characters, JSON-
# and form-escaped): well under this.
MAX_BODY: Final = 1024 * 1024
BODY_TIMEOUT: Final = 10.0  # Slack gives up after 3 s; a slower body is not Slack's
REMEMBER_SECONDS: Final = 600.0  # Slack retries 3 times within about a minute
MAX_REMEMBERED: Final = 10_000
FEEDBACK_TIMEOUT: Final = 5.0
MAX_ACTOR_NAME: Final = 100
RETRY_NUM_HEADER: Final = "X-Slack-Retry-Num"
RETRY_REASON_HEADER: Final = "X-Slack-Retry-Reason"

_VERBS: Final = {
    ACKNOWLEDGE: "acknowledge",
    RESOLVE: "resolve",
    SILENCE: "silence",
    END_SILENCE: "end the silence of",
}


class IncidentActionsPort(Protocol):
    """What the handler needs of ``incidents.actions.IncidentActions``."""

    async def find(self, key: str) -> Incident | None: ...

    async def acknowledge(self, incident_id: int, actor: str) -> ActionOutcome: ...

    async def resolve(self, incident_id: int, actor: str) -> ActionOutcome: ...

    async def silence(self, incident_id: int, actor: str, duration: timedelta) -> ActionOutcome: ...

    async def end_silence(self, incident_id: int, actor: str) -> ActionOutcome: ...


@dataclass(frozen=True)
class IncidentClick:
    """One of our buttons clicked, as taken from a verified payload."""

    action_id: str
    incident_key: str  # or "sha256:<hex>" for a key too long for a button
    actor: str  # "name (U123)"
    user_id: str
    action_ts: str
    duration: timedelta | None = None  # silence only
    response_url: str | None = None


@dataclass(frozen=True)
class ClickDone:
    """What became of a click (``on_done``): an outcome, or why there is none."""

    click: IncidentClick
    outcome: ActionOutcome | None
    problem: str | None = None  # shown to the user; None when it worked


class InvalidPayload(ValueError):
    """The form or its JSON is not a block_actions payload we can read."""


class SlackInteractions:
    """The aiohttp handler (``handle``) and its background work.

    ``await wait_idle()`` returns once every action started so far is done (tests, shutdown);
    ``await aclose()`` also closes the HTTP client of the ephemeral replies.
    """

    def __init__(
        self,
        signing_secret: bytes,
        actions: IncidentActionsPort,
        *,
        clock: Callable[[], float] = time.time,
        on_done: Callable[[ClickDone], None] | None = None,
        explained_errors: tuple[type[Exception], ...] = (),
        metrics: ThreaderMetrics | None = None,
    ) -> None:
        self._secret = signing_secret
        self._metrics = metrics
        self._actions = actions
        self._clock = clock
        self._on_done = on_done
        # Errors whose message is fit for the user (e.g. SilenceFailed: "Alertmanager
        # unreachable"); any other is "internal error" to them, with the details in the log.
        self._explained: tuple[type[Exception], ...] = (
            ActionRefused,
            IncidentStoreUnavailable,
            *explained_errors,
        )
        # Kept, so a running task is not garbage-collected (asyncio holds only weak references).
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._http: httpx.AsyncClient | None = None

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler: ``app.router.add_post(PATH, interactions.handle)``."""
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            verify_slack_signature(
                self._secret,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                body,
                self._clock(),
            )
        except SignatureRefused as refused:
            log.warning("Slack interaction refused: %s", refused.reason)
            self._count("bad_signature")
            return json_error(401, refused.reason)
        try:
            clicks = parse_clicks(body)
        except InvalidPayload as invalid:
            log.warning("Slack interaction not understood: %s", invalid)
            self._count("bad_request")
            return json_error(400, str(invalid))
        retry = request.headers.get(RETRY_NUM_HEADER)
        if retry is not None:
            log.info(
                "Slack resent an interaction (retry %s, %s)",
                retry[:8],
                request.headers.get(RETRY_REASON_HEADER, "no reason given")[:64],
            )
        fresh = [click for click in clicks if self._first_time(click)]
        self._count("accepted" if fresh or not clicks else "duplicate")
        if fresh:
            task = asyncio.create_task(self._run(fresh))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.Response(status=200)

    def _count(self, outcome: SlackInteraction) -> None:
        if self._metrics is not None:
            self._metrics.note_slack_interaction(outcome)

    async def wait_idle(self) -> None:
        """Wait for every action started so far (and any they start) to finish."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self.wait_idle()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- the request ------------------------------------------------------------------------------

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return json_error(413, f"body larger than {MAX_BODY} bytes")
        body = bytearray()
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                # Read by hand rather than request.read(): the application's client_max_size
                # is sized for Alertmanager's notifications, far above what Slack sends.
                async for chunk in request.content.iter_any():
                    body += chunk
                    if len(body) > MAX_BODY:
                        response = json_error(413, f"body larger than {MAX_BODY} bytes")
                        response.force_close()
                        return response
        except TimeoutError:
            response = json_error(408, f"body not received within {BODY_TIMEOUT:g} seconds")
            response.force_close()
            return response
        return bytes(body)

    def _first_time(self, click: IncidentClick) -> bool:
        now = self._clock()
        # Oldest first, all kept equally long: expired ones are at the front.
        while self._seen and (
            next(iter(self._seen.values())) <= now or len(self._seen) >= MAX_REMEMBERED
        ):
            self._seen.popitem(last=False)
        key = (click.action_ts, click.action_id, click.user_id)
        if key in self._seen:
            log.info("Slack interaction %s of %s handled already", click.action_id, click.user_id)
            return False
        self._seen[key] = now + REMEMBER_SECONDS
        return True

    # --- the work ---------------------------------------------------------------------------------

    async def _run(self, clicks: list[IncidentClick]) -> None:
        for click in clicks:
            outcome: ActionOutcome | None = None
            problem: str | None = None
            verb = _VERBS[click.action_id]
            try:
                outcome = await self._act(click)
                if outcome is None:
                    problem = f"Could not {verb} the incident: it is no longer known"
            except self._explained as error:
                log.warning(
                    "Could not %s incident %s for %s: %s",
                    verb,
                    _short(click.incident_key),
                    click.actor,
                    error,
                )
                problem = f"Could not {verb} the incident: {error}"
            except Exception:
                log.exception(
                    "Could not %s incident %s for %s", verb, _short(click.incident_key), click.actor
                )
                problem = f"Could not {verb} the incident: internal error (see the threader's log)"
            if problem is not None and click.response_url:
                await self._tell(click.response_url, problem)
            if self._on_done is not None:
                try:
                    self._on_done(ClickDone(click, outcome, problem))
                except Exception:
                    log.exception("on_done failed")

    async def _act(self, click: IncidentClick) -> ActionOutcome | None:
        incident = await self._actions.find(click.incident_key)
        if incident is None:
            log.warning(
                "Slack %s by %s: no incident with key %s",
                click.action_id,
                click.actor,
                _short(click.incident_key),
            )
            return None
        try:
            if click.action_id == ACKNOWLEDGE:
                outcome = await self._actions.acknowledge(incident.id, click.actor)
            elif click.action_id == RESOLVE:
                outcome = await self._actions.resolve(incident.id, click.actor)
            elif click.action_id == SILENCE:
                assert click.duration is not None  # parse_clicks sets it for every silence
                outcome = await self._actions.silence(incident.id, click.actor, click.duration)
            else:
                outcome = await self._actions.end_silence(incident.id, click.actor)
        except IncidentNotFound:
            log.warning(
                "Slack %s by %s: incident %d is gone", click.action_id, click.actor, incident.id
            )
            return None
        log.info(
            "Slack %s by %s on incident %d: %s",
            click.action_id,
            click.actor,
            incident.id,
            f"now {outcome.incident.state}" if outcome.changed else "nothing to change",
        )
        return outcome

    async def _tell(self, response_url: str, text: str) -> None:
        """An ephemeral message to the user who clicked; failures only logged (the URL holds a
        token, so it is never logged)."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=FEEDBACK_TIMEOUT, follow_redirects=False)
        try:
            answer = await self._http.post(
                response_url,
                json={"response_type": "ephemeral", "replace_original": False, "text": text},
            )
            if answer.status_code >= 300:
                log.warning("Slack refused the ephemeral reply: HTTP %d", answer.status_code)
        except httpx.HTTPError as error:
            log.warning("Could not post the ephemeral reply: %s", type(error).__name__)


def make_interactions_handler(
    signing_secret: bytes,
    actions: IncidentActionsPort,
    *,
    clock: Callable[[], float] = time.time,
    on_done: Callable[[ClickDone], None] | None = None,
    explained_errors: tuple[type[Exception], ...] = (),
    metrics: ThreaderMetrics | None = None,
) -> SlackInteractions:
    """The handler of ``POST /slack/interactions``: ``app.router.add_post(PATH,
    interactions.handle)``, and ``await interactions.aclose()`` on shutdown (it waits for the
    actions under way). An object rather than a bare coroutine function, for ``wait_idle``."""
    return SlackInteractions(
        signing_secret,
        actions,
        clock=clock,
        on_done=on_done,
        explained_errors=explained_errors,
        metrics=metrics,
    )


# --- the payload ----------------------------------------------------------------------------------


def parse_clicks(body: bytes) -> list[IncidentClick]:
    """Our clicks in a verified form body; [] for other interactions and other action_ids
    (answered 200, nothing done). ``InvalidPayload`` for a malformed body."""
    try:
        form = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=20
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidPayload("body is not a form") from error
    fields = form.get("payload")
    if fields is None or len(fields) != 1:
        raise InvalidPayload("the form needs exactly one payload field")
    try:
        payload = json.loads(fields[0])
    except (ValueError, RecursionError) as error:  # RecursionError: "[[[[…" nested too deep
        raise InvalidPayload("payload is not JSON") from error
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise InvalidPayload("payload is not an interaction")
    if payload["type"] != "block_actions":
        return []
    user = payload.get("user")
    actions = payload.get("actions")
    if not isinstance(user, dict) or not _text(user.get("id")):
        raise InvalidPayload("payload has no user id")
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        raise InvalidPayload("payload has no actions list")
    name = _text(user.get("username")) or _text(user.get("name"))
    user_id = str(user["id"])
    actor = f"{name[:MAX_ACTOR_NAME]} ({user_id})" if name else user_id
    response_url = _text(payload.get("response_url")) or None
    message = payload.get("message")
    clicks = []
    for action in actions:
        action_id = action.get("action_id")
        if action_id not in INCIDENT_ACTION_IDS:
            continue
        action_ts = _text(action.get("action_ts"))
        if not action_ts:  # Slack always sends it; without it a retry could not be told apart
            raise InvalidPayload(f"{action_id} without an action_ts")
        if action_id == SILENCE:
            selected = action.get("selected_option")
            value = _text(selected.get("value")) if isinstance(selected, dict) else ""
            parsed = parse_silence_value(value)
            if parsed is None:
                raise InvalidPayload("silence without a valid selected option")
            key, duration = parsed
            length: timedelta | None = SILENCE_CHOICES[duration][1]
        else:
            key, length = _text(action.get("value")), None
            if not key:
                raise InvalidPayload(f"{action_id} without a value")
        clicks.append(
            IncidentClick(
                action_id=str(action_id),
                incident_key=key_from_message(
                    key, message if isinstance(message, Mapping) else None
                ),
                actor=actor,
                user_id=user_id,
                action_ts=action_ts,
                duration=length,
                response_url=response_url,
            )
        )
    return clicks


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _short(key: str) -> str:
    """A key for the log: a long label-grouping key would flood it."""
    return key if len(key) <= 120 else key[:117] + "..."


__all__ = [
    "PATH",
    "ClickDone",
    "IncidentActionsPort",
    "IncidentClick",
    "InvalidPayload",
    "SlackInteractions",
    "make_interactions_handler",
    "parse_clicks",
]
