"""``lumenctl test``: write the generated SLO unit tests and run ``promtool test rules`` on them.

One promtool run per test file (an SLO's page or ticket cases), several at a time, so a failure
is reported against its SLO and tier.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..manifest_yaml import to_yaml
from ..policy.model import Policy
from .burn_rate_cases import SLOUnitTests, UnitTestSuite, slo_unit_tests

PROMTOOL_TIMEOUT = 600  # seconds per test file


@dataclass(frozen=True)
class _Outcome:
    passed: bool
    output: str


def run_slo_tests(policies: list[Policy], promtool: str, keep: str | None) -> int:
    """0 when every generated case passes, 1 on any failure or missing promtool."""
    binary = shutil.which(promtool)
    if binary is None:
        print(
            f"lumenctl test: promtool not found: {promtool!r} "
            "(install Prometheus' promtool or pass --promtool PATH)",
            file=sys.stderr,
        )
        return 1
    suite = slo_unit_tests(policies)
    for name in suite.policies_without_slos:
        print(f"{name}: no SLOs, nothing to test")
    if not suite.slos:
        print("no SLOs in the given policies: nothing to test")
        return 0
    if keep is not None:
        directory = Path(keep)
        directory.mkdir(parents=True, exist_ok=True)
        outcomes = _run(suite, binary, directory)
    else:
        with tempfile.TemporaryDirectory(prefix="lumenctl-test-") as temporary:
            outcomes = _run(suite, binary, Path(temporary))
    failed = _report(suite, outcomes)
    if keep is not None:
        print(
            f"generated files kept in {keep} (rerun: cd {keep} && promtool test rules *.test.yaml)"
        )
    return 1 if failed else 0


def _run(suite: UnitTestSuite, binary: str, directory: Path) -> dict[str, _Outcome]:
    for file in suite.files:
        (directory / file.path).write_text(to_yaml(file.content), encoding="utf-8")
    workers = max(1, min(len(suite.test_files), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = pool.map(lambda path: _promtool(binary, directory, path), suite.test_files)
        return dict(zip(suite.test_files, outcomes, strict=True))


def _promtool(binary: str, directory: Path, path: str) -> _Outcome:
    try:
        result = subprocess.run(
            [binary, "test", "rules", path],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=PROMTOOL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return _Outcome(False, f"promtool did not finish within {PROMTOOL_TIMEOUT}s")
    except OSError as error:
        return _Outcome(False, f"cannot run {binary}: {error}")
    return _Outcome(result.returncode == 0, (result.stdout + result.stderr).strip())


def _report(suite: UnitTestSuite, outcomes: dict[str, _Outcome]) -> int:
    """Print one line per SLO and tier; return how many files or SLOs failed."""
    failed = 0
    cases = 0
    for slo in suite.slos:
        for problem in slo.problems:
            failed += 1
            print(f"FAIL  {slo.label}: {problem}")
        if not slo.test_files and not slo.problems:
            print(f"skip  {slo.label}: " + ("; ".join(slo.notes) or "no cases"))
        suppressed, first = slo.suppressed_case, next(iter(slo.test_files), None)
        for tier, path in slo.test_files.items():
            outcome = outcomes[path]
            tier_cases = [c for c in slo.cases if c.tier == tier]
            cases += len(tier_cases)
            print(
                f"{'ok  ' if outcome.passed else 'FAIL'}  {slo.label} {tier}: "
                f"{len(tier_cases)} cases, {_windows(slo, tier)}, {slo.inputs}"
                + (", suppression at 1 silences it" if suppressed and tier == first else "")
            )
            if not outcome.passed:
                failed += 1
                print(f"      generated cases ({path}):")
                for case in tier_cases:
                    print(f"        {case.describe()}")
                print("      promtool says:")
                print("\n".join("        " + line for line in outcome.output.splitlines()))
        for note in slo.notes if slo.test_files else ():
            print(f"      note: {note}")
    total = len(suite.slos)
    if failed:
        print(f"FAILED: {failed} failure(s) across {total} SLO(s)")
    else:
        print(f"passed: {total} SLO(s), {cases} cases")
    return failed


def _windows(slo: SLOUnitTests, tier: str) -> str:
    windows = list(dict.fromkeys(c.window for c in slo.cases if c.tier == tier))
    return "windows " + ", ".join(windows) + " above and below"
