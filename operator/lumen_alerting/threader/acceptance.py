"""What the threader accepts of one notification: for each alert, its channel, its thread and its
idempotency key, as the ``Acceptance`` records the store takes.

Pure: the requested channel, the parsed notification and the settings in, records or
``InvalidChannel`` out. No I/O, no clock; the request handler stores and answers.
"""

from __future__ import annotations

from .config import CHANNEL, ThreaderConfig
from .store.contract import Acceptance
from .webhook import Notification, alert_to_json, delivery_id, thread_key


class InvalidChannel(ValueError):
    """The request names no channel Slack could take; the message says why (answered 400)."""


def choose_channel(requested: str | None, default: str | None) -> str:
    """The channel of a request: its ``?channel=`` (an empty one counts as none), else
    ``--default-channel``; ``#name`` or a channel id, else ``InvalidChannel``."""
    channel = requested or default
    if not channel:
        raise InvalidChannel("no channel: add ?channel=#name or start with --default-channel")
    if not CHANNEL.fullmatch(channel):
        raise InvalidChannel(f"channel {channel!r} is not #name or a channel id")
    return channel


def acceptances(
    notification: Notification, channel: str, config: ThreaderConfig
) -> list[Acceptance]:
    """One ``Acceptance`` per alert of the notification, in its order, for ``channel``."""
    return [
        Acceptance(
            delivery_id=delivery_id(notification.group_key, alert),
            # Per channel: two receivers routing one alert to two channels get a thread each.
            thread_key=f"{channel}/{thread_key(alert, config.thread_key)}",
            status=alert.status,
            channel=channel,
            alert=alert_to_json(alert),
            reply_on_repeat=config.reply_on_repeat,
        )
        for alert in notification.alerts
    ]
