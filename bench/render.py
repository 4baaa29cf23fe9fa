"""Render throughput: 1,000 generated policies (10 rules and 3 SLOs each), on one core.

Run: ``make bench-render`` (or ``.venv/bin/python bench/render.py [--policies N]``).
Prints policies/s for validation + rendering of every object (and for each step alone), and the
process's peak RSS. Target (issue 2): at least 500 policies/s on one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from typing import Any

from lumen_alerting.manifest_yaml import to_yaml_documents
from lumen_alerting.policy import Policy, policy_from_manifest
from lumen_alerting.render import RenderOptions, render_policy

SLI_KINDS = ("ratio", "latency", "runs")


def generated_manifest(index: int) -> dict[str, Any]:
    """A realistic policy: 10 rules, 3 SLOs (one of each SLI kind), routing and both services."""
    rules = [
        {
            "alert": f"Rule{index}x{n}",
            "expr": f'sum by (pod) (rate(errors_total{{job="svc-{index}",n="{n}"}}[5m])) > {n}',
            "for": "5m",
            "severity": "critical" if n % 3 == 0 else "warning",
            "summary": f"Rule {n} of policy {index}",
            "runbook": f"rule-{n}",
        }
        for n in range(10)
    ]
    slis = {
        "ratio": {
            "ratio": {
                "errors": f'sum(rate(http_requests_total{{job="svc-{index}",code=~"5.."}}'
                "[{{window}}]))",
                "total": f'sum(rate(http_requests_total{{job="svc-{index}"}}[{{{{window}}}}]))',
            }
        },
        "latency": {
            "latency": {
                "metric": "http_request_duration_seconds",
                "threshold": 0.3,
                "selector": f'{{job="svc-{index}"}}',
            }
        },
        "runs": {
            "runs": {
                "success": f'runs_total{{job="svc-{index}",result="success"}}',
                "total": f'runs_total{{job="svc-{index}"}}',
            }
        },
    }
    return {
        "apiVersion": "lumen.dev/v1alpha1",
        "kind": "LumenAlertPolicy",
        "metadata": {"name": f"svc-{index}", "namespace": f"team-{index % 20}"},
        "spec": {
            "service": f"svc-{index}",
            "labels": {"team": f"team-{index % 20}"},
            "runbookBaseURL": "https://runbooks.example.com/svc",
            "rules": rules,
            "slos": [
                {"name": kind, "objective": 99.9, "minEvents": 10, "sli": slis[kind]}
                for kind in SLI_KINDS
            ],
            "routing": {
                "routes": [
                    {"receiver": "slack", "matchers": [{"name": "severity", "value": "critical"}]},
                    {"receiver": "tickets", "matchers": [{"name": "severity", "value": "ticket"}]},
                ],
                "receivers": [
                    {"name": "slack", "slack": {"channel": "#alerts"}},
                    {
                        "name": "tickets",
                        "webhook": {
                            "url": "https://tickets.example.com/api",
                            "bearerToken": {"name": "tickets", "key": "token"},
                        },
                    },
                ],
            },
            "threader": {"botToken": {"name": "slack-bot", "key": "token"}},
            "exporter": {"probes": [{"name": "api", "url": f"http://svc-{index}:8080/health"}]},
        },
    }


def timed(label: str, count: int, func: Any) -> Any:
    start = time.process_time()
    result = func()
    seconds = time.process_time() - start
    print(f"{label:<34} {seconds:7.3f} s CPU  {count / seconds:9.0f} policies/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    n = args.policies
    print(
        f"lumen render benchmark: {n} policies x (10 rules, 3 SLOs), Python "
        f"{platform.python_version()}, one core"
    )
    manifests = [generated_manifest(i) for i in range(n)]
    options = RenderOptions()

    start = time.process_time()
    policies: list[Policy] = timed(
        "validate (schema + PromQL)", n, lambda: [policy_from_manifest(m) for m in manifests]
    )
    objects = timed(
        "render (all objects)", n, lambda: [render_policy(p, options) for p in policies]
    )
    total = time.process_time() - start
    print(f"{'validate + render':<34} {total:7.3f} s CPU  {n / total:9.0f} policies/s")
    timed("serialise to YAML", n, lambda: [to_yaml_documents(o) for o in objects])
    rules = sum(len(g["rules"]) for o in objects for g in o[0]["spec"]["groups"])
    print(f"objects: {sum(map(len, objects))}, Prometheus rules: {rules}")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak_kib / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
