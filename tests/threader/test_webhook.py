"""Alertmanager webhook v4 parsing: realistic payloads pass, each kind of bad input fails with the
exact path of the problem, nothing but InvalidNotification ever escapes, and the bookkeeping keys
(thread_key, delivery_id) are stable where they must be and differ where they must."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumen_alerting.policy.loading import Problem
from lumen_alerting.threader.webhook import (
    MAX_ALERTS,
    MAX_STRING_BYTES,
    Alert,
    InvalidNotification,
    Notification,
    alert_from_json,
    alert_to_json,
    delivery_id,
    format_rfc3339,
    parse_notification,
    parse_rfc3339,
    thread_key,
)

# --- fixtures: what kube-prometheus-stack's Alertmanager sends ------------------------------------

GROUP_KEY = '{}/{namespace="lumen"}:{alertname="KubePodCrashLooping", service="lumen-gateway"}'
CRASH_LOOPING_LABELS = {
    "alertname": "KubePodCrashLooping",
    "cluster": "prod-eu-1",
    "container": "gateway",
    "env": "production",
    "instance": "10.42.0.17:8080",
    "job": "kube-state-metrics",
    "lumen_policy": "gateway",
    "namespace": "lumen",
    "pod": "lumen-gateway-7d9f8b6c5d-x2x9q",
    "service": "lumen-gateway",
    "severity": "critical",
}


def crash_looping() -> dict[str, Any]:
    """One firing alert, as Alertmanager 0.27 posts it."""
    return {
        "receiver": "lumen/lumen-alerts/slack-critical",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": dict(CRASH_LOOPING_LABELS),
                "annotations": {
                    "summary": "Pod lumen/lumen-gateway-7d9f8b6c5d-x2x9q is crash looping.",
                    "description": "Pod lumen/lumen-gateway-7d9f8b6c5d-x2x9q (gateway) is in "
                    "waiting state (reason: CrashLoopBackOff).",
                    "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/"
                    "kubepodcrashlooping",
                },
                "startsAt": "2024-05-02T08:14:37.528Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=max_over_time"
                "%28kube_pod_container_status_waiting_reason%5B5m%5D%29+%3E%3D+1&g0.tab=1",
                "fingerprint": "5e1a6f3b1c9d2e47",
            }
        ],
        "groupLabels": {"alertname": "KubePodCrashLooping", "service": "lumen-gateway"},
        "commonLabels": dict(CRASH_LOOPING_LABELS),
        "commonAnnotations": {
            "summary": "Pod lumen/lumen-gateway-7d9f8b6c5d-x2x9q is crash looping."
        },
        "externalURL": "http://alertmanager.monitoring:9093",
        "version": "4",
        "groupKey": GROUP_KEY,
        "truncatedAlerts": 0,
    }


def fifty_targets_down() -> dict[str, Any]:
    """50 alerts of one group (a node pool went away), 10 of them already resolved."""
    alerts = []
    for i in range(50):
        resolved = i % 5 == 0
        alerts.append(
            {
                "status": "resolved" if resolved else "firing",
                "labels": {
                    "alertname": "TargetDown",
                    "job": "node-exporter",
                    "namespace": "monitoring",
                    "service": "node-exporter",
                    "severity": "warning",
                    "instance": f"10.0.{i // 10}.{i % 10 + 10}:9100",
                },
                "annotations": {
                    "summary": "One or more targets are unreachable.",
                    "description": f"100% of the node-exporter/node-exporter targets in "
                    f"monitoring namespace are down (instance {i}).",
                },
                "startsAt": f"2024-05-02T09:{i:02d}:00Z",
                "endsAt": f"2024-05-02T10:{i:02d}:30Z" if resolved else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=up+%3D%3D+0",
                "fingerprint": f"{0xA0B1C2D3E4F50000 + i:016x}",
            }
        )
    return {
        "version": "4",
        "groupKey": '{}:{alertname="TargetDown"}',
        "truncatedAlerts": 3,
        "status": "firing",
        "receiver": "default",
        "groupLabels": {"alertname": "TargetDown"},
        "commonLabels": {"alertname": "TargetDown", "severity": "warning"},
        "commonAnnotations": {"summary": "One or more targets are unreachable."},
        "externalURL": "http://alertmanager.monitoring:9093",
        "alerts": alerts,
    }


# Tokyo Alertmanager: Go's RFC3339Nano with nanoseconds and a +09:00 offset, plus fields a newer
# Alertmanager might add (tolerated).
TOKYO_RESOLVED = """{
  "version": "4",
  "groupKey": "{}:{alertname=\\"DatabaseCriticalFailure\\"}",
  "truncatedAlerts": 0,
  "status": "resolved",
  "receiver": "slack-critical",
  "groupLabels": {"alertname": "DatabaseCriticalFailure"},
  "commonLabels": {"alertname": "DatabaseCriticalFailure", "severity": "critical"},
  "commonAnnotations": {},
  "externalURL": "https://alertmanager.tokyo.example.com",
  "futureTopLevelField": {"nested": [1, 2, {"deep": true}]},
  "alerts": [
    {
      "status": "resolved",
      "labels": {"alertname": "DatabaseCriticalFailure", "severity": "critical",
                 "service": "database", "cluster": "production", "instance": "db01.example.com"},
      "annotations": {"summary": "Database Critical Failure",
                      "description": "MySQL connection completely failed",
                      "runbook_url": "https://docs.example.com/runbooks/db-failure"},
      "startsAt": "2024-01-15T23:30:25.123456789+09:00",
      "endsAt": "2024-01-15T23:45:30.5+09:00",
      "generatorURL": "https://prometheus.tokyo.example.com/graph?g0.expr=mysql_up+%3D%3D+0",
      "fingerprint": "c0ffee0123456789",
      "futureAlertField": "tolerated"
    }
  ]
}"""


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def parse(payload: Any) -> Notification:
    return parse_notification(body(payload))


# --- valid payloads -------------------------------------------------------------------------------


def test_a_firing_alert_from_kube_prometheus_stack() -> None:
    notification = parse(crash_looping())
    assert notification.version == "4"
    assert notification.group_key == GROUP_KEY
    assert notification.truncated_alerts == 0
    assert notification.status == "firing"
    assert notification.receiver == "lumen/lumen-alerts/slack-critical"
    assert notification.group_labels == {
        "alertname": "KubePodCrashLooping",
        "service": "lumen-gateway",
    }
    assert notification.common_labels == CRASH_LOOPING_LABELS
    assert notification.external_url == "http://alertmanager.monitoring:9093"
    [alert] = notification.alerts
    assert alert.status == "firing"
    assert alert.labels == CRASH_LOOPING_LABELS
    assert alert.annotations["runbook_url"].endswith("/kubepodcrashlooping")
    assert alert.starts_at == datetime(2024, 5, 2, 8, 14, 37, 528000, tzinfo=UTC)
    assert alert.ends_at is None  # Go's zero time: still firing
    assert alert.generator_url.startswith("http://prometheus.monitoring:9090/graph?")
    assert alert.fingerprint == "5e1a6f3b1c9d2e47"


def test_fifty_alerts_in_one_notification() -> None:
    notification = parse(fifty_targets_down())
    assert len(notification.alerts) == 50
    assert notification.truncated_alerts == 3
    resolved = [a for a in notification.alerts if a.status == "resolved"]
    assert len(resolved) == 10
    assert all(a.ends_at is not None and a.ends_at > a.starts_at for a in resolved)
    assert all(a.ends_at is None for a in notification.alerts if a.status == "firing")
    assert notification.alerts[49].labels["instance"] == "10.0.4.19:9100"
    assert notification.alerts[49].starts_at == datetime(2024, 5, 2, 9, 49, tzinfo=UTC)
    assert len({a.fingerprint for a in notification.alerts}) == 50


def test_fractional_seconds_and_offsets_become_utc_and_new_fields_are_tolerated() -> None:
    notification = parse_notification(TOKYO_RESOLVED.encode())
    [alert] = notification.alerts
    # Nanoseconds are cut to microseconds; +09:00 becomes UTC.
    assert alert.starts_at == datetime(2024, 1, 15, 14, 30, 25, 123456, tzinfo=UTC)
    assert alert.ends_at == datetime(2024, 1, 15, 14, 45, 30, 500000, tzinfo=UTC)
    assert alert.starts_at.utcoffset() == alert.ends_at.utcoffset() == UTC.utcoffset(None)
    assert notification.status == "resolved"
    assert notification.common_annotations == {}


def test_parsed_values_cannot_be_changed() -> None:
    notification = parse(crash_looping())
    alert = notification.alerts[0]
    with pytest.raises(TypeError):
        alert.labels["severity"] = "info"  # type: ignore[index]
    with pytest.raises(AttributeError):
        alert.status = "resolved"  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        "🔥 Disk full on 👨‍👩‍👧‍👦 node 🇰🇷",  # emoji, ZWJ sequence, flag
        "שרת מסד הנתונים נפל",  # right-to-left
        "e\u0301 a\u0308 \u1100\u1161\u11a8",  # combining marks, Hangul jamo
        "\u200f\u202eevil\u202c zero\u200bwidth",  # bidi controls and format characters
        "\x01\x1f\x7f tabs\tand\nnewlines",  # other control characters are valid Unicode
        "x" * MAX_STRING_BYTES,  # exactly at the limit
        "한" * (MAX_STRING_BYTES // 3),  # 3-byte characters, at the limit in bytes
    ],
)
def test_any_unicode_other_than_nul_and_surrogates_is_accepted(text: str) -> None:
    payload = crash_looping()
    payload["alerts"][0]["annotations"]["description"] = text
    payload["alerts"][0]["labels"]["pod"] = text
    [alert] = parse(payload).alerts
    assert alert.annotations["description"] == text
    assert alert.labels["pod"] == text


def test_lower_case_t_and_z_and_negative_offsets() -> None:
    payload = crash_looping()
    payload["alerts"][0]["startsAt"] = "2024-05-02t08:14:37z"
    payload["alerts"][0]["status"] = "resolved"
    payload["alerts"][0]["endsAt"] = "2024-05-02T04:20:00-04:30"
    [alert] = parse(payload).alerts
    assert alert.starts_at == datetime(2024, 5, 2, 8, 14, 37, tzinfo=UTC)
    assert alert.ends_at == datetime(2024, 5, 2, 8, 50, tzinfo=UTC)


def test_exactly_the_maximum_number_of_alerts() -> None:
    payload = fifty_targets_down()
    payload["alerts"] = [copy.deepcopy(payload["alerts"][1]) for _ in range(MAX_ALERTS)]
    assert len(parse(payload).alerts) == MAX_ALERTS
    assert parse(payload).alerts_over_limit == 0


def test_alerts_past_the_maximum_are_left_out_and_counted_not_refused() -> None:
    # A 400 would make Alertmanager drop the whole group: it never retries a 4xx.
    payload = fifty_targets_down()
    payload["alerts"] = [copy.deepcopy(payload["alerts"][1]) for _ in range(MAX_ALERTS + 7)]
    payload["alerts"][0]["labels"]["first"] = "yes"
    notification = parse(payload)
    assert len(notification.alerts) == MAX_ALERTS, "the first ones, as Alertmanager keeps"
    assert notification.alerts[0].labels["first"] == "yes"
    assert notification.alerts_over_limit == 7


def test_utf8_label_names_of_prometheus_3_are_accepted() -> None:
    payload = crash_looping()
    payload["alerts"][0]["labels"].update({"k8s.pod": "a", "team-name": "b", "1st": "c"})
    payload["groupLabels"] = {"service.name": "checkout"}
    notification = parse(payload)
    assert notification.alerts[0].labels["k8s.pod"] == "a"
    assert notification.group_labels == {"service.name": "checkout"}


def test_empty_group_labels_and_empty_urls_are_allowed() -> None:
    payload = crash_looping()
    payload["groupLabels"] = {}
    payload["externalURL"] = ""
    payload["alerts"][0]["generatorURL"] = ""
    notification = parse(payload)
    assert notification.group_labels == {}
    assert notification.alerts[0].generator_url == ""


def test_deep_nesting_in_an_unknown_field_is_tolerated() -> None:
    payload = crash_looping()
    payload["extra"] = json.loads("[" * 200 + "]" * 200)
    assert parse(payload).receiver == "lumen/lumen-alerts/slack-critical"


def test_an_alert_round_trips_through_its_json_form() -> None:
    for alert in parse_notification(TOKYO_RESOLVED.encode()).alerts + parse(crash_looping()).alerts:
        data = alert_to_json(alert)
        assert json.loads(json.dumps(data)) == data
        assert alert_from_json(data) == alert
    assert alert_to_json(parse(crash_looping()).alerts[0])["endsAt"] == "0001-01-01T00:00:00Z"


# --- invalid payloads: one problem each, with its exact path --------------------------------------

Mutation = Callable[[dict[str, Any]], Any]


def top(**changes: Any) -> Mutation:
    def mutate(payload: dict[str, Any]) -> Any:
        payload.update(changes)
        return payload

    return mutate


def first_alert(**changes: Any) -> Mutation:
    def mutate(payload: dict[str, Any]) -> Any:
        payload["alerts"][0].update(changes)
        return payload

    return mutate


def drop(*path: str | int) -> Mutation:
    def mutate(payload: dict[str, Any]) -> Any:
        node: Any = payload
        for step in path[:-1]:
            node = node[step]
        del node[path[-1]]
        return payload

    return mutate


def put(value: Any, *path: str | int) -> Mutation:
    def mutate(payload: dict[str, Any]) -> Any:
        node: Any = payload
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        return payload

    return mutate


@dataclass(frozen=True)
class RawBody:
    """A body built as bytes, not by changing the payload."""

    make: Callable[[], bytes]


def raw(placeholder_path: tuple[str | int, ...], json_text: str) -> RawBody:
    """A body whose value at ``placeholder_path`` is ``json_text`` verbatim (for what json.dumps
    cannot write: lone surrogate escapes, repeated keys)."""

    def make() -> bytes:
        payload = put("@@PLACEHOLDER@@", *placeholder_path)(crash_looping())
        return body(payload).replace(b'"@@PLACEHOLDER@@"', json_text.encode())

    return RawBody(make)


def replaced(old: bytes, new: bytes) -> RawBody:
    return RawBody(lambda: body(crash_looping()).replace(old, new, 1))


def resolved_at(ends_at: str) -> Mutation:
    return first_alert(status="resolved", endsAt=ends_at)


INVALID: list[tuple[str, Mutation | RawBody | bytes, str, str]] = [
    # (id, mutation of crash_looping() or a body, path, reason fragment)
    ("wrong version", top(version="3"), "version", 'must be "4", got "3"'),
    ("version as number", top(version=4), "version", "must be a string, got a number"),
    ("missing version", drop("version"), "version", "is required"),
    ("missing groupKey", drop("groupKey"), "groupKey", "is required"),
    ("missing alerts", drop("alerts"), "alerts", "is required"),
    ("missing commonLabels", drop("commonLabels"), "commonLabels", "is required"),
    (
        "missing fingerprint",
        drop("alerts", 0, "fingerprint"),
        "alerts[0].fingerprint",
        "is required",
    ),
    ("missing startsAt", drop("alerts", 0, "startsAt"), "alerts[0].startsAt", "is required"),
    ("groupKey as number", top(groupKey=12), "groupKey", "must be a string, got a number"),
    ("empty groupKey", top(groupKey=""), "groupKey", "must not be empty"),
    ("receiver null", top(receiver=None), "receiver", "must be a string, got null"),
    (
        "externalURL as object",
        top(externalURL={}),
        "externalURL",
        "must be a string, got an object",
    ),
    (
        "generatorURL as array",
        first_alert(generatorURL=[]),
        "alerts[0].generatorURL",
        "got an array",
    ),
    (
        "truncatedAlerts as string",
        top(truncatedAlerts="0"),
        "truncatedAlerts",
        "integer, got a string",
    ),
    ("truncatedAlerts negative", top(truncatedAlerts=-1), "truncatedAlerts", "integer, got -1"),
    ("truncatedAlerts boolean", top(truncatedAlerts=True), "truncatedAlerts", "got a boolean"),
    ("truncatedAlerts fraction", top(truncatedAlerts=1.5), "truncatedAlerts", "got 1.5"),
    ("status pending", top(status="pending"), "status", 'must be "firing" or "resolved"'),
    ("alert status upper case", first_alert(status="FIRING"), "alerts[0].status", '"firing" or'),
    ("alert status number", first_alert(status=1), "alerts[0].status", "must be a string"),
    (
        "time with a space",
        first_alert(startsAt="2024-05-02 08:14:37Z"),
        "alerts[0].startsAt",
        "not an RFC 3339 time",
    ),
    (
        "time without offset",
        first_alert(startsAt="2024-05-02T08:14:37"),
        "alerts[0].startsAt",
        "not an RFC 3339 time",
    ),
    (
        "February 30th",
        first_alert(startsAt="2024-02-30T00:00:00Z"),
        "alerts[0].startsAt",
        "not an RFC 3339 time",
    ),
    (
        "leap second",
        first_alert(startsAt="2016-12-31T23:59:60Z"),
        "alerts[0].startsAt",
        "not an RFC 3339 time",
    ),
    (
        "offset hour 24",
        first_alert(startsAt="2024-05-02T08:14:37+24:00"),
        "alerts[0].startsAt",
        "not an RFC 3339 time",
    ),
    (
        "offset minute 60",
        first_alert(startsAt="2024-05-02T08:14:37+05:60"),
        "alerts[0].startsAt",
        "not an RFC 3339 time",
    ),
    (
        "full-width digits",
        first_alert(startsAt="\uff12\uff10\uff12\uff14-05-02T08:14:37Z"),
        "alerts[0].startsAt",
        "not an RFC 3339 time",
    ),
    (
        "trailing newline",
        first_alert(startsAt="2024-05-02T08:14:37Z\n"),
        "alerts[0].startsAt",
        "not an RFC 3339 time",
    ),
    (
        "before year 1 in UTC",
        first_alert(startsAt="0001-01-01T00:30:00+01:00"),
        "alerts[0].startsAt",
        "not an RFC 3339 time",
    ),
    (
        "epoch seconds",
        first_alert(startsAt=1714637677),
        "alerts[0].startsAt",
        "time string, got a number",
    ),
    (
        "zero startsAt",
        first_alert(startsAt="0001-01-01T00:00:00Z"),
        "alerts[0].startsAt",
        "must not be the zero time",
    ),
    ("bad endsAt", first_alert(endsAt="yesterday"), "alerts[0].endsAt", "not an RFC 3339 time"),
    (
        "ends before it starts",
        resolved_at("2024-05-02T08:14:36Z"),
        "alerts[0].endsAt",
        "is before startsAt",
    ),
    (
        "resolved without end",
        resolved_at("0001-01-01T00:00:00Z"),
        "alerts[0].endsAt",
        "resolved alert needs its end time",
    ),
    ("empty alerts", top(alerts=[]), "alerts", "must contain at least one alert"),
    ("alerts as object", top(alerts={}), "alerts", "must be an array of alerts, got an object"),
    (
        "alert as string",
        top(alerts=["KubePodCrashLooping"]),
        "alerts[0]",
        "must be an object, got a string",
    ),
    (
        "empty fingerprint",
        first_alert(fingerprint=""),
        "alerts[0].fingerprint",
        "1 to 64 hexadecimal digits",
    ),
    (
        "fingerprint not hex",
        first_alert(fingerprint="5e1a6f3b1c9d2e4g"),
        "alerts[0].fingerprint",
        "hexadecimal",
    ),
    (
        "fingerprint of 65 digits",
        first_alert(fingerprint="a" * 65),
        "alerts[0].fingerprint",
        "hexadecimal",
    ),
    (
        "fingerprint as number",
        first_alert(fingerprint=123),
        "alerts[0].fingerprint",
        "must be a string",
    ),
    ("empty label name", put("x", "commonLabels", ""), 'commonLabels[""]', "must not be empty"),
    (
        "label value number",
        put(5, "alerts", 0, "labels", "severity"),
        "alerts[0].labels.severity",
        "label value must be a string, got a number",
    ),
    (
        "label value null",
        put(None, "alerts", 0, "labels", "pod"),
        "alerts[0].labels.pod",
        "got null",
    ),
    (
        "annotation value list",
        put(["a"], "alerts", 0, "annotations", "summary"),
        "alerts[0].annotations.summary",
        "annotation value must be a string, got an array",
    ),
    (
        "labels as array",
        first_alert(labels=[["alertname", "X"]]),
        "alerts[0].labels",
        "must be an object of labels, got an array",
    ),
    ("no labels", first_alert(labels={}), "alerts[0].labels", "must have at least one label"),
    (
        "commonAnnotations null",
        top(commonAnnotations=None),
        "commonAnnotations",
        "must be an object of annotations, got null",
    ),
    (
        "lone high surrogate",
        raw(("alerts", 0, "annotations", "summary"), '"disk \\ud83d full"'),
        "alerts[0].annotations.summary",
        "unpaired surrogate",
    ),
    (
        "reversed surrogate pair",
        raw(("alerts", 0, "labels", "pod"), '"\\ude00\\ud83d"'),
        "alerts[0].labels.pod",
        "unpaired surrogate",
    ),
    (
        "lone surrogate in a key",
        raw(("alerts", 0, "labels"), '{"a\\udc00": "x", "alertname": "X"}'),
        'alerts[0].labels["a\\udc00"]',
        "key contains an unpaired surrogate",
    ),
    (
        "NUL in a label value",
        put("a\x00b", "alerts", 0, "labels", "pod"),
        "alerts[0].labels.pod",
        "contains a NUL character",
    ),
    (
        "NUL in an unknown field",
        top(extra={"note": ["\x00"]}),
        "extra.note[0]",
        "contains a NUL character",
    ),
    (
        "NUL in a key",
        put("x", "commonAnnotations", "a\x00"),
        'commonAnnotations["a\\u0000"]',
        "key contains a NUL character",
    ),
    (
        "repeated top-level key",
        raw(("receiver",), '"a", "receiver": "b"'),
        "receiver",
        "duplicate key",
    ),
    (
        "repeated label",
        raw(("alerts", 0, "labels", "severity"), '"critical", "severity": "info"'),
        "alerts[0].labels.severity",
        "duplicate key",
    ),
    (
        "huge annotation",
        put("x" * (MAX_STRING_BYTES + 1), "alerts", 0, "annotations", "description"),
        "alerts[0].annotations.description",
        "longer than 65536 bytes",
    ),
    (
        "huge multibyte string",
        put("é" * (MAX_STRING_BYTES // 2 + 1), "alerts", 0, "labels", "pod"),
        "alerts[0].labels.pod",
        "longer than 65536 bytes",
    ),
    (
        "huge key",
        put("x", "alerts", 0, "annotations", "k" * (MAX_STRING_BYTES + 1)),
        'alerts[0].annotations["kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk..."]',
        "key is longer than 65536 bytes",
    ),
    (
        "invalid UTF-8 byte",
        replaced(b"crash looping", b"crash \xff looping"),
        "body",
        "not valid UTF-8",
    ),
    (
        "UTF-8 encoded surrogate",
        replaced(b"gateway", b"gate\xed\xa0\x80way"),
        "body",
        "not valid UTF-8",
    ),
    ("Latin-1 body", '{"summary": "caf\xe9"}'.encode("latin-1"), "body", "not valid UTF-8"),
    ("not JSON", b"status=firing&alerts=1", "body", "not valid JSON"),
    ("truncated JSON", RawBody(lambda: body(crash_looping())[:-10]), "body", "not valid JSON"),
    ("empty body", b"", "body", "not valid JSON"),
    (
        "byte order mark",
        RawBody(lambda: b"\xef\xbb\xbf" + body(crash_looping())),
        "body",
        "not valid JSON",
    ),
    (
        "NaN",
        replaced(b'"truncatedAlerts": 0', b'"truncatedAlerts": NaN'),
        "body",
        "NaN is not JSON",
    ),
    (
        "absurdly long integer",
        replaced(b'"truncatedAlerts": 0', b'"truncatedAlerts": ' + b"9" * 5000),
        "body",
        "integer with more than 20 digits",
    ),
    ("nested too deeply", b"[" * 100_000 + b"]" * 100_000, "body", "nested too deeply"),
    ("JSON array", b"[]", "body", "must be a JSON object, got an array"),
    ("JSON string", b'"firing"', "body", "must be a JSON object, got a string"),
    ("JSON null", b"null", "body", "must be a JSON object, got null"),
]


def invalid_body(case: Mutation | RawBody | bytes) -> bytes:
    if isinstance(case, bytes):
        return case
    if isinstance(case, RawBody):
        return case.make()
    return body(case(crash_looping()))


@pytest.mark.parametrize(
    ("case", "path", "reason"),
    [pytest.param(case, path, reason, id=name) for name, case, path, reason in INVALID],
)
def test_invalid_notification_names_the_problem(
    case: Mutation | RawBody | bytes, path: str, reason: str
) -> None:
    with pytest.raises(InvalidNotification) as raised:
        parse_notification(invalid_body(case))
    matching = [p for p in raised.value.problems if p.path == path and reason in p.reason]
    assert matching, raised.value.problems
    assert f"{path}: " in str(raised.value)
    # The 400 answer is built from str(): it must encode, whatever the input held.
    str(raised.value).encode("ascii", "strict")


def test_there_are_enough_invalid_cases() -> None:
    assert len(INVALID) >= 25
    assert len({name for name, *_ in INVALID}) == len(INVALID)


def test_every_problem_is_reported_at_once() -> None:
    payload = crash_looping()
    payload["version"] = "5"
    payload["alerts"] = [payload["alerts"][0], copy.deepcopy(payload["alerts"][0])]
    payload["alerts"][1]["startsAt"] = "soon"
    payload["alerts"][1]["labels"][""] = "x"
    with pytest.raises(InvalidNotification) as raised:
        parse(payload)
    assert {p.path for p in raised.value.problems} == {
        "version",
        "alerts[1].startsAt",
        'alerts[1].labels[""]',
    }
    assert str(raised.value).splitlines()[0] == 'version: must be "4", got "5"'


def test_a_bad_string_is_not_also_reported_as_a_bad_format() -> None:
    with pytest.raises(InvalidNotification) as raised:
        parse(first_alert(status="firing\x00", startsAt="2024\x00")(crash_looping()))
    assert raised.value.problems == [
        Problem("alerts[0].status", "contains a NUL character"),
        Problem("alerts[0].startsAt", "contains a NUL character"),
    ]


def test_the_message_of_many_problems_stays_readable() -> None:
    payload = fifty_targets_down()
    for alert in payload["alerts"]:
        alert["startsAt"] = "now"
        alert["fingerprint"] = "?"
    with pytest.raises(InvalidNotification) as raised:
        parse(payload)
    assert len(raised.value.problems) == 100
    lines = str(raised.value).splitlines()
    assert len(lines) == 51
    assert lines[-1] == "... and 50 more problems"


def test_alert_from_json_checks_like_the_notification_does() -> None:
    data = alert_to_json(parse(crash_looping()).alerts[0])
    data["startsAt"] = "later"
    with pytest.raises(InvalidNotification, match=r"^startsAt: not an RFC 3339 time$"):
        alert_from_json(data)
    with pytest.raises(InvalidNotification, match=r"^body: must be an object, got an array$"):
        alert_from_json([])


# --- fuzz: whatever comes in, only InvalidNotification goes out -----------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities are written as NaN/Infinity, which must be refused
    # Unpaired surrogates too: json.dumps escapes them, or writes them raw (invalid UTF-8).
    | st.text(alphabet=st.characters() | st.characters(categories=["Cs"]), max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (for choosing what to mutate)."""
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _containers(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _containers(value, (*path, index))
    return found


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    payload: Any = draw(st.sampled_from([crash_looping, fifty_targets_down]))()
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_containers(payload)))  # anew: the last change moved things
        if not path:
            payload = draw(json_values)
            continue
        parent: Any = payload
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
        else:
            parent.append(draw(json_values))
    text = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")  # raw surrogates are invalid UTF-8: also tried
    if draw(st.booleans()):
        position = draw(st.integers(0, len(data)))
        data = (
            data[:position]
            + draw(st.binary(max_size=4))
            + data[position + draw(st.integers(0, 4)) :]
        )
    return data


def _must_parse_or_refuse(data: bytes) -> None:
    try:
        notification = parse_notification(data)
    except InvalidNotification as error:
        assert error.problems
        assert all(isinstance(p, Problem) and p.path and p.reason for p in error.problems)
        str(error).encode("ascii")
    else:
        assert isinstance(notification, Notification)
        assert 1 <= len(notification.alerts) <= MAX_ALERTS


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_bodies())
def test_fuzz_mutated_payloads(data: bytes) -> None:
    _must_parse_or_refuse(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzz_arbitrary_bytes_and_json(data: bytes) -> None:
    _must_parse_or_refuse(data)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_fuzz_alert_from_json(data: Any) -> None:
    try:
        assert isinstance(alert_from_json(data), Alert)
    except InvalidNotification as error:
        assert error.problems


clean_text = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,15}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(
    labels=st.dictionaries(label_names, clean_text, min_size=1, max_size=6),
    annotations=st.dictionaries(clean_text, clean_text, max_size=4),
    starts_at=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9998, 1, 1)),
)
def test_fuzz_valid_alerts_parse_and_keep_their_values(
    labels: dict[str, str], annotations: dict[str, str], starts_at: datetime
) -> None:
    payload = crash_looping()
    payload["alerts"][0].update(
        labels=labels, annotations=annotations, startsAt=format_rfc3339(starts_at)
    )
    [alert] = parse(payload).alerts
    assert alert.labels == labels
    assert alert.annotations == annotations
    assert alert.starts_at == starts_at.replace(tzinfo=UTC)


# --- times ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-15T14:30:25Z", "2024-01-15T14:30:25Z"),
        ("2024-01-15T23:30:25.123456789+09:00", "2024-01-15T14:30:25.123456Z"),
        ("2024-01-15T14:30:25.100Z", "2024-01-15T14:30:25.1Z"),
        ("2024-01-15T00:00:00-00:30", "2024-01-15T00:30:00Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    ],
)
def test_rfc3339_normalises_to_utc(text: str, expected: str) -> None:
    moment = parse_rfc3339(text)
    assert moment is not None
    assert format_rfc3339(moment) == expected


# --- thread_key and delivery_id -------------------------------------------------------------------


def alert_with(**changes: Any) -> Alert:
    data = alert_to_json(parse(crash_looping()).alerts[0])
    data.update(changes)
    return alert_from_json(data)


def test_thread_key_per_occurrence() -> None:
    alert = parse(crash_looping()).alerts[0]
    assert thread_key(alert) == "5e1a6f3b1c9d2e47@2024-05-02T08:14:37.528Z"
    assert thread_key(alert, "fingerprint") == thread_key(alert, "occurrence") == thread_key(alert)
    # The same instant written with another offset is the same occurrence.
    assert thread_key(alert_with(startsAt="2024-05-02T17:14:37.528+09:00")) == thread_key(alert)
    # A re-fire after resolution starts later: a new thread.
    assert thread_key(alert_with(startsAt="2024-05-02T09:00:00Z")) != thread_key(alert)
    assert thread_key(alert_with(fingerprint="5e1a6f3b1c9d2e48")) != thread_key(alert)
    # Labels and annotations do not matter in this mode.
    assert thread_key(alert_with(annotations={"summary": "changed"})) == thread_key(alert)


def test_thread_key_from_the_seeds_labels() -> None:
    seed = alert_with(
        labels={
            "alertname": "TestAlert",
            "severity": "critical",
            "service": "database",
            "cluster": "production",
            "env": "production",
            "instance": "db01.example.com",
        }
    )
    assert thread_key(seed, "labels") == "TestAlert|critical|database|production|production"
    # Other labels, the fingerprint and the start time do not matter in this mode.
    later = alert_with(labels={**seed.labels, "instance": "db02"}, startsAt="2024-06-01T00:00:00Z")
    assert thread_key(later, "labels") == thread_key(seed, "labels")
    assert thread_key(alert_with(labels={"alertname": "X"}), "labels") == "X||||"


def test_thread_key_labels_cannot_collide_through_the_separator() -> None:
    one = alert_with(labels={"alertname": "A|B"})
    other = alert_with(labels={"alertname": "A", "severity": "B"})
    assert thread_key(one, "labels") != thread_key(other, "labels")
    assert thread_key(one, "labels") == "A\\|B||||"
    slash = alert_with(labels={"alertname": "A\\", "severity": "B"})
    assert thread_key(slash, "labels") != thread_key(one, "labels")


def test_delivery_id_is_stable() -> None:
    alert = parse(crash_looping()).alerts[0]
    # Recorded once: replicas of different versions (a rolling update) must agree.
    assert delivery_id(GROUP_KEY, alert) == "8babe279f7caa0a88eb44c0c39324cba"
    # The same notification again (a retry, or the other member of an HA pair).
    again = parse_notification(body(crash_looping())).alerts[0]
    assert delivery_id(GROUP_KEY, again) == delivery_id(GROUP_KEY, alert)
    # Written differently but meaning the same.
    assert delivery_id(GROUP_KEY, alert_with(startsAt="2024-05-02T10:14:37.528+02:00")) == (
        delivery_id(GROUP_KEY, alert)
    )
    # What the id does not cover.
    assert delivery_id(GROUP_KEY, alert_with(annotations={})) == delivery_id(GROUP_KEY, alert)


@pytest.mark.parametrize(
    "change",
    [
        {"fingerprint": "5e1a6f3b1c9d2e48"},
        {"status": "resolved", "endsAt": "2024-05-02T09:00:00Z"},
        {"startsAt": "2024-05-02T08:14:37.529Z"},
    ],
)
def test_delivery_id_differs_for_another_alert_state(change: dict[str, str]) -> None:
    alert = parse(crash_looping()).alerts[0]
    assert delivery_id(GROUP_KEY, alert_with(**change)) != delivery_id(GROUP_KEY, alert)


def test_delivery_id_covers_the_group_key_and_the_end_time() -> None:
    alert = alert_with(status="resolved", endsAt="2024-05-02T09:00:00Z")
    assert delivery_id(GROUP_KEY, alert) != delivery_id(GROUP_KEY + "x", alert)
    later = alert_with(status="resolved", endsAt="2024-05-02T09:00:01Z")
    assert delivery_id(GROUP_KEY, alert) != delivery_id(GROUP_KEY, later)
    # No way to shift a character between fields and keep the id.
    assert delivery_id("a", alert_with(fingerprint="bc")) != delivery_id(
        "ab", alert_with(fingerprint="c")
    )


def test_delivery_id_of_a_group_key_with_any_unicode() -> None:
    alert = parse(crash_looping()).alerts[0]
    group_key = '{}:{alertname="Ünïcode 🔥", team="שלום"}'
    assert delivery_id(group_key, alert) == delivery_id(group_key, alert)
    assert delivery_id(group_key, alert) != delivery_id(GROUP_KEY, alert)
    assert len(delivery_id(group_key, alert)) == 32


def test_delivery_id_shape() -> None:
    ids = {delivery_id("g", a) for a in parse(fifty_targets_down()).alerts}
    assert len(ids) == 50
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)
