"""The exporter's CSV log of probe runs (``lumen-exporter --csv``), as its writer
(``exporter/csv_log.py``) and its reader (``lumenctl report --input``, ``report/records.py``)
both know it: the fixed columns and the timestamp format. The columns between the fixed ones are
the policy's gauges and counted fields (docs/exporter.md).

A shared leaf: it imports nothing of Lumen's (``.importlinter``), so the report reads the format
without importing the exporter, and the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime

TIMESTAMP = "timestamp"
PROBE = "probe"
SUCCESS = "success"
HTTP_STATUS = "http_status"
DURATION = "duration_seconds"
ERROR = "error"
# Every row: these first, then the gauge and counted columns, then these.
FIXED_LEADING = (TIMESTAMP, PROBE, SUCCESS, HTTP_STATUS, DURATION)
FIXED_TRAILING = (ERROR,)
FIXED_COLUMNS = frozenset((*FIXED_LEADING, *FIXED_TRAILING))


def rfc3339_millis(unix_time: float) -> str:
    """The ``timestamp`` column: RFC 3339 UTC with milliseconds, ``2026-12-02T04:01:09.123Z``
    (the sub-millisecond part is cut off, not rounded)."""
    moment = datetime.fromtimestamp(unix_time, UTC)
    return moment.isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"
