"""Slack's request signing (https://docs.slack.dev/authentication/verifying-requests-from-slack).

Slack signs every request it sends to an app with the app's signing secret:
``X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<timestamp>:<raw body>")>`` beside
``X-Slack-Request-Timestamp: <unix seconds>``. A request is Slack's only if the signature matches
the exact bytes received, and fresh only if the timestamp is within five minutes of our clock (a
captured request cannot be replayed later). Pure: no I/O, the caller passes the clock.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Final

VERSION: Final = "v0"
TIMESTAMP_HEADER: Final = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER: Final = "X-Slack-Signature"
# Slack's own window; both directions, since a clock ahead of ours is as suspect as one behind.
DEFAULT_WINDOW: Final = 300.0


class SignatureRefused(Exception):
    """The request is not provably Slack's, or not fresh. ``reason`` is short and safe to log or
    answer with: it never contains the secret or the expected signature."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def slack_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` value Slack sends for ``body`` at ``timestamp``."""
    base = f"{VERSION}:{timestamp}:".encode("ascii") + body
    return f"{VERSION}=" + hmac.new(secret, base, hashlib.sha256).hexdigest()


def verify_slack_signature(
    secret: bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    window: float = DEFAULT_WINDOW,
) -> None:
    """Return if ``signature`` is Slack's for ``body`` at a ``timestamp`` within ``window``
    seconds of ``now``; raise ``SignatureRefused`` otherwise.

    The timestamp is checked first, but its text is what is signed, so a changed timestamp
    also breaks the signature.
    """
    if not timestamp:
        raise SignatureRefused(f"missing {TIMESTAMP_HEADER}")
    if not signature:
        raise SignatureRefused(f"missing {SIGNATURE_HEADER}")
    # Digits only: int() would also take " 12", "+12" or "1_2", texts Slack never sends.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 15:
        raise SignatureRefused(f"{TIMESTAMP_HEADER} is not a number of seconds")
    sent = int(timestamp)
    if not math.isfinite(now) or sent < now - window:
        raise SignatureRefused("request too old")
    if sent > now + window:
        raise SignatureRefused("request timestamp in the future")
    if not signature.isascii():
        raise SignatureRefused("wrong signature")
    expected = slack_signature(secret, timestamp, body)
    # Constant time, so the answer's timing tells nothing of how much of a guess was right.
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise SignatureRefused("wrong signature")
