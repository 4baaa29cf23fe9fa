"""Which incident an alert belongs to (pure): its incident key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from ..webhook import format_rfc3339


def incident_key(
    fingerprint: str,
    starts_at: datetime,
    labels: Mapping[str, str],
    group_by: Sequence[str] = (),
) -> str:
    """The incident key of one alert.

    Without ``group_by``: ``<fingerprint>@<startsAt>``, one incident per occurrence (the same
    as the Slack thread key), so a re-fire after resolution, which starts at a new time, opens
    a new incident. With ``group_by``: ``name1=value1,name2=value2`` in that order, a missing
    label counting as empty. ``\\``, ``,`` and ``=`` inside a value are backslash-escaped so
    that two different label sets never share a key.
    """
    if not group_by:
        return f"{fingerprint}@{format_rfc3339(starts_at)}"
    return ",".join(f"{name}={_escape(labels.get(name, ''))}" for name in group_by)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
