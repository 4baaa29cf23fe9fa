"""Checks beyond the schema: PromQL that parses, references that resolve, SLOs that can alert.

The schema-level checks (types, patterns, ranges, unique names) already ran in the loader; these
need the whole policy or a PromQL parser, so the API server cannot do them. The operator reports
them in the policy's status; ``lumenctl validate`` prints them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..burnrate import TIERS, burn_threshold, tier_windows
from ..presets import PACKS
from .durations import parse_duration
from .loading import Problem
from .model import SLO, Matcher, Policy, PolicySpec, Probe
from .probe_metrics import (
    counter_problem,
    counter_series,
    jsonpath_problem,
    method_problem,
    probe_series_names,
    repeated_metric,
    reserved_metric_problem,
    url_problem,
)
from .promql_errors import parse_error, parse_problem
from .sli import WINDOW_PLACEHOLDER, sli_queries

# Labels Lumen sets on every alert; a policy may not set them by hand.
RESERVED_LABELS = frozenset({"namespace", "lumen_policy", "service", "severity"})
LONGEST_PERIOD = 365 * 86400
# Stands for {{window}} while a ratio SLI's query is parsed: a valid duration exactly as long,
# so the positions in the parser's errors are those in the text as written.
_WINDOW_STAND_IN = "5m".rjust(len(WINDOW_PLACEHOLDER), "0")

# Whether the spec's value at a path (or inside it) had a structural problem: the loader then put
# a default there or left the part out, so a check reading it would judge something not written.
Broken = Callable[[str], bool]


def _nothing_broken(path: str) -> bool:
    return False


def semantic_problems(policy: Policy, broken: Broken = _nothing_broken) -> list[Problem]:
    """The problems only the whole policy shows. ``broken`` names the parts to leave unjudged
    (a spec built from a manifest with structural problems, ``loading.load_partial``)."""
    spec = policy.spec
    return [
        *_label_problems(spec),
        *_rule_problems(spec, broken),
        *_preset_problems(spec),
        *_slo_problems(spec, broken),
        *_routing_problems(spec, broken),
        *_selector_problems(spec),
        *_probe_problems(spec, broken),
    ]


def promql_problem(path: str, expr: str, shown: str | None = None) -> Problem | None:
    """``invalid PromQL: <the parser's message> (column N: "<the text there>")``, or None when
    ``expr`` parses. ``shown``: the text the user wrote, when ``expr`` differs from it at most
    by equally long substitutions (positions are the same in both)."""
    problem = parse_problem(expr, shown)
    return None if problem is None else Problem(path, f"invalid PromQL: {problem}")


def _parses(expr: str) -> bool:
    return parse_error(expr) is None


def _label_problems(spec: PolicySpec) -> Iterator[Problem]:
    for key in sorted(RESERVED_LABELS & spec.labels.keys()):
        yield Problem(f"spec.labels.{key}", "is set by Lumen and cannot be overridden")
    for i, rule in enumerate(spec.rules):
        for key in sorted(RESERVED_LABELS & rule.labels.keys()):
            yield Problem(
                f"spec.rules[{i}].labels.{key}",
                "is set by Lumen (use the rule's own field where there is one)",
            )


def _rule_problems(spec: PolicySpec, broken: Broken) -> Iterator[Problem]:
    for i, rule in enumerate(spec.rules):
        problem = promql_problem(f"spec.rules[{i}].expr", rule.expr)
        if problem:
            yield problem
        is_anchor = rule.runbook and not rule.runbook.startswith(("http://", "https://"))
        if is_anchor and not spec.runbook_base_url and not broken("spec.runbookBaseURL"):
            yield Problem(
                f"spec.rules[{i}].runbook",
                "is an anchor but spec.runbookBaseURL is not set (give a full URL or set it)",
            )


def _preset_problems(spec: PolicySpec) -> Iterator[Problem]:
    for i, preset in enumerate(spec.presets):
        pack = PACKS[preset.name]
        for alert, override in preset.overrides.items():
            path = f"spec.presets[{i}].overrides.{alert}"
            rule = pack.rule(alert)
            if rule is None:
                known = ", ".join(r.alert for r in pack.rules)
                yield Problem(path, f"preset {preset.name} has no rule {alert} (it has: {known})")
            elif override.threshold is not None and rule.threshold is None:
                yield Problem(f"{path}.threshold", f"{alert} has no threshold to override")


def _slo_problems(spec: PolicySpec, broken: Broken) -> Iterator[Problem]:
    for i, slo in enumerate(spec.slos):
        path = f"spec.slos[{i}]"
        yield from _sli_parse_problems(slo, path)
        if broken(f"{path}.period") or broken(f"{path}.alerting"):
            continue  # the default stands there: whether an alert can fire is not known
        try:
            period = parse_duration(slo.period)
        except ValueError as error:  # "": the pattern (as the API server's) lets it through
            yield Problem(f"{path}.period", str(error))
            continue
        longest = max(w.long for w in tier_windows("ticket"))
        if not longest <= period <= LONGEST_PERIOD:
            yield Problem(
                f"{path}.period", "must be between 3d (the longest alert window) and 365d"
            )
            continue
        if period != int(period):
            # The rules count the period in whole seconds (lumen_slo:period:seconds).
            yield Problem(f"{path}.period", "must be a whole number of seconds")
            continue
        yield from _reachability_problems(slo, int(period), path)


def _probe_problems(spec: PolicySpec, broken: Broken) -> Iterator[Problem]:
    """What the exporter would refuse in its config.json: caught here, not by a crash-loop.
    A probe with a structural problem is left unjudged (its checks read its fields together,
    and their messages name other probes and headers by index)."""
    if spec.exporter is None or not spec.exporter.enabled or broken("spec.exporter.enabled"):
        return
    for i, probe in enumerate(spec.exporter.probes):
        if not broken(f"spec.exporter.probes[{i}]"):
            yield from _one_probe_problems(probe, f"spec.exporter.probes[{i}]")
    if not broken("spec.exporter.probes"):
        yield from _family_type_problems(spec.exporter.probes)
    expire_after = spec.exporter.pipeline.expire_after
    if expire_after is not None:
        yield from _positive_duration("spec.exporter.pipeline.expireAfter", expire_after)


def _one_probe_problems(probe: Probe, path: str) -> Iterator[Problem]:
    if (problem := url_problem(probe.url)) is not None:
        yield Problem(f"{path}.url", problem)
    reads_body = bool(probe.fields or probe.count_values)
    if (problem := method_problem(probe.method, reads_body)) is not None:
        yield Problem(f"{path}.method", problem)
    yield from _positive_duration(f"{path}.interval", probe.interval)
    yield from _positive_duration(f"{path}.timeout", probe.timeout)
    named = {
        "healthMetric": probe.health_metric,
        "responseTimeMetric": probe.response_time_metric,
        **{f"fields.{name}": name for name in probe.fields},
    }
    for key, name in named.items():
        if (problem := reserved_metric_problem(name)) is not None:
            yield Problem(f"{path}.{key}", problem)
    for name in probe.count_values:
        if (problem := counter_problem(name)) is not None:
            yield Problem(f"{path}.countValues.{name}", problem)
    # A counter ``x`` is exposed as x, x_total and x_created: a gauge under any of them would
    # give Prometheus two families of one name, and it drops the whole scrape.
    series = probe_series_names(named.values(), probe.count_values)
    if (twice := repeated_metric(series)) is not None:
        counters = [base for base in probe.count_values if twice in counter_series(base)]
        which = f" (countValues {counters[0]!r} exports {twice})" if counters else ""
        yield Problem(path, f"metric {twice!r} is used twice by this probe{which}")
    for key, paths in (("fields", probe.fields), ("countValues", probe.count_values)):
        for name, query in paths.items():
            if (problem := jsonpath_problem(query)) is not None:
                yield Problem(f"{path}.{key}.{name}", problem)
    # Value maps' numbers are finite and their keys name fields (the loader checks both), and
    # header names are tokens (the model's pattern).
    seen: dict[str, int] = {}
    for j, header in enumerate(probe.headers):
        # Header names are case-insensitive: two spellings would send the header twice.
        first = seen.setdefault(header.name.lower(), j)
        if first != j:
            yield Problem(
                f"{path}.headers[{j}].name",
                f"header {header.name!r} is also set at [{first}] (names ignore case)",
            )


def _family_type_problems(probes: list[Probe]) -> Iterator[Problem]:
    """Probes may share a gauge (their series differ by ``probe``), but a name one probe
    exports as a gauge and another as a counter's series would be two families of one name on
    /metrics, and Prometheus drops the whole scrape."""
    gauges = {
        name: i
        for i, probe in reversed(list(enumerate(probes)))
        for name in (probe.health_metric, probe.response_time_metric, *probe.fields)
    }
    for i, probe in enumerate(probes):
        for base in probe.count_values:
            for name in counter_series(base):
                j = gauges.get(name)
                if j is not None and j != i:
                    yield Problem(
                        f"spec.exporter.probes[{i}].countValues.{base}",
                        f"counter {base!r} exports {name}, a gauge of spec.exporter.probes[{j}]",
                    )
                    break


def _positive_duration(path: str, duration: str) -> Iterator[Problem]:
    try:
        seconds = parse_duration(duration)
    except ValueError as error:
        yield Problem(path, str(error))
        return
    if seconds <= 0:
        yield Problem(path, f"{duration!r} must be longer than zero")


def _sli_parse_problems(slo: SLO, path: str) -> Iterator[Problem]:
    """Every query Lumen will build from the SLI must parse (checked on a 5m window). A ratio
    SLI's queries are the user's text, so its errors have positions; the other kinds' queries
    are Lumen's own text around a metric and selector, where a position would mean nothing."""
    if slo.sli.ratio is not None:
        ratio = slo.sli.ratio
        for key, text in (("errors", ratio.errors), ("total", ratio.total)):
            query = text.replace(WINDOW_PLACEHOLDER, _WINDOW_STAND_IN)
            problem = promql_problem(f"{path}.sli.ratio.{key}", query, shown=text)
            if problem:
                yield problem
                return
        return
    for key, query in sli_queries(slo.sli, "5m").items():
        message = parse_error(query)
        if message is not None:
            yield Problem(f"{path}.sli.{key}", f"invalid PromQL: {message}")
            return


def _reachability_problems(slo: SLO, period: int, path: str) -> Iterator[Problem]:
    for tier in TIERS:
        if not getattr(slo.alerting, tier).enabled:
            continue
        for window in tier_windows(tier):
            threshold = burn_threshold(window, period, slo.objective)
            if threshold >= 1:
                yield Problem(
                    f"{path}.alerting.{tier}",
                    f"can never fire: objective {slo.objective:g}% over {slo.period} needs an "
                    f"error ratio of {float(threshold):.3g} (> 100%); raise the objective or "
                    f"set enabled: false",
                )
                break


def _routing_problems(spec: PolicySpec, broken: Broken) -> Iterator[Problem]:
    routing = spec.routing
    if routing is None:
        return
    names = {r.name for r in routing.receivers}
    # A receiver with a structural problem is left out of ``receivers``: a reference to it is
    # not what is wrong.
    judge_names = not broken("spec.routing.receivers")
    if judge_names and routing.receiver and routing.receiver not in names:
        yield Problem("spec.routing.receiver", f"no receiver named {routing.receiver!r}")
    for i, route in enumerate(routing.routes):
        if judge_names and route.receiver not in names:
            yield Problem(
                f"spec.routing.routes[{i}].receiver", f"no receiver named {route.receiver!r}"
            )
        for j, matcher in enumerate(route.matchers):
            yield from _matcher_problems(f"spec.routing.routes[{i}].matchers[{j}]", matcher)
    for i, rule in enumerate(routing.inhibit_rules):
        for side, matchers in (("source", rule.source_matchers), ("target", rule.target_matchers)):
            for j, matcher in enumerate(matchers):
                path = f"spec.routing.inhibitRules[{i}].{side}Matchers[{j}]"
                yield from _matcher_problems(path, matcher)
    threader = spec.threader
    for i, receiver in enumerate(routing.receivers):
        if receiver.slack is None:
            continue
        path = f"spec.routing.receivers[{i}].slack"
        if broken("spec.threader"):
            continue  # what was written there is not known
        if threader is None or not threader.enabled:
            yield Problem(path, "Slack is delivered through the threader: set spec.threader")
        elif threader.bot_token is None:
            yield Problem(path, "needs spec.threader.botToken (the Slack bot token Secret)")


def _matcher_problems(path: str, matcher: Matcher) -> Iterator[Problem]:
    """Regex matchers must compile (Prometheus' parser checks them as RE2 would)."""
    if matcher.match_type in ("=~", "!~"):
        selector = f'{{__name__=~".+", x{matcher.match_type}"{_escape(matcher.value)}"}}'
        if not _parses(selector):
            yield Problem(f"{path}.value", f"invalid regular expression {matcher.value!r}")


def _selector_problems(spec: PolicySpec) -> Iterator[Problem]:
    selectors = [(f"spec.presets[{i}].selector", p.selector) for i, p in enumerate(spec.presets)]
    selectors.append(("spec.suppression.selector", spec.suppression.selector))
    for path, selector in selectors:
        if selector and not _parses(f"up{selector}"):
            yield Problem(path, f'{selector!r} is not a label selector like {{job="x"}}')


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
