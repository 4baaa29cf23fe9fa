"""``lumenctl``: render, validate and test LumenAlertPolicy files offline.

Exit codes: 0 success, 1 invalid policies or failed tests, 2 usage errors (argparse). Warnings
(``validate``: Lumen's own alerts with no receiver around the threader) go to stderr with exit 0.
Nothing is written to stdout unless every policy is valid, so a pipe never applies half a render.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..manifest_yaml import to_yaml, to_yaml_documents
from ..policy.schema import crd
from ..render import OBJECT_GROUPS, RenderOptions, render_policy
from ..render.objects import DEFAULT_KPS_RELEASE
from ..render.prometheus_rule import alert_count, rule_groups, rules_file
from ..render.routing import alertmanager_yaml
from ..render.self_monitoring import self_monitoring_warning
from .policy_files import LoadedPolicies, load_policies


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


def _print(text: str) -> int:
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
