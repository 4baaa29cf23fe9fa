"""A small Slack Web API client on httpx: the five methods the threader calls.

Slack answers HTTP 200 with ``{"ok": false, "error": ...}`` for most failures; throttling is
HTTP 429 with ``Retry-After``. ``SlackError.temporary`` sorts the errors: throttling and server
trouble are retried, everything that would fail the same way again (a missing channel, a bad
token, a rejected message) is not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

# https://api.slack.com/methods/chat.postMessage#errors and the common errors of every method.
TEMPORARY_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)


@dataclass(frozen=True)
class MessageRef:
    """A posted message: Slack's channel id (updates and lookups need the id, not #name) and ts."""

    channel_id: str
    ts: str

    def encode(self) -> str:
        return f"{self.channel_id}/{self.ts}"

    @classmethod
    def decode(cls, text: str) -> MessageRef:
        channel_id, _, ts = text.partition("/")
        return cls(channel_id, ts)


class SlackError(Exception):
    """A Slack call that failed: Slack's ``error`` (or the transport's), whether it is worth
    retrying (``temporary``), how long Slack asked to wait (``retry_after``, 429 only), whether
    the request may still have been acted on (``maybe_delivered``: look before posting again),
    the ``method`` and, for ``missing_scope``, the scopes ``needed``."""

    def __init__(
        self,
        error: str,
        *,
        temporary: bool,
        retry_after: float | None = None,
        maybe_delivered: bool = False,
        method: str = "",
        needed: str = "",
    ) -> None:
        super().__init__(error)
        self.error = error
        self.temporary = temporary
        self.retry_after = retry_after
        # The request went out but no answer came back: Slack may have acted on it.
        self.maybe_delivered = maybe_delivered
        self.method = method
        # For missing_scope: the scopes the token lacks (Slack's ``needed``).
        self.needed = needed
        self.at = time.time()

    def describe(self) -> str:
        """The error for a log line (never anything secret)."""
        return f"{self.error} (needs {self.needed})" if self.needed else self.error


# conversations.list pages: Slack takes a limit "under 1000"; bounded so a huge workspace
# cannot keep a lookup going forever.
CHANNEL_PAGE_SIZE = 999
MAX_CHANNEL_PAGES = 200


class SlackClient:
    """chat.postMessage, chat.update and the lookups that make delivery exactly-once.

    Every call raises ``SlackError`` when it fails (after handing it to ``on_error``): a
    transport error, a 429, a 5xx, an answer that is not JSON and Slack's ``{"ok": false}``
    all become one. Nothing is retried here; the delivery worker decides.
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        on_error: Callable[[SlackError], None] | None = None,
    ) -> None:
        self._on_error = on_error  # sees every failed call (for /stats), whoever made it
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
            trust_env=False,
        )

    async def aclose(self) -> None:
        """Close the connections; the client is not used after."""
        await self._http.aclose()

    async def post_message(self, body: dict[str, Any]) -> MessageRef:
        """Post ``body`` (chat.postMessage's JSON: channel, blocks, metadata, thread_ts for a
        reply); the posted message, with the channel's id even when ``body`` named ``#name``."""
        answer = await self._call("chat.postMessage", body)
        return MessageRef(str(answer["channel"]), str(answer["ts"]))

    async def update_message(self, body: dict[str, Any]) -> None:
        """Replace a message (chat.update's JSON: the channel's id, ts and the new blocks)."""
        await self._call("chat.update", body)

    async def find_delivery(
        self, channel: str, delivery_id: str, *, oldest: float, thread_ts: str | None = None
    ) -> str | None:
        """The ts of a message we posted for ``delivery_id`` (found by its metadata) in
        ``channel`` (an id) since ``oldest`` (a Unix time), in the thread ``thread_ts`` when
        given; None if there is none.

        Used after a crash or a lost answer between posting and recording: a second post would
        be a duplicate. Needs the ``channels:history`` and ``groups:history`` scopes.
        """
        method = "conversations.replies" if thread_ts else "conversations.history"
        cursor = None
        while True:
            query: dict[str, Any] = {
                "channel": channel,
                "oldest": f"{oldest:.6f}",
                "include_all_metadata": "true",
                "limit": "200",
            }
            if thread_ts:
                query["ts"] = thread_ts
            if cursor:
                query["cursor"] = cursor
            answer = await self._call(method, query, form=True)
            for message in answer.get("messages") or []:
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("delivery_id") == delivery_id:
                    return str(message["ts"])
            cursor = (answer.get("response_metadata") or {}).get("next_cursor")
            if not answer.get("has_more") or not cursor:
                return None

    async def find_channel(self, name: str) -> str | None:
        """The id of the channel called ``name`` (without ``#``), public or private and not
        archived, if the bot can see it; None otherwise. ``conversations.list``, which needs the
        ``channels:read`` and ``groups:read`` scopes (``SlackError`` ``missing_scope``
        otherwise)."""
        cursor = ""
        for _ in range(MAX_CHANNEL_PAGES):
            query = {
                "types": "public_channel,private_channel",
                "exclude_archived": "true",
                "limit": str(CHANNEL_PAGE_SIZE),
            }
            if cursor:
                query["cursor"] = cursor
            answer = await self._call("conversations.list", query, form=True)
            for channel in answer.get("channels") or []:
                if isinstance(channel, dict) and channel.get("name") == name:
                    return str(channel["id"])
            # Slack may answer fewer than ``limit`` before the end: only the cursor says more.
            cursor = str((answer.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return None
        return None

    async def _call(
        self, method: str, body: dict[str, Any], *, form: bool = False
    ) -> dict[str, Any]:
        try:
            return await self._request(method, body, form=form)
        except SlackError as error:
            if self._on_error is not None:
                self._on_error(error)
            raise

    async def _request(
        self, method: str, body: dict[str, Any], *, form: bool = False
    ) -> dict[str, Any]:
        # Write methods take JSON; Slack's read methods only take form fields.
        try:
            if form:
                response = await self._http.post(method, data=body)
            else:
                response = await self._http.post(
                    method,
                    content=json.dumps(body, ensure_ascii=False).encode(),
                    headers={"Content-Type": "application/json; charset=utf-8"},
                )
        except httpx.TransportError as error:
            unsent = isinstance(
                error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
            )
            raise SlackError(
                type(error).__name__, temporary=True, maybe_delivered=not unsent, method=method
            ) from error
        if response.status_code == 429:
            raise SlackError(
                "ratelimited",
                temporary=True,
                retry_after=_seconds(response.headers),
                method=method,
            )
        if response.status_code >= 500:
            raise SlackError(f"HTTP {response.status_code}", temporary=True, method=method)
        try:
            answer = response.json()
        except ValueError:
            raise SlackError(
                f"HTTP {response.status_code}: not JSON", temporary=True, method=method
            ) from None
        if not isinstance(answer, dict):
            raise SlackError("answer is not an object", temporary=True, method=method)
        if not answer.get("ok"):
            refusal = str(answer.get("error") or f"HTTP {response.status_code}")
            raise SlackError(
                refusal,
                temporary=refusal in TEMPORARY_ERRORS,
                method=method,
                needed=str(answer.get("needed") or ""),
            )
        return answer


def _seconds(headers: httpx.Headers) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0
