"""The LumenAlertPolicy CRD: generated from the model, valid for Kubernetes, documented, and its
schema and CEL rules agree with the Python loader on valid and invalid policies."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml
from celpy.adapter import json_to_cel

from lumen_alerting.manifest_yaml import to_yaml
from lumen_alerting.policy import InvalidPolicy, policy_from_manifest
from lumen_alerting.policy.schema import crd
from tests.support.schemas import REPO, validate_object

CRD_FILE = REPO / "crds" / "lumen.dev_lumenalertpolicies.yaml"
POLICY_FILES = sorted([*REPO.glob("examples/*.yaml"), *REPO.glob("tests/policies/*.yaml")])


def _root_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_is_generated_from_the_model():
    assert CRD_FILE.read_text() == to_yaml(crd()), "run `make crds` and commit the result"


def test_crd_is_a_valid_kubernetes_object():
    kubernetes_validate.validate(yaml.safe_load(CRD_FILE.read_text()), "1.32", strict=True)


def test_crd_names_columns_and_status():
    version = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Ready",
        "Rules",
        "SLOs",
        "Age",
    ]
    names = yaml.safe_load(CRD_FILE.read_text())["spec"]["names"]
    assert names["shortNames"] and names["plural"] == "lumenalertpolicies"


def _walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}.*")


def test_every_spec_and_status_field_has_a_description():
    root = _root_schema()
    missing = [
        path
        for part in ("spec", "status")
        for path, node in _walk(root["properties"][part], part)
        if not path.endswith(("[]", ".*")) and not node.get("description")
    ]
    assert missing == []


def test_defaults_are_valid_for_their_own_schema():
    """The API server rejects a CRD whose defaults break its own patterns."""
    import re

    for path, node in _walk(_root_schema(), ""):
        if isinstance(node.get("default"), str) and "pattern" in node:
            assert re.match(node["pattern"], node["default"]), path


# --- the API server's view: structural defaulting, schema, CEL -------------------------------


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """What the API server does before validating: fill in defaults, recursively."""
    if isinstance(value, dict):
        value = dict(value)
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            value = {k: apply_defaults(v, extra) for k, v in value.items()}
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [apply_defaults(v, schema["items"]) for v in value]
    return value


_CEL = celpy.Environment()


def broken_cel_rules(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Every x-kubernetes-validations rule that evaluates to false, and every duplicate key of a
    ``x-kubernetes-list-type: map`` list, as ``path: message``."""
    broken = []
    if schema.get("x-kubernetes-list-type") == "map" and isinstance(value, list):
        keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value]
        if len(set(keys)) != len(keys):
            broken.append(f"{path}: Duplicate value")
    for rule in schema.get("x-kubernetes-validations", []):
        program = _CEL.program(_CEL.compile(rule["rule"]))
        if not program.evaluate({"self": json_to_cel(value)}):
            broken.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                broken += broken_cel_rules(value[key], sub, f"{path}.{key}".lstrip("."))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                broken += broken_cel_rules(item, extra, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            broken += broken_cel_rules(item, schema["items"], f"{path}[{i}]")
    return broken


def api_server_problems(manifest: dict[str, Any]) -> list[str]:
    """Schema errors and broken CEL rules for ``manifest`` as the API server would see them."""
    root = _root_schema()
    defaulted = apply_defaults(manifest, root)
    try:
        validate_object(defaulted)
    except AssertionError as error:
        return [str(error)]
    return broken_cel_rules(defaulted, root)


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_valid_policies_pass_schema_and_every_cel_rule(path: Path):
    manifest = yaml.safe_load(path.read_text())
    assert api_server_problems(manifest) == []


def _policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lumen.dev/v1alpha1",
        "kind": "LumenAlertPolicy",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"service": "api", **spec},
    }


_RATIO = {"errors": "sum(rate(e[{{window}}]))", "total": "sum(rate(t[{{window}}]))"}
_SLO = {"name": "a", "objective": 99.9, "sli": {"ratio": _RATIO}}

_PROBE = {"name": "ion-api", "url": "http://ion-api:8080/health", "fields": {"s": "$.status"}}
_HEADER = {"name": "Authorization", "secret": {"name": "ion-api", "key": "authorization"}}


def _probe(**changes: Any) -> dict[str, Any]:
    return _policy(exporter={"probes": [{**_PROBE, **changes}]})


_PG = {"name": "lumen-postgres", "key": "url"}


def _redis(url: str, **store: Any) -> dict[str, Any]:
    return _policy(threader={"store": {"type": "redis", "url": url, **store}})


# Policies both the API server (schema + CEL) and the loader must reject.
REJECTED = {
    "value map of no field": _probe(valueMaps={"t": {"up": 1}}),
    "value map of a field, without fields": _policy(
        exporter={"probes": [{"name": "a", "url": "http://a/", "valueMaps": {"s": {"up": 1}}}]}
    ),
    "value map with too many entries": _probe(valueMaps={"s": {f"v{n}": n for n in range(65)}}),
    "value map to text": _probe(valueMaps={"s": {"up": "1"}}),
    "value map keyed by no metric name": _probe(valueMaps={"a-b": {"up": 1}}),
    "counter keyed by no metric name": _probe(countValues={"persona-count": "$.persona"}),
    "status out of range": _probe(expectedStatus=[200, 99]),
    "status as text": _probe(expectedStatus=["200"]),
    "too many statuses": _probe(expectedStatus=[200] * 17),
    "unknown method": _probe(method="PUT"),
    "no distinct value": _probe(maxDistinctValues=0),
    "too many distinct values": _probe(maxDistinctValues=1001),
    "header name with a colon": _probe(headers=[_HEADER | {"name": "Authorization:"}]),
    "header twice": _probe(headers=[_HEADER, _HEADER]),
    "header without a secret": _probe(headers=[{"name": "Authorization"}]),
    "header value inline": _probe(headers=[_HEADER | {"secret": "Bearer x"}]),
    "expiry that is no duration": _policy(exporter={"pipeline": {"expireAfter": "2 days"}}),
    "two SLI kinds": _policy(
        slos=[{**_SLO, "sli": {"ratio": _RATIO, "runs": {"success": "s", "total": "t"}}}]
    ),
    "no SLI kind": _policy(slos=[{**_SLO, "sli": {}}]),
    "ratio without window": _policy(
        slos=[{**_SLO, "sli": {"ratio": {**_RATIO, "total": "sum(rate(t[5m]))"}}}]
    ),
    "objective 100": _policy(slos=[{**_SLO, "objective": 100}]),
    "duplicate SLO names": _policy(slos=[_SLO, _SLO]),
    "receiver of two kinds": _policy(
        routing={
            "receivers": [
                {
                    "name": "r",
                    "webhook": {"url": "http://x.example.com"},
                    "email": {"to": "a@b.c", "from": "a@b.c", "smarthost": "smtp.b.c:25"},
                }
            ]
        }
    ),
    "route to unknown receiver": _policy(
        routing={
            "routes": [{"receiver": "nope"}],
            "receivers": [{"name": "r", "webhook": {"url": "http://x.example.com"}}],
        }
    ),
    "slack without threader": _policy(
        routing={"receivers": [{"name": "r", "slack": {"channel": "#a"}}]}
    ),
    "redis without url": _policy(threader={"store": {"type": "redis"}}),
    "two replicas on a file store": _policy(threader={"replicas": 2}),
    "two replicas without a shared incident database": _policy(
        threader={"store": {"type": "redis", "url": "redis://r:6379/0"}, "replicas": 2}
    ),
    "persistence with two replicas": _policy(
        threader={
            "store": {"type": "redis", "url": "redis://r:6379/0"},
            "incidents": {"databaseURL": {"name": "db", "key": "url"}},
            "replicas": 2,
            "persistence": {"enabled": True},
        }
    ),
    "volatile store that is not redis": _policy(threader={"store": {"allowVolatile": True}}),
    "unknown access mode": _policy(
        exporter={"persistence": {"enabled": True, "accessModes": ["ReadOnlyMany"]}}
    ),
    "no access mode": _policy(threader={"persistence": {"enabled": True, "accessModes": []}}),
    "size that is no quantity": _policy(threader={"persistence": {"size": "1 GB"}}),
    "fractional size": _policy(threader={"persistence": {"size": "1.5Gi"}}),
    "zero size": _policy(exporter={"persistence": {"size": "0"}}),
    "unknown store type": _policy(threader={"store": {"type": "postgres"}}),
    "two replicas on a SQLite store with a shared incident database": _policy(
        threader={"replicas": 2, "incidents": {"databaseURL": _PG}}
    ),
    "postgresql store without its URL": _policy(threader={"store": {"type": "postgresql"}}),
    "postgresql store with its URL inline": _policy(
        threader={"store": {"type": "postgresql", "databaseURL": "postgresql://pg/lumen"}}
    ),
    "postgresql URL in store.url": _policy(
        threader={"store": {"type": "redis", "url": "postgresql://pg:5432/lumen"}}
    ),
    "unknown redis scheme": _policy(threader={"store": {"type": "redis", "url": "redis+ha://r"}}),
    "password in a redis URL": _redis("redis://:pw@r:6379/0"),
    "user and password in a rediss URL": _redis("rediss://lumen:pw@r:6380/0"),
    "password in a sentinel URL": _redis("redis+sentinel://:pw@s-0:26379,s-1:26379/m/0"),
    "password in a cluster URL's query": _redis("redis+cluster://c-0:6379?password=pw"),
    "redis password on a SQLite store": _policy(
        threader={"store": {"passwordSecret": {"name": "redis", "key": "password"}}}
    ),
    "database URL on a redis store": _redis("redis://r:6379/0", databaseURL=_PG),
    "replica acks that are no count": _redis("redis://r:6379/0", replicaAcks="all"),
    "replica acks as a number": _redis("redis://r:6379/0", replicaAcks=1),
    "negative replica acks": _redis("redis://r:6379/0", replicaAcks="-1"),
    "zero replica-ack timeout": _redis("redis://r:6379/0", replicaAckTimeout="0s"),
    "replica-ack timeout that is no duration": _redis("redis://r:6379/0", replicaAckTimeout="1"),
    "replica wait on a postgresql store": _policy(
        threader={"store": {"type": "postgresql", "databaseURL": _PG, "replicaAckTimeout": "5s"}}
    ),
    "pipeline without token": _policy(exporter={"pipeline": {"enabled": True}}),
    "bad label key": _policy(labels={"team-name": "x"}),
    "bad duration": _policy(rules=[{"alert": "A", "expr": "up == 0", "for": "5 min"}]),
    "unknown preset": _policy(presets=[{"name": "database"}]),
    "inline secret": _policy(threader={"botToken": "xoxb-123"}),
    "name too long": {**_policy(), "metadata": {"name": "a" * 49, "namespace": "ns"}},
}


@pytest.mark.parametrize("manifest", REJECTED.values(), ids=REJECTED.keys())
def test_api_server_and_loader_reject_the_same_policies(manifest):
    assert api_server_problems(manifest) != []
    with pytest.raises(InvalidPolicy):
        policy_from_manifest(manifest)


def test_a_minimal_policy_passes_both():
    manifest = _policy(slos=[_SLO])
    assert api_server_problems(manifest) == []
    policy_from_manifest(manifest)


# Policies both must accept: the store types, the deprecated `file` alias, persistence.
ACCEPTED = {
    "sqlite store by default": _policy(threader={}),
    "file alias": _policy(threader={"store": {"type": "file"}}),
    "volatile redis": _policy(
        threader={"store": {"type": "redis", "url": "redis://r:6379/0", "allowVolatile": True}}
    ),
    "persistence on a single redis replica": _policy(
        threader={
            "store": {"type": "redis", "url": "redis://r:6379/0"},
            "persistence": {"enabled": True, "accessModes": ["ReadWriteOncePod"]},
        }
    ),
    "sentinel store with a password and no replica wait, two replicas": _policy(
        threader={
            "store": {
                "type": "redis",
                "url": "redis+sentinel://s-0:26379,s-1:26379,s-2:26379/lumen-master/0",
                "passwordSecret": {"name": "redis", "key": "password"},
                "replicaAcks": "0",
            },
            "incidents": {"databaseURL": _PG},
            "replicas": 2,
        }
    ),
    "cluster store with a user name and a replica wait": _redis(
        "redis+cluster://lumen@c-0:6379,c-1:6379,c-2:6379",
        replicaAcks="2",
        replicaAckTimeout="250ms",
    ),
    "TLS redis with a user name": _redis("rediss://lumen@r:6380/1", replicaAckTimeout="1m30s"),
    "postgresql store for threads and incidents, three replicas": _policy(
        threader={"store": {"type": "postgresql", "databaseURL": _PG}, "replicas": 3}
    ),
    "postgresql store beside a MariaDB incident database": _policy(
        threader={
            "store": {"type": "postgresql", "databaseURL": _PG},
            "incidents": {"databaseURL": {"name": "lumen-mariadb", "key": "url"}},
            "replicas": 2,
        }
    ),
    "every probe feature": _policy(
        exporter={
            "probes": [
                {
                    **_PROBE,
                    "method": "POST",  # (HEAD reads no body: refused with fields)
                    "expectedStatus": [200, 204, 599, 100],
                    "headers": [_HEADER, _HEADER | {"name": "X-Api-Key"}],
                    "valueMaps": {"s": {"down": 0, "locked": 1, "unlocked": 2.5, "": -1}},
                    "countValues": {"lumen_ion_persona": "$.persona"},
                    "maxDistinctValues": 1000,
                }
            ],
            "pipeline": {"expireAfter": "1h30m"},
        }
    ),
    "exporter persistence without a class": _policy(
        exporter={"persistence": {"enabled": True, "storageClassName": "", "size": "512Mi"}}
    ),
}


@pytest.mark.parametrize("manifest", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_api_server_and_loader_accept_the_same_policies(manifest):
    assert api_server_problems(manifest) == []
    policy_from_manifest(manifest)


def test_sqlite_is_the_default_store_for_both():
    policy = policy_from_manifest(_policy(threader={}))
    assert policy.spec.threader is not None
    assert policy.spec.threader.store.type == "sqlite"
    assert policy.spec.threader.store.allow_volatile is False
    assert policy.spec.threader.persistence.enabled is False
    store = _root_schema()["properties"]["spec"]["properties"]["threader"]["properties"]["store"]
    assert store["properties"]["type"]["default"] == "sqlite"
    assert "file" in store["properties"]["type"]["enum"]  # the deprecated alias stays valid
    assert store["properties"]["allowVolatile"]["default"] is False


def test_the_replica_wait_defaults_to_auto_within_a_second():
    policy = policy_from_manifest(_redis("redis+sentinel://s-0:26379/m"))
    assert policy.spec.threader is not None
    store = policy.spec.threader.store
    assert (store.replica_acks, store.replica_ack_timeout) == ("auto", "1s")
    assert (store.password_secret, store.database_url) == (None, None)
    schema = _root_schema()["properties"]["spec"]["properties"]["threader"]["properties"]
    properties = schema["store"]["properties"]
    assert properties["replicaAcks"]["default"] == "auto"
    assert properties["replicaAckTimeout"]["default"] == "1s"
    assert "postgresql" in properties["type"]["enum"]
