"""A local Slack-compatible sink for the demo: the Slack Web API methods the threader calls, and
a web page showing what Slack would show.

``POST /api/<method>`` answers ``auth.test``, ``chat.postMessage``, ``chat.update``,
``conversations.history``, ``conversations.replies`` and ``conversations.list`` the way Slack
does (https://api.slack.com/methods): HTTP 200 with ``{"ok": true, ...}`` and the message's
``channel`` id and ``ts``, or ``{"ok": false, "error": ...}`` (``not_authed``,
``channel_not_found``, ``thread_not_found``, ``message_not_found``, ``no_text``,
``invalid_json``, ``unknown_method``). Arguments come as JSON (the write methods) or as form
fields (the read methods), the token as ``Authorization: Bearer``. Every ``#name`` exists: a
channel is created by its first message (or named at start, so ``conversations.list`` knows it
before); its id is derived from the name, so it is the same on every run.

``GET /`` is the page: each channel, each thread's parent (as it reads now, with an "edited"
mark once updated and a "resolved" badge once the threader turned it into its resolved form)
and its replies in order. ``GET /state.json`` is the same as JSON. Given a ``runbooks`` file
(the repository's ``docs/runbooks.md``), ``GET /runbooks.html`` shows it as plain text with its
``<a id="…"></a>`` anchors kept, followed by ``runbooks_extra`` (the sections of a team's own
alerts, as that file says to add them), so the demo policy's runbookBaseURL can point there and
the "View Runbook" links of the threads open at their section.

Not Slack: no rate limits, no Block Kit validation, no cursors (every answer is one page), no
scopes. The tests' stricter double is ``tests/support/slack_api.py``.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp.web

from ..threader.messages import LABEL_SEPARATOR, RESOLVED_STYLE
from .loopback import LoopbackServer

# The threader's resolved form of a message starts so (threader/messages.py).
RESOLVED_PREFIX: Final = f"{RESOLVED_STYLE.emoji} RESOLVED"
_LINK = re.compile(r"<([^<>|]+)\|([^<>]+)>")
_BOLD = re.compile(r"\*([^*\n]+)\*")
_ALERTNAME = re.compile(r"alertname=([A-Za-z_:][A-Za-z0-9_:]*)")
_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_RUNBOOK_LINK = re.compile(r"<(https?://[^<>|]+)\|View Runbook>")
# An anchor line of docs/runbooks.md as html.escape writes it: made a real anchor again.
_ESCAPED_ANCHOR = re.compile(r"&lt;a id=&quot;([A-Za-z0-9_.:-]+)&quot;&gt;&lt;/a&gt;")
RUNBOOKS_PATH: Final = "/runbooks.html"
BOT_USER: Final = "U0LUMENBOT"
REFRESH_SECONDS: Final = 2

JsonObject = dict[str, Any]


@dataclass
class MessageVersion:
    """One state of a message: as posted, then after each ``chat.update``."""

    text: str
    blocks: list[Any]
    attachments: list[Any]
    at: float


@dataclass
class SinkMessage:
    """A message in a channel; ``thread_ts`` is set on replies only."""

    channel: str  # the id
    ts: str
    thread_ts: str | None
    versions: list[MessageVersion]
    metadata: JsonObject | None = None
    replies: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.versions[-1].text

    @property
    def edited(self) -> bool:
        return len(self.versions) > 1

    @property
    def resolved(self) -> bool:
        """Whether the message reads as resolved now (the threader's ✅ RESOLVED form)."""
        return self.text.startswith(RESOLVED_PREFIX)

    @property
    def alertname(self) -> str | None:
        """The alert this message is about, from the label context the threader writes."""
        found = _ALERTNAME.search(json.dumps(self.versions[-1].attachments))
        return found.group(1) if found else None

    @property
    def labels(self) -> dict[str, str]:
        """The alert's labels the threader lists as context (``name=value``, all but the ones
        shown as fields: severity, service, environment, cluster, instance)."""
        found = {}
        for attachment in self.versions[-1].attachments:
            for block in attachment.get("blocks", []) if isinstance(attachment, dict) else []:
                if not isinstance(block, dict) or block.get("type") != "context":
                    continue
                for element in block.get("elements", []):
                    text = element.get("text", "") if isinstance(element, dict) else ""
                    for pair in text.split(LABEL_SEPARATOR):
                        label = _LABEL.fullmatch(pair.strip())
                        if label:
                            found[label.group(1)] = _unescape(label.group(2))
        return found

    @property
    def runbook_url(self) -> str | None:
        """The target of the message's "View Runbook" link, if it has one."""
        found = _RUNBOOK_LINK.search(json.dumps(self.versions[-1].attachments))
        return found.group(1).replace("&amp;", "&") if found else None

    @property
    def color(self) -> str | None:
        for attachment in self.versions[-1].attachments:
            if isinstance(attachment, dict) and isinstance(attachment.get("color"), str):
                return str(attachment["color"])
        return None


@dataclass(frozen=True)
class Thread:
    """A parent message with its replies in the order they were posted."""

    channel: str  # "#name"
    parent: SinkMessage
    replies: tuple[SinkMessage, ...]


class SlackError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def channel_id(name: str) -> str:
    """The stable id of channel ``#name`` (Slack ids are an upper-case C and letters/digits)."""
    return "C" + hashlib.sha256(name.encode()).hexdigest()[:10].upper()


class SlackSink(LoopbackServer):
    """The sink's state and its aiohttp application. ``channels``: ``#names`` that exist before
    anything is posted to them; ``runbooks``: the markdown file served at ``/runbooks.html``.
    Everything runs on one event loop: no locks."""

    def __init__(
        self, channels: Iterable[str] = (), runbooks: Path | None = None, runbooks_extra: str = ""
    ) -> None:
        super().__init__()
        self.runbooks = runbooks
        self.runbooks_extra = runbooks_extra
        self._names: dict[str, str] = {}  # id -> name without '#'
        self._messages: dict[tuple[str, str], SinkMessage] = {}
        self._last_ts = 0
        self.calls: list[str] = []  # the methods called, in order
        for name in channels:
            self._channel(name)
        self._methods: dict[str, Callable[[JsonObject], JsonObject]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.list": self._list,
        }

    # --- serving -----------------------------------------------------------------------------

    def application(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/state.json", self._state)
        app.router.add_get(RUNBOOKS_PATH, self._runbooks)
        app.router.add_route("*", "/api/{method}", self._api)
        return app

    # --- what it holds -----------------------------------------------------------------------

    def threads(self, channel: str | None = None) -> list[Thread]:
        """Every thread (a parent and its replies), oldest first; only ``#channel``'s if given."""
        out = []
        for message in self._messages.values():
            if message.thread_ts is not None:
                continue
            name = "#" + self._names[message.channel]
            if channel is not None and name != channel:
                continue
            replies = tuple(self._messages[(message.channel, ts)] for ts in message.replies)
            out.append(Thread(name, message, replies))
        return out

    def channels(self) -> list[str]:
        return sorted("#" + name for name in self._names.values())

    def state(self) -> JsonObject:
        """Channels and threads as plain data (``/state.json``)."""
        return {
            "channels": [
                {
                    "name": name,
                    "id": channel_id(name),
                    "threads": [_thread_state(thread) for thread in self.threads(name)],
                }
                for name in self.channels()
            ]
        }

    # --- the Web API -------------------------------------------------------------------------

    async def _api(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        method = request.match_info["method"]
        self.calls.append(method)
        try:
            if not request.headers.get("Authorization", "").startswith("Bearer "):
                raise SlackError("not_authed")
            handler = self._methods.get(method)
            if handler is None:
                return _answer({"ok": False, "error": "unknown_method", "req_method": method})
            answer = handler(await _arguments(request))
        except SlackError as error:
            return _answer({"ok": False, "error": error.error})
        return _answer({"ok": True, **answer})

    def _auth_test(self, args: JsonObject) -> JsonObject:
        return {"url": "http://127.0.0.1/", "team": "Lumen demo", "user": "lumen", "team_id":
                "T0LUMEN", "user_id": BOT_USER, "bot_id": "B0LUMEN"}  # fmt: skip

    def _post_message(self, args: JsonObject) -> JsonObject:
        channel = self._channel_arg(args, names=True)
        version = _version(args, None, time.time())
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        parent = None
        if thread_ts is not None:
            parent = self._messages.get((channel, thread_ts))
            if parent is None or parent.thread_ts is not None:
                raise SlackError("thread_not_found")
        ts = self._next_ts()
        metadata = _json_arg(args, "metadata")
        message = SinkMessage(channel, ts, thread_ts, [version], metadata)
        self._messages[(channel, ts)] = message
        if parent is not None:
            parent.replies.append(ts)
        return {"channel": channel, "ts": ts, "message": self._shown(message, metadata=True)}

    def _update(self, args: JsonObject) -> JsonObject:
        channel = self._channel_arg(args, names=False)
        message = self._messages.get((channel, str(args.get("ts") or "")))
        if message is None:
            raise SlackError("message_not_found")
        message.versions.append(_version(args, message.versions[-1], time.time()))
        metadata = _json_arg(args, "metadata")
        if metadata is not None:
            message.metadata = metadata
        return {
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": self._shown(message, metadata=True),
        }

    def _history(self, args: JsonObject) -> JsonObject:
        channel = self._channel_arg(args, names=False)
        oldest = float(args.get("oldest") or 0)
        messages = [
            m
            for m in reversed(self._messages.values())
            if m.channel == channel and m.thread_ts is None and float(m.ts) > oldest
        ]
        return self._listing(messages, args)

    def _replies(self, args: JsonObject) -> JsonObject:
        channel = self._channel_arg(args, names=False)
        parent = self._messages.get((channel, str(args.get("ts") or "")))
        if parent is None or parent.thread_ts is not None:
            raise SlackError("thread_not_found")
        oldest = float(args.get("oldest") or 0)
        replies = [self._messages[(channel, ts)] for ts in parent.replies]
        return self._listing([parent, *(m for m in replies if float(m.ts) > oldest)], args)

    def _list(self, args: JsonObject) -> JsonObject:
        channels = [
            {"id": cid, "name": name, "is_channel": True, "is_private": False,
             "is_archived": False, "is_member": True}
            for cid, name in sorted(self._names.items())
        ]  # fmt: skip
        return {"channels": channels, "response_metadata": {"next_cursor": ""}}

    def _listing(self, messages: list[SinkMessage], args: JsonObject) -> JsonObject:
        metadata = str(args.get("include_all_metadata", "")).lower() in ("true", "1")
        return {
            "messages": [self._shown(m, metadata=metadata) for m in messages],
            "has_more": False,
            "response_metadata": {"next_cursor": ""},
        }

    def _shown(self, message: SinkMessage, *, metadata: bool) -> JsonObject:
        """A message as Slack's API shows it (the fields the threader reads, and a few more)."""
        version = message.versions[-1]
        out: JsonObject = {
            "type": "message",
            "user": BOT_USER,
            "text": version.text,
            "ts": message.ts,
            "blocks": version.blocks,
            "attachments": version.attachments,
        }
        if message.thread_ts is not None:
            out["thread_ts"] = message.thread_ts
        elif message.replies:
            out.update(thread_ts=message.ts, reply_count=len(message.replies))
        if message.edited:
            out["edited"] = {"user": BOT_USER, "ts": f"{version.at:.6f}"}
        if metadata and message.metadata is not None:
            out["metadata"] = message.metadata
        return out

    def _channel_arg(self, args: JsonObject, *, names: bool) -> str:
        """The id of the ``channel`` argument; ``#name`` only where Slack takes names
        (``chat.postMessage``), and it creates the channel."""
        value = str(args.get("channel") or "")
        if names and value.startswith("#") and len(value) > 1:
            return self._channel(value)
        if value in self._names:
            return value
        raise SlackError("channel_not_found")

    def _channel(self, name: str) -> str:
        cid = channel_id(name.removeprefix("#"))
        self._names.setdefault(cid, name.removeprefix("#"))
        return cid

    def _next_ts(self) -> str:
        # Unique and increasing, as Slack's are: "<seconds>.<6-digit micros>".
        micros = max(time.time_ns() // 1000, self._last_ts + 1)
        self._last_ts = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # --- the page ----------------------------------------------------------------------------

    async def _state(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return _answer(self.state())

    async def _runbooks(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        if self.runbooks is None:
            raise aiohttp.web.HTTPNotFound(text="no runbooks file given to the sink")
        try:
            text = self.runbooks.read_text(encoding="utf-8")
        except OSError as problem:
            raise aiohttp.web.HTTPNotFound(text=f"{self.runbooks}: {problem.strerror}") from None
        return aiohttp.web.Response(
            text=runbooks_page(self.runbooks.name, text + self.runbooks_extra),
            content_type="text/html",
            charset="utf-8",
        )

    async def _page(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text=self.page(), content_type="text/html", charset="utf-8")

    def page(self) -> str:
        """The channels and threads as one HTML page, refreshed every few seconds."""
        sections = []
        for name in self.channels():
            threads = self.threads(name)
            items = "".join(_thread_html(thread) for thread in threads) or (
                '<p class="empty">No messages yet.</p>'
            )
            sections.append(
                f'<section class="channel" id="{html.escape(name[1:])}">'
                f"<h2>{html.escape(name)} <small>{channel_id(name[1:])}, "
                f"{len(threads)} thread{'s' if len(threads) != 1 else ''}</small></h2>"
                f"{items}</section>"
            )
        body = "".join(sections) or '<p class="empty">No channels yet.</p>'
        return PAGE.format(refresh=REFRESH_SECONDS, body=body)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<title>Lumen demo: Slack sink</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #1d1c1d; }}
h1 {{ font-size: 1.3em; }} h2 {{ font-size: 1.1em; margin-top: 1.5em; }}
small {{ color: #616061; font-weight: normal; }}
.thread {{ border-left: 5px solid #9e9e9e; padding: .3em .8em; margin: .8em 0;
  background: #f8f8f8; }}
.parent .text {{ font-weight: bold; }}
.badge {{ font-size: .8em; padding: .1em .4em; border-radius: .3em; margin-left: .5em; }}
.resolved-badge {{ background: #2eb67d; color: white; }}
.firing-badge {{ background: #e01e5a; color: white; }}
.edited {{ color: #616061; font-size: .8em; margin-left: .5em; }}
.replies {{ margin: .4em 0 0 1.5em; padding: 0; list-style: none; }}
.reply {{ border-left: 3px solid #ddd; padding-left: .6em; margin: .3em 0; }}
.details {{ color: #454245; font-size: .85em; white-space: pre-wrap; margin: .2em 0; }}
time {{ color: #616061; font-size: .8em; margin-right: .5em; }}
.empty {{ color: #616061; }}
</style></head>
<body><h1>Lumen demo: what the threader posted</h1>{body}</body></html>
"""


RUNBOOKS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ margin: 1.5em; }} pre {{ white-space: pre-wrap; font-size: .95em; }}
a[id]:target {{ outline: 3px solid #ecb22e; }}</style></head>
<body><pre>{body}</pre></body></html>
"""


def runbooks_page(title: str, markdown: str) -> str:
    """The runbooks file as plain text in one page; only its ``<a id="…"></a>`` anchors are
    markup (everything else is escaped), so ``#<runbook id>`` scrolls to its section."""
    body = _ESCAPED_ANCHOR.sub(r'<a id="\1"></a>', html.escape(markdown))
    return RUNBOOKS_PAGE.format(title=html.escape(title), body=body)


def _thread_html(thread: Thread) -> str:
    parent = thread.parent
    state = (
        '<span class="badge resolved-badge">resolved</span>'
        if parent.resolved
        else '<span class="badge firing-badge">firing</span>'
    )
    color = parent.color or "#9e9e9e"
    replies = "".join(
        f'<li class="reply"><time>{_clock(r.ts)}</time>{_text_html(r.text)}'
        f'<div class="details">{_details_html(r)}</div></li>'
        for r in thread.replies
    )
    classes = "thread resolved" if parent.resolved else "thread"
    return (
        f'<article class="{classes}" style="border-left-color: {html.escape(color)}" '
        f'data-ts="{parent.ts}">'
        f'<div class="parent"><time>{_clock(parent.ts)}</time>'
        f'<span class="text">{_text_html(parent.text)}</span>{state}'
        f"{'<span class=edited>(edited)</span>' if parent.edited else ''}"
        f'<div class="details">{_details_html(parent)}</div></div>'
        f'<ul class="replies">{replies}</ul></article>'
    )


def _details_html(message: SinkMessage) -> str:
    """The attachment's section fields and context lines as plain text."""
    lines: list[str] = []
    for attachment in message.versions[-1].attachments:
        for block in attachment.get("blocks", []) if isinstance(attachment, dict) else []:
            if not isinstance(block, dict):
                continue
            texts = [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
            parts = [t["text"] for t in texts if isinstance(t, dict) and "text" in t]
            if parts:
                lines.append(" | ".join(p.replace("\n", " ") for p in parts))
    return "\n".join(_text_html(line) for line in lines)


def _text_html(text: str) -> str:
    """Slack mrkdwn as HTML, the two forms the threader writes: ``<url|label>`` links and
    ``*bold*``; everything else is text (mrkdwn escapes exactly &, < and >)."""
    out = []
    position = 0
    for link in _LINK.finditer(text):
        out.append(_plain_html(text[position : link.start()]))
        url, label = link.group(1), link.group(2)
        if url.startswith(("http://", "https://")):
            out.append(f'<a href="{html.escape(url)}">{_plain_html(label)}</a>')
        else:
            out.append(_plain_html(link.group(0)))
        position = link.end()
    out.append(_plain_html(text[position:]))
    return "".join(out)


def _unescape(text: str) -> str:
    """mrkdwn text as plain text (mrkdwn escapes exactly &, < and >)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _plain_html(text: str) -> str:
    plain = _unescape(text)
    return _BOLD.sub(r"<b>\1</b>", html.escape(plain))


def _clock(ts: str) -> str:
    return datetime.fromtimestamp(float(ts), UTC).strftime("%H:%M:%S")


def _thread_state(thread: Thread) -> JsonObject:
    def message(m: SinkMessage) -> JsonObject:
        return {"ts": m.ts, "text": m.text, "alertname": m.alertname, "edited": m.edited,
                "resolved": m.resolved}  # fmt: skip

    return {**message(thread.parent), "replies": [message(r) for r in thread.replies]}


def _version(args: JsonObject, previous: MessageVersion | None, now: float) -> MessageVersion:
    """The message ``args`` describe; fields not given keep ``previous``'s (as chat.update)."""
    text = args.get("text")
    blocks = _json_arg(args, "blocks")
    attachments = _json_arg(args, "attachments")
    version = MessageVersion(
        text=str(text) if text is not None else (previous.text if previous else ""),
        blocks=blocks if isinstance(blocks, list) else (previous.blocks if previous else []),
        attachments=attachments
        if isinstance(attachments, list)
        else (previous.attachments if previous else []),
        at=now,
    )
    if not (version.text or version.blocks or version.attachments):
        raise SlackError("no_text")
    return version


def _json_arg(args: JsonObject, name: str) -> Any:
    """A JSON argument: given as JSON, or as a JSON string in a form field."""
    value = args.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise SlackError(f"invalid_{name}") from None
    return value


async def _arguments(request: aiohttp.web.Request) -> JsonObject:
    args: JsonObject = dict(request.query)
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise SlackError("invalid_json") from None
        if not isinstance(body, dict):
            raise SlackError("invalid_json")
        args.update(body)
    elif request.method == "POST":
        args.update(dict(await request.post()))
    return args


def _answer(body: JsonObject) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        text=json.dumps(body, ensure_ascii=False), content_type="application/json", charset="utf-8"
    )
