"""The demo's Slack sink answers the threader's Web API calls as Slack does, and its page shows
what was posted as text, never as markup."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from lumen_alerting.demo.slack_sink import SlackSink, channel_id
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
