"""Slack's request signing: the example of Slack's documentation, and every way a request is
refused (missing or malformed headers, a stale or future timestamp, a wrong signature)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from lumen_alerting.threader.slack_signature import (
    SignatureRefused,
    slack_signature,
    verify_slack_signature,
)

# The worked example of https://docs.slack.dev/authentication/verifying-requests-from-slack
DOC_SECRET = b"8f742231b10e8888abcd99yyyzzz85a5"
DOC_TIMESTAMP = "1531420618"
DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
    b"collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F39770"
    b"0885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2"
    b"c447fce8b6703c"
)
DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

SECRET = b"lumen-test-signing-secret"
NOW = 1_764_700_000.0
BODY = b"payload=%7B%22type%22%3A%22block_actions%22%7D"


def signed(body: bytes = BODY, timestamp: str = str(int(NOW)), secret: bytes = SECRET) -> str:
    """Computed here independently of the module."""
    digest = hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return "v0=" + digest.hexdigest()


def refusal(
    timestamp: str | None, signature: str | None, body: bytes = BODY, now: float = NOW
) -> str:
    with pytest.raises(SignatureRefused) as refused:
        verify_slack_signature(SECRET, timestamp, signature, body, now)
    return refused.value.reason


def test_slacks_documented_example_is_accepted() -> None:
    assert slack_signature(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY) == DOC_SIGNATURE
    verify_slack_signature(DOC_SECRET, DOC_TIMESTAMP, DOC_SIGNATURE, DOC_BODY, 1531420618 + 10)


def test_a_valid_signature_is_accepted() -> None:
    verify_slack_signature(SECRET, str(int(NOW)), signed(), BODY, NOW)


@pytest.mark.parametrize("offset", [-300, 300, -299, 0])
def test_timestamps_up_to_five_minutes_either_way_are_accepted(offset: int) -> None:
    timestamp = str(int(NOW) + offset)
    verify_slack_signature(SECRET, timestamp, signed(timestamp=timestamp), BODY, NOW)


def test_a_wrong_signature_is_refused() -> None:
    good = signed()
    wrong = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert refusal(str(int(NOW)), wrong) == "wrong signature"


def test_a_signature_made_with_another_secret_is_refused() -> None:
    assert refusal(str(int(NOW)), signed(secret=b"another-secret")) == "wrong signature"


def test_a_body_changed_after_signing_is_refused() -> None:
    tampered = BODY.replace(b"block_actions", b"block_actionz")
    assert refusal(str(int(NOW)), signed(), body=tampered) == "wrong signature"


def test_a_changed_timestamp_breaks_the_signature() -> None:
    assert refusal(str(int(NOW) + 1), signed()) == "wrong signature"


@pytest.mark.parametrize("signature", ["v1=" + "0" * 64, "deadbeef", "v0=ééé"])
def test_signatures_of_another_form_are_refused(signature: str) -> None:
    assert refusal(str(int(NOW)), signature) == "wrong signature"


@pytest.mark.parametrize("offset", [-301, -3600, -int(NOW)])
def test_an_old_timestamp_is_refused(offset: int) -> None:
    timestamp = str(int(NOW) + offset)
    assert refusal(timestamp, signed(timestamp=timestamp)) == "request too old"


@pytest.mark.parametrize("offset", [301, 86400])
def test_a_timestamp_in_the_future_is_refused(offset: int) -> None:
    timestamp = str(int(NOW) + offset)
    assert refusal(timestamp, signed(timestamp=timestamp)) == "request timestamp in the future"


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        (None, "v0=00", "missing X-Slack-Request-Timestamp"),
        ("", "v0=00", "missing X-Slack-Request-Timestamp"),
        (str(int(NOW)), None, "missing X-Slack-Signature"),
        (str(int(NOW)), "", "missing X-Slack-Signature"),
    ],
)
def test_missing_headers_are_refused(
    timestamp: str | None, signature: str | None, reason: str
) -> None:
    assert refusal(timestamp, signature) == reason


@pytest.mark.parametrize(
    "timestamp",
    [
        "abc",
        "1764700000.5",
        " 1764700000",
        "+1764700000",
        "-5",
        "1_764_700_000",
        "1e9",
        "١٢٣",
        "9" * 400,
    ],
)
def test_a_timestamp_that_is_not_a_number_of_seconds_is_refused(timestamp: str) -> None:
    reason = refusal(timestamp, signed(timestamp=timestamp))
    assert reason == "X-Slack-Request-Timestamp is not a number of seconds"


def test_the_reason_never_contains_the_secret_or_the_expected_signature() -> None:
    good = signed()
    reason = refusal(str(int(NOW)), "v0=" + "0" * 64)
    assert SECRET.decode() not in reason
    assert good not in reason and good[3:] not in reason
