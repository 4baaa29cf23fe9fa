"""Alerts that reach no one: the route walker against the real ``amtool``, the check on the README
example and the examples, and ``lumenctl validate``'s warning."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.cli.lumenctl import main
from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.policy.model import Policy
from lumen_alerting.render.prometheus_rule import rule_groups
from lumen_alerting.render.routing import alertmanager_yaml
from lumen_alerting.render.unrouted import (
    matches,
    receivers_for,
    static_labels,
    unrouted_alerts,
)
from tests.support.schemas import REPO

AMTOOL = shutil.which("amtool")

# The README's example before issue 12: only severity=page routed, and nothing else.
PAGE_ONLY = """\
apiVersion: lumen.dev/v1alpha1
kind: LumenAlertPolicy
metadata: {name: checkout, namespace: shop}
spec:
  service: checkout-api
  rules:
    - {alert: CheckoutDown, expr: 'up{job="checkout"} == 0', for: 2m, severity: critical}
    - {alert: QueueSlow, expr: 'queue_seconds > 9', labels: {team: queue}}
  slos:
    - name: availability
      objective: 99.9
      sli:
        ratio:
          errors: sum(rate(http_requests_total{code=~"5.."}[{{window}}]))
          total: sum(rate(http_requests_total[{{window}}]))
  routing:
    routes:
      - {receiver: oncall, matchers: [{name: severity, value: page}]}
      - {receiver: queue, matchers: [{name: team, value: queue}]}
    receivers:
      - name: oncall
        webhook: {url: https://pager.example.com/hook}
      - name: queue
        webhook: {url: https://queue.example.com/hook}
"""

# Nesting, receivers inherited from the parent, continue, anchored regular expressions and
# missing labels: what a plain alertmanager.yml may hold beyond what Lumen renders.
HAND_WRITTEN: dict[str, Any] = {
    "route": {
        "receiver": "root",
        "routes": [
            {"receiver": "all-db", "matchers": ['service="db"'], "continue": True},
            {
                "matchers": ['team=~"pay|shop"'],
                "routes": [
                    # anchored: not "critical"
                    {"receiver": "crit", "matchers": ['severity=~"crit"']},
                    {"matchers": ['severity="critical"'], "continue": True},  # inherits team's
                    {"receiver": "staging", "matchers": ['env!~"prod.*"', 'env!=""']},
                ],
            },
            {"receiver": "no-env", "matchers": ['env=""']},
        ],
    },
    "receivers": [{"name": name} for name in ("root", "all-db", "crit", "staging", "no-env")],
}
HAND_WRITTEN_LABELS = [
    {"service": "db"},
    {"service": "db", "env": "prod"},
    {"team": "pay", "severity": "critical"},
    {"team": "pay", "severity": "crit"},
    {"team": "payments", "severity": "crit", "env": "prod"},
    {"team": "shop", "severity": "critical", "env": "staging"},
    {"team": "shop", "env": "production"},
    {"team": "shop", "severity": "warning", "env": "dev"},
    {"env": "prod"},
]


def readme_policy() -> dict[str, Any]:
    """The policy under the README's "The resource" heading."""
    readme = (REPO / "README.md").read_text()
    found = re.search(r"## The resource\n\n```yaml\n(.*?)```", readme, re.DOTALL)
    assert found is not None, "README.md lost its example policy"
    manifest: dict[str, Any] = yaml.safe_load(found.group(1))
    return manifest


def load(text: str) -> Policy:
    return policy_from_manifest(yaml.safe_load(text))


def example_policies() -> dict[str, Policy]:
    """Every policy with routing: tests/policies/routing-*.yaml, examples/, the README's."""
    paths = [*sorted((REPO / "tests" / "policies").glob("routing-*.yaml"))]
    paths += sorted((REPO / "examples").glob("*.yaml"))
    out = {path.stem: load(path.read_text()) for path in paths}
    out["README"] = policy_from_manifest(readme_policy())
    out["page-only"] = load(PAGE_ONLY)
    return {name: policy for name, policy in out.items() if policy.spec.routing is not None}


def amtool_receivers(config: Path, labels: dict[str, str]) -> list[str]:
    assert AMTOOL is not None, "amtool missing: run `make setup`"
    args = [f"{name}={json.dumps(value)}" for name, value in labels.items()]
    result = subprocess.run(
        [AMTOOL, "config", "routes", "test", f"--config.file={config}", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout.strip().split(",")


def label_sets(policy: Policy) -> list[dict[str, str]]:
    """The static labels of every alert the policy renders, and a few probes around them."""
    sets = [
        static_labels(rule)
        for group in rule_groups(policy)
        for rule in group["rules"]
        if "alert" in rule
    ]
    for severity in ("critical", "warning", "page", "ticket", "info"):
        sets.append({"namespace": policy.namespace, "severity": severity})
    sets.append({"namespace": "elsewhere", "severity": "critical"})
    unique = {json.dumps(labels, sort_keys=True): labels for labels in sets}
    return list(unique.values())


POLICIES = example_policies()


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_walker_agrees_with_amtool(name: str, tmp_path: Path) -> None:
    """For every alert of the policy, the receivers the walker finds in the plain
    alertmanager.yml are the ones Alertmanager 0.25's amtool prints, in the same order."""
    config = alertmanager_yaml([POLICIES[name]])
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    for labels in label_sets(POLICIES[name]):
        assert receivers_for(config["route"], labels) == amtool_receivers(path, labels), labels


def test_walker_agrees_with_amtool_on_nesting_and_regexes(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(HAND_WRITTEN, sort_keys=False))
    seen = set()
    for labels in HAND_WRITTEN_LABELS:
        receivers = receivers_for(HAND_WRITTEN["route"], labels)
        assert receivers == amtool_receivers(path, labels), labels
        seen.add(tuple(receivers))
    assert len(seen) >= 6  # the label sets take different paths, so a wrong walk shows


def test_matcher_semantics() -> None:
    assert matches('severity=~"crit"', {"severity": "crit"})
    assert not matches('severity=~"crit"', {"severity": "critical"})  # anchored
    assert matches('env!~"prod.*"', {})  # a missing label is ""
    assert matches('env=""', {})
    assert not matches('env!=""', {})
    assert matches('x="a \\"b\\""', {"x": 'a "b"'})
    with pytest.raises(ValueError, match="unsupported matcher"):
        matches("severity: critical", {})


def test_readme_example_routes_every_alert() -> None:
    policy = policy_from_manifest(readme_policy())
    assert rule_groups(policy), "the README example renders alerts"
    assert unrouted_alerts(policy) == []


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_route_every_alert(path: Path) -> None:
    assert unrouted_alerts(load(path.read_text())) == []


def test_page_only_routing_leaves_critical_and_warning_unrouted() -> None:
    unrouted = unrouted_alerts(load(PAGE_ONLY))
    assert [alert.describe() for alert in unrouted] == [
        "CheckoutDown (severity=critical)",
        "LumenSLOErrorBudgetBurn (slo=availability, tier=page, severity=critical)",
        "LumenSLOErrorBudgetBurn (slo=availability, tier=ticket, severity=warning)",
    ]  # QueueSlow routes by its own label team=queue


def test_old_severities_route_the_page_only_example_again() -> None:
    """With the seed's page/ticket values, the page tier routes; the rest still does not."""
    manifest = yaml.safe_load(PAGE_ONLY)
    manifest["spec"]["severities"] = {"page": "page", "ticket": "ticket"}
    unrouted = unrouted_alerts(policy_from_manifest(manifest))
    assert [alert.describe() for alert in unrouted] == [
        "CheckoutDown (severity=critical)",
        "LumenSLOErrorBudgetBurn (slo=availability, tier=ticket, severity=ticket)",
    ]


def test_a_default_receiver_routes_everything() -> None:
    manifest = yaml.safe_load(PAGE_ONLY)
    manifest["spec"]["routing"]["receiver"] = "queue"
    assert unrouted_alerts(policy_from_manifest(manifest)) == []


def test_no_routing_no_verdict() -> None:
    manifest = yaml.safe_load(PAGE_ONLY)
    del manifest["spec"]["routing"]
    assert unrouted_alerts(policy_from_manifest(manifest)) == []


def test_template_labels_are_not_static() -> None:
    rule = {"alert": "X", "labels": {"stage": "{{ $labels.stage }}", "team": "a"}}
    assert static_labels(rule) == {"team": "a", "alertname": "X"}


def test_validate_warns_on_stderr_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "checkout.yaml"
    path.write_text(PAGE_ONLY)
    assert main(["validate", "-f", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: shop/checkout valid: 4 alert rules, 1 SLOs, 2 receivers\n"
    assert err.splitlines() == [
        "warning: shop/checkout: 3 alerts match no route and end at the drop receiver "
        "(routing.receiver is empty), so they reach no one: CheckoutDown (severity=critical), "
        "LumenSLOErrorBudgetBurn (slo=availability, tier=page, severity=critical), "
        "LumenSLOErrorBudgetBurn (slo=availability, tier=ticket, severity=warning); add a "
        "route for them or set routing.receiver"
    ]
