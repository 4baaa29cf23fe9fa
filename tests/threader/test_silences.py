"""Silencing an incident creates a real Alertmanager silence for its alert's labels (issue 13):
AlertmanagerSilences against a real prometheus-alertmanager whose only receiver is a webhook
recorder, so "silenced" means "Alertmanager sent nothing", and ending the silence lets the alert
through again."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from lumen_alerting.threader.silences import AlertmanagerSilences, SilenceFailed
from tests.support.alertmanager_run import ALERTMANAGER, Alertmanager, WebhookReceiver
from tests.support.polling import eventually, free_port

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(ALERTMANAGER is None, reason="prometheus-alertmanager is not installed"),
]

T = TypeVar("T")
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as webhook:
        yield webhook


@pytest.fixture(scope="module")
def alertmanager(
    receiver: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Alertmanager]:
    # One Alertmanager for the module: every test uses labels of its own.
    with Alertmanager(tmp_path_factory.mktemp("alertmanager"), receiver.url) as running:
        yield running


def with_silences(base_url: str, use: Callable[[AlertmanagerSilences], Awaitable[T]]) -> T:
    async def run() -> T:
        silences = AlertmanagerSilences(base_url, timeout=10)
        try:
            return await use(silences)
        finally:
            await silences.aclose()

    return asyncio.run(run())


def create(base_url: str, labels: dict[str, str], **overrides: Any) -> str:
    now = datetime.now(UTC)
    arguments: dict[str, Any] = {
        "starts_at": now,
        "ends_at": now + HOUR,
        "created_by": "Ada (U123)",
        "comment": "Silenced from Slack for incident #7",
    } | overrides
    return with_silences(base_url, lambda s: s.create(labels, **arguments))


def expire(base_url: str, silence_id: str) -> None:
    with_silences(base_url, lambda s: s.expire(silence_id))


def labels_of(name: str) -> dict[str, str]:
    """An alert's labels, unique to the test that asks."""
    return {
        "alertname": name,
        "instance": f"db-{uuid.uuid4().hex[:8]}",
        "severity": "critical",
        "service": "orders",
    }


def firing(labels: dict[str, str]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": labels,
        "annotations": {"summary": f"{labels['alertname']} on {labels['instance']}"},
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
        "endsAt": (now + HOUR).isoformat(),  # still firing while the test runs
    }


def status_in_alertmanager(alertmanager: Alertmanager, labels: dict[str, str]) -> dict[str, Any]:
    (found,) = [a for a in alertmanager.alerts() if a["labels"] == labels]
    status: dict[str, Any] = found["status"]
    return status


def test_a_silence_for_an_alerts_labels_is_active_with_exactly_those_matchers(
    alertmanager: Alertmanager,
) -> None:
    labels = labels_of("DiskFull")
    silence_id = create(alertmanager.url, labels)

    (silence,) = [s for s in alertmanager.silences() if s["id"] == silence_id]
    assert sorted(silence["matchers"], key=lambda m: m["name"]) == [
        {"name": name, "value": value, "isRegex": False, "isEqual": True}
        for name, value in sorted(labels.items())
    ]
    assert silence["status"]["state"] == "active"
    assert silence["createdBy"] == "Ada (U123)"
    assert silence["comment"] == "Silenced from Slack for incident #7"
    ends_at = datetime.fromisoformat(silence["endsAt"])
    assert abs(ends_at - (datetime.now(UTC) + HOUR)) < timedelta(minutes=1)
    assert with_silences(alertmanager.url, lambda s: s.get(silence_id)) == silence


def test_while_the_silence_holds_the_alert_reaches_no_receiver(
    alertmanager: Alertmanager, receiver: WebhookReceiver
) -> None:
    silenced, other = labels_of("DiskFull"), labels_of("DiskFull")
    silence_id = create(alertmanager.url, silenced)
    alertmanager.post_alerts([firing(silenced)])
    alertmanager.post_alerts([firing(other)])

    status = eventually(
        lambda: (
            (s := status_in_alertmanager(alertmanager, silenced))["state"] == "suppressed" and s
        ),
        30,
        "the silenced alert suppressed",
    )
    assert status["silencedBy"] == [silence_id]
    assert status_in_alertmanager(alertmanager, other)["state"] == "active"
    # The unsilenced alert delivered, then repeated (repeat_interval 2s): the silenced alert's
    # group was flushed several times meanwhile (group_interval 1s), and sent nothing.
    eventually(
        lambda: len(receiver.alerts_with(**other)) >= 2, 60, "the unsilenced alert, repeated"
    )
    assert receiver.alerts_with(**silenced) == []


def test_expiring_the_silence_ends_it_and_the_alert_is_delivered_again(
    alertmanager: Alertmanager, receiver: WebhookReceiver
) -> None:
    labels = labels_of("QueueStuck")
    silence_id = create(alertmanager.url, labels)
    alertmanager.post_alerts([firing(labels)])
    eventually(
        lambda: status_in_alertmanager(alertmanager, labels)["state"] == "suppressed",
        30,
        "the alert suppressed",
    )
    assert receiver.alerts_with(**labels) == []

    expire(alertmanager.url, silence_id)

    silence = eventually(
        lambda: (
            (s := with_silences(alertmanager.url, lambda c: c.get(silence_id)))["status"]["state"]
            == "expired"
            and s
        ),
        30,
        "the silence expired",
    )
    assert silence["id"] == silence_id
    delivered = eventually(lambda: receiver.alerts_with(**labels), 60, "the alert delivered")
    assert delivered[0]["status"] == "firing"
    status = status_in_alertmanager(alertmanager, labels)
    assert status["state"] == "active" and status["silencedBy"] == []
    expire(alertmanager.url, silence_id)  # a second expiry is fine


def test_expiring_an_unknown_silence_is_fine(alertmanager: Alertmanager) -> None:
    expire(alertmanager.url, str(uuid.uuid4()))


def test_alertmanagers_refusal_is_a_failure_with_its_message(alertmanager: Alertmanager) -> None:
    now = datetime.now(UTC)
    with pytest.raises(SilenceFailed) as refused:
        create(alertmanager.url, labels_of("DiskFull"), starts_at=now, ends_at=now - HOUR)
    message = str(refused.value)
    assert message.startswith(f"could not create a silence: Alertmanager at {alertmanager.url}")
    assert "answered 400: Failed to create silence: start time must be before end time" in message

    with pytest.raises(SilenceFailed, match=r'400: .*invalid label name "bad-name"'):
        create(alertmanager.url, {"bad-name": "x"})


def test_credentials_in_the_url_are_sent_and_never_shown(alertmanager: Alertmanager) -> None:
    with_credentials = alertmanager.url.replace("http://", "http://lumen:s3cret-pass@")
    now = datetime.now(UTC)
    with pytest.raises(SilenceFailed) as refused:
        create(with_credentials, labels_of("DiskFull"), starts_at=now, ends_at=now - HOUR)
    assert "400" in str(refused.value)
    assert "s3cret" not in str(refused.value) and "lumen:" not in str(refused.value)
    # The same URL works: the credentials are basic auth, not part of the path.
    silence_id = create(with_credentials, labels_of("DiskFull"))
    assert any(s["id"] == silence_id for s in alertmanager.silences())


def test_an_unreachable_alertmanager_is_a_failure() -> None:
    closed = f"http://admin:hunter2@127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(SilenceFailed) as failed:
        create(closed, labels_of("DiskFull"))
    message = str(failed.value)
    assert "could not create a silence" in message and "is unreachable" in message
    assert "hunter2" not in message and "admin" not in message
    with pytest.raises(SilenceFailed, match=r"could not expire silence abc: .* unreachable"):
        expire(closed, "abc")


def test_an_alertmanager_that_does_not_answer_is_a_failure() -> None:
    with socket.socket() as listening:  # accepts connections (the backlog), never answers
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]

        async def attempt(silences: AlertmanagerSilences) -> str:
            now = datetime.now(UTC)
            return await silences.create(
                labels_of("DiskFull"), starts_at=now, ends_at=now + HOUR, created_by="a", comment=""
            )

        async def run() -> str:
            silences = AlertmanagerSilences(f"http://127.0.0.1:{port}", timeout=0.5)
            try:
                return await attempt(silences)
            finally:
                await silences.aclose()

        with pytest.raises(SilenceFailed, match=r"did not answer within 0\.5 s"):
            asyncio.run(run())


def test_a_silence_without_matchers_is_refused_before_any_request() -> None:
    # A closed port: were a request made, the failure would say "unreachable".
    with pytest.raises(SilenceFailed, match="no labels to match") as refused:
        create(f"http://127.0.0.1:{free_port()}", {})
    assert "unreachable" not in str(refused.value)


def test_silence_times_must_say_their_timezone() -> None:
    naive = datetime(2026, 1, 1, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        create(f"http://127.0.0.1:{free_port()}", labels_of("DiskFull"), starts_at=naive)
