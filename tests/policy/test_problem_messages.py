"""What a first-hour user reads: PromQL errors with their position, durations in words, a
top-level typo as an unknown field, and the schema's and the semantic checks' problems of one
policy together, in path order, without verdicts on parts that did not load."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lumen_alerting.policy import InvalidPolicy, policy_from_manifest
from lumen_alerting.policy.validation import promql_problem
from tests.policy.test_validation import VALID, changed

DURATION_HINT = "is not a duration (use e.g. 30s, 5m, 1h30m, 7d)"


def problems(manifest: Any) -> list[str]:
    with pytest.raises(InvalidPolicy) as invalid:
        policy_from_manifest(manifest)
    return [str(p) for p in invalid.value.problems]


# (expression, the exact reason after "spec.rules[0].expr: invalid PromQL: ")
WRONG_EXPRESSIONS = [
    ("rate(x[5m]", 'unclosed left parenthesis (column 5: "(x[5m]")'),
    # The unclosed one, not the first: the earlier ones are closed.
    ("sum(rate(x[5m])) by (job", 'unclosed left parenthesis (column 21: "(job")'),
    ('up{job="a"', 'unexpected end of input inside braces (column 3: "{job="a"")'),
    ("x[5m", 'unexpected end of input inside brackets (column 2: "[5m")'),
    ('up{a="b}', 'unterminated quoted string " (column 6: ""b}")'),
    ("rate(x[5m]))", "unexpected right parenthesis ')' (column 12: \")\")"),
    # A parenthesis in a string or a comment is no bracket.
    ('up{a="("} # (\n + (y', 'unclosed left parenthesis (line 2, column 4: "(y")'),
    ("rate(x[5 m])", "unexpected character inside brackets: 'm' (column 10: \"m])\")"),
    (
        "nosuchfn(x)",
        "unknown function with name 'nosuchfn' (column 1: \"nosuchfn(x)\")",
    ),
    ("sum(x) by job", 'invalid promql query (near column 8: "by job")'),
    ("foo bar", 'invalid promql query (near column 5: "bar")'),
    ('x{a="b" c="d"}', 'invalid promql query (near column 9: "c="d"}")'),
    (
        "sum(\n  rate(x[5m])\n) by job",
        'invalid promql query (near line 3, column 3: "by job")',
    ),
    (
        "histogram_quantile(0.9 rate(x[5m]))",
        'invalid promql query (near column 24: "rate(x[5m]))")',
    ),
    # About the whole expression, not one place in it: no position.
    ('"a" + 1', "binary expression must contain only scalar and instant vector types"),
]


@pytest.mark.parametrize(
    ("expr", "reason"), WRONG_EXPRESSIONS, ids=[e for e, _ in WRONG_EXPRESSIONS]
)
def test_promql_errors_name_their_position(expr, reason):
    assert problems(changed("spec.rules[0].expr", expr)) == [
        f"spec.rules[0].expr: invalid PromQL: {reason}"
    ]


def test_a_long_expression_is_quoted_from_the_position_and_cut():
    expr = "sum(rate(http_requests_total{code=~'5..'}[5m])) by (job, instance, pod"
    assert promql_problem("p", expr) is not None
    assert str(promql_problem("p", expr)) == (
        'p: invalid PromQL: unclosed left parenthesis (column 52: "(job, instance, pod")'
    )
    longer = expr.replace("pod", "pod, container, namespace")
    assert str(promql_problem("p", longer)).endswith('(column 52: "(job, instance, pod, con…")')


def test_a_ratio_sli_error_is_placed_in_the_text_as_written():
    """{{window}} stands in the user's text: the column counts it as written."""
    errors = 'sum(rate(http_requests_total{code=~"5.."}[{{window}}]) by (job'
    assert errors.index("(job") == 58
    assert problems(changed("spec.slos[0].sli.ratio.errors", errors)) == [
        "spec.slos[0].sli.ratio.errors: invalid PromQL: unclosed left parenthesis "
        '(column 59: "(job")'
    ]
    total = "sum(rate(http_requests_total[{{window}}])) by job"
    assert problems(changed("spec.slos[0].sli.ratio.total", total)) == [
        "spec.slos[0].sli.ratio.total: invalid PromQL: invalid promql query "
        '(near column 44: "by job")'
    ]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.rules[0].for", "5 minutes"),
        ("spec.slos[0].period", "1 month"),
        ("spec.routing.groupWait", "30 s"),
        ("spec.routing.routes[0].repeatInterval", "1h 30m"),
        ("spec.presets[0].overrides", {"IONAPIDown": {"for": "soon"}}),
    ],
)
def test_a_duration_error_shows_what_a_duration_looks_like(path, value):
    manifest = changed(path, value)
    where, text = (f"{path}.IONAPIDown.for", "soon") if isinstance(value, dict) else (path, value)
    assert problems(manifest) == [f"{where}: {text!r} {DURATION_HINT}"]


def test_a_top_level_typo_is_an_unknown_field():
    manifest = {k: v for k, v in VALID.items() if k != "spec"} | {"sepc": VALID["spec"]}
    assert problems(manifest) == [
        "sepc: unknown field (did you mean spec? allowed: apiVersion, kind, metadata, spec, "
        "status)",
        "spec: required",
    ]


def test_an_empty_top_level_key_is_named():
    assert problems(VALID | {"": 1}) == [
        "'': unknown field (allowed: apiVersion, kind, metadata, spec, status)"
    ]


def test_status_is_not_a_typo():
    policy_from_manifest(VALID | {"status": {"conditions": []}})


def test_schema_and_semantic_problems_come_in_one_pass_in_path_order():
    manifest = changed("spec.rules[0].expr", "rate(x[5m]")
    manifest = changed("spec.rules[0].for", "5 minutes", manifest)
    manifest = changed("spec.routing.receiver", "nobody", manifest)
    manifest = changed("spec.slos[0].objective", "99.9%", manifest)
    assert problems(manifest) == [
        "spec.routing.receiver: no receiver named 'nobody'",
        'spec.rules[0].expr: invalid PromQL: unclosed left parenthesis (column 5: "(x[5m]")',
        f"spec.rules[0].for: '5 minutes' {DURATION_HINT}",
        "spec.slos[0].objective: must be a number, not a string",
    ]


def test_list_indexes_sort_by_number():
    manifest = copy.deepcopy(VALID)
    rule = manifest["spec"]["rules"][0]
    manifest["spec"]["rules"] = [rule] * 11
    manifest["spec"]["rules"][10] = rule | {"expr": "up +"}
    manifest["spec"]["rules"][2] = rule | {"expr": "up -"}
    assert [p.split(":")[0] for p in problems(manifest)] == [
        "spec.rules[2].expr",
        "spec.rules[10].expr",
    ]


def test_semantic_paths_count_the_items_that_did_not_load():
    """rules[0] does not load (no alert): the bad PromQL of the next rule is still rules[1]."""
    manifest = copy.deepcopy(VALID)
    rule = manifest["spec"]["rules"][0]
    manifest["spec"]["rules"] = [{"expr": "up"}, rule | {"expr": "up +"}]
    assert problems(manifest) == [
        "spec.rules[0].alert: required",
        'spec.rules[1].expr: invalid PromQL: invalid promql query (near column 4: "+")',
    ]


def test_a_route_to_a_receiver_that_did_not_load_is_not_called_unknown():
    """receivers[0] ("oncall") has a bad address: it did not load, but it exists."""
    manifest = changed("spec.routing.receivers[0].email.to", "not an address")
    manifest = changed("spec.routing.receiver", "nobody", manifest)
    assert problems(manifest) == [
        "spec.routing.receivers[0].email.to: 'not an address' does not match ^[^@\\s,]+@[^@\\s,]+$"
    ]


def test_an_slo_whose_period_did_not_load_is_not_judged_on_the_default():
    """Objective 90% can never page over 30d (the default): over the period written, maybe."""
    manifest = changed("spec.slos[0].objective", 90, changed("spec.slos[0].period", "7 days"))
    assert problems(manifest) == [f"spec.slos[0].period: '7 days' {DURATION_HINT}"]


def test_an_slo_whose_alerting_did_not_load_is_not_judged_on_the_default():
    manifest = changed("spec.slos[0].objective", 90)
    manifest = changed("spec.slos[0].alerting", {"page": {"enabled": "no"}}, manifest)
    assert problems(manifest) == [
        "spec.slos[0].alerting.page.enabled: must be a boolean, not a string"
    ]


def test_a_slack_receiver_is_not_told_to_set_a_threader_that_did_not_load():
    manifest = changed("spec.routing.receivers[0]", {"name": "oncall", "slack": {"channel": "#x"}})
    manifest = changed("spec.threader", {"replicas": "two"}, manifest)
    assert problems(manifest) == ["spec.threader.replicas: must be an integer, not a string"]


def test_a_spec_without_its_service_is_still_checked_beyond_the_schema():
    manifest = changed("spec.service", ..., changed("spec.rules[0].expr", "up +"))
    assert problems(manifest) == [
        'spec.rules[0].expr: invalid PromQL: invalid promql query (near column 4: "+")',
        "spec.service: required",
    ]
