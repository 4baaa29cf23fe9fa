"""Rendering is pure and total: same input, same bytes; no I/O, no clock, no randomness."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from lumen_alerting.cli.lumenctl import main
from tests.support.schemas import REPO

POLICY_FILES = sorted([*REPO.glob("examples/*.yaml"), *REPO.glob("tests/policies/*.yaml")])
FORMATS = ["manifests", "rules", "alertmanager"]


def lumenctl(*args: str) -> subprocess.CompletedProcess[bytes]:
    """A fresh process each time: nothing cached between the runs being compared."""
    return subprocess.run(
        [sys.executable, "-m", "lumen_alerting.cli.lumenctl", *args],
        capture_output=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("output", FORMATS)
def test_render_twice_is_byte_identical(output):
    args = ["render", "--format", output]
    for path in POLICY_FILES:
        args += ["-f", str(path)]
    first, second = lumenctl(*args), lumenctl(*args)
    assert first.returncode == 0, first.stderr.decode()
    assert first.stdout and first.stdout == second.stdout


def test_kind_filter_and_stable_order(capsys):
    path = str(REPO / "tests" / "policies" / "everything.yaml")
    assert main(["render", "-f", path]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds == [
        "PrometheusRule",
        "AlertmanagerConfig",
        "NetworkPolicy",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "ConfigMap",
        "NetworkPolicy",
        "Deployment",
        "Service",
        "ServiceMonitor",
    ]
    for kind, expected in [
        ("prometheusrule", {"PrometheusRule"}),
        ("alertmanagerconfig", {"AlertmanagerConfig"}),
        ("workloads", {"NetworkPolicy", "Deployment", "Service", "ServiceMonitor", "ConfigMap"}),
    ]:
        assert main(["render", "-f", path, "--kind", kind]) == 0
        assert {d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)} == expected


PURITY_PROBE = textwrap.dedent(
    """
    import datetime, os, random, sys, time, yaml
    from lumen_alerting.policy import policy_from_manifest
    from lumen_alerting.render import RenderOptions, render_policy
    from lumen_alerting.render.prometheus_rule import rules_file
    from lumen_alerting.render.routing import alertmanager_yaml

    policies = [policy_from_manifest(yaml.safe_load(open(p))) for p in sys.argv[1:]]

    def forbidden(*args, **kwargs):
        raise AssertionError("render read the clock or drew a random number")

    class FrozenDatetime(datetime.datetime):
        now = utcnow = today = classmethod(forbidden)

    time.time = time.time_ns = time.localtime = time.gmtime = forbidden
    datetime.datetime = FrozenDatetime
    os.urandom = forbidden
    for name in ("random", "randint", "choice", "getrandbits", "shuffle", "uniform"):
        setattr(random, name, forbidden)

    seen = []
    # Every file, socket, process, import and environment access raises an audit event.
    sys.addaudithook(lambda event, args: seen.append(event) if event != "builtins.id" else None)
    for policy in policies:
        render_policy(policy, RenderOptions())
    rules_file(policies)
    alertmanager_yaml(policies)
    print(sorted(set(seen)))
    """
)


def test_render_does_no_io_reads_no_clock_and_draws_no_randomness():
    result = subprocess.run(
        [sys.executable, "-c", PURITY_PROBE, *map(str, POLICY_FILES)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_purity_probe_can_see_io():
    """The probe is not blind: an open() during rendering shows up."""
    leaky = PURITY_PROBE.replace(
        "rules_file(policies)\n", "rules_file(policies)\nopen(sys.argv[1]).close()\n"
    )
    assert leaky != PURITY_PROBE
    result = subprocess.run(
        [sys.executable, "-c", leaky, str(POLICY_FILES[0])],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert "'open'" in result.stdout, result.stdout + result.stderr


def test_the_render_package_imports_nothing_that_does_io():
    """Direction of imports: render depends on policy, never on the CLI, kopf or clients."""
    probe = (
        "import sys, lumen_alerting.render; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'kopf', 'kubernetes', 'httpx', 'prometheus_client', 'subprocess_tee'} "
        "or m.startswith('lumen_alerting.cli')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
