"""The import contracts in ``.importlinter`` hold, and they catch the imports they exist to stop.

``make lint`` runs ``lint-imports`` on the real tree. These tests run it on a copy of the package
with one forbidden import added, so a contract that silently stopped matching (a renamed
package, a typo in a module path) fails here instead of passing for ever.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "operator" / "lumen_alerting"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repository's contracts over the package copy under ``tree``."""
    return subprocess.run(
        [str(LINT_IMPORTS), str(ROOT / ".importlinter"), "--no-cache"],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "lumen_alerting", ignore=shutil.ignore_patterns("__py*"))
    return tmp_path


def test_the_tree_keeps_every_contract(package_copy: Path) -> None:
    result = lint_imports(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def not_allowed(importer: str, imported: str) -> str:
    """How lint-imports words a broken forbidden or layers contract."""
    return f"lumen_alerting.{importer} is not allowed to import {imported}"


# (module to change, import to add, what lint-imports must say). Each contract of .importlinter
# has at least one case that breaks it alone, and every external name it forbids has one: an
# external name import-linter does not know is not an error, so a typo would pass unseen.
BAD_IMPORTS = [
    # pure-core: the renderer and the model stay pure
    ("render/alerts.py", "import httpx", not_allowed("render", "httpx")),
    ("render/alerts.py", "import aiohttp", not_allowed("render", "aiohttp")),
    ("render/objects.py", "import redis", not_allowed("render", "redis")),
    ("render/slo.py", "import prometheus_client", not_allowed("render", "prometheus_client")),
    ("policy/model.py", "import kopf", not_allowed("policy", "kopf")),
    ("policy/model.py", "import kubernetes", not_allowed("policy", "kubernetes")),
    (
        "render/objects.py",
        "from lumen_alerting.operator import kinds",
        not_allowed("render", "lumen_alerting.operator"),
    ),
    # package-layers (alone): a lower layer importing a higher one, siblings importing each other
    (
        "policy/model.py",
        "from lumen_alerting.render import alerts",
        not_allowed("policy", "lumen_alerting.render"),
    ),
    (
        "operator/metrics.py",
        "from lumen_alerting.threader import config",
        not_allowed("operator", "lumen_alerting.threader"),
    ),
    (
        "exporter/metrics.py",
        "from lumen_alerting.threader import config",
        not_allowed("exporter", "lumen_alerting.threader"),
    ),
    # services-apart
    (
        "threader/webhook.py",
        "from lumen_alerting.operator import config",
        not_allowed("threader", "lumen_alerting.operator"),
    ),
    (
        "exporter/probes.py",
        "from lumen_alerting.operator import config",
        not_allowed("exporter", "lumen_alerting.operator"),
    ),
    ("exporter/app.py", "import kopf", not_allowed("exporter", "kopf")),
    # pure-core and shared-leaves: nothing below the services imports the exporter
    (
        "render/exporter.py",
        "from lumen_alerting.exporter import config",
        not_allowed("render", "lumen_alerting.exporter"),
    ),
    # report-apart, report-pure, and the report's place in package-layers
    (
        "report/records.py",
        "from lumen_alerting.exporter import config",
        not_allowed("report", "lumen_alerting.exporter"),
    ),
    ("report/prometheus.py", "import kopf", not_allowed("report", "kopf")),
    ("report/analysis.py", "import httpx", not_allowed("report.analysis", "httpx")),
    ("report/html.py", "import httpx", not_allowed("report.html", "httpx")),
    ("report/records.py", "import aiohttp", not_allowed("report.records", "aiohttp")),
    (
        "exporter/metrics.py",
        "from lumen_alerting.report import analysis",
        not_allowed("exporter", "lumen_alerting.report"),
    ),
    (
        "render/objects.py",
        "from lumen_alerting.report import analysis",
        not_allowed("render", "lumen_alerting.report"),
    ),
    # operator-layers
    (
        "operator/kube.py",
        "from lumen_alerting.operator import reconcile",
        "lumen_alerting.operator.kube -> lumen_alerting.operator.reconcile",
    ),
    (
        "operator/runs.py",
        "from lumen_alerting.operator import handlers",
        "lumen_alerting.operator.runs -> lumen_alerting.operator.handlers",
    ),
    # kubernetes-client
    ("operator/status.py", "import kubernetes", "lumen_alerting.operator.status -> kubernetes"),
    # store-contract, store-implementations, store-drivers
    (
        "threader/app.py",
        "from lumen_alerting.threader.store import redis",
        not_allowed("threader.app", "lumen_alerting.threader.store.redis"),
    ),
    (
        "threader/store/memory.py",
        "from lumen_alerting.threader.store import sqlite",
        not_allowed("threader.store.memory", "lumen_alerting.threader.store.sqlite"),
    ),
    ("threader/delivery.py", "import sqlite3", "lumen_alerting.threader.delivery -> sqlite3"),
    ("threader/slack.py", "import redis", "lumen_alerting.threader.slack -> redis"),
    # shared-leaves
    (
        "settings.py",
        "from lumen_alerting.policy import durations",
        not_allowed("settings", "lumen_alerting.policy"),
    ),
    (
        "logs.py",
        "from lumen_alerting.exporter import config",
        not_allowed("logs", "lumen_alerting.exporter"),
    ),
    # the CSV log's format and the atomic write: shared by the exporter and the report, which
    # may not import each other, so the leaves import neither
    (
        "probe_log_format.py",
        "from lumen_alerting.exporter import csv_log",
        not_allowed("probe_log_format", "lumen_alerting.exporter"),
    ),
    (
        "atomic_files.py",
        "from lumen_alerting.report import records",
        not_allowed("atomic_files", "lumen_alerting.report"),
    ),
    # the RFC 9535 environment: the policy checks and the exporter's body reader share it, and
    # the reader must start without loading the policy package
    (
        "json_paths.py",
        "from lumen_alerting.policy import model",
        not_allowed("json_paths", "lumen_alerting.policy"),
    ),
    # demo-on-top: the demo may use the services; they never import it
    (
        "threader/app.py",
        "from lumen_alerting.demo import slack_sink",
        not_allowed("threader", "lumen_alerting.demo"),
    ),
]


@pytest.mark.parametrize(("module", "statement", "complaint"), BAD_IMPORTS)
def test_a_forbidden_import_breaks_a_contract(
    package_copy: Path, module: str, statement: str, complaint: str
) -> None:
    path = package_copy / "lumen_alerting" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{statement}  # noqa\n", "utf-8")
    result = lint_imports(package_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert complaint in " ".join(result.stdout.split()), result.stdout  # lines are wrapped


def test_importing_the_store_contract_loads_no_database_driver() -> None:
    """The store package re-exports only the contract and MemoryStore, so the request side and
    the tests' doubles never pull in a driver (import-linter sees the package's own imports,
    not what importing it loads)."""
    probe = (
        "import sys, lumen_alerting.threader.store.contract, lumen_alerting.threader.store, "
        "lumen_alerting.threader.acceptance; "
        "print(sorted(m for m in ('redis', 'sqlite3', '_sqlite3') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"
