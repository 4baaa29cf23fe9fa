"""``lumenctl test``: generated promtool unit tests pass for the shipped policies, fail for a
tampered renderer, feed real SLI series where the SLI allows it and say when they cannot."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.cli.lumenctl import main
from lumen_alerting.policy import policy_from_manifest
from lumen_alerting.render import slo as slo_render
from lumen_alerting.render.alerts import number
from lumen_alerting.render.prometheus_rule import rules_file
from lumen_alerting.rule_tests.burn_rate_cases import UnitTestSuite, slo_unit_tests

ROOT = Path(__file__).resolve().parents[2]
POLICIES = [
    *sorted(str(p) for p in (ROOT / "examples").glob("*.yaml")),
    *sorted(str(p) for p in (ROOT / "tests" / "policies").glob("slo-*.yaml")),
    str(ROOT / "tests" / "policies" / "everything.yaml"),
]
_HTTP = (
    'sum(rate(http_requests_total{job="api", code=~"5.."}[{{window}}]))',
    'sum(rate(http_requests_total{job="api"}[{{window}}]))',
)
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not on PATH")


def _manifest(slos: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lumen.dev/v1alpha1",
        "kind": "LumenAlertPolicy",
        "metadata": {"name": "shapes", "namespace": "qa"},
        "spec": {"service": "qa-api", "slos": slos, **spec},
    }


def _ratio_slo(name: str, errors: str, total: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "objective": 99.9,
        "sli": {"ratio": {"errors": errors, "total": total}},
        **extra,
    }


def _write(tmp_path: Path, manifest: dict[str, Any]) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return str(path)


def _test_files(suite: UnitTestSuite) -> dict[str, dict[str, Any]]:
    return {f.path: f.content for f in suite.files if f.path.endswith(".test.yaml")}


def _series(content: dict[str, Any]) -> set[str]:
    return {s["series"] for group in content["tests"] for s in group["input_series"]}


def _load(path: str):
    return policy_from_manifest(yaml.safe_load(Path(path).read_text()))


@needs_promtool
def test_shipped_policies_pass(capsys):
    assert main(["test", *(a for p in POLICIES for a in ("-f", p))]) == 0
    out = capsys.readouterr().out
    assert "lumen/gateway: no SLOs, nothing to test" in out
    assert "passed: 9 SLO(s)" in out
    assert "FAIL" not in out
    # the disabled ticket tier of four-weeks gets no cases; suppression is proven where enabled
    assert "search/periods slo four-weeks ticket" not in out
    assert "lumen/pipeline slo daily-runs page: 4 cases" in out
    assert "suppression at 1 silences it" in out


def test_policy_without_slos_passes_and_says_so(capsys):
    assert main(["test", "-f", str(ROOT / "examples" / "gateway.yaml")]) == 0
    out = capsys.readouterr().out
    assert "no SLOs in the given policies: nothing to test" in out


def test_missing_promtool_is_a_clear_error(capsys):
    code = main(["test", "-f", POLICIES[1], "--promtool", "/nonexistent/promtool"])
    assert code == 1
    assert "promtool not found" in capsys.readouterr().err


@needs_promtool
@pytest.mark.parametrize(
    ("factor", "failing"), [(Fraction(6, 5), "above (x1.1)"), (Fraction(4, 5), "below (x0.9)")]
)
def test_a_wrong_threshold_fails(monkeypatch, capsys, tmp_path, factor, failing):
    """The generated tests can fail: thresholds off by 20% either way are caught."""
    original = slo_render.burn_threshold
    monkeypatch.setattr(
        slo_render,
        "burn_threshold",
        lambda slo, window: number(Fraction(original(slo, window)) * factor),
    )
    path = _write(tmp_path, _manifest([_ratio_slo("avail", *_HTTP)]))
    assert main(["test", "-f", path]) == 1
    out = capsys.readouterr().out
    assert "FAIL  qa/shapes slo avail page" in out
    assert "FAIL  qa/shapes slo avail ticket" in out
    assert failing in out
    assert "LumenSLOErrorBudgetBurn" in out  # promtool's own report follows


@needs_promtool
def test_kept_files_rerun_and_catch_an_edited_rule(capsys, tmp_path):
    keep = tmp_path / "kept"
    path = _write(tmp_path, _manifest([_ratio_slo("avail", *_HTTP)]))
    assert main(["test", "-f", path, "--keep", str(keep)]) == 0
    assert f"generated files kept in {keep}" in capsys.readouterr().out
    tests = sorted(p.name for p in keep.glob("*.test.yaml"))
    assert tests == ["qa.shapes.avail.page.test.yaml", "qa.shapes.avail.ticket.test.yaml"]
    rules = keep / "qa.shapes.avail.rules.yaml"
    text = rules.read_text()
    assert "> 0.0144" in text
    rules.write_text(text.replace("> 0.0144", "> 0.017"))  # the 1h/5m page pair, 18% too high
    result = subprocess.run(
        ["promtool", "test", "rules", *tests], cwd=keep, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "1h/5m" in result.stdout + result.stderr


def test_each_sli_kind_is_fed_its_own_series():
    http, pipeline = _load(POLICIES[1]), _load(POLICIES[2])
    suite = slo_unit_tests([http, pipeline])
    assert [(s.slo, s.inputs, s.notes, s.problems) for s in suite.slos] == [
        ("requests-availability", "real series", (), ()),
        ("requests-latency", "real series", (), ()),
        ("daily-runs", "real series", (), ()),
    ]
    files = _test_files(suite)
    assert _series(files["shop.http-api.requests-availability.page.test.yaml"]) == {
        'http_requests_total{code="500", job="checkout-api"}',
        'http_requests_total{code="lumen-test", job="checkout-api"}',
    }
    assert _series(files["shop.http-api.requests-latency.ticket.test.yaml"]) == {
        'http_request_duration_seconds_count{job="checkout-api"}',
        'http_request_duration_seconds_bucket{job="checkout-api", le="0.3"}',
    }
    assert _series(files["lumen.pipeline.daily-runs.page.test.yaml"]) == {
        'lumen_pipeline_runs_total{result="success"}',
        'lumen_pipeline_runs_total{result="lumen-test"}',
        'lumen_alert_suppressed{namespace="lumen"}',
    }
    # The test rule files hold the rendered recordings and alerts unchanged.
    rendered = {group["name"]: group["rules"] for group in rules_file([http, pipeline])["groups"]}
    for file in suite.files:
        if file.path.endswith(".rules.yaml"):
            (group,) = file.content["groups"]
            assert all(rule in rendered[group["name"]] for rule in group["rules"])
            assert sum("alert" in rule for rule in group["rules"]) == 2


def test_expected_alerts_carry_the_rendered_labels_and_annotations():
    policy = _load(str(ROOT / "tests" / "policies" / "slo-periods.yaml"))
    suite = slo_unit_tests([policy])
    content = _test_files(suite)["search.periods.four-weeks.page.test.yaml"]
    rendered = next(
        rule
        for group in rules_file([policy])["groups"]
        for rule in group["rules"]
        if rule.get("alert") and rule["labels"]["slo"] == "four-weeks"
    )
    above = content["tests"][0]
    assert above["name"].endswith("1h/5m above (x1.1) -> page")
    (expected,) = above["alert_rule_test"][0]["exp_alerts"]
    assert expected == {
        "exp_labels": rendered["labels"],
        "exp_annotations": rendered["annotations"],
    }
    assert expected["exp_labels"]["severity"] == "critical"
    assert expected["exp_labels"]["escalate"] == "true"
    assert content["tests"][1]["alert_rule_test"][0]["exp_alerts"] == []
    # ticket is disabled: no case, no file
    four_weeks = next(s for s in suite.slos if s.slo == "four-weeks")
    assert {c.tier for c in four_weeks.cases} == {"page"}
    assert list(four_weeks.test_files) == ["page"]


_SHAPES = [
    # (errors, total, inputs, series or reason fragment)
    (
        'sum(rate(api_errors_total{job="api"}[{{window}}]))',
        'sum(rate(api_requests_total{job="api"}[{{window}}]))',
        "real series",
        {'api_errors_total{job="api"}', 'api_requests_total{job="api"}'},
    ),
    (
        'sum by (route) (increase(edge_total{code=~"5..|429", route!=""}[{{window}}]))',
        "sum by (route) (increase(edge_total[{{window}}]))",
        "real series",
        None,
    ),
    (
        'sum(rate(grpc_total{grpc_code!~"OK|NotFound", service=~"pay.*"}[{{window}}]))',
        'sum(rate(grpc_total{service=~"pay.*"}[{{window}}]))',
        "real series",
        {
            'grpc_total{grpc_code="lumen-test", service="pay"}',
            'grpc_total{grpc_code="OK", service="pay"}',
        },
    ),
    (
        'sum(rate(http_total{code=~"5.."}[{{window}}])) or vector(0)',
        "sum(rate(http_total[{{window}}]))",
        "synthetic SLI",
        "errors is not sum(rate(...)) or sum(increase(...))",
    ),
    (
        'sum(increase(http_total{code=~"5.."}[{{window}}]))',
        "sum(rate(http_total[{{window}}]))",
        "synthetic SLI",
        "errors uses increase(), total uses rate()",
    ),
    (
        'sum(rate(http_total{code="500"}[{{window}}]))',
        'sum(rate(http_total{code="500"}[{{window}}]))',
        "synthetic SLI",
        "cannot build a series outside",
    ),
]


def test_ratio_shapes_get_real_series_or_a_stated_fallback():
    slos = [_ratio_slo(f"shape{i}", errors, total) for i, (errors, total, *_) in enumerate(_SHAPES)]
    policy = policy_from_manifest(_manifest(slos))
    suite = slo_unit_tests([policy])
    files = _test_files(suite)
    for i, (_, _, inputs, detail) in enumerate(_SHAPES):
        tests = suite.slos[i]
        assert tests.inputs == inputs, (i, tests.notes)
        series = _series(files[tests.test_files["page"]])
        if inputs == "synthetic SLI":
            (note,) = tests.notes
            assert note.startswith(f"tested with synthetic SLI for slo shape{i}: ")
            assert isinstance(detail, str) and detail in note
            assert series == {"lumen_test_errors_total", "lumen_test_requests_total"}
        else:
            assert tests.notes == ()
            assert not any(name.startswith("lumen_test_") for name in series)
            if detail is not None:
                assert series == detail
    # per-route: the alert carries the route label the aggregation keeps
    by_route = files[suite.slos[1].test_files["page"]]["tests"][0]["alert_rule_test"][0]
    assert by_route["exp_alerts"][0]["exp_labels"]["route"] == "lumen-test"
    assert _series(files[suite.slos[1].test_files["page"]]) == {
        'edge_total{code="500", route="lumen-test"}',
        'edge_total{code="lumen-test", route="lumen-test"}',
    }
    # the fallback lives in the test rule file only, never in the rendered rules
    rendered = yaml.safe_dump(rules_file([policy]))
    assert "lumen_test_" not in rendered
    fallback_rules = next(f for f in suite.files if f.path == "qa.shapes.shape3.rules.yaml")
    assert "lumen_test_errors_total" in yaml.safe_dump(fallback_rules.content)


@needs_promtool
def test_ratio_shapes_and_guards_pass_promtool(capsys, tmp_path):
    slos = [
        _ratio_slo(f"shape{i}", errors, total) for i, (errors, total, *_) in enumerate(_SHAPES[:4])
    ]
    slos[0]["minEvents"] = 5_000_000  # traffic is raised so the guard passes
    slos[1]["alerting"] = {"page": {"enabled": False}}
    slos.append(
        {
            **_ratio_slo("off", *_HTTP),
            "alerting": {"page": {"enabled": False}, "ticket": {"enabled": False}},
        }
    )
    manifest = _manifest(slos, suppression={"enabled": True, "selector": '{cluster=~"prod-.*"}'})
    assert main(["test", "-f", _write(tmp_path, manifest)]) == 0
    out = capsys.readouterr().out
    assert "note: tested with synthetic SLI for slo shape3: errors is not sum(rate" in out
    assert "qa/shapes slo shape1 page" not in out
    assert "skip  qa/shapes slo off: every alert tier is disabled" in out
    assert "passed: 5 SLO(s)" in out


def test_thresholds_near_one_are_tested_at_ratio_one_or_reported():
    """Above a threshold of 0.936 the case uses ratio 1 (x1.068); 0.9936 leaves no room."""

    def slo(name: str, objective: float) -> dict[str, Any]:
        runs = {"success": 'jobs_total{ok="true"}', "total": "jobs_total"}
        return {"name": name, "objective": objective, "sli": {"runs": runs}}

    policy = policy_from_manifest(_manifest([slo("roomy", 93.5), slo("tight", 93.1)]))
    roomy, tight = slo_unit_tests([policy]).slos
    above = [c for c in roomy.cases if c.window == "1h/5m" and c.margin > 1]
    assert [c.describe() for c in above] == ["1h/5m above (x1.06838) -> page,ticket"]
    # the silent side is still tested
    assert [c.describe() for c in tight.cases if c.window == "1h/5m"] == [
        "1h/5m below (x0.9) -> ticket"
    ]
    assert len(tight.cases) == 7
    assert tight.notes == ("page 1h/5m: threshold 0.9936 is too close to 1 to test above it",)
    assert roomy.problems == tight.problems == ()


def test_generation_is_pure_and_deterministic():
    policies = [_load(p) for p in POLICIES]
    assert slo_unit_tests(policies) == slo_unit_tests(policies)
