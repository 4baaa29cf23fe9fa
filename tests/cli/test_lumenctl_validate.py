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
        f"{policies}[1]: spec.rules[0].expr: invalid PromQL: unexpected end of input inside braces",
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
