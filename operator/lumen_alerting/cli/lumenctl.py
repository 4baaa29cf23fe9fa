"""``lumenctl``: render, validate and test LumenAlertPolicy files offline.

Exit codes: 0 success, 1 invalid policies or failed tests, 2 usage errors (argparse). Warnings
(``validate``: Lumen's own alerts with no receiver around the threader, alerts
that no route sends anywhere) go to stderr with exit 0.
Nothing is written to stdout unless every policy is valid, so a pipe never applies half a render.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..manifest_yaml import to_yaml, to_yaml_documents
from ..operator.config import NETWORK_POLICY_FLAGS
from ..policy.model import KIND, Policy
from ..policy.schema import crd
from ..render import OBJECT_GROUPS, RenderOptions, render_policy
from ..render.objects import DEFAULT_IMAGE, DEFAULT_KPS_RELEASE
from ..render.prometheus_rule import alert_count, rule_groups, rules_file
from ..render.routing import (
    SECRETS_DIR,
    PlainOptions,
    alertmanager_yaml,
    credential_files,
    threader_url_template,
)
from ..render.self_monitoring import self_monitoring_warning
from ..render.unrouted import unrouted_alerts, unrouted_message
from ..settings import add_version_flag, true_or_false
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
    add_version_flag(parser)
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
    render.add_argument(
        "--image",
        default=DEFAULT_IMAGE,
        type=_image_name,
        metavar="IMAGE",
        help=f"image of the threader and exporter pods (default {DEFAULT_IMAGE}), as "
        "lumen-operator --image sets it",
    )
    _add_network_policy_options(render)
    _add_plain_alertmanager_options(render)
    render.set_defaults(run=_render, parser=render)

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
        type=_argument(true_or_false, None),
        metavar="true|false",
        help="set lumen_alert_suppressed (kept in --state-dir; default false without one)",
    )
    emit.set_defaults(run=_emit)

    _add_report(commands)

    crd_command = commands.add_parser("crd", help="print the LumenAlertPolicy CRD")
    crd_command.set_defaults(run=lambda _args: _print(to_yaml(crd())))
    return parser


def _add_network_policy_options(render: argparse.ArgumentParser) -> None:
    """lumen-operator's NetworkPolicy flags (``operator.config.NETWORK_POLICY_FLAGS``): the same
    names, help texts and parsers, so they mean the same for both programs."""
    defaults = RenderOptions()
    for flag in NETWORK_POLICY_FLAGS:
        default = getattr(defaults, flag.field)
        render.add_argument(
            f"--{flag.name}",
            default=default,
            type=_argument(flag.parse, default),
            metavar=flag.metavar,
            help=flag.help,
        )


def _add_plain_alertmanager_options(render: argparse.ArgumentParser) -> None:
    """Where the plain alertmanager.yml tells Alertmanager to find what kube-prometheus-stack has
    in the cluster; left out, the in-cluster file. Usage errors with another ``--format``."""
    render.add_argument(
        "--threader-url",
        type=_argument(threader_url_template, None),
        metavar="URL",
        help="with --format alertmanager: base URL of the threader the Slack receivers post to "
        "(/alert?channel=… is appended); {namespace} and {name} stand for the policy's "
        "(default: each policy's threader Service, "
        "http://lumen-{name}-threader.{namespace}.svc:8080)",
    )
    render.add_argument(
        "--secrets-dir",
        type=_argument(os.path.abspath, None),
        metavar="DIR",
        help="with --format alertmanager: directory of the credential files the output names, "
        f"DIR/<secret>/<key>; made absolute (default {SECRETS_DIR}, where kube-prometheus-stack "
        "mounts alertmanager.alertmanagerSpec.secrets)",
    )
    render.add_argument(
        "--write-secrets",
        nargs="?",
        const="",
        type=_argument(os.path.abspath, ""),
        metavar="DIR",
        help="with --format alertmanager: write the credential files the output names, into "
        "DIR (default: the --secrets-dir): a new token for each threader, and each Secret from "
        "its variable LUMEN_SECRET_<SECRET>_<KEY>; existing files are kept, never overwritten",
    )


def _argument(parse: Callable[[str], Any], default: Any) -> Callable[[str], Any]:
    """``parse`` as an argparse type that reads a value as lumen-operator does: an empty one is
    ``default``, and a ValueError is the usage error (exit 2), its message kept."""

    def argument(text: str) -> Any:
        if not text.strip():
            return default
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return argument


def _add_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="policy file, directory (its .yaml and .yml files), or - for stdin; repeatable. "
        f"Documents that are not {KIND} (a Namespace, a ConfigMap) are skipped with a note",
    )
    parser.add_argument(
        "-R",
        "--recursive",
        action="store_true",
        help="read the .yaml and .yml files of the directories' subdirectories too",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace for policies that name none (default: default)",
    )


def _read(args: argparse.Namespace) -> LoadedPolicies:
    """The policies of ``-f``; the one note about skipped documents goes to stderr here."""
    loaded = load_policies(args.filename, args.namespace, args.recursive)
    note = loaded.skipped_note()
    if note is not None:
        print(note, file=sys.stderr)
    return loaded


def _load(args: argparse.Namespace) -> LoadedPolicies | None:
    loaded = _read(args)
    if loaded.problems:
        for problem in loaded.problems:
            print(problem, file=sys.stderr)
        return None
    if not loaded.policies:
        print("no LumenAlertPolicy found in " + ", ".join(args.filename), file=sys.stderr)
        return None
    return loaded


def _image_name(text: str) -> str:
    if not text.strip() or any(c.isspace() for c in text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not an image reference")
    return text.strip()


def _render(args: argparse.Namespace) -> int:
    plain_flags = ("--threader-url", "--secrets-dir", "--write-secrets")
    given = [flag for flag in plain_flags if getattr(args, flag[2:].replace("-", "_")) is not None]
    if given and args.format != "alertmanager":
        args.parser.error(f"{', '.join(given)}: only with --format alertmanager")
    loaded = _load(args)
    if loaded is None:
        return 1
    policies = [policy for _, policy in loaded.policies]
    if args.format == "rules":
        return _print(to_yaml(rules_file(policies)))
    if args.format == "alertmanager":
        return _render_plain_alertmanager(args, policies)
    options = RenderOptions(
        kps_release=args.kps_release,
        threader_image=args.image,
        exporter_image=args.image,
        **{flag.field: getattr(args, flag.field) for flag in NETWORK_POLICY_FLAGS},
    )
    objects = [obj for p in policies for obj in render_policy(p, options, only=args.kind)]
    return _print(to_yaml_documents(objects))


def _render_plain_alertmanager(args: argparse.Namespace, policies: list[Policy]) -> int:
    """The plain alertmanager.yml on stdout, once the credential files it names are written
    (``--write-secrets``); nothing on stdout when they cannot be."""
    from .plain_secrets import CredentialProblems, plan_credential_files, write_planned

    plain = PlainOptions(args.threader_url, args.secrets_dir or SECRETS_DIR)
    try:
        text = to_yaml(alertmanager_yaml(policies, plain))
        files = credential_files(policies, plain)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    if args.write_secrets is None:
        return _print(text)
    directory = Path(args.write_secrets or plain.secrets_dir)
    try:
        planned, threaders = plan_credential_files(files, directory, os.environ)
        write_planned(planned)
    except CredentialProblems as refused:
        for problem in refused.problems:
            print(problem, file=sys.stderr)
        print(f"wrote nothing to {directory}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{error.filename or directory}: {error.strerror or error}", file=sys.stderr)
        print(f"wrote nothing to {directory}", file=sys.stderr)
        return 1
    for step in planned:
        print(
            f"{'kept' if step.data is None else 'wrote'} {step.path} ({step.note})", file=sys.stderr
        )
    for threader in threaders:
        command = ["lumen-threader", *_listen_flag(threader.urls[0])]
        command += ["--webhook-token-file", str(threader.token_file)]
        urls = ", ".join(threader.urls)
        print(f"start the threader at {urls} with: {shlex.join(command)}", file=sys.stderr)
    return _print(text)


def _listen_flag(url: str) -> list[str]:
    """``--listen HOST:PORT`` for a threader at ``url`` (plain http to an IP address or
    ``localhost``, no path prefix); nothing when the URL names another host name or a proxy in
    front of the threader (the threader's default, 0.0.0.0:8080, is then rarely the URL's)."""
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    try:
        address = ipaddress.ip_address("127.0.0.1" if hostname == "localhost" else hostname)
    except ValueError:
        return []
    if parts.scheme != "http" or parts.path:
        return []
    host = f"[{address}]" if address.version == 6 else str(address)
    return ["--listen", f"{host}:{parts.port or 80}"]


def _validate(args: argparse.Namespace) -> int:
    loaded = _read(args)
    for problem in loaded.problems:
        print(problem, file=sys.stderr)
    # Exit 1 writes nothing to stdout (the module docstring): the summaries of the valid
    # policies then join the problems on stderr.
    summaries = sys.stderr if loaded.problems else sys.stdout
    for source, policy in loaded.policies:
        spec = policy.spec
        print(
            f"{source}: {policy.namespace}/{policy.name} valid: "
            f"{alert_count(rule_groups(policy))} alert rules, {len(spec.slos)} SLOs, "
            f"{len(spec.routing.receivers) if spec.routing else 0} receivers",
            file=summaries,
        )
        warning = self_monitoring_warning(policy)
        if warning is not None:  # advice only: the policy is valid, the exit code stays 0
            print(warning, file=sys.stderr)
        unrouted = unrouted_alerts(policy)
        if unrouted:  # advice too: the routes may be meant to drop them
            name = f"{policy.namespace}/{policy.name}"
            print(f"warning: {name}: {unrouted_message(unrouted)}", file=sys.stderr)
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

    from ..atomic_files import write_atomically
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
    suppressed: bool | None = args.suppressed
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


def _add_report(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser(
        "report",
        help="statistics, anomalies, health and personas of probe runs, as HTML or JSON",
        description="Report on the exporter's probe runs (seed 001's analyze_metrics.py): from "
        "its CSV log (--input) or from Prometheus (--prometheus, --start). The output's "
        "extension picks the format (.html or .json) unless --format says.",
    )
    source = report.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input",
        action="append",
        metavar="FILE",
        help="the exporter's CSV log; repeatable (rotated files, in any order)",
    )
    source.add_argument("--prometheus", metavar="URL", help="Prometheus' base URL")
    report.add_argument(
        "--start", metavar="TIME", help="with --prometheus: RFC 3339 or Unix seconds"
    )
    report.add_argument(
        "--end", metavar="TIME", help="with --prometheus: RFC 3339 or Unix seconds (default: now)"
    )
    report.add_argument(
        "--step",
        metavar="DURATION",
        help="with --prometheus: seconds between records, e.g. 15s (default: 15s, or coarser "
        "for a range over 10,000 steps)",
    )
    report.add_argument(
        "--selector",
        default="",
        metavar="MATCHERS",
        help='with --prometheus: label matchers for the series, e.g. {job="lumen-exporter"}',
    )
    report.add_argument("--output", required=True, metavar="FILE", help="report.html or .json")
    report.add_argument("--format", choices=("html", "json"), help="default: from --output")
    report.add_argument("--probe", metavar="NAME", help="only this probe (default: every one)")
    report.add_argument(
        "--z-threshold",
        type=float,
        default=2.0,
        metavar="Z",
        help="anomaly when |z-score| is above this (default 2.0)",
    )
    report.add_argument(
        "--mock-field",
        default="lumen_ion_mock_mode",
        metavar="NAME",
        help="gauge that is 1 in mock mode (default lumen_ion_mock_mode)",
    )
    report.add_argument(
        "--persona-field",
        default="lumen_ion_persona",
        metavar="NAME",
        help="counted field of the persona distribution (default lumen_ion_persona)",
    )
    report.set_defaults(run=_report, parser=report)


def _report(args: argparse.Namespace) -> int:
    # numpy, matplotlib and httpx are imported only for this command.
    from ..atomic_files import write_atomically
    from ..policy.durations import parse_duration
    from ..report.analysis import ReportOptions, analyze, report_document
    from ..report.html import report_html
    from ..report.prometheus import RangeQuery, read_prometheus
    from ..report.records import ReportInputError, parse_time, read_csv_files

    parser: argparse.ArgumentParser = args.parser
    output = Path(args.output)
    output_format = args.format or {".html": "html", ".htm": "html", ".json": "json"}.get(
        output.suffix.lower()
    )
    if output_format is None:
        parser.error(f"--output {args.output}: name it .html or .json, or give --format")
    if not math.isfinite(args.z_threshold) or args.z_threshold <= 0:
        parser.error(f"--z-threshold {args.z_threshold}: must be a positive number")
    if args.prometheus is None and any((args.start, args.end, args.step)):
        parser.error("--start, --end and --step go with --prometheus")
    if args.prometheus is not None and args.start is None:
        parser.error("--prometheus needs --start")

    def moment(option: str, text: str) -> float:
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = parse_time(text)
            except ValueError:
                parser.error(f"{option} {text!r}: not an RFC 3339 time nor Unix seconds")
        # nan, inf and 1e20 parse as floats, but no time is that: refuse them here rather than
        # fail on them later (a ValueError or OverflowError traceback).
        if not _representable_time(seconds):
            parser.error(f"{option} {text!r}: not a time between the years 1 and 9999 (UTC)")
        return seconds

    options = ReportOptions(args.z_threshold, args.mock_field, args.persona_field)
    try:
        if args.prometheus is not None:
            step = None
            if args.step is not None:
                try:
                    step = (
                        float(args.step) if args.step[-1:].isdigit() else parse_duration(args.step)
                    )
                except ValueError as error:
                    parser.error(f"--step {args.step!r}: {error}")
                if not math.isfinite(step) or step <= 0:
                    parser.error(f"--step {args.step!r}: must be a positive duration")
            query = RangeQuery(
                url=args.prometheus,
                start=moment("--start", args.start),
                end=time.time() if args.end is None else moment("--end", args.end),
                step=step,
                selector=args.selector,
            )
            table = read_prometheus(query, options.persona_field)
        else:
            table = read_csv_files([Path(f) for f in args.input], [options.persona_field])
            for note in table.notes:
                print(note, file=sys.stderr)
        if args.probe is not None:
            table = table.only(args.probe)
        report = analyze(table, options)
        text = (
            json.dumps(report_document(report), indent=2, allow_nan=False) + "\n"
            if output_format == "json"
            else report_html(report, table)
        )
        write_atomically(output, text.encode("utf-8"), mode=0o644)
    except ReportInputError as error:
        print(error, file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{error.filename or output}: {error.strerror or error}", file=sys.stderr)
        return 1
    probes = ", ".join(f"{p.probe} ({p.records} records)" for p in report.probes)
    print(f"wrote {output}: {probes}", file=sys.stderr)
    return 0


def _representable_time(seconds: float) -> bool:
    """A finite number of Unix seconds that a UTC datetime can hold (years 1 to 9999)."""
    if not math.isfinite(seconds):
        return False
    try:
        datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        return False
    return True


def _print(text: str) -> int:
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
