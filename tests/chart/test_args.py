"""The chart's operator container runs `lumen-operator` with flags that the operator's own parser
(``parse_config``) accepts and reads back as the values say."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from lumen_alerting.operator.config import OperatorConfig, parse_config
from tests.chart.helm import load_values, operator_container, template, values_files
from tests.support.schemas import REPO

CASES = [None, *values_files()]
CASE_IDS = ["defaults", *(path.stem for path in values_files())]


def chart_values(case: Path | None) -> dict[str, Any]:
    """The chart's defaults with the case's values merged over them (as helm does)."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            both_maps = isinstance(value, dict) and isinstance(base.get(key), dict)
            out[key] = merge(base[key], value) if both_maps else value
        return out

    defaults = load_values(REPO / "values.yaml")
    return merge(defaults, load_values(case)) if case else defaults


def container_args(case: Path | None) -> list[str]:
    container = operator_container(template([case] if case else []))
    assert container["command"] == ["lumen-operator"]
    args = container["args"]
    assert isinstance(args, list)
    return args


def check_common(config: OperatorConfig, values: dict[str, Any]) -> None:
    image = f"{values['image']['repository']}:{values['image']['tag'] or '0.1.0'}"
    assert config.namespaces == tuple(values["watchNamespaces"])
    assert config.standalone == (values["replicaCount"] == 1)
    assert config.peering == values["operator"]["peering"]
    global_release = (values.get("global") or {}).get("kpsRelease")
    wanted = values["kpsRelease"] or global_release or "kube-prometheus-stack"
    assert config.rendering.kps_release == wanted
    assert config.rendering.threader_image == image
    assert config.rendering.exporter_image == image
    assert config.drift_interval == values["operator"]["driftInterval"]
    assert config.metrics_port == values["operator"]["metricsPort"]
    assert config.liveness_port == values["operator"]["livenessPort"]
    assert config.log_format == values["operator"]["logFormat"]
    assert config.log_level == values["operator"]["logLevel"]
    defaults = OperatorConfig().rendering
    for kind in ("threader", "exporter"):
        wanted = values["operator"][f"{kind}Resources"] or getattr(defaults, f"{kind}_resources")
        assert getattr(config.rendering, f"{kind}_resources") == wanted


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_container_flags_parse_as_the_values_say(case: Path | None) -> None:
    """Every flag, the NetworkPolicy ones included, parses back to the values."""
    values = chart_values(case)
    config = parse_config(container_args(case), {})
    check_common(config, values)
    rendered = values["renderedNetworkPolicies"]
    args = container_args(case)
    assert f"--network-policies={str(rendered['enabled']).lower()}" in args
    for flag, key in (
        ("alertmanager-peers", "alertmanagerPeers"),
        ("prometheus-peers", "prometheusPeers"),
        ("pipeline-peers", "pipelinePeers"),
    ):
        (arg,) = [a for a in args if a.startswith(f"--{flag}=")]
        assert json.loads(arg.split("=", 1)[1]) == rendered[key]
    options = vars(config.rendering)
    assert options["network_policies"] == rendered["enabled"]
    for option, key in (
        ("alertmanager_peers", "alertmanagerPeers"),
        ("prometheus_peers", "prometheusPeers"),
        ("pipeline_peers", "pipelinePeers"),
    ):
        assert plain(options[option]) == rendered[key], option


def plain(node: Any) -> Any:
    """Mappings and sequences as dicts and lists, to compare with values.yaml's data."""
    if isinstance(node, Mapping):
        return {key: plain(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(value) for value in node]
    return node


def test_a_flag_the_operator_does_not_know_is_refused() -> None:
    """The parse above is real: an unknown flag stops it (exit 2)."""
    with pytest.raises(SystemExit) as stopped:
        parse_config([*container_args(None), "--no-such-flag"], {})
    assert stopped.value.code == 2
