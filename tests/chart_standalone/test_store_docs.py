"""docs/threader-stores.md shows, for every store, a policy and the standalone chart's values: each
policy passes the API server's schema and rules and the loader, each values block renders, and
the chart's container runs the same threader arguments as the operator's for that policy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.render.threader import threader_args
from tests.chart_standalone.generator import STANDALONE
from tests.chart_standalone.rendering import NAMESPACE, RELEASE, by_kind, render
from tests.policy.test_crd import api_server_problems
from tests.support.schemas import REPO

THREADER = STANDALONE[0]
DOC = REPO / "docs" / "threader-stores.md"
SECTIONS = ("Memory", "SQLite", "Redis", "Redis Sentinel", "Redis Cluster", "PostgreSQL")


def yaml_blocks() -> dict[str, list[dict[str, Any]]]:
    """The YAML blocks of each `## ` section."""
    found: dict[str, list[dict[str, Any]]] = {}
    for section in re.split(r"^## ", DOC.read_text(), flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        blocks = re.findall(r"^```yaml\n(.*?)^```", section, flags=re.M | re.S)
        found[title] = [yaml.safe_load(block) for block in blocks]
    return found


BLOCKS = yaml_blocks()
POLICIES = [
    pytest.param(block, id=title)
    for title, blocks in BLOCKS.items()
    for block in blocks
    if block.get("kind") == "LumenAlertPolicy"
]
VALUES = [
    pytest.param(block, id=title)
    for title, blocks in BLOCKS.items()
    for block in blocks
    if "kind" not in block
]


def test_every_store_has_a_policy_and_all_but_memory_chart_values() -> None:
    for title in SECTIONS:
        kinds = [block.get("kind") for block in BLOCKS[title]]
        assert "LumenAlertPolicy" in kinds, title
        assert title == "Memory" or None in kinds, title


def test_the_figures_have_their_places() -> None:
    text = DOC.read_text()
    for bench in ("bench/threader.py", "bench/store_failover.py"):
        assert f"<!-- figures: {bench} -->" in text or bench in text, bench


@pytest.mark.parametrize("manifest", POLICIES)
def test_the_policies_are_valid(manifest: dict[str, Any]) -> None:
    assert api_server_problems(manifest) == []
    policy_from_manifest(manifest)


@pytest.mark.parametrize("values", VALUES)
def test_the_chart_values_run_what_the_operator_runs(
    values: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    deployment = by_kind(render(THREADER, (path,)))["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    spec = {key: value for key, value in values.items() if key != "keyPrefix"}
    policy = policy_from_manifest(
        {
            "apiVersion": "lumen.dev/v1alpha1",
            "kind": "LumenAlertPolicy",
            "metadata": {"name": "p", "namespace": NAMESPACE},
            "spec": {"service": "shop", "threader": spec},
        }
    )
    assert policy.spec.threader is not None
    expected = threader_args(policy, policy.spec.threader)
    prefix = values.get("keyPrefix") or f"lumen:{NAMESPACE}:{RELEASE}-lumen-threader:"
    expected = [prefix if arg == f"lumen:{NAMESPACE}:p:" else arg for arg in expected]
    assert container["args"] == expected
