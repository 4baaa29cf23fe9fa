"""``lumenctl validate``'s output streams: exit 1 writes nothing to stdout (README, lumenctl's
docstring), even when the same files also hold valid policies."""

from __future__ import annotations

import pytest

from lumen_alerting.cli.lumenctl import main
from tests.support.schemas import REPO

VALID = (REPO / "examples" / "http-api.yaml").read_text()
INVALID = """\
apiVersion: lumen.dev/v1alpha1
kind: LumenAlertPolicy
metadata:
  name: broken
  namespace: shop
spec:
  service: checkout-api
  rules:
    - alert: Broken
      expr: up{job=
      severity: critical
"""


def test_all_valid_summaries_on_stdout(tmp_path, capsys: pytest.CaptureFixture[str]):
    policy = tmp_path / "policies.yaml"
    policy.write_text(VALID)
    assert main(["validate", "-f", str(policy)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{policy}: shop/http-api valid: 9 alert rules, 2 SLOs, 2 receivers\n"
    assert err == ""


def test_one_valid_one_invalid_exits_1_with_nothing_on_stdout(
    tmp_path, capsys: pytest.CaptureFixture[str]
):
    policies = tmp_path / "policies.yaml"
    policies.write_text(VALID + "---\n" + INVALID)
    assert main(["validate", "-f", str(policies)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    # The problem first, then what was valid, all on stderr.
    assert err.splitlines() == [
        f"{policies}[1]: spec.rules[0].expr: invalid PromQL: unexpected end of input inside "
        'braces (column 3: "{job=")',
        f"{policies}[0]: shop/http-api valid: 9 alert rules, 2 SLOs, 2 receivers",
    ]


def test_an_invalid_file_beside_a_valid_one_also_keeps_stdout_empty(
    tmp_path, capsys: pytest.CaptureFixture[str]
):
    (tmp_path / "a-valid.yaml").write_text(VALID)
    (tmp_path / "b-invalid.yaml").write_text(INVALID)
    assert main(["validate", "-f", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "b-invalid.yaml: spec.rules[0].expr: invalid PromQL" in err
    assert "a-valid.yaml: shop/http-api valid" in err


TOP_LEVEL_TYPO = """\
apiVersion: lumen.dev/v1alpha1
kind: LumenAlertPolicy
metadata: {name: x, namespace: y}
sepc:
  service: foo
"""
SCHEMA_AND_SEMANTIC = """\
apiVersion: lumen.dev/v1alpha1
kind: LumenAlertPolicy
metadata: {name: x, namespace: y}
spec:
  service: foo
  rules:
    - alert: A
      expr: rate(x[5m]
      for: 5 minutes
  routing:
    receiver: nobody
"""


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        (
            TOP_LEVEL_TYPO,
            [
                "sepc: unknown field (did you mean spec? allowed: apiVersion, kind, metadata, "
                "spec, status)",
                "spec: required",
            ],
        ),
        (
            SCHEMA_AND_SEMANTIC,
            [
                "spec.routing.receiver: no receiver named 'nobody'",
                "spec.rules[0].expr: invalid PromQL: unclosed left parenthesis "
                '(column 5: "(x[5m]")',
                "spec.rules[0].for: '5 minutes' is not a duration (use e.g. 30s, 5m, 1h30m, 7d)",
            ],
        ),
    ],
    ids=["top-level-typo", "schema-and-semantic"],
)
def test_every_problem_of_a_first_policy_in_one_run(
    tmp_path, capsys: pytest.CaptureFixture[str], text, lines
):
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    assert main(["validate", "-f", str(policy)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"{policy}: {line}" for line in lines]
