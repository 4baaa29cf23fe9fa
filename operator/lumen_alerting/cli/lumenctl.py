"""``lumenctl``: render, validate and test LumenAlertPolicy files offline.

Exit codes: 0 success, 1 invalid policies or failed tests, 2 usage errors (argparse). Warnings
(``validate``: Lumen's own alerts with no receiver around the threader) go to stderr with exit 0.
Nothing is written to stdout unless every policy is valid, so a pipe never applies half a render.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..manifest_yaml import to_yaml, to_yaml_documents
from ..policy.schema import crd
from ..render import OBJECT_GROUPS, RenderOptions, render_policy
from ..render.objects import DEFAULT_KPS_RELEASE
from ..render.prometheus_rule import alert_count, rule_groups, rules_file
from ..render.routing import alertmanager_yaml
from ..render.self_monitoring import self_monitoring_warning
from .policy_files import LoadedPolicies, load_policies

# node_exporter's textfile directory in seed 004's emit_metrics.py.
DEFAULT_TEXTFILE_DIR = "/var/lib/node_exporter/textfile_collector"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lumenctl", description="Render, validate and test LumenAlertPolicy files offline."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    render = commands.add_parser("render", help="print the objects the operator would apply")
    _add_files(render)
    render.add_argument(
        "--kind", choices=OBJECT_GROUPS, help="only objects of this group (default: all)"
    )
    render.add_argument(
        "--format",
        choices=("manifests", "rules", "alertmanager"),
        default="manifests",
        help="manifests: Kubernetes objects (default); rules: one plain Prometheus rule file; "
        "alertmanager: a complete plain alertmanager.yml",
    )
    render.add_argument(
        "--kps-release",
        default=DEFAULT_KPS_RELEASE,
        help="release label kube-prometheus-stack selects PrometheusRules and ServiceMonitors by "
        f"(default {DEFAULT_KPS_RELEASE})",
    )
    render.set_defaults(run=_render)

    validate = commands.add_parser(
        "validate", help="check policies; print problems as path: reason"
    )
    _add_files(validate)
    validate.set_defaults(run=_validate)

    test = commands.add_parser(
        "test", help="generate promtool unit tests for every SLO and run them"
    )
    _add_files(test)
    test.add_argument("--promtool", default="promtool", help="promtool binary (default: on PATH)")
    test.add_argument(
        "--keep", metavar="DIR", help="write the generated rule and test files to DIR"
    )
    test.set_defaults(run=_test)

    emit = commands.add_parser(
        "emit",
        help="write a pipeline run's metrics as a node_exporter textfile",
        description="Write the exporter's pipeline metrics for one run (JSON, the body of POST "
        "/pipeline/runs) as a node_exporter textfile, atomically. Without --state-dir the run "
        "counters are left out: a counter that starts again at 1 every run measures nothing.",
    )
    emit.add_argument(
        "--run",
        dest="run_file",
        default="-",
        metavar="FILE",
        help="the run as JSON, the body of POST /pipeline/runs (default: - for stdin)",
    )
    emit.add_argument(
        "--output",
        metavar="FILE",
        help="the textfile to write (default: $LUMEN_TEXTFILE_DIR/lumen.prom, else "
        f"{DEFAULT_TEXTFILE_DIR}/lumen.prom)",
    )
    emit.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep state between runs here (the exporter's format): counters, stages of "
        "earlier runs, suppression",
    )
    emit.add_argument(
        "--suppressed",
        choices=("true", "false"),
        help="set lumen_alert_suppressed (kept in --state-dir; default false without one)",
    )
    emit.set_defaults(run=_emit)

    crd_command = commands.add_parser("crd", help="print the LumenAlertPolicy CRD")
    crd_command.set_defaults(run=lambda _args: _print(to_yaml(crd())))
    return parser


def _add_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="policy file, directory of *.yaml, or - for stdin; repeatable",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace for policies that name none (default: default)",
    )


def _load(args: argparse.Namespace) -> LoadedPolicies | None:
    loaded = load_policies(args.filename, args.namespace)
    if loaded.problems:
        for problem in loaded.problems:
            print(problem, file=sys.stderr)
        return None
    if not loaded.policies:
        print("no LumenAlertPolicy found in " + ", ".join(args.filename), file=sys.stderr)
        return None
    return loaded


def _render(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 1
    policies = [policy for _, policy in loaded.policies]
    if args.format == "rules":
        return _print(to_yaml(rules_file(policies)))
    if args.format == "alertmanager":
        return _print(to_yaml(alertmanager_yaml(policies)))
    options = RenderOptions(kps_release=args.kps_release)
    objects = [obj for p in policies for obj in render_policy(p, options, only=args.kind)]
    return _print(to_yaml_documents(objects))


def _validate(args: argparse.Namespace) -> int:
    loaded = load_policies(args.filename, args.namespace)
    for problem in loaded.problems:
        print(problem, file=sys.stderr)
    for source, policy in loaded.policies:
        spec = policy.spec
        print(
            f"{source}: {policy.namespace}/{policy.name} valid: "
            f"{alert_count(rule_groups(policy))} alert rules, {len(spec.slos)} SLOs, "
            f"{len(spec.routing.receivers) if spec.routing else 0} receivers"
        )
        warning = self_monitoring_warning(policy)
        if warning is not None:  # advice only: the policy is valid, the exit code stays 0
            print(warning, file=sys.stderr)
    if not loaded.policies and not loaded.problems:
        print("no LumenAlertPolicy found in " + ", ".join(args.filename), file=sys.stderr)
        return 1
    return 1 if loaded.problems else 0


def _test(args: argparse.Namespace) -> int:
    from ..rule_tests.promtool import run_slo_tests  # imports promtool plumbing only when asked

    loaded = _load(args)
    if loaded is None:
        return 1
    return run_slo_tests([p for _, p in loaded.policies], args.promtool, args.keep)


def _emit(args: argparse.Namespace) -> int:
    # The exporter's code (prometheus_client, pydantic) is imported only for this command.
    from pydantic import ValidationError

    from ..exporter.pipeline import (
        PipelineRun,
        PipelineState,
        PipelineStore,
        RunRejected,
        StateFileError,
        parse_json,
        parse_problems,
        state_dir_lock,
        textfile,
        write_atomically,
    )

    source = "<stdin>" if args.run_file == "-" else args.run_file
    try:
        raw = sys.stdin.buffer.read() if args.run_file == "-" else Path(args.run_file).read_bytes()
        run = PipelineRun.model_validate(parse_json(raw))
    except OSError as error:
        print(f"{source}: {error.strerror or error}", file=sys.stderr)
        return 1
    except ValidationError as invalid:
        for problem in parse_problems(invalid):
            print(f"{source}: {problem}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"{source}: not JSON: {error}", file=sys.stderr)
        return 1
    output = Path(
        args.output
        or Path(os.environ.get("LUMEN_TEXTFILE_DIR") or DEFAULT_TEXTFILE_DIR) / "lumen.prom"
    )
    suppressed = None if args.suppressed is None else args.suppressed == "true"
    try:
        if args.state_dir is None:
            state = PipelineState()
            state.apply_run(run, time.time())
            if suppressed is not None:
                state.set_suppressed(suppressed, time.time())
            output.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(output, textfile(state, counters=False), mode=0o644)
        else:
            Path(args.state_dir).mkdir(parents=True, exist_ok=True)
            # Read, apply, save and write the textfile under the state dir's lock: another emit
            # at the same time would otherwise lose this run or write an older textfile last.
            with state_dir_lock(Path(args.state_dir)):
                store = PipelineStore(Path(args.state_dir))
                store.apply_run(run)
                if suppressed is not None:
                    store.set_suppressed(suppressed)
                output.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(output, textfile(store.state), mode=0o644)
    except (RunRejected, StateFileError) as error:
        print(f"{source}: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{error.filename or output}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"wrote {output} ({run.result}, {len(run.stages)} stages)", file=sys.stderr)
    return 0


def _print(text: str) -> int:
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
