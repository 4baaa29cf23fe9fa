"""``lumenctl render``'s NetworkPolicy flags: the same names and meaning as lumen-operator's,
and a clear usage error (exit 2, nothing on stdout) for a value that is not a peer list."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from lumen_alerting.cli.lumenctl import main
from lumen_alerting.cli.policy_files import load_policies
from lumen_alerting.operator.config import parse_config
from lumen_alerting.render import render_policy
from lumen_alerting.render.objects import RenderOptions
from tests.support.schemas import REPO, validate_object

PIPELINE = str(REPO / "examples" / "pipeline.yaml")
GATEWAY = str(REPO / "examples" / "gateway.yaml")


def rendered(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["render", *args]) == 0
    return [doc for doc in yaml.safe_load_all(capsys.readouterr().out) if doc]


def network_policies(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}


def test_rendered_by_default_and_valid(capsys: pytest.CaptureFixture[str]) -> None:
    found = network_policies(rendered(capsys, "-f", GATEWAY, "-f", PIPELINE))
    assert set(found) == {
        "lumen-gateway-threader",
        "lumen-gateway-exporter",
        "lumen-pipeline-exporter",
    }
    for obj in found.values():
        validate_object(obj)


def test_switched_off(capsys: pytest.CaptureFixture[str]) -> None:
    objects = rendered(capsys, "-f", GATEWAY, "--network-policies", "false")
    assert network_policies(objects) == {}
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "ServiceMonitor"}


def test_each_flag_reaches_its_peer_list(capsys: pytest.CaptureFixture[str]) -> None:
    alertmanager = [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}]
    prometheus = [{"ipBlock": {"cidr": "10.1.0.0/16"}}]
    pipeline = [{"podSelector": {"matchLabels": {"role": "ci"}}}]
    objects = rendered(
        capsys,
        *("-f", GATEWAY, "-f", PIPELINE),
        *("--alertmanager-peers", json.dumps(alertmanager)),
        *("--prometheus-peers", json.dumps(prometheus)),
        *("--pipeline-peers", json.dumps(pipeline)),
    )
    found = network_policies(objects)
    sources = {name: [r["from"] for r in obj["spec"]["ingress"]] for name, obj in found.items()}
    assert sources == {
        "lumen-gateway-threader": [alertmanager, prometheus],
        "lumen-gateway-exporter": [prometheus],  # the gateway's pipeline is off
        "lumen-pipeline-exporter": [prometheus, pipeline],
    }


def test_same_objects_as_the_operator_with_the_same_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One meaning for both programs: lumenctl's render equals the operator's (but for the
    managed-by label, which says who rendered it)."""
    flags = ["--network-policies", "true", "--pipeline-peers", "[]", "--prometheus-peers", "[]"]
    from_lumenctl = network_policies(rendered(capsys, "-f", PIPELINE, *flags))
    options = parse_config(flags, {}).rendering
    ((_, policy),) = load_policies([PIPELINE], "default").policies
    lumenctl_options = RenderOptions(
        network_policies=options.network_policies,
        alertmanager_peers=options.alertmanager_peers,
        prometheus_peers=options.prometheus_peers,
        pipeline_peers=options.pipeline_peers,
    )
    from_operator = network_policies(render_policy(policy, lumenctl_options))
    assert from_lumenctl == from_operator
    (only,) = from_lumenctl.values()
    assert "ingress" not in only["spec"], "both lists empty: nothing gets in"


def test_the_defaults_spelled_out_render_the_same_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    """A chart passes the defaults as JSON, in its own key order: the output must not change."""
    assert main(["render", "-f", GATEWAY, "-f", PIPELINE]) == 0
    implicit = capsys.readouterr().out
    reordered = [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}, "namespaceSelector": {}}
        for name in ("alertmanager", "prometheus")
    ]
    explicit_flags = [
        *("--network-policies", "true"),
        *("--alertmanager-peers", json.dumps(reordered[:1])),
        *("--prometheus-peers", json.dumps(reordered[1:])),
        *("--pipeline-peers", '[{"podSelector": {"matchLabels": {}}}]'),
    ]
    assert main(["render", "-f", GATEWAY, "-f", PIPELINE, *explicit_flags]) == 0
    assert capsys.readouterr().out == implicit


@pytest.mark.parametrize(
    ("flag", "value", "complaint"),
    [
        ("--network-policies", "yes please", "'yes please' is not true or false"),
        ("--alertmanager-peers", "not json", "not JSON"),
        ("--prometheus-peers", '{"podSelector": {}}', "must be a JSON list"),
        (
            "--pipeline-peers",
            '[{"podSelector": {"matchLabels": {"a": 1}}}]',
            "is not a label value",
        ),
    ],
)
def test_bad_values_are_usage_errors(
    flag: str, value: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["render", "-f", GATEWAY, flag, value])
    assert exit_info.value.code == 2
    output = capsys.readouterr()
    assert output.out == ""
    assert f"argument {flag}: " in output.err
    assert complaint in output.err
