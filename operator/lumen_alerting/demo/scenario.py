"""The demo's scenario: start everything on loopback, then run the steps, each waiting (with a
deadline) for what it expects, and print a transcript with the time of every step.

``SCENARIO`` is a list of steps: the ION API down and back (two alerts, two threads, both
resolved), a failed pipeline stage and the good run after it, an error burst (the SLO's page
posted, its ticket muted), and the threads' runbook links. Before them ``start_everything``
shows the Kubernetes half (``start_cluster``): the real ``lumen-operator`` against the project's
API emulator, the demo policy applied with the real ``kubectl`` and Ready, and the rules
Prometheus loads are the ``spec.groups`` of the PrometheusRule the operator applied. ``run`` is
what ``python -m lumen_alerting.demo`` and the end-to-end test call.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ..burnrate import burn_threshold, tier_windows
from ..policy import policy_from_manifest
from ..policy.durations import parse_duration
from ..render import render_policy
from ..render.objects import POLICY_LABEL
from .ion_api import IonApiStandIn
from .processes import (
    Child,
    DemoFailed,
    MissingTool,
    child_environment,
    free_port,
    until,
)
from .slack_sink import RUNBOOKS_PATH, SlackSink, Thread

T = TypeVar("T")

# The alerts of the scenario as the transcript names them (``alert_id``): the ION API outage's
# two, the failed pipeline stage, and the SLO's burn-rate page and the ticket it mutes.
OUTAGE_ALERTS = ("IONAPIDown", "IONMockModeEnabled")
STAGE_ALERT = "LumenStageFailed"
SLO_PAGE = "LumenSLOErrorBudgetBurn{tier=page}"
SLO_TICKET = "LumenSLOErrorBudgetBurn{tier=ticket}"
POSTED_ALERTS = (*OUTAGE_ALERTS, STAGE_ALERT, SLO_PAGE)  # one Slack thread each
RESOLVED_ALERTS = (*OUTAGE_ALERTS, STAGE_ALERT)  # resolved in their thread before the end
MUTED_ALERTS = (SLO_TICKET,)  # firing, inhibited by the page, never posted
SCENARIO_ALERTS = (*POSTED_ALERTS, *MUTED_ALERTS)
# The pipeline run the demo posts (seed 004's stages); the second run has every stage succeed.
PIPELINE_STAGES = {"build": 41.2, "pdf": 12.0, "upload": 5.1, "distribute": 30.0}
FAILED_STAGE = "distribute"
# The error burst: clients' queries answered, then failed. 30 of 50 is a 60% error ratio, far
# above the page's 1.44% (and the ticket's 0.3%) in every window; with 1 failure in 21 answers
# already above both, the page and the ticket start firing at the same evaluation.
BURST_ANSWERED, BURST_FAILED = 20, 30
# The job Prometheus scrapes the stand-in's /metrics as; the SLO in policy.yaml selects it.
ION_API_JOB = "ion-api"
# The checkout the demo runs from (``make setup`` installs the package editable): its
# docs/runbooks.md, and for the Kubernetes half its API emulator, kubectl and CRDs.
CHECKOUT = Path(__file__).resolve().parents[3]
RUNBOOKS = CHECKOUT / "docs" / "runbooks.md"
# The project's Kubernetes API emulator as a process (tests/support/kube_api_serve.py); the
# package never imports tests/, it runs the module from the checkout.
EMULATOR_MODULE = "tests.support.kube_api_serve"
KUBECTL = CHECKOUT / ".tools" / "bin" / "kubectl"
LUMEN_CRDS = CHECKOUT / "crds"
# The prometheus-operator CRDs of the kinds the operator writes (kube-prometheus-stack's files,
# fetched by `make setup`; LUMEN_UPSTREAM_CRDS points elsewhere, as for the tests).
UPSTREAM_CRD_FILES = (
    "monitoring.coreos.com_prometheusrules.yaml",
    "monitoring.coreos.com_alertmanagerconfigs.yaml",
    "monitoring.coreos.com_servicemonitors.yaml",
)
# The repository's example policies, applied next to the demo's and shown Ready. Prometheus
# loads only the demo policy's PrometheusRule: it scrapes the demo's exporter and stand-in only,
# and the examples' absent() guards would fire for the exporters that do not run here.
EXAMPLE_POLICIES = ("gateway.yaml", "http-api.yaml", "pipeline.yaml")
# Variables that would point kubectl or the operator at another cluster than the emulator.
FOREIGN_KUBE_PREFIXES = ("KUBE", "HELM_")
# The runbook section of the demo policy's own SLO, served after docs/runbooks.md: that file
# has a section for every alert Lumen writes itself, and says an SLO's belongs in the team's copy.
SLO_RUNBOOK = """
## The demo policy's own alerts (added by `make demo`)

### <a id="slo-ion-api-answers"></a>LumenSLOErrorBudgetBurn (slo="ion-api-answers")

Rule: the demo policy's SLO `ion-api-answers` (objective 99% over 3d), rendered as
[slo.md](slo.md) describes; `tier="page"` above 1.44x the budget's pace over 1h/5m (or 0.6x over
6h/30m), `tier="ticket"` above 0.3x over 1d/2h (or 0.1x over 3d/6h).

**Symptom.** The ION API answers too many clients' queries with a server error (5xx) for the
error budget to last the period: fast (page) or steadily (ticket). While the page fires,
Alertmanager mutes the ticket of the same SLO.

**Check.**

- The error ratio per window and the budget left:

  ```promql
  {__name__=~"lumen_slo:error_ratio:rate.*", slo="ion-api-answers"}
  ```

  ```promql
  lumen_slo:error_budget_remaining:ratio{slo="ion-api-answers"}
  ```

- The answers by status code: `sum by (code) (rate(ion_api_requests_total[5m]))`.

**Action.** Find what fails the queries (the ION API's own log, its backend) and fix or roll it
back. The page resolves when neither of its window pairs burns above its threshold: 5 minutes
without errors for the 1h/5m pair, 30 minutes for the 6h/30m pair.
"""
# Ample for one step on a loaded machine; a step normally takes a few seconds.
STEP_TIMEOUT = 60.0


@dataclass(frozen=True)
class DemoOptions:
    """``keep``: stay up until Ctrl-C (``DEMO_KEEP=1``). With ``slack_token`` and
    ``slack_channel`` (``SLACK_BOT_TOKEN``, ``SLACK_CHANNEL``) the threader posts to that real
    Slack channel instead of the local sink."""

    keep: bool = False
    slack_token: str | None = None
    slack_channel: str | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    step_timeout: float = STEP_TIMEOUT

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> DemoOptions:
        token = environ.get("SLACK_BOT_TOKEN") or None
        channel = environ.get("SLACK_CHANNEL") or None
        if (token is None) != (channel is None):
            raise DemoFailed(
                "set both SLACK_BOT_TOKEN and SLACK_CHANNEL for real Slack, or neither"
            )
        return cls(
            keep=environ.get("DEMO_KEEP", "") not in ("", "0"),
            slack_token=token,
            slack_channel=channel,
        )

    @property
    def real_slack(self) -> bool:
        return self.slack_token is not None


class Transcript:
    """Lines stamped with the seconds since the demo started."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._start = time.monotonic()
        self.lines: list[str] = []

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def say(self, text: str) -> None:
        line = f"[{self.elapsed:5.1f}s] {text}"
        self.lines.append(line)
        print(line, file=self._out, flush=True)


def alert_id(labels: Mapping[str, str]) -> str:
    """How the transcript names an alert: its alertname, with the SLO tier when it has one (an
    SLO's page and ticket share the alertname)."""
    name = labels.get("alertname", "?")
    return f"{name}{{tier={labels['tier']}}}" if "tier" in labels else name


@dataclass
class Demo:
    """What the steps act on and look at."""

    options: DemoOptions
    transcript: Transcript
    directory: Path
    client: httpx.AsyncClient
    ion_api: IonApiStandIn
    sink: SlackSink | None
    children: dict[str, Child] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    # alert_id -> the receiver Alertmanager routed it to, and that receiver's Slack channel
    routed: dict[str, tuple[str, str]] = field(default_factory=dict)
    threads: dict[str, Thread] = field(default_factory=dict)  # alert_id -> its thread
    channels: dict[str, str] = field(default_factory=dict)  # receiver -> Slack channel
    pipeline_token: str = ""  # the bearer token of POST /pipeline/runs
    policy: dict[str, Any] = field(default_factory=dict)  # the policy document rendered
    # Alertmanager's group_wait + group_interval of the policy: by then a group is flushed.
    grouping_seconds: float = 0.0
    # With real Slack: how many messages of each kind (parent, resolve) the threader should
    # have delivered by now.
    deliveries: Counter[str] = field(default_factory=Counter)
    # The Kubernetes half: kubectl's environment (KUBECONFIG, HOME...), the output of
    # `kubectl get lumenalertpolicies -A` once the policy is Ready, the spec.groups of the
    # PrometheusRules the operator applied, and the groups Prometheus loaded from them
    # (name -> the names of its rules, as /api/v1/rules shows them).
    kube_env: dict[str, str] = field(default_factory=dict)
    policies_table: str = ""
    operator_groups: list[dict[str, Any]] = field(default_factory=list)
    prometheus_rules: list[dict[str, Any]] = field(default_factory=list)  # as kubectl got them
    loaded_groups: dict[str, list[str]] = field(default_factory=dict)
    loaded_files: set[str] = field(default_factory=set)  # the rule files Prometheus read

    def say(self, text: str) -> None:
        self.transcript.say(text)

    async def until(self, what: str, probe: Callable[[], Awaitable[T | None]]) -> T:
        return await until(
            what, probe, self.options.step_timeout, watch=list(self.children.values())
        )

    async def prometheus_alerts(self) -> dict[str, str]:
        """alert_id -> state (pending, firing) of the alerts Prometheus has active."""
        answer = await self.client.get(f"{self.urls['prometheus']}/api/v1/alerts", timeout=5)
        alerts = answer.json()["data"]["alerts"]
        return {alert_id(a["labels"]): a["state"] for a in alerts}

    async def alertmanager_alerts(self) -> dict[str, dict[str, Any]]:
        """alert_id -> the alert as Alertmanager's API shows it, active and suppressed alike
        (``status.state``, ``status.inhibitedBy``, ``receivers``, ``fingerprint``...)."""
        answer = await self.client.get(f"{self.urls['alertmanager']}/api/v2/alerts", timeout=5)
        return {alert_id(a["labels"]): a for a in answer.json()}

    async def query(self, promql: str) -> list[Any]:
        answer = await self.client.get(
            f"{self.urls['prometheus']}/api/v1/query", params={"query": promql}, timeout=5
        )
        result: list[Any] = answer.json()["data"]["result"]
        return result

    async def threader_deliveries(self, kind: str) -> float:
        """How many ``kind`` messages (parent, resolve, ...) the threader has delivered."""
        text = (await self.client.get(f"{self.urls['threader']}/metrics", timeout=5)).text
        for family in text_string_to_metric_families(text):
            if family.name == "lumen_threader_deliveries":
                return sum(
                    s.value
                    for s in family.samples
                    if s.name.endswith("_total")
                    and s.labels == {"kind": kind, "result": "delivered"}
                )
        return 0.0


@dataclass(frozen=True)
class Step:
    """One step of the scenario: its title in the transcript, and what it does and waits for."""

    title: str
    run: Callable[[Demo], Awaitable[None]]


# --- the steps ------------------------------------------------------------------------------


async def ion_api_healthy(demo: Demo) -> None:
    async def healthy() -> bool:
        up = await demo.query('lumen_ion_health{namespace="lumen"} == 1')
        mock = await demo.query('lumen_ion_mock_mode{namespace="lumen"} == 0')
        active = await demo.prometheus_alerts()
        return bool(up and mock) and not any(name in active for name in SCENARIO_ALERTS)

    await demo.until("Prometheus sees the ION API up and not in mock mode", healthy)
    demo.say("Prometheus: lumen_ion_health 1, lumen_ion_mock_mode 0, no alert active")


async def ion_api_down(demo: Demo) -> None:
    demo.ion_api.down = True
    demo.say(f"stand-in: {demo.ion_api.url}/health answers 503; the gateway serves mock answers")


async def outage_alerts_fire(demo: Demo) -> None:
    await _firing(demo, OUTAGE_ALERTS)
    await _routed(demo, OUTAGE_ALERTS)


async def outage_threads_open(demo: Demo) -> None:
    await _threads_open(demo, OUTAGE_ALERTS)


async def ion_api_up(demo: Demo) -> None:
    demo.ion_api.down = False
    demo.say(f"stand-in: {demo.ion_api.url}/health answers 200 again, no more mock answers")


async def outage_threads_resolved(demo: Demo) -> None:
    await _threads_resolved(demo, OUTAGE_ALERTS)


async def pipeline_stage_fails(demo: Demo) -> None:
    await _post_run(demo, "demo-run-1", failed=FAILED_STAGE)


async def stage_failed_fires(demo: Demo) -> None:
    await _firing(demo, (STAGE_ALERT,))
    await _routed(demo, (STAGE_ALERT,))
    await _threads_open(demo, (STAGE_ALERT,))


async def pipeline_succeeds(demo: Demo) -> None:
    await _post_run(demo, "demo-run-2", failed=None)


async def stage_failed_resolved(demo: Demo) -> None:
    await _threads_resolved(demo, (STAGE_ALERT,))


async def error_burst(demo: Demo) -> None:
    url = f"{demo.ion_api.url}/query"
    codes: Counter[int] = Counter()
    for failing, queries in ((False, BURST_ANSWERED), (True, BURST_FAILED)):
        demo.ion_api.failing = failing
        for _ in range(queries):
            codes[(await demo.client.post(url, json={"q": "status"}, timeout=5)).status_code] += 1
    demo.ion_api.failing = False
    demo.say(
        f"clients: POST {url}: {codes[200]} answered 200, then {codes[500]} answered 500 "
        f"({codes[500] / codes.total():.0%} errors); the burst is over"
    )


async def slo_page_fires_ticket_muted(demo: Demo) -> None:
    await _firing(demo, (SLO_PAGE, SLO_TICKET))
    slo = demo.policy["spec"]["slos"][0]
    ratio = await demo.query(f'lumen_slo:error_ratio:rate5m{{slo="{slo["name"]}"}}')
    if ratio:
        period = int(parse_duration(slo["period"]))
        page_above, ticket_above = (
            float(burn_threshold(tier_windows(tier)[0], period, slo["objective"]))
            for tier in ("page", "ticket")
        )
        demo.say(
            f"Prometheus: lumen_slo:error_ratio:rate5m {float(ratio[0]['value'][1]):.3f} "
            f"(the page fires above {page_above:g}, the ticket above {ticket_above:g})"
        )
    await _routed(demo, (SLO_PAGE,))

    async def inhibited() -> dict[str, Any] | None:
        alerts = await demo.alertmanager_alerts()
        page, ticket = alerts.get(SLO_PAGE), alerts.get(SLO_TICKET)
        if page is None or ticket is None:
            return None
        muted = ticket["status"]["state"] == "suppressed"
        return ticket if muted and page["fingerprint"] in ticket["status"]["inhibitedBy"] else None

    ticket = await demo.until(f"Alertmanager inhibits {SLO_TICKET} by the page", inhibited)
    demo.say(
        f"Alertmanager: {SLO_TICKET} suppressed, inhibited by {SLO_PAGE} "
        f"({', '.join(ticket['status']['inhibitedBy'])})"
    )
    await _threads_open(demo, (SLO_PAGE,))

    # The ticket's group is flushed group_wait after it reached Alertmanager, and again every
    # group_interval; past both, a ticket that got through would have been posted by now.
    held_from = datetime.fromisoformat(ticket["startsAt"]).timestamp()

    async def held() -> bool:
        if time.time() < held_from + demo.grouping_seconds:
            return False
        alerts = await demo.alertmanager_alerts()
        state = alerts.get(SLO_TICKET, {}).get("status", {}).get("state")
        return bool(state == "suppressed")

    await demo.until(f"{SLO_TICKET} stays inhibited past its group's wait and interval", held)
    if demo.sink is not None:
        posted = [t for t in demo.sink.threads() if alert_id(t.parent.labels) in MUTED_ALERTS]
        if posted:
            raise DemoFailed(f"{SLO_TICKET} was posted although inhibited: {posted[0].channel}")
        where = f"no thread for it in {', '.join(demo.sink.channels())}"
    else:
        delivered = await demo.threader_deliveries("parent")
        if delivered > demo.deliveries["parent"]:
            raise DemoFailed(f"{SLO_TICKET} was delivered although inhibited")
        where = f"the threader delivered {delivered:.0f} parents, one per alert posted"
    demo.say(
        f"Slack: {SLO_TICKET} not posted, still inhibited {time.time() - held_from:.1f} s after "
        f"it fired (group_wait + group_interval: {demo.grouping_seconds:g} s); {where}"
    )


async def runbook_links_open(demo: Demo) -> None:
    sink = demo.sink
    if sink is None or sink.runbooks is None:
        # Not served here: the links point at policy.yaml's runbookBaseURL (GitHub), and the
        # demo stays on loopback.
        demo.say("runbook: the View Runbook links point at policy.yaml's runbookBaseURL")
        return
    for name in POSTED_ALERTS:
        url = demo.threads[name].parent.runbook_url
        if url is None:
            raise DemoFailed(f"the {name} thread has no View Runbook link")
        answer = await demo.client.get(url, timeout=5)
        if answer.status_code != 200:
            raise DemoFailed(f"{name}'s runbook link {url} answered {answer.status_code}")
        anchor = urlsplit(url).fragment
        if f'<a id="{anchor}"></a>' not in answer.text:
            raise DemoFailed(f"{name}'s runbook link {url}: no section #{anchor} in the page")
        demo.say(f"runbook: {name} -> {url}: 200, section #{anchor}")


async def _firing(demo: Demo, names: tuple[str, ...]) -> None:
    async def firing() -> bool:
        active = await demo.prometheus_alerts()
        return all(active.get(name) == "firing" for name in names)

    await demo.until(f"Prometheus fires {', '.join(names)}", firing)
    demo.say(f"Prometheus: {' and '.join(names)} firing")


async def _routed(demo: Demo, names: tuple[str, ...]) -> None:
    async def routed() -> dict[str, str] | None:
        receivers = {
            name: a["receivers"][0]["name"]
            for name, a in (await demo.alertmanager_alerts()).items()
            if a["status"]["state"] == "active" and a["receivers"]
        }
        return receivers if all(name in receivers for name in names) else None

    receivers = await demo.until(f"Alertmanager has {', '.join(names)}", routed)
    for name in names:
        channel = demo.channels.get(receivers[name], "?")
        demo.routed[name] = (receivers[name], channel)
        demo.say(f"Alertmanager: {name} -> {receivers[name]} ({channel})")


async def _threads_open(demo: Demo, names: tuple[str, ...]) -> None:
    sink = demo.sink
    if sink is None:
        await _delivered(demo, "parent", len(names))
        return
    for name in names:
        channel = demo.routed[name][1]

        async def opened(name: str = name, channel: str = channel) -> Thread | None:
            found = [t for t in sink.threads(channel) if alert_id(t.parent.labels) == name]
            return found[0] if found else None

        thread = await demo.until(f"a thread for {name} in {channel}", opened)
        demo.threads[name] = thread
        demo.say(f"Slack {channel}: thread {thread.parent.ts}: {thread.parent.text}")


async def _threads_resolved(demo: Demo, names: tuple[str, ...]) -> None:
    sink = demo.sink
    if sink is None:
        await _delivered(demo, "resolve", len(names))
        return
    for name in names:
        opened = demo.threads[name]

        async def resolved(opened: Thread = opened) -> Thread | None:
            now = next(t for t in sink.threads(opened.channel) if t.parent.ts == opened.parent.ts)
            done = now.parent.resolved and any(r.resolved for r in now.replies)
            return now if done else None

        thread = await demo.until(f"{name} resolved in its thread", resolved)
        demo.threads[name] = thread
        reply = next(r for r in thread.replies if r.resolved)
        demo.say(
            f"Slack {thread.channel}: thread {thread.parent.ts}: reply {reply.ts} "
            f"'{reply.text}', parent now '{thread.parent.text}'"
        )


async def _delivered(demo: Demo, kind: str, more: int) -> None:
    """With real Slack the demo cannot look at the channel: the threader's count of delivered
    messages says they are there."""
    demo.deliveries[kind] += more
    wanted = demo.deliveries[kind]

    async def delivered() -> bool:
        return await demo.threader_deliveries(kind) >= wanted

    await demo.until(f"the threader delivers {wanted} {kind} messages to Slack", delivered)
    demo.say(f"threader: {wanted} {kind} messages delivered to {demo.options.slack_channel}")


async def _post_run(demo: Demo, run_id: str, failed: str | None) -> None:
    """POST one run of the pipeline to the exporter, as CI's last step does (docs/exporter.md)."""
    run = {
        "run_id": run_id,
        "stages": [
            {"stage": stage, "success": stage != failed, "duration_seconds": seconds}
            for stage, seconds in PIPELINE_STAGES.items()
        ],
    }
    url = f"{demo.urls['exporter']}/pipeline/runs"
    answer = await demo.client.post(
        url, json=run, headers={"Authorization": f"Bearer {demo.pipeline_token}"}, timeout=10
    )
    if answer.status_code != 200:
        raise DemoFailed(f"POST {url} answered {answer.status_code}: {answer.text}")
    outcome = ", ".join(
        f"{stage} {'ok' if stage != failed else 'FAILED'}" for stage in PIPELINE_STAGES
    )
    demo.say(f"CI: POST {url} {run_id} ({outcome}) -> result {answer.json()['result']}")


SCENARIO: tuple[Step, ...] = (
    Step("the ION API is healthy", ion_api_healthy),
    Step("the ION API goes down", ion_api_down),
    Step("IONAPIDown and IONMockModeEnabled fire", outage_alerts_fire),
    Step("one Slack thread per alert, in its severity's channel", outage_threads_open),
    Step("the ION API is back", ion_api_up),
    Step("each alert resolved in its own thread", outage_threads_resolved),
    Step(f"a pipeline run fails at its {FAILED_STAGE} stage", pipeline_stage_fails),
    Step("LumenStageFailed fires: a thread in its severity's channel", stage_failed_fires),
    Step("the next pipeline run succeeds", pipeline_succeeds),
    Step("LumenStageFailed resolved in its thread", stage_failed_resolved),
    Step("an error burst: the ION API fails clients' queries", error_burst),
    Step(
        "the SLO burn-rate page fires; the ticket it mutes is never posted",
        slo_page_fires_ticket_muted,
    ),
    Step("the threads' View Runbook links open docs/runbooks.md", runbook_links_open),
)


# --- setting up ------------------------------------------------------------------------------


@dataclass
class DemoOutcome:
    """What a finished run leaves for its caller: the transcript, the sink with everything the
    threader posted (None with real Slack), the removed directory and the children's exit
    statuses."""

    transcript: list[str]
    sink: SlackSink | None
    directory: Path
    exit_statuses: dict[str, int | None]
    seconds: float
    # `kubectl get lumenalertpolicies -A` once Ready; the PrometheusRules the operator applied
    # and their spec.groups, which the rule files were written from; the groups Prometheus
    # loaded (name -> its rules' names) and the files it read them from.
    policies_table: str = ""
    operator_groups: list[dict[str, Any]] = field(default_factory=list)
    prometheus_rules: list[dict[str, Any]] = field(default_factory=list)
    loaded_groups: dict[str, list[str]] = field(default_factory=dict)
    loaded_files: set[str] = field(default_factory=set)


def demo_policy(
    probe_base: str, slack_channel: str | None, runbook_base: str | None = None
) -> dict[str, Any]:
    """The demo policy (``policy.yaml``), its probes pointed at ``probe_base``, with
    ``runbook_base`` its runbookBaseURL and, for real Slack, every Slack receiver at
    ``slack_channel``."""
    text = resources.files(__package__).joinpath("policy.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    for probe in document["spec"]["exporter"]["probes"]:
        probe["url"] = probe_base + urlsplit(probe["url"]).path
    if runbook_base is not None:
        document["spec"]["runbookBaseURL"] = runbook_base
    if slack_channel is not None:
        for receiver in document["spec"]["routing"]["receivers"]:
            if "slack" in receiver:
                receiver["slack"]["channel"] = slack_channel
    return document


def receiver_channels(config: Mapping[str, Any]) -> dict[str, str]:
    """receiver name -> the Slack channel its threader webhook names (``?channel=``)."""
    channels = {}
    for receiver in config.get("receivers", []):
        for webhook in receiver.get("webhook_configs", []):
            channel = parse_qs(urlsplit(webhook["url"]).query).get("channel")
            if channel:
                channels[receiver["name"]] = channel[0]
    return channels


def _credential_files(config: Mapping[str, Any]) -> list[Path]:
    return [
        Path(webhook["http_config"]["authorization"]["credentials_file"])
        for receiver in config.get("receivers", [])
        for webhook in receiver.get("webhook_configs", [])
        if "credentials_file" in webhook.get("http_config", {}).get("authorization", {})
    ]


async def _lumenctl(*arguments: str) -> str:
    """stdout of ``lumenctl <arguments>`` (the installed CLI, run as the user would)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lumen_alerting.cli.lumenctl", *arguments,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=child_environment({}),
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise DemoFailed(f"lumenctl {' '.join(arguments)} failed:\n{stderr.decode()}")
    return stdout.decode()


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    raise MissingTool(
        f"{names[0]} is not on PATH: `make setup` installs it (Debian package {names[0]})"
    )


def _service_names(policy_document: dict[str, Any]) -> dict[str, str]:
    """component (threader, exporter) -> its Service's name, which prometheus-operator makes
    the ``job`` of its scrapes (the self-monitoring rules select by it)."""
    policy = policy_from_manifest(policy_document)
    return {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: o["metadata"]["name"]
        for o in render_policy(policy)
        if o["kind"] == "Service"
    }


def _exporter_config(policy_document: dict[str, Any]) -> str:
    """The exporter's config.json as the renderer writes it into its ConfigMap."""
    policy = policy_from_manifest(policy_document)
    config_map = next(o for o in render_policy(policy) if o["kind"] == "ConfigMap")
    text: str = config_map["data"]["config.json"]
    return text


async def start_everything(demo: Demo) -> None:
    """Render the policy and start every service, in the order data flows back from Slack."""
    say, d, namespace = demo.say, demo.directory, "lumen"
    python = sys.executable
    prometheus_binary = _binary("prometheus")
    alertmanager_binary = _binary("prometheus-alertmanager", "alertmanager")

    if demo.sink is not None:
        demo.urls["slack"] = await demo.sink.start(free_port())
        say(f"Slack sink (the Slack view): {demo.urls['slack']}/")
    else:
        say(f"Slack: the real workspace of SLACK_BOT_TOKEN, channel {demo.options.slack_channel}")
    demo.urls["ion_api"] = await demo.ion_api.start(free_port())
    say(
        f"stand-in ION API and gateway: {demo.urls['ion_api']} "
        "(/health, /gateway, POST /query, /metrics)"
    )

    runbook_base = None
    if demo.sink is not None and demo.sink.runbooks is not None:
        runbook_base = f"{demo.urls['slack']}{RUNBOOKS_PATH}"
        say(f"runbooks: {demo.sink.runbooks} at {runbook_base} (the policy's runbookBaseURL)")
    document = demo_policy(demo.urls["ion_api"], demo.options.slack_channel, runbook_base)
    demo.policy = document
    routing_spec = document["spec"]["routing"]
    demo.grouping_seconds = parse_duration(routing_spec["groupWait"]) + parse_duration(
        routing_spec["groupInterval"]
    )
    policy_file = d / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(document, sort_keys=False))
    await start_cluster(demo, policy_file, d / "operator-rules")
    jobs = _service_names(document)

    # Plain mode: the webhooks name the local threader, and lumenctl writes the token file the
    # rendered alertmanager.yml reads (and the threader checks).
    threader_port = free_port()
    demo.urls["threader"] = f"http://127.0.0.1:{threader_port}"
    routing_text = await _lumenctl(
        "render", "--format", "alertmanager", "-f", str(policy_file),
        "--threader-url", demo.urls["threader"],
        "--secrets-dir", str(d / "secrets"), "--write-secrets",
    )  # fmt: skip
    routing = yaml.safe_load(routing_text)
    demo.channels = receiver_channels(routing)
    (d / "alertmanager.yml").write_text(routing_text)
    say(
        f"lumenctl render --format alertmanager --threader-url {demo.urls['threader']} "
        f"--write-secrets -> {d / 'alertmanager.yml'}"
    )

    exporter_port = free_port()
    (d / "exporter").mkdir()
    (d / "exporter" / "config.json").write_text(_exporter_config(document))
    # The pipeline token, where the Secret the policy names would be mounted; CI sends it.
    token_ref = document["spec"]["exporter"]["pipeline"]["token"]
    token_file = d / "secrets" / token_ref["name"] / token_ref["key"]
    token_file.parent.mkdir(parents=True, exist_ok=True)
    demo.pipeline_token = secrets.token_urlsafe(24)
    token_file.write_text(demo.pipeline_token)
    token_file.chmod(0o600)
    demo.urls["exporter"] = f"http://127.0.0.1:{exporter_port}"
    exporter = Child(
        "lumen-exporter",
        [python, "-m", "lumen_alerting.cli.exporter",
         "--listen", f"127.0.0.1:{exporter_port}",
         "--config", str(d / "exporter" / "config.json"),
         "--state-dir", str(d / "exporter"),
         "--pipeline-token-file", str(token_file)],
        d / "exporter.log",
        env=child_environment({}),
        ready_url=f"{demo.urls['exporter']}/ready",
    )  # fmt: skip
    await _start(
        demo, exporter, f"lumen-exporter: {demo.urls['exporter']}/metrics, POST /pipeline/runs"
    )

    slack_api = "https://slack.com/api" if demo.sink is None else f"{demo.urls['slack']}/api"
    threader = Child(
        "lumen-threader",
        [python, "-m", "lumen_alerting.cli.threader",
         "--listen", f"127.0.0.1:{threader_port}",
         "--store", f"sqlite:{d / 'threader.db'}",
         "--slack-api-url", slack_api,
         "--webhook-token-file", str(_credential_files(routing)[0])],
        d / "threader.log",
        env=child_environment({"SLACK_BOT_TOKEN": demo.options.slack_token or "xoxb-lumen-demo"}),
        ready_url=f"{demo.urls['threader']}/ready",
    )  # fmt: skip
    await _start(demo, threader, f"lumen-threader: {demo.urls['threader']} -> {slack_api}")

    alertmanager_port = free_port()
    demo.urls["alertmanager"] = f"http://127.0.0.1:{alertmanager_port}"
    alertmanager = Child(
        "alertmanager",
        [alertmanager_binary,
         f"--config.file={d / 'alertmanager.yml'}",
         f"--storage.path={d / 'alertmanager'}",
         f"--web.listen-address=127.0.0.1:{alertmanager_port}",
         "--cluster.listen-address="],
        d / "alertmanager.log",
        ready_url=f"{demo.urls['alertmanager']}/-/ready",
    )  # fmt: skip
    await _start(demo, alertmanager, f"Alertmanager: {demo.urls['alertmanager']}/#/alerts")

    prometheus_port = free_port()
    demo.urls["prometheus"] = f"http://127.0.0.1:{prometheus_port}"
    # In the cluster the namespace label comes from the scraped pod's namespace and the job
    # from the Service: the rules select both. The stand-in's /metrics feeds the SLO.
    scrape = {
        jobs["exporter"]: exporter_port,
        jobs["threader"]: threader_port,
        ION_API_JOB: int(urlsplit(demo.urls["ion_api"]).port or 0),
    }
    prometheus_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(d / "rules" / "*.yaml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        },
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": namespace}}
                ],
            }
            for job, port in scrape.items()
        ],
    }
    (d / "rules").mkdir()
    (d / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config, sort_keys=False))
    prometheus = Child(
        "prometheus",
        [prometheus_binary,
         f"--config.file={d / 'prometheus.yml'}",
         f"--storage.tsdb.path={d / 'prometheus'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}",
         "--web.enable-lifecycle"],
        d / "prometheus.log",
        ready_url=f"{demo.urls['prometheus']}/-/ready",
    )  # fmt: skip
    await _start(demo, prometheus, f"Prometheus: {demo.urls['prometheus']}/alerts")
    await _load_rules(demo, d / "operator-rules", d / "rules", scrape)


async def start_cluster(demo: Demo, policy_file: Path, rules_dir: Path) -> None:
    """The Kubernetes half, with what runs here: the project's API emulator on loopback, the
    CRDs and the demo policy applied with the real ``kubectl``, the real ``lumen-operator``
    reconciling it until ``kubectl get lumenalertpolicies`` shows it Ready, and its
    PrometheusRules' ``spec.groups`` written to ``rules_dir`` as prometheus-operator hands them
    to Prometheus (one file per PrometheusRule)."""
    checkout = _checkout()
    d, python = demo.directory, sys.executable
    kube = d / "kube"
    kube.mkdir()
    emulator_port = free_port()
    server = f"http://127.0.0.1:{emulator_port}"
    demo.urls["kubernetes"] = server
    emulator = Child(
        "API emulator",
        [python, "-m", EMULATOR_MODULE, "--port", str(emulator_port)],
        d / "kube-api.log",
        # The emulator is the checkout's tests/support, not part of the installed package.
        env={**_kube_free_environment(), "PYTHONPATH": str(checkout)},
        ready_url=f"{server}/readyz",
    )
    await _start(demo, emulator, f"Kubernetes API emulator: {server} (the project's, loopback)")

    kubeconfig = kube / "config"
    kubeconfig.write_text(yaml.safe_dump(_kubeconfig(server), sort_keys=False))
    kubeconfig.chmod(0o600)
    # kubectl's cache and config under the demo's directory, never the user's ~/.kube.
    demo.kube_env = {
        **_kube_free_environment(),
        "HOME": str(kube),
        "KUBECONFIG": str(kubeconfig),
        "KUBECACHEDIR": str(kube / "cache"),
    }
    namespace = demo.policy["metadata"]["namespace"]
    upstream = _upstream_crds(checkout)
    examples = [checkout / "examples" / f for f in EXAMPLE_POLICIES]
    namespaces = sorted(
        {namespace} | {yaml.safe_load(f.read_text())["metadata"]["namespace"] for f in examples}
    )
    for each in namespaces:
        await _kubectl(demo, "create", "namespace", each)
    applied = await _kubectl(
        demo, "apply", "--server-side", "-f", str(LUMEN_CRDS),
        *(a for f in UPSTREAM_CRD_FILES for a in ("-f", str(upstream / f))),
    )  # fmt: skip
    kinds = ", ".join(f.split("_")[1].removesuffix(".yaml") for f in UPSTREAM_CRD_FILES)
    demo.say(
        f"kubectl create namespace {' '.join(namespaces)}; kubectl apply --server-side -f "
        f"crds/ and prometheus-operator's {kinds}: {len(applied.splitlines())} CRDs applied"
    )

    # The operator's liveness and metrics endpoints listen on every interface: off, to stay on
    # loopback. It is up when it can reach the API, and working once the policy is Ready.
    operator = Child(
        "lumen-operator",
        [python, "-m", "lumen_alerting.cli.operator",
         "--standalone", "--metrics-port", "0", "--liveness-port", "0"],
        d / "operator.log",
        env=child_environment(demo.kube_env),
        ready_url=f"{server}/readyz",
    )  # fmt: skip
    await _start(demo, operator, f"lumen-operator --standalone (all namespaces) -> {server}")

    name = demo.policy["metadata"]["name"]
    files = [*examples, policy_file]
    applied = await _kubectl(demo, "apply", *(a for f in files for a in ("-f", str(f))))
    demo.say(
        f"kubectl apply -f {' -f '.join(f'examples/{f}' for f in EXAMPLE_POLICIES)} "
        f"-f {policy_file}: {'; '.join(applied.strip().splitlines())}"
    )
    names = [yaml.safe_load(f.read_text())["metadata"]["name"] for f in examples] + [name]

    async def ready() -> str | None:
        table = await _kubectl(demo, "get", "lumenalertpolicies", "-A")
        all_ready = all(_table_value(table, n, "READY") == "True" for n in names)
        return table if all_ready else None

    demo.policies_table = await demo.until(f"lumen-operator makes {', '.join(names)} Ready", ready)
    demo.say("kubectl get lumenalertpolicies -A:")
    for line in demo.policies_table.rstrip().splitlines():
        demo.say(f"    {line}")

    selector = f"{POLICY_LABEL}={name}"
    answer = await _kubectl(
        demo, "get", "prometheusrules", "-n", namespace, "-l", selector, "-o", "json"
    )
    listed = json.loads(answer)["items"]
    if not listed:
        raise DemoFailed(f"the operator made {namespace}/{name} Ready without a PrometheusRule")
    demo.prometheus_rules = listed
    rules_dir.mkdir()
    for rule in listed:
        meta = rule["metadata"]
        groups = rule["spec"]["groups"]
        demo.operator_groups.extend(groups)
        # prometheus-operator's file name for a PrometheusRule: <namespace>-<name>-<uid>.yaml.
        file = rules_dir / f"{meta['namespace']}-{meta['name']}-{meta['uid']}.yaml"
        file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    alert_rules = sum(1 for g in demo.operator_groups for r in g["rules"] if "alert" in r)
    demo.say(
        f"kubectl get prometheusrules -l {selector}: "
        f"{', '.join(r['metadata']['name'] for r in listed)}, {len(demo.operator_groups)} "
        f"groups, {alert_rules} alert rules; their spec.groups -> {rules_dir}"
    )


def _checkout() -> Path:
    """The repository checkout the demo runs from, with what the Kubernetes half needs."""
    emulator = CHECKOUT / Path(*EMULATOR_MODULE.split(".")).with_suffix(".py")
    if not emulator.is_file() or not LUMEN_CRDS.is_dir():
        raise MissingTool(
            f"the demo's Kubernetes half runs the API emulator and CRDs of a checkout of this "
            f"repository, and {CHECKOUT} is not one: run `make demo` in a clone"
        )
    if not KUBECTL.is_file():
        raise MissingTool(f"{KUBECTL} is missing: `make setup` installs kubectl there")
    return CHECKOUT


def _upstream_crds(checkout: Path) -> Path:
    configured = os.environ.get("LUMEN_UPSTREAM_CRDS")
    folder = Path(configured) if configured else checkout / ".cache" / "upstream-crds"
    missing = [f for f in UPSTREAM_CRD_FILES if not (folder / f).is_file()]
    if missing:
        raise MissingTool(
            f"{', '.join(missing)} not in {folder}: `make setup` fetches the upstream CRDs"
        )
    return folder


def _kube_free_environment() -> dict[str, str]:
    """The demo's environment without variables that would point kubectl or the operator at
    another cluster."""
    return {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_KUBE_PREFIXES)}


def _kubeconfig(server: str) -> dict[str, Any]:
    """One context for the emulator; the token is sent and never checked."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lumen-demo", "cluster": {"server": server}}],
        "users": [{"name": "lumen-demo", "user": {"token": "lumen-demo"}}],
        "contexts": [
            {"name": "lumen-demo", "context": {"cluster": "lumen-demo", "user": "lumen-demo"}}
        ],
        "current-context": "lumen-demo",
    }


async def _kubectl(demo: Demo, *arguments: str) -> str:
    """stdout of the checkout's ``kubectl <arguments>`` against the emulator."""
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL), *arguments,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=demo.kube_env, cwd=demo.directory,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), demo.options.step_timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise DemoFailed(f"kubectl {' '.join(arguments)} did not finish in time") from None
    if process.returncode != 0:
        raise DemoFailed(f"kubectl {' '.join(arguments)} failed:\n{stderr.decode()}")
    return stdout.decode()


def _table_value(table: str, name: str, column: str) -> str | None:
    """The ``column`` of the row named ``name`` in kubectl's table output."""
    lines = table.splitlines()
    if not lines:
        return None
    header = lines[0].split()
    if column not in header or "NAME" not in header:
        return None
    for line in lines[1:]:
        cells = line.split()
        if len(cells) == len(header) and cells[header.index("NAME")] == name:
            return cells[header.index(column)]
    return None


async def _load_rules(demo: Demo, rules: Path, loaded: Path, targets: Mapping[str, int]) -> None:
    """Copy the rule files in ``rules`` (the operator's PrometheusRules') into ``loaded``, the
    directory Prometheus reads, once it scrapes its targets. Prometheus passes new targets to
    its scrapers every 5 s at most, and until the first scrape ``absent()`` is true: with the
    demo's 5 s ``for:``, IONAPIDown would fire at every start."""

    async def scraped() -> bool:
        up = await demo.query('up{namespace="lumen"} == 1')
        return len(up) == len(targets)

    await demo.until("Prometheus scrapes the exporter, the threader and the stand-in", scraped)
    for file in sorted(rules.iterdir()):
        shutil.copyfile(file, loaded / file.name)
    answer = await demo.client.post(f"{demo.urls['prometheus']}/-/reload", timeout=30)
    if answer.status_code != 200:
        raise DemoFailed(f"Prometheus did not load {loaded}: {answer.text}")

    async def loaded_groups() -> list[dict[str, Any]]:
        answer = await demo.client.get(f"{demo.urls['prometheus']}/api/v1/rules", timeout=5)
        groups: list[dict[str, Any]] = answer.json()["data"]["groups"]
        return groups

    groups = await demo.until("Prometheus has the rules", loaded_groups)
    demo.loaded_groups = {g["name"]: [r["name"] for r in g["rules"]] for g in groups}
    demo.loaded_files = {g["file"] for g in groups}
    demo.say(
        f"Prometheus: targets up, {len(demo.loaded_groups)} rule groups of the operator's "
        "PrometheusRule loaded"
    )


async def _start(demo: Demo, child: Child, line: str) -> None:
    demo.children[child.name] = child
    await child.start(demo.client, demo.options.step_timeout)
    demo.say(line)


# --- running ---------------------------------------------------------------------------------


async def run(options: DemoOptions, steps: tuple[Step, ...] = SCENARIO) -> DemoOutcome:
    """Run the demo: set up, the steps, (with ``keep``, wait for Ctrl-C), then stop everything
    and remove the directory, also when a step fails (``DemoFailed``, raised after cleaning up)."""
    transcript = Transcript(options.out)
    directory = Path(tempfile.mkdtemp(prefix="lumen-demo-"))
    runbooks = RUNBOOKS if RUNBOOKS.is_file() else None
    sink = None if options.real_slack else SlackSink(runbooks=runbooks, runbooks_extra=SLO_RUNBOOK)
    async with httpx.AsyncClient(trust_env=False) as client:
        demo = Demo(options, transcript, directory, client, IonApiStandIn(), sink)
        transcript.say(f"Lumen demo: everything on 127.0.0.1, files in {directory}")
        try:
            await start_everything(demo)
            for number, step in enumerate(steps, 1):
                demo.say(f"step {number}/{len(steps)}: {step.title}")
                await step.run(demo)
            demo.say(f"scenario complete in {transcript.elapsed:.1f} s")
            if options.keep:
                await _stay_up(demo)
        except DemoFailed as failure:
            demo.say(f"FAILED: {failure}")
            for child in demo.children.values():
                print(f"--- the end of {child.name}'s log:\n{child.log_tail(10)}", file=options.out)
            raise
        finally:
            statuses = await _stop_everything(demo)
    return DemoOutcome(
        transcript.lines,
        sink,
        directory,
        statuses,
        transcript.elapsed,
        demo.policies_table,
        demo.operator_groups,
        demo.prometheus_rules,
        demo.loaded_groups,
        demo.loaded_files,
    )


async def _stay_up(demo: Demo) -> None:
    demo.say(
        "DEMO_KEEP=1: everything stays up. Flip the ION API with "
        f"curl -X POST {demo.urls['ion_api']}/down (or /up), fail its queries with /fail (or "
        f"/answer) and send some with curl -X POST {demo.urls['ion_api']}/query; the pipeline "
        f"token is in {demo.directory / 'secrets'}; "
        f"KUBECONFIG={demo.kube_env.get('KUBECONFIG')} kubectl get lumenalertpolicies -A "
        f"(kubectl is {KUBECTL}); Ctrl-C stops the demo"
    )
    await asyncio.Event().wait()  # until cancelled by Ctrl-C or SIGTERM


async def _stop_everything(demo: Demo) -> dict[str, int | None]:
    """Stop the children in the reverse order of their start, the servers, and remove the
    directory; every child's exit status."""
    statuses = {}
    for child in reversed(list(demo.children.values())):
        statuses[child.name] = await child.stop()
    await demo.ion_api.stop()
    if demo.sink is not None:
        await demo.sink.stop()
    shutil.rmtree(demo.directory, ignore_errors=True)
    stopped = ", ".join(f"{name} ({status})" for name, status in statuses.items())
    demo.say(f"stopped {stopped or 'nothing'}; removed {demo.directory}")
    return statuses


def main() -> int:
    """``python -m lumen_alerting.demo``: 0 when the scenario completed, 1 when a step failed,
    2 when the demo cannot start (a missing binary, half the Slack settings), 130 on Ctrl-C."""
    try:
        options = DemoOptions.from_environment(os.environ)
    except DemoFailed as problem:
        print(f"lumen demo: {problem}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(options))
    except MissingTool as problem:
        print(f"lumen demo: {problem}", file=sys.stderr)
        return 2
    except DemoFailed as failure:
        print(f"lumen demo: {failure}", file=sys.stderr)
        return 1


async def _main(options: DemoOptions) -> int:
    """Run the demo with Ctrl-C, SIGTERM and SIGHUP (a closed terminal) cancelling it, so it
    cleans up; the exit status."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    stopping = False

    def stop() -> None:
        # Only the first signal cancels: a second Ctrl-C during the clean-up would cut it short
        # and leave children (in sessions of their own, out of the terminal's reach) and the
        # directory with its secrets behind.
        nonlocal stopping
        if not stopping:
            stopping = True
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop)
    try:
        await run(options)
    except asyncio.CancelledError:
        # With DEMO_KEEP=1 Ctrl-C is how the demo ends; otherwise it was cut short.
        return 0 if options.keep else 130
    return 0
