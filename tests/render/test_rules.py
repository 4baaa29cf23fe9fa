"""Rendered rules: valid for the upstream PrometheusRule schema and for real promtool, labelled as
kube-prometheus-stack needs, with the seeds' names, and behaving as the seeds describe."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.cli.lumenctl import main
from lumen_alerting.manifest_yaml import to_yaml
from lumen_alerting.policy import Policy, policy_from_manifest
from lumen_alerting.presets import GATEWAY, PIPELINE
from lumen_alerting.render import RenderOptions, render_policy
from lumen_alerting.render.prometheus_rule import prometheus_rule, rules_file
from tests.support.schemas import REPO, validate_object

POLICY_FILES = sorted([*REPO.glob("examples/*.yaml"), *REPO.glob("tests/policies/*.yaml")])
SEEDS = REPO.parent / "shared" / "seeds"


def load(path: Path) -> Policy:
    return policy_from_manifest(yaml.safe_load(path.read_text()))


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def all_rules(policy: Policy) -> list[dict[str, Any]]:
    return [rule for group in rules_file([policy])["groups"] for rule in group["rules"]]


def test_there_are_examples_and_a_dozen_more_test_policies():
    assert {p.name for p in REPO.glob("examples/*.yaml")} >= {
        "gateway.yaml",
        "pipeline.yaml",
        "http-api.yaml",
    }
    assert len(list(REPO.glob("tests/policies/*.yaml"))) >= 12


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_every_rendered_object_validates_against_its_real_schema(path):
    policy = load(path)
    for options in (RenderOptions(), RenderOptions(kps_release="monitoring")):
        for obj in render_policy(policy, options):
            validate_object(obj)
    owned = Policy(policy.name, policy.namespace, policy.spec, uid="5f1c-uid")
    for obj in render_policy(owned, RenderOptions(managed_by="lumen-operator")):
        validate_object(obj)
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["controller"] is True and owner["uid"] == "5f1c-uid"


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_promtool_accepts_the_rule_file(tmp_path, path, capsys):
    assert main(["render", "-f", str(path), "--format", "rules"]) == 0
    (tmp_path / "rules.yaml").write_text(capsys.readouterr().out)
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_all_policies_in_one_file(tmp_path, capsys):
    args = ["render", "--format", "rules"]
    for path in POLICY_FILES:
        args += ["-f", str(path)]
    assert main(args) == 0
    (tmp_path / "rules.yaml").write_text(capsys.readouterr().out)
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_amtool_accepts_the_alertmanager_file(tmp_path, path, capsys):
    assert main(["render", "-f", str(path), "--format", "alertmanager"]) == 0
    (tmp_path / "alertmanager.yml").write_text(capsys.readouterr().out)
    result = subprocess.run(
        ["amtool", "check-config", "alertmanager.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rejects_a_broken_rule_file(tmp_path):
    """The check above can fail: promtool catches what the PrometheusRule schema cannot."""
    broken = rules_file([load(REPO / "examples" / "gateway.yaml")])
    broken["groups"][0]["rules"][0]["expr"] = "lumen_ion_health =="
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(broken))
    assert promtool("check", "rules", "rules.yaml", cwd=tmp_path).returncode != 0


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_every_alert_carries_lumens_labels_and_annotations(path):
    policy = load(path)
    for rule in all_rules(policy):
        if "alert" not in rule:
            continue
        labels, annotations = rule["labels"], rule["annotations"]
        # kps' OnNamespace matcher strategy routes only alerts labelled with the config's namespace.
        assert labels["namespace"] == policy.namespace
        assert labels["service"] == policy.spec.service
        assert labels["lumen_policy"] == policy.name
        assert labels["severity"]
        assert {**labels, **policy.spec.labels} == labels
        assert annotations["summary"] and annotations["description"]
        url = annotations.get("runbook_url", "https://")
        assert url.startswith(("https://", "http://")), url


def test_prometheus_rule_carries_the_kps_release_label_and_common_labels():
    policy = load(REPO / "examples" / "gateway.yaml")
    rule = prometheus_rule(policy, RenderOptions(kps_release="kps"))
    assert rule is not None
    assert rule["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "lumenctl",
        "app.kubernetes.io/part-of": "lumen",
        "lumen.dev/policy": "gateway",
        "release": "kps",
    }
    assert rule["metadata"]["namespace"] == "lumen"
    assert "ownerReferences" not in rule["metadata"]


def test_seed_alert_names_thresholds_and_durations():
    rules = {
        r["alert"]: r
        for r in all_rules(load(REPO / "examples" / "gateway.yaml"))
        if "alert" in r and r["labels"].get("lumen_self") != "true"  # Lumen's own: tested below
    }
    seed_001 = {
        # alert: (severity, for, threshold in the expression) as seed 001 lists them
        "IONAPIDown": ("critical", "2m", None),
        "IONMockModeEnabled": ("critical", "1m", None),
        "GatewayDown": ("critical", "1m", None),
        "IONHighResponseTime": ("warning", "5m", "> 500"),
        "IONHighP95ResponseTime": ("warning", "5m", "> 1000"),
        "IONUnstableResponseTime": ("warning", "10m", "> 100"),
        "IONHighConfidenceVariance": ("warning", "10m", "> 0.3"),
        "LowResonancePhase": ("warning", "10m", "< 0.1"),
        "HighResonancePhase": ("warning", "10m", "> 0.9"),
        "LowEntropyRate": ("warning", "15m", "< 0.15"),
        "HighEntropyRate": ("warning", "15m", "> 0.35"),
    }
    for alert, (severity, duration, threshold) in seed_001.items():
        assert rules[alert]["labels"]["severity"] == severity, alert
        assert rules[alert]["for"] == duration, alert
        if threshold:
            assert threshold in rules[alert]["expr"], alert
    assert "GatewayUnlocked" in rules  # seed 000
    assert set(rules) == set(seed_001) | {"GatewayUnlocked"}

    pipeline = {
        r.get("alert") or r["record"]: r
        for r in all_rules(load(REPO / "examples" / "pipeline.yaml"))
    }
    assert pipeline["LumenPipelineStalled"]["for"] == "5m"
    assert "> 10800" in pipeline["LumenPipelineStalled"]["expr"]  # 3*60*60
    assert pipeline["LumenIntegrityMismatch"]["for"] == "1m"
    assert "for" not in pipeline["LumenStageFailed"]  # for: 0m
    assert "job:lumen_stage_failure" in pipeline
    assert "LumenSLOBurnFast" not in pipeline  # replaced by a real SLO


def test_every_seed_metric_appears_where_the_seed_puts_it():
    gateway = load(REPO / "examples" / "gateway.yaml")
    rules_text = to_yaml(rules_file([gateway]))
    exporter_config = next(o for o in render_policy(gateway) if o["kind"] == "ConfigMap")["data"][
        "config.json"
    ]
    seed_001_metrics = [
        "lumen_ion_health",
        "lumen_ion_response_time_ms",
        "lumen_ion_mock_mode",
        "lumen_ion_confidence",
        "lumen_gateway_status",
        "lumen_phase_diff",
        "lumen_entropy_rate",
        "lumen_creative_band",
        "lumen_risk_band",
    ]
    # Seed 001: nine gauges from the health exporter; the alert rules read seven of them.
    for metric in seed_001_metrics:
        assert metric in exporter_config, metric
    for metric in seed_001_metrics[:7]:
        assert metric in rules_text, metric
    # Seed 004: the metrics its alert rules and suppression toggle read.
    pipeline_rules = to_yaml(rules_file([load(REPO / "examples" / "pipeline.yaml")]))
    for metric in (
        "lumen_pipeline_last_run_timestamp",
        "lumen_pipeline_success",
        "lumen_remote_integrity_ok",
        "lumen_alert_suppressed",
    ):
        assert metric in pipeline_rules, metric


def test_seed_names_are_the_seeds_own():
    """The catalogue's names are spelled exactly as in the source documents."""
    seed_text = "".join(path.read_text() for path in SEEDS.glob("00[014]_*.txt"))
    for rule in (*GATEWAY.rules, *PIPELINE.rules):
        assert rule.alert in seed_text, rule.alert
    assert GATEWAY.group in seed_text and PIPELINE.group in seed_text


# --- behaviour, with promtool unit tests --------------------------------------------------------


def run_unit_tests(tmp_path: Path, policy: Policy, tests: list[dict[str, Any]]) -> None:
    (tmp_path / "rules.yaml").write_text(to_yaml(rules_file([policy])))
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def expected(
    policy: Policy, alert: str, templates: dict[str, str] | None = None, **series: str
) -> dict[str, Any]:
    """The labels and annotations of ``alert`` as rendered, plus the series' own labels, with
    each template in ``templates`` replaced by the text promtool expands it to."""

    def expand(text: str) -> str:
        for template, value in (templates or {}).items():
            text = text.replace(template, value)
        return text

    rule = next(r for r in all_rules(policy) if r.get("alert") == alert)
    labels = {**series, **rule["labels"]}
    return {
        "exp_labels": {k: expand(v) for k, v in labels.items()},
        "exp_annotations": {k: expand(v) for k, v in rule["annotations"].items()},
    }


def test_ion_api_down_fires_when_the_exporter_stops(tmp_path):
    """Seed 000's own test: stop the exporter, wait two minutes, IONAPIDown fires. The series
    vanishes (stale), so `lumen_ion_health == 0` alone would stay silent."""
    policy = load(REPO / "examples" / "gateway.yaml")
    series = 'lumen_ion_health{namespace="lumen", job="lumen-gateway-exporter"}'
    labels = expected(policy, "IONAPIDown")
    tests: list[dict[str, Any]] = [
        {
            "interval": "1m",
            "input_series": [{"series": series, "values": "1x10 stale"}],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "IONAPIDown", "exp_alerts": []},
                {"eval_time": "12m", "alertname": "IONAPIDown", "exp_alerts": []},  # pending
                {"eval_time": "14m", "alertname": "IONAPIDown", "exp_alerts": [labels]},
            ],
        },
        {
            "interval": "1m",
            "input_series": [{"series": series, "values": "1x5 0x10"}],
            "alert_rule_test": [
                {
                    "eval_time": "10m",
                    "alertname": "IONAPIDown",
                    "exp_alerts": [expected(policy, "IONAPIDown", job="lumen-gateway-exporter")],
                }
            ],
        },
    ]
    run_unit_tests(tmp_path, policy, tests)


def test_threshold_override_moves_the_alert(tmp_path):
    policy = load(REPO / "tests" / "policies" / "rules-overrides.yaml")  # 800 ms for 10m
    series = 'lumen_ion_response_time_ms{job="lumen-gateway"}'
    fired = expected(policy, "IONHighResponseTime", {"{{ $value }}": "900"}, job="lumen-gateway")
    tests: list[dict[str, Any]] = [
        {
            "interval": "1m",
            "input_series": [{"series": series, "values": "700x30"}],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "IONHighResponseTime", "exp_alerts": []}
            ],
        },
        {
            "interval": "1m",
            "input_series": [{"series": series, "values": "900x30"}],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "IONHighResponseTime", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "IONHighResponseTime", "exp_alerts": [fired]},
            ],
        },
    ]
    run_unit_tests(tmp_path, policy, tests)


def test_suppression_toggle_mutes_alerts(tmp_path):
    """Seed 004: while lumen_alert_suppressed is 1 nothing fires; at 0 alerts come back."""
    policy = load(REPO / "examples" / "pipeline.yaml")
    integrity = 'lumen_remote_integrity_ok{namespace="lumen"}'
    suppressed = 'lumen_alert_suppressed{namespace="lumen"}'
    fired = expected(policy, "LumenIntegrityMismatch")
    tests: list[dict[str, Any]] = [
        {
            "interval": "1m",
            "input_series": [
                {"series": integrity, "values": "0x30"},
                {"series": suppressed, "values": "1x15 0x15"},
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "LumenIntegrityMismatch", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "LumenIntegrityMismatch", "exp_alerts": [fired]},
            ],
        }
    ]
    run_unit_tests(tmp_path, policy, tests)


def test_stage_failure_and_stalled_pipeline(tmp_path):
    policy = load(REPO / "examples" / "pipeline.yaml")
    stage = expected(policy, "LumenStageFailed", {"{{ $labels.stage }}": "pdf"}, stage="pdf")
    stalled = expected(
        policy, "LumenPipelineStalled", {"{{ $value | humanizeDuration }}": "3h 10m 0s"}
    )
    tests: list[dict[str, Any]] = [
        {
            "interval": "1m",
            "input_series": [
                {"series": 'lumen_pipeline_success{namespace="lumen", stage="pdf"}', "values": "0"},
                {
                    "series": 'lumen_pipeline_success{namespace="lumen", stage="build"}',
                    "values": "1",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "0m", "alertname": "LumenStageFailed", "exp_alerts": [stage]}
            ],
        },
        {
            "interval": "1m",
            # The last run ended at time 0 and none since.
            "input_series": [
                {
                    "series": 'lumen_pipeline_last_run_timestamp{namespace="lumen"}',
                    "values": "0x200",
                }
            ],
            "alert_rule_test": [
                {"eval_time": "3h", "alertname": "LumenPipelineStalled", "exp_alerts": []},
                {
                    "eval_time": "3h10m",
                    "alertname": "LumenPipelineStalled",
                    "exp_alerts": [stalled],
                },
            ],
        },
    ]
    run_unit_tests(tmp_path, policy, tests)


# --- Lumen's own alerts ------------------------------------------------------------------------

GATEWAY_EXAMPLE = REPO / "examples" / "gateway.yaml"
THREADER_JOB = 'job="lumen-gateway-threader",namespace="lumen"'
EXPORTER_JOB = 'job="lumen-gateway-exporter",namespace="lumen"'
OWN_ALERTS = {
    "threader": {
        "LumenThreaderDown",
        "LumenThreaderAbsent",
        "LumenThreaderBacklogOld",
        "LumenThreaderDeadLetters",
    },
    "exporter": {"LumenExporterDown", "LumenExporterAbsent"},
}


def own_alerts(policy: Policy) -> dict[str, dict[str, Any]]:
    return {
        r["alert"]: r
        for r in all_rules(policy)
        if "alert" in r and r["labels"].get("lumen_self") == "true"
    }


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_every_deployed_service_gets_its_own_alerts(path):
    policy = load(path)
    threader, exporter = policy.spec.threader, policy.spec.exporter
    expected_alerts = set()
    if threader is not None and threader.enabled:
        expected_alerts |= OWN_ALERTS["threader"]
    if exporter is not None and exporter.enabled:
        expected_alerts |= OWN_ALERTS["exporter"]
    alerts = own_alerts(policy)
    assert set(alerts) == expected_alerts
    groups = [g["name"] for g in rules_file([policy])["groups"]]
    assert (f"{policy.namespace}/{policy.name}/lumen-self" in groups) == bool(expected_alerts)
    for name, rule in alerts.items():
        component = "threader" if name.startswith("LumenThreader") else "exporter"
        assert rule["labels"]["lumen_component"] == component
        job = f"lumen-{policy.name}-{component}"
        # prometheus-operator names the job after the scraped Service, and adds its namespace.
        assert f'job="{job}",namespace="{policy.namespace}"' in rule["expr"]


def test_own_alerts_land_in_the_prometheus_rule():
    rule = prometheus_rule(load(GATEWAY_EXAMPLE), RenderOptions())
    assert rule is not None
    (group,) = [g for g in rule["spec"]["groups"] if g["name"] == "lumen/gateway/lumen-self"]
    assert {r["alert"] for r in group["rules"]} == OWN_ALERTS["threader"] | OWN_ALERTS["exporter"]


def test_absent_threader_fires(tmp_path):
    """No scrape target for the threader at all (Deployment gone, ServiceMonitor not selected),
    or one that vanished: LumenThreaderAbsent after 10 minutes; the exporter stays quiet."""
    policy = load(GATEWAY_EXAMPLE)
    absent = expected(policy, "LumenThreaderAbsent", job="lumen-gateway-threader")
    exporter_up = {"series": f"up{{{EXPORTER_JOB}}}", "values": "1x40"}
    tests: list[dict[str, Any]] = [
        {
            "interval": "1m",
            "input_series": [exporter_up],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "LumenThreaderAbsent", "exp_alerts": []},
                {"eval_time": "11m", "alertname": "LumenThreaderAbsent", "exp_alerts": [absent]},
                {"eval_time": "11m", "alertname": "LumenExporterAbsent", "exp_alerts": []},
                {"eval_time": "11m", "alertname": "LumenExporterDown", "exp_alerts": []},
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                exporter_up,
                {"series": f"up{{{THREADER_JOB}}}", "values": "1x5 stale"},
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "LumenThreaderAbsent", "exp_alerts": []},
                {"eval_time": "12m", "alertname": "LumenThreaderAbsent", "exp_alerts": []},
                {"eval_time": "17m", "alertname": "LumenThreaderAbsent", "exp_alerts": [absent]},
            ],
        },
    ]
    run_unit_tests(tmp_path, policy, tests)


def test_down_threader_fires_only_when_no_replica_answers(tmp_path):
    policy = load(GATEWAY_EXAMPLE)
    pod = 'up{job="lumen-gateway-threader",namespace="lumen",pod="%s"}'
    down = expected(policy, "LumenThreaderDown", job="lumen-gateway-threader")
    tests: list[dict[str, Any]] = [
        {
            "interval": "1m",
            "input_series": [
                {"series": pod % "a", "values": "1x5 0x20"},
                {"series": pod % "b", "values": "1x10 0x15"},
            ],
            "alert_rule_test": [
                # a is down from 6m, b still answers: the threader delivers.
                {"eval_time": "10m", "alertname": "LumenThreaderDown", "exp_alerts": []},
                {"eval_time": "14m", "alertname": "LumenThreaderDown", "exp_alerts": []},
                {"eval_time": "17m", "alertname": "LumenThreaderDown", "exp_alerts": [down]},
            ],
        }
    ]
    run_unit_tests(tmp_path, policy, tests)


def test_old_backlog_fires(tmp_path):
    """The oldest outbox entry ages a minute per minute (Slack down): past 600 s for 5 minutes
    the alert fires; an outbox that drains does not."""
    policy = load(GATEWAY_EXAMPLE)
    metric = "lumen_threader_outbox_oldest_age_seconds"
    late = expected(
        policy, "LumenThreaderBacklogOld", {"{{ $value }}": "1020"}, job="lumen-gateway-threader"
    )
    tests: list[dict[str, Any]] = [
        {
            "interval": "1m",
            "input_series": [
                {"series": f'{metric}{{{THREADER_JOB},pod="a"}}', "values": "0+60x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "LumenThreaderBacklogOld", "exp_alerts": []},
                {"eval_time": "14m", "alertname": "LumenThreaderBacklogOld", "exp_alerts": []},
                {"eval_time": "17m", "alertname": "LumenThreaderBacklogOld", "exp_alerts": [late]},
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                # Busy but draining: entries never wait longer than two minutes.
                {
                    "series": f'{metric}{{{THREADER_JOB},pod="a"}}',
                    "values": "0 60 120 0 60 120 0x20",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "LumenThreaderBacklogOld", "exp_alerts": []},
            ],
        },
    ]
    run_unit_tests(tmp_path, policy, tests)


def test_dead_letters_fire(tmp_path):
    policy = load(GATEWAY_EXAMPLE)
    metric = "lumen_threader_dead_letters_total"
    lost = expected(policy, "LumenThreaderDeadLetters", job="lumen-gateway-threader")
    tests: list[dict[str, Any]] = [
        {
            "interval": "1m",
            "input_series": [
                {
                    "series": f'{metric}{{{THREADER_JOB},pod="a",error="channel_not_found"}}',
                    "values": "0x10 1x40",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": "LumenThreaderDeadLetters", "exp_alerts": []},
                {"eval_time": "12m", "alertname": "LumenThreaderDeadLetters", "exp_alerts": [lost]},
                # Nothing new for 15 minutes: quiet again.
                {"eval_time": "40m", "alertname": "LumenThreaderDeadLetters", "exp_alerts": []},
            ],
        }
    ]
    run_unit_tests(tmp_path, policy, tests)


def service_monitor_jobs(policy: Policy) -> dict[str, str]:
    """component -> the `job` label prometheus-operator gives the series of its ServiceMonitor.

    The upstream ServiceMonitor CRD: without `jobLabel`, "the `job` label of the metrics defaults
    to the name of the associated Kubernetes `Service`"."""
    objects = render_policy(policy, RenderOptions(), only="workloads")
    jobs = {}
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        assert "jobLabel" not in monitor["spec"]
        (service,) = [
            o
            for o in objects
            if o["kind"] == "Service"
            and all(
                o["metadata"]["labels"].get(k) == v
                for k, v in monitor["spec"]["selector"]["matchLabels"].items()
            )
        ]
        component = service["metadata"]["labels"]["app.kubernetes.io/component"]
        jobs[component] = service["metadata"]["name"]
    return jobs


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_own_alerts_select_the_series_their_service_monitor_scrapes(path):
    policy = load(path)
    jobs = service_monitor_jobs(policy)
    for rule in own_alerts(policy).values():
        job = jobs[rule["labels"]["lumen_component"]]
        assert f'{{job="{job}",namespace="{policy.namespace}"}}' in rule["expr"], rule["alert"]
