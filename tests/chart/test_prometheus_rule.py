"""The PrometheusRule about the operator: promtool accepts it, it reads only series that exist
(the operator's registry, built from the code, and Prometheus's own ``up``), and its alerts fire
on the series a failing operator would export (``promtool test rules``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.chart.helm import NAMESPACE, template
from tests.test_dashboards import known_series, metric_names

# Prometheus itself writes `up` for every target it scrapes.
PROMETHEUS_SERIES = {"up"}


def rule_groups() -> dict[str, Any]:
    rendered = template()
    rule = rendered.one("PrometheusRule", "-operator")
    groups = rule["spec"]
    assert isinstance(groups, dict)
    return groups


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups()))
    proc = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout, proc.stdout


def test_every_series_the_rules_read_exists() -> None:
    known = known_series() | PROMETHEUS_SERIES
    read = {
        name
        for group in rule_groups()["groups"]
        for rule in group["rules"]
        for name in metric_names(rule["expr"])
    }
    assert read, "no series read"
    assert read <= known, sorted(read - known)
    assert {n for n in read if n.startswith("lumen_operator_")}, read


def test_the_rules_select_the_service_monitors_job() -> None:
    """The ServiceMonitor's job label is the Service's name: the rules filter on it."""
    rendered = template()
    service = rendered.one("Service", "-operator")["metadata"]["name"]
    for group in rule_groups()["groups"]:
        for rule in group["rules"]:
            assert f'job="{service}", namespace="{NAMESPACE}"' in rule["expr"], rule["expr"]


def test_the_alerts_fire_when_the_operator_fails(tmp_path: Path) -> None:
    groups = rule_groups()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(groups))
    annotations = {
        rule["alert"]: rule["annotations"] for group in groups["groups"] for rule in group["rules"]
    }
    job = f'job="lumen-operator", namespace="{NAMESPACE}"'
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"up{{{job}}}", "values": "0x30"},
                    {
                        "series": f'lumen_operator_policies{{{job}, state="invalid"}}',
                        "values": "2x30",
                    },
                    {
                        "series": f'lumen_operator_policies{{{job}, state="failed"}}',
                        "values": "0x30",
                    },
                    {
                        "series": f'lumen_operator_reconciles_total{{{job}, result="failed"}}',
                        "values": "0+1x30",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "LumenOperatorDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning"},
                                "exp_annotations": annotations["LumenOperatorDown"],
                            }
                        ],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "LumenPoliciesNotReady",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "state": "invalid"},
                                # The templates expand: the state and how many policies.
                                "exp_annotations": {
                                    "summary": "LumenAlertPolicies are invalid.",
                                    "description": "2 policies have been invalid for 15m: their "
                                    "last valid objects keep alerting, but changes do not reach "
                                    "the cluster.",
                                    "runbook_url": annotations["LumenPoliciesNotReady"][
                                        "runbook_url"
                                    ],
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "LumenOperatorReconcilesFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning"},
                                "exp_annotations": annotations["LumenOperatorReconcilesFailing"],
                            }
                        ],
                    },
                    # Up and healthy: nothing fires.
                    {"eval_time": "3m", "alertname": "LumenPoliciesNotReady", "exp_alerts": []},
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    proc = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_operator_down_only_with_the_service_monitor() -> None:
    """Without the chart's ServiceMonitor nothing writes `up{job=<service>}`, so `absent(...)`
    would fire forever: LumenOperatorDown is left out, the other alerts stay."""

    def alerts(*settings: str) -> list[str]:
        rule = template(settings=settings).one("PrometheusRule", "-operator")
        return [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]

    assert "LumenOperatorDown" in alerts()
    off = alerts("metrics.serviceMonitor.enabled=false")
    assert "LumenOperatorDown" not in off
    assert "LumenOperatorReconcilesFailing" in off
