"""The repository root is a Helm chart: it lints clean and packages without Python sources or
test caches (and keeps what the templates read: files/, dashboards/, crds/, templates/tests/)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.chart.helm import run_helm

ROOT = Path(__file__).resolve().parents[2]


def run_helm_ok(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    proc = run_helm(*args, cwd=cwd)
    assert proc.returncode == 0, (
        f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


@pytest.mark.parametrize(
    "values", [None, *sorted((ROOT / "examples/chart-values").glob("*.yaml"))],
    ids=lambda v: v.stem if v else "defaults",
)  # fmt: skip
def test_helm_lint_strict(values: Path | None) -> None:
    proc = run_helm_ok("lint", "--strict", ".", *(["--values", str(values)] if values else []))
    out = proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_helm_package_excludes_sources(tmp_path: Path) -> None:
    run_helm_ok("package", ".", "--destination", str(tmp_path))
    chart = ROOT / "Chart.yaml"
    version = next(
        line.split(":", 1)[1].strip().strip("\"'")
        for line in chart.read_text().splitlines()
        if line.startswith("version:")
    )
    tgz = tmp_path / f"lumen-{version}.tgz"
    assert tgz.is_file(), sorted(p.name for p in tmp_path.iterdir())

    with tarfile.open(tgz) as tar:
        names = tar.getnames()
    assert all(n.startswith("lumen/") for n in names), names
    rel = [n.split("/", 1)[1] for n in names if "/" in n]
    tops = {r.split("/", 1)[0] for r in rel}

    assert {
        "Chart.yaml",
        "values.yaml",
        "values.schema.json",
        "files",
        "dashboards",
        "crds",
        "LICENSE",  # the chart is distributed on its own: it carries its license (Apache-2.0)
    } <= tops
    # What the templates read or helm runs must stay in (a bare `tests/` in .helmignore once
    # dropped templates/tests/).
    assert "templates/tests/metrics-test.yaml" in rel, sorted(rel)
    assert "files/operator-rbac.yaml" in rel
    dashboards = sorted(p.name for p in (ROOT / "dashboards").glob("*.json"))
    assert sorted(r.split("/", 1)[1] for r in rel if r.startswith("dashboards/")) == dashboards
    # An allowlist, not a list of exclusions: whatever else lands in the working copy (an image
    # recipe, test artifacts, a new tool's cache) stays out, and the release Secret, which holds
    # the whole chart and may not exceed 1 MiB, stays small.
    strays = sorted(tops - set(CHART_PARTS))
    assert not strays, f"packaged chart holds what is no chart file: {strays}; see .helmignore"
    assert tgz.stat().st_size < 256 * 1024, f"packaged chart is {tgz.stat().st_size} bytes"
    py = [r for r in rel if r.endswith((".py", ".pyc", ".toml", ".lock"))]
    assert not py, f"packaged chart contains Python/build files: {py}"
    # README.md of the chart and of each subchart (charts/<name>/README.md) document values.
    readmes = {"README.md"} | {
        f"charts/{c}/README.md" for c in {r.split("/")[1] for r in rel if r.startswith("charts/")}
    }
    md = [r for r in rel if r.endswith(".md") and r not in readmes]
    assert not md, f"packaged chart contains docs: {md}"


# What test runs and local services leave in a working copy, at the root and deeper down.
CACHES = (
    ".hypothesis/constants/0a1b2c3d",  # what hypothesis writes (examples/ is ignored already)
    ".hypothesis/unicode_data/15.0.0/charmap.json.gz",
    ".mypy_cache/3.11/lumen.data.json",
    ".dmypy.json",
    ".pytype/imports/x.imports",
    ".coverage",
    ".coverage.host.1234.567",
    "coverage.xml",
    "htmlcov/index.html",
    ".tox/py311/log.txt",
    ".nox/tests/log.txt",
    ".benchmarks/Linux/0001_run.json",
    ".eggs/README.txt",
    "node_modules/left-pad/package.json",
    ".pytest_cache/v/cache/lastfailed",
    "threader.db",
    "threader.db-wal",
    "threader.db-shm",
    "incidents.sqlite3",
    "templates/__pycache__/x.cpython-311.pyc",
    "files/.hypothesis/constants/abc",
    "files/state.db",
    "test-artifacts/report/report.png",  # tests/report's screenshot, kept for CI
)
CHART_PARTS = (
    "Chart.yaml",
    "values.yaml",
    "values.schema.json",
    "README.md",
    "LICENSE",
    ".helmignore",
    "templates",
    "files",
    "crds",
    "charts",
    "dashboards",
)


def test_helm_package_leaves_test_caches_out(tmp_path: Path) -> None:
    """A chart packaged from a working copy where tests ran holds none of their caches."""
    work = tmp_path / "lumen"
    work.mkdir()
    for part in CHART_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, work / part)
        elif source.is_file():
            shutil.copy2(source, work / part)
    for cache in CACHES:
        (work / cache).parent.mkdir(parents=True, exist_ok=True)
        (work / cache).write_text("cache\n")
    out = tmp_path / "out"
    run_helm_ok("package", str(work), "--destination", str(out))
    (tgz,) = out.glob("lumen-*.tgz")
    with tarfile.open(tgz) as tar:
        packaged = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    leaked = sorted(cache for cache in CACHES if cache in packaged)
    assert not leaked, f"packaged chart contains test caches: {leaked}"
    assert {"Chart.yaml", "values.yaml", "values.schema.json"} <= packaged
    assert any(name.startswith("templates/") for name in packaged)
