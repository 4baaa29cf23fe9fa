"""
A local double of the Slack Web API for tests of the threader.

Slack cannot be reached where these tests run, so the threader's Slack client is pointed at
:class:`SlackDouble`: an aiohttp server on ``http://127.0.0.1:<random port>/api`` in a
background thread that answers ``auth.test``, ``chat.postMessage``, ``chat.update``,
``conversations.history``, ``conversations.list`` and ``conversations.replies`` the way Slack
does — the same
response shapes, HTTP 200 with ``{"ok": false, "error": ...}`` for API errors, HTTP 429 with
``Retry-After`` for rate limits — and can be told to fail::

    with SlackDouble() as slack:
        httpx.post(f"{slack.url}/chat.postMessage", json={"channel": "C-ALERTS", "text": "hi"},
                   headers={"Authorization": "Bearer xoxb-test-token"})
        assert slack.parents("C-ALERTS")[0].text == "hi"

Modelled on Slack (https://api.slack.com/methods, /docs/rate-limits, Block Kit reference):

- Arguments as a JSON body (token only in ``Authorization: Bearer``; a ``token`` field in a
  JSON body is ignored, as Slack does) or form-encoded (token in the header or a ``token``
  field; ``blocks``/``attachments``/``metadata`` as JSON strings). Query-string arguments are
  read too, but never a query-string token. JSON without ``charset`` works but gets the
  ``missing_charset`` warning (``warning`` + ``response_metadata.warnings``).
- Errors: ``not_authed``, ``invalid_auth``, ``unknown_method`` (with ``req_method``),
  ``invalid_json``, ``json_not_object``, ``invalid_post_type``, ``channel_not_found``,
  ``no_text``, ``msg_too_long`` (text > 40,000 chars; Slack may truncate instead),
  ``too_many_attachments`` (> 100), ``invalid_attachments``, ``invalid_blocks`` (with Slack's
  ``errors`` list and ``response_metadata.messages``, each naming a json-pointer),
  ``invalid_blocks_format``, ``invalid_metadata_format``, ``thread_not_found``,
  ``message_not_found``, ``invalid_cursor``, ``invalid_ts_oldest``/``invalid_ts_latest``,
  ``invalid_arguments``.
- Channels: ``#name`` or a conversation ID (starting with C, G or D). ``chat.postMessage``
  takes either and answers with the ID (``#name`` maps to a stable derived ID, see
  :meth:`SlackDouble.channel_id`); ``chat.update`` and ``conversations.*`` take IDs only and
  answer ``channel_not_found`` for a name, as Slack does. With ``any_channel=True`` (default)
  every such channel exists except ``missing_channels``; otherwise only ``channels``.
- Messages look like a bot's messages (``type``, ``user``, ``bot_id``, ``app_id``, ``team``,
  ``text``, ``ts``, ``blocks`` with a ``block_id`` added where missing, ``attachments``);
  parents with replies carry ``thread_ts``/``reply_count``/``latest_reply``/…, replies carry
  ``thread_ts``/``parent_user_id``, updated messages ``edited``. ``metadata`` is in the
  ``chat.postMessage`` answer and, with ``include_all_metadata``, in history and replies.
- ``ts`` values are unique, strictly increasing ``"<seconds>.<6-digit micros>"`` strings.
- ``chat.update`` keeps fields it is not given (``blocks``/``attachments``; ``[]`` removes them).
- History holds parents (and ``reply_broadcast`` replies), newest first, with ``oldest``/
  ``latest``/``inclusive``/``limit`` (default 100, max 999) and Slack-style cursors
  (base64 ``next_ts:<ts>``); ``conversations.replies`` gives parent + replies, oldest first.
- ``conversations.list``: the channels named ``#name`` in ``channels`` (plus those a
  ``#name`` was posted to), ``private_channels`` (``is_private``, only with
  ``types=private_channel``) and ``archived_channels`` (``is_archived``, left out with
  ``exclude_archived``), ordered by id, with ``limit`` (default 100, under 1000) and cursors
  (base64 ``team:<id>``; ``invalid_cursor``), ``invalid_types``. Scopes: the token has
  ``scopes`` (default: chat:write, channels:read, groups:read, channels:history,
  groups:history); ``conversations.list`` without the read scope of a requested type answers
  ``missing_scope`` with ``needed`` and ``provided``, as Slack does. Every answer carries
  ``X-OAuth-Scopes``. (Scopes are only enforced on ``conversations.list``.)
- Processing does not stop when a client gives up: a request that times out on the client
  (e.g. because of ``latency``) still posts its message, as on Slack.

Deliberate tightenings / omissions:

- ``strict_threads=True`` (default): a ``thread_ts`` must be the ts of a top-level message in
  that channel, else ``thread_not_found``. Slack is laxer (it may accept an unknown or a reply's
  ts); the threader must never reply before its parent exists, and tests want to see it.
  With ``strict_threads=False`` such replies are stored as orphans (not in history).
- Rate limits only on ``chat.postMessage``/``chat.update`` per channel (no workspace-wide
  limit, no tier limits on ``conversations.*``/``auth.test``).
- Not modelled: other methods, scopes other than ``conversations.list``'s,
  ``not_in_channel``/``is_archived`` (inject them with :meth:`SlackDouble.fail_next`),
  ``msg_blocks_too_long`` (cumulative size), full Block Kit element validation (accessories
  and interactive elements are only checked for a ``type``), ``mrkdwn``/``parse``/
  ``link_names`` rendering, user mentions, ``emoji``/``verbatim`` defaults Slack adds to text
  objects, message deletion, files.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import dataclasses
import decimal
import hashlib
import json
import math
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

import aiohttp.web

from tests.support.background_loop import BackgroundLoop

__all__ = ["Call", "MessageVersion", "SlackDouble", "StoredMessage"]

JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"
CHAT_METHODS: Final = frozenset({"chat.postMessage", "chat.update"})
METHODS: Final = frozenset(
    {
        "auth.test",
        *CHAT_METHODS,
        "conversations.history",
        "conversations.list",
        "conversations.replies",
    }
)
CONVERSATION_ID_PREFIXES: Final = ("C", "G", "D")

# Slack's documented limits.
MAX_TEXT: Final = 40_000
MAX_ATTACHMENTS: Final = 100
MAX_BLOCKS: Final = 50
MAX_BLOCK_ID: Final = 255
MAX_HEADER_TEXT: Final = 150
MAX_SECTION_TEXT: Final = 3000
MAX_SECTION_FIELDS: Final = 10
MAX_FIELD_TEXT: Final = 2000
MAX_CONTEXT_ELEMENTS: Final = 10
MAX_ACTIONS_ELEMENTS: Final = 25
MAX_MARKDOWN_TEXT: Final = 12_000
MAX_ALT_TEXT: Final = 2000
HISTORY_LIMIT: Final = (100, 999)  # (default, maximum)
REPLIES_LIMIT: Final = (1000, 1000)
LIST_LIMIT: Final = (100, 999)  # conversations.list: "an integer under 1000"
# conversations.list needs a read scope per conversation type it is asked for.
LIST_SCOPES: Final = {
    "public_channel": "channels:read",
    "private_channel": "groups:read",
    "im": "im:read",
    "mpim": "mpim:read",
}
ALL_SCOPES: Final = (
    "chat:write",
    "channels:read",
    "groups:read",
    "channels:history",
    "groups:history",
)

# The workspace and the bot the token belongs to.
TEAM: Final = {"url": "https://lumen-test.slack.com/", "team": "Lumen Test", "team_id": "T0LUMEN01"}
BOT: Final = {"user": "lumen-threader", "user_id": "U0LUMENBOT", "bot_id": "B0LUMENBOT"}
APP_ID: Final = "A0LUMENAPP"

EDGE_503_HTML: Final = (
    "<html>\n<head><title>503 Service Unavailable</title></head>\n<body>\n"
    "<center><h1>503 Service Unavailable</h1></center>\n<hr><center>envoy</center>\n"
    "</body>\n</html>\n"
)

OutageMode = Literal["close", "html503"]
ErrorFn = Callable[[str, str], None]


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MessageVersion:
    """One content version of a message; ``edited_ts`` is None for the posted version."""

    text: str
    blocks: list[dict[str, Any]] | None
    attachments: list[dict[str, Any]] | None
    metadata: dict[str, Any] | None
    at: float  # the double's clock (time.monotonic() by default) when accepted
    edited_ts: str | None = None


@dataclasses.dataclass(frozen=True)
class StoredMessage:
    """
    A message as accepted by the double.

    ``text``/``blocks``/``attachments``/``metadata`` are as *posted*; ``updates`` holds the
    later versions from ``chat.update`` (oldest first), ``latest`` the current content.
    ``thread_ts`` is the parent's ts for a reply and None for a top-level message.
    """

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    blocks: list[dict[str, Any]] | None
    attachments: list[dict[str, Any]] | None
    metadata: dict[str, Any] | None
    posted_at: float
    updates: list[MessageVersion]
    reply_broadcast: bool = False
    unfurl_links: bool | None = None

    @property
    def latest(self) -> MessageVersion:
        if self.updates:
            return self.updates[-1]
        return MessageVersion(
            self.text, self.blocks, self.attachments, self.metadata, self.posted_at
        )


@dataclasses.dataclass(frozen=True)
class Call:
    """
    One request the double received.

    ``status`` is the HTTP status the client got, 0 if the connection was closed without an
    answer. ``ok`` tells whether Slack processed the call successfully (True for a call whose
    answer was dropped by :meth:`SlackDouble.drop_response_next`). ``channel`` is the resolved
    channel ID when known, else the channel argument as given.
    """

    method: str
    status: int
    ok: bool
    error: str | None
    channel: str | None
    at: float  # the double's clock (time.monotonic() by default)
    ts: str | None = None


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Message:
    channel: str
    ts: str
    thread_ts: str | None
    versions: list[MessageVersion]
    reply_broadcast: bool
    unfurl_links: bool | None
    replies: list[str] = dataclasses.field(default_factory=list)

    def freeze(self) -> StoredMessage:
        first = self.versions[0]
        return StoredMessage(
            channel=self.channel,
            ts=self.ts,
            thread_ts=self.thread_ts,
            text=first.text,
            blocks=copy.deepcopy(first.blocks),
            attachments=copy.deepcopy(first.attachments),
            metadata=copy.deepcopy(first.metadata),
            posted_at=first.at,
            updates=copy.deepcopy(self.versions[1:]),
            reply_broadcast=self.reply_broadcast,
            unfurl_links=self.unfurl_links,
        )


@dataclasses.dataclass
class _Request:
    args: dict[str, Any]
    bearer: str | None
    form_token: str | None
    error: str | None
    warnings: list[str]


@dataclasses.dataclass
class _Answer:
    body: dict[str, Any]
    status: int = 200
    channel: str | None = None
    ts: str | None = None
    retry_after: int | None = None


@dataclasses.dataclass
class _Fault:
    error: str
    status: int
    retry_after: int | None


@dataclasses.dataclass
class _Bucket:
    tokens: float
    updated: float


class _Invalid(Exception):
    """An API error found while reading arguments: answered as ``{"ok": false, ...}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def _fail(error: str, **extra: Any) -> _Answer:
    return _Answer({"ok": False, "error": error, **extra})


def _bool_arg(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _json_arg(args: dict[str, Any], name: str, error: str) -> Any:
    """A JSON-valued argument: a JSON string (forms, or JSON bodies) or a JSON value."""
    value = args.get(name)
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise _Invalid(error) from None
    return value


def _ts_key(value: str) -> decimal.Decimal:
    number = decimal.Decimal(value)
    if not number.is_finite():
        raise decimal.InvalidOperation(value)
    return number


def _ts_arg(args: dict[str, Any], name: str, error: str) -> decimal.Decimal | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    try:
        return _ts_key(str(value))
    except decimal.InvalidOperation:
        raise _Invalid(error) from None


def _limit_arg(args: dict[str, Any], default: int, maximum: int) -> int:
    value = args.get("limit")
    if value is None or value == "":
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise _Invalid("invalid_arguments") from None
    return default if limit < 1 else min(limit, maximum)


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: Any) -> decimal.Decimal | None:
    if cursor is None or cursor == "":
        return None
    try:
        text = base64.b64decode(str(cursor), validate=True).decode()
        if not text.startswith("next_ts:"):
            raise ValueError(text)
        return _ts_key(text.removeprefix("next_ts:"))
    except (ValueError, binascii.Error, decimal.InvalidOperation):
        raise _Invalid("invalid_cursor") from None


def _block_id(ts: str, index: int) -> str:
    digest = base64.b64encode(hashlib.sha1(f"{ts}/{index}".encode()).digest()).decode()
    return "".join(c for c in digest if c.isalnum())[:4]


# ---- Block Kit validation --------------------------------------------------------------------


def _check_text_object(
    obj: Any, ptr: str, err: ErrorFn, *, max_len: int | None, plain_only: bool = False
) -> None:
    if not isinstance(obj, dict):
        err(ptr, "must be a text object")
        return
    kind = obj.get("type")
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if kind is None:
        err(f"{ptr}/type", "missing required field: type")
    elif kind not in allowed:
        err(f"{ptr}/type", f"must be one of {', '.join(allowed)}")
    text = obj.get("text")
    if not isinstance(text, str):
        err(f"{ptr}/text", "missing required field: text")
    elif not text:
        err(f"{ptr}/text", "must be more than 0 characters")
    elif max_len is not None and len(text) > max_len:
        err(f"{ptr}/text", f"must be less than {max_len + 1} characters")


def _check_list(block: dict[str, Any], key: str, ptr: str, err: ErrorFn, maximum: int) -> list[Any]:
    items = block.get(key)
    if not isinstance(items, list):
        err(f"{ptr}/{key}", f"missing required field: {key}")
        return []
    if not items:
        err(f"{ptr}/{key}", "must provide at least 1 item")
    elif len(items) > maximum:
        err(f"{ptr}/{key}", f"must provide no more than {maximum} items")
    return items


def _check_image(obj: dict[str, Any], ptr: str, err: ErrorFn) -> None:
    if not isinstance(obj.get("image_url"), str) and not isinstance(obj.get("slack_file"), dict):
        err(ptr, "missing required field: image_url")
    alt = obj.get("alt_text")
    if not isinstance(alt, str):
        err(f"{ptr}/alt_text", "missing required field: alt_text")
    elif len(alt) > MAX_ALT_TEXT:
        err(f"{ptr}/alt_text", f"must be less than {MAX_ALT_TEXT + 1} characters")


def _check_section(block: dict[str, Any], ptr: str, err: ErrorFn) -> None:
    if "text" not in block and "fields" not in block:
        err(ptr, "must provide either text or fields")
    if "text" in block:
        _check_text_object(block["text"], f"{ptr}/text", err, max_len=MAX_SECTION_TEXT)
    if "fields" in block:
        fields = _check_list(block, "fields", ptr, err, MAX_SECTION_FIELDS)
        for i, field in enumerate(fields):
            _check_text_object(field, f"{ptr}/fields/{i}", err, max_len=MAX_FIELD_TEXT)
    accessory = block.get("accessory")
    if accessory is not None and not (isinstance(accessory, dict) and "type" in accessory):
        err(f"{ptr}/accessory", "missing required field: type")


def _check_header(block: dict[str, Any], ptr: str, err: ErrorFn) -> None:
    if "text" not in block:
        err(f"{ptr}/text", "missing required field: text")
    else:
        _check_text_object(
            block["text"], f"{ptr}/text", err, max_len=MAX_HEADER_TEXT, plain_only=True
        )


def _check_context(block: dict[str, Any], ptr: str, err: ErrorFn) -> None:
    for i, element in enumerate(_check_list(block, "elements", ptr, err, MAX_CONTEXT_ELEMENTS)):
        element_ptr = f"{ptr}/elements/{i}"
        kind = element.get("type") if isinstance(element, dict) else None
        if kind == "image":
            _check_image(element, element_ptr, err)
        elif kind in ("plain_text", "mrkdwn") or not isinstance(element, dict) or kind is None:
            _check_text_object(element, element_ptr, err, max_len=None)
        else:
            err(f"{element_ptr}/type", "must be one of image, plain_text, mrkdwn")


def _check_actions(block: dict[str, Any], ptr: str, err: ErrorFn) -> None:
    for i, element in enumerate(_check_list(block, "elements", ptr, err, MAX_ACTIONS_ELEMENTS)):
        if not (isinstance(element, dict) and isinstance(element.get("type"), str)):
            err(f"{ptr}/elements/{i}/type", "missing required field: type")


def _check_image_block(block: dict[str, Any], ptr: str, err: ErrorFn) -> None:
    _check_image(block, ptr, err)
    if "title" in block:
        _check_text_object(
            block["title"], f"{ptr}/title", err, max_len=MAX_ALT_TEXT, plain_only=True
        )


def _check_markdown(block: dict[str, Any], ptr: str, err: ErrorFn) -> None:
    text = block.get("text")
    if not isinstance(text, str) or not text:
        err(f"{ptr}/text", "missing required field: text")
    elif len(text) > MAX_MARKDOWN_TEXT:
        err(f"{ptr}/text", f"must be less than {MAX_MARKDOWN_TEXT + 1} characters")


def _check_rich_text(block: dict[str, Any], ptr: str, err: ErrorFn) -> None:
    if not isinstance(block.get("elements"), list):
        err(f"{ptr}/elements", "missing required field: elements")


BLOCK_CHECKS: Final[dict[str, Callable[[dict[str, Any], str, ErrorFn], None]]] = {
    "section": _check_section,
    "header": _check_header,
    "context": _check_context,
    "divider": lambda block, ptr, err: None,
    "actions": _check_actions,
    "image": _check_image_block,
    "markdown": _check_markdown,
    "rich_text": _check_rich_text,
    # Valid in messages, accepted without checks:
    "file": lambda block, ptr, err: None,
    "video": lambda block, ptr, err: None,
    "table": lambda block, ptr, err: None,
}


def block_errors(blocks: list[Any]) -> list[str]:
    """Slack-style ``invalid_blocks`` messages (``"<reason> [json-pointer:/blocks/…]"``)."""
    errors: list[str] = []

    def err(ptr: str, reason: str) -> None:
        errors.append(f"{reason} [json-pointer:{ptr}]")

    if len(blocks) > MAX_BLOCKS:
        err("/blocks", f"must provide no more than {MAX_BLOCKS} items")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        ptr = f"/blocks/{i}"
        if not isinstance(block, dict):
            err(ptr, "must be an object")
            continue
        kind = block.get("type")
        check = BLOCK_CHECKS.get(kind) if isinstance(kind, str) else None
        if kind is None:
            err(f"{ptr}/type", "missing required field: type")
        elif check is None:
            err(f"{ptr}/type", f"unsupported block type: {kind}")
        else:
            check(block, ptr, err)
        if "block_id" in block:
            block_id = block["block_id"]
            if not isinstance(block_id, str) or not 0 < len(block_id) <= MAX_BLOCK_ID:
                err(f"{ptr}/block_id", f"must be 1 to {MAX_BLOCK_ID} characters")
            elif block_id in block_ids:
                err(f"{ptr}/block_id", "must be unique within the message")
            else:
                block_ids.add(block_id)
    return errors


async def _read_request(request: aiohttp.web.Request) -> _Request:
    args: dict[str, Any] = {k: v for k, v in request.query.items() if k != "token"}
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    bearer = (credentials.strip() or None) if scheme.lower() == "bearer" else None
    parsed = _Request(args, bearer, None, None, [])
    raw = await request.read()
    if not raw:
        return parsed
    if request.content_type == "application/json":
        if request.charset is None:
            parsed.warnings.append("missing_charset")
        try:
            body = json.loads(raw.decode(request.charset or "utf-8"))
        except (ValueError, LookupError):
            parsed.error = "invalid_json"
            return parsed
        if not isinstance(body, dict):
            parsed.error = "json_not_object"
            return parsed
        args.update({k: v for k, v in body.items() if k != "token"})
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key in form:
            value = form.getone(key)
            if isinstance(value, str):
                if key == "token":
                    parsed.form_token = value.strip() or None
                else:
                    args[key] = value
    else:
        parsed.error = "invalid_post_type"
    return parsed


# --------------------------------------------------------------------------------------------
# The double
# --------------------------------------------------------------------------------------------


class ManualClock:
    """A clock for :class:`SlackDouble` that moves only when told to (thread-safe enough: a
    float assignment)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SlackDouble(BackgroundLoop):
    """
    The Slack Web API on ``http://127.0.0.1:<random port>/api`` in a background thread.

    Use as a context manager (or ``start()``/``stop()``). All accessors and fault switches are
    thread-safe (one lock; the server's state changes only under it) and return copies; they
    keep working after the server stopped. At exit, bugs of the double itself (unexpected
    exceptions, answered with HTTP 500 ``fatal_error``) fail loudly unless
    ``check_errors=False``.

    Rate limiting (``rate_limit=True``): ``chat.postMessage`` and ``chat.update`` share one
    token bucket per channel ID holding up to ``burst`` tokens, refilled at
    ``rate_per_channel`` tokens/s, full at first use. A call needs a whole token; an accepted
    call (message stored/updated) takes one, calls that fail validation take none. Without a
    token the answer is HTTP 429, ``Retry-After: <whole seconds until a token is back, ≥ 1>``,
    ``{"ok": false, "error": "ratelimited"}``, and nothing is stored.

    Order of checks per request: outage (:meth:`go_down`), ``latency``, unknown method,
    injected fault (:meth:`fail_next`), malformed body, authentication, :meth:`rate_limit_all`
    (``chat.*`` only), channel, per-channel bucket (``chat.*`` only), arguments, storing.

    Time: buckets, :meth:`rate_limit_all`, :meth:`go_down` and ``Call.at`` follow ``clock``
    (``time.monotonic`` by default; a :class:`ManualClock` makes them exact on a slow
    machine); ``latency`` is real time.
    """

    thread_name = "slack-double"
    title = "The Slack double"

    def __init__(
        self,
        *,
        token: str = "xoxb-test-token",
        channels: Iterable[str] = ("C-ALERTS",),
        any_channel: bool = True,
        missing_channels: Iterable[str] = (),
        strict_threads: bool = True,
        latency: float = 0.0,
        private_channels: Iterable[str] = (),
        archived_channels: Iterable[str] = (),
        scopes: Iterable[str] = ALL_SCOPES,
        rate_limit: bool = True,
        rate_per_channel: float = 1.0,
        burst: int = 3,
        check_errors: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_channel <= 0 or burst < 1:
            raise ValueError("rate_per_channel must be > 0 and burst >= 1")
        self.token = token
        self.any_channel = any_channel
        self.strict_threads = strict_threads
        self.rate_limit = rate_limit
        self.rate_per_channel = rate_per_channel
        self.burst = burst
        self.check_errors = check_errors
        # Rate limits, outages and call times follow this clock; tests of their arithmetic
        # pass one they move by hand, so a slow machine cannot spend a token's refill time.
        self._clock = clock
        self._known = {self.channel_id(c) for c in channels}
        # id -> name of the channels conversations.list shows (named ones only)
        self._names = {self.channel_id(c): c[1:] for c in channels if c.startswith("#")}
        self._private = {self.channel_id(c) for c in private_channels}
        self._archived = {self.channel_id(c) for c in archived_channels}
        for channel in (*private_channels, *archived_channels):
            self._known.add(self.channel_id(channel))
            self._names[self.channel_id(channel)] = channel.removeprefix("#")
        self._scopes = tuple(scopes)
        self._method_latency: dict[str, float] = {}
        self._missing = {self.channel_id(c) for c in missing_channels}
        self._lock = threading.Lock()
        self._latency = latency
        self._messages: dict[tuple[str, str], _Message] = {}  # (channel id, ts), in ts order
        self._calls: list[Call] = []
        self._arrivals: list[str] = []  # methods of the requests read, before any latency
        self._buckets: dict[str, _Bucket] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._drops: dict[str, int] = {}
        self._limited_until = 0.0
        self._limited_retry_after = 1
        self._down_until = 0.0
        self._down_mode: OutageMode = "close"
        self._last_ts_micros = 0
        self.internal_errors: list[str] = []
        super().__init__()

    # ---- lifecycle ----

    def __enter__(self) -> SlackDouble:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        self.stop()
        if exc is None and self.check_errors and self.internal_errors:
            raise AssertionError(
                "The Slack double failed internally:\n" + "\n".join(self.internal_errors)
            )

    @property
    def url(self) -> str:
        """The API base, e.g. ``http://127.0.0.1:PORT/api`` (methods at ``{url}/<method>``)."""
        return super().url

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        app = aiohttp.web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle)
        runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self._url = f"http://{host}:{port}/api"
            self._ready.set()
            await self._stopped.wait()
        finally:
            await runner.cleanup()

    # ---- configuration & fault injection ----

    def set_latency(self, seconds: float, method: str | None = None) -> None:
        """Delay every later answer (of ``method`` only, if given) by ``seconds``; processing
        happens after the delay, and also when the client has given up meanwhile."""
        if method is not None:
            self._check_method(method)
        with self._lock:
            if method is None:
                self._latency = seconds
                self._method_latency.clear()
            else:
                self._method_latency[method] = seconds

    def set_scopes(self, scopes: Iterable[str]) -> None:
        """The OAuth scopes the bot token has from now on."""
        with self._lock:
            self._scopes = tuple(scopes)

    def rate_limit_all(self, seconds: float, retry_after: int = 1) -> None:
        """For the next ``seconds``, answer every ``chat.*`` call 429 with ``Retry-After``."""
        with self._lock:
            self._limited_until = self._clock() + seconds
            self._limited_retry_after = retry_after

    def fail_next(
        self,
        method: str,
        error: str,
        times: int = 1,
        http_status: int = 200,
        retry_after: int | None = None,
    ) -> None:
        """
        Answer the next ``times`` calls of ``method`` with ``{"ok": false, "error": error}``
        and ``http_status`` (nothing is processed). ``Retry-After`` is sent when
        ``retry_after`` is given, and defaults to 1 for ``http_status=429``.
        """
        self._check_method(method)
        if http_status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            queue = self._faults.setdefault(method, deque())
            queue.extend(_Fault(error, http_status, retry_after) for _ in range(times))

    def drop_response_next(self, method: str, times: int = 1) -> None:
        """
        Process the next ``times`` calls of ``method`` normally (messages are stored), then
        close the connection instead of answering — the client sees a failure for a call
        that took effect, as after a timeout on the way back.
        """
        self._check_method(method)
        with self._lock:
            self._drops[method] = self._drops.get(method, 0) + times

    def go_down(self, seconds: float, mode: OutageMode = "close") -> None:
        """
        For the next ``seconds``, fail every request before it reaches the API: ``"close"``
        closes the connection without an answer; ``"html503"`` answers HTTP 503 with an HTML
        body (``text/html``), as Slack's edge does. Nothing is processed.
        """
        if mode not in ("close", "html503"):
            raise ValueError(f"Unknown outage mode: {mode!r}")
        with self._lock:
            self._down_until = self._clock() + seconds
            self._down_mode = mode

    @staticmethod
    def _check_method(method: str) -> None:
        if method not in METHODS:
            raise ValueError(f"The Slack double does not serve {method!r}")

    # ---- inspection ----

    def channel_id(self, channel: str) -> str:
        """The conversation ID for ``#name`` (stable, derived) or an ID (unchanged)."""
        if channel.startswith("#"):
            return "C" + hashlib.sha1(channel[1:].encode()).hexdigest()[:10].upper()
        return channel

    def messages(self, channel: str | None = None) -> list[StoredMessage]:
        """All accepted messages (parents and replies), in posting order."""
        wanted = None if channel is None else self.channel_id(channel)
        with self._lock:
            return [m.freeze() for m in self._messages.values() if wanted in (None, m.channel)]

    def parents(self, channel: str) -> list[StoredMessage]:
        """Top-level messages of ``channel``, oldest first."""
        return [m for m in self.messages(channel) if m.thread_ts is None]

    def replies(self, channel: str, thread_ts: str) -> list[StoredMessage]:
        """Replies in the thread ``thread_ts`` of ``channel`` (without the parent), oldest first."""
        return [m for m in self.messages(channel) if m.thread_ts == thread_ts]

    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()
            self._arrivals.clear()

    def arrivals(self, method: str) -> int:
        """How many ``method`` requests have been read in full, answered or not yet (still in
        ``latency``): a test can wait until a call is in flight."""
        with self._lock:
            return self._arrivals.count(method)

    def rejected_429(self, channel: str | None = None) -> int:
        """How many HTTP 429 answers were given (to ``channel``, if given)."""
        wanted = None if channel is None else self.channel_id(channel)
        return sum(1 for c in self.calls() if c.status == 429 and wanted in (None, c.channel))

    def max_rate(self, channel: str, window: float = 1.0) -> int:
        """
        The most ``chat.postMessage``/``chat.update`` calls accepted for ``channel`` within
        any sliding ``window`` seconds (calls ``window`` or more apart — with 1 µs tolerance —
        are never in one window).
        """
        wanted = self.channel_id(channel)
        times = sorted(
            c.at for c in self.calls() if c.method in CHAT_METHODS and c.ok and c.channel == wanted
        )
        best, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window - 1e-6:
                start += 1
            best = max(best, end - start + 1)
        return best

    # ---- serving ----

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        method = request.match_info["method"]
        try:
            with self._lock:
                now = self._clock()
                outage = self._down_mode if now < self._down_until else None
                if outage is not None:
                    status = 0 if outage == "close" else 503
                    self._calls.append(Call(method, status, False, None, None, now))
                latency = self._method_latency.get(method, self._latency)
                scopes = ",".join(self._scopes)
            if outage == "close":
                return self._close(request)
            if outage == "html503":
                return aiohttp.web.Response(
                    status=503, text=EDGE_503_HTML, content_type="text/html", charset="utf-8"
                )
            try:
                parsed = await _read_request(request)
            except ConnectionError:  # the client left before sending its whole request
                return aiohttp.web.Response(status=499)
            with self._lock:
                self._arrivals.append(method)
            if latency > 0:
                await asyncio.sleep(latency)  # the request is in; the client may give up now
            with self._lock:
                drop = self._take_drop(method)
                answer = self._dispatch(method, parsed, self._clock(), drop)
        except Exception:
            self.internal_errors.append(traceback.format_exc())
            answer, drop = (_Answer({"ok": False, "error": "fatal_error"}, status=500), False)
        if drop:
            return self._close(request)
        headers = {"Content-Type": JSON_CONTENT_TYPE, "X-OAuth-Scopes": scopes}
        if answer.retry_after is not None:
            headers["Retry-After"] = str(answer.retry_after)
        return aiohttp.web.Response(
            status=answer.status, body=json.dumps(answer.body).encode(), headers=headers
        )

    @staticmethod
    def _close(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        if request.transport is not None:
            request.transport.close()
        return aiohttp.web.Response()  # never sent: the transport is closed

    def _take_drop(self, method: str) -> bool:
        if self._drops.get(method, 0) > 0:
            self._drops[method] -= 1
            return True
        return False

    def _dispatch(self, method: str, req: _Request, now: float, drop: bool) -> _Answer:
        """Answer one call (under the lock) and record it."""
        raw_channel = req.args.get("channel")
        answer = self._answer(method, req, now)
        if answer.channel is None and isinstance(raw_channel, str) and raw_channel:
            answer.channel = self._resolve(raw_channel, ids_only=False) or raw_channel
        if req.warnings:
            answer.body["warning"] = ",".join(req.warnings)
            metadata = answer.body.setdefault("response_metadata", {})
            metadata["warnings"] = list(req.warnings)
        ok = bool(answer.body.get("ok"))
        self._calls.append(
            Call(
                method=method,
                status=0 if drop else answer.status,
                ok=ok,
                error=answer.body.get("error"),
                channel=answer.channel,
                at=now,
                ts=answer.ts,
            )
        )
        return answer

    def _answer(self, method: str, req: _Request, now: float) -> _Answer:
        handlers: dict[str, Callable[[dict[str, Any], float], _Answer]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.list": self._list,
            "conversations.replies": self._replies,
        }
        handler = handlers.get(method)
        if handler is None:
            return _fail("unknown_method", req_method=method)
        queue = self._faults.get(method)
        if queue:
            fault = queue.popleft()
            answer = _fail(fault.error)
            answer.status, answer.retry_after = fault.status, fault.retry_after
            return answer
        if req.error is not None:
            return _fail(req.error)
        token = req.bearer or req.form_token
        if token is None:
            return _fail("not_authed")
        if token != self.token:
            return _fail("invalid_auth")
        if method in CHAT_METHODS and now < self._limited_until:
            return self._ratelimited(self._limited_retry_after)
        try:
            return handler(req.args, now)
        except _Invalid as e:
            return _fail(e.error, **e.extra)

    # ---- helpers under the lock ----

    def _resolve(self, channel: Any, *, ids_only: bool) -> str | None:
        """The conversation ID ``channel`` names, or None if it does not exist."""
        if not isinstance(channel, str) or not channel:
            return None
        if channel.startswith("#"):
            if ids_only:
                return None
        elif not channel.startswith(CONVERSATION_ID_PREFIXES):
            return None
        cid = self.channel_id(channel)
        if cid in self._missing or not (self.any_channel or cid in self._known):
            return None
        return cid

    @staticmethod
    def _ratelimited(retry_after: int) -> _Answer:
        return _Answer({"ok": False, "error": "ratelimited"}, status=429, retry_after=retry_after)

    def _bucket(self, channel: str, now: float) -> _Bucket:
        bucket = self._buckets.setdefault(channel, _Bucket(float(self.burst), now))
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_channel)
        bucket.updated = now
        return bucket

    def _retry_after(self, channel: str, now: float) -> int | None:
        """None if a call to ``channel`` may go ahead now, else the Retry-After seconds."""
        if not self.rate_limit:
            return None
        bucket = self._bucket(channel, now)
        if bucket.tokens >= 1.0 - 1e-9:
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate_per_channel))

    def _spend_token(self, channel: str, now: float) -> None:
        if self.rate_limit:
            self._bucket(channel, now).tokens -= 1.0

    def _next_ts(self) -> str:
        micros = max(time.time_ns() // 1000, self._last_ts_micros + 1)
        self._last_ts_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _content(
        self, args: dict[str, Any], *, required: bool
    ) -> tuple[str | None, list[Any] | None, list[Any] | None, dict[str, Any] | None]:
        """Read and validate text/blocks/attachments/metadata (None where not given)."""
        text = args.get("text")
        if text is not None and not isinstance(text, str):
            if not isinstance(text, int | float) or isinstance(text, bool):
                raise _Invalid("invalid_arguments")
            text = str(text)
        blocks = _json_arg(args, "blocks", "invalid_blocks_format")
        if blocks is not None and not isinstance(blocks, list):
            raise _Invalid("invalid_blocks_format")
        attachments = _json_arg(args, "attachments", "invalid_attachments")
        if attachments is not None and not (
            isinstance(attachments, list) and all(isinstance(a, dict) for a in attachments)
        ):
            raise _Invalid("invalid_attachments")
        metadata = _json_arg(args, "metadata", "invalid_metadata_format")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and isinstance(metadata.get("event_type"), str)
            and metadata["event_type"]
            and isinstance(metadata.get("event_payload"), dict)
        ):
            raise _Invalid("invalid_metadata_format")
        if required and not (text or blocks or attachments):
            raise _Invalid("no_text")
        if text is not None and len(text) > MAX_TEXT:
            raise _Invalid("msg_too_long")
        if attachments is not None and len(attachments) > MAX_ATTACHMENTS:
            raise _Invalid("too_many_attachments")
        if blocks:
            errors = block_errors(blocks)
            if errors:
                raise _Invalid(
                    "invalid_blocks",
                    errors=errors,
                    response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
                )
        return text, blocks, attachments, metadata

    def _render(self, message: _Message, *, with_metadata: bool) -> dict[str, Any]:
        """A message as Slack's API shows it."""
        version = message.versions[-1]
        out: dict[str, Any] = {
            "type": "message",
            "user": BOT["user_id"],
            "bot_id": BOT["bot_id"],
            "app_id": APP_ID,
            "team": TEAM["team_id"],
            "text": version.text,
            "ts": message.ts,
        }
        if version.blocks:
            out["blocks"] = [
                {**b, "block_id": b.get("block_id") or _block_id(message.ts, i)}
                for i, b in enumerate(copy.deepcopy(version.blocks))
            ]
        if version.attachments:
            out["attachments"] = [
                {"id": i + 1, **a} for i, a in enumerate(copy.deepcopy(version.attachments))
            ]
        if message.thread_ts is not None:
            out["thread_ts"] = message.thread_ts
            out["parent_user_id"] = BOT["user_id"]
            if message.reply_broadcast:
                out["subtype"] = "thread_broadcast"
        elif message.replies:
            out.update(
                thread_ts=message.ts,
                reply_count=len(message.replies),
                reply_users_count=1,
                latest_reply=message.replies[-1],
                reply_users=[BOT["user_id"]],
                is_locked=False,
            )
        if version.edited_ts is not None:
            out["edited"] = {"user": BOT["user_id"], "ts": version.edited_ts}
        if with_metadata and version.metadata is not None:
            out["metadata"] = copy.deepcopy(version.metadata)
        return out

    @staticmethod
    def _page(
        messages: list[_Message], args: dict[str, Any], default: int, maximum: int
    ) -> tuple[list[_Message], str]:
        """One page of ``messages`` (already in answer order) for limit/cursor; next cursor."""
        limit = _limit_arg(args, default, maximum)
        cursor = _decode_cursor(args.get("cursor"))
        start = 0
        if cursor is not None:
            keys = [_ts_key(m.ts) for m in messages]
            start = next((i for i, k in enumerate(keys) if k == cursor), len(messages))
        page = messages[start : start + limit]
        rest = messages[start + limit :]
        return page, _encode_cursor(rest[0].ts) if rest else ""

    @staticmethod
    def _in_range(message: _Message, args: dict[str, Any]) -> bool:
        oldest = _ts_arg(args, "oldest", "invalid_ts_oldest")
        latest = _ts_arg(args, "latest", "invalid_ts_latest")
        inclusive = _bool_arg(args.get("inclusive", False))
        key = _ts_key(message.ts)
        if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
            return False
        return latest is None or key < latest or (key == latest and inclusive)

    # ---- methods ----

    def _auth_test(self, args: dict[str, Any], now: float) -> _Answer:
        return _Answer(
            {
                "ok": True,
                "url": TEAM["url"],
                "team": TEAM["team"],
                "user": BOT["user"],
                "team_id": TEAM["team_id"],
                "user_id": BOT["user_id"],
                "bot_id": BOT["bot_id"],
                "is_enterprise_install": False,
            }
        )

    def _post_message(self, args: dict[str, Any], now: float) -> _Answer:
        channel = self._resolve(args.get("channel"), ids_only=False)
        if channel is None:
            return _fail("channel_not_found")
        retry_after = self._retry_after(channel, now)
        if retry_after is not None:
            return self._ratelimited(retry_after)
        text, blocks, attachments, metadata = self._content(args, required=True)
        if str(args["channel"]).startswith("#"):
            self._names.setdefault(channel, str(args["channel"])[1:])
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        parent = None
        if thread_ts is not None:
            candidate = self._messages.get((channel, thread_ts))
            if candidate is not None and candidate.thread_ts is None:
                parent = candidate
            elif self.strict_threads:
                return _fail("thread_not_found")
        ts = self._next_ts()
        unfurl = args.get("unfurl_links")
        message = _Message(
            channel=channel,
            ts=ts,
            thread_ts=thread_ts,
            versions=[MessageVersion(text or "", blocks, attachments, metadata, now)],
            reply_broadcast=thread_ts is not None and _bool_arg(args.get("reply_broadcast")),
            unfurl_links=None if unfurl is None else _bool_arg(unfurl),
        )
        self._messages[(channel, ts)] = message
        if parent is not None:
            parent.replies.append(ts)
        self._spend_token(channel, now)
        body = {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "message": self._render(message, with_metadata=True),
        }
        return _Answer(body, channel=channel, ts=ts)

    def _update(self, args: dict[str, Any], now: float) -> _Answer:
        channel = self._resolve(args.get("channel"), ids_only=True)
        if channel is None:
            return _fail("channel_not_found")
        retry_after = self._retry_after(channel, now)
        if retry_after is not None:
            return self._ratelimited(retry_after)
        ts = str(args.get("ts") or "")
        message = self._messages.get((channel, ts))
        if message is None:
            return _fail("message_not_found")
        text, blocks, attachments, metadata = self._content(args, required=True)
        old = message.versions[-1]
        version = MessageVersion(
            text=old.text if text is None else text,
            blocks=old.blocks if blocks is None else (blocks or None),
            attachments=old.attachments if attachments is None else (attachments or None),
            metadata=old.metadata if metadata is None else metadata,
            at=now,
            edited_ts=self._next_ts(),
        )
        if not (version.text or version.blocks or version.attachments):
            raise _Invalid("no_text")
        message.versions.append(version)
        self._spend_token(channel, now)
        body = {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": version.text,
            "message": self._render(message, with_metadata=True),
        }
        return _Answer(body, channel=channel, ts=ts)

    def _history(self, args: dict[str, Any], now: float) -> _Answer:
        channel = self._resolve(args.get("channel"), ids_only=True)
        if channel is None:
            return _fail("channel_not_found")
        visible = [
            m
            for m in reversed(self._messages.values())
            if m.channel == channel
            and (m.thread_ts is None or m.reply_broadcast)
            and self._in_range(m, args)
        ]
        page, next_cursor = self._page(visible, args, *HISTORY_LIMIT)
        metadata = _bool_arg(args.get("include_all_metadata", False))
        body = {
            "ok": True,
            "messages": [self._render(m, with_metadata=metadata) for m in page],
            "has_more": bool(next_cursor),
            "pin_count": 0,
            "response_metadata": {"next_cursor": next_cursor},
        }
        return _Answer(body, channel=channel)

    def _list(self, args: dict[str, Any], now: float) -> _Answer:
        types = [t.strip() for t in str(args.get("types") or "public_channel").split(",")]
        if not all(t in LIST_SCOPES for t in types):
            return _fail("invalid_types")
        needed = [LIST_SCOPES[t] for t in types if LIST_SCOPES[t] not in self._scopes]
        if needed:
            return _fail("missing_scope", needed=",".join(needed), provided=",".join(self._scopes))
        limit = _limit_arg(args, *LIST_LIMIT)
        exclude_archived = _bool_arg(args.get("exclude_archived", False))
        listed = sorted(
            cid
            for cid in self._names
            if ("private_channel" if cid in self._private else "public_channel") in types
            and not (exclude_archived and cid in self._archived)
            and cid not in self._missing
        )
        start = 0
        cursor = args.get("cursor")
        if cursor:
            try:
                text = base64.b64decode(str(cursor), validate=True).decode()
            except (ValueError, binascii.Error):
                return _fail("invalid_cursor")
            if not text.startswith("team:"):
                return _fail("invalid_cursor")
            start = next((i for i, c in enumerate(listed) if c >= text[5:]), len(listed))
        page, rest = listed[start : start + limit], listed[start + limit :]
        next_cursor = base64.b64encode(f"team:{rest[0]}".encode()).decode() if rest else ""
        body = {
            "ok": True,
            "channels": [self._conversation(cid) for cid in page],
            "response_metadata": {"next_cursor": next_cursor},
        }
        return _Answer(body)

    def _conversation(self, cid: str) -> dict[str, Any]:
        """A channel as conversations.list shows it (the fields a bot sees)."""
        name = self._names[cid]
        private = cid in self._private
        return {
            "id": cid,
            "name": name,
            "is_channel": not private,
            "is_group": private,
            "is_im": False,
            "is_mpim": False,
            "is_private": private,
            "created": 1700000000,
            "is_archived": cid in self._archived,
            "is_general": False,
            "unlinked": 0,
            "name_normalized": name,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "pending_shared": [],
            "context_team_id": TEAM["team_id"],
            "creator": BOT["user_id"],
            "shared_team_ids": [TEAM["team_id"]],
            "is_member": True,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
            "num_members": 3,
        }

    def _replies(self, args: dict[str, Any], now: float) -> _Answer:
        channel = self._resolve(args.get("channel"), ids_only=True)
        if channel is None:
            return _fail("channel_not_found")
        ts = str(args.get("ts") or "")
        message = self._messages.get((channel, ts))
        if message is not None and message.thread_ts is not None:
            message = self._messages.get((channel, message.thread_ts))
        if message is None:
            return _fail("thread_not_found")
        thread = [message, *(self._messages[(channel, r)] for r in message.replies)]
        thread = [m for m in thread if m is message or self._in_range(m, args)]
        page, next_cursor = self._page(thread, args, *REPLIES_LIMIT)
        metadata = _bool_arg(args.get("include_all_metadata", False))
        body = {
            "ok": True,
            "messages": [self._render(m, with_metadata=metadata) for m in page],
            "has_more": bool(next_cursor),
            "response_metadata": {"next_cursor": next_cursor},
        }
        return _Answer(body, channel=channel)
