"""README.md lists every value of values.yaml with its description (tools/chart_values.py)."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from tests.support.schemas import REPO

# A script in tools/, loaded for its generator.
_spec = importlib.util.spec_from_file_location("chart_values", REPO / "tools" / "chart_values.py")
assert _spec and _spec.loader
chart_values = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chart_values)


def test_readme_chart_values_are_current() -> None:
    readme = (REPO / "README.md").read_text()
    wanted = chart_values.updated_readme(readme, (REPO / "values.yaml").read_text())
    assert readme == wanted, "run `make chart-docs` and commit README.md"


def test_every_value_has_a_description() -> None:
    assert chart_values.undocumented((REPO / "values.yaml").read_text()) == []


def test_every_leaf_is_in_the_readme() -> None:
    """Each leaf of values.yaml (walked here, not by the tool) is a row or under a row."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("<!-- chart-values:start -->", 1)[1].split("<!-- chart-values:end -->")[
        0
    ]
    rows = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}

    def leaves(node: object, path: str = "") -> list[str]:
        if isinstance(node, dict) and node:
            return [
                leaf
                for key, value in node.items()
                for leaf in leaves(value, f"{path}.{key}" if path else key)
            ]
        return [path]

    for leaf in leaves(yaml.safe_load((REPO / "values.yaml").read_text())):
        parts = leaf.split(".")
        assert any(".".join(parts[:n]) in rows for n in range(1, len(parts) + 1)), leaf


def test_a_value_without_description_is_refused() -> None:
    text = "# -- documented\nknown: 1\ngroup:\n  # -- documented too\n  inner: a\n  bare: b\n"
    assert chart_values.undocumented(text) == ["group.bare"]
    with pytest.raises(ValueError, match=r"group\.bare"):
        chart_values.section(text)


def test_descriptions_span_lines_and_nesting() -> None:
    text = (
        "# -- first line\n# second line\nouter:\n  # -- inner value\n  inner:\n    a: 1\n"
        "# -- back at the top\ntop: x\n"
    )
    assert chart_values.descriptions(text) == {
        ("outer",): "first line second line",
        ("outer", "inner"): "inner value",
        ("top",): "back at the top",
    }


def test_the_peer_lists_say_which_workloads_they_open() -> None:
    """--prometheus-peers lets Prometheus into the threaders as well as the exporters."""
    found = chart_values.descriptions((REPO / "values.yaml").read_text())
    prometheus = found[("renderedNetworkPolicies", "prometheusPeers")]
    assert "threaders" in prometheus and "exporters" in prometheus, prometheus
    assert "threaders" in found[("renderedNetworkPolicies", "alertmanagerPeers")]
