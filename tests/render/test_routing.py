"""Routing: the AlertmanagerConfig (upstream schema) and the plain alertmanager.yml (real amtool and
a real Alertmanager process) rendered from ``tests/policies/routing-*.yaml``."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.policy.model import Policy, Routing
from lumen_alerting.render.objects import (
    SLO_ALERT,
    THREADER_MAX_ALERTS,
    ChildNames,
    RenderOptions,
)
from lumen_alerting.render.routing import (
    SECRETS_DIR,
    alertmanager_config,
    alertmanager_yaml,
    builtin_inhibit_rules,
)
from lumen_alerting.threader import webhook as threader_webhook
from tests.support.polling import free_port
from tests.support.schemas import validate_object

POLICY_DIR = Path(__file__).parents[1] / "policies"
POLICY_FILES = sorted(POLICY_DIR.glob("routing-*.yaml"))
AMTOOL = shutil.which("amtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

# policy file stem -> [(alert labels, receivers amtool must resolve them to, in tree order)].
# The policy's namespace label is added unless the labels set one.
EXPECTED_ROUTES: dict[str, list[tuple[dict[str, str], list[str]]]] = {
    "routing-severity-slack": [
        ({"severity": "critical"}, ["lumen-gw/lumen-gateway/slack-critical"]),
        ({"severity": "warning"}, ["lumen-gw/lumen-gateway/slack-warnings"]),
        ({"severity": "info"}, ["lumen-gw/lumen-gateway/slack-info"]),
        ({"severity": "page"}, ["lumen-gw/lumen-gateway/null"]),  # no route: dropped
        ({"severity": "critical", "namespace": "other"}, ["null"]),
        # No e-mail or webhook receiver: Lumen's own alerts follow the policy's routes.
        (
            {"severity": "critical", "lumen_self": "true", "lumen_policy": "gateway"},
            ["lumen-gw/lumen-gateway/slack-critical"],
        ),
    ],
    "routing-page-ticket": [
        ({"severity": "page"}, ["pipeline/lumen-reports/oncall"]),
        ({"severity": "ticket"}, ["pipeline/lumen-reports/backlog"]),
        ({"severity": "critical"}, ["pipeline/lumen-reports/default"]),
        ({"severity": "page", "namespace": "lumen-other"}, ["null"]),
    ],
    "routing-matchers": [
        ({"severity": "critical"}, ["payments/lumen-api/slack-critical"]),
        (
            {"severity": "page", "env": "prod"},
            ["payments/lumen-api/slack-critical", "payments/lumen-api/oncall"],
        ),
        ({"severity": "page", "env": "staging"}, ["payments/lumen-api/slack-critical"]),
        ({"severity": "info", "alertname": "DiskFilling"}, ["payments/lumen-api/quiet"]),
        ({"severity": "info", "alertname": "Watchdog"}, ["payments/lumen-api/slack-default"]),
        ({"severity": "warning"}, ["payments/lumen-api/slack-default"]),
        # Lumen's own alerts go around the threader: to every e-mail and webhook receiver first,
        # and nowhere else.
        (
            {"severity": "critical", "lumen_self": "true", "lumen_policy": "api"},
            ["payments/lumen-api/oncall", "payments/lumen-api/quiet"],
        ),
        (
            {"severity": "warning", "lumen_self": "true", "lumen_policy": "api"},
            ["payments/lumen-api/oncall", "payments/lumen-api/quiet"],
        ),
        # Another policy's own alert in the same namespace is not this policy's to reroute.
        (
            {"severity": "critical", "lumen_self": "true", "lumen_policy": "other"},
            ["payments/lumen-api/slack-critical"],
        ),
    ],
    "routing-slo-tiers": [
        (
            {"alertname": SLO_ALERT, "tier": "page", "slo": "availability"},
            ["shop/lumen-checkout/pager", "shop/lumen-checkout/slack-shop"],
        ),
        ({"alertname": "CheckoutDown", "tier": "page"}, ["shop/lumen-checkout/slack-shop"]),
        ({"alertname": SLO_ALERT, "tier": "ticket"}, ["shop/lumen-checkout/tickets"]),
        ({"severity": "warning"}, ["shop/lumen-checkout/slack-shop"]),
    ],
    "routing-null-name": [
        ({"severity": "critical"}, ["default/lumen-minimal/null"]),
        ({"severity": "warning"}, ["default/lumen-minimal/lumen-null"]),
    ],
}


def load_policy(path: Path) -> Policy:
    return policy_from_manifest(yaml.safe_load(path.read_text()))


@pytest.fixture(scope="module")
def policies() -> dict[str, Policy]:
    return {path.stem: load_policy(path) for path in POLICY_FILES}


def routing_of(policy: Policy) -> Routing:
    """The routing of a policy from tests/policies/routing-*.yaml (each has one)."""
    assert policy.spec.routing is not None, policy.name
    return policy.spec.routing


def dump(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)


def write_config(tmp_path: Path, policies: list[Policy], name: str = "alertmanager.yml") -> Path:
    path = tmp_path / name
    path.write_text(dump(alertmanager_yaml(policies)))
    return path


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None, "amtool missing: run `make setup`"
    return subprocess.run([AMTOOL, *args], check=False, capture_output=True, text=True, timeout=60)


def route_args(policy: Policy, labels: dict[str, str]) -> list[str]:
    labels = {"namespace": policy.namespace, **labels}
    return [f"{name}={value}" for name, value in labels.items()]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def test_every_routing_policy_has_expectations() -> None:
    assert len(POLICY_FILES) >= 5
    assert {p.stem for p in POLICY_FILES} == set(EXPECTED_ROUTES)


# --- AlertmanagerConfig ------------------------------------------------------------------------


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.stem)
def test_alertmanager_config_validates_against_upstream_schema(path: Path) -> None:
    policy = load_policy(path)
    for owned in (policy, dataclasses.replace(policy, uid="0b1c2d3e-0000-4000-8000-000000000001")):
        config = alertmanager_config(owned, RenderOptions())
        assert config is not None
        validate_object(config)
        assert config["metadata"]["name"] == ChildNames.of(policy).alertmanager_config
        assert config["metadata"]["namespace"] == policy.namespace


def test_no_routing_renders_no_config(policies: dict[str, Policy]) -> None:
    policy = policies["routing-page-ticket"]
    bare = dataclasses.replace(policy, spec=dataclasses.replace(policy.spec, routing=None))
    assert alertmanager_config(bare, RenderOptions()) is None
    assert alertmanager_yaml([bare])["route"]["routes"] == []


def test_every_route_receiver_exists(policies: dict[str, Policy]) -> None:
    for policy in policies.values():
        config = alertmanager_config(policy, RenderOptions())
        assert config is not None
        names = [r["name"] for r in config["spec"]["receivers"]]
        assert len(names) == len(set(names))
        route = config["spec"]["route"]
        used = {route["receiver"]} | {child["receiver"] for child in route.get("routes", [])}
        assert used <= set(names)


def test_empty_default_receiver_drops(policies: dict[str, Policy]) -> None:
    config = alertmanager_config(policies["routing-severity-slack"], RenderOptions())
    assert config is not None
    assert config["spec"]["route"]["receiver"] == "null"
    assert {"name": "null"} in config["spec"]["receivers"]
    # A user receiver called "null" keeps its name; the drop receiver steps aside.
    config = alertmanager_config(policies["routing-null-name"], RenderOptions())
    assert config is not None
    assert config["spec"]["route"]["receiver"] == "lumen-null"
    assert {"name": "lumen-null"} in config["spec"]["receivers"]


def test_set_default_receiver_adds_no_drop_receiver(policies: dict[str, Policy]) -> None:
    config = alertmanager_config(policies["routing-page-ticket"], RenderOptions())
    assert config is not None
    assert config["spec"]["route"]["receiver"] == "default"
    assert [r["name"] for r in config["spec"]["receivers"]] == ["default", "oncall", "backlog"]


def test_slack_goes_through_threader(policies: dict[str, Policy]) -> None:
    policy = policies["routing-matchers"]
    config = alertmanager_config(policy, RenderOptions())
    assert config is not None
    names = ChildNames.of(policy)
    (webhook,) = next(r for r in config["spec"]["receivers"] if r["name"] == "slack-default")[
        "webhookConfigs"
    ]
    assert webhook == {
        "url": f"http://{names.threader}.payments.svc:8080/alert?channel=%23payments",
        "httpConfig": {
            "authorization": {
                "type": "Bearer",
                "credentials": {"name": names.threader_secret, "key": "webhook-token"},
            }
        },
        "sendResolved": True,
        # Alertmanager truncates bigger groups instead of sending what the threader refuses.
        "maxAlerts": THREADER_MAX_ALERTS,
    }
    assert THREADER_MAX_ALERTS == 1000


def test_rendered_max_alerts_is_what_the_threader_accepts() -> None:
    """Alertmanager must never send a group the threader refuses for its size (4xx is not
    retried: the whole group would be lost)."""
    assert THREADER_MAX_ALERTS == threader_webhook.MAX_ALERTS


def test_every_threader_webhook_sets_max_alerts(policies: dict[str, Policy]) -> None:
    for policy in policies.values():
        config = alertmanager_config(policy, RenderOptions())
        assert config is not None
        for receiver in config["spec"]["receivers"]:
            for webhook in receiver.get("webhookConfigs", []):
                if "-threader." in webhook["url"]:
                    assert webhook["maxAlerts"] == THREADER_MAX_ALERTS, receiver["name"]
        plain = alertmanager_yaml([policy])
        threader_hooks = [
            hook
            for receiver in plain["receivers"]
            for hook in receiver.get("webhook_configs", [])
            if "-threader." in hook["url"]
        ]
        assert all(hook["max_alerts"] == THREADER_MAX_ALERTS for hook in threader_hooks)
        slack = [r for r in routing_of(policy).receivers if r.slack]
        assert len(threader_hooks) == len(slack)


SELF_MATCHERS = [
    {"name": "lumen_self", "value": "true", "matchType": "="},
    {"name": "lumen_policy", "value": "api", "matchType": "="},
]


def test_own_alerts_are_routed_first_around_the_threader(policies: dict[str, Policy]) -> None:
    config = alertmanager_config(policies["routing-matchers"], RenderOptions())
    assert config is not None
    routes = config["spec"]["route"]["routes"]
    assert routes[:2] == [
        {"receiver": "oncall", "matchers": SELF_MATCHERS, "continue": True},
        {"receiver": "quiet", "matchers": SELF_MATCHERS, "continue": False},
    ]
    plain = alertmanager_yaml([policies["routing-matchers"]])
    (namespace_route,) = plain["route"]["routes"]
    assert namespace_route["routes"][0] == {
        "receiver": "payments/lumen-api/oncall",
        "matchers": ['lumen_self="true"', 'lumen_policy="api"'],
        "continue": True,
    }


def test_no_own_routes_without_receivers_or_services(policies: dict[str, Policy]) -> None:
    slack_only = alertmanager_config(policies["routing-severity-slack"], RenderOptions())
    assert slack_only is not None
    assert all(
        m["name"] != "lumen_self"
        for route in slack_only["spec"]["route"]["routes"]
        for m in route.get("matchers", [])
    )
    # E-mail receivers but neither threader nor exporter: nothing of Lumen's own to route.
    policy = policies["routing-page-ticket"]
    assert policy.spec.threader is None and policy.spec.exporter is None
    config = alertmanager_config(policy, RenderOptions())
    assert config is not None
    assert [r["receiver"] for r in config["spec"]["route"]["routes"]] == ["oncall", "backlog"]


def test_route_overrides_only_when_set(policies: dict[str, Policy]) -> None:
    config = alertmanager_config(policies["routing-matchers"], RenderOptions())
    assert config is not None
    own, also_own, critical, oncall, quiet = config["spec"]["route"]["routes"]
    assert own["matchers"] == also_own["matchers"] == SELF_MATCHERS
    assert critical == {
        "receiver": "slack-critical",
        "matchers": [{"name": "severity", "value": "critical|page", "matchType": "=~"}],
        "continue": True,
    }
    assert oncall["groupBy"] == ["alertname"]
    assert oncall["groupWait"] == "0s"
    assert oncall["repeatInterval"] == "1h"
    assert "groupInterval" not in oncall
    assert set(quiet) == {"receiver", "matchers", "continue", "groupInterval"}


def test_builtin_inhibit_rules_always_present(policies: dict[str, Policy]) -> None:
    slo_rule = {
        "sourceMatch": [
            {"name": "alertname", "value": SLO_ALERT, "matchType": "="},
            {"name": "tier", "value": "page", "matchType": "="},
        ],
        "targetMatch": [
            {"name": "alertname", "value": SLO_ALERT, "matchType": "="},
            {"name": "tier", "value": "ticket", "matchType": "="},
        ],
        "equal": ["slo", "lumen_policy"],
    }
    severity_rule = {
        "sourceMatch": [{"name": "severity", "value": "critical", "matchType": "="}],
        "targetMatch": [{"name": "severity", "value": "warning", "matchType": "="}],
        "equal": ["alertname", "service", "slo"],
    }
    assert len(builtin_inhibit_rules()) == 2
    for policy in policies.values():
        config = alertmanager_config(policy, RenderOptions())
        assert config is not None
        rules = config["spec"]["inhibitRules"]
        assert rules[:2] == [slo_rule, severity_rule]
        assert len(rules) == 2 + len(routing_of(policy).inhibit_rules)


def test_plain_config_has_one_namespaced_route_per_policy(policies: dict[str, Policy]) -> None:
    """As prometheus-operator: sorted by namespace/name, namespace matcher last, continue."""
    plain = alertmanager_yaml(list(policies.values()))
    assert plain["route"]["receiver"] == "null"
    assert plain["receivers"][0] == {"name": "null"}
    names = [r["name"] for r in plain["receivers"]]
    assert names == ["null", *sorted(names[1:])]
    routes = plain["route"]["routes"]
    keys = sorted(
        f"{p.namespace}/{ChildNames.of(p).alertmanager_config}" for p in policies.values()
    )
    assert [r["receiver"].rsplit("/", 1)[0] for r in routes] == keys
    for route, key in zip(routes, keys, strict=True):
        assert route["matchers"][-1] == f'namespace="{key.split("/")[0]}"'
        assert route["continue"] is True
        assert all(child["receiver"].startswith(key + "/") for child in route.get("routes", []))
    assert "match" not in dump(plain).replace("matchers", "")


def test_plain_inhibit_rules_are_scoped_to_the_namespace(policies: dict[str, Policy]) -> None:
    plain = alertmanager_yaml([policies["routing-matchers"]])
    assert plain["inhibit_rules"][1] == {
        "source_matchers": ['severity="critical"', 'namespace="payments"'],
        "target_matchers": ['severity="warning"', 'namespace="payments"'],
        "equal": ["alertname", "service", "slo"],
    }
    assert plain["inhibit_rules"][2]["target_matchers"] == [
        'alertname=~"Payments.*Latency"',
        'namespace="payments"',
    ]


# --- secrets -----------------------------------------------------------------------------------


def test_config_references_secrets_only(policies: dict[str, Policy]) -> None:
    for policy in policies.values():
        config = alertmanager_config(policy, RenderOptions())
        for path, node in walk(config):
            if path.endswith((".credentials", ".authPassword")):
                assert isinstance(node, dict), path
                assert set(node) == {"name", "key"}, path


def test_plain_config_never_inlines_secrets(policies: dict[str, Policy]) -> None:
    plain = alertmanager_yaml(list(policies.values()))
    forbidden = {"credentials", "auth_password", "auth_secret", "bearer_token", "password"}
    files = []
    for path, node in walk(plain):
        key = path.rsplit(".", 1)[-1]
        assert key not in forbidden, path
        if key.endswith("_file"):
            files.append(node)
    assert files, "expected secret file references"
    assert all(f.startswith(f"{SECRETS_DIR}/") for f in files)
    assert f"{SECRETS_DIR}/smtp/password" in files
    assert f"{SECRETS_DIR}/lumen-gateway-threader/webhook-token" in files
    text = dump(plain)
    assert "credentials:" not in text
    assert "auth_password:" not in text


# --- determinism -------------------------------------------------------------------------------


def test_render_twice_is_identical(policies: dict[str, Policy]) -> None:
    fresh = {path.stem: load_policy(path) for path in POLICY_FILES}
    for stem, policy in policies.items():
        first = alertmanager_config(policy, RenderOptions())
        second = alertmanager_config(fresh[stem], RenderOptions())
        assert dump(first) == dump(second)
        assert json.dumps(first) == json.dumps(second)  # key order too
    forward = dump(alertmanager_yaml(list(policies.values())))
    backward = dump(alertmanager_yaml(list(reversed(list(fresh.values())))))
    assert forward == backward


def test_same_policy_twice_is_refused(policies: dict[str, Policy]) -> None:
    policy = policies["routing-page-ticket"]
    with pytest.raises(ValueError, match="pipeline/lumen-reports"):
        alertmanager_yaml([policy, policy])


# --- real amtool -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.stem)
def test_amtool_accepts_each_policy(path: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, [load_policy(path)])
    result = amtool("check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_accepts_all_policies_together(policies: dict[str, Policy], tmp_path: Path) -> None:
    config = write_config(tmp_path, list(policies.values()))
    result = amtool("check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    receivers = sum(len(routing_of(p).receivers) for p in policies.values())
    drops = sum(1 for p in policies.values() if not routing_of(p).receiver)
    assert f"{receivers + drops + 1} receivers" in result.stdout


def route_cases() -> Iterator[tuple[str, dict[str, str], list[str]]]:
    for stem, cases in EXPECTED_ROUTES.items():
        for labels, expected in cases:
            yield stem, labels, expected


@pytest.mark.parametrize(("stem", "labels", "expected"), list(route_cases()))
@pytest.mark.parametrize("together", [False, True], ids=["alone", "together"])
def test_amtool_routes(
    policies: dict[str, Policy],
    tmp_path: Path,
    stem: str,
    labels: dict[str, str],
    expected: list[str],
    together: bool,
) -> None:
    policy = policies[stem]
    config = write_config(tmp_path, list(policies.values()) if together else [policy])
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        f"--verify.receivers={','.join(expected)}",
        *route_args(policy, labels),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_verify_catches_a_wrong_receiver(
    policies: dict[str, Policy], tmp_path: Path
) -> None:
    """Guard: amtool really fails on a mismatch, so the route tests above can fail."""
    policy = policies["routing-severity-slack"]
    config = write_config(tmp_path, [policy])
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        "--verify.receivers=lumen/lumen-gateway/slack-warnings",
        *route_args(policy, {"severity": "critical"}),
    )
    assert result.returncode != 0


# --- real Alertmanager -------------------------------------------------------------------------


def http(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


@pytest.fixture
def alertmanager(policies: dict[str, Policy], tmp_path: Path) -> Iterator[str]:
    assert ALERTMANAGER is not None, "prometheus-alertmanager missing: run `make setup`"
    config = write_config(tmp_path, list(policies.values()))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "alertmanager.log").open("w") as log_file:  # the process keeps its own copy
        process = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (tmp_path / "alertmanager.log").read_text()
                    pytest.fail(f"alertmanager did not start:\n{log}")
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_real_alertmanager_routes_and_inhibits(alertmanager: str) -> None:
    alerts = {
        "GatewayCritical": {"namespace": "lumen-gw", "severity": "critical", "service": "gw"},
        "GatewayWarning": {"namespace": "lumen-gw", "severity": "warning", "service": "gw"},
        "PipelinePage": {"namespace": "pipeline", "severity": "page"},
        "PaymentsProdPage": {"namespace": "payments", "severity": "page", "env": "prod"},
        "ForeignCritical": {"namespace": "kube-system", "severity": "critical"},
        # A threader alert about itself: e-mail and webhook, never Slack through the threader.
        "LumenThreaderDown": {
            "namespace": "payments",
            "severity": "critical",
            "lumen_self": "true",
            "lumen_policy": "api",
        },
    }
    # Same alert and service at both severities: the built-in rule mutes the warning one.
    inhibition = {"alertname": "Dup", "namespace": "lumen-gw", "service": "gw"}
    # SLO page mutes the SLO ticket of the same SLO and policy (default severities).
    slo = {
        "alertname": SLO_ALERT,
        "namespace": "shop",
        "slo": "availability",
        "lumen_policy": "checkout",
    }
    posted = [{"labels": {"alertname": name, **labels}} for name, labels in alerts.items()]
    posted += [
        {"labels": {**inhibition, "severity": "critical"}},
        {"labels": {**inhibition, "severity": "warning"}},
        {"labels": {**slo, "tier": "page", "severity": "critical"}},
        {"labels": {**slo, "tier": "ticket", "severity": "warning"}},
        # Another SLO's ticket: same alert name, and critical mutes warning, but not across SLOs.
        {"labels": {**slo, "slo": "latency", "tier": "ticket", "severity": "warning"}},
    ]
    http(f"{alertmanager}/api/v2/alerts", posted)

    landed: dict[str, set[str]] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        landed = {}
        for group in http(f"{alertmanager}/api/v2/alerts/groups"):
            for alert in group["alerts"]:
                landed.setdefault(alert["labels"]["alertname"], set()).add(
                    group["receiver"]["name"]
                )
        if set(alerts) <= set(landed):
            break
        time.sleep(0.2)
    assert landed["GatewayCritical"] == {"lumen-gw/lumen-gateway/slack-critical"}
    assert landed["GatewayWarning"] == {"lumen-gw/lumen-gateway/slack-warnings"}
    assert landed["PipelinePage"] == {"pipeline/lumen-reports/oncall"}
    assert landed["PaymentsProdPage"] == {
        "payments/lumen-api/slack-critical",
        "payments/lumen-api/oncall",
    }
    assert landed["ForeignCritical"] == {"null"}
    assert landed["LumenThreaderDown"] == {"payments/lumen-api/oncall", "payments/lumen-api/quiet"}

    def inhibited(labels: dict[str, str]) -> bool:
        for alert in http(f"{alertmanager}/api/v2/alerts"):
            if alert["labels"] == labels:
                return bool(alert["status"]["inhibitedBy"])
        raise AssertionError(f"alert {labels} not found")

    assert inhibited({**inhibition, "severity": "warning"})
    assert not inhibited({**inhibition, "severity": "critical"})
    assert inhibited({**slo, "tier": "ticket", "severity": "warning"})
    assert not inhibited({**slo, "tier": "page", "severity": "critical"})
    assert not inhibited({**slo, "slo": "latency", "tier": "ticket", "severity": "warning"})


def test_alertmanager_config_carries_the_kps_release_label(policies: dict[str, Policy]) -> None:
    for policy in policies.values():
        config = alertmanager_config(policy, RenderOptions(kps_release="kps"))
        assert config is not None
        assert config["metadata"]["labels"]["release"] == "kps"
        assert config["metadata"]["labels"]["lumen.dev/policy"] == policy.name
