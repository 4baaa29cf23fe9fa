"""Policies near etcd's object limit (#8 item 12): one that validates fits, with every object
rendered from it; one just over is refused by ``lumenctl validate`` with the sizes named."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.cli.lumenctl import main
from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.render import render_policy
from lumen_alerting.render.sizes import MAX_OBJECT_BYTES, size_problems, stored_policy_bytes
from tests.support.schemas import REPO

GATEWAY: dict[str, Any] = yaml.safe_load((REPO / "examples" / "gateway.yaml").read_text())


def big_policy(rules: int) -> dict[str, Any]:
    """The gateway example with ``rules`` free-form rules whose text fields are at the schema's
    maxima (the biggest policies the schema admits are made of these)."""
    manifest = copy.deepcopy(GATEWAY)
    manifest["spec"]["rules"] = [
        {
            "alert": f"Big{index:03d}",
            "expr": f'sum(rate(http_requests_total{{code=~"5..",n="{index}"}}[5m])) > 1',
            "for": "5m",
            "summary": "s" * 1024,
            "description": 'A "quoted" description {{ $labels.instance }} ' + "d" * 4000,
            "runbook": "r" * 1024,
        }
        for index in range(rules)
    ]
    return manifest


@functools.cache
def largest_fitting() -> int:
    """The most such rules a policy can have and still fit (binary search on the estimate)."""
    low, high = 0, 256
    while low < high:
        middle = (low + high + 1) // 2
        if stored_policy_bytes(big_policy(middle)) <= MAX_OBJECT_BYTES:
            low = middle
        else:
            high = middle - 1
    assert 0 < low < 256, "the schema's maxima must be able to exceed the limit"
    return low


def compact_size(obj: Any) -> int:
    return len(json.dumps(obj, separators=(",", ":")).encode())


def test_a_policy_just_under_the_limit_validates_and_every_object_fits() -> None:
    manifest = big_policy(largest_fitting())
    assert stored_policy_bytes(manifest) > 0.95 * MAX_OBJECT_BYTES, "really near the limit"
    policy = policy_from_manifest(manifest)
    children = render_policy(policy)
    assert size_problems(manifest, children) == []
    for child in children:
        assert compact_size(child) < MAX_OBJECT_BYTES, child["kind"]
    # The stored policy with kopf's copy of it (a JSON string) fits too.
    essence = json.dumps({"metadata": {"labels": {}}, "spec": manifest["spec"]})
    assert compact_size(manifest) + compact_size(essence) < MAX_OBJECT_BYTES


def test_validate_refuses_a_policy_just_over_the_limit_naming_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fitting = tmp_path / "fitting.yaml"
    fitting.write_text(yaml.safe_dump(big_policy(largest_fitting())))
    assert main(["validate", "-f", str(fitting)]) == 0
    capsys.readouterr()

    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump(big_policy(largest_fitting() + 1)))
    assert main(["validate", "-f", str(over)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{over}: spec: the stored policy would take about " in err
    assert f"over the API server's limit of {MAX_OBJECT_BYTES} bytes (1.50 MiB)" in err
    assert main(["render", "-f", str(over)]) == 1, "render refuses what validate refuses"
    assert capsys.readouterr().out == ""


def test_a_child_over_the_limit_is_refused_by_name() -> None:
    manifest = big_policy(1)
    children = render_policy(policy_from_manifest(manifest))
    rule = next(c for c in children if c["kind"] == "PrometheusRule")
    while compact_size(rule) <= MAX_OBJECT_BYTES:
        rule["spec"]["groups"][0]["rules"] *= 2
    problems = size_problems(manifest, children)
    assert len(problems) == 1
    assert f"renders PrometheusRule/{rule['metadata']['name']} of about " in problems[0].reason
    assert f"limit of {MAX_OBJECT_BYTES} bytes" in problems[0].reason
