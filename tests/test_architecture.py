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


@pytest.mark.parametrize(
    ("module", "statement", "complaint"),
    [
        (
            "render/alerts.py",
            "import httpx",
            "lumen_alerting.render is not allowed to import httpx",
        ),
        (
            "policy/model.py",
            "import kopf",
            "lumen_alerting.policy is not allowed to import kopf",
        ),
        (
            "render/objects.py",
            "from lumen_alerting.operator import kinds",
            "lumen_alerting.render is not allowed to import lumen_alerting.operator",
        ),
        (
            "threader/webhook.py",
            "from lumen_alerting.operator import config",
            "lumen_alerting.threader is not allowed to import lumen_alerting.operator",
        ),
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
        (
            "threader/app.py",
            "from lumen_alerting.threader.store import redis",
            "lumen_alerting.threader.app is not allowed to import "
            "lumen_alerting.threader.store.redis",
        ),
        (
            "threader/store/memory.py",
            "from lumen_alerting.threader.store import sqlite",
            "lumen_alerting.threader.store.memory is not allowed to import "
            "lumen_alerting.threader.store.sqlite",
        ),
        (
            "threader/delivery.py",
            "import sqlite3",
            "lumen_alerting.threader.delivery -> sqlite3",
        ),
        (
            "operator/status.py",
            "import kubernetes",
            "lumen_alerting.operator.status -> kubernetes",
        ),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    package_copy: Path, module: str, statement: str, complaint: str
) -> None:
    path = package_copy / "lumen_alerting" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{statement}  # noqa\n", "utf-8")
    result = lint_imports(package_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert complaint in " ".join(result.stdout.split()), result.stdout  # lines are wrapped
