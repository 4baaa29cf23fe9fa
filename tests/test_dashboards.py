"""The Grafana dashboards in dashboards/: well-formed, deterministic, and reading only series Lumen
produces.

The set of known series is built from the code, not written down here: the exporter's own series
(``RESERVED_METRICS``, which tests/exporter holds to what it serves), the probe series of the
example policies' rendered ``config.json``, the threader's and the operator's prometheus_client
registries, the recording rules the renderer writes for the examples, and ``ALERTS``. Rename a
metric in the code and a dashboard that still reads the old name fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from lumen_alerting.cli.policy_files import load_policies
from lumen_alerting.exporter.config import ExporterConfig
from lumen_alerting.exporter.pipeline import PipelineRun, PipelineState, pipeline_metrics
from lumen_alerting.operator.metrics import OperatorMetrics
from lumen_alerting.policy.probe_metrics import RESERVED_METRICS, counter_series
from lumen_alerting.render import render_policy
from lumen_alerting.render.exporter import EXPORTER_CONFIG_KEY
from lumen_alerting.threader.metrics import ThreaderMetrics
from tests.support.schemas import REPO

DASHBOARDS = REPO / "dashboards"
EXPECTED = ("lumen-gateway", "lumen-operator", "lumen-pipeline", "lumen-slo", "lumen-threader")
REQUIRED_VARIABLES = ("datasource", "namespace", "policy")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# What Grafana puts in place of its variables before the query reaches Prometheus: plausible
# values, so the result is PromQL the parser checks. A variable not listed here fails the test
# (a misspelt `$polcy` would reach Prometheus as is).
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "6h",
    "namespace": "lumen",
    "policy": "gateway",
    "slo": "requests-availability",
}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$", re.DOTALL)

# Histograms and counters as they appear on /metrics (prometheus_client's families).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}


def dashboard_paths() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def family_series(families: Iterable[Metric]) -> dict[str, set[str]]:
    """Family name -> the names of its series on /metrics."""
    return {family.name: {family.name + s for s in SUFFIXES[family.type]} for family in families}


def registry_series(registry: CollectorRegistry) -> set[str]:
    return set().union(*family_series(registry.collect()).values())


def pipeline_families() -> dict[str, set[str]]:
    """The series the exporter serves for the pipeline once a full run was pushed."""
    state = PipelineState()
    run = {"stages": [{"stage": "build", "success": True, "duration_seconds": 1.0}]}
    state.apply_run(
        PipelineRun.model_validate(run | {"integrity_ok": True, "report_generated": True}), 1e9
    )
    return family_series(pipeline_metrics(state))


def slo_records() -> set[str]:
    """What the renderer records for an SLO (event counts only guard alerts: not shown)."""
    return {
        name
        for name in example_series()
        if name.startswith("lumen_slo:") and not name.startswith("lumen_slo:events:")
    }


@cache
def example_series() -> frozenset[str]:
    """Probe series of the example policies (their rendered config.json) and the names of the
    recording rules rendered for them."""
    loaded = load_policies([str(REPO / "examples")])
    assert loaded.problems == [] and loaded.policies, loaded.problems
    names: set[str] = set()
    for _, policy in loaded.policies:
        for manifest in render_policy(policy):
            if manifest["kind"] == "ConfigMap" and EXPORTER_CONFIG_KEY in manifest["data"]:
                config = ExporterConfig.model_validate_json(manifest["data"][EXPORTER_CONFIG_KEY])
                for probe in config.probes:
                    names |= set(probe.gauge_names)
                    names |= {n for base in probe.count_values for n in counter_series(base)}
            if manifest["kind"] == "PrometheusRule":
                for group in manifest["spec"]["groups"]:
                    for rule in group["rules"]:
                        names.add(rule.get("record", "ALERTS"))
    return frozenset(names)


@cache
def known_series() -> frozenset[str]:
    return frozenset(
        RESERVED_METRICS
        | set().union(*pipeline_families().values())
        | registry_series(ThreaderMetrics().registry)
        | registry_series(OperatorMetrics().registry)
        | example_series()
    )


def substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARIABLES[name]

    return VARIABLE.sub(value, expr)


def metric_names(expr: str) -> list[str]:
    """Every series an expression reads, after Grafana's substitution; fails if it does not
    parse or selects series without a metric name."""
    promql = substitute(expr)
    try:
        tree = promql_parser.parse(promql)
    except ValueError as error:
        raise AssertionError(f"{expr!r} does not parse: {error}") from None
    names: list[str | None] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name)

    promql_parser.walk(tree, visit)
    assert None not in names, f"{expr!r} selects series without a metric name"
    return [name for name in names if name is not None]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found += [panel, *panel.get("panels", [])]
    return found


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every query: the panels' targets and the query variables' selectors."""
    found = [
        (f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"]
        match = LABEL_VALUES.match(query)
        assert match, f"variable {variable['name']}: not label_values(selector, label): {query}"
        assert match.group(1), f"variable {variable['name']}: label_values over no series"
        found.append((f"variable {variable['name']}", match.group(1)))
    return found


def unknown_metrics(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    known = known_series()
    unknown = {}
    for where, expr in expressions(dashboard):
        if missing := [name for name in metric_names(expr) if name not in known]:
            unknown[where] = missing
    return unknown


def test_the_five_dashboards_are_there():
    assert [path.stem for path in dashboard_paths()] == list(EXPECTED)


@pytest.mark.parametrize("path", dashboard_paths(), ids=lambda p: p.stem)
def test_dashboard_is_well_formed(path):
    dashboard = load(path)
    assert dashboard["uid"] == path.stem
    assert dashboard["title"].startswith("Lumen / ")
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(REQUIRED_VARIABLES) <= variables.keys()
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in REQUIRED_VARIABLES[1:]:
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
        assert "label_values(" in variables[name]["query"]["query"]
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    for panel in panels(dashboard):
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys(), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


@pytest.mark.parametrize("path", dashboard_paths(), ids=lambda p: p.stem)
def test_dashboard_json_is_formatted_deterministically(path):
    """Two-space indentation, sorted keys, one final newline: a change shows as a small diff."""
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("path", dashboard_paths(), ids=lambda p: p.stem)
def test_every_query_parses_and_reads_only_series_lumen_produces(path):
    dashboard = load(path)
    assert expressions(dashboard)
    assert unknown_metrics(dashboard) == {}


def read_by(name: str) -> set[str]:
    dashboard = load(DASHBOARDS / f"{name}.json")
    return {metric for _, expr in expressions(dashboard) for metric in metric_names(expr)}


def gateway_probe_series() -> set[str]:
    """The gauges and counters of examples/gateway.yaml's probe, as its config.json names them."""
    (policy,) = [
        policy for _, policy in load_policies([str(REPO / "examples" / "gateway.yaml")]).policies
    ]
    (config,) = [
        ExporterConfig.model_validate_json(manifest["data"][EXPORTER_CONFIG_KEY])
        for manifest in render_policy(policy)
        if manifest["kind"] == "ConfigMap" and EXPORTER_CONFIG_KEY in manifest["data"]
    ]
    return {name for probe in config.probes for name in [*probe.gauge_names, *probe.count_values]}


@pytest.mark.parametrize(
    ("dashboard", "families"),
    [
        ("lumen-threader", lambda: family_series(ThreaderMetrics().registry.collect())),
        ("lumen-operator", lambda: family_series(OperatorMetrics().registry.collect())),
        ("lumen-pipeline", pipeline_families),
        ("lumen-slo", lambda: {name: {name} for name in slo_records()}),
        ("lumen-gateway", lambda: {n: {n, *counter_series(n)} for n in gateway_probe_series()}),
    ],
)
def test_each_dashboard_shows_every_series_of_its_subject(dashboard, families):
    """A new threader or operator metric, SLO window or pipeline gauge must get a panel."""
    read = read_by(dashboard)
    assert {name for name, series in families().items() if not series & read} == set()


def test_the_known_series_come_from_the_code():
    """A sample of each source, so an empty source (a registry that collects nothing, examples
    that render no rules) cannot let every dashboard pass."""
    known = known_series()
    for name in (
        "lumen_probe_success",  # the exporter's own
        "lumen_pipeline_runs_total",
        "lumen_ion_health",  # examples/gateway.yaml's probe
        "lumen_ion_persona_total",
        "lumen_threader_outbox_entries",  # the threader's registry
        "lumen_threader_delivery_duration_seconds_bucket",
        "lumen_operator_reconciles_total",  # the operator's registry
        "lumen_operator_policies",
        "lumen_slo:error_budget_remaining:ratio",  # recording rules for examples/http-api.yaml
        "job:lumen_stage_failure",  # the pipeline preset's recording rule
        "ALERTS",
    ):
        assert name in known, name


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        ("lumen_ion_helth", "misspelt metric"),
        ("lumen_threader_outbox_entries_total", "gauge read as a counter"),
        ("lumen_slo:error_ratio:rate7m", "recording rule the renderer does not write"),
    ],
)
def test_a_dashboard_reading_an_unknown_metric_fails(broken, why):
    """The check above catches a renamed or misspelt metric in any panel."""
    dashboard = load(DASHBOARDS / "lumen-gateway.json")
    target = panels(dashboard)[0]["targets"][0]
    target["expr"] = f'max(rate({broken}{{namespace=~"$namespace"}}[$__rate_interval]))'
    assert unknown_metrics(dashboard) == {f"panel 1 {panels(dashboard)[0]['title']!r} A": [broken]}


@pytest.mark.parametrize(
    "expr",
    [
        "sum by (le) (rate(lumen_probe_runs_total[$__rate_interval])",  # unbalanced
        'lumen_probe_success{namespace=~"$namespce"}',  # unknown variable
        "histogram_quantile(0.9, lumen_threader_acknowledge_duration_seconds_bucket[5m])",
        '{namespace=~"$namespace"}',  # no metric name
    ],
)
def test_a_query_that_does_not_parse_fails(expr):
    with pytest.raises(AssertionError):
        metric_names(expr)


def rendered_services() -> dict[str, str]:
    """The Services rendered for the example policies (their names become the `service` label
    of every series Prometheus scrapes through them) -> their policy."""
    return {
        manifest["metadata"]["name"]: policy.name
        for _, policy in load_policies([str(REPO / "examples")]).policies
        for manifest in render_policy(policy)
        if manifest["kind"] == "Service"
    }


@pytest.mark.parametrize("path", dashboard_paths(), ids=lambda p: p.stem)
def test_service_selectors_match_the_services_the_renderer_names(path):
    """Exporter and threader series tell their policy only by the scraped Service's name: the
    `policy` variable's regex must take the policy's name out of it, and the panels' `service`
    selectors must match it back."""
    dashboard = load(path)
    services = rendered_services()
    (policy,) = [v for v in dashboard["templating"]["list"] if v["name"] == "policy"]
    if not policy["regex"]:
        assert "service=~" not in json.dumps(dashboard)
        return
    pattern = policy["regex"].strip("/")
    taken = {
        (m.group(1), owner) for s, owner in services.items() if (m := re.fullmatch(pattern, s))
    }
    assert taken and all(name == owner for name, owner in taken), (pattern, services)
    for owner in {owner for _, owner in taken}:
        theirs = [s for s, o in services.items() if o == owner and re.fullmatch(pattern, s)]
        for where, expr in expressions(dashboard):
            with_owner = expr.replace("${policy}", owner).replace("$policy", owner)
            for selected in re.findall(r'service=~"([^"]+)"', with_owner):
                assert [s for s in theirs if re.fullmatch(selected, s)] == theirs, (where, selected)


def test_the_gateway_dashboard_has_seed_001s_nine_panels():
    """Seed 001, "Dashboard 구성 (9개 패널)": its seven items (the resonance metrics four series of
    one panel), with the confidence and the probe's health as the other two."""
    titles = [panel["title"] for panel in panels(load(DASHBOARDS / "lumen-gateway.json"))]
    assert len(titles) == 9
    assert {
        "ION API Status",
        "Response Time",
        "Response Time Statistics",
        "Mock Mode Indicator",
        "Resonance Metrics",
        "Persona Distribution",
        "Gateway Status",
    } <= set(titles)
