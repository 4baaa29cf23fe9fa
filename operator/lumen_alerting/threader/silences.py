"""Alertmanager silences for incidents, through Alertmanager's API v2.

Silencing an incident creates a real silence in Alertmanager that matches the incident's alert
labels exactly (``POST /api/v2/silences``); ending it expires that silence
(``DELETE /api/v2/silence/{id}``). The threader records the silence's id on the incident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

# Alertmanager's answer text can be a page of HTML from a proxy: enough to say what went wrong.
_MAX_ERROR_TEXT = 300


class SilenceFailed(Exception):
    """Alertmanager was unreachable or refused the request; the message says which, with
    Alertmanager's status and error text (never the credentials of its URL)."""


def _without_userinfo(base_url: str) -> tuple[str, httpx.BasicAuth | None]:
    """The URL without ``user:password@`` (for requests and messages) and its basic auth."""
    parts = urlsplit(base_url.rstrip("/"))
    if parts.username is None and parts.password is None:
        return urlunsplit(parts), None
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    auth = httpx.BasicAuth(parts.username or "", parts.password or "")
    return urlunsplit(parts._replace(netloc=netloc)), auth


def _rfc3339(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError(f"silence times must be timezone-aware, got {at.isoformat()}")
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error_text(response: httpx.Response) -> str:
    """Alertmanager's error: a JSON string (its own checks), or ``{"code", "message"}`` (the
    API's schema validation); anything else as text, shortened."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        body = body["message"]
    text = body if isinstance(body, str) else json.dumps(body)
    text = " ".join(text.split())
    if len(text) > _MAX_ERROR_TEXT:
        text = text[:_MAX_ERROR_TEXT] + "…"
    return text or response.reason_phrase


class AlertmanagerSilences:
    """Creates, reads and expires silences of one Alertmanager (its base URL, e.g.
    ``http://alertmanager:9093``; a ``user:password@`` in it is sent as basic auth)."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url, auth = _without_userinfo(base_url)
        self._timeout = timeout
        self._client = httpx.AsyncClient(base_url=self.base_url, auth=auth, timeout=timeout)

    async def create(
        self,
        matchers: Mapping[str, str],
        *,
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        """A silence matching exactly these label values, from ``starts_at`` to ``ends_at``;
        its id."""
        if not matchers:
            # Alertmanager refuses it too; an empty matcher list would otherwise read as
            # "silence everything" to a person looking at the request.
            raise SilenceFailed(
                f"not creating a silence in Alertmanager at {self.base_url}: no labels to "
                "match (Alertmanager refuses a silence without matchers)"
            )
        body = {
            "matchers": [
                {"name": name, "value": value, "isRegex": False, "isEqual": True}
                for name, value in sorted(matchers.items())
            ],
            "startsAt": _rfc3339(starts_at),
            "endsAt": _rfc3339(ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        response = await self._request("POST", "/api/v2/silences", "create a silence", json=body)
        if response.status_code != 200:
            raise self._refused("create a silence", response)
        try:
            silence_id = response.json()["silenceID"]
        except (ValueError, KeyError, TypeError):
            silence_id = None
        if not isinstance(silence_id, str) or not silence_id:
            raise SilenceFailed(
                f"Alertmanager at {self.base_url} answered the new silence without its id: "
                f"{_error_text(response)}"
            )
        return silence_id

    async def expire(self, silence_id: str) -> None:
        """End the silence now. One that is unknown or already expired is fine: the aim, no
        silence holding the alerts, is met."""
        response = await self._request(
            "DELETE", self._silence_path(silence_id), f"expire silence {silence_id}"
        )
        if response.status_code in (200, 404):
            return
        # Alertmanager 0.25 answers an unknown id with 500 "silence not found" (its API
        # documents 404), and some versions a second expiry with 500 "… already expired".
        if response.status_code == 500 and _error_text(response).endswith(
            ("not found", "already expired")
        ):
            return
        raise self._refused(f"expire silence {silence_id}", response)

    async def get(self, silence_id: str) -> dict[str, Any]:
        """The silence as Alertmanager holds it (``gettableSilence``: matchers, status.state,
        createdBy, …)."""
        what = f"read silence {silence_id}"
        response = await self._request("GET", self._silence_path(silence_id), what)
        if response.status_code != 200:
            raise self._refused(what, response)
        silence: dict[str, Any] = response.json()
        return silence

    async def aclose(self) -> None:
        await self._client.aclose()

    @staticmethod
    def _silence_path(silence_id: str) -> str:
        return f"/api/v2/silence/{quote(silence_id, safe='')}"

    async def _request(self, method: str, path: str, what: str, json: Any = None) -> httpx.Response:
        try:
            return await self._client.request(method, path, json=json)
        except httpx.TimeoutException:
            raise SilenceFailed(
                f"could not {what}: Alertmanager at {self.base_url} did not answer within "
                f"{self._timeout:g} s"
            ) from None
        except httpx.HTTPError as error:
            # The error's text names no URL, only the cause (connection refused, DNS, TLS).
            raise SilenceFailed(
                f"could not {what}: Alertmanager at {self.base_url} is unreachable "
                f"({type(error).__name__}: {error})"
            ) from None

    def _refused(self, what: str, response: httpx.Response) -> SilenceFailed:
        return SilenceFailed(
            f"could not {what}: Alertmanager at {self.base_url} answered "
            f"{response.status_code}: {_error_text(response)}"
        )
