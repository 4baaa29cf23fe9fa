"""``--version`` on every console script: ``<prog> <version>`` on stdout, exit 0, where the
version is the installed distribution's (operator/pyproject.toml), read one shared way
(``lumen_alerting.settings.add_version_flag``)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.support.schemas import REPO

# The installed entry points ([project.scripts]), next to the interpreter running the tests.
PROGRAMS = {
    "lumenctl": "lumenctl.md",
    "lumen-operator": "operator.md",
    "lumen-threader": "threader.md",
    "lumen-exporter": "exporter.md",
}


def test_every_console_script_is_covered():
    project = tomllib.loads((REPO / "operator" / "pyproject.toml").read_text())["project"]
    assert set(project["scripts"]) == set(PROGRAMS)


def test_the_installed_version_is_the_pyproject_version():
    project = tomllib.loads((REPO / "operator" / "pyproject.toml").read_text())["project"]
    assert version("lumen-alerting") == project["version"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_the_console_script_prints_its_name_and_the_package_version(program):
    script = Path(sys.executable).with_name(program)
    assert script.is_file(), f"{script}: not installed (make setup)"
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"{program} {version('lumen-alerting')}\n",
        "",
    )


@pytest.mark.parametrize("program", PROGRAMS)
def test_the_flag_is_in_the_programs_flag_table(program):
    docs = (REPO / "docs" / PROGRAMS[program]).read_text()
    assert "\n| `--version` | " in docs
    assert f"`{program} <version>`" in docs
