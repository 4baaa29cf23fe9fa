"""threader/acceptance.py: the channel a request names, and the records the store is handed for
each alert (thread key per channel, idempotency key, status, the alert as stored). Pure, so
checked with exact values; the HTTP side is tested in test_end_to_end.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lumen_alerting.threader.acceptance import InvalidChannel, acceptances, choose_channel
from lumen_alerting.threader.config import ThreaderConfig
from lumen_alerting.threader.store import Acceptance
from lumen_alerting.threader.webhook import Notification, parse_notification

GROUP_KEY = '{}/{namespace="lumen"}:{alertname="CheckoutErrors"}'
FIRING_FINGERPRINT = "a1b2c3d4e5f60718"
RESOLVED_FINGERPRINT = "0f0e0d0c0b0a0908"
# sha256 of the JSON [groupKey, fingerprint, status, startsAt, endsAt], first 32 hex digits.
FIRING_ID = "93a7f08e0fd6b7b257193a80c71e4bfd"
RESOLVED_ID = "3d72eb1851ede2b07856a29873170c98"


def body() -> dict[str, Any]:
    """A notification as Alertmanager sends it: one firing alert, one resolved one whose service
    label holds the seed key's separator and whose startsAt has a fraction."""
    return {
        "version": "4",
        "groupKey": GROUP_KEY,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "lumen/checkout/slack",
        "groupLabels": {"alertname": "CheckoutErrors"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "CheckoutErrors",
                    "severity": "critical",
                    "service": "checkout",
                    "cluster": "prod-1",
                    "env": "production",
                },
                "annotations": {"summary": "Checkout errors"},
                "startsAt": "2026-11-22T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": FIRING_FINGERPRINT,
            },
            {
                "status": "resolved",
                "labels": {
                    "alertname": "CheckoutLatency",
                    "severity": "warning",
                    "service": "check|out",
                    "cluster": "prod-1",
                },
                "annotations": {},
                "startsAt": "2026-11-22T10:30:00.500+01:00",
                "endsAt": "2026-11-22T10:05:00Z",
                "generatorURL": "",
                "fingerprint": RESOLVED_FINGERPRINT,
            },
        ],
    }


def parsed(document: dict[str, Any] | None = None) -> Notification:
    return parse_notification(json.dumps(document or body()).encode())


def test_one_acceptance_per_alert_in_order_with_its_occurrence_thread() -> None:
    accepted = acceptances(parsed(), "#alerts", ThreaderConfig())

    assert accepted == [
        Acceptance(
            delivery_id=FIRING_ID,
            thread_key=f"#alerts/{FIRING_FINGERPRINT}@2026-11-22T10:00:00Z",
            status="firing",
            channel="#alerts",
            alert={
                "status": "firing",
                "labels": body()["alerts"][0]["labels"],
                "annotations": {"summary": "Checkout errors"},
                "startsAt": "2026-11-22T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": FIRING_FINGERPRINT,
            },
            reply_on_repeat=True,
        ),
        Acceptance(
            delivery_id=RESOLVED_ID,
            # Times in UTC, so the same start written in another zone is the same thread.
            thread_key=f"#alerts/{RESOLVED_FINGERPRINT}@2026-11-22T09:30:00.5Z",
            status="resolved",
            channel="#alerts",
            alert={
                "status": "resolved",
                "labels": body()["alerts"][1]["labels"],
                "annotations": {},
                "startsAt": "2026-11-22T09:30:00.5Z",
                "endsAt": "2026-11-22T10:05:00Z",
                "generatorURL": "",
                "fingerprint": RESOLVED_FINGERPRINT,
            },
            reply_on_repeat=True,
        ),
    ]


def test_labels_mode_keys_threads_by_the_seed_labels_escaped() -> None:
    config = ThreaderConfig(thread_key="labels", reply_on_repeat=False)

    accepted = acceptances(parsed(), "C0123ABCD", config)

    assert [a.thread_key for a in accepted] == [
        "C0123ABCD/CheckoutErrors|critical|checkout|prod-1|production",
        "C0123ABCD/CheckoutLatency|warning|check\\|out|prod-1|",  # no env label: empty part
    ]
    assert [a.channel for a in accepted] == ["C0123ABCD", "C0123ABCD"]
    assert [a.reply_on_repeat for a in accepted] == [False, False]
    # The idempotency key does not depend on how threads are keyed.
    assert [a.delivery_id for a in accepted] == [FIRING_ID, RESOLVED_ID]


def test_thread_keys_are_per_channel() -> None:
    notification = parsed()

    [first, _] = acceptances(notification, "#alerts", ThreaderConfig())
    [second, _] = acceptances(notification, "#oncall", ThreaderConfig())

    assert first.thread_key == f"#alerts/{FIRING_FINGERPRINT}@2026-11-22T10:00:00Z"
    assert second.thread_key == f"#oncall/{FIRING_FINGERPRINT}@2026-11-22T10:00:00Z"


def test_the_idempotency_key_follows_the_notification_not_the_delivery() -> None:
    """A redelivery is the same key; another group, status or end is another key."""
    again = acceptances(parsed(), "#alerts", ThreaderConfig())
    other_group = body() | {"groupKey": '{}:{alertname="Other"}'}
    resolved = body()
    resolved["alerts"][0] |= {"status": "resolved", "endsAt": "2026-11-22T10:20:00Z"}

    assert [a.delivery_id for a in again] == [FIRING_ID, RESOLVED_ID]
    [moved, _] = acceptances(parsed(other_group), "#alerts", ThreaderConfig())
    [ended, _] = acceptances(parsed(resolved), "#alerts", ThreaderConfig())
    assert moved.delivery_id not in (FIRING_ID, RESOLVED_ID)
    assert ended.delivery_id not in (FIRING_ID, RESOLVED_ID, moved.delivery_id)
    assert ended.status == "resolved"
    # Still the same occurrence: the resolution goes to the firing alert's thread.
    assert ended.thread_key == f"#alerts/{FIRING_FINGERPRINT}@2026-11-22T10:00:00Z"


@pytest.mark.parametrize(
    ("requested", "default", "channel"),
    [
        ("#alerts", None, "#alerts"),
        ("#alerts", "#fallback", "#alerts"),  # the request wins
        (None, "#fallback", "#fallback"),
        ("", "#fallback", "#fallback"),  # ?channel= with nothing is no channel
        ("C0123ABCD", None, "C0123ABCD"),
        ("G01ABCDE", None, "G01ABCDE"),
        ("#team.sre_on-call9", None, "#team.sre_on-call9"),
    ],
)
def test_the_channel_is_the_requested_one_else_the_default(
    requested: str | None, default: str | None, channel: str
) -> None:
    assert choose_channel(requested, default) == channel


@pytest.mark.parametrize(("requested", "default"), [(None, None), ("", None), ("", "")])
def test_no_channel_at_all_is_refused(requested: str | None, default: str | None) -> None:
    with pytest.raises(InvalidChannel) as refused:
        choose_channel(requested, default)
    assert str(refused.value) == "no channel: add ?channel=#name or start with --default-channel"


@pytest.mark.parametrize(
    ("requested", "default", "shown"),
    [
        ("alerts", None, "'alerts'"),  # a name without #
        ("#Alerts", None, "'#Alerts'"),  # Slack channel names are lower case
        ("#", None, "'#'"),
        ("#" + "a" * 81, None, "'#" + "a" * 81 + "'"),  # longer than Slack allows
        ("c0123abcd", None, "'c0123abcd'"),  # ids are upper case
        ("C012", None, "'C012'"),  # too short for an id
        (None, "alerts", "'alerts'"),  # a bad default is refused too
        ("#alerts\n", None, "'#alerts\\n'"),  # a pattern's $ would let the newline through
        ("C0123ABCD\n", None, "'C0123ABCD\\n'"),
    ],
)
def test_a_channel_that_is_neither_a_name_nor_an_id_is_refused(
    requested: str | None, default: str | None, shown: str
) -> None:
    with pytest.raises(InvalidChannel) as refused:
        choose_channel(requested, default)
    assert str(refused.value) == f"channel {shown} is not #name or a channel id"
