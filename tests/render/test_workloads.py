"""Threader and exporter workloads: valid objects, wiring between them, hardening, determinism."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumen_alerting.policy.document import policy_from_manifest
from lumen_alerting.policy.model import Policy, SecretKeyRef
from lumen_alerting.render.exporter import CONFIG_HASH_ANNOTATION, exporter_objects
from lumen_alerting.render.objects import (
    EXPORTER_PORT,
    THREADER_PORT,
    ChildNames,
    RenderOptions,
)
from lumen_alerting.render.threader import SecretRequest, threader_objects, threader_secret
from tests.support.schemas import validate_object

POLICIES = sorted((Path(__file__).parents[1] / "policies").glob("workloads-*.yaml"))
OPTIONS = RenderOptions(
    kps_release="kps-test",
    threader_image="registry.example/lumen:1.2.3",
    exporter_image="registry.example/lumen:1.2.3",
    managed_by="lumen-operator",
)
Manifest = dict[str, Any]


def load(name: str, uid: str = "") -> Policy:
    manifest = yaml.safe_load((Path(__file__).parents[1] / "policies" / name).read_text())
    return dataclasses.replace(policy_from_manifest(manifest), uid=uid)


def render(policy: Policy, options: RenderOptions = OPTIONS) -> list[Manifest]:
    return threader_objects(policy, options) + exporter_objects(policy, options)


def by_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[Manifest], kind: str) -> Manifest:
    (found,) = by_kind(objects, kind)
    return found


def rendered_policies() -> list[Any]:
    return [pytest.param(path.name, id=path.stem) for path in POLICIES]


def containers(deployment: Manifest) -> list[Manifest]:
    pod = deployment["spec"]["template"]["spec"]
    found: list[Manifest] = pod.get("initContainers", []) + pod["containers"]
    return found


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_policy_files_cover_the_cases() -> None:
    policies = [load(path.name) for path in POLICIES]
    assert len(policies) >= 4
    threaders = [p.spec.threader for p in policies if p.spec.threader]
    exporters = [p.spec.exporter for p in policies if p.spec.exporter]
    assert any(t.store.type == "redis" and t.replicas == 3 for t in threaders)
    assert any(t.store.type == "file" for t in threaders)
    assert any(t.store.type == "sqlite" and t.persistence.enabled for t in threaders)
    assert any(t.store.type == "postgresql" and t.replicas > 1 for t in threaders)
    assert any(t.store.url.startswith("redis+sentinel://") for t in threaders)
    assert any(e.persistence.enabled for e in exporters)
    assert any(t.incidents.database_url for t in threaders)
    assert any(len(e.probes) > 1 and e.pipeline.enabled for e in exporters)
    assert any(not e.enabled for e in exporters)
    assert any(p.spec.threader is None for p in policies)


@pytest.mark.parametrize("name", rendered_policies())
@pytest.mark.parametrize("uid", ["", "0b6f2a8e-4c1d-4e57-9d0a-7f3c2b1e5a90"])
def test_every_object_validates(name: str, uid: str) -> None:
    objects = render(load(name, uid))
    for obj in objects:
        validate_object(obj)
        assert obj["metadata"]["namespace"] == load(name).namespace
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "lumen"
        assert labels["app.kubernetes.io/managed-by"] == "lumen-operator"
        assert labels["lumen.dev/policy"] == load(name).name
        assert bool(obj["metadata"].get("ownerReferences")) == bool(uid)


def test_kinds_and_order() -> None:
    both = render(load("workloads-memory-both.yaml"))
    assert [o["kind"] for o in both] == [
        "NetworkPolicy", "Deployment", "Service", "ServiceMonitor",
        "ConfigMap", "NetworkPolicy", "Deployment", "Service", "ServiceMonitor",
    ]  # fmt: skip
    names = ChildNames.of(load("workloads-memory-both.yaml"))
    assert [o["metadata"]["name"] for o in both] == [names.threader] * 4 + [names.exporter] * 5


def test_nothing_rendered_when_absent_or_disabled() -> None:
    quiet = load("workloads-disabled.yaml")
    assert threader_objects(quiet, OPTIONS) == []
    assert exporter_objects(quiet, OPTIONS) == []
    assert threader_secret(quiet) is None
    exporter_only = load("workloads-exporter-only.yaml")
    assert exporter_only.spec.threader is None
    assert threader_objects(exporter_only, OPTIONS) == []
    assert threader_secret(exporter_only) is None
    assert exporter_objects(load("workloads-redis-ha.yaml"), OPTIONS) == []
    assert exporter_objects(load("workloads-file-store.yaml"), OPTIONS) == []


@pytest.mark.parametrize("name", rendered_policies())
def test_selectors_match_pod_labels(name: str) -> None:
    for deployment in by_kind(render(load(name)), "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert matches(selector, pod_labels)
        assert set(selector) == {"app.kubernetes.io/name", "lumen.dev/policy"}


def test_selector_labels_are_stable_across_spec_and_options_changes() -> None:
    policy = load("workloads-memory-both.yaml")
    assert policy.spec.threader is not None
    changed = dataclasses.replace(
        policy,
        spec=dataclasses.replace(
            policy.spec,
            threader=dataclasses.replace(policy.spec.threader, thread_key="labels"),
        ),
    )
    other = RenderOptions(kps_release="x", threader_image="a:2", exporter_image="b:3")
    for left, right in zip(render(policy), render(changed, other), strict=True):
        if left["kind"] == "Deployment":
            assert left["spec"]["selector"] == right["spec"]["selector"]
        if left["kind"] == "Service":
            assert left["spec"]["selector"] == right["spec"]["selector"]


@pytest.mark.parametrize("name", rendered_policies())
def test_services_select_the_pods_and_target_the_named_port(name: str) -> None:
    objects = render(load(name))
    for deployment in by_kind(objects, "Deployment"):
        (svc,) = [
            s
            for s in by_kind(objects, "Service")
            if s["metadata"]["name"] == deployment["metadata"]["name"]
        ]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert matches(svc["spec"]["selector"], pod_labels)
        (container,) = containers(deployment)
        (container_port,) = container["ports"]
        (port,) = svc["spec"]["ports"]
        assert port["name"] == "http"
        assert port["targetPort"] == container_port["name"] == "http"
        threader = deployment["metadata"]["name"].endswith("-threader")
        expected = THREADER_PORT if threader else EXPORTER_PORT
        assert port["port"] == container_port["containerPort"] == expected
        assert f"0.0.0.0:{expected}" in container["args"]


@pytest.mark.parametrize("name", rendered_policies())
def test_service_monitors_select_their_service_for_kps(name: str) -> None:
    objects = render(load(name))
    monitors = by_kind(objects, "ServiceMonitor")
    assert len(monitors) == len(by_kind(objects, "Service"))
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "kps-test"
        (svc,) = [
            s
            for s in by_kind(objects, "Service")
            if s["metadata"]["name"] == monitor["metadata"]["name"]
        ]
        assert matches(monitor["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
        # ...and no other Service of the policy.
        for other in by_kind(objects, "Service"):
            if other is not svc:
                assert not matches(
                    monitor["spec"]["selector"]["matchLabels"], other["metadata"]["labels"]
                )
        assert monitor["spec"]["namespaceSelector"] == {
            "matchNames": [svc["metadata"]["namespace"]]
        }
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == svc["spec"]["ports"][0]["name"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["interval"] == "30s"


def test_default_release_label() -> None:
    objects = render(load("workloads-memory-both.yaml"), RenderOptions())
    for monitor in by_kind(objects, "ServiceMonitor"):
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


@pytest.mark.parametrize("name", rendered_policies())
def test_every_container_is_hardened(name: str) -> None:
    for deployment in by_kind(render(load(name)), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in containers(deployment):
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True
            assert security["runAsUser"] == 65532
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys()
            assert "memory" in resources["limits"]
            assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
            state = volumes[mounts["/var/lib/lumen"]["name"]]
            assert "emptyDir" in state or "persistentVolumeClaim" in state
            for mount in mounts.values():
                volume = volumes[mount["name"]]
                if "emptyDir" not in volume and "persistentVolumeClaim" not in volume:
                    assert mount["readOnly"] is True


def exporter_deployment(policy: Policy) -> Manifest:
    return one(exporter_objects(policy, OPTIONS), "Deployment")


def with_probe_interval(policy: Policy, interval: str) -> Policy:
    exporter = policy.spec.exporter
    assert exporter is not None
    probes = [dataclasses.replace(exporter.probes[0], interval=interval), *exporter.probes[1:]]
    return dataclasses.replace(
        policy,
        spec=dataclasses.replace(
            policy.spec, exporter=dataclasses.replace(exporter, probes=probes)
        ),
    )


def test_config_hash_is_the_sha256_of_the_config_map() -> None:
    objects = exporter_objects(load("workloads-exporter-only.yaml"), OPTIONS)
    config = one(objects, "ConfigMap")["data"]["config.json"]
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations[CONFIG_HASH_ANNOTATION] == hashlib.sha256(config.encode()).hexdigest()


def test_config_change_changes_only_the_config_hash() -> None:
    policy = load("workloads-exporter-only.yaml")
    before = exporter_deployment(policy)
    after = exporter_deployment(with_probe_interval(policy, "45s"))
    old = before["spec"]["template"]["metadata"]["annotations"].pop(CONFIG_HASH_ANNOTATION)
    new = after["spec"]["template"]["metadata"]["annotations"].pop(CONFIG_HASH_ANNOTATION)
    assert old != new
    assert before == after


def test_exporter_config_content() -> None:
    policy = load("workloads-exporter-only.yaml")
    config_text = one(exporter_objects(policy, OPTIONS), "ConfigMap")["data"]["config.json"]
    config = yaml.safe_load(config_text)
    assert config["pipeline"] == {"enabled": True}
    assert [p["name"] for p in config["probes"]] == ["ion-api", "gateway", "creative"]
    assert config["probes"][0] == {
        "name": "ion-api",
        "url": "http://ion-api:8080/health",
        "interval": "20s",
        "timeout": "5s",
        "fields": {
            "lumen_ion_confidence": "$.confidence",
            "lumen_ion_mock_mode": "$.mock",
            "lumen_phase_diff": "$.resonance.phase_diff",
        },
        "health_metric": "lumen_probe_up",
        "response_time_metric": "lumen_probe_response_time_ms",
        # Defaults are written too: the file says everything the exporter will do.
        "method": "GET",
        "expected_status": [],
        "value_maps": {},
        "count_values": {},
        "max_distinct_values": 20,
    }
    assert "header_files" not in config["probes"][0]  # only for a probe with headers
    assert config["probes"][1]["timeout"] == "5s"  # the model's default
    assert config_text == json.dumps(config, indent=2, sort_keys=True) + "\n"


def env_and_volume_secret_refs(deployment: Manifest) -> tuple[list[Manifest], list[Manifest]]:
    pod = deployment["spec"]["template"]["spec"]
    env = [e for c in containers(deployment) for e in c.get("env", [])]
    sources = [
        s["secret"]
        for v in pod["volumes"]
        for s in v.get("projected", {}).get("sources", [])
        if "secret" in s
    ] + [v["secret"] for v in pod["volumes"] if "secret" in v]
    return env, sources


@pytest.mark.parametrize("name", rendered_policies())
def test_secrets_are_only_referenced(name: str) -> None:
    objects = render(load(name))
    assert by_kind(objects, "Secret") == []
    text = json.dumps(objects)
    for secret_value_hint in ("xoxb-", "stringData", "postgres://"):
        assert secret_value_hint not in text
    for deployment in by_kind(objects, "Deployment"):
        env, _ = env_and_volume_secret_refs(deployment)
        for var in env:
            assert "value" not in var, var
            assert set(var["valueFrom"]) == {"secretKeyRef"}


def test_threader_secret_references() -> None:
    policy = load("workloads-redis-ha.yaml")
    names = ChildNames.of(policy)
    deployment = one(threader_objects(policy, OPTIONS), "Deployment")
    env, sources = env_and_volume_secret_refs(deployment)
    # The bot token is a file in the read-only secrets volume, not an environment variable.
    assert env == []
    assert {"name": "slack-bot", "items": [{"key": "token", "path": "slack-token"}]} in sources
    assert {"name": names.threader_secret, "items": [
        {"key": "admin-token", "path": "admin-token"},
        {"key": "webhook-token", "path": "webhook-token"},
    ]} in sources  # fmt: skip
    assert {"name": "lumen-db", "items": [{"key": "url", "path": "database-url"}]} in sources
    assert threader_secret(policy) == SecretRequest(
        name=names.threader_secret, namespace="lumen", keys=("admin-token", "webhook-token")
    )


def test_threader_arguments() -> None:
    (ha,) = containers(
        one(threader_objects(load("workloads-redis-ha.yaml"), OPTIONS), "Deployment")
    )
    assert ha["command"] == ["lumen-threader"]
    assert ha["image"] == "registry.example/lumen:1.2.3"
    assert ha["args"] == [
        "--listen", "0.0.0.0:8080",
        "--store", "redis://redis.lumen.svc:6379/0",
        "--key-prefix", "lumen:lumen:gateway-ha:",
        "--webhook-token-file", "/etc/lumen/threader/webhook-token",
        "--admin-token-file", "/etc/lumen/threader/admin-token",
        "--thread-key", "labels",
        "--no-reply-on-repeat",
        "--database-url-file", "/etc/lumen/threader/database-url",
        "--slack-token-file", "/etc/lumen/threader/slack-token",
    ]  # fmt: skip
    assert "env" not in ha
    file_deployment = one(
        threader_objects(load("workloads-file-store.yaml"), OPTIONS), "Deployment"
    )
    (single,) = containers(file_deployment)
    assert single["args"] == [
        "--listen", "0.0.0.0:8080",
        "--store", "sqlite:/var/lib/lumen/threader.db",
        "--webhook-token-file", "/etc/lumen/threader/webhook-token",
        "--admin-token-file", "/etc/lumen/threader/admin-token",
        "--thread-key", "occurrence",
        "--database-url", "sqlite:////var/lib/lumen/incidents.db",
        "--slack-token-file", "/etc/lumen/threader/slack-token",
    ]  # fmt: skip
    (memory,) = containers(
        one(threader_objects(load("workloads-memory-both.yaml"), OPTIONS), "Deployment")
    )
    assert memory["args"][3] == "memory"


def test_postgresql_store_arguments_and_secret_files() -> None:
    """The URL (with its password) is a file; the key prefix scopes the rows; incidents go to
    the store's database, the threader's default with a postgresql store: no database flag."""
    policy = load("workloads-postgresql.yaml")
    deployment = one(threader_objects(policy, OPTIONS), "Deployment")
    (main,) = containers(deployment)
    assert main["args"] == [
        "--listen", "0.0.0.0:8080",
        "--store-file", "/etc/lumen/threader/store-url",
        "--key-prefix", "lumen:lumen:gateway-pg:",
        "--webhook-token-file", "/etc/lumen/threader/webhook-token",
        "--admin-token-file", "/etc/lumen/threader/admin-token",
        "--thread-key", "occurrence",
        "--slack-token-file", "/etc/lumen/threader/slack-token",
    ]  # fmt: skip
    env, sources = env_and_volume_secret_refs(deployment)
    assert env == []
    assert {"name": "lumen-postgres", "items": [{"key": "url", "path": "store-url"}]} in sources
    assert not any(item["path"] == "database-url" for s in sources for item in s["items"])


def test_postgresql_store_with_its_own_incident_database() -> None:
    policy = load("workloads-postgresql.yaml")
    threader = policy.spec.threader
    assert threader is not None
    mariadb = SecretKeyRef(name="lumen-mariadb", key="url")
    split = with_threader(
        policy, incidents=dataclasses.replace(threader.incidents, database_url=mariadb)
    )
    args = threader_container(split)["args"]
    assert flag(args, "--store-file") == "/etc/lumen/threader/store-url"
    assert flag(args, "--database-url-file") == "/etc/lumen/threader/database-url"
    assert "--database-url" not in args
    _, sources = env_and_volume_secret_refs(one(threader_objects(split, OPTIONS), "Deployment"))
    paths = [(s["name"], item["path"]) for s in sources for item in s["items"]]
    assert ("lumen-postgres", "store-url") in paths
    assert ("lumen-mariadb", "database-url") in paths


def test_postgresql_store_rolls_spread_replicas() -> None:
    deployment = one(threader_objects(load("workloads-postgresql.yaml"), OPTIONS), "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]


def test_sentinel_store_arguments_and_password_file() -> None:
    policy = load("workloads-redis-sentinel.yaml")
    deployment = one(threader_objects(policy, OPTIONS), "Deployment")
    (main,) = containers(deployment)
    assert main["args"][:14] == [
        "--listen", "0.0.0.0:8080",
        "--store",
        "redis+sentinel://redis-sentinel-0.data:26379,redis-sentinel-1.data:26379/lumen-master/0",
        "--key-prefix", "lumen:lumen:gateway-sentinel:",
        "--store-password-file", "/etc/lumen/threader/store-password",
        "--replica-acks", "2",
        "--replica-ack-timeout", "1.5",
        "--webhook-token-file", "/etc/lumen/threader/webhook-token",
    ]  # fmt: skip
    assert flag(main["args"], "--database-url-file") == "/etc/lumen/threader/database-url"
    _, sources = env_and_volume_secret_refs(deployment)
    assert {"name": "redis-auth", "items": [{"key": "password", "path": "store-password"}]} in (
        sources
    )
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"


@pytest.mark.parametrize(
    ("acks", "timeout", "flags"),
    [
        ("auto", "1s", []),
        ("auto", "1000ms", []),  # the default, however written
        ("0", "1s", ["--replica-acks", "0"]),
        ("auto", "250ms", ["--replica-ack-timeout", "0.25"]),
        ("1", "2m", ["--replica-acks", "1", "--replica-ack-timeout", "120"]),
        ("auto", "1s1ms", ["--replica-ack-timeout", "1.001"]),
        ("auto", "10s", ["--replica-ack-timeout", "10"]),
    ],
)
def test_replica_wait_flags_only_when_not_the_default(
    acks: str, timeout: str, flags: list[str]
) -> None:
    ha = with_store(load("workloads-redis-ha.yaml"), replica_acks=acks, replica_ack_timeout=timeout)
    args = threader_container(ha)["args"]
    found = [a for a in args if a.startswith("--replica-ack")]
    assert found == flags[::2]
    for name, value in zip(flags[::2], flags[1::2], strict=True):
        assert flag(args, name) == value


@pytest.mark.parametrize(
    "url",
    [
        "redis://redis:6379/0",
        "rediss://lumen@redis:6380/1",
        "redis+sentinel://s-0:26379,s-1:26379,s-2:26379/lumen-master/0",
        "redis+cluster://c-0:6379,c-1:6379,c-2:6379",
    ],
)
def test_every_redis_url_is_passed_as_it_is_with_the_key_prefix(url: str) -> None:
    args = threader_container(with_store(load("workloads-redis-ha.yaml"), url=url))["args"]
    assert flag(args, "--store") == url
    assert flag(args, "--key-prefix") == "lumen:lumen:gateway-ha:"
    assert "--store-password-file" not in args  # no passwordSecret in that policy
    assert "--store-file" not in args


def test_exporter_arguments_and_pipeline_token() -> None:
    policy = load("workloads-exporter-only.yaml")
    deployment = exporter_deployment(policy)
    (container,) = containers(deployment)
    assert container["command"] == ["lumen-exporter"]
    assert container["args"] == [
        "--listen", "0.0.0.0:9108",
        "--config", "/etc/lumen/exporter/config.json",
        "--state-dir", "/var/lib/lumen",
        "--pipeline-token-file", "/etc/lumen/exporter/pipeline-token",
    ]  # fmt: skip
    _, sources = env_and_volume_secret_refs(deployment)
    assert sources == [
        {"name": "pipeline-ci", "items": [{"key": "token", "path": "pipeline-token"}]}
    ]
    config_sources = [
        s["configMap"]
        for v in deployment["spec"]["template"]["spec"]["volumes"]
        for s in v.get("projected", {}).get("sources", [])
        if "configMap" in s
    ]
    assert config_sources == [
        {
            "name": ChildNames.of(policy).exporter,
            "items": [{"key": "config.json", "path": "config.json"}],
        }
    ]
    # Pipeline disabled: no token flag and no token file, even though a token is configured.
    quiet = exporter_deployment(load("workloads-memory-both.yaml"))
    (quiet_container,) = containers(quiet)
    assert "--pipeline-token-file" not in quiet_container["args"]
    assert env_and_volume_secret_refs(quiet)[1] == []


@pytest.mark.parametrize("name", rendered_policies())
def test_render_twice_is_identical(name: str) -> None:
    first = render(load(name, "uid-1"))
    second = render(load(name, "uid-1"))
    assert first == second
    assert yaml.safe_dump_all(first, sort_keys=False) == yaml.safe_dump_all(second, sort_keys=False)


def test_file_store_recreates_a_single_replica() -> None:
    deployment = one(threader_objects(load("workloads-file-store.yaml"), OPTIONS), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_redis_store_rolls_three_spread_replicas() -> None:
    deployment = one(threader_objects(load("workloads-redis-ha.yaml"), OPTIONS), "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (spread,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_exporter_runs_one_replica() -> None:
    deployment = exporter_deployment(load("workloads-exporter-only.yaml"))
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def with_threader(policy: Policy, **changes: Any) -> Policy:
    threader = policy.spec.threader
    assert threader is not None
    return dataclasses.replace(
        policy,
        spec=dataclasses.replace(policy.spec, threader=dataclasses.replace(threader, **changes)),
    )


def with_store(policy: Policy, **changes: Any) -> Policy:
    assert policy.spec.threader is not None
    return with_threader(policy, store=dataclasses.replace(policy.spec.threader.store, **changes))


def threader_container(policy: Policy) -> Manifest:
    (main,) = containers(one(threader_objects(policy, OPTIONS), "Deployment"))
    return main


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_sqlite_is_the_store_and_file_its_alias() -> None:
    """`file` (deprecated) and `sqlite` render the same SQLite store in the state directory."""
    file_store = load("workloads-file-store.yaml")
    sqlite = with_store(file_store, type="sqlite")
    assert threader_objects(file_store, OPTIONS) == threader_objects(sqlite, OPTIONS)
    assert flag(threader_container(sqlite)["args"], "--store") == (
        "sqlite:/var/lib/lumen/threader.db"
    )
    assert "--key-prefix" not in threader_container(sqlite)["args"]


def test_every_redis_threader_has_its_own_key_prefix() -> None:
    """Two policies on one Redis database never share keys, whatever their names."""
    ha = load("workloads-redis-ha.yaml")
    same_name_elsewhere = dataclasses.replace(ha, namespace="other")
    other_name = dataclasses.replace(ha, name="gateway-ha2")
    prefixes = [
        flag(threader_container(policy)["args"], "--key-prefix")
        for policy in (ha, same_name_elsewhere, other_name)
    ]
    assert prefixes == [
        "lumen:lumen:gateway-ha:",
        "lumen:other:gateway-ha:",
        "lumen:lumen:gateway-ha2:",
    ]
    assert not any(a.startswith(b) for a in prefixes for b in prefixes if a != b)


def test_volatile_store_only_when_allowed() -> None:
    ha = load("workloads-redis-ha.yaml")
    assert "--allow-volatile-store" not in threader_container(ha)["args"]
    args = threader_container(with_store(ha, allow_volatile=True))["args"]
    assert args.count("--allow-volatile-store") == 1
    assert args.index("--allow-volatile-store") > args.index("--key-prefix")


def test_no_slack_token_file_without_a_bot_token() -> None:
    policy = with_threader(load("workloads-file-store.yaml"), bot_token=None)
    deployment = one(threader_objects(policy, OPTIONS), "Deployment")
    (main,) = containers(deployment)
    assert "--slack-token-file" not in main["args"]
    _, sources = env_and_volume_secret_refs(deployment)
    assert all(item["path"] != "slack-token" for s in sources for item in s["items"])


def volume_at(deployment: Manifest, path: str) -> Manifest:
    pod = deployment["spec"]["template"]["spec"]
    (main,) = containers(deployment)
    (mount,) = [m for m in main["volumeMounts"] if m["mountPath"] == path]
    volume: Manifest
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return volume


def test_persistence_mounts_a_claim_owned_by_the_policy() -> None:
    policy = load("workloads-persistent.yaml", uid="0b6f2a8e-4c1d-4e57-9d0a-7f3c2b1e5a90")
    names = ChildNames.of(policy)
    threader = threader_objects(policy, OPTIONS)
    assert [o["kind"] for o in threader] == [
        "PersistentVolumeClaim", "NetworkPolicy", "Deployment", "Service", "ServiceMonitor",
    ]  # fmt: skip
    claim = one(threader, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == names.threader_state == "lumen-gateway-kept-threader-state"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "fast-ssd",
    }
    # Owned like every child: deleting the policy deletes the claim (docs/workloads.md).
    assert claim["metadata"]["ownerReferences"][0]["uid"] == policy.uid
    deployment = one(threader, "Deployment")
    assert volume_at(deployment, "/var/lib/lumen") == {
        "name": "state",
        "persistentVolumeClaim": {"claimName": names.threader_state},
    }
    # One pod at a time on a ReadWriteOnce volume: the old pod lets go before the new one starts.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["replicas"] == 1
    # The store and the default incident database are in the claimed directory.
    (main,) = containers(deployment)
    assert flag(main["args"], "--store") == "sqlite:/var/lib/lumen/threader.db"
    assert flag(main["args"], "--database-url") == "sqlite:////var/lib/lumen/incidents.db"

    exporter = exporter_objects(policy, OPTIONS)
    assert [o["kind"] for o in exporter] == [
        "ConfigMap", "PersistentVolumeClaim", "NetworkPolicy", "Deployment", "Service",
        "ServiceMonitor",
    ]  # fmt: skip
    exporter_claim = one(exporter, "PersistentVolumeClaim")
    assert exporter_claim["metadata"]["name"] == names.exporter_state
    assert exporter_claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }  # no storageClassName: the cluster's default class
    assert volume_at(one(exporter, "Deployment"), "/var/lib/lumen") == {
        "name": "state",
        "persistentVolumeClaim": {"claimName": names.exporter_state},
    }


def test_without_persistence_state_is_an_empty_dir_and_no_claim() -> None:
    for name in ("workloads-file-store.yaml", "workloads-memory-both.yaml"):
        objects = render(load(name))
        assert by_kind(objects, "PersistentVolumeClaim") == []
        for deployment in by_kind(objects, "Deployment"):
            assert volume_at(deployment, "/var/lib/lumen") == {
                "name": "state",
                "emptyDir": {"sizeLimit": "1Gi"},
            }


def test_persistence_makes_a_redis_threader_recreate() -> None:
    """A single redis-backed replica rolls with a surge pod, unless a claim holds its incidents."""
    single = with_threader(load("workloads-redis-ha.yaml"), replicas=1)
    rolling = one(threader_objects(single, OPTIONS), "Deployment")
    assert rolling["spec"]["strategy"]["type"] == "RollingUpdate"
    assert single.spec.threader is not None
    persistence = dataclasses.replace(single.spec.threader.persistence, enabled=True)
    kept = one(
        threader_objects(with_threader(single, persistence=persistence), OPTIONS), "Deployment"
    )
    assert kept["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(
    ("size", "canonical"),
    [
        ("1Gi", "1Gi"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("2000M", "2G"),
        ("500Mi", "500Mi"),
        ("1073741824", "1073741824"),
        ("1000", "1k"),
        ("1048576Ki", "1Gi"),
    ],
)
def test_claim_size_is_written_as_the_api_server_writes_it_back(size: str, canonical: str) -> None:
    """The live claim must contain the rendered one, or every drift pass re-applies it."""
    policy = load("workloads-persistent.yaml")
    assert policy.spec.threader is not None
    persistence = dataclasses.replace(policy.spec.threader.persistence, size=size)
    claim = one(
        threader_objects(with_threader(policy, persistence=persistence), OPTIONS),
        "PersistentVolumeClaim",
    )
    assert claim["spec"]["resources"]["requests"]["storage"] == canonical


def test_incident_settings_become_files_and_flags() -> None:
    """The signing secret, the API token and the database URL are Secret keys mounted as files of
    the secrets volume; the rest are flag values. Nothing of a Secret is in the pod spec."""
    policy = load("workloads-incidents.yaml")
    deployment = one(threader_objects(policy, OPTIONS), "Deployment")
    env, sources = env_and_volume_secret_refs(deployment)
    assert env == []
    assert {"name": "lumen-incidents", "items": [{"key": "mysql-url", "path": "database-url"}]} in (
        sources
    )
    assert {
        "name": "slack-app",
        "items": [{"key": "signing-secret", "path": "slack-signing-secret"}],
    } in sources
    assert {"name": "lumen-incidents-api", "items": [{"key": "token", "path": "api-token"}]} in (
        sources
    )
    (main,) = containers(deployment)
    args = main["args"]
    assert flag(args, "--database-url-file") == "/etc/lumen/threader/database-url"
    assert "--database-url" not in args
    assert flag(args, "--slack-signing-secret-file") == "/etc/lumen/threader/slack-signing-secret"
    assert flag(args, "--api-token-file") == "/etc/lumen/threader/api-token"
    assert flag(args, "--alertmanager-url") == "http://alertmanager-operated.monitoring:9093"
    assert flag(args, "--public-url") == "https://lumen.example.com"
    assert flag(args, "--incident-group-by") == "alertname,service"
    assert flag(args, "--raw-alert-retention") == "7d"
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert mounts["/etc/lumen/threader"] == {
        "name": "secrets",
        "mountPath": "/etc/lumen/threader",
        "readOnly": True,
    }


def test_no_incident_flags_or_files_unless_set() -> None:
    """A threader without incident settings renders exactly what it rendered before them."""
    policy = load("workloads-file-store.yaml")
    args = threader_container(policy)["args"]
    for absent in (
        "--slack-signing-secret-file",
        "--api-token-file",
        "--alertmanager-url",
        "--public-url",
        "--incident-group-by",
        "--raw-alert-retention",
    ):
        assert absent not in args
    _, sources = env_and_volume_secret_refs(one(threader_objects(policy, OPTIONS), "Deployment"))
    paths = {item["path"] for source in sources for item in source["items"]}
    assert paths == {"admin-token", "webhook-token", "slack-token"}
    # A retention other than the default is passed on; the default is left to the threader.
    threader = policy.spec.threader
    assert threader is not None
    longer = with_threader(
        policy, incidents=dataclasses.replace(threader.incidents, raw_alert_retention="90d")
    )
    assert flag(threader_container(longer)["args"], "--raw-alert-retention") == "90d"
