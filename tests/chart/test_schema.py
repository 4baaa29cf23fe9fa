"""values.schema.json refuses wrong types and unknown keys with a message naming the value."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pytest

from lumen_alerting.operator.config import parse_config
from lumen_alerting.render.network_policies import parse_peers
from tests.chart.helm import operator_container, run_helm, template
from tests.render.test_network_policies import (
    test_bad_peer_lists_are_refused_with_where_and_why,
    test_empty_parts_are_dropped_as_the_api_server_drops_them,
)
from tests.support.schemas import REPO

SCHEMA = REPO / "values.schema.json"
# Objects whose keys are free (label maps, selectors, the subcharts' values that their own
# schemas check), so they need not say additionalProperties: false.
FREE_FORM = {"/properties/global", "/properties/threader", "/properties/exporter"}
# Conditional parts (if/then) narrow an object the schema describes elsewhere; they are not
# shapes of their own.
CONDITIONS = ("/if", "/then")

# (--set-json argument, what the refusal must say)
REFUSED = [
    ('replicaCount="two"', "at '/replicaCount': got string, want integer"),
    ("replicaCount=0", "/replicaCount"),
    ('colour="blue"', "additional properties 'colour' not allowed"),
    (
        'operator={"peering":"p","driftInterval":300,"metricsPort":8000,"livenessPort":8080,'
        '"logFormat":"json","logLevel":"info","colour":"blue"}',
        "at '/operator': additional properties 'colour'",
    ),
    ('operator.logLevel="verbose"', "/operator/logLevel"),
    ("operator.driftInterval=5", "/operator/driftInterval"),
    (
        'operator.threaderResources={"requests":{"cpu":0.5}}',
        "/operator/threaderResources/requests/cpu",
    ),
    ('image.pullPolicy="Sometimes"', "/image/pullPolicy"),
    ('watchNamespaces=["Shop"]', "at '/watchNamespaces/0'"),
    (
        'renderedNetworkPolicies.prometheusPeers=[{"podSelektor":{}}]',
        "additional properties 'podSelektor' not allowed",
    ),
    ('renderedNetworkPolicies.enabled="yes"', "/renderedNetworkPolicies/enabled"),
    ('networkPolicy.apiServerCidrs=["kubernetes.default"]', "/networkPolicy/apiServerCidrs/0"),
    ('podDisruptionBudget.enabled="maybe"', "/podDisruptionBudget/enabled"),
    ('podDisruptionBudget.minAvailable="half"', "/podDisruptionBudget/minAvailable"),
    ('metrics.serviceMonitor.interval="often"', "/metrics/serviceMonitor/interval"),
    ('policies=[{"name":"checkout"}]', "/policies/0"),
    ('policies=[{"name":"checkout","spec":{},"owner":"me"}]', "additional properties 'owner'"),
    ('dashboards.labels={"team":1}', "/dashboards/labels/team"),
    ('threader.enabled="on"', "/threader/enabled"),
]


@pytest.mark.parametrize(("setting", "message"), REFUSED, ids=[s.split("=")[0] for s, _ in REFUSED])
def test_bad_values_are_refused_with_a_clear_message(setting: str, message: str) -> None:
    proc = run_helm("template", "lumen", ".", "--set-json", setting)
    assert proc.returncode != 0, f"{setting} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr


def test_values_that_fit_are_accepted() -> None:
    """The refusals above are about the values, not about --set-json itself."""
    for setting in (
        "replicaCount=2",
        'watchNamespaces=["shop"]',
        'operator.threaderResources={"requests":{"cpu":"500m"}}',
        'podDisruptionBudget.minAvailable="50%"',
        'renderedNetworkPolicies.prometheusPeers=[{"ipBlock":{"cidr":"10.0.0.0/8"}}]',
        'threader={"enabled":false,"anything":"the subchart checks"}',
    ):
        proc = run_helm("template", "lumen", ".", "--set-json", setting)
        assert proc.returncode == 0, f"{setting}: {proc.stderr}"


def objects_without_closed_keys(node: Any, path: str = "") -> list[str]:
    """Paths of object schemas with properties that still allow other keys."""
    found: list[str] = []
    if isinstance(node, dict):
        closed = node.get("additionalProperties") is False
        shape = path not in FREE_FORM and not path.endswith(CONDITIONS)
        if node.get("properties") and not closed and shape:
            found.append(path or "/")
        for key, value in node.items():
            found += objects_without_closed_keys(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += objects_without_closed_keys(value, f"{path}/{index}")
    return found


def test_every_object_with_known_keys_refuses_others() -> None:
    assert objects_without_closed_keys(json.loads(SCHEMA.read_text())) == []


# --- what the operator refuses at start, the schema refuses at install -------------------------


def parametrized(test: object) -> list[Any]:
    """The cases a test of tests/render is parametrized with (so new ones reach the chart too)."""
    (mark,) = [mark for mark in vars(test)["pytestmark"] if mark.name == "parametrize"]
    return list(mark.args[1])


# The operator's own cases (tests/render): peer lists parse_peers refuses, and ones it accepts.
PEERS_REFUSED: list[tuple[str, str]] = parametrized(
    test_bad_peer_lists_are_refused_with_where_and_why
)
PEERS_ACCEPTED: list[str] = [
    text for text, _ in parametrized(test_empty_parts_are_dropped_as_the_api_server_drops_them)
]
# What a value cannot be (helm only takes JSON), or what JSON Schema cannot compare: whether an
# `except` CIDR lies inside its `cidr` of the same IP version.
NOT_A_VALUE = {"not JSON"}
BEYOND_THE_SCHEMA = {"is not inside"}


def peers_refused(text: str) -> str:
    proc = run_helm(
        "template", "lumen", ".", "--set-json", f"renderedNetworkPolicies.alertmanagerPeers={text}"
    )
    assert proc.returncode != 0, f"the chart accepted peers the operator refuses: {text}"
    return proc.stderr


@pytest.mark.parametrize(("text", "complaint"), PEERS_REFUSED)
def test_peers_the_operator_refuses_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse_peers(text)
    try:
        json.loads(text)
    except ValueError:
        assert complaint in NOT_A_VALUE
        return
    stderr = peers_refused(text)
    if complaint in BEYOND_THE_SCHEMA and "values don't meet" not in stderr:
        # Inside or not, for the same IP version: a check in the templates, not the schema.
        assert "renderedNetworkPolicies.alertmanagerPeers[0].ipBlock.except" in stderr, stderr
        return
    assert "values don't meet the specifications of the schema" in stderr, stderr
    # A bad key is named as such (the schema library reports it at the map's parent).
    assert "/renderedNetworkPolicies/alertmanagerPeers" in stderr or (
        "invalid propertyName" in stderr
    ), stderr


@pytest.mark.parametrize(
    "text",
    [
        *PEERS_ACCEPTED,
        '[{"podSelector": {"matchLabels": {"example.com/team": "a_b.c-d", "empty": ""}}}]',
        '[{"namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "NotIn", '
        '"values": ["x"]}]}, "podSelector": {}}]',
        '[{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16", "10.1.2.3/32"]}}]',
        '[{"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:0:0:1::/80"]}}]',
        '[{"ipBlock": {"cidr": "::/0", "except": ["::ffff:10.0.0.0/104"]}}]',
    ],
)
def test_peers_the_operator_accepts_are_accepted(text: str) -> None:
    parse_peers(text)
    proc = run_helm(
        "template", "lumen", ".", "--set-json", f"renderedNetworkPolicies.alertmanagerPeers={text}"
    )
    assert proc.returncode == 0, proc.stderr


def resources(value: Any) -> str:
    return f"--threader-resources={json.dumps(value)}"


# (--set-json argument, what the refusal names, the operator flags the value would become)
OPERATOR_REFUSES = [
    (
        'operator.threaderResources={"requests":{}}',
        "/operator/threaderResources/requests",
        [resources({"requests": {}})],
    ),
    (
        'operator.exporterResources={"limits":{}}',
        "/operator/exporterResources/limits",
        ['--exporter-resources={"limits": {}}'],
    ),
    ('kpsRelease=" "', "/kpsRelease", ["--kps-release= "]),
    # Labels the API server refuses, or that would change the Deployment's selector.
    (
        'podLabels={"app.kubernetes.io/component":"x"}',
        "invalid propertyName 'app.kubernetes.io/component'",
        [],
    ),
    ('podLabels={"team":"a b"}', "/podLabels/team", []),
    ('metrics.serviceMonitor.labels={"bad key!":"x"}', "invalid propertyName 'bad key!'", []),
    (
        'policies=[{"name":"a","spec":{},"labels":{"/team":"x"}}]',
        "invalid propertyName '/team'",
        [],
    ),
]


@pytest.mark.parametrize(
    ("setting", "where", "flags"), OPERATOR_REFUSES, ids=[s for s, _, _ in OPERATOR_REFUSES]
)
def test_values_the_operator_or_the_api_server_refuses_are_refused(
    setting: str, where: str, flags: list[str]
) -> None:
    for flag in flags:
        with pytest.raises((ValueError, SystemExit)):
            parse_config([flag], {})
    proc = run_helm("template", "lumen", ".", "--set-json", setting)
    assert proc.returncode != 0, f"{setting} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert where in proc.stderr, proc.stderr


def test_the_operator_container_takes_a_number_for_a_quantity() -> None:
    """Kubernetes takes `cpu: 1` (a number) as well as `cpu: "1"`."""
    rendered = template(settings=['resources.limits={"cpu":1,"memory":"256Mi"}'])
    assert operator_container(rendered)["resources"]["limits"] == {"cpu": 1, "memory": "256Mi"}


# (cidr, except): the templates' check of `except` against Python's ipaddress, on both IP versions,
# compressed forms, an embedded IPv4 address and host bits in the cidr.
EXCEPT_CASES = [
    ("10.0.0.0/8", "10.255.0.0/16"),
    ("10.0.0.0/8", "11.0.0.0/16"),
    ("10.1.2.3/8", "10.0.0.0/9"),
    ("192.168.0.0/16", "192.168.0.0/16"),
    ("192.168.0.0/16", "192.0.0.0/8"),
    ("0.0.0.0/0", "255.255.255.255/32"),
    ("172.16.0.0/12", "172.32.0.0/16"),
    ("fd00::/8", "fd00:1::/32"),
    ("fd00::/8", "fe00::/16"),
    ("2001:db8::/32", "2001:db8:0:0:1::/80"),
    ("2001:db8::/32", "2001:db9::/48"),
    ("2001:DB8:a::/48", "2001:db8:a:ffff::/64"),
    ("2001:db8:a::/48", "2001:db8:b::/64"),
    ("::/0", "::ffff:10.0.0.0/104"),
    ("::ffff:10.0.0.0/104", "::ffff:10.1.0.0/112"),
    ("::ffff:10.0.0.0/104", "::ffff:11.1.0.0/112"),
    ("1:2:3:4:5:6:7:8/128", "1:2:3:4:5:6:7:8/128"),
    ("1:2:3:4::/64", "1:2:3:4:0:0:0:1/128"),
    ("1:2:3:4::/64", "1:2:3:5::1/128"),
]


def strictly_inside(outer: str, inner: str) -> bool:
    out, into = ipaddress.ip_network(outer, strict=False), ipaddress.ip_network(inner, strict=False)
    return (
        out.version == into.version
        and out != into
        and int(into.network_address) >= int(out.network_address)
        and int(into.broadcast_address) <= int(out.broadcast_address)
    )


def test_except_inside_cidr_as_the_operator_decides() -> None:
    inside = [(c, e) for c, e in EXCEPT_CASES if strictly_inside(c, e)]
    outside = [(c, e) for c, e in EXCEPT_CASES if not strictly_inside(c, e)]
    assert inside and outside
    peers = [{"ipBlock": {"cidr": c, "except": [e]}} for c, e in inside]
    parse_peers(json.dumps(peers))
    proc = run_helm(
        "template",
        "lumen",
        ".",
        "--set-json",
        f"renderedNetworkPolicies.prometheusPeers={json.dumps(peers)}",
    )
    assert proc.returncode == 0, proc.stderr
    for cidr, excepted in outside:
        peers = [{"podSelector": {}}, {"ipBlock": {"cidr": cidr, "except": [excepted]}}]
        with pytest.raises(ValueError, match="is not inside"):
            parse_peers(json.dumps(peers))
        for value in ("renderedNetworkPolicies.pipelinePeers", "networkPolicy.metricsPeers"):
            proc = run_helm("template", "lumen", ".", "--set-json", f"{value}={json.dumps(peers)}")
            assert proc.returncode != 0, f"{value}: {cidr} except {excepted} accepted"
            assert (
                f"{value}[1].ipBlock.except[0]: {json.dumps(excepted)} is not inside" in proc.stderr
            ), proc.stderr


# The review's cases, and a label key with an empty prefix ("/foo": the API server refuses it;
# parse_peers is being taught to refuse it too), as keys of matchLabels and of an expression.
REVIEW_PEERS = [
    '[{"podSelector": {"matchLabels": {"a": "bad value"}}}]',
    '[{"podSelector": {"matchLabels": {"bad key!": "x"}}}]',
    '[{"ipBlock": {"cidr": "nonsense"}}]',
    '[{"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}}]',
    '[{"podSelector": {"matchExpressions": [{"key": "a", "operator": "NotIn"}]}}]',
    '[{"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": null}]}}]',
    '[{"podSelector": {"matchLabels": {"/foo": "x"}}}]',
    '[{"namespaceSelector": {"matchExpressions": [{"key": "/foo", "operator": "Exists"}]}}]',
]


@pytest.mark.parametrize("text", REVIEW_PEERS)
def test_the_reviews_peers_are_refused_by_the_schema(text: str) -> None:
    stderr = peers_refused(text)
    assert "values don't meet the specifications of the schema" in stderr, stderr
