"""docs/runbooks.md against the code: one section per runbook id the code renders, anchored by that
id, naming the alerts that link it and showing their rules as rendered, each with a symptom, what
to check and what to do; and every runbook link Lumen renders lands on one of its anchors.

The runbook ids, alert names and rules are taken from what the code renders, never written down
here: the presets of every pack and the alerts about a policy's own threader and exporter (a
policy that deploys both and uses every pack, rendered by lumen_alerting.render), and the chart's
PrometheusRule about the operator (`helm template`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import yaml

from lumen_alerting.cli.policy_files import load_policies
from lumen_alerting.policy import Policy, policy_from_manifest
from lumen_alerting.presets import PACKS
from lumen_alerting.render.objects import SLO_ALERT
from lumen_alerting.render.prometheus_rule import rules_file
from lumen_alerting.render.self_monitoring import SELF_LABEL
from tests.chart.helm import NAMESPACE as CHART_NAMESPACE
from tests.chart.helm import run_helm, template
from tests.support.schemas import REPO
from tests.test_dashboards import known_series, metric_names

RUNBOOKS = REPO / "docs" / "runbooks.md"
ANCHOR = re.compile(r'<a id="([^"]*)"></a>')
SECTION_HEADING = re.compile(r'^### <a id="(?P<id>[^"]+)"></a>(?P<alerts>.+)$')
PARTS = ("**Symptom.**", "**Check.**", "**Action.**")
PROMQL_BLOCK = re.compile(r"^ *```promql\n(.*?)^ *```$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LOCAL_LINK = re.compile(r"\]\(#([^)]+)\)")
# Prometheus writes `up` for every target it scrapes; the runbooks query it.
PROMETHEUS_SERIES = {"up"}

# The policy the runbooks' rules are shown for: its name and namespace stand for the placeholders.
POLICY_NAME, POLICY_NAMESPACE = "runbook-policy", "runbook-namespace"
PLACEHOLDERS = {
    POLICY_NAME: "<policy>",
    POLICY_NAMESPACE: "<namespace>",
    f'namespace="{CHART_NAMESPACE}"': 'namespace="<chart namespace>"',
}


@dataclass(frozen=True)
class Alert:
    """An alert that links a runbook section, with its rule as the section shows it."""

    name: str
    runbook: str
    expr: str
    for_: str


@dataclass(frozen=True)
class Section:
    runbook: str
    alerts: tuple[str, ...]
    text: str


def placeholders(text: str) -> str:
    for concrete, placeholder in PLACEHOLDERS.items():
        text = text.replace(concrete, placeholder)
    return text


def runbook_id(rule: dict[str, Any]) -> str:
    url = rule["annotations"].get("runbook_url", "")
    assert "#" in url, f"{rule['alert']} links no runbook section: {url!r}"
    return str(url.rsplit("#", 1)[1])


def as_alert(rule: dict[str, Any]) -> Alert:
    return Alert(rule["alert"], runbook_id(rule), placeholders(rule["expr"]), rule.get("for", "0s"))


@cache
def runbook_policy() -> Policy:
    """examples/gateway.yaml (a threader and an exporter) with every preset pack, no overrides,
    selectors or suppression: the rules as the runbooks show them."""
    manifest = yaml.safe_load((REPO / "examples" / "gateway.yaml").read_text())
    manifest["metadata"] = {"name": POLICY_NAME, "namespace": POLICY_NAMESPACE}
    spec = manifest["spec"]
    spec["presets"] = [{"name": name} for name in PACKS]
    spec["runbookBaseURL"] = "https://runbooks.example.com/lumen"
    spec.pop("suppression", None)
    policy = policy_from_manifest(manifest)
    assert policy.spec.threader is not None and policy.spec.exporter is not None
    return policy


def policy_alerts() -> list[Alert]:
    """The presets' alerts and the alerts about the policy's own threader and exporter."""
    preset_names = {rule.alert for pack in PACKS.values() for rule in pack.rules}
    rules = [
        rule
        for group in rules_file([runbook_policy()])["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    presets = [r for r in rules if r["alert"] in preset_names]
    own = [r for r in rules if r["labels"].get(SELF_LABEL) == "true"]
    assert {r["alert"] for r in presets} == preset_names, "a preset rule was not rendered"
    assert {r["labels"]["lumen_component"] for r in own} == {"threader", "exporter"}
    # The presets module's ids are the ones rendered.
    assert {(r.alert, r.runbook) for p in PACKS.values() for r in p.rules} == {
        (r["alert"], runbook_id(r)) for r in presets
    }
    return [as_alert(rule) for rule in presets + own]


@cache
def chart_rules() -> tuple[dict[str, Any], ...]:
    rule = template().one("PrometheusRule", "-operator")
    return tuple(r for group in rule["spec"]["groups"] for r in group["rules"])


@cache
def documented_alerts() -> tuple[Alert, ...]:
    return (*policy_alerts(), *(as_alert(rule) for rule in chart_rules()))


def sections(text: str) -> dict[str, Section]:
    """The runbook sections by id: a `### <a id="…"></a>Alert, Alert` heading up to the next
    heading."""
    found: dict[str, Section] = {}
    current: tuple[str, tuple[str, ...]] | None = None
    lines: list[str] = []

    def close() -> None:
        if current is not None:
            runbook, alerts = current
            assert runbook not in found, f"two sections #{runbook}"
            found[runbook] = Section(runbook, alerts, "\n".join(lines))

    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("#"):
            close()
            current, lines = None, []
            heading = SECTION_HEADING.match(line)
            if heading:
                alerts = tuple(a.strip() for a in heading["alerts"].split(","))
                current = (heading["id"], alerts)
            continue
        lines.append(line)
    close()
    return found


@cache
def runbooks() -> dict[str, Section]:
    return sections(RUNBOOKS.read_text(encoding="utf-8"))


def anchors() -> list[str]:
    """The anchors the page has: not those quoted as code."""
    return ANCHOR.findall(INLINE_CODE.sub("", RUNBOOKS.read_text(encoding="utf-8")))


def test_the_anchors_are_the_runbook_ids_the_code_renders() -> None:
    ids = {alert.runbook for alert in documented_alerts()}
    assert sorted(anchors()) == sorted(set(anchors())), "an anchor is there twice"
    assert set(anchors()) == set(runbooks()), "every anchor opens a `### ` section heading"
    missing, extra = ids - set(anchors()), set(anchors()) - ids
    assert not missing and not extra, f"no section for {sorted(missing)}; no alert for {extra}"


def test_each_section_names_the_alerts_that_link_it() -> None:
    for runbook, section in runbooks().items():
        linking = [a.name for a in documented_alerts() if a.runbook == runbook]
        assert list(section.alerts) == linking, runbook


def test_each_section_shows_its_rules_as_rendered() -> None:
    for alert in documented_alerts():
        text = runbooks()[alert.runbook].text
        assert f"```promql\n{alert.expr}\n```" in text, f"#{alert.runbook}: {alert.expr}"
        # A rule without `for` fires at its first evaluation.
        wanted = "no `for`" if alert.for_ == "0s" else f"for {alert.for_}"
        assert wanted in text, f"#{alert.runbook}: {wanted}"


def test_each_section_has_a_symptom_what_to_check_and_what_to_do() -> None:
    for runbook, section in runbooks().items():
        positions = [section.text.find(part) for part in PARTS]
        assert -1 not in positions, f"#{runbook} lacks {PARTS[positions.index(-1)]}"
        assert positions == sorted(positions), f"#{runbook}: not in the order {PARTS}"
        assert all(section.text.count(part) == 1 for part in PARTS), runbook
        for part, start, end in zip(PARTS, positions, [*positions[1:], None], strict=True):
            body = section.text[start + len(part) : end].strip()
            assert len(body) > 40, f"#{runbook}: {part} says almost nothing"


def promql_blocks() -> Iterator[str]:
    for match in PROMQL_BLOCK.finditer(RUNBOOKS.read_text(encoding="utf-8")):
        yield "\n".join(line.strip() for line in match.group(1).splitlines())


def test_every_query_parses_and_reads_only_series_lumen_produces() -> None:
    known = known_series() | PROMETHEUS_SERIES
    queries = list(promql_blocks())
    assert len(queries) >= len(runbooks())
    for query in queries:
        read = set(metric_names(query))
        assert read, query
        assert read <= known, f"{query}: unknown series {sorted(read - known)}"


def test_links_inside_the_file_land_on_its_anchors() -> None:
    text = RUNBOOKS.read_text(encoding="utf-8")
    targets = set(LOCAL_LINK.findall(text))
    assert targets, "no links between sections"
    assert targets <= set(anchors()), sorted(targets - set(anchors()))


def test_every_runbook_link_of_the_examples_lands_on_a_section() -> None:
    """Every alert Lumen adds to a shipped example links a section here. Only the policy's own
    rules (`runbook:`) and its SLOs' alerts (`#slo-<name>`) link sections of the user's runbook."""
    loaded = load_policies([str(REPO / "examples")])
    assert loaded.problems == [] and loaded.policies, loaded.problems
    linked: set[str] = set()
    for _, policy in loaded.policies:
        users = {rule.alert for rule in policy.spec.rules} | {SLO_ALERT}
        for group in rules_file([policy])["groups"]:
            for rule in group["rules"]:
                url = rule.get("annotations", {}).get("runbook_url")
                if url is None or rule["alert"] in users:
                    continue
                base, runbook = url.rsplit("#", 1)
                assert base == policy.spec.runbook_base_url.rstrip("#"), url
                assert runbook in runbooks(), f"{policy.name}: {rule['alert']} links {url}"
                linked.add(runbook)
    assert linked, "no example links a runbook"


def dockerfile_source() -> str:
    match = re.search(
        r'org\.opencontainers\.image\.source="([^"]+)"', (REPO / "Dockerfile").read_text()
    )
    assert match, "the Dockerfile names no source repository"
    return match.group(1)


def test_the_chart_links_this_file_in_the_project_repository_by_default() -> None:
    expected = f"{dockerfile_source()}/blob/main/docs/runbooks.md"
    for rule in chart_rules():
        assert rule["annotations"]["runbook_url"] == f"{expected}#{runbook_id(rule)}"


def chart_runbook_urls(base: str) -> dict[str, str | None]:
    setting = f"metrics.prometheusRule.runbookBaseURL={base!r}".replace("'", '"')
    rule = template(settings=[setting]).one("PrometheusRule", "-operator")
    return {
        r["alert"]: r["annotations"].get("runbook_url")
        for group in rule["spec"]["groups"]
        for r in group["rules"]
    }


def test_the_chart_links_your_copy_or_nothing() -> None:
    ids = {rule["alert"]: runbook_id(rule) for rule in chart_rules()}
    # A trailing `#` is dropped, as the renderer drops it from spec.runbookBaseURL.
    mine = chart_runbook_urls("https://wiki.example.com/lumen#")
    assert mine == {alert: f"https://wiki.example.com/lumen#{i}" for alert, i in ids.items()}
    assert set(chart_runbook_urls("").values()) == {None}


@pytest.mark.parametrize("base", ["ftp://wiki.example.com/runbooks", "runbooks.md", "https://a b"])
def test_the_chart_refuses_a_base_that_is_not_an_http_url(base: str) -> None:
    proc = run_helm(
        "template", "lumen", ".", "--set-json", f'metrics.prometheusRule.runbookBaseURL="{base}"'
    )
    assert proc.returncode != 0, f"{base!r} was accepted"
    assert "/metrics/prometheusRule/runbookBaseURL" in proc.stderr, proc.stderr
