"""What the incident store keeps of a notification: each alert as received, with where it came
from and which incident it belongs to. Pure: no I/O; the time of receipt is passed in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..webhook import Notification, alert_to_json
from .grouping import incident_key
from .records import ReceivedAlert


def received_alerts(
    notification: Notification, *, received_at: datetime, group_by: Sequence[str] = ()
) -> list[ReceivedAlert]:
    """One ``ReceivedAlert`` per alert of the notification, in its order."""
    return [
        ReceivedAlert(
            source=notification.source,
            receiver=notification.receiver,
            group_key=notification.group_key,
            received_at=received_at,
            incident_key=incident_key(alert.fingerprint, alert.starts_at, alert.labels, group_by),
            fingerprint=alert.fingerprint,
            status=alert.status,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            links={"generatorURL": alert.generator_url, **alert.links}
            if alert.generator_url
            else dict(alert.links),
            values=dict(alert.values),
            payload=alert_to_json(alert),
        )
        for alert in notification.alerts
    ]
