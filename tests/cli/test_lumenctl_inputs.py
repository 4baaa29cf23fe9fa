"""What ``lumenctl -f`` reads (docs/lumenctl.md, "Inputs"): other Kubernetes objects beside the
policies are skipped with one note, ``-R`` reads subdirectories, and YAML errors (duplicate keys
too) are one ``file:line:column: reason`` line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumen_alerting.cli.lumenctl import main
from tests.support.schemas import REPO

POLICY = (REPO / "examples" / "http-api.yaml").read_text()
SUMMARY = "shop/http-api valid: 9 alert rules, 2 SLOs, 2 receivers"
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"
CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\n"


def argo_directory(root: Path) -> Path:
    """An Argo CD style directory: a Namespace before the policy, a ConfigMap, a README, and a
    policy in a subdirectory."""
    (root / "ns.yaml").write_text(NAMESPACE + "---\n" + POLICY)
    (root / "settings.yml").write_text(CONFIG_MAP)
    (root / "README.md").write_text("not: [yaml\n")  # not read: not .yaml or .yml
    (root / "team").mkdir()
    (root / "team" / "gateway.yaml").write_text((REPO / "examples" / "gateway.yaml").read_text())
    return root


def test_other_objects_are_skipped_with_one_note(tmp_path, capsys: pytest.CaptureFixture[str]):
    root = argo_directory(tmp_path)
    assert main(["validate", "-f", str(root)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{root}/ns.yaml[1]: {SUMMARY}\n"  # team/ is not read without -R
    assert err == (
        "lumenctl: skipped 2 documents that are not LumenAlertPolicy: "
        f"{root}/ns.yaml[0] Namespace/shop, {root}/settings.yml ConfigMap/settings\n"
    )


@pytest.mark.parametrize("flag", ["-R", "--recursive"])
def test_recursive_reads_subdirectories(tmp_path, flag, capsys: pytest.CaptureFixture[str]):
    root = argo_directory(tmp_path)
    assert main(["validate", flag, "-f", str(root)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{root}/ns.yaml[1]: {SUMMARY}",
        f"{root}/team/gateway.yaml: lumen/gateway valid: 18 alert rules, 0 SLOs, 4 receivers",
    ]
    assert err.count("\n") == 1 and err.startswith("lumenctl: skipped 2 documents")


def test_render_skips_the_namespace_and_renders_the_policy(
    tmp_path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "all.yaml"
    path.write_text(NAMESPACE + "---\n" + POLICY)
    assert main(["render", "-f", str(path), "--kind", "prometheusrule"]) == 0
    out, err = capsys.readouterr()
    assert "kind: PrometheusRule" in out and "kind: Namespace" not in out
    assert err == (
        f"lumenctl: skipped 1 document that is not LumenAlertPolicy: {path}[0] Namespace/shop\n"
    )


def test_the_note_lists_five_and_counts_the_rest(tmp_path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "all.yaml"
    objects = [f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n" for i in range(7)]
    path.write_text("---\n".join([*objects, POLICY]))
    assert main(["validate", "-f", str(path)]) == 0
    err = capsys.readouterr().err
    assert err.endswith(f"{path}[4] ConfigMap/c4, and 2 more\n")
    assert err.startswith("lumenctl: skipped 7 documents")


def test_only_other_objects_is_no_policy_found(tmp_path, capsys: pytest.CaptureFixture[str]):
    """As for an empty input: exit 1, nothing on stdout; the note says what was skipped."""
    path = tmp_path / "ns.yaml"
    path.write_text(NAMESPACE)
    for command in ("render", "validate", "test"):
        assert main([command, "-f", str(path)]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert err.splitlines() == [
            f"lumenctl: skipped 1 document that is not LumenAlertPolicy: {path} Namespace/shop",
            f"no LumenAlertPolicy found in {path}",
        ]


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("apiVersion: lumen.dev/v1\nkind: LumenAlertPolicy\n", "apiVersion: must be"),
        ("apiVersion: example.com/v1\nkind: LumenAlertPolicy\n", "apiVersion: must be"),
        ("apiVersion: lumen.dev/v1alpha1\nkind: LumenAlertPolcy\n", "kind: must be"),
        ("apiVersion: lumen.dev/v1alpha1\n", "kind: must be"),
        ("", "kind: must be"),
    ],
)
def test_a_document_that_means_to_be_a_policy_is_still_checked(
    tmp_path, header, problem, capsys: pytest.CaptureFixture[str]
):
    body = POLICY.split("kind: LumenAlertPolicy\n", 1)[1]  # metadata and spec
    path = tmp_path / "policy.yaml"
    path.write_text(header + body)
    assert main(["validate", "-f", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{path}: {problem}" in err
    assert "skipped" not in err


def test_a_list_document_is_an_error_not_skipped(tmp_path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "list.yaml"
    path.write_text("- kind: Namespace\n")
    assert main(["validate", "-f", str(path)]) == 1
    assert capsys.readouterr().err == f"{path}: <document>: must be a LumenAlertPolicy object\n"


def test_yaml_syntax_error_is_one_line_with_line_and_column(
    tmp_path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "bad.yaml"
    path.write_text("metadata:\n  name: x\n  labels: team: a\n")
    assert main(["validate", "-f", str(path)]) == 1
    assert capsys.readouterr() == ("", f"{path}:3:15: mapping values are not allowed here\n")


def test_duplicate_key_is_an_error_not_last_wins(tmp_path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "bad.yaml"
    # A second expr in the first rule (examples/http-api.yaml line 15), deep in a valid policy.
    path.write_text(POLICY.replace("expr: ", "expr: up\n      expr: ", 1))
    assert path.read_text().splitlines()[15] == '      expr: up{job="checkout-api"} == 0'
    for command in ("render", "validate"):
        assert main([command, "-f", str(path)]) == 1
        assert capsys.readouterr() == ("", f"{path}:16:7: duplicate key 'expr'\n")


def test_merge_keys_are_not_duplicates(tmp_path, capsys: pytest.CaptureFixture[str]):
    """A YAML merge (<<) may be overridden by a key of the mapping: that is no duplicate."""
    path = tmp_path / "all.yaml"
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m\n"
        "data:\n  base: &base {a: '1', b: '2'}\n  over:\n    <<: *base\n    a: '3'\n"
        "---\n" + POLICY
    )
    assert main(["validate", "-f", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}[1]: {SUMMARY}\n"


def test_a_file_that_is_not_utf8_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(POLICY.encode() + "# caf\xe9\n".encode("latin-1"))
    assert main(["validate", "-f", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"{path}: <file>: not UTF-8 text (byte {len(POLICY.encode()) + 5})"
