"""HTTP pieces the services share (the threader and the exporter): the bearer-token check, the
JSON error body their 4xx/5xx answers carry, and how a port they cannot bind is reported."""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from aiohttp import web


def bearer_matches(request: web.Request, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>``; False for an empty token."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    # Constant time: the comparison must not tell an attacker how much of a guess was right.
    # aiohttp decodes header bytes that are not UTF-8 as lone surrogates: encode them back the
    # same way (a plain .encode() raises, and the answer would be a 500, not a 401).
    try:
        presented_bytes = presented.strip().encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no decoder made: not the token either
        return False
    return hmac.compare_digest(presented_bytes, token.encode())


def json_error(
    status: int,
    message: str,
    *,
    problems: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """``{"ok": false, "error": message[, "problems": [...]]}`` with ``status``."""
    body: dict[str, Any] = {"ok": False, "error": message}
    if problems:
        body["problems"] = problems
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def cannot_listen(host: str, port: int, error: OSError) -> str:
    """The one line a service stops with when ``host:port`` cannot be bound."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return f"cannot listen on {host}:{port}: {reason}"
