"""
Tests of the Slack Web API double (tests/support/slack_api.py), over real HTTP with httpx.

Each test proves one behaviour of Slack's Web API that the threader's Slack client relies on
(shapes, auth, errors, Block Kit limits, rate limits) or one injected failure, so that threader
tests against the double mean something.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import re
import time
from typing import Any

import httpx
import pytest

from tests.support.polling import eventually
from tests.support.slack_api import Call, ManualClock, SlackDouble

pytestmark = pytest.mark.timeout(60)

TOKEN = "xoxb-test-token"
JSON_UTF8 = "application/json; charset=utf-8"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CH = "C-ALERTS"
TS_RE = re.compile(r"^\d{10}\.\d{6}$")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def send(
    slack: SlackDouble,
    method: str,
    body: dict[str, Any] | None = None,
    *,
    auth: bool = True,
    form: bool = False,
    timeout: float | httpx.Timeout = 10.0,
) -> httpx.Response:
    """POST a Slack call: JSON with a bearer token, or form-encoded (token as a header too)."""
    headers = dict(AUTH) if auth else {}
    if form:
        return httpx.post(
            f"{slack.url}/{method}", data=body or {}, headers=headers, timeout=timeout
        )
    headers["Content-Type"] = JSON_UTF8
    return httpx.post(
        f"{slack.url}/{method}", content=json.dumps(body or {}), headers=headers, timeout=timeout
    )


def api(slack: SlackDouble, method: str, **body: Any) -> dict[str, Any]:
    """A JSON call answered with HTTP 200 as Slack does for API errors too; its body."""
    response = send(slack, method, body)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == JSON_UTF8
    answer = response.json()
    assert isinstance(answer, dict)
    return answer


def post(slack: SlackDouble, channel: str = CH, **body: Any) -> dict[str, Any]:
    body.setdefault("text", "hello")
    return api(slack, "chat.postMessage", channel=channel, **body)


def posted(slack: SlackDouble, channel: str = CH, **body: Any) -> str:
    answer = post(slack, channel, **body)
    assert answer["ok"] is True, answer
    return str(answer["ts"])


# --------------------------------------------------------------------------------------------
# Protocol & authentication
# --------------------------------------------------------------------------------------------


def test_auth_test_with_bearer_json(slack: SlackDouble) -> None:
    assert slack.url.startswith("http://127.0.0.1:") and slack.url.endswith("/api")
    answer = api(slack, "auth.test")
    assert answer["ok"] is True
    for key in ("url", "team", "user", "team_id", "user_id", "bot_id"):
        assert isinstance(answer[key], str) and answer[key], key
    # No body at all (as many clients call auth.test) works too.
    response = httpx.post(f"{slack.url}/auth.test", headers=AUTH)
    assert response.json()["ok"] is True


def test_form_encoded_token_field_and_header(slack: SlackDouble) -> None:
    response = send(slack, "auth.test", {"token": TOKEN}, auth=False, form=True)
    assert response.headers["Content-Type"] == JSON_UTF8
    assert response.json()["ok"] is True
    assert send(slack, "auth.test", {"x": "1"}, form=True).json()["ok"] is True
    wrong = send(slack, "auth.test", {"token": "xoxb-other"}, auth=False, form=True)
    assert wrong.json() == {"ok": False, "error": "invalid_auth"}


def test_not_authed_and_invalid_auth(slack: SlackDouble) -> None:
    missing = send(slack, "chat.postMessage", {"channel": CH, "text": "x"}, auth=False)
    assert missing.status_code == 200
    assert missing.headers["Content-Type"] == JSON_UTF8
    assert missing.json() == {"ok": False, "error": "not_authed"}
    # A token inside a JSON body is ignored (Slack wants the header for JSON) ...
    in_body = send(slack, "auth.test", {"token": TOKEN}, auth=False)
    assert in_body.json()["error"] == "not_authed"
    # ... and so is one in the query string.
    query = httpx.post(f"{slack.url}/auth.test", params={"token": TOKEN})
    assert query.json()["error"] == "not_authed"
    wrong = httpx.post(f"{slack.url}/auth.test", headers={"Authorization": "Bearer xoxb-nope"})
    assert wrong.status_code == 200
    assert wrong.json() == {"ok": False, "error": "invalid_auth"}
    basic = httpx.post(f"{slack.url}/auth.test", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.json()["error"] == "not_authed"
    assert slack.messages() == []


def test_unknown_method_and_malformed_bodies(slack: SlackDouble) -> None:
    unknown = api(slack, "chat.postMessages")
    assert unknown == {"ok": False, "error": "unknown_method", "req_method": "chat.postMessages"}
    headers = {**AUTH, "Content-Type": JSON_UTF8}
    bad = httpx.post(f"{slack.url}/chat.postMessage", content=b'{"channel": ', headers=headers)
    assert (bad.status_code, bad.headers["Content-Type"]) == (200, JSON_UTF8)
    assert bad.json() == {"ok": False, "error": "invalid_json"}
    array = httpx.post(f"{slack.url}/chat.postMessage", content=b"[1]", headers=headers)
    assert array.json()["error"] == "json_not_object"
    plain = httpx.post(
        f"{slack.url}/chat.postMessage",
        content=b"channel=C1",
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert plain.json()["error"] == "invalid_post_type"
    assert slack.messages() == []


def test_json_without_charset_works_with_a_warning(slack: SlackDouble) -> None:
    answer = httpx.post(
        f"{slack.url}/chat.postMessage", json={"channel": CH, "text": "x"}, headers=AUTH
    ).json()
    assert answer["ok"] is True
    assert answer["warning"] == "missing_charset"
    assert answer["response_metadata"]["warnings"] == ["missing_charset"]
    assert "warning" not in post(slack)


# --------------------------------------------------------------------------------------------
# chat.postMessage, threads, channels
# --------------------------------------------------------------------------------------------


def test_post_message_returns_increasing_ts_and_stores_it(slack: SlackDouble) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*firing*"}}]
    metadata = {"event_type": "lumen_alert", "event_payload": {"delivery_id": "d1"}}
    answer = post(slack, text="fallback", blocks=blocks, metadata=metadata, unfurl_links=False)
    assert answer["ok"] is True and answer["channel"] == CH
    first = answer["ts"]
    assert TS_RE.match(first)
    message = answer["message"]
    assert message["type"] == "message" and message["ts"] == first
    assert message["text"] == "fallback"
    assert message["bot_id"] and message["user"]
    assert message["blocks"][0]["text"] == blocks[0]["text"]
    assert message["blocks"][0]["block_id"]  # Slack adds one
    assert message["metadata"] == metadata
    stamps = [first] + [posted(slack, text=f"m{i}") for i in range(5)]
    assert len(set(stamps)) == 6
    assert [float(s) for s in stamps] == sorted(float(s) for s in stamps)
    assert all(TS_RE.match(s) for s in stamps)

    stored = slack.messages(CH)
    assert [m.ts for m in stored] == stamps
    assert stored[0].text == "fallback" and stored[0].blocks == blocks
    assert stored[0].metadata == metadata and stored[0].thread_ts is None
    assert stored[0].unfurl_links is False and stored[0].updates == []
    assert stored[0].attachments is None
    # Accessors give copies.
    assert stored[0].blocks is not None
    stored[0].blocks.append({"type": "divider"})
    assert slack.messages(CH)[0].blocks == blocks


def test_thread_replies_and_reply_broadcast(slack: SlackDouble) -> None:
    parent = posted(slack, text="parent")
    first = post(slack, text="r1", thread_ts=parent)
    assert first["ok"] is True
    assert first["message"]["thread_ts"] == parent
    assert first["message"]["parent_user_id"]
    broadcast = posted(slack, text="r2", thread_ts=parent, reply_broadcast=True)
    assert [m.text for m in slack.parents(CH)] == ["parent"]
    replies = slack.replies(CH, parent)
    assert [(m.text, m.thread_ts) for m in replies] == [("r1", parent), ("r2", parent)]
    assert replies[1].reply_broadcast is True
    history = api(slack, "conversations.history", channel=CH)["messages"]
    assert [m["ts"] for m in history] == [broadcast, parent]
    assert history[0]["subtype"] == "thread_broadcast"
    assert history[1]["reply_count"] == 2 and history[1]["latest_reply"] == broadcast
    assert history[1]["thread_ts"] == parent


def test_strict_threads_reject_replies_without_their_parent(slack: SlackDouble) -> None:
    parent = posted(slack, text="parent")
    reply = posted(slack, text="reply", thread_ts=parent)
    assert post(slack, thread_ts="1234567890.123456") == {"ok": False, "error": "thread_not_found"}
    # A parent of another channel, or a reply, is not a thread parent here.
    assert post(slack, "C-OTHER", thread_ts=parent)["error"] == "thread_not_found"
    assert post(slack, thread_ts=reply)["error"] == "thread_not_found"
    assert len(slack.messages()) == 2


def test_lax_threads_store_orphan_replies() -> None:
    with SlackDouble(strict_threads=False, rate_limit=False) as slack:
        answer = post(slack, thread_ts="1234567890.123456", text="orphan")
        assert answer["ok"] is True
        assert slack.parents(CH) == []
        assert [m.text for m in slack.replies(CH, "1234567890.123456")] == ["orphan"]
        assert api(slack, "conversations.history", channel=CH)["messages"] == []


def test_channels_names_ids_and_missing() -> None:
    with SlackDouble(missing_channels=("#gone", "C-GONE"), rate_limit=False) as slack:
        answer = post(slack, "#alerts")
        cid = slack.channel_id("#alerts")
        assert cid.startswith("C") and cid != "#alerts"
        assert answer["channel"] == cid
        assert [m.ts for m in slack.messages("#alerts")] == [answer["ts"]]
        assert slack.messages(cid) == slack.messages("#alerts")
        # chat.update and conversations.* want the ID, as on Slack.
        by_name = api(slack, "conversations.history", channel="#alerts")
        assert by_name == {"ok": False, "error": "channel_not_found"}
        assert api(slack, "conversations.history", channel=cid)["ok"] is True
        update = api(slack, "chat.update", channel="#alerts", ts=answer["ts"], text="x")
        assert update["error"] == "channel_not_found"
        assert api(slack, "chat.update", channel=cid, ts=answer["ts"], text="x")["ok"] is True
        for channel in ("#gone", "C-GONE", "alerts", ""):
            assert post(slack, channel) == {"ok": False, "error": "channel_not_found"}, channel
        assert api(slack, "chat.postMessage", text="no channel")["error"] == "channel_not_found"
        assert post(slack, "C-ANYTHING")["ok"] is True

    with SlackDouble(channels=("C-ALERTS", "#ops"), any_channel=False) as closed:
        assert post(closed, "C-ALERTS")["ok"] is True
        assert post(closed, "#ops")["ok"] is True
        assert post(closed, "C-ELSEWHERE")["error"] == "channel_not_found"
        assert post(closed, "#elsewhere")["error"] == "channel_not_found"


def test_ts_stay_unique_and_increasing_when_the_clock_stalls(
    slack: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The double's own time module, by name: slack_api does not re-export it.
    monkeypatch.setattr("tests.support.slack_api.time.time_ns", lambda: 1_700_000_000_123_456_000)
    stamps = [posted(slack, text=str(i)) for i in range(3)]
    assert stamps == ["1700000000.123456", "1700000000.123457", "1700000000.123458"]


def test_concurrent_posts_get_unique_ts(slack: SlackDouble) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        stamps = list(pool.map(lambda i: posted(slack, f"C{i % 5}", text=str(i)), range(30)))
    assert len(set(stamps)) == 30
    assert len(slack.messages()) == 30
    assert sorted(m.ts for m in slack.messages()) == sorted(stamps)


# --------------------------------------------------------------------------------------------
# chat.update
# --------------------------------------------------------------------------------------------


def test_chat_update_keeps_versions(slack: SlackDouble) -> None:
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": "FIRING"}}]
    ts = posted(slack, text="firing", blocks=blocks)
    answer = api(slack, "chat.update", channel=CH, ts=ts, text="resolved")
    assert answer["ok"] is True
    assert (answer["channel"], answer["ts"], answer["text"]) == (CH, ts, "resolved")
    assert answer["message"]["text"] == "resolved"
    assert answer["message"]["edited"]["ts"]
    assert answer["message"]["blocks"][0]["text"]["text"] == "FIRING"  # kept: not given
    new_blocks = [{"type": "header", "text": {"type": "plain_text", "text": "RESOLVED"}}]
    assert api(slack, "chat.update", channel=CH, ts=ts, blocks=new_blocks)["ok"] is True
    cleared = api(slack, "chat.update", channel=CH, ts=ts, text="plain", blocks=[])
    assert "blocks" not in cleared["message"]

    (message,) = slack.messages(CH)
    assert (message.text, message.blocks) == ("firing", blocks)  # as posted
    assert [(v.text, v.blocks) for v in message.updates] == [
        ("resolved", blocks),
        ("resolved", new_blocks),
        ("plain", None),
    ]
    assert message.latest.text == "plain"
    assert [v.at for v in message.updates] == sorted(v.at for v in message.updates)
    assert all(v.edited_ts for v in message.updates)

    assert api(slack, "chat.update", channel=CH, ts="1111111111.000001", text="x") == {
        "ok": False,
        "error": "message_not_found",
    }
    assert api(slack, "chat.update", channel=CH, text="x")["error"] == "message_not_found"
    assert api(slack, "chat.update", channel=CH, ts=ts)["error"] == "no_text"
    too_long = [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}]
    assert api(slack, "chat.update", channel=CH, ts=ts, blocks=too_long)["error"] == (
        "invalid_blocks"
    )
    assert len(slack.messages(CH)[0].updates) == 3


def test_chat_update_of_a_reply(slack: SlackDouble) -> None:
    parent = posted(slack, text="parent")
    reply = posted(slack, text="reply", thread_ts=parent)
    assert api(slack, "chat.update", channel=CH, ts=reply, text="edited")["ok"] is True
    assert slack.replies(CH, parent)[0].latest.text == "edited"
    assert slack.parents(CH)[0].updates == []


# --------------------------------------------------------------------------------------------
# conversations.history / conversations.replies
# --------------------------------------------------------------------------------------------


def test_history_newest_first_with_paging_and_metadata(slack: SlackDouble) -> None:
    metadata = {"event_type": "lumen_alert", "event_payload": {"delivery_id": "d2"}}
    stamps = [posted(slack, text=f"p{i}", metadata=metadata if i == 2 else None) for i in range(5)]
    posted(slack, text="reply", thread_ts=stamps[1])
    posted(slack, "C-OTHER", text="elsewhere")

    full = api(slack, "conversations.history", channel=CH)
    assert [m["ts"] for m in full["messages"]] == stamps[::-1]
    assert full["has_more"] is False
    assert full["response_metadata"]["next_cursor"] == ""
    assert all("metadata" not in m for m in full["messages"])

    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = api(slack, "conversations.history", channel=CH, limit=2, cursor=cursor)
        assert page["ok"] is True
        seen += [m["ts"] for m in page["messages"]]
        pages += 1
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] is bool(cursor)
        if not page["has_more"]:
            break
    assert (seen, pages) == (stamps[::-1], 3)

    with_meta = api(slack, "conversations.history", channel=CH, include_all_metadata=True)
    by_ts = {m["ts"]: m for m in with_meta["messages"]}
    assert by_ts[stamps[2]]["metadata"] == metadata
    assert "metadata" not in by_ts[stamps[3]]

    def window(**args: Any) -> list[str]:
        answer = api(slack, "conversations.history", channel=CH, **args)
        return [m["ts"] for m in answer["messages"]]

    assert window(oldest=stamps[1]) == stamps[:1:-1]
    assert window(oldest=stamps[1], inclusive=True) == stamps[:0:-1]
    assert window(latest=stamps[3]) == stamps[2::-1]
    assert window(latest=stamps[3], oldest=stamps[1], inclusive="true") == stamps[3:0:-1]
    bad_cursor = api(slack, "conversations.history", channel=CH, cursor="nonsense")
    assert bad_cursor == {"ok": False, "error": "invalid_cursor"}
    assert api(slack, "conversations.history", channel=CH, oldest="x")["error"] == (
        "invalid_ts_oldest"
    )
    assert api(slack, "conversations.history", channel="C-EMPTY")["messages"] == []


def test_history_as_form_fields_like_the_threader_reads_it(slack: SlackDouble) -> None:
    metadata = {"event_type": "lumen_alert", "event_payload": {"delivery_id": "d3"}}
    ts = posted(slack, metadata=metadata)
    fields = {"channel": CH, "oldest": "0.000000", "include_all_metadata": "true", "limit": "200"}
    answer = send(slack, "conversations.history", fields, form=True).json()
    assert answer["ok"] is True
    assert [(m["ts"], m["metadata"]) for m in answer["messages"]] == [(ts, metadata)]
    cursor = base64.b64encode(f"next_ts:{ts}".encode()).decode()
    again = send(slack, "conversations.history", {**fields, "cursor": cursor}, form=True).json()
    assert [m["ts"] for m in again["messages"]] == [ts]


def test_conversations_replies(slack: SlackDouble) -> None:
    metadata = {"event_type": "lumen_alert", "event_payload": {"delivery_id": "r2"}}
    parent = posted(slack, text="parent")
    r1 = posted(slack, text="r1", thread_ts=parent)
    r2 = posted(slack, text="r2", thread_ts=parent, metadata=metadata)
    posted(slack, text="another parent")

    answer = api(slack, "conversations.replies", channel=CH, ts=parent)
    assert answer["ok"] is True and answer["has_more"] is False
    messages = answer["messages"]
    assert [m["ts"] for m in messages] == [parent, r1, r2]
    assert messages[0]["reply_count"] == 2
    assert all(m["thread_ts"] == parent for m in messages)
    assert "metadata" not in messages[2]
    # The ts of a reply names its thread, as on Slack.
    via_reply = api(slack, "conversations.replies", channel=CH, ts=r1)
    assert [m["ts"] for m in via_reply["messages"]] == [parent, r1, r2]
    meta = api(slack, "conversations.replies", channel=CH, ts=parent, include_all_metadata=True)
    assert meta["messages"][2]["metadata"] == metadata
    newer = api(slack, "conversations.replies", channel=CH, ts=parent, oldest=r1)
    assert [m["ts"] for m in newer["messages"]] == [parent, r2]  # the parent always comes
    first = api(slack, "conversations.replies", channel=CH, ts=parent, limit=2)
    assert [m["ts"] for m in first["messages"]] == [parent, r1] and first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    rest = api(slack, "conversations.replies", channel=CH, ts=parent, limit=2, cursor=cursor)
    assert [m["ts"] for m in rest["messages"]] == [r2]
    unknown = api(slack, "conversations.replies", channel=CH, ts="1234567890.000001")
    assert unknown == {"ok": False, "error": "thread_not_found"}
    assert api(slack, "conversations.replies", channel="C-OTHER", ts=parent)["error"] == (
        "thread_not_found"
    )


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _text(text: str, kind: str = "mrkdwn") -> dict[str, str]:
    return {"type": kind, "text": text}


def _section(**fields: Any) -> dict[str, Any]:
    return {"type": "section", **fields}


DIVIDER = {"type": "divider"}

# (name, blocks at the limit: accepted, blocks over it: invalid_blocks, json-pointer named)
BLOCK_LIMITS: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], str]] = [
    ("blocks>50", [DIVIDER] * 50, [DIVIDER] * 51, "/blocks"),
    (
        "header>150",
        [{"type": "header", "text": _text("h" * 150, "plain_text")}],
        [{"type": "header", "text": _text("h" * 151, "plain_text")}],
        "/blocks/0/text/text",
    ),
    (
        "header mrkdwn",
        [{"type": "header", "text": _text("h", "plain_text")}],
        [{"type": "header", "text": _text("h")}],
        "/blocks/0/text/type",
    ),
    (
        "section>3000",
        [_section(text=_text("s" * 3000))],
        [_section(text=_text("s" * 3001))],
        "/blocks/0/text/text",
    ),
    (
        "fields>10",
        [_section(fields=[_text("f")] * 10)],
        [_section(fields=[_text("f")] * 11)],
        "/blocks/0/fields",
    ),
    (
        "field>2000",
        [_section(fields=[_text("f" * 2000)])],
        [_section(fields=[_text("f"), _text("f" * 2001)])],
        "/blocks/0/fields/1/text",
    ),
    (
        "context>10",
        [{"type": "context", "elements": [_text("c")] * 10}],
        [{"type": "context", "elements": [_text("c")] * 11}],
        "/blocks/0/elements",
    ),
    (
        "text without type",
        [_section(text=_text("t"))],
        [_section(text={"text": "t"})],
        "/blocks/0/text/type",
    ),
    (
        "text without text",
        [{"type": "context", "elements": [_text("t", "plain_text")]}],
        [{"type": "context", "elements": [{"type": "plain_text"}]}],
        "/blocks/0/elements/0/text",
    ),
    ("section empty", [_section(text=_text("t"))], [_section()], "/blocks/0"),
    ("block without type", [DIVIDER], [{"text": _text("t")}], "/blocks/0/type"),
    ("unknown type", [DIVIDER], [{"type": "sectoin", "text": _text("t")}], "/blocks/0/type"),
    (
        "duplicate block_id",
        [{**DIVIDER, "block_id": "a"}, {**DIVIDER, "block_id": "b"}],
        [{**DIVIDER, "block_id": "a"}, {**DIVIDER, "block_id": "a"}],
        "/blocks/1/block_id",
    ),
]


@pytest.mark.parametrize(
    ("accepted", "rejected", "pointer"),
    [case[1:] for case in BLOCK_LIMITS],
    ids=[case[0] for case in BLOCK_LIMITS],
)
def test_block_kit_limits(
    slack: SlackDouble, accepted: list[dict[str, Any]], rejected: list[dict[str, Any]], pointer: str
) -> None:
    assert post(slack, blocks=accepted)["ok"] is True
    answer = post(slack, blocks=rejected)
    assert answer["ok"] is False and answer["error"] == "invalid_blocks"
    assert any(e.endswith(f"[json-pointer:{pointer}]") for e in answer["errors"]), answer
    assert answer["response_metadata"]["messages"][0].startswith("[ERROR] ")
    assert len(slack.messages()) == 1


def test_text_attachments_and_metadata_validation(slack: SlackDouble) -> None:
    assert post(slack, text="") == {"ok": False, "error": "no_text"}
    assert api(slack, "chat.postMessage", channel=CH)["error"] == "no_text"
    assert post(slack, text="", blocks=[], attachments=[])["error"] == "no_text"
    assert post(slack, text="x" * 40_000)["ok"] is True
    assert post(slack, text="x" * 40_001) == {"ok": False, "error": "msg_too_long"}
    assert post(slack, text="", attachments=[{"text": "a"}] * 100)["ok"] is True
    too_many = post(slack, attachments=[{"text": "a"}] * 101)
    assert too_many == {"ok": False, "error": "too_many_attachments"}
    assert post(slack, attachments={"text": "a"})["error"] == "invalid_attachments"
    assert post(slack, blocks={"type": "divider"})["error"] == "invalid_blocks_format"
    bad: dict[str, Any] | str
    for bad in ({"event_type": "x"}, {"event_payload": {}}, "nope"):
        assert post(slack, metadata=bad)["error"] == "invalid_metadata_format", bad
    assert post(slack, text="blocks only", blocks=[DIVIDER])["ok"] is True
    assert [len(m.text) for m in slack.messages()] == [40_000, 0, 11]


def test_form_encoded_post_takes_json_strings(slack: SlackDouble) -> None:
    blocks = [_section(text=_text("*hi*"))]
    metadata = {"event_type": "lumen_alert", "event_payload": {"n": 1}}
    fields = {
        "channel": CH,
        "text": "hi",
        "blocks": json.dumps(blocks),
        "metadata": json.dumps(metadata),
        "unfurl_links": "false",
    }
    answer = send(slack, "chat.postMessage", fields, form=True).json()
    assert answer["ok"] is True
    (stored,) = slack.messages()
    assert (stored.blocks, stored.metadata, stored.unfurl_links) == (blocks, metadata, False)
    broken = send(slack, "chat.postMessage", {**fields, "blocks": "[{"}, form=True).json()
    assert broken == {"ok": False, "error": "invalid_blocks_format"}
    thread = {"channel": CH, "text": "r", "thread_ts": answer["ts"], "reply_broadcast": "true"}
    assert send(slack, "chat.postMessage", thread, form=True).json()["ok"] is True
    assert slack.replies(CH, answer["ts"])[0].reply_broadcast is True


# --------------------------------------------------------------------------------------------
# Rate limits
# --------------------------------------------------------------------------------------------


def test_token_bucket_per_channel() -> None:
    clock = ManualClock()  # the burst must not refill while a slow machine sends it
    with SlackDouble(clock=clock) as slack:
        stamps = [posted(slack, text=str(i)) for i in range(3)]  # the burst
        limited = send(slack, "chat.postMessage", {"channel": CH, "text": "4th"})
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "1"
        assert limited.headers["Content-Type"] == JSON_UTF8
        assert limited.json() == {"ok": False, "error": "ratelimited"}
        # chat.update shares the channel's bucket; other channels have their own.
        update = send(slack, "chat.update", {"channel": CH, "ts": stamps[0], "text": "u"})
        assert update.status_code == 429
        assert posted(slack, "C-OTHER")
        assert [m.text for m in slack.messages(CH)] == ["0", "1", "2"]
        assert slack.messages(CH)[0].updates == []
        assert (slack.rejected_429(CH), slack.rejected_429("C-OTHER"), slack.rejected_429()) == (
            2,
            0,
            2,
        )
        clock.advance(0.6)
        early = send(slack, "chat.postMessage", {"channel": CH, "text": "0.6 s later"})
        assert (early.status_code, early.headers["Retry-After"]) == (429, "1")
        clock.advance(0.4)
        assert post(slack, text="after 1s")["ok"] is True  # one token came back ...
        again = send(slack, "chat.postMessage", {"channel": CH, "text": "too soon"})
        assert again.status_code == 429  # ... only one
        assert slack.rejected_429(CH) == 4
        assert slack.max_rate(CH) == 3
        assert len(slack.messages(CH)) == 4


def test_retry_after_follows_the_refill_rate() -> None:
    with SlackDouble(rate_per_channel=0.25, burst=1) as slack:
        assert post(slack)["ok"] is True
        limited = send(slack, "chat.postMessage", {"channel": CH, "text": "x"})
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "4")
    with SlackDouble(rate_limit=False) as free:
        assert all(post(free, text=str(i))["ok"] for i in range(10))
        assert free.rejected_429() == 0


def test_rate_limit_all() -> None:
    clock = ManualClock()
    with SlackDouble(rate_limit=False, clock=clock) as slack:
        ts = posted(slack)
        slack.rate_limit_all(0.5, retry_after=2)
        for method, body in (
            ("chat.postMessage", {"channel": CH, "text": "x"}),
            ("chat.update", {"channel": CH, "ts": ts, "text": "y"}),
        ):
            response = send(slack, method, body)
            assert response.status_code == 429, method
            assert response.headers["Retry-After"] == "2"
            assert response.json() == {"ok": False, "error": "ratelimited"}
        assert api(slack, "conversations.history", channel=CH)["ok"] is True
        assert api(slack, "auth.test")["ok"] is True
        assert slack.rejected_429(CH) == 2
        clock.advance(0.5)
        assert post(slack)["ok"] is True
        assert len(slack.messages()) == 2 and slack.messages()[0].updates == []


# --------------------------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------------------------


def test_fail_next(slack: SlackDouble) -> None:
    slack.fail_next("chat.postMessage", "internal_error", times=2, http_status=500)
    slack.fail_next("chat.update", "is_archived")
    slack.fail_next("conversations.history", "ratelimited", http_status=429)
    for _ in range(2):
        response = send(slack, "chat.postMessage", {"channel": CH, "text": "x"})
        assert response.status_code == 500
        assert response.headers["Content-Type"] == JSON_UTF8
        assert response.json() == {"ok": False, "error": "internal_error"}
    assert api(slack, "auth.test")["ok"] is True  # other methods unaffected
    ts = posted(slack)  # the third call goes through
    assert api(slack, "chat.update", channel=CH, ts=ts, text="u") == {
        "ok": False,
        "error": "is_archived",
    }
    assert api(slack, "chat.update", channel=CH, ts=ts, text="u")["ok"] is True
    history = send(slack, "conversations.history", {"channel": CH})
    assert (history.status_code, history.headers["Retry-After"]) == (429, "1")
    assert len(slack.messages()) == 1
    failed = [c for c in slack.calls() if not c.ok]
    assert [(c.method, c.status, c.error, c.channel) for c in failed] == [
        ("chat.postMessage", 500, "internal_error", CH),
        ("chat.postMessage", 500, "internal_error", CH),
        ("chat.update", 200, "is_archived", CH),
        ("conversations.history", 429, "ratelimited", CH),
    ]
    with pytest.raises(ValueError, match=r"chat\.delete"):
        slack.fail_next("chat.delete", "internal_error")


def test_go_down_closes_connections() -> None:
    clock = ManualClock()
    with SlackDouble(rate_limit=False, clock=clock) as slack:
        _go_down_closes_connections(slack, clock)


def _go_down_closes_connections(slack: SlackDouble, clock: ManualClock) -> None:
    slack.go_down(0.4)
    with pytest.raises(httpx.RemoteProtocolError):
        send(slack, "chat.postMessage", {"channel": CH, "text": "lost"})
    with pytest.raises(httpx.RemoteProtocolError):
        send(slack, "auth.test")
    assert slack.messages() == []
    clock.advance(0.4)
    assert post(slack)["ok"] is True
    calls = slack.calls()
    assert [(c.method, c.status, c.ok) for c in calls[:2]] == [
        ("chat.postMessage", 0, False),
        ("auth.test", 0, False),
    ]


def test_go_down_with_html_503() -> None:
    clock = ManualClock()
    with SlackDouble(rate_limit=False, clock=clock) as slack:
        _go_down_with_html_503(slack, clock)


def _go_down_with_html_503(slack: SlackDouble, clock: ManualClock) -> None:
    slack.go_down(0.4, mode="html503")
    response = send(slack, "chat.postMessage", {"channel": CH, "text": "lost"})
    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert slack.messages() == []
    clock.advance(0.4)
    assert post(slack)["ok"] is True
    assert slack.calls()[0].status == 503
    with pytest.raises(ValueError):
        slack.go_down(1, mode="sideways")  # type: ignore[arg-type]


def test_drop_response_next_stores_but_never_answers(slack: SlackDouble) -> None:
    slack.drop_response_next("chat.postMessage")
    with pytest.raises(httpx.RemoteProtocolError):
        send(slack, "chat.postMessage", {"channel": CH, "text": "did it land?"})
    assert [m.text for m in slack.messages()] == ["did it land?"]
    (call,) = slack.calls()
    assert (call.status, call.ok, call.ts) == (0, True, slack.messages()[0].ts)
    assert post(slack)["ok"] is True


# --------------------------------------------------------------------------------------------
# Checkers, latency, internals
# --------------------------------------------------------------------------------------------


def test_max_rate_counts_accepted_chat_calls_in_a_sliding_window() -> None:
    clock = ManualClock()
    with SlackDouble(rate_limit=False, clock=clock) as slack:
        _max_rate_counts(slack, clock)


def _max_rate_counts(slack: SlackDouble, clock: ManualClock) -> None:
    a = posted(slack)
    posted(slack)
    posted(slack, "C-OTHER")
    slack.fail_next("chat.postMessage", "internal_error")
    assert post(slack)["ok"] is False  # not accepted: not counted
    assert post(slack, text="")["ok"] is False
    clock.advance(0.6)
    posted(slack)
    assert api(slack, "chat.update", channel=CH, ts=a, text="u")["ok"] is True
    clock.advance(0.6)
    posted(slack)
    assert slack.max_rate(CH) == 4  # two at 0 s + two at 0.6 s
    assert slack.max_rate(CH, window=0.3) == 2
    assert slack.max_rate(CH, window=10) == 5
    assert slack.max_rate("C-OTHER") == 1
    assert slack.max_rate("C-NOWHERE") == 0


def test_max_rate_edges() -> None:
    double = SlackDouble()
    at = [0.0, 0.5, 0.999, 1.0, 1.5, 3.0]
    double._calls = [Call("chat.postMessage", 200, True, None, CH, t) for t in at]
    assert double.max_rate(CH) == 3  # 0.0-0.999; 1.0 is a new window (0.5, 0.999, 1.0)
    assert double.max_rate(CH, window=0.5) == 2
    assert double.max_rate(CH, window=0.001) == 1


def test_latency_delays_answers_but_not_processing() -> None:
    with SlackDouble(latency=0.3, rate_limit=False) as slack:
        started = time.monotonic()
        assert api(slack, "auth.test")["ok"] is True
        assert time.monotonic() - started >= 0.3
        # A latency far beyond the client's read timeout, so a slow machine cannot blur them.
        slack.set_latency(3.0)
        with pytest.raises(httpx.ReadTimeout):
            send(
                slack,
                "chat.postMessage",
                {"channel": CH, "text": "slow"},
                timeout=httpx.Timeout(10, read=0.5),
            )
        # Stored once the latency has passed, though nobody waits for the answer (as Slack).
        eventually(lambda: [m.text for m in slack.messages()] == ["slow"], 15, "the slow post")
        slack.set_latency(0)
        started = time.monotonic()
        assert api(slack, "auth.test")["ok"] is True
        assert time.monotonic() - started < 2.0, "no longer delayed by the 3 s latency"


def test_internal_errors_fail_loudly() -> None:
    double = SlackDouble()

    def boom(args: dict[str, Any], now: float) -> Any:
        raise RuntimeError("bug in the double")

    with pytest.raises(AssertionError, match="bug in the double"), double:
        double._auth_test = boom  # type: ignore[method-assign]
        response = send(double, "auth.test")
        assert response.status_code == 500
        assert response.json() == {"ok": False, "error": "fatal_error"}


# --------------------------------------------------------------------------------------------
# conversations.list and scopes
# --------------------------------------------------------------------------------------------


def list_page(slack: SlackDouble, **query: str) -> dict[str, Any]:
    """conversations.list is a read method: form-encoded, as Slack's clients send it."""
    response = send(slack, "conversations.list", dict(query), form=True)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_conversations_list_pages_through_the_named_channels() -> None:
    names = [f"#team-{n:02d}" for n in range(7)]
    with SlackDouble(channels=names, private_channels=["#secret"]) as slack:
        seen: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(10):
            answer = list_page(slack, limit="3", cursor=cursor)
            assert answer["ok"] is True and len(answer["channels"]) <= 3
            seen += answer["channels"]
            cursor = answer["response_metadata"]["next_cursor"]
            if not cursor:
                break
            assert base64.b64decode(cursor).decode().startswith("team:")
        # Only public channels by default (types=public_channel), each once, with Slack's fields.
        assert sorted(c["name"] for c in seen) == [n[1:] for n in names]
        assert {c["id"] for c in seen} == {slack.channel_id(n) for n in names}
        for channel in seen:
            assert channel["is_channel"] is True and channel["is_private"] is False
            assert channel["is_archived"] is False and channel["name_normalized"] == channel["name"]
        both = list_page(slack, types="public_channel,private_channel", limit="999")
        private = [c for c in both["channels"] if c["is_private"]]
        assert [(c["name"], c["is_group"]) for c in private] == [("secret", True)]
        assert both["response_metadata"]["next_cursor"] == ""
        assert list_page(slack, cursor="not-a-cursor")["error"] == "invalid_cursor"
        assert list_page(slack, types="public_channel,nonsense")["error"] == "invalid_types"


def test_conversations_list_leaves_out_archived_channels_when_asked() -> None:
    with SlackDouble(channels=["#live"], archived_channels=["#old"]) as slack:
        every = {c["name"]: c["is_archived"] for c in list_page(slack)["channels"]}
        assert every == {"live": False, "old": True}
        live = list_page(slack, exclude_archived="true")["channels"]
        assert [c["name"] for c in live] == ["live"]


def test_conversations_list_shows_channels_posted_to_by_name(slack: SlackDouble) -> None:
    assert post(slack, "#fresh")["ok"] is True
    [channel] = [c for c in list_page(slack)["channels"] if c["name"] == "fresh"]
    assert channel["id"] == slack.channel_id("#fresh")


def test_missing_scope_names_what_is_needed_and_provided() -> None:
    with SlackDouble(channels=["#ops"], scopes=["chat:write", "channels:read"]) as slack:
        response = send(
            slack, "conversations.list", {"types": "public_channel,private_channel"}, form=True
        )
        assert response.headers["X-OAuth-Scopes"] == "chat:write,channels:read"
        assert response.json() == {
            "ok": False,
            "error": "missing_scope",
            "needed": "groups:read",
            "provided": "chat:write,channels:read",
        }
        assert list_page(slack)["ok"] is True, "public channels need channels:read only"
        slack.set_scopes(["chat:write"])
        answer = list_page(slack)
        assert (answer["error"], answer["needed"]) == ("missing_scope", "channels:read")


def test_latency_of_one_method_only() -> None:
    with SlackDouble(rate_limit=False) as slack:
        slack.set_latency(5, "chat.postMessage")
        started = time.monotonic()
        assert list_page(slack)["ok"] is True
        assert time.monotonic() - started < 2
        with pytest.raises(httpx.ReadTimeout):
            send(slack, "chat.postMessage", {"channel": CH, "text": "slow"}, timeout=0.2)
        slack.set_latency(0)
        assert post(slack)["ok"] is True
