"""Invalid policies: ``lumenctl validate`` and ``render`` exit 1, name the exact path and reason,
and print nothing to stdout (a pipe into kubectl never applies half a render)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.cli.lumenctl import main
from tests.support.schemas import REPO

VALID = yaml.safe_load(
    """
apiVersion: lumen.dev/v1alpha1
kind: LumenAlertPolicy
metadata: {name: api, namespace: shop}
spec:
  service: api
  runbookBaseURL: https://runbooks.example.com/api
  presets: [{name: gateway}]
  rules:
    - alert: QueueBacklog
      expr: sum(queue_depth) > 1000
      for: 10m
  slos:
    - name: availability
      objective: 99.9
      sli:
        ratio:
          errors: sum(rate(http_requests_total{code=~"5.."}[{{window}}]))
          total: sum(rate(http_requests_total[{{window}}]))
  routing:
    receiver: tickets
    routes:
      - receiver: oncall
        matchers: [{name: severity, value: page}]
    receivers:
      - name: oncall
        email: {to: oncall@example.com, from: lumen@example.com, smarthost: "smtp.example.com:587"}
      - name: tickets
        webhook: {url: "https://tickets.example.com/api", bearerToken: {name: tickets, key: token}}
"""
)


def changed(path: str, value: Any, base: dict[str, Any] = VALID) -> dict[str, Any]:
    """``base`` with dotted ``path`` set to ``value`` (``...`` deletes it); [i] indexes lists."""
    manifest = copy.deepcopy(base)
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    node: Any = manifest
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del node[key]
    elif isinstance(node, list) and key == len(node):
        node.append(value)
    else:
        node[key] = value
    return manifest


# (what is wrong, manifest, the exact line after "<file>: ")
PG_SECRET = {"name": "lumen-postgres", "key": "url"}

INVALID = [
    ("service missing", changed("spec.service", ...), "spec.service: required"),
    (
        "objective of 100%",
        changed("spec.slos[0].objective", 100),
        "spec.slos[0].objective: must be < 100",
    ),
    (
        "objective of 0",
        changed("spec.slos[0].objective", 0),
        "spec.slos[0].objective: must be > 0",
    ),
    (
        "objective as text",
        changed("spec.slos[0].objective", "99.9%"),
        "spec.slos[0].objective: must be a number, not a string",
    ),
    (
        "ratio query without {{window}}",
        changed("spec.slos[0].sli.ratio.errors", "sum(rate(errors_total[5m]))"),
        "spec.slos[0].sli.ratio.errors: must contain {{window}}",
    ),
    (
        "rule expression that does not parse",
        changed("spec.rules[0].expr", "sum(queue_depth > 1000"),
        "spec.rules[0].expr: invalid PromQL: unclosed left parenthesis "
        '(column 4: "(queue_depth > 1000")',
    ),
    (
        "objective that is not a number (YAML .nan)",
        changed("spec.slos[0].objective", float("nan")),
        "spec.slos[0].objective: must be a finite number, not nan",
    ),
    (
        "SLI query that does not parse",
        changed("spec.slos[0].sli.ratio.total", "sum(rate(http_requests_total[{{window}}])"),
        "spec.slos[0].sli.ratio.total: invalid PromQL: unclosed left parenthesis "
        '(column 4: "(rate(http_requests_tota…")',
    ),
    (
        "two SLOs with one name",
        changed("spec.slos[1]", copy.deepcopy(VALID["spec"]["slos"][0])),
        "spec.slos[1].name: duplicate name 'availability' (also at [0])",
    ),
    (
        "route to a receiver that does not exist",
        changed("spec.routing.routes[0].receiver", "pager"),
        "spec.routing.routes[0].receiver: no receiver named 'pager'",
    ),
    (
        "default receiver that does not exist",
        changed("spec.routing.receiver", "nobody"),
        "spec.routing.receiver: no receiver named 'nobody'",
    ),
    (
        "duration in words",
        changed("spec.rules[0].for", "10 minutes"),
        "spec.rules[0].for: '10 minutes' is not a duration (use e.g. 30s, 5m, 1h30m, 7d)",
    ),
    (
        "SLO period that is no duration",
        changed("spec.slos[0].period", "month"),
        "spec.slos[0].period: 'month' is not a duration (use e.g. 30s, 5m, 1h30m, 7d)",
    ),
    (
        "period shorter than the longest alert window",
        changed("spec.slos[0].period", "1d"),
        "spec.slos[0].period: must be between 3d (the longest alert window) and 365d",
    ),
    (
        "period with a fraction of a second",
        changed("spec.slos[0].period", "30d500ms"),
        "spec.slos[0].period: must be a whole number of seconds",
    ),
    (
        "inline secret instead of a reference",
        changed("spec.routing.receivers[1].webhook.bearerToken", "s3cr3t"),
        "spec.routing.receivers[1].webhook.bearerToken: must be an object",
    ),
    (
        "receiver with two kinds",
        changed("spec.routing.receivers[0].webhook", {"url": "https://x.example.com"}),
        "spec.routing.receivers[0]: set exactly one of `slack`, `email`, `webhook`",
    ),
    (
        "SLI with two kinds",
        changed(
            "spec.slos[0].sli.latency",
            {"metric": "http_request_duration_seconds", "threshold": 1},
        ),
        "spec.slos[0].sli: set exactly one of `ratio`, `latency`, `runs`",
    ),
    (
        "unknown field (a typo)",
        changed("spec.slo", []),
        "spec.slo: unknown field (did you mean slos? allowed: exporter, labels, presets, "
        "routing, rules, runbookBaseURL, service, severities, slos, suppression, threader)",
    ),
    (
        "unknown preset",
        changed("spec.presets[0].name", "database"),
        "spec.presets[0].name: must be one of gateway, pipeline",
    ),
    (
        "override of a rule the preset does not have",
        changed("spec.presets[0].overrides", {"IONDown": {"threshold": 1}}),
        "spec.presets[0].overrides.IONDown: preset gateway has no rule IONDown (it has: "
        "IONAPIDown, IONMockModeEnabled, GatewayDown, GatewayUnlocked, IONHighResponseTime, "
        "IONHighP95ResponseTime, IONUnstableResponseTime, IONHighConfidenceVariance, "
        "LowResonancePhase, HighResonancePhase, LowEntropyRate, HighEntropyRate)",
    ),
    (
        "objective too low for the page tier to ever fire",
        changed("spec.slos[0].objective", 90),
        "spec.slos[0].alerting.page: can never fire: objective 90% over 30d needs an error ratio "
        "of 1.44 (> 100%); raise the objective or set enabled: false",
    ),
    (
        "Slack receiver without a threader",
        changed(
            "spec.routing.receivers[0]",
            {"name": "oncall", "slack": {"channel": "#oncall"}},
        ),
        "spec.routing.receivers[0].slack: Slack is delivered through the threader: "
        "set spec.threader",
    ),
    (
        "label Lumen sets itself",
        changed("spec.labels", {"namespace": "other"}),
        "spec.labels.namespace: is set by Lumen and cannot be overridden",
    ),
    (
        "name that is no DNS label",
        changed("metadata.name", "Checkout_API"),
        "metadata.name: 'Checkout_API' must be a DNS label (lower-case letters, digits, '-')",
    ),
    (
        "name too long for its children's names",
        changed("metadata.name", "a" * 49),
        "metadata.name: must be at most 48 characters",
    ),
    ("wrong kind", changed("kind", "PrometheusRule"), "kind: must be LumenAlertPolicy"),
    (
        "Redis store without a URL",
        changed("spec.threader", {"store": {"type": "redis"}, "replicas": 2}),
        "spec.threader: store.type redis needs store.url",
    ),
    (
        "invalid regular expression in a matcher",
        changed(
            "spec.routing.routes[0].matchers",
            [{"name": "a", "value": "(", "matchType": "=~"}],
        ),
        "spec.routing.routes[0].matchers[0].value: invalid regular expression '('",
    ),
    (
        "threader replicas sharing no incident database",
        changed(
            "spec.threader",
            {"store": {"type": "redis", "url": "redis://r:6379/0"}, "replicas": 2},
        ),
        "spec.threader: more than one replica needs incidents.databaseURL (a shared PostgreSQL or "
        "MySQL/MariaDB) or store.type postgresql",
    ),
    (
        "threader replicas on a SQLite store",
        changed("spec.threader", {"replicas": 2, "incidents": {"databaseURL": PG_SECRET}}),
        "spec.threader: more than one replica needs store.type redis or postgresql",
    ),
    (
        "a PostgreSQL store without its URL",
        changed("spec.threader", {"store": {"type": "postgresql"}}),
        "spec.threader.store: store.type postgresql needs store.databaseURL (a Secret key "
        "holding the URL)",
    ),
    (
        "a PostgreSQL URL in store.url",
        changed("spec.threader", {"store": {"type": "redis", "url": "postgresql://pg/lumen"}}),
        "spec.threader.store.url: 'postgresql://pg/lumen' is not a Redis URL (redis://, "
        "rediss://, redis+sentinel:// or redis+cluster://; a PostgreSQL store's URL goes in "
        "store.databaseURL, a Secret)",
    ),
    (
        "a password in the Redis URL",
        changed("spec.threader", {"store": {"type": "redis", "url": "redis://:hunter2@r:6379"}}),
        "spec.threader.store.url: store.url must not hold a password: put it in "
        "store.passwordSecret",
    ),
    (
        "a Redis password for a PostgreSQL store",
        changed(
            "spec.threader",
            {
                "store": {
                    "type": "postgresql",
                    "databaseURL": PG_SECRET,
                    "passwordSecret": {"name": "redis", "key": "password"},
                }
            },
        ),
        "spec.threader.store: passwordSecret only applies to store.type redis",
    ),
    (
        "a database URL for a Redis store",
        changed(
            "spec.threader",
            {"store": {"type": "redis", "url": "redis://r:6379", "databaseURL": PG_SECRET}},
        ),
        "spec.threader.store: databaseURL only applies to store.type postgresql (a Redis store "
        "takes url)",
    ),
    (
        "replica acknowledgements unquoted",
        changed(
            "spec.threader", {"store": {"type": "redis", "url": "redis://r", "replicaAcks": 0}}
        ),
        'spec.threader.store.replicaAcks: must be a string, not a number (quote it: "0")',
    ),
    (
        "replica acknowledgements that are no count",
        changed(
            "spec.threader",
            {"store": {"type": "redis", "url": "redis://r:6379", "replicaAcks": "all"}},
        ),
        "spec.threader.store.replicaAcks: 'all' is not `auto` nor a whole number of replicas "
        "(`0` turns the wait off)",
    ),
    (
        "a replica wait of no time",
        changed(
            "spec.threader",
            {"store": {"type": "redis", "url": "redis://r:6379", "replicaAckTimeout": "0ms"}},
        ),
        "spec.threader.store.replicaAckTimeout: replicaAckTimeout must be more than 0",
    ),
    (
        "a replica wait that is no duration",
        changed(
            "spec.threader",
            {"store": {"type": "redis", "url": "redis://r:6379", "replicaAckTimeout": "1.5s"}},
        ),
        "spec.threader.store.replicaAckTimeout: '1.5s' is not a duration (use e.g. 30s, 5m, "
        "1h30m, 7d)",
    ),
    (
        "a replica wait on a PostgreSQL store",
        changed(
            "spec.threader",
            {"store": {"type": "postgresql", "databaseURL": PG_SECRET, "replicaAcks": "0"}},
        ),
        "spec.threader.store: replicaAcks and replicaAckTimeout only apply to store.type redis",
    ),
    (
        "incidents grouped by something that is no label name",
        changed("spec.threader", {"incidents": {"groupBy": ["alertname", "service-name"]}}),
        "spec.threader.incidents.groupBy: groupBy entries must be label names",
    ),
    (
        "silences in an Alertmanager without a scheme",
        changed("spec.threader", {"incidents": {"alertmanagerURL": "alertmanager-operated:9093"}}),
        "spec.threader.incidents.alertmanagerURL: 'alertmanager-operated:9093' does not match "
        r"^https?://[^\s/$.?#][^\s]*$",
    ),
    (
        "a raw-alert retention that is no duration",
        changed("spec.threader", {"incidents": {"rawAlertRetention": "1 month"}}),
        "spec.threader.incidents.rawAlertRetention: '1 month' is not a duration (use e.g. 30s, "
        "5m, 1h30m, 7d)",
    ),
    (
        "invalid regular expression in an inhibit rule",
        changed(
            "spec.routing.inhibitRules",
            [
                {
                    "sourceMatchers": [{"name": "severity", "value": "critical"}],
                    "targetMatchers": [{"name": "alertname", "value": "[a-", "matchType": "!~"}],
                }
            ],
        ),
        "spec.routing.inhibitRules[0].targetMatchers[0].value: invalid regular expression '[a-'",
    ),
    (
        "latency selector without braces",
        changed(
            "spec.slos[0].sli",
            {"latency": {"metric": "h", "threshold": 0.3, "selector": 'job="api"'}},
        ),
        "spec.slos[0].sli.latency.selector: 'job=\"api\"' does not match ^(\\{.*\\})?$",
    ),
    (
        "runbook anchor without a base URL",
        changed(
            "spec.rules[0].runbook",
            "queue-backlog",
            base=changed("spec.runbookBaseURL", ...),
        ),
        "spec.rules[0].runbook: is an anchor but spec.runbookBaseURL is not set "
        "(give a full URL or set it)",
    ),
]


def test_the_base_policy_is_valid(tmp_path, capsys):
    path = tmp_path / "valid.yaml"
    path.write_text(yaml.safe_dump(VALID))
    assert main(["validate", "-f", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: shop/api valid:")


SLACK_ONLY = {
    "receiver": "chat",
    "receivers": [{"name": "chat", "slack": {"channel": "#api"}}],
}
THREADER = {"botToken": {"name": "slack-bot", "key": "token"}}


@pytest.mark.parametrize(
    ("spec", "warning"),
    [
        (
            {"routing": SLACK_ONLY, "threader": THREADER},
            "warning: shop/api: alerts about its threader (down, absent, backlog, dead letters) "
            "follow the policy's routes (it has no e-mail or webhook receiver); a threader that "
            "is down cannot post its own alert to Slack",
        ),
        (
            {"routing": None, "threader": None, "exporter": {}},
            "warning: shop/api: alerts about its exporter (down, absent) follow the "
            "Alertmanager's own routes (the policy has no routing)",
        ),
        ({"threader": THREADER}, None),  # its e-mail receiver takes Lumen's own alerts
        ({"routing": None}, None),  # nothing of Lumen's own deployed: nothing to say
    ],
    ids=["slack-only", "no-routing", "email-receiver", "no-services"],
)
def test_validate_warns_when_lumens_own_alerts_cannot_get_around_the_threader(
    tmp_path, capsys, spec, warning
):
    policy = copy.deepcopy(VALID)
    policy["spec"].update(spec)
    policy["spec"] = {k: v for k, v in policy["spec"].items() if v is not None}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    assert main(["validate", "-f", str(path)]) == 0  # advice, not an error
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: shop/api valid:")
    assert err.splitlines() == ([warning] if warning else [])


def test_there_are_at_least_15_distinct_invalid_policies():
    reasons = {expected for _, _, expected in INVALID}
    assert len(reasons) == len(INVALID) >= 15


@pytest.mark.parametrize("command", ["validate", "render"])
@pytest.mark.parametrize(
    ("manifest", "expected"),
    [pytest.param(m, e, id=what) for what, m, e in INVALID],
)
def test_invalid_policy_is_reported_and_nothing_rendered(
    tmp_path: Path, capsys, command, manifest, expected
):
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    assert main([command, "-f", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{path}: {expected}" in err.splitlines(), err


def test_every_problem_is_reported_not_just_the_first(tmp_path, capsys):
    manifest = changed("spec.service", ...)
    manifest["spec"]["slos"][0]["objective"] = 100
    manifest["spec"]["rules"][0]["for"] = "soon"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert main(["validate", "-f", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3, err


def test_one_bad_document_stops_the_whole_render(tmp_path, capsys):
    good = yaml.safe_dump(VALID)
    bad = yaml.safe_dump(changed("spec.service", ...))
    path = tmp_path / "two.yaml"
    path.write_text(good + "---\n" + bad)
    assert main(["render", "-f", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{path}[1]: spec.service: required" in err


def test_yaml_syntax_error_and_missing_file(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    assert main(["validate", "-f", str(broken)]) == 1
    assert capsys.readouterr().err == (
        f"{broken}:2:1: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 1, column 7)\n"
    )
    assert main(["validate", "-f", str(tmp_path / "missing.yaml")]) == 1
    assert "No such file or directory" in capsys.readouterr().err


def test_same_policy_twice_is_rejected(tmp_path, capsys):
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(yaml.safe_dump(VALID))
    assert main(["render", "-f", str(tmp_path)]) == 1
    assert f"shop/api is also defined in {tmp_path / 'a.yaml'}" in capsys.readouterr().err


GATEWAY = yaml.safe_load((REPO / "examples" / "gateway.yaml").read_text())
PROBE = "spec.exporter.probes[0]"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "fields.lumen_probe_success",
            "$.ok",
            f"{PROBE}.fields.lumen_probe_success: 'lumen_probe_success' is one of the "
            "exporter's own series",
        ),
        (
            "fields.lumen_pipeline_runs_total",
            "$.runs",
            f"{PROBE}.fields.lumen_pipeline_runs_total: 'lumen_pipeline_runs_total' is one of "
            "the exporter's own series",
        ),
        (
            "fields.lumen_ion_health",
            "$.up",
            f"{PROBE}: metric 'lumen_ion_health' is used twice",
        ),
        (
            "fields.lumen_ion_mock_mode",
            "mock-mode",
            f"{PROBE}.fields.lumen_ion_mock_mode: 'mock",
        ),
        ("interval", "0s", f"{PROBE}.interval: '0s' must be longer than zero"),
        ("timeout", "", f"{PROBE}.timeout: '' is not a duration"),
    ],
)
def test_a_probe_the_exporter_would_refuse_is_invalid(
    tmp_path: Path, capsys, path: str, value: str, expected: str
):
    """What the exporter's config.json check refuses, ``lumenctl validate`` refuses first, so a
    policy the API server takes never makes the exporter crash-loop."""
    manifest = copy.deepcopy(GATEWAY)
    probe = manifest["spec"]["exporter"]["probes"][0]
    if path.startswith("fields."):
        probe["fields"][path.removeprefix("fields.")] = value
    else:
        probe[path] = value
    file = tmp_path / "policy.yaml"
    file.write_text(yaml.safe_dump(manifest, sort_keys=False))
    assert main(["validate", "-f", str(file)]) == 1
    _, err = capsys.readouterr()
    assert any(line.startswith(f"{file}: {expected}") for line in err.splitlines()), err


# The probe features of issue 10: each line is something the exporter (or the API server) would
# refuse, so ``lumenctl validate`` must refuse it first.
HEADER = {
    "name": "Authorization",
    "secret": {"name": "ion-api", "key": "authorization"},
}
SECOND_PROBE = {
    "name": "other",
    "url": "http://other:8080/health",
    "fields": {"lumen_ion_persona_total": "$.personas"},
}
PROBE_FEATURES = [
    (
        "counter named with _total",
        changed(f"{PROBE}.countValues", {"lumen_ion_persona_total": "$.persona"}, GATEWAY),
        f"{PROBE}.countValues.lumen_ion_persona_total: 'lumen_ion_persona_total': give a "
        "counter's name without _total or _created (the exporter adds _total)",
    ),
    (
        "counter named like the exporter's own",
        changed(f"{PROBE}.countValues", {"lumen_probe_runs": "$.persona"}, GATEWAY),
        f"{PROBE}.countValues.lumen_probe_runs: 'lumen_probe_runs' is one of the exporter's own "
        "series",
    ),
    (
        "counter named like a gauge of the probe",
        changed(f"{PROBE}.countValues", {"lumen_ion_mock_mode": "$.persona"}, GATEWAY),
        f"{PROBE}: metric 'lumen_ion_mock_mode' is used twice by this probe (countValues "
        "'lumen_ion_mock_mode' exports lumen_ion_mock_mode)",
    ),
    (
        "gauge named like a counter's _total series",
        changed(f"{PROBE}.fields.lumen_ion_persona_total", "$.count", GATEWAY),
        f"{PROBE}: metric 'lumen_ion_persona_total' is used twice by this probe (countValues "
        "'lumen_ion_persona' exports lumen_ion_persona_total)",
    ),
    (
        "counter whose series is another probe's gauge",
        changed("spec.exporter.probes[1]", SECOND_PROBE, GATEWAY),
        f"{PROBE}.countValues.lumen_ion_persona: counter 'lumen_ion_persona' exports "
        "lumen_ion_persona_total, a gauge of spec.exporter.probes[1]",
    ),
    (
        "counted path that is no JSONPath",
        changed(f"{PROBE}.countValues.lumen_ion_persona", "persona", GATEWAY),
        f"{PROBE}.countValues.lumen_ion_persona: 'persona' is not a JSONPath (expected "
        "'TOKEN_ROOT', found 'TOKEN_NAME')",
    ),
    (
        "empty field path (the JSONPath library's message of it fails to print)",
        changed(f"{PROBE}.fields.lumen_ion_mock_mode", "", GATEWAY),
        f"{PROBE}.fields.lumen_ion_mock_mode: '' is not a JSONPath (expected 'TOKEN_ROOT', "
        "found 'TOKEN_EOF')",
    ),
    (
        "value map of no field",
        changed(f"{PROBE}.valueMaps", {"lumen_gateway_state": {"locked": 1}}, GATEWAY),
        f"{PROBE}: every key of valueMaps must be a key of fields (a value map converts that "
        "field's strings)",
    ),
    (
        "value map to infinity (YAML .inf)",
        changed(f"{PROBE}.valueMaps.lumen_gateway_status.down", float("-inf"), GATEWAY),
        f"{PROBE}.valueMaps.lumen_gateway_status.down: must be a finite number, not -inf",
    ),
    (
        "value map with too many entries",
        changed(
            f"{PROBE}.valueMaps.lumen_gateway_status",
            {f"s{n}": n for n in range(65)},
            GATEWAY,
        ),
        f"{PROBE}.valueMaps: each value map has at most 64 entries",
    ),
    (
        "value map number as text",
        changed(f"{PROBE}.valueMaps.lumen_gateway_status.down", "0", GATEWAY),
        f"{PROBE}.valueMaps.lumen_gateway_status.down: must be a number, not a string",
    ),
    (
        # YAML reads an unquoted `on:` as True; rendered, that key became "true" (or crashed
        # json.dumps(sort_keys=True) beside string keys): a policy that looked valid.
        "value map key YAML read as a boolean",
        changed(f"{PROBE}.valueMaps.lumen_gateway_status", {True: 1, "locked": 2}, GATEWAY),
        f"{PROBE}.valueMaps.lumen_gateway_status.True: key True is not a string: quote it "
        "(YAML reads unquoted on/off, yes/no, true/false and numbers as booleans and numbers)",
    ),
    (
        "value map key YAML read as a number",
        changed(f"{PROBE}.valueMaps.lumen_gateway_status", {1: 1, "locked": 2}, GATEWAY),
        f"{PROBE}.valueMaps.lumen_gateway_status.1: key 1 is not a string: quote it "
        "(YAML reads unquoted on/off, yes/no, true/false and numbers as booleans and numbers)",
    ),
    (
        "expiry of zero",
        changed("spec.exporter.pipeline", {"expireAfter": "0s"}, GATEWAY),
        "spec.exporter.pipeline.expireAfter: '0s' must be longer than zero",
    ),
    (
        "empty expiry",
        changed("spec.exporter.pipeline", {"expireAfter": ""}, GATEWAY),
        "spec.exporter.pipeline.expireAfter: '' is not a duration (use e.g. 30s, 5m, 1h30m, 7d)",
    ),
    (
        "header name with a space",
        changed(f"{PROBE}.headers", [HEADER | {"name": "X Token"}], GATEWAY),
        f"{PROBE}.headers[0].name: 'X Token' does not match ^[-!#$%&'*+.^_`|~0-9A-Za-z]+$",
    ),
    (
        "header name ending in a newline (a YAML block scalar)",
        changed(f"{PROBE}.headers", [HEADER | {"name": "Authorization\n"}], GATEWAY),
        f"{PROBE}.headers[0].name: 'Authorization\\n' does not match ^[-!#$%&'*+.^_`|~0-9A-Za-z]+$",
    ),
    (
        "probe name ending in a newline",
        changed(f"{PROBE}.name", "ion-api\n", GATEWAY),
        f"{PROBE}.name: 'ion-api\\n' does not match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    ),
    (
        "header set twice",
        changed(f"{PROBE}.headers", [HEADER, HEADER], GATEWAY),
        f"{PROBE}.headers[1].name: duplicate name 'Authorization' (also at [0])",
    ),
    (
        "header set twice in two spellings",
        changed(f"{PROBE}.headers", [HEADER, HEADER | {"name": "authorization"}], GATEWAY),
        f"{PROBE}.headers[1].name: header 'authorization' is also set at [0] (names ignore case)",
    ),
    (
        "header value inlined instead of a Secret",
        changed(f"{PROBE}.headers", [HEADER | {"secret": "Bearer s3cr3t"}], GATEWAY),
        f"{PROBE}.headers[0].secret: must be an object",
    ),
    (
        "expected status out of range",
        changed(f"{PROBE}.expectedStatus", [200, 600], GATEWAY),
        f"{PROBE}.expectedStatus: every status must be between 100 and 599",
    ),
    (
        "method the exporter does not send",
        changed(f"{PROBE}.method", "PUT", GATEWAY),
        f"{PROBE}.method: must be one of GET, HEAD, POST",
    ),
    (
        "HEAD with fields and counted values (a HEAD answer has no body)",
        changed(f"{PROBE}.method", "HEAD", GATEWAY),
        f"{PROBE}.method: an answer to HEAD has no body to read fields or counted values from "
        "(use GET or POST)",
    ),
    (
        "URL with credentials (failures' texts would quote them)",
        changed(f"{PROBE}.url", "http://ion:s3cret@ion-api:8080/health", GATEWAY),
        f"{PROBE}.url: must not carry credentials (user:pass@); send them in a header from a "
        "Secret",
    ),
    (
        "no distinct value kept",
        changed(f"{PROBE}.maxDistinctValues", 0, GATEWAY),
        f"{PROBE}.maxDistinctValues: must be >= 1",
    ),
    (
        "too many distinct values",
        changed(f"{PROBE}.maxDistinctValues", 1001, GATEWAY),
        f"{PROBE}.maxDistinctValues: must be <= 1000",
    ),
]


def test_the_gateway_example_uses_the_probe_features():
    (probe,) = GATEWAY["spec"]["exporter"]["probes"]
    assert probe["valueMaps"] == {"lumen_gateway_status": {"down": 0, "locked": 1, "unlocked": 2}}
    assert probe["countValues"] == {"lumen_ion_persona": "$.persona"}
    assert len(probe["fields"]) == 7  # with health and response time, seed 001's nine gauges


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [pytest.param(m, e, id=what) for what, m, e in PROBE_FEATURES],
)
def test_a_probe_feature_the_exporter_would_refuse_is_invalid(
    tmp_path: Path, capsys, manifest: dict[str, Any], expected: str
):
    file = tmp_path / "policy.yaml"
    file.write_text(yaml.safe_dump(manifest, sort_keys=False))
    assert main(["validate", "-f", str(file)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{file}: {expected}" in err.splitlines(), err


def test_every_probe_feature_together_is_valid(tmp_path, capsys):
    manifest = changed(f"{PROBE}.headers", [HEADER], GATEWAY)
    probe = manifest["spec"]["exporter"]["probes"][0]
    probe.update(method="POST", expectedStatus=[200, 204], maxDistinctValues=1000)
    manifest["spec"]["exporter"]["pipeline"] = {
        "enabled": True,
        "token": {"name": "ci", "key": "token"},
        "expireAfter": "2d",
    }
    # Another probe may share a gauge name (its series differ by probe), just not a counter's.
    manifest["spec"]["exporter"]["probes"].append(
        {
            "name": "other",
            "url": "http://other/health",
            "fields": {"lumen_gateway_status": "$.s"},
        }
    )
    file = tmp_path / "policy.yaml"
    file.write_text(yaml.safe_dump(manifest))
    assert main(["validate", "-f", str(file)]) == 0, capsys.readouterr().err
