"""promtool unit tests for every SLO's burn-rate alerts, generated from the policies themselves.

Pure: no I/O, no clock, no randomness. ``lumenctl test`` writes the files and runs promtool.

For every SLO, every enabled tier and each of the tier's window pairs (long L, short S = L/12)
there are two cases: the error ratio held just above (x1.1) and just below (x0.9) the pair's
threshold k·B for exactly L, after a stretch without errors that is as long as the tier's
longest window needs, so longer windows see the burst diluted. The quiet stretch may carry more
traffic than the burst, which dilutes longer windows further: that keeps other pairs of the same
tier silent when the tested pair fires, so both sides of every threshold are checked. The
expected alerts are computed from the ratio each window sees (both tiers may fire in one case);
a case that cannot show its tier firing above and silent below is an error, never silently
dropped.

Sample times line up with every window a tier reads, so the counters' increase over a window is
exact (no extrapolation): windows are multiples of the step, and windows shorter than the step
see a single sample and no rate at all. Page cases run at 2m30s resolution (two steps per
5m), ticket cases at 1 hour (days at 1-minute resolution would make promtool take minutes).

Each SLO gets its own rule file holding its rendered alert rules and the recording rules they
read, verbatim, so synthetic series of one SLO never trip the alerts of another SLO reading the
same metric (the dashboard-only recordings are left out: the period-long window alone would make
promtool several times slower). When suppression is enabled its metric is present at 0 in every
case, and one more case repeats a firing case with it at 1 and expects no alert.

Expected labels and annotations come from the rendered alert rules; the thresholds come from
:mod:`lumen_alerting.burnrate`, independently of the renderer.

Input series are real: the SLI's own metrics with labels that satisfy its selectors. A ratio
SLI whose PromQL is beyond ``sum [by|without (...)] (rate|increase(selector[window]))`` over a
selector whose matchers can be satisfied gets a synthetic SLI instead: in the test rule file
(never in rendered output) its error-ratio and event recordings read
``lumen_test_errors_total`` / ``lumen_test_requests_total``, and the reason is reported.
"""

from __future__ import annotations

import copy
import math
import re
import re._parser as sre_parse  # type: ignore[import-not-found]  # typeshed: sre_parse only
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import promql_parser

from ..burnrate import TIERS, WINDOWS, BurnWindow, Tier, burn_threshold, tier_windows
from ..policy.durations import format_duration, parse_duration
from ..policy.model import SLI, SLO, Policy, RatioSLI
from ..policy.sli import WINDOW_PLACEHOLDER
from ..render.alerts import namespace_selector, number
from ..render.objects import SLO_ALERT
from ..render.prometheus_rule import rules_file
from ..render.slo import slo_rule_group

STEP: dict[Tier, int] = {"page": 150, "ticket": 3600}  # sample and evaluation interval, seconds
MARGINS = (Fraction(11, 10), Fraction(9, 10))  # above, below the threshold
CLEARANCE = Fraction(3, 100)  # any other comparison must be at least 3% away from its bound
QUIET_TRAFFIC = (1, 2, 4)  # quiet-stretch traffic, in multiples of the burst's, tried in order
REQUESTS_PER_MINUTE = 1000
SYNTHETIC_ERRORS = "lumen_test_errors_total"
SYNTHETIC_REQUESTS = "lumen_test_requests_total"
SYNTHETIC_SLI = SLI(
    ratio=RatioSLI(
        errors=f"sum(rate({SYNTHETIC_ERRORS}[{WINDOW_PLACEHOLDER}]))",
        total=f"sum(rate({SYNTHETIC_REQUESTS}[{WINDOW_PLACEHOLDER}]))",
    )
)
_FILLER = "lumen-test"  # value for labels an aggregation keeps but no selector constrains


class GenerationError(Exception):
    """A case that cannot test what it should (a bug here or a policy that cannot alert)."""


class Unsupported(Exception):
    """The SLI's PromQL cannot be fed with synthetic input series; use the synthetic SLI."""


@dataclass(frozen=True)
class UnitTestFile:
    path: str  # relative to the directory promtool runs in
    content: dict[str, Any]


@dataclass(frozen=True)
class Case:
    tier: Tier
    window: str  # "1h/5m"
    margin: Fraction  # ratio / threshold
    expected: tuple[Tier, ...]  # tiers whose alert fires in this case
    isolated: bool = True  # no other window pair of the tier fires

    def describe(self) -> str:
        side = "above" if self.margin > 1 else "below"
        fires = ",".join(self.expected) or "none"
        return f"{self.window} {side} (x{float(self.margin):g}) -> {fires}"


@dataclass(frozen=True)
class SLOUnitTests:
    policy: str  # namespace/name
    slo: str
    rule_file: str
    test_files: dict[Tier, str]  # tier -> test file, only tiers with cases
    cases: tuple[Case, ...]
    inputs: str  # "real series" or "synthetic SLI"
    suppressed_case: bool = False  # a firing case with the suppression metric at 1 expects none
    notes: tuple[str, ...] = ()  # worth telling, not failures
    problems: tuple[str, ...] = ()  # the SLO could not be tested as it should: a failure

    @property
    def label(self) -> str:
        return f"{self.policy} slo {self.slo}"


@dataclass(frozen=True)
class UnitTestSuite:
    files: tuple[UnitTestFile, ...]
    slos: tuple[SLOUnitTests, ...]
    policies_without_slos: tuple[str, ...] = ()

    @property
    def test_files(self) -> list[str]:
        return [path for slo in self.slos for path in slo.test_files.values()]


def slo_unit_tests(policies: Iterable[Policy]) -> UnitTestSuite:
    files: list[UnitTestFile] = []
    slos: list[SLOUnitTests] = []
    without: list[str] = []
    for policy in policies:
        if not policy.spec.slos:
            without.append(f"{policy.namespace}/{policy.name}")
            continue
        groups = {g["name"]: g for g in rules_file([policy])["groups"]}
        for slo in policy.spec.slos:
            group = groups.get(f"{policy.namespace}/{policy.name}/slo/{slo.name}")
            tests, slo_files = _slo_tests(policy, slo, group)
            slos.append(tests)
            files.extend(slo_files)
    return UnitTestSuite(tuple(files), tuple(slos), tuple(without))


# --- one SLO -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Series:
    labels: dict[str, str]  # including __name__
    role: str  # "errors", "good" or "total": which counter it carries


@dataclass(frozen=True)
class _Inputs:
    series: tuple[_Series, ...]
    extra_labels: dict[str, str]  # labels the SLI's aggregation keeps, so the alert carries them
    synthetic_reason: str = ""  # set when the SLI's recordings are replaced


def _slo_tests(
    policy: Policy, slo: SLO, group: dict[str, Any] | None
) -> tuple[SLOUnitTests, list[UnitTestFile]]:
    stem = _file_stem(policy, slo)
    base = SLOUnitTests(
        policy=f"{policy.namespace}/{policy.name}",
        slo=slo.name,
        rule_file=f"{stem}.rules.yaml",
        test_files={},
        cases=(),
        inputs="real series",
    )
    tiers = [t for t in TIERS if getattr(slo.alerting, t).enabled]
    if not tiers:
        return replace(base, notes=("every alert tier is disabled: nothing to test",)), []
    if group is None:
        return replace(base, problems=("the rendered rules have no group for this SLO",)), []
    alerts = {
        rule.get("labels", {}).get("tier"): rule
        for rule in group["rules"]
        if rule.get("alert") == SLO_ALERT
    }
    missing = [t for t in tiers if t not in alerts]
    if missing:
        return replace(base, problems=(f"no rendered {SLO_ALERT} for tier {missing[0]}",)), []
    templated = [
        f"{t} {kind} {key}"
        for t in tiers
        for kind in ("labels", "annotations")
        for key, value in alerts[t].get(kind, {}).items()
        if "{{" in value
    ]
    if templated:
        return replace(
            base,
            problems=("cannot predict templated alert text (" + ", ".join(templated) + ")",),
        ), []

    notes: list[str] = []
    inputs = _inputs(slo.sli)
    rule_group = _alerting_rules(group)
    if inputs.synthetic_reason:
        notes.append(f"tested with synthetic SLI for slo {slo.name}: {inputs.synthetic_reason}")
        rule_group = _with_synthetic_sli(policy, slo, rule_group)
    suppression = _suppression_series(policy)
    if policy.spec.suppression.enabled and suppression is None:
        notes.append("suppression metric left absent (its selector cannot be synthesized)")

    files = [UnitTestFile(base.rule_file, {"groups": [rule_group]})]
    cases: list[Case] = []
    problems: list[str] = []
    test_files: dict[Tier, str] = {}
    suppressed_case = False
    for tier in tiers:
        groups = []
        for window in tier_windows(tier):
            for margin in MARGINS:
                try:
                    built = _case(slo, tier, window, margin, tiers)
                except GenerationError as error:
                    problems.append(f"{tier} {_window_name(window)}: {error}")
                    continue
                if built is None:
                    notes.append(
                        f"{tier} {_window_name(window)}: threshold "
                        f"{float(_threshold(slo, window)):g} is too close to 1 to test above it"
                    )
                    continue
                case, traffic = built
                cases.append(case)
                groups.append(
                    _test_group(policy, slo, case, traffic, inputs, alerts, suppression, 0)
                )
        if suppression is not None and groups and not suppressed_case:
            suppressed = _suppressed_group(policy, slo, tier, tiers, inputs, alerts, suppression)
            if suppressed is not None:
                groups.append(suppressed)
                suppressed_case = True
        if groups:
            path = f"{stem}.{tier}.test.yaml"
            test_files[tier] = path
            files.append(
                UnitTestFile(
                    path,
                    {
                        "rule_files": [base.rule_file],
                        "evaluation_interval": format_duration(STEP[tier]),
                        "tests": groups,
                    },
                )
            )
    return replace(
        base,
        test_files=test_files,
        cases=tuple(cases),
        inputs="synthetic SLI" if inputs.synthetic_reason else "real series",
        suppressed_case=suppressed_case,
        notes=tuple(notes),
        problems=tuple(problems),
    ), files


def _alerting_rules(group: dict[str, Any]) -> dict[str, Any]:
    """A copy of the SLO's rendered group with its alerts and the recordings they read.

    The dashboard recordings (objective, budget, a period-long ratio...) feed no alert; left in,
    the period-long window alone makes promtool several times slower.
    """
    alerts = [rule for rule in group["rules"] if "alert" in rule]
    read = "\n".join(rule["expr"] for rule in alerts)
    kept = [rule for rule in group["rules"] if "alert" in rule or _reads(read, rule["record"])]
    return copy.deepcopy({**group, "rules": kept})


def _reads(expr: str, name: str) -> bool:
    return re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", expr) is not None


def _file_stem(policy: Policy, slo: SLO) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{policy.namespace}.{policy.name}.{slo.name}")


def _window_name(window: BurnWindow) -> str:
    return f"{format_duration(window.long)}/{format_duration(window.short)}"


def _threshold(slo: SLO, window: BurnWindow) -> Fraction:
    return burn_threshold(window, int(parse_duration(slo.period)), slo.objective)


# --- traffic and what each window sees ---------------------------------------------------------


@dataclass(frozen=True)
class _Traffic:
    """Counters sampled every ``step``: ``quiet`` seconds without errors, then ``burst`` seconds
    at error ratio ``ratio``; requests per step in each stretch. The case is evaluated at the
    burst's end."""

    step: int
    quiet: int
    burst: int
    quiet_requests: int
    burst_requests: int
    ratio: Fraction

    @property
    def end(self) -> int:
        return self.quiet + self.burst

    def seen(self, window: int) -> tuple[Fraction, Fraction] | None:
        """(error ratio, events) over ``window`` ending at the end; None without a rate."""
        if window < self.step:
            return None  # a single sample: rate() and increase() return nothing
        if window < 2 * self.step or window % self.step:
            raise GenerationError(
                f"window {format_duration(window)} does not line up with "
                f"{format_duration(self.step)} samples"
            )
        burst = min(window, self.burst)
        quiet = min(max(window - self.burst, 0), self.quiet)
        errors = self.ratio * self.burst_requests * burst / self.step
        requests = Fraction(self.burst_requests * burst + self.quiet_requests * quiet, self.step)
        return errors / requests, requests


def _above(value: Fraction, bound: Fraction, strict: bool) -> bool:
    """value > bound (or >=), insisting that the answer is clear."""
    if abs(value - bound) < CLEARANCE * bound:
        raise GenerationError(f"{float(value):g} is too close to {float(bound):g} to be sure")
    return value > bound if strict else value >= bound


def _pair_fires(slo: SLO, window: BurnWindow, traffic: _Traffic) -> bool:
    if window.short < traffic.step or window.long < traffic.step:
        return False  # no rate over a window holding one sample
    threshold = _threshold(slo, window)
    long, short = traffic.seen(window.long), traffic.seen(window.short)
    assert long is not None and short is not None
    fires = _above(long[0], threshold, True) and _above(short[0], threshold, True)
    if fires and slo.min_events > 0:
        fires = _above(long[1], Fraction(slo.min_events), False)
    return fires


def _case(
    slo: SLO, tier: Tier, window: BurnWindow, margin: Fraction, tiers: list[Tier]
) -> tuple[Case, _Traffic] | None:
    """The case for one window pair and margin; None when the ratio would have to exceed 1."""
    threshold = _threshold(slo, window)
    ratio = threshold * margin
    if ratio > 1:
        if threshold * (1 + CLEARANCE) > 1:
            return None
        ratio = Fraction(1)
    step = STEP[tier]
    quiet = max(w.long for w in tier_windows(tier)) - window.long
    # Enough traffic that the tested pair passes the minEvents guard with room to spare.
    per_step = max(
        REQUESTS_PER_MINUTE * step // 60,
        math.ceil(Fraction(2 * slo.min_events * step, window.long)),
    )
    fallback = None
    for multiple in QUIET_TRAFFIC:
        traffic = _Traffic(step, quiet, window.long, per_step * multiple, per_step, ratio)
        try:
            fired = {w: _pair_fires(slo, w, traffic) for w in WINDOWS if w.tier in tiers}
        except GenerationError:
            continue
        tested_ok = fired[window] == (margin > 1)
        tier_ok = any(fired[w] for w in tier_windows(tier)) == (margin > 1)
        if not (tested_ok and tier_ok):
            continue
        expected = tuple(t for t in tiers if any(fired[w] for w in tier_windows(t)))
        isolated = not any(fired[w] for w in tier_windows(tier) if w != window)
        case = Case(tier, _window_name(window), ratio / threshold, expected, isolated)
        if isolated:
            return case, traffic
        fallback = fallback or (case, traffic)
    if fallback is None:
        raise GenerationError(
            f"no traffic shape makes the {tier} alert fire just above and stay silent just below"
        )
    return fallback


# --- promtool test groups ----------------------------------------------------------------------


def _counter(segments: list[tuple[int, Fraction]]) -> str:
    """promtool series values for a counter from 0: (steps, increase per step) per stretch."""
    parts: list[str] = []
    value = Fraction(0)
    for steps, increase in segments:
        if steps <= 0:
            continue
        if not parts:
            parts.append(f"0+{number(increase)}x{steps}")
        else:
            parts.append(f"{number(value + increase)}+{number(increase)}x{steps - 1}")
        value += increase * steps
    return " ".join(parts)


def _series_values(role: str, traffic: _Traffic) -> str:
    quiet, burst = traffic.quiet // traffic.step, traffic.burst // traffic.step
    errors = traffic.ratio * traffic.burst_requests
    per_role = {
        "errors": (Fraction(0), errors),
        "total": (Fraction(traffic.quiet_requests), Fraction(traffic.burst_requests)),
        "good": (Fraction(traffic.quiet_requests), traffic.burst_requests - errors),
    }
    quiet_increase, burst_increase = per_role[role]
    return _counter([(quiet, quiet_increase), (burst, burst_increase)])


def _series_name(labels: dict[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ", ".join(
        f"{k}={_quote(v)}" for k, v in sorted(labels.items()) if k != "__name__" and v != ""
    )
    return f"{name}{{{rest}}}" if rest or not name else name


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _input_series(
    inputs: _Inputs, traffic: _Traffic, suppression: dict[str, str] | None, suppressed: int
) -> list[dict[str, str]]:
    series = [
        {"series": _series_name(s.labels), "values": _series_values(s.role, traffic)}
        for s in inputs.series
    ]
    if suppression is not None:
        points = traffic.end // traffic.step
        series.append({"series": _series_name(suppression), "values": f"{suppressed}x{points}"})
    return series


def _expected_alerts(
    expected: Iterable[Tier], inputs: _Inputs, alerts: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    return [
        {
            "exp_labels": {**inputs.extra_labels, **alerts[tier].get("labels", {})},
            "exp_annotations": dict(alerts[tier].get("annotations", {})),
        }
        for tier in expected
    ]


def _test_group(
    policy: Policy,
    slo: SLO,
    case: Case,
    traffic: _Traffic,
    inputs: _Inputs,
    alerts: dict[str, dict[str, Any]],
    suppression: dict[str, str] | None,
    suppressed: int,
    name: str = "",
) -> dict[str, Any]:
    return {
        "name": name
        or f"{policy.namespace}/{policy.name} slo {slo.name} {case.tier} {case.describe()}",
        "interval": format_duration(traffic.step),
        "input_series": _input_series(inputs, traffic, suppression, suppressed),
        "alert_rule_test": [
            {
                "eval_time": format_duration(traffic.end),
                "alertname": SLO_ALERT,
                "exp_alerts": [] if suppressed else _expected_alerts(case.expected, inputs, alerts),
            }
        ],
    }


def _suppressed_group(
    policy: Policy,
    slo: SLO,
    tier: Tier,
    tiers: list[Tier],
    inputs: _Inputs,
    alerts: dict[str, dict[str, Any]],
    suppression: dict[str, str],
) -> dict[str, Any] | None:
    """The first window's firing case again with the suppression metric at 1: no alert."""
    try:
        built = _case(slo, tier, tier_windows(tier)[0], MARGINS[0], tiers)
    except GenerationError:
        return None
    if built is None:
        return None
    case, traffic = built
    side = case.describe().split(" -> ")[0]
    name = f"{policy.namespace}/{policy.name} slo {slo.name} {tier} {side} suppressed -> none"
    return _test_group(policy, slo, case, traffic, inputs, alerts, suppression, 1, name)


# --- input series from the SLI -----------------------------------------------------------------

_Constraint = tuple[str, str, str]  # (label, op, value); op one of = != =~ !~
_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}
_NEGATED = {"=": "!=", "!=": "=", "=~": "!~", "!~": "=~"}


def _inputs(sli: SLI) -> _Inputs:
    try:
        if sli.ratio is not None:
            return _ratio_inputs(sli.ratio)
        if sli.latency is not None:
            latency = sli.latency
            count = _selector_constraints(f"{latency.metric}_count{_braced(latency.selector)}")
            total = _solve(count)
            threshold = latency.threshold
            le = str(int(threshold)) if threshold == int(threshold) else repr(threshold)
            bucket = {**total, "__name__": f"{latency.metric}_bucket", "le": le}
            return _Inputs((_Series(total, "total"), _Series(bucket, "good")), {})
        assert sli.runs is not None
        succeeded = _selector_constraints(sli.runs.success)
        runs = _selector_constraints(sli.runs.total)
        return _Inputs(_pair(succeeded, runs, "good"), {})
    except Unsupported as reason:
        return _Inputs(
            (
                _Series({"__name__": SYNTHETIC_ERRORS}, "errors"),
                _Series({"__name__": SYNTHETIC_REQUESTS}, "total"),
            ),
            {},
            str(reason),
        )


def _braced(selector: str) -> str:
    text = selector.strip()
    return text if text.startswith("{") else "{" + text + "}" if text else ""


@dataclass(frozen=True)
class _Aggregated:
    function: str  # rate or increase
    constraints: list[_Constraint] = field(default_factory=list)
    by: tuple[str, ...] | None = None  # labels kept: by (...); None: all but ``without``
    without: tuple[str, ...] = ()

    def output(self, labels: dict[str, str]) -> dict[str, str]:
        if self.by is not None:
            return {k: labels[k] for k in self.by if labels.get(k)}
        return {k: v for k, v in labels.items() if v and k != "__name__" and k not in self.without}


def _ratio_inputs(ratio: RatioSLI) -> _Inputs:
    errors = _aggregated("errors", ratio.errors)
    total = _aggregated("total", ratio.total)
    if errors.function != total.function:
        raise Unsupported(f"errors uses {errors.function}(), total uses {total.function}()")
    # Labels the aggregation keeps but no selector pins get a value, so the alert must carry it.
    pinned = {c[0] for c in errors.constraints + total.constraints}
    kept = {k for agg in (errors, total) for k in (agg.by or ()) if k not in pinned}
    extra = [(k, "=", _FILLER) for k in sorted(kept)]
    series = _pair(errors.constraints + extra, total.constraints + extra, "errors")
    outputs = [
        agg.output(s.labels)
        for agg in (errors, total)
        for s in series
        if _matches(s.labels, agg.constraints)
    ]
    if any(o != outputs[0] for o in outputs):
        raise Unsupported("errors and total do not aggregate to the same single series")
    return _Inputs(series, outputs[0])


def _aggregated(field_name: str, expr: str) -> _Aggregated:
    try:
        node = promql_parser.parse(expr.replace(WINDOW_PLACEHOLDER, "5m"))
    except ValueError as error:
        raise Unsupported(f"{field_name} does not parse: {error}") from None
    node = _unparen(node)
    if not isinstance(node, promql_parser.AggregateExpr) or str(node.op) != "sum":
        raise Unsupported(f"{field_name} is not sum(rate(...)) or sum(increase(...))")
    by: tuple[str, ...] | None = ()
    without: tuple[str, ...] = ()
    if node.modifier is not None:
        labels = tuple(node.modifier.labels)
        if node.modifier.type == promql_parser.AggModifierType.By:
            by = labels
        else:
            by, without = None, labels
    call = _unparen(node.expr)
    if (
        not isinstance(call, promql_parser.Call)
        or call.func.name not in ("rate", "increase")
        or len(call.args) != 1
        or not isinstance(call.args[0], promql_parser.MatrixSelector)
    ):
        raise Unsupported(f"{field_name} is not sum(rate(...)) or sum(increase(...))")
    constraints = _vector_constraints(field_name, call.args[0].vector_selector)
    return _Aggregated(call.func.name, constraints, by, without)


def _unparen(node: Any) -> Any:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return node


def _selector_constraints(text: str) -> list[_Constraint]:
    try:
        node = promql_parser.parse(text)
    except ValueError as error:
        raise Unsupported(f"{text} does not parse: {error}") from None
    if not isinstance(node, promql_parser.VectorSelector):
        raise Unsupported(f"{text} is not a plain series selector")
    return _vector_constraints(text, node)


def _vector_constraints(what: str, selector: Any) -> list[_Constraint]:
    if selector.offset is not None or selector.at is not None:
        raise Unsupported(f"{what} uses offset or @")
    if selector.matchers.or_matchers:
        raise Unsupported(f"{what} uses 'or' between matchers")
    constraints = [
        (m.name, _OPS[str(m.op).rsplit(".", 1)[-1]], m.value) for m in selector.matchers.matchers
    ]
    if selector.name:
        constraints.append(("__name__", "=", selector.name))
    return constraints


def _pair(part: list[_Constraint], total: list[_Constraint], role: str) -> tuple[_Series, ...]:
    """Two series whose sums give ``part`` (carrying ``role``) and ``total``.

    One series inside both selectors and one in ``total`` only when they share a metric;
    otherwise one series in each selector and in that selector only.
    """
    other = "good" if role == "errors" else "errors"
    try:
        inside = _solve(part + total)
        pair = (_Series(inside, role), _Series(_solve(total, part, inside), other))
    except Unsupported:
        alone = _solve(part, violate=total)
        shared = {k: v for k, v in alone.items() if k != "__name__"}
        pair = (_Series(alone, role), _Series(_solve(total, part, shared), "total"))
    sums = {"part": Fraction(0), "total": Fraction(0)}
    values = {role: Fraction(1, 3), other: Fraction(2, 3), "total": Fraction(1)}
    for series in pair:
        for name, constraints in (("part", part), ("total", total)):
            if _matches(series.labels, constraints):
                sums[name] += values[series.role]
    if sums != {"part": values[role], "total": Fraction(1)}:
        raise Unsupported("no pair of series separates the selectors")
    return pair


def _matches(labels: dict[str, str], constraints: list[_Constraint]) -> bool:
    return all(_satisfies(labels.get(name, ""), op, value) for name, op, value in constraints)


def _satisfies(value: str, op: str, pattern: str) -> bool:
    if op == "=":
        return value == pattern
    if op == "!=":
        return value != pattern
    try:
        matched = re.fullmatch(pattern, value) is not None
    except re.error:
        raise Unsupported(f"regular expression {pattern!r} is not supported") from None
    return matched if op == "=~" else not matched


def _solve(
    constraints: list[_Constraint],
    violate: list[_Constraint] | None = None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """Labels satisfying every constraint and, when asked, violating one of ``violate``; as
    close to ``base`` as they can be (so that aggregations group them with it)."""
    base = base or {}
    if violate is None:
        return {**base, **_assign(constraints, base)}
    for name, op, value in violate:
        try:
            labels = {**base, **_assign([*constraints, (name, _NEGATED[op], value)], base)}
        except Unsupported:
            continue
        if _matches(labels, constraints) and not _matches(labels, violate):
            return labels
    raise Unsupported("cannot build a series outside " + _describe(violate))


def _assign(constraints: list[_Constraint], prefer: dict[str, str]) -> dict[str, str]:
    by_label: dict[str, list[tuple[str, str]]] = {}
    for name, op, value in constraints:
        by_label.setdefault(name, []).append((op, value))
    labels: dict[str, str] = {}
    for name, wanted in by_label.items():
        chosen = _value(name, wanted, prefer.get(name))
        if chosen is None:
            raise Unsupported(
                f"no value of label {name} satisfies "
                + ", ".join(f"{name}{op}{_quote(v)}" for op, v in wanted)
            )
        labels[name] = chosen
    if not labels.get("__name__"):
        raise Unsupported("selector names no metric")
    return labels


def _value(name: str, wanted: list[tuple[str, str]], preferred: str | None) -> str | None:
    candidates = [preferred] if preferred is not None else []
    candidates += [v for op, v in wanted if op == "="]
    candidates += [e for op, v in wanted if op == "=~" for e in (_example(v),) if e is not None]
    candidates += [_FILLER, "lumen-good", "200", "0", "x", ""]
    for candidate in candidates:
        if name == "__name__" and not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", candidate):
            continue
        if all(_satisfies(candidate, op, v) for op, v in wanted):
            return candidate
    return None


def _describe(constraints: list[_Constraint]) -> str:
    return "{" + ", ".join(f"{n}{op}{_quote(v)}" for n, op, v in constraints) + "}"


def _example(pattern: str) -> str | None:
    """A string the (simple) regular expression matches in full, or None."""
    try:
        text = _generate(sre_parse.parse(pattern).data)
        return text if re.fullmatch(pattern, text) else None
    except (re.error, _NoExample, RecursionError):
        return None


class _NoExample(Exception):
    pass


_C = sre_parse  # the opcode constants live in re._parser's namespace
_CATEGORY_CHARS = {
    _C.CATEGORY_DIGIT: "0",
    _C.CATEGORY_WORD: "a",
    _C.CATEGORY_SPACE: " ",
    _C.CATEGORY_NOT_DIGIT: "a",
    _C.CATEGORY_NOT_WORD: "-",
    _C.CATEGORY_NOT_SPACE: "a",
}


def _generate(items: list[tuple[Any, Any]]) -> str:
    out = []
    for op, arg in items:
        if op is _C.LITERAL:
            out.append(chr(arg))
        elif op is _C.NOT_LITERAL:
            out.append("a" if arg != ord("a") else "b")
        elif op is _C.ANY:
            out.append("0")
        elif op is _C.IN:
            out.append(_generate_in(arg))
        elif op is _C.CATEGORY:
            out.append(_CATEGORY_CHARS[arg])
        elif op is _C.BRANCH:
            out.append(_generate(arg[1][0]))
        elif op is _C.SUBPATTERN:
            out.append(_generate(arg[-1]))
        elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT):
            low, _high, sub = arg
            out.append(_generate(sub) * low)
        elif op is _C.AT:
            continue
        else:
            raise _NoExample(str(op))
    return "".join(out)


def _generate_in(items: list[tuple[Any, Any]]) -> str:
    for op, arg in items:
        if op is _C.NEGATE:
            raise _NoExample("negated set")
        if op is _C.LITERAL:
            return chr(arg)
        if op is _C.RANGE:
            return chr(arg[0])
        if op is _C.CATEGORY and arg in _CATEGORY_CHARS:
            return _CATEGORY_CHARS[arg]
    raise _NoExample("character set")


# --- suppression and the synthetic SLI ---------------------------------------------------------


def _suppression_series(policy: Policy) -> dict[str, str] | None:
    """Labels of a series the suppression guard reads, or None (then it stays absent)."""
    suppression = policy.spec.suppression
    if not suppression.enabled:
        return None
    selector = namespace_selector(policy, suppression.selector)
    try:
        return _solve(_selector_constraints(f"{suppression.metric}{selector}"))
    except Unsupported:
        return None


def _with_synthetic_sli(policy: Policy, slo: SLO, group: dict[str, Any]) -> dict[str, Any]:
    """The SLO's group with its error-ratio and event recordings over the synthetic counters."""
    synthetic = slo_rule_group(policy, replace(slo, sli=SYNTHETIC_SLI), group["name"])
    exprs = {rule["record"]: rule["expr"] for rule in synthetic["rules"] if "record" in rule}
    for rule in group["rules"]:
        record = rule.get("record", "")
        if record.startswith(("lumen_slo:error_ratio:", "lumen_slo:events:")) and record in exprs:
            rule["expr"] = exprs[record]
    return group
