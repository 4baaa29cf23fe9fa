"""``POST /slack/interactions`` over a real aiohttp server, with Slack's real request shapes (a
signed form whose ``payload`` is a block_actions JSON) and a recording stand-in for the incident
actions; the ephemeral replies go to a local server standing in for Slack's ``response_url``.
Also the incident blocks (buttons, state line, parent update) against Block Kit's limits."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lumen_alerting.threader.incident_messages import (
    ACKNOWLEDGE,
    END_SILENCE,
    MAX_BUTTON_VALUE,
    MAX_OPTION_VALUE,
    RESOLVE,
    SILENCE,
    hashed_key,
    incident_buttons,
    incident_parent_update,
    incident_state_block,
    incident_text,
    key_from_message,
)
from lumen_alerting.threader.incidents.records import (
    SYSTEM_ACTOR,
    ActionOutcome,
    ActionRefused,
    Incident,
)
from lumen_alerting.threader.interactions import (
    MAX_BODY,
    PATH,
    ClickDone,
    SlackInteractions,
    make_interactions_handler,
)
from lumen_alerting.threader.messages import parent_message

from .test_messages import SEED, block_kit_problems

SECRET = b"lumen-test-signing-secret"
NOW = 1_764_700_000.0
KEY = "3fa2c1d0e9b8a7f6@2026-12-02T12:00:00Z"
USER = {"id": "U0123ABCD", "username": "alice", "name": "alice", "team_id": "T0123ABCD"}
ACTOR = "alice (U0123ABCD)"
DEADLINE = 30.0  # roomy: CI is two busy cores


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


def make_incident(**changes: Any) -> Incident:
    base = Incident(
        id=7,
        key=KEY,
        state="triggered",
        title="HighErrorRate: checkout answers 5xx",
        severity="critical",
        service="checkout",
        cluster="prod-eu",
        namespace="shop",
        labels={"alertname": "HighErrorRate", "severity": "critical"},
        opened_at=datetime(2026, 12, 2, 12, 0, tzinfo=UTC),
        alerts_firing=1,
        alerts_total=1,
    )
    return dataclasses.replace(base, **changes)


class SilenceFailed(Exception):
    """Like silences.SilenceFailed: its message is meant for people."""


class RecordingActions:
    """The IncidentActionsPort, recording each call; ``gate`` holds acknowledge until set."""

    def __init__(self, *incidents: Incident) -> None:
        self.incidents = {incident.key: incident for incident in incidents}
        self.calls: list[tuple[Any, ...]] = []
        self.gate: asyncio.Event | None = None
        self.finished: list[str] = []
        self.fail: Exception | None = None

    async def find(self, key: str) -> Incident | None:
        self.calls.append(("find", key))
        return self.incidents.get(key)

    def _by_id(self, incident_id: int) -> Incident:
        return next(i for i in self.incidents.values() if i.id == incident_id)

    def _change(self, incident_id: int, **changes: Any) -> ActionOutcome:
        if self.fail is not None:
            raise self.fail
        before = self._by_id(incident_id)
        after = dataclasses.replace(before, **changes)
        self.incidents[after.key] = after
        return ActionOutcome(after, changed=after != before)

    async def acknowledge(self, incident_id: int, actor: str) -> ActionOutcome:
        self.calls.append(("acknowledge", incident_id, actor))
        if self.gate is not None:
            await self.gate.wait()
        self.finished.append("acknowledge")
        return self._change(incident_id, state="acknowledged", acknowledged_by=actor)

    async def resolve(self, incident_id: int, actor: str) -> ActionOutcome:
        self.calls.append(("resolve", incident_id, actor))
        return self._change(incident_id, state="resolved", resolved_by=actor)

    async def silence(self, incident_id: int, actor: str, duration: timedelta) -> ActionOutcome:
        self.calls.append(("silence", incident_id, actor, duration))
        return self._change(incident_id, state="silenced", silenced_by=actor)

    async def end_silence(self, incident_id: int, actor: str) -> ActionOutcome:
        self.calls.append(("end_silence", incident_id, actor))
        return self._change(incident_id, state="triggered")


# --- Slack's side ---------------------------------------------------------------------------------


def block_actions(
    action_id: str = ACKNOWLEDGE,
    *,
    value: str | None = KEY,
    selected: str | None = None,
    action_ts: str = "1764700000.123456",
    response_url: str = "https://hooks.slack.com/actions/T0123ABCD/1/abc",
    message_blocks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A block_actions payload as Slack sends it for a click on a message's element."""
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": "lumen.incident.actions.1",
        "action_ts": action_ts,
    }
    if selected is not None:
        action |= {
            "type": "static_select",
            "selected_option": {
                "text": {"type": "plain_text", "text": "Silence 4 hours", "emoji": True},
                "value": selected,
            },
            "placeholder": {"type": "plain_text", "text": "Silence…", "emoji": True},
        }
    else:
        action |= {
            "type": "button",
            "text": {"type": "plain_text", "text": "Acknowledge", "emoji": True},
            "value": value,
        }
    return {
        "type": "block_actions",
        "user": USER,
        "api_app_id": "A0123ABCD",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": "1764690000.000100",
            "channel_id": "C0123ABCD",
            "is_ephemeral": False,
        },
        "trigger_id": "1234567890.0987654321.abcdef",
        "team": {"id": "T0123ABCD", "domain": "acme"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": "C0123ABCD", "name": "alerts"},
        "message": {
            "type": "message",
            "ts": "1764690000.000100",
            "bot_id": "B0123ABCD",
            "text": "alert",
            "blocks": message_blocks or [],
        },
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def signature(body: bytes, timestamp: str, secret: bytes = SECRET) -> str:
    digest = hmac.new(secret, f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return "v0=" + digest.hexdigest()


def signed_headers(body: bytes, timestamp: str | None = None, **extra: str) -> dict[str, str]:
    timestamp = timestamp or str(int(NOW))
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature(body, timestamp),
        **extra,
    }


class Threader:
    def __init__(self, handler: SlackInteractions, url: str, session: aiohttp.ClientSession):
        self.handler = handler
        self.url = url
        self.session = session

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        async with self.session.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.read()

    async def click(self, payload: dict[str, Any], **extra: str) -> tuple[int, bytes]:
        body = form(payload)
        return await self.post(body, signed_headers(body, **extra))


@asynccontextmanager
async def threader(
    actions: RecordingActions,
    *,
    clock: Callable[[], float] = lambda: NOW,
    done: list[ClickDone] | None = None,
) -> AsyncIterator[Threader]:
    handler = make_interactions_handler(
        SECRET,
        actions,
        clock=clock,
        on_done=None if done is None else done.append,
        explained_errors=(SilenceFailed,),
    )
    app = web.Application()
    app.router.add_post(PATH, handler.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Threader(handler, str(server.make_url(PATH)), session)
    finally:
        await handler.aclose()
        await server.close()


@asynccontextmanager
async def response_url_sink() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """Stands in for Slack's response_url: records what is posted to it."""
    received: list[dict[str, Any]] = []

    async def take(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/actions/T0123ABCD/1/abc", take)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("/actions/T0123ABCD/1/abc")), received
    finally:
        await server.close()


# --- the handler ----------------------------------------------------------------------------------


def test_acknowledge_is_answered_with_an_empty_200_and_acts_as_the_clicking_user() -> None:
    async def scenario() -> None:
        actions = RecordingActions(make_incident())
        done: list[ClickDone] = []
        async with threader(actions, done=done) as lumen:
            status, body = await lumen.click(block_actions(ACKNOWLEDGE))
            await lumen.handler.wait_idle()
        assert (status, body) == (200, b"")
        assert actions.calls == [("find", KEY), ("acknowledge", 7, ACTOR)]
        assert [d.outcome.incident.state for d in done if d.outcome] == ["acknowledged"]
        assert done[0].problem is None

    run(scenario())


def test_the_answer_comes_before_a_slow_action_finishes() -> None:
    """Slack wants an answer within 3 seconds; the work is done afterwards."""

    async def scenario() -> None:
        actions = RecordingActions(make_incident())
        actions.gate = asyncio.Event()
        async with threader(actions) as lumen:
            async with asyncio.timeout(DEADLINE):
                status, _ = await lumen.click(block_actions(ACKNOWLEDGE))
            assert status == 200
            assert actions.finished == []  # still held by the gate
            actions.gate.set()
            async with asyncio.timeout(DEADLINE):
                await lumen.handler.wait_idle()
        assert actions.finished == ["acknowledge"]

    run(scenario())


@pytest.mark.parametrize(
    ("action_id", "value", "selected", "expected"),
    [
        (RESOLVE, KEY, None, ("resolve", 7, ACTOR)),
        (SILENCE, None, f"{KEY}|4h", ("silence", 7, ACTOR, timedelta(hours=4))),
        (SILENCE, None, f"{KEY}|1d", ("silence", 7, ACTOR, timedelta(days=1))),
        (END_SILENCE, KEY, None, ("end_silence", 7, ACTOR)),
    ],
)
def test_each_button_calls_its_action(
    action_id: str, value: str | None, selected: str | None, expected: tuple[Any, ...]
) -> None:
    async def scenario() -> None:
        actions = RecordingActions(make_incident(state="silenced"))
        async with threader(actions) as lumen:
            payload = block_actions(action_id, value=value, selected=selected)
            assert (await lumen.click(payload))[0] == 200
            await lumen.handler.wait_idle()
        assert actions.calls == [("find", KEY), expected]

    run(scenario())


def test_a_retry_of_the_same_click_acts_once() -> None:
    async def scenario() -> None:
        actions = RecordingActions(make_incident())
        async with threader(actions) as lumen:
            body = form(block_actions(ACKNOWLEDGE))
            first = await lumen.post(body, signed_headers(body))
            retry = await lumen.post(
                body,
                signed_headers(
                    body, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
                ),
            )
            await lumen.handler.wait_idle()
        assert first == retry == (200, b"")
        assert actions.calls.count(("acknowledge", 7, ACTOR)) == 1

    run(scenario())


def test_a_second_click_is_acted_on_and_a_click_is_forgotten_after_ten_minutes() -> None:
    async def scenario() -> None:
        actions = RecordingActions(make_incident())
        now = [NOW]
        async with threader(actions, clock=lambda: now[0]) as lumen:
            await lumen.click(block_actions(ACKNOWLEDGE, action_ts="1764700000.1"))
            await lumen.click(block_actions(ACKNOWLEDGE, action_ts="1764700001.2"))
            await lumen.handler.wait_idle()
            assert actions.calls.count(("acknowledge", 7, ACTOR)) == 2
            now[0] = NOW + 601  # same click, freshly signed: no longer remembered
            await lumen.click(
                block_actions(ACKNOWLEDGE, action_ts="1764700000.1"), timestamp=str(int(now[0]))
            )
            await lumen.handler.wait_idle()
        assert actions.calls.count(("acknowledge", 7, ACTOR)) == 3

    run(scenario())


REFUSED: dict[str, Callable[[bytes], tuple[bytes, dict[str, str]]]] = {
    "wrong signature": lambda b: (b, {**signed_headers(b), "X-Slack-Signature": "v0=" + "0" * 64}),
    "wrong secret": lambda b: (
        b,
        {
            **signed_headers(b),
            "X-Slack-Signature": signature(b, str(int(NOW)), secret=b"not-our-secret"),
        },
    ),
    "older than 5 minutes": lambda b: (b, signed_headers(b, timestamp=str(int(NOW) - 301))),
    "in the future": lambda b: (b, signed_headers(b, timestamp=str(int(NOW) + 301))),
    "no timestamp": lambda b: (
        b,
        {k: v for k, v in signed_headers(b).items() if k != "X-Slack-Request-Timestamp"},
    ),
    "no signature": lambda b: (
        b,
        {k: v for k, v in signed_headers(b).items() if k != "X-Slack-Signature"},
    ),
    "timestamp not a number": lambda b: (b, signed_headers(b, timestamp="soon")),
    "body tampered after signing": lambda b: (
        b.replace(b"alice", b"mallory"),
        signed_headers(b),
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_request_not_signed_by_slack_is_refused_and_nothing_happens(case: str) -> None:
    async def scenario() -> None:
        actions = RecordingActions(make_incident())
        async with threader(actions) as lumen:
            body, headers = REFUSED[case](form(block_actions(ACKNOWLEDGE)))
            status, answer = await lumen.post(body, headers)
            await lumen.handler.wait_idle()
        assert status == 401
        assert json.loads(answer)["ok"] is False
        assert SECRET.decode() not in answer.decode()
        assert actions.calls == []

    run(scenario())


@pytest.mark.parametrize(
    "body",
    [
        b"payload=%7Bnot json",
        b"text=hello",
        urlencode([("payload", "{}"), ("payload", "{}")]).encode(),
        b"\xff\xfe",
        form({"type": "block_actions", "actions": []}),  # no user
        form({"type": "block_actions", "user": USER, "actions": "x"}),
        form(block_actions(SILENCE, selected=f"{KEY}|2w")),  # a duration we never offer
        form(block_actions(ACKNOWLEDGE, value="")),
        form(block_actions(ACKNOWLEDGE, action_ts="")),
        urlencode({"payload": "[" * 100_000}).encode(),  # nested too deep for json
    ],
)
def test_a_signed_but_malformed_payload_is_400_and_nothing_happens(body: bytes) -> None:
    async def scenario() -> None:
        actions = RecordingActions(make_incident())
        async with threader(actions) as lumen:
            status, _ = await lumen.post(body, signed_headers(body))
            await lumen.handler.wait_idle()
        assert status == 400
        assert actions.calls == []

    run(scenario())


def test_a_body_over_one_mebibyte_is_413_and_nothing_happens() -> None:
    async def scenario() -> None:
        actions = RecordingActions(make_incident())
        async with threader(actions) as lumen:
            payload = block_actions(ACKNOWLEDGE)
            payload["padding"] = "x" * MAX_BODY
            body = form(payload)
            status, _ = await lumen.post(body, signed_headers(body))
            await lumen.handler.wait_idle()
        assert status == 413
        assert actions.calls == []

    run(scenario())


def test_other_action_ids_and_interactions_are_ignored_with_200() -> None:
    async def scenario() -> None:
        actions = RecordingActions(make_incident())
        async with threader(actions) as lumen:
            other = block_actions("someone.elses.button")
            assert (await lumen.click(other))[0] == 200
            modal = {"type": "view_submission", "user": USER, "view": {}}
            assert (await lumen.click(modal))[0] == 200
            await lumen.handler.wait_idle()
        assert actions.calls == []

    run(scenario())


def test_an_unknown_key_is_logged_and_told_to_the_user(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        actions = RecordingActions()  # no incidents
        async with response_url_sink() as (url, received), threader(actions) as lumen:
            await lumen.click(block_actions(RESOLVE, response_url=url))
            await lumen.handler.wait_idle()
        assert actions.calls == [("find", KEY)]
        assert received == [
            {
                "response_type": "ephemeral",
                "replace_original": False,
                "text": "Could not resolve the incident: it is no longer known",
            }
        ]

    with caplog.at_level(logging.INFO, logger="lumen.threader.interactions"):
        run(scenario())
    assert any(
        "no incident with key" in r.getMessage() and KEY in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (SilenceFailed("Alertmanager unreachable"), "Alertmanager unreachable"),
        (ActionRefused("the incident is resolved"), "the incident is resolved"),
        (RuntimeError("boom"), "internal error (see the threader's log)"),
    ],
)
def test_a_failed_action_is_told_to_the_user_ephemerally(
    error: Exception, shown: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        actions = RecordingActions(make_incident())
        actions.fail = error
        async with response_url_sink() as (url, received), threader(actions) as lumen:
            payload = block_actions(SILENCE, selected=f"{KEY}|1h", response_url=url)
            assert (await lumen.click(payload))[0] == 200
            await lumen.handler.wait_idle()
        assert received == [
            {
                "response_type": "ephemeral",
                "replace_original": False,
                "text": f"Could not silence the incident: {shown}",
            }
        ]

    with caplog.at_level(logging.DEBUG):
        run(scenario())
    assert any(r.levelno >= logging.WARNING for r in caplog.records)
    # Neither the signing secret nor the signed headers are ever logged.
    logged = "\n".join(caplog.text.splitlines())
    assert SECRET.decode() not in logged
    assert "v0=" not in logged


def test_a_long_key_hashed_in_the_silence_menu_is_found_by_its_buttons() -> None:
    long_key = ",".join(f"label{i}=value{i}" for i in range(40))  # over 150, under 1900
    buttons = incident_buttons(long_key)
    menu = next(e for e in buttons["elements"] if e["action_id"] == SILENCE)
    hashed = next(o["value"] for o in menu["options"] if o["value"].endswith("|4h"))
    assert hashed == f"{hashed_key(long_key)}|4h"

    async def scenario() -> None:
        actions = RecordingActions(make_incident(key=long_key))
        async with threader(actions) as lumen:
            payload = block_actions(SILENCE, selected=hashed, message_blocks=[buttons])
            await lumen.click(payload)
            await lumen.handler.wait_idle()
        assert actions.calls == [("find", long_key), ("silence", 7, ACTOR, timedelta(hours=4))]

    run(scenario())


# --- the blocks -----------------------------------------------------------------------------------


def actions_block_problems(block: dict[str, Any]) -> list[str]:
    """Slack's limits on an actions block, written out independently of the module."""
    problems = []
    if len(block.get("block_id", "")) > 255:
        problems.append("block_id over 255")
    elements = block.get("elements", [])
    if not 0 < len(elements) <= 25:
        problems.append(f"{len(elements)} elements")
    for element in elements:
        if not 0 < len(element["action_id"]) <= 255:
            problems.append("action_id length")
        if element["type"] == "button":
            if not 0 < len(element["text"]["text"]) <= 75 or len(element["value"]) > 2000:
                problems.append("button text or value too long")
            if element.get("style") not in (None, "primary", "danger"):
                problems.append("button style")
        elif element["type"] == "static_select":
            if not 0 < len(element["options"]) <= 100:
                problems.append("options count")
            for option in element["options"]:
                if len(option["value"]) > 150 or len(option["text"]["text"]) > 75:
                    problems.append("option value or text too long")
        else:
            problems.append(f"unexpected element {element['type']}")
    return problems


def assert_update_fits(update: dict[str, Any]) -> None:
    ours = [b for b in update["blocks"] if b["type"] == "actions"]
    rest = {**update, "blocks": [b for b in update["blocks"] if b["type"] != "actions"]}
    assert block_kit_problems(rest) == []
    assert len(update["blocks"]) <= 50
    for block in ours:
        assert actions_block_problems(block) == []
    assert len(json.dumps(update)) < 64_000


def test_incident_buttons_carry_the_key_and_the_durations() -> None:
    block = incident_buttons(KEY)
    assert actions_block_problems(block) == []
    by_id = {e["action_id"]: e for e in block["elements"]}
    assert list(by_id) == [ACKNOWLEDGE, RESOLVE, SILENCE]
    assert by_id[ACKNOWLEDGE]["style"] == "primary"
    assert by_id[ACKNOWLEDGE]["value"] == by_id[RESOLVE]["value"] == KEY
    assert "confirm" in by_id[RESOLVE]
    options = by_id[SILENCE]["options"]
    assert [o["value"] for o in options] == [f"{KEY}|1h", f"{KEY}|4h", f"{KEY}|1d"]
    assert [o["text"]["text"] for o in options] == [
        "Silence 1 hour",
        "Silence 4 hours",
        "Silence 1 day",
    ]


@pytest.mark.parametrize("length", [149, 151, 1900, 1901, 20_000])
def test_incident_buttons_keep_the_limits_for_any_key(length: int) -> None:
    key = ("k=" + "é" * length)[:length]
    block = incident_buttons(key)
    assert actions_block_problems(block) == []
    values = [e["value"] for e in block["elements"] if e["type"] == "button"]
    options = [
        o["value"] for e in block["elements"] if e["type"] == "static_select" for o in e["options"]
    ]
    assert all(len(v) <= MAX_BUTTON_VALUE for v in values)
    assert all(len(v) <= MAX_OPTION_VALUE for v in options)
    # The key itself while it fits, else its hash; the handler finds the key again either way.
    assert values[0] == (key if length <= 1900 else hashed_key(key))
    for option in options:
        carried = option.rpartition("|")[0]
        assert key_from_message(carried, {"blocks": [block]}) in (key, hashed_key(key))
        if length <= 1900:
            assert key_from_message(carried, {"blocks": [block]}) == key


def incident_parent(key: str = KEY, title: str = "x") -> list[dict[str, Any]]:
    """A parent message's blocks as posted with interactivity on: the alert's, then buttons."""
    alert = dataclasses.replace(SEED, annotations={**SEED.annotations, "summary": title})
    posted = parent_message(alert, "C0123ABCD", thread_key=key, delivery_id="d")
    return [*posted["blocks"], incident_buttons(key)]


AT = datetime(2026, 12, 2, 12, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"state": "acknowledged", "acknowledged_by": ACTOR, "acknowledged_at": AT},
            "Acknowledged by alice (U0123ABCD) at 2026-12-02 12:03 UTC",
        ),
        (
            {
                "state": "resolved",
                "resolved_by": ACTOR,
                "resolved_at": AT,
                "resolved_while_firing": True,
            },
            "Resolved by alice (U0123ABCD) at 2026-12-02 12:03 UTC* (alerts still firing)",
        ),
        (
            {"state": "silenced", "silenced_by": ACTOR, "silenced_until": AT + timedelta(hours=4)},
            "Silenced by alice (U0123ABCD) until 2026-12-02 16:03 UTC",
        ),
        (
            {"state": "resolved", "resolved_by": SYSTEM_ACTOR, "resolved_at": AT},
            "every alert resolved",
        ),
        ({"state": "triggered"}, "nobody has acknowledged it yet"),
    ],
)
def test_the_state_line_names_who_acted(changes: dict[str, Any], expected: str) -> None:
    incident = make_incident(**changes)
    block = incident_state_block(incident)
    assert block["type"] == "context"
    assert expected in block["elements"][0]["text"]
    assert expected.replace("*", "") in incident_text(incident)


def test_an_actor_cannot_mention_the_channel() -> None:
    incident = make_incident(
        state="acknowledged", acknowledged_by="<!channel> (U1)", acknowledged_at=AT
    )
    text = incident_state_block(incident)["elements"][0]["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_the_parent_update_replaces_our_blocks_and_keeps_the_alerts() -> None:
    parent = incident_parent()
    acked = make_incident(
        state="acknowledged", acknowledged_by=ACTOR, acknowledged_at=AT, version=2
    )
    update = incident_parent_update(parent, acked, "C0123ABCD", "1764690000.000100")
    assert_update_fits(update)
    assert update["channel"] == "C0123ABCD" and update["ts"] == "1764690000.000100"
    assert "attachments" not in update  # Slack keeps the parent's colour bar and details
    assert update["blocks"][0] == parent[0]  # the header
    assert [b["type"] for b in update["blocks"]] == ["header", "context", "actions"]
    ids = [e["action_id"] for e in update["blocks"][-1]["elements"]]
    assert ids == [RESOLVE, SILENCE]  # acknowledged already
    assert "Acknowledged by alice" in update["text"]

    silenced = make_incident(state="silenced", silenced_by=ACTOR, silenced_until=AT, version=3)
    again = incident_parent_update(update["blocks"], silenced, "C0123ABCD", "1764690000.000100")
    assert [b["type"] for b in again["blocks"]] == ["header", "context", "actions"]
    assert [e["action_id"] for e in again["blocks"][-1]["elements"]] == [
        ACKNOWLEDGE,
        RESOLVE,
        END_SILENCE,
    ]
    assert again["blocks"][-1]["block_id"] != update["blocks"][-1]["block_id"]

    resolved = make_incident(state="resolved", resolved_by=ACTOR, resolved_at=AT, version=4)
    final = incident_parent_update(again["blocks"], resolved, "C0123ABCD", "1764690000.000100")
    assert [b["type"] for b in final["blocks"]] == ["header", "context"]  # no buttons once resolved
    assert "Resolved by alice" in final["text"]


def test_the_parent_update_keeps_the_limits_for_long_keys_titles_and_many_blocks() -> None:
    key = "service=" + "s" * 5000
    title = "\N{FIRE}" * 5000
    many = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"block {i}"}} for i in range(60)
    ]
    incident = make_incident(
        key=key, title=title, acknowledged_by="a" * 5000, state="acknowledged", acknowledged_at=AT
    )
    update = incident_parent_update(
        [*incident_parent(key, title), *many], incident, "C0123ABCD", "1.2"
    )
    assert_update_fits(update)
    assert update["blocks"][-1]["type"] == "actions"  # the buttons survive the cut
    assert update["blocks"][-2]["type"] == "context"
