"""The demo's Slack sink answers the threader's Web API calls as Slack does, and its page shows
what was posted as text, never as markup."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from lumen_alerting.demo.slack_sink import RUNBOOKS_PATH, SinkMessage, SlackSink, channel_id
from lumen_alerting.threader.messages import parent_message
from lumen_alerting.threader.webhook import Alert
from tests.support.polling import free_port

AUTH = {"Authorization": "Bearer xoxb-demo"}


def exchange(calls: list[tuple[str, dict[str, Any], dict[str, str]]]) -> tuple[list[Any], str]:
    """Each (method, JSON body, headers) posted to a fresh sink in turn; the answers and the
    page after them."""

    async def run() -> tuple[list[Any], str]:
        sink = SlackSink(channels=["#ops"])
        url = await sink.start(free_port())
        try:
            async with httpx.AsyncClient(trust_env=False) as client:
                answers: list[Any] = []
                for method, body, headers in calls:
                    if method == "chat.update" and body.get("ts") == "<first>":
                        body = {**body, "ts": answers[0]["ts"]}
                    if method == "chat.postMessage" and body.get("thread_ts") == "<first>":
                        body = {**body, "thread_ts": answers[0]["ts"]}
                    answer = await client.post(f"{url}/api/{method}", json=body, headers=headers)
                    answers.append(answer.json())
                page = (await client.get(url + "/")).text
        finally:
            await sink.stop()
        return answers, page

    return asyncio.run(run())


def test_the_web_api_answers_as_slack_does() -> None:
    ops = channel_id("ops")
    answers, _ = exchange(
        [
            ("chat.postMessage", {"channel": "#ops", "text": "parent"}, AUTH),
            ("chat.postMessage", {"channel": "#ops", "text": "r", "thread_ts": "<first>"}, AUTH),
            ("chat.postMessage", {"channel": "#ops", "text": "r", "thread_ts": "1.000001"}, AUTH),
            ("chat.update", {"channel": ops, "ts": "<first>", "text": "now"}, AUTH),
            ("chat.update", {"channel": "#ops", "ts": "<first>", "text": "x"}, AUTH),
            ("chat.postMessage", {"channel": "#ops", "text": "no token"}, {}),
            ("conversations.list", {}, AUTH),
            ("chat.delete", {}, AUTH),
        ]
    )
    parent, reply, orphan, update, by_name, unauthenticated, listing, unknown = answers
    assert parent["ok"] and parent["channel"] == ops and reply["ok"]
    assert float(reply["ts"]) > float(parent["ts"])
    assert orphan == {"ok": False, "error": "thread_not_found"}
    assert update["ok"] and update["message"]["text"] == "now" and "edited" in update["message"]
    assert by_name == {"ok": False, "error": "channel_not_found"}  # chat.update takes ids only
    assert unauthenticated == {"ok": False, "error": "not_authed"}
    assert [c["name"] for c in listing["channels"]] == ["ops"]
    assert unknown["error"] == "unknown_method"


def test_the_page_shows_markup_as_text() -> None:
    nasty = "<script>alert(1)</script> &lt;img src=x&gt; <javascript:alert(1)|click>"
    _, page = exchange([("chat.postMessage", {"channel": "#ops", "text": nasty}, AUTH)])
    assert "<script>" not in page and "<img" not in page and 'href="javascript' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_message_gives_its_labels_and_runbook_link() -> None:
    """What the demo and its test read off a thread: the labels the threader lists as context
    and the "View Runbook" target, from the threader's own message layout."""
    alert = Alert(
        status="firing",
        labels={"alertname": "LumenSLOErrorBudgetBurn", "severity": "critical", "slo": "a<b",
                "tier": "page", "service": "gw"},
        annotations={"summary": "burning",
                     "runbook_url": "http://127.0.0.1:9/runbooks.html?a=1&b=2#x"},
        starts_at=datetime(2026, 1, 1, tzinfo=UTC),
        ends_at=None,
        generator_url="",
        fingerprint="0123456789abcdef",
    )  # fmt: skip
    message = parent_message(alert, "#ops", thread_key="k", delivery_id="d")

    async def post() -> SinkMessage:
        sink = SlackSink()
        url = await sink.start(free_port())
        try:
            async with httpx.AsyncClient(trust_env=False) as client:
                answer = await client.post(
                    f"{url}/api/chat.postMessage", json=message, headers=AUTH
                )
                assert answer.json()["ok"]
        finally:
            await sink.stop()
        return sink.threads()[0].parent

    posted = asyncio.run(post())
    # severity and service are fields, not context; the rest as given, unescaped.
    assert posted.labels == {"alertname": "LumenSLOErrorBudgetBurn", "slo": "a<b", "tier": "page"}
    assert posted.runbook_url == "http://127.0.0.1:9/runbooks.html?a=1&b=2#x"


def test_the_runbooks_page_keeps_only_the_anchors_as_markup(tmp_path: Path) -> None:
    runbooks = tmp_path / "runbooks.md"
    runbooks.write_text(
        '# Runbooks\n\nAnchors look like `<a id="<runbook id>"></a>`.\n\n'
        '### <a id="stage-fail"></a>LumenStageFailed\n\n<script>alert(1)</script>\n'
    )

    async def get(sink: SlackSink) -> tuple[int, str]:
        url = await sink.start(free_port())
        try:
            async with httpx.AsyncClient(trust_env=False) as client:
                answer = await client.get(url + RUNBOOKS_PATH)
        finally:
            await sink.stop()
        return answer.status_code, answer.text

    status, page = asyncio.run(get(SlackSink(runbooks=runbooks, runbooks_extra='<a id="own"></a>')))
    assert status == 200
    assert re.findall(r'<a id="([^"]*)"></a>', page) == ["stage-fail", "own"]
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert asyncio.run(get(SlackSink()))[0] == 404
    assert asyncio.run(get(SlackSink(runbooks=tmp_path / "missing.md")))[0] == 404
