"""Alertmanager webhook payloads (version 4) and Grafana Unified Alerting's webhook contact point
(version 1): strict parsing, and the threader's bookkeeping keys.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config

Grafana's payload is Alertmanager's with more fields (grafana/alerting, receivers/webhook/v1
webhook.go ``webhookMessage`` and templates/template_data.go ``ExtendedAlert``; example in
https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/):
``"version": "1"``, top level ``orgId`` (integer), ``title``, ``state`` ("alerting" or "ok"),
``message``; per alert ``silenceURL``, ``dashboardURL``, ``panelURL`` (empty when the rule has no
dashboard), ``imageURL`` (omitted without an image), ``values`` (refId -> number, ``null`` when
the rule recorded none) and the deprecated ``valueString``. Go's encoding/json cannot encode NaN
or an infinity (the whole notification fails in Grafana), so a value is always a finite number.

Pure: bytes in, frozen values out, or ``InvalidNotification`` listing every problem as
``path: reason`` (``alerts[3].startsAt: not an RFC 3339 time``). Nothing else escapes
``parse_notification``, whatever the bytes: the request handler answers 400 with that message and
never 500. No I/O, no clock.

Strict, because what passes here is stored raw (the incident store) and rendered into Slack:
every string anywhere in the document is valid Unicode without NUL (PostgreSQL's text and jsonb
refuse both) and at most 64 KiB, and no object repeats a key (which value would we believe?).
Fields Alertmanager may add later are tolerated, at the top level and inside alerts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Final, Literal

from ..policy.loading import Problem

AlertStatus = Literal["firing", "resolved"]
NotificationSource = Literal["alertmanager", "grafana"]
# "occurrence" is the name the policy (spec.threader.threadKey) and --thread-key give the
# fingerprint mode, so their value can be passed straight through.
ThreadKeyMode = Literal["fingerprint", "occurrence", "labels"]

WEBHOOK_VERSION: Final = "4"
GRAFANA_WEBHOOK_VERSION: Final = "1"
# Where each kind of notification is posted (app.py routes them): a notification sent to the
# other one's path is refused with a message naming the right one.
ALERTMANAGER_PATH: Final = "/alert"
GRAFANA_PATH: Final = "/webhook/grafana"
# Grafana's per-alert links, kept in Alert.links under these (its JSON) names when not empty.
GRAFANA_LINKS: Final = ("dashboardURL", "panelURL", "silenceURL", "imageURL")
# Alerts read from one notification; the renderer sets Alertmanager's maxAlerts to the same
# (render/objects.py THREADER_MAX_ALERTS), so Alertmanager truncates and says so
# (truncatedAlerts) instead of sending more. More than this are left out and counted, not refused.
MAX_ALERTS: Final = 1000
MAX_STRING_BYTES: Final = 64 * 1024  # UTF-8 bytes of any single string, keys included
MAX_FINGERPRINT_LENGTH: Final = 64
# Go's zero time.Time: Alertmanager's endsAt while an alert still fires.
ZERO_TIME: Final = datetime(1, 1, 1, tzinfo=UTC)
# The label set of the seed's thread key, in the seed's order.
SEED_KEY_LABELS: Final = ("alertname", "severity", "service", "cluster", "env")
DELIVERY_ID_LENGTH: Final = 32

BODY = "body"  # path of problems with the request body as a whole
_MAX_UINT64 = 2**64 - 1
# uint64 needs at most 20 digits; longer literals would only make int() work hard (or raise).
_MAX_INTEGER_DIGITS = 20
_MAX_REPORTED = 50  # problems spelled out in str(); the rest are counted
_MAX_KEY_SHOWN = 40

# Explicit ASCII classes throughout: \d and \w would also match other scripts' digits and letters.
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FINGERPRINT = re.compile(rf"[0-9a-fA-F]{{1,{MAX_FINGERPRINT_LENGTH}}}")
_SURROGATE = re.compile("[\ud800-\udfff]")
# RFC 3339 section 5.6 date-time; [Tt] and [Zz] because its ABNF is case-insensitive.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)


class InvalidNotification(ValueError):
    """The body is not a valid notification (Alertmanager v4, Grafana v1); ``problems`` says where
    and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = [str(p) for p in problems[:_MAX_REPORTED]]
        if len(problems) > _MAX_REPORTED:
            shown.append(f"... and {len(problems) - _MAX_REPORTED} more problems")
        super().__init__("\n".join(shown))


@dataclass(frozen=True)
class Alert:
    status: AlertStatus
    labels: Mapping[str, str]  # read-only views: a parsed alert cannot be changed in place
    annotations: Mapping[str, str]
    starts_at: datetime  # UTC
    ends_at: datetime | None  # UTC; None for Alertmanager's zero time (still firing)
    generator_url: str
    fingerprint: str
    # Grafana's dashboardURL/panelURL/silenceURL/imageURL, only the non-empty ones; and its
    # values (refId -> number). Empty for Alertmanager's alerts.
    links: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)
    values: Mapping[str, float] = field(default_factory=lambda: _NO_VALUES)


@dataclass(frozen=True)
class Notification:
    version: str
    group_key: str
    truncated_alerts: int
    status: AlertStatus
    receiver: str
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    alerts: tuple[Alert, ...]
    # Alerts past MAX_ALERTS, left out here (not refused: a 4xx would lose the whole group).
    alerts_over_limit: int = 0
    source: NotificationSource = "alertmanager"
    # Grafana's top-level extras (its contact point's templated title and message); empty and
    # None for Alertmanager.
    title: str = ""
    message: str = ""
    org_id: int | None = None


def parse_notification(body: bytes) -> Notification:
    """The Alertmanager notification in ``body``, or ``InvalidNotification`` with every problem
    found."""
    return _parse(body, "alertmanager")


def parse_grafana_notification(body: bytes) -> Notification:
    """The Grafana (Unified Alerting webhook contact point) notification in ``body``, checked as
    strictly as ``parse_notification`` checks Alertmanager's, or ``InvalidNotification``."""
    return _parse(body, "grafana")


def _parse(body: bytes, source: NotificationSource) -> Notification:
    reader = _Reader(_decode(body))
    notification = reader.notification(source)
    if reader.problems:
        raise InvalidNotification(reader.problems)
    return notification


def alert_from_json(data: Any) -> Alert:
    """One alert from its Alertmanager JSON form (``alert_to_json``'s output, or one element of a
    notification's ``alerts``), checked like ``parse_notification`` checks it; paths are relative
    to the alert."""
    reader = _Reader(data)
    alert = reader.alert(data, "", extended=True)
    if reader.problems:
        raise InvalidNotification(reader.problems)
    return alert


def alert_to_json(alert: Alert) -> dict[str, Any]:
    """The alert in Alertmanager's JSON form, times in UTC; ``alert_from_json`` reverses it.

    Grafana's links and values are added only when there are some, so an Alertmanager alert's
    JSON (as stored in the outbox) is exactly Alertmanager's form.
    """
    document: dict[str, Any] = {
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": format_rfc3339(alert.starts_at),
        "endsAt": format_rfc3339(alert.ends_at or ZERO_TIME),
        "generatorURL": alert.generator_url,
        "fingerprint": alert.fingerprint,
    }
    document.update((name, url) for name, url in alert.links.items() if url)
    if alert.values:
        document["values"] = dict(alert.values)
    return document


def thread_key(alert: Alert, mode: ThreadKeyMode = "fingerprint") -> str:
    """Which Slack thread the alert belongs to.

    fingerprint (alias occurrence): one thread per occurrence, ``<fingerprint>@<startsAt>``; a
    re-fire after resolution starts at a new time, so it opens a new thread.
    labels: the seed's ``alertname|severity|service|cluster|env``. A ``|`` or ``\\`` inside a
    value is backslash-escaped so that two different label sets never share a key.
    """
    if mode == "labels":
        return "|".join(_escape_key_part(alert.labels.get(name, "")) for name in SEED_KEY_LABELS)
    return f"{alert.fingerprint}@{format_rfc3339(alert.starts_at)}"


def delivery_id(group_key: str, alert: Alert) -> str:
    """The idempotency key of one alert of one notification: the same alert redelivered, or sent
    by both members of an HA pair, gets the same id.

    Alertmanager zeroes endsAt while an alert fires, so a repeat notification of a firing alert
    (repeat_interval) has the same id as a redelivery of the first one.
    """
    canonical = json.dumps(
        [
            group_key,
            alert.fingerprint,
            alert.status,
            format_rfc3339(alert.starts_at),
            format_rfc3339(alert.ends_at or ZERO_TIME),
        ],
        ensure_ascii=True,  # one byte form for every string, even unpaired surrogates
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:DELIVERY_ID_LENGTH]


def format_rfc3339(moment: datetime) -> str:
    """UTC with ``Z``, fractional seconds only when there are some (Go's RFC3339Nano style).

    A naive datetime is taken to be UTC already.
    """
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # f-string, not strftime: strftime("%Y") drops the zero padding of year 1 on glibc.
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_rfc3339(text: str) -> datetime | None:
    """The instant in UTC, or None if ``text`` is not an RFC 3339 date-time Python can hold.

    Fractional seconds beyond microseconds (Go sends nanoseconds) are truncated. Leap seconds
    (:60) are refused, as Go's time.Parse refuses them.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_hours, off_minutes = match.groups()
    offset = timedelta()
    if sign is not None:
        if int(off_hours) > 23 or int(off_minutes) > 59:
            return None
        offset = timedelta(hours=int(off_hours), minutes=int(off_minutes))
        if sign == "-":
            offset = -offset
    try:
        local = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "")[:6].ljust(6, "0")),
            tzinfo=timezone(offset),
        )
        return local.astimezone(UTC)
    except (ValueError, OverflowError):  # 2024-02-30, 25:00, or shifted out of years 1..9999
        return None


# --- decoding ------------------------------------------------------------------------------------


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers which keys it had more than once (json keeps the last)."""

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.duplicates: tuple[str, ...] = ()
        if len(self) != len(pairs):
            seen: set[str] = set()
            repeated: dict[str, None] = {}  # ordered set
            for key, _value in pairs:
                if key in seen:
                    repeated[key] = None
                seen.add(key)
            self.duplicates = tuple(repeated)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_integer(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INTEGER_DIGITS:
        raise ValueError(f"integer with more than {_MAX_INTEGER_DIGITS} digits")
    return int(text)


def _decode(body: bytes) -> Any:
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidNotification(
            [Problem(BODY, f"not valid UTF-8 (byte {error.start})")]
        ) from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_JsonObject,
            parse_constant=_reject_constant,
            parse_int=_parse_integer,
        )
    except RecursionError:
        raise InvalidNotification([Problem(BODY, "JSON nested too deeply")]) from None
    except ValueError as error:  # JSONDecodeError, NaN/Infinity, over-long integers
        raise InvalidNotification([Problem(BODY, f"not valid JSON: {error}")]) from None


# --- checking ------------------------------------------------------------------------------------

_MISSING: Final = object()
_NO_LABELS: Final[Mapping[str, str]] = MappingProxyType({})
_NO_VALUES: Final[Mapping[str, float]] = MappingProxyType({})
_VERSIONS: Final[Mapping[NotificationSource, tuple[str, str]]] = MappingProxyType(
    {
        "alertmanager": (WEBHOOK_VERSION, ALERTMANAGER_PATH),
        "grafana": (GRAFANA_WEBHOOK_VERSION, GRAFANA_PATH),
    }
)
_SENDER: Final[Mapping[NotificationSource, str]] = MappingProxyType(
    {"alertmanager": "Alertmanager's webhook", "grafana": "Grafana's webhook contact point"}
)
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return next((name for kind, name in _JSON_TYPES.items() if isinstance(value, kind)), "?")


def _show(text: str) -> str:
    """A received string quoted for a problem message: ASCII only, so the 400 answer can always
    be encoded, and short."""
    if len(text) > _MAX_KEY_SHOWN:
        text = text[:_MAX_KEY_SHOWN] + "..."
    return json.dumps(text, ensure_ascii=True)


def _join(path: str, key: str) -> str:
    if len(key) <= _MAX_KEY_SHOWN and _LABEL_NAME.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_show(key)}]"


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    if _SURROGATE.search(text):
        return "contains an unpaired surrogate (not valid Unicode)"
    # Cheap test first: no string of at most a quarter of the limit in characters can exceed it.
    if len(text) * 4 > MAX_STRING_BYTES and len(text.encode("utf-8")) > MAX_STRING_BYTES:
        return f"is longer than {MAX_STRING_BYTES} bytes"
    return None


def _escape_key_part(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|")


def _empty_notification() -> Notification:
    """The placeholder of a notification too broken to read further."""
    return Notification("", "", 0, "firing", "", _NO_LABELS, _NO_LABELS, _NO_LABELS, "", ())


class _Reader:
    """Collects the problems of one document: first what holds for every node (no repeated keys,
    clean strings), then the webhook's structure."""

    def __init__(self, document: Any) -> None:
        self.document = document
        self.problems: list[Problem] = []
        # Strings already reported as unclean, so their format is not reported on top.
        self._bad_keys: set[str] = set()
        self._bad_values: set[str] = set()
        self._scan(document)

    def _report(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path or BODY, reason))

    def _scan(self, document: Any) -> None:
        # Iterative, in document order: a recursive walk could overflow on deep (but parseable)
        # nesting.
        stack: list[tuple[Any, str]] = [(document, "")]
        while stack:
            node, path = stack.pop()
            if isinstance(node, dict):
                for key in getattr(node, "duplicates", ()):
                    self._report(_join(path, key), "duplicate key")
                children = []
                for key, value in node.items():
                    child = _join(path, key)
                    reason = _string_problem(key)
                    if reason is not None:
                        self._report(child, f"key {reason}")
                        self._bad_keys.add(child)
                    children.append((value, child))
                stack.extend(reversed(children))
            elif isinstance(node, list):
                stack.extend(reversed([(item, f"{path}[{i}]") for i, item in enumerate(node)]))
            elif isinstance(node, str):
                reason = _string_problem(node)
                if reason is not None:
                    self._report(path, reason)
                    self._bad_values.add(path)

    # --- the notification ---

    def notification(self, source: NotificationSource = "alertmanager") -> Notification:
        document = self.document
        if not isinstance(document, dict):
            self._report(BODY, f"must be a JSON object, got {_json_type(document)}")
            return _empty_notification()
        version = self._string(document, "", "version")
        if self._clean_string(document, "", "version") and version != _VERSIONS[source][0]:
            self._wrong_version(version, source)
            if any(version == v for v, _path in _VERSIONS.values()):
                # The other sender's notification: its own fields would only be noise.
                del self.problems[:-1]
                return _empty_notification()
        grafana = source == "grafana"
        notification = Notification(
            version=version,
            group_key=self._string(document, "", "groupKey", non_empty=True),
            truncated_alerts=self._count(document, "", "truncatedAlerts"),
            status=self._status(document, ""),
            receiver=self._string(document, "", "receiver", non_empty=True),
            group_labels=self._map(document, "", "groupLabels", "label"),
            common_labels=self._map(document, "", "commonLabels", "label"),
            common_annotations=self._map(document, "", "commonAnnotations", "annotation"),
            external_url=self._string(document, "", "externalURL"),
            alerts=self._alerts(document, extended=grafana),
            alerts_over_limit=self._over_limit(document),
            source=source,
        )
        if not grafana:
            return notification
        # Grafana's webhookMessage has no omitempty on these: they are always sent. state
        # ("alerting" or "ok") only repeats status, so it is checked but not kept.
        self._string(document, "", "state")
        return replace(
            notification,
            title=self._string(document, "", "title"),
            message=self._string(document, "", "message"),
            org_id=self._count(document, "", "orgId"),
        )

    def _wrong_version(self, version: str, source: NotificationSource) -> None:
        expected, _path = _VERSIONS[source]
        reason = f'must be "{expected}", got {_show(version)}'
        for other, (other_version, other_path) in _VERSIONS.items():
            if other != source and version == other_version:
                reason += f" ({_SENDER[other]} sends that: post it to {other_path})"
        self._report("version", reason)

    def _alerts(self, document: dict[str, Any], *, extended: bool) -> tuple[Alert, ...]:
        path, value = self._field(document, "", "alerts")
        if value is _MISSING:
            return ()
        if not isinstance(value, list):
            self._report(path, f"must be an array of alerts, got {_json_type(value)}")
            return ()
        if not value:
            self._report(path, "must contain at least one alert")
        # Only the first MAX_ALERTS are read (as Alertmanager's max_alerts keeps the first):
        # refusing more would make Alertmanager drop the whole group, it never retries a 4xx.
        return tuple(
            self.alert(item, f"{path}[{i}]", extended=extended)
            for i, item in enumerate(value[:MAX_ALERTS])
        )

    def _over_limit(self, document: dict[str, Any]) -> int:
        alerts = document.get("alerts")
        return max(0, len(alerts) - MAX_ALERTS) if isinstance(alerts, list) else 0

    def alert(self, item: Any, path: str, *, extended: bool = False) -> Alert:
        """One alert; ``extended``: with Grafana's optional links and values."""
        if not isinstance(item, dict):
            self._report(path, f"must be an object, got {_json_type(item)}")
            return Alert("firing", _NO_LABELS, _NO_LABELS, ZERO_TIME, None, "", "")
        status = self._status(item, path)
        labels = self._map(item, path, "labels", "label")
        if item.get("labels") == {}:  # Alertmanager refuses an alert without labels, too
            self._report(_join(path, "labels"), "must have at least one label")
        starts_at, starts_ok = self._time(item, path, "startsAt")
        if starts_ok and starts_at is None:
            self._report(_join(path, "startsAt"), "must not be the zero time")
        ends_at, ends_ok = self._time(item, path, "endsAt")
        ends_path = _join(path, "endsAt")
        if starts_ok and ends_ok and starts_at and ends_at and ends_at < starts_at:
            self._report(ends_path, "is before startsAt")
        if status == "resolved" and ends_ok and ends_at is None:
            self._report(ends_path, "a resolved alert needs its end time, not the zero time")
        fingerprint = self._string(item, path, "fingerprint")
        if self._clean_string(item, path, "fingerprint") and not _FINGERPRINT.fullmatch(
            fingerprint
        ):
            self._report(
                _join(path, "fingerprint"),
                f"must be 1 to {MAX_FINGERPRINT_LENGTH} hexadecimal digits",
            )
        return Alert(
            status=status,
            labels=labels,
            annotations=self._map(item, path, "annotations", "annotation"),
            starts_at=starts_at or ZERO_TIME,
            ends_at=ends_at,
            generator_url=self._string(item, path, "generatorURL"),
            fingerprint=fingerprint,
            links=self._links(item, path) if extended else _NO_LABELS,
            values=self._values(item, path) if extended else _NO_VALUES,
        )

    def _links(self, item: dict[str, Any], path: str) -> Mapping[str, str]:
        """Grafana's links, the non-empty ones. Each may be missing (imageURL is omitempty)."""
        links: dict[str, str] = {}
        for name in GRAFANA_LINKS:
            if name in item and (url := self._string(item, path, name)):
                links[name] = url
        if "valueString" in item:  # deprecated, superseded by values: checked, not kept
            self._string(item, path, "valueString")
        return MappingProxyType(links)

    def _values(self, item: dict[str, Any], path: str) -> Mapping[str, float]:
        """Grafana's values: refId -> finite number; ``null`` or missing when there are none."""
        value = item.get("values")
        if value is None:
            return _NO_VALUES
        values_path = _join(path, "values")
        if not isinstance(value, dict):
            self._report(
                values_path, f"must be an object of numbers or null, got {_json_type(value)}"
            )
            return _NO_VALUES
        result: dict[str, float] = {}
        for name, number in value.items():
            entry = _join(values_path, name)
            if type(number) not in (int, float):  # bool is an int, but not a JSON number
                self._report(entry, f"must be a number, got {_json_type(number)}")
            elif not math.isfinite(number):  # 1e999: Grafana (Go) cannot send it
                self._report(entry, "must be a finite number")
            else:
                result[name] = float(number)
        return MappingProxyType(result)

    # --- typed fields; each reports its problems and returns a placeholder when invalid ---

    def _field(self, obj: dict[str, Any], parent: str, key: str) -> tuple[str, Any]:
        path = _join(parent, key)
        if key not in obj:
            self._report(path, "is required")
            return path, _MISSING
        return path, obj[key]

    def _string(
        self, obj: dict[str, Any], parent: str, key: str, *, non_empty: bool = False
    ) -> str:
        path, value = self._field(obj, parent, key)
        if value is _MISSING:
            return ""
        if type(value) is not str:
            self._report(path, f"must be a string, got {_json_type(value)}")
            return ""
        text: str = value  # JSON's value, a str as just checked
        if non_empty and not text:
            self._report(path, "must not be empty")
        return text

    def _status(self, obj: dict[str, Any], parent: str) -> AlertStatus:
        value = self._string(obj, parent, "status")
        if value == "resolved":
            return "resolved"
        if value != "firing" and self._clean_string(obj, parent, "status"):
            self._report(
                _join(parent, "status"), f'must be "firing" or "resolved", got {_show(value)}'
            )
        return "firing"

    def _clean_string(self, obj: dict[str, Any], parent: str, key: str) -> bool:
        """Whether ``obj[key]`` is a string already found clean, so its format is worth checking."""
        return type(obj.get(key)) is str and _join(parent, key) not in self._bad_values

    def _count(self, obj: dict[str, Any], parent: str, key: str) -> int:
        path, value = self._field(obj, parent, key)
        if value is _MISSING:
            return 0
        if type(value) is not int or not 0 <= value <= _MAX_UINT64:
            shown = repr(value) if type(value) in (int, float) else _json_type(value)
            self._report(path, f"must be a non-negative integer, got {shown}")
            return 0
        return value

    def _map(self, obj: dict[str, Any], parent: str, key: str, kind: str) -> Mapping[str, str]:
        """A label or annotation map: names to strings; label names not empty."""
        path, value = self._field(obj, parent, key)
        if value is _MISSING:
            return _NO_LABELS
        if not isinstance(value, dict):
            self._report(path, f"must be an object of {kind}s, got {_json_type(value)}")
            return _NO_LABELS
        result: dict[str, str] = {}
        for name, text in value.items():
            entry = _join(path, name)
            # Only emptiness is refused: Prometheus 3 and Alertmanager 0.28 allow any UTF-8 label
            # name (k8s.pod, service.name), and a 400 would make Alertmanager drop the alert.
            if kind == "label" and entry not in self._bad_keys and not name:
                self._report(entry, "a label name must not be empty")
            if type(text) is not str:
                self._report(entry, f"{kind} value must be a string, got {_json_type(text)}")
                continue
            result[name] = text
        return MappingProxyType(result)

    def _time(self, obj: dict[str, Any], parent: str, key: str) -> tuple[datetime | None, bool]:
        """(the time in UTC or None for the zero time, whether it was valid)."""
        path, value = self._field(obj, parent, key)
        if value is _MISSING:
            return None, False
        if type(value) is not str:
            self._report(path, f"must be an RFC 3339 time string, got {_json_type(value)}")
            return None, False
        if path in self._bad_values:
            return None, False
        moment = parse_rfc3339(value)
        if moment is None:
            self._report(path, "not an RFC 3339 time")
            return None, False
        return (None if moment == ZERO_TIME else moment), True
