"""Rule packs from Lumen's source documents, with the seeds' names, thresholds and durations.

``gateway``: the Lumen Gateway / ION API rules of seed 001 plus GatewayUnlocked from seed 000.
``pipeline``: the runtime rules of seed 004. Seed 004's naive LumenSLOBurnFast is deliberately not
here: an execution-based SLO (``slos[].sli.runs``) replaces it with real burn-rate alerts.

Expressions carry placeholders the renderer fills: ``{sel}`` (the preset's series selector,
scoping it to the policy's namespace by default), ``{own}`` (selects the series this policy's own
recording rules wrote) and ``{threshold}``.

Seed 001 labels its alerts critical/warning and seed 004 page/ticket; here each rule has an
urgency instead, and the policy's ``spec.severities`` turns it into one ``severity`` scheme.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Lumen's one severity scheme (docs/routing.md): every alert Lumen writes is urgent (page) or can
# wait (ticket); `spec.severities` maps each to the `severity` label, by default the values
# kube-prometheus-stack's own rules and inhibitions use.
Urgency = Literal["page", "ticket"]
DEFAULT_SEVERITIES: dict[Urgency, str] = {"page": "critical", "ticket": "warning"}


@dataclass(frozen=True)
class PresetRule:
    alert: str
    expr: str
    for_: str
    urgency: Urgency
    summary: str
    description: str
    runbook: str
    threshold: float | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def severity(self) -> str:
        """The severity label under the default ``spec.severities``."""
        return DEFAULT_SEVERITIES[self.urgency]


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str


@dataclass(frozen=True)
class PresetPack:
    name: str
    group: str  # the seed's rule group name
    recording_rules: tuple[RecordingRule, ...]
    rules: tuple[PresetRule, ...]

    def rule(self, alert: str) -> PresetRule | None:
        return next((r for r in self.rules if r.alert == alert), None)


# A vanished series makes `== 0` silent: when the exporter itself stops (seed 000's own test),
# absent() is what still fires.
GATEWAY = PresetPack(
    name="gateway",
    group="lumen_gateway_alerts",
    recording_rules=(),
    rules=(
        PresetRule(
            alert="IONAPIDown",
            expr="lumen_ion_health{sel} == {threshold} or absent(lumen_ion_health{sel})",
            threshold=0,
            for_="2m",
            urgency="page",
            summary="ION API is down or not reported",
            description="lumen_ion_health is 0, or the exporter reporting it is gone.",
            runbook="ion-api-down",
        ),
        PresetRule(
            alert="IONMockModeEnabled",
            expr="lumen_ion_mock_mode{sel} == 1",
            for_="1m",
            urgency="page",
            summary="ION API answers in mock mode",
            description="The gateway serves mock responses instead of real AI answers "
            "(seed 000 calls this MockModeDetected).",
            runbook="ion-mock-mode",
        ),
        PresetRule(
            alert="GatewayDown",
            expr="lumen_gateway_status{sel} == {threshold} or absent(lumen_gateway_status{sel})",
            threshold=0,
            for_="1m",
            urgency="page",
            summary="Lumen Gateway is down or not reported",
            description="lumen_gateway_status is 0, or the exporter reporting it is gone.",
            runbook="gateway-down",
        ),
        PresetRule(
            alert="GatewayUnlocked",
            expr="lumen_gateway_status{sel} == {threshold}",
            threshold=2,
            for_="1m",
            urgency="page",
            summary="Lumen Gateway runs unlocked",
            description="The gateway is up but its activation lock is released "
            "(lumen_gateway_status 2; 1 is up and locked, 0 is down).",
            runbook="gateway-unlocked",
        ),
        PresetRule(
            alert="IONHighResponseTime",
            expr="lumen_ion_response_time_ms{sel} > {threshold}",
            threshold=500,
            for_="5m",
            urgency="ticket",
            summary="ION API responds slowly",
            description="Response time {{ $value }} ms is above the threshold.",
            runbook="ion-high-response-time",
        ),
        PresetRule(
            alert="IONHighP95ResponseTime",
            expr="quantile_over_time(0.95, lumen_ion_response_time_ms{sel}[5m]) > {threshold}",
            threshold=1000,
            for_="5m",
            urgency="ticket",
            summary="ION API p95 response time is high",
            description="p95 response time over 5m is {{ $value }} ms.",
            runbook="ion-high-p95-response-time",
        ),
        PresetRule(
            alert="IONUnstableResponseTime",
            expr="stddev_over_time(lumen_ion_response_time_ms{sel}[10m]) > {threshold}",
            threshold=100,
            for_="10m",
            urgency="ticket",
            summary="ION API response time is unstable",
            description="Standard deviation of the response time over 10m is {{ $value }} ms.",
            runbook="ion-unstable-response-time",
        ),
        PresetRule(
            alert="IONHighConfidenceVariance",
            expr="stddev_over_time(lumen_ion_confidence{sel}[10m]) > {threshold}",
            threshold=0.3,
            for_="10m",
            urgency="ticket",
            summary="ION confidence varies strongly",
            description="Standard deviation of lumen_ion_confidence over 10m is {{ $value }}.",
            runbook="ion-confidence-variance",
        ),
        PresetRule(
            alert="LowResonancePhase",
            expr="lumen_phase_diff{sel} < {threshold}",
            threshold=0.1,
            for_="10m",
            urgency="ticket",
            summary="Resonance phase difference is low",
            description="lumen_phase_diff is {{ $value }}.",
            runbook="resonance-phase",
        ),
        PresetRule(
            alert="HighResonancePhase",
            expr="lumen_phase_diff{sel} > {threshold}",
            threshold=0.9,
            for_="10m",
            urgency="ticket",
            summary="Resonance phase difference is high",
            description="lumen_phase_diff is {{ $value }}.",
            runbook="resonance-phase",
        ),
        PresetRule(
            alert="LowEntropyRate",
            expr="lumen_entropy_rate{sel} < {threshold}",
            threshold=0.15,
            for_="15m",
            urgency="ticket",
            summary="Entropy rate is low",
            description="lumen_entropy_rate is {{ $value }}.",
            runbook="entropy-rate",
        ),
        PresetRule(
            alert="HighEntropyRate",
            expr="lumen_entropy_rate{sel} > {threshold}",
            threshold=0.35,
            for_="15m",
            urgency="ticket",
            summary="Entropy rate is high",
            description="lumen_entropy_rate is {{ $value }}.",
            runbook="entropy-rate",
        ),
    ),
)

PIPELINE = PresetPack(
    name="pipeline",
    group="lumen_runtime",
    recording_rules=(
        RecordingRule(record="job:lumen_stage_failure", expr="1 - lumen_pipeline_success{sel}"),
    ),
    rules=(
        PresetRule(
            alert="LumenPipelineStalled",
            expr="time() - lumen_pipeline_last_run_timestamp{sel} > {threshold}",
            threshold=3 * 60 * 60,
            for_="5m",
            urgency="page",
            summary="Pipeline stalled: no run finished for 3 hours",
            description="The last pipeline run ended {{ $value | humanizeDuration }} ago.",
            runbook="stalled",
        ),
        PresetRule(
            alert="LumenStageFailed",
            expr="job:lumen_stage_failure{own} == 1",
            for_="0m",
            urgency="ticket",
            summary="Pipeline stage failed ({{ $labels.stage }})",
            description="Stage {{ $labels.stage }} failed in the last run.",
            runbook="stage-fail",
            labels={"stage": "{{ $labels.stage }}"},
        ),
        PresetRule(
            alert="LumenIntegrityMismatch",
            expr="lumen_remote_integrity_ok{sel} == {threshold}",
            threshold=0,
            for_="1m",
            urgency="page",
            summary="Remote integrity hash mismatch",
            description="lumen_remote_integrity_ok is 0: the remote copy differs from the local.",
            runbook="integrity",
        ),
    ),
)

PACKS: dict[str, PresetPack] = {pack.name: pack for pack in (GATEWAY, PIPELINE)}
