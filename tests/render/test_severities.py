"""One severity scheme: every alert Lumen writes is critical (page) or warning (ticket) by default,
``spec.severities`` changes the pair for the whole policy, explicit severities still win."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.render import RenderOptions
from lumen_alerting.render.prometheus_rule import rule_groups
from lumen_alerting.render.routing import alertmanager_config

POLICY: dict[str, Any] = yaml.safe_load(
    """\
apiVersion: lumen.dev/v1alpha1
kind: LumenAlertPolicy
metadata: {name: scheme, namespace: shop}
spec:
  service: shop
  presets:
    - name: gateway
    - name: pipeline
      overrides: {LumenStageFailed: {severity: info}}
  rules:
    - {alert: Plain, expr: up == 0}
    - {alert: Chosen, expr: up == 0, severity: info}
  slos:
    - name: avail
      objective: 99.9
      sli: {runs: {success: 'runs_total{result="success"}', total: runs_total}}
    - name: chosen
      objective: 99.9
      sli: {runs: {success: 'runs_total{result="success"}', total: runs_total}}
      alerting: {page: {severity: urgent}}
  routing:
    receiver: hook
    receivers: [{name: hook, webhook: {url: "https://hook.example.com/"}}]
  exporter: {probes: [{name: api, url: "http://api:8080/health"}]}
"""
)


def severities(manifest: dict[str, Any]) -> dict[str, str]:
    """alert name (with slo/tier for burn-rate alerts) -> severity label."""
    policy = policy_from_manifest(manifest)
    out = {}
    for group in rule_groups(policy):
        for rule in group["rules"]:
            if "alert" in rule:
                labels = rule["labels"]
                key = "/".join(
                    [rule["alert"], *(labels[k] for k in ("slo", "tier") if k in labels)]
                )
                out[key] = labels["severity"]
    return out


def test_default_scheme_is_critical_and_warning() -> None:
    got = severities(POLICY)
    assert got["LumenSLOErrorBudgetBurn/avail/page"] == "critical"
    assert got["LumenSLOErrorBudgetBurn/avail/ticket"] == "warning"
    assert got["LumenPipelineStalled"] == got["LumenIntegrityMismatch"] == "critical"
    assert got["IONAPIDown"] == "critical"
    assert got["IONHighResponseTime"] == "warning"
    assert got["LumenExporterDown"] == "warning"
    assert got["Plain"] == "warning"
    # explicit choices win
    assert got["Chosen"] == "info"
    assert got["LumenStageFailed"] == "info"
    assert got["LumenSLOErrorBudgetBurn/chosen/page"] == "urgent"
    assert set(got.values()) == {"critical", "warning", "info", "urgent"}


def test_severities_map_every_urgency() -> None:
    manifest = copy.deepcopy(POLICY)
    manifest["spec"]["severities"] = {"page": "page", "ticket": "ticket"}
    got = severities(manifest)
    assert got["LumenSLOErrorBudgetBurn/avail/page"] == "page"
    assert got["LumenSLOErrorBudgetBurn/avail/ticket"] == "ticket"
    assert got["LumenPipelineStalled"] == got["IONAPIDown"] == "page"
    assert got["IONHighResponseTime"] == got["LumenExporterDown"] == got["Plain"] == "ticket"
    assert (got["Chosen"], got["LumenStageFailed"]) == ("info", "info")
    assert got["LumenSLOErrorBudgetBurn/chosen/page"] == "urgent"
    config = alertmanager_config(policy_from_manifest(manifest), RenderOptions())
    assert config is not None
    severity_rule = config["spec"]["inhibitRules"][1]
    assert severity_rule["sourceMatch"] == [{"name": "severity", "value": "page", "matchType": "="}]
    assert severity_rule["targetMatch"] == [
        {"name": "severity", "value": "ticket", "matchType": "="}
    ]
