"""tools/image_requirements.py: the image installs the lock's runtime part, hashes and all."""

from __future__ import annotations

import importlib.util
import sys

from tests.support.schemas import REPO

_spec = importlib.util.spec_from_file_location(
    "image_requirements", REPO / "tools" / "image_requirements.py"
)
assert _spec and _spec.loader
image_requirements = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = image_requirements  # its dataclass looks itself up there
_spec.loader.exec_module(image_requirements)

LOCK = (REPO / "operator" / "requirements.lock").read_text()
PYPROJECT = (REPO / "operator" / "pyproject.toml").read_text()


def runtime_names() -> set[str]:
    return {entry.name for entry in image_requirements.runtime_entries(LOCK, PYPROJECT)}


def test_the_runtime_part_holds_every_dependency_and_theirs():
    names = runtime_names()
    # Direct dependencies, and dependencies of dependencies (kopf's, kubernetes', matplotlib's).
    assert {"kopf", "aiohttp", "pydantic", "matplotlib", "redis"} <= names
    assert {"iso8601", "durationpy", "pillow", "yarl", "pydantic-core"} <= names


def test_the_test_extra_stays_out():
    names = runtime_names()
    test_only = {"pytest", "mypy", "ruff", "hypothesis", "kubernetes-validate", "kmock"}
    assert not names & test_only
    # Needed only by test tools (import-linter's grimp, hypothesis' sortedcontainers).
    assert not names & {"grimp", "sortedcontainers", "cel-python", "pendulum"}


def test_every_entry_is_copied_with_its_hashes():
    for entry in image_requirements.runtime_entries(LOCK, PYPROJECT):
        assert entry.lines[0].startswith(f"{entry.name}==") or "==" in entry.lines[0]
        assert any("--hash=sha256:" in line for line in entry.lines), entry.name


def test_a_dependency_missing_from_the_lock_is_refused():
    pyproject = PYPROJECT.replace('"kopf",', '"kopf",\n    "not-locked-anywhere",')
    try:
        image_requirements.runtime_entries(LOCK, pyproject)
    except ValueError as error:
        assert "not-locked-anywhere" in str(error)
    else:
        raise AssertionError("a dependency missing from the lock was accepted")


def test_multi_line_via_comments_are_read():
    lock = (
        "a==1 \\\n    --hash=sha256:00\n    # via lumen-alerting (operator/pyproject.toml)\n"
        "b==1 \\\n    --hash=sha256:11\n    # via\n    #   a\n    #   pytest\n"
        "c==1 \\\n    --hash=sha256:22\n    # via pytest\n"
    )
    pyproject = '[project]\nname = "x"\ndependencies = ["a"]\n'
    kept = [entry.name for entry in image_requirements.runtime_entries(lock, pyproject)]
    assert kept == ["a", "b"]
