"""
Tests of the API-server emulator (tests/support/kube_api.py), over real HTTP.

Each test proves one behaviour of a real Kubernetes API server that the operator relies on,
so that operator tests running against the emulator mean something. The last test runs
a minimal kopf operator end-to-end, configured the way the Lumen operator configures kopf.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import json
import logging
import re
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import kmock
import kopf
import pytest

from tests.support.kube_api import ApiCall, ApiServer, ClusterEmulator, parse_label_selector

LAP = "lumen.dev/v1alpha1/lumenalertpolicies"
LAP_PATH = "/apis/lumen.dev/v1alpha1"
NS = "team-a"

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def api(cluster: ClusterEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=10) as client:
        yield client


def laps(namespace: str | None = NS, name: str | None = None, sub: str | None = None) -> str:
    path = LAP_PATH + (f"/namespaces/{namespace}" if namespace else "") + "/lumenalertpolicies"
    return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def policy(name: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "lumen.dev/v1alpha1",
        "kind": "LumenAlertPolicy",
        "metadata": {"name": name},
        "spec": {"service": name},
    }
    body.update(extra)
    return body


def merge(client: httpx.Client, url: str, patch: Any, **params: str) -> httpx.Response:
    headers = {"Content-Type": "application/merge-patch+json"}
    return client.patch(url, content=json.dumps(patch), headers=headers, params=params)


def json_patch(client: httpx.Client, url: str, ops: list[dict[str, Any]]) -> httpx.Response:
    headers = {"Content-Type": "application/json-patch+json"}
    return client.patch(url, content=json.dumps(ops), headers=headers)


def apply(client: httpx.Client, url: str, doc: str, **params: str) -> httpx.Response:
    headers = {"Content-Type": "application/apply-patch+yaml"}
    return client.patch(url, content=doc, headers=headers, params=params)


def assert_status(response: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    assert response.status_code == code, response.text
    body: dict[str, Any] = response.json()
    assert body["apiVersion"] == "v1"
    assert body["kind"] == "Status"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason
    assert isinstance(body["message"], str) and body["message"]
    return body


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


class WatchStream:
    """Newline-delimited JSON watch events from an open httpx streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next(self) -> dict[str, Any]:
        for line in self._lines:
            if line.strip():
                event: dict[str, Any] = json.loads(line)
                return event
        raise EOFError("the watch stream has ended")

    def rest(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._lines if line.strip()]


@contextlib.contextmanager
def watch(client: httpx.Client, url: str, **params: str) -> Iterator[WatchStream]:
    # Once the headers are here, the server has subscribed & taken its snapshot.
    with client.stream("GET", url, params={"watch": "true", **params}) as response:
        assert response.status_code == 200
        yield WatchStream(response)


# --------------------------------------------------------------------------------------------
# Create / get / list
# --------------------------------------------------------------------------------------------


def test_create_get_list_with_uid_rv_and_generation(
    cluster: ClusterEmulator, api: httpx.Client
) -> None:
    first = api.post(laps(), json=policy("one"))
    assert first.status_code == 201, first.text
    bare = {"metadata": {"name": "two"}, "spec": {"service": "two"}}  # no apiVersion/kind
    second = api.post(laps("team-b"), json=bare)
    assert second.status_code == 201, second.text
    one, two = first.json(), second.json()

    for obj in (one, two):
        assert obj["apiVersion"] == "lumen.dev/v1alpha1"
        assert obj["kind"] == "LumenAlertPolicy"
        assert uuid.UUID(obj["metadata"]["uid"]).version == 4
        assert obj["metadata"]["generation"] == 1
        stamp = obj["metadata"]["creationTimestamp"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
        assert datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo
        assert isinstance(obj["metadata"]["resourceVersion"], str)
    assert one["metadata"]["uid"] != two["metadata"]["uid"]
    assert rv(two) > rv(one)
    assert two["metadata"]["namespace"] == "team-b"

    fetched = api.get(laps(name="one")).json()
    assert fetched == one

    listed = api.get(laps(None))  # cluster-wide: all namespaces
    assert listed.status_code == 200
    body = listed.json()
    assert body["apiVersion"] == "lumen.dev/v1alpha1"
    assert body["kind"] == "LumenAlertPolicyList"
    assert int(body["metadata"]["resourceVersion"]) == cluster.resource_version() >= rv(two)
    assert [item["metadata"]["name"] for item in body["items"]] == ["one", "two"]
    assert all(item["kind"] == "LumenAlertPolicy" for item in body["items"])

    namespaced = api.get(laps("team-b")).json()
    assert [item["metadata"]["name"] for item in namespaced["items"]] == ["two"]

    assert cluster.get(LAP, NS, "one") == one
    assert cluster.get(LAP, NS, "missing") is None
    assert_status(api.get(laps(name="missing")), 404, "NotFound")


def test_built_in_list_items_carry_no_kind(api: httpx.Client) -> None:
    """As on a real server: typed lists omit each item's apiVersion/kind; clients add them."""
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    created = api.post(f"/api/v1/namespaces/{NS}/configmaps", json=body)
    assert created.json()["kind"] == "ConfigMap"
    items = api.get(f"/api/v1/namespaces/{NS}/configmaps").json()["items"]
    assert [item["metadata"]["name"] for item in items] == ["c"]
    assert "kind" not in items[0] and "apiVersion" not in items[0]


def test_every_write_bumps_one_global_resource_version(api: httpx.Client) -> None:
    seen = [rv(api.post(laps(), json=policy("a")).json())]
    seen.append(
        rv(
            api.post(
                "/api/v1/namespaces/team-a/configmaps", json={"metadata": {"name": "c"}}
            ).json()
        )
    )
    seen.append(rv(merge(api, laps(name="a"), {"spec": {"x": 1}}).json()))
    seen.append(rv(merge(api, laps(name="a", sub="status"), {"status": {"y": 1}}).json()))
    seen.append(rv(api.delete("/api/v1/namespaces/team-a/configmaps/c").json()))
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    # A no-op patch writes nothing, like the real server: same resourceVersion.
    assert rv(merge(api, laps(name="a"), {"spec": {"x": 1}}).json()) == seen[-2]


def test_generate_name(api: httpx.Client) -> None:
    names = set()
    for _ in range(3):
        response = api.post(laps(), json={"metadata": {"generateName": "gen-"}, "spec": {}})
        assert response.status_code == 201, response.text
        name = response.json()["metadata"]["name"]
        assert re.fullmatch(r"gen-[a-z0-9]{5}", name), name
        assert response.json()["metadata"]["generateName"] == "gen-"
        names.add(name)
    assert len(names) == 3
    assert_status(api.post(laps(), json={"metadata": {}, "spec": {}}), 422, "Invalid")


def test_duplicate_create_conflicts(api: httpx.Client) -> None:
    assert api.post(laps(), json=policy("dup")).status_code == 201
    body = assert_status(api.post(laps(), json=policy("dup")), 409, "AlreadyExists")
    assert body["details"]["name"] == "dup"
    assert body["details"]["kind"] == "lumenalertpolicies"
    # The same name in another namespace is another object.
    assert api.post(laps("other"), json=policy("dup")).status_code == 201


def test_client_mistakes_are_status_objects_not_500s(api: httpx.Client) -> None:
    mismatch = policy("x", metadata={"name": "x", "namespace": "elsewhere"})
    assert_status(api.post(laps(), json=mismatch), 400, "BadRequest")
    assert_status(
        api.post(laps(), content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "BadRequest",
    )
    assert_status(api.post(laps(), json=policy("Bad_Name")), 422, "Invalid")
    bad_label = policy("y", metadata={"name": "y", "labels": {"a": "not ok!"}})
    assert_status(api.post(laps(), json=bad_label), 422, "Invalid")
    assert_status(api.get("/apis/lumen.dev/v1alpha1/namespaces/x/unknowns"), 404, "NotFound")
    with_rv = policy("z", metadata={"name": "z", "resourceVersion": "5"})
    assert_status(api.post(laps(), json=with_rv), 400, "BadRequest")
    assert_status(api.get(laps(), params={"labelSelector": "a in (b"}), 400, "BadRequest")
    assert_status(api.get(laps(), params={"fieldSelector": "spec.x=1"}), 400, "BadRequest")


def test_namespaces_are_created_implicitly(cluster: ClusterEmulator, api: httpx.Client) -> None:
    with watch(api, "/api/v1/namespaces", resourceVersion=str(cluster.resource_version())) as w:
        created = api.post(laps("brand-new"), json=policy("p")).json()
        event = w.next()
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "brand-new")
    assert event["object"]["status"]["phase"] == "Active"
    assert rv(event["object"]) < rv(created)
    dry = api.post(laps("dry-ns"), json=policy("p"), params={"dryRun": "All"})
    assert dry.status_code == 201
    assert cluster.get("v1/namespaces", None, "dry-ns") is None


def test_strict_namespaces() -> None:
    with (
        ClusterEmulator(strict_namespaces=True) as cluster,
        httpx.Client(base_url=cluster.url) as api,
    ):
        body = assert_status(api.post(laps("nowhere"), json=policy("p")), 404, "NotFound")
        assert body["message"] == 'namespaces "nowhere" not found'
        assert api.post(laps("default"), json=policy("p")).status_code == 201
        assert (
            api.post("/api/v1/namespaces", json={"metadata": {"name": "nowhere"}}).status_code
            == 201
        )
        assert api.post(laps("nowhere"), json=policy("p")).status_code == 201


def test_list_pagination(api: httpx.Client) -> None:
    for index in range(5):
        assert api.post(laps(), json=policy(f"p{index}")).status_code == 201
    names: list[str] = []
    params = {"limit": "2"}
    while True:
        page = api.get(laps(), params=params).json()
        names += [item["metadata"]["name"] for item in page["items"]]
        if not page["metadata"].get("continue"):
            break
        params = {"limit": "2", "continue": page["metadata"]["continue"]}
    assert names == ["p0", "p1", "p2", "p3", "p4"]


# --------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------


def test_merge_patch_with_null_deletes(api: httpx.Client) -> None:
    created = api.post(laps(), json=policy("m", spec={"a": 1, "b": {"c": 1, "d": 2}, "l": [1, 2]}))
    response = merge(api, laps(name="m"), {"spec": {"a": None, "b": {"d": None, "e": 3}, "l": [3]}})
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["spec"] == {"b": {"c": 1, "e": 3}, "l": [3]}
    assert rv(patched) > rv(created.json())
    assert_status(merge(api, laps(name="absent"), {"spec": {}}), 404, "NotFound")
    # A stale resourceVersion in the patch is an optimistic-lock failure.
    stale = {"metadata": {"resourceVersion": created.json()["metadata"]["resourceVersion"]}}
    assert_status(merge(api, laps(name="m"), stale), 409, "Conflict")


def test_json_patch_failed_test_is_422_invalid(api: httpx.Client) -> None:
    created = api.post(laps(), json=policy("j", spec={"n": 1})).json()
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "999999"},
        {"op": "replace", "path": "/spec/n", "value": 2},
    ]
    assert_status(json_patch(api, laps(name="j"), ops), 422, "Invalid")
    assert api.get(laps(name="j")).json() == created  # unchanged

    ops[0]["value"] = created["metadata"]["resourceVersion"]
    response = json_patch(api, laps(name="j"), ops)
    assert response.status_code == 200, response.text
    assert response.json()["spec"] == {"n": 2}

    bad_path = [{"op": "remove", "path": "/spec/nope"}]
    assert_status(json_patch(api, laps(name="j"), bad_path), 422, "Invalid")
    assert_status(json_patch(api, laps(name="j"), [{"op": "explode"}]), 422, "Invalid")


def test_patch_content_types(api: httpx.Client) -> None:
    api.post(laps(), json=policy("c"))
    response = api.patch(laps(name="c"), json={"spec": {}})  # application/json is not a patch
    assert_status(response, 415, "UnsupportedMediaType")
    strategic = {"Content-Type": "application/strategic-merge-patch+json"}
    # As on a real server: no strategic merge patches for custom resources...
    response = api.patch(laps(name="c"), content=b'{"spec": {}}', headers=strategic)
    assert_status(response, 415, "UnsupportedMediaType")
    # ...but built-ins take them (treated as a merge patch here).
    api.post(
        "/api/v1/namespaces/team-a/configmaps", json={"metadata": {"name": "c"}, "data": {"a": "1"}}
    )
    response = api.patch(
        "/api/v1/namespaces/team-a/configmaps/c",
        content=json.dumps({"data": {"a": None, "b": "2"}}),
        headers=strategic,
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"b": "2"}


def test_server_side_apply(api: httpx.Client) -> None:
    doc = """
apiVersion: lumen.dev/v1alpha1
kind: LumenAlertPolicy
metadata:
  name: sa
  labels: {app: lumen, drop-me: "yes"}
spec:
  service: svc
  a: 1
  b: {x: 1}
"""
    assert_status(apply(api, laps(name="sa"), doc), 400, "BadRequest")  # no fieldManager

    created = apply(api, laps(name="sa"), doc, fieldManager="lumen")  # upsert
    assert created.status_code == 201, created.text
    obj = created.json()
    assert uuid.UUID(obj["metadata"]["uid"])
    assert obj["metadata"]["generation"] == 1
    assert obj["metadata"]["labels"] == {"app": "lumen", "drop-me": "yes"}
    assert obj["spec"] == {"service": "svc", "a": 1, "b": {"x": 1}}

    # Another client (kubectl-ish, a merge patch) sets its own field.
    patched = merge(api, laps(name="sa"), {"spec": {"extra": "theirs"}}, fieldManager="kubectl")
    assert patched.status_code == 200, patched.text

    # The manager drops spec.a and a label; it changes spec.b.
    doc2 = doc.replace("  a: 1\n", "").replace(', drop-me: "yes"', "").replace("x: 1", "x: 2")
    second = apply(api, laps(name="sa"), doc2, fieldManager="lumen")
    assert second.status_code == 200, second.text
    obj2 = second.json()
    assert obj2["spec"] == {"service": "svc", "b": {"x": 2}, "extra": "theirs"}
    assert obj2["metadata"]["labels"] == {"app": "lumen"}
    assert obj2["metadata"]["uid"] == obj["metadata"]["uid"]
    assert obj2["metadata"]["generation"] == 3

    # Another applier changing a field the first one owns: a conflict, unless forced.
    doc3 = "apiVersion: lumen.dev/v1alpha1\nkind: LumenAlertPolicy\nspec: {service: other}\n"
    conflict = assert_status(
        apply(api, laps(name="sa"), doc3, fieldManager="rival"), 409, "Conflict"
    )
    assert ".spec.service" in conflict["message"]
    forced = apply(api, laps(name="sa"), doc3, fieldManager="rival", force="true")
    assert forced.status_code == 200, forced.text
    assert forced.json()["spec"]["service"] == "other"

    # Status in an apply to the main resource is ignored (status is a subresource).
    doc4 = doc2 + "status: {phase: Ready}\n"
    assert (
        "status" not in apply(api, laps(name="sa"), doc4, fieldManager="lumen", force="true").json()
    )

    # JSON works too (it is YAML); apiVersion & kind are required.
    as_json = json.dumps({"metadata": {"name": "sa"}, "spec": {"a": 1}})
    assert_status(apply(api, laps(name="sa"), as_json, fieldManager="x"), 400, "BadRequest")
    as_json = json.dumps(policy("sa", spec={"a": 1}))
    applied = apply(api, laps(name="sa"), as_json, fieldManager="json", force="true")
    assert applied.status_code == 200, applied.text
    assert applied.json()["spec"]["a"] == 1


def test_generation_tracks_spec_only(api: httpx.Client) -> None:
    obj = api.post(laps(), json=policy("g")).json()
    assert obj["metadata"]["generation"] == 1
    steps = [
        (laps(name="g", sub="status"), {"status": {"phase": "Ready"}}, 1),
        (laps(name="g"), {"metadata": {"labels": {"x": "y"}, "annotations": {"a": "b"}}}, 1),
        (laps(name="g"), {"spec": {"service": "changed"}}, 2),
        (laps(name="g"), {"spec": {"new": [1]}}, 3),
    ]
    last_rv = rv(obj)
    for url, patch, generation in steps:
        obj = merge(api, url, patch).json()
        assert obj["metadata"]["generation"] == generation, patch
        assert rv(obj) > last_rv
        last_rv = rv(obj)


def test_status_subresource_isolation(api: httpx.Client) -> None:
    created = api.post(laps(), json=policy("s", status={"phase": "Fake"})).json()
    assert "status" not in created  # ignored on create

    main = merge(api, laps(name="s"), {"spec": {"service": "new"}, "status": {"phase": "Nope"}})
    assert main.json()["spec"]["service"] == "new"
    assert "status" not in main.json()

    status = merge(
        api, laps(name="s", sub="status"), {"spec": {"service": "x"}, "status": {"phase": "Ok"}}
    )
    assert status.status_code == 200, status.text
    assert status.json()["status"] == {"phase": "Ok"}
    assert status.json()["spec"]["service"] == "new"
    assert status.json()["metadata"]["generation"] == 2  # only the main spec change counted

    current = status.json()
    current["status"] = {"phase": "Replaced"}
    current["spec"] = {"service": "ignored"}
    put = api.put(laps(name="s", sub="status"), json=current)
    assert put.status_code == 200, put.text
    assert put.json()["status"] == {"phase": "Replaced"}
    assert put.json()["spec"] == {"service": "new"}

    # A PUT to the main resource keeps the stored status.
    body = put.json()
    body["spec"] = {"service": "put"}
    del body["status"]
    replaced = api.put(laps(name="s"), json=body)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["status"] == {"phase": "Replaced"}
    assert replaced.json()["spec"] == {"service": "put"}
    assert api.get(laps(name="s", sub="status")).json()["status"] == {"phase": "Replaced"}


def test_put_needs_the_current_resource_version(api: httpx.Client) -> None:
    obj = api.post(laps(), json=policy("u")).json()
    merge(api, laps(name="u"), {"spec": {"x": 1}})
    assert_status(api.put(laps(name="u"), json=obj), 409, "Conflict")  # stale
    del obj["metadata"]["resourceVersion"]
    assert_status(api.put(laps(name="u"), json=obj), 422, "Invalid")  # custom resources need it
    renamed = dict(obj, metadata={**obj["metadata"], "name": "other"})
    assert_status(api.put(laps(name="u"), json=renamed), 400, "BadRequest")
    # Built-ins allow unconditional updates.
    api.post("/api/v1/namespaces/team-a/secrets", json={"metadata": {"name": "s"}})
    response = api.put(
        "/api/v1/namespaces/team-a/secrets/s", json={"metadata": {"name": "s"}, "type": "x"}
    )
    assert response.status_code == 200, response.text
    assert_status(
        api.put("/api/v1/namespaces/team-a/secrets/nope", json={"metadata": {"name": "nope"}}),
        404,
        "NotFound",
    )


# --------------------------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------------------------


OPERATOR_KINDS = [
    ("lumen.dev/v1alpha1", "lumenalertpolicies", "LumenAlertPolicy"),
    ("monitoring.coreos.com/v1", "prometheusrules", "PrometheusRule"),
    ("monitoring.coreos.com/v1", "servicemonitors", "ServiceMonitor"),
    ("monitoring.coreos.com/v1alpha1", "alertmanagerconfigs", "AlertmanagerConfig"),
    ("v1", "configmaps", "ConfigMap"),
    ("v1", "secrets", "Secret"),
    ("apps/v1", "deployments", "Deployment"),
    ("v1", "services", "Service"),
]

SELECTOR_CASES = [
    ("app=a", {"a1", "a2"}),
    ("app==a", {"a1", "a2"}),
    ("app!=a", {"b1", "none"}),
    ("app", {"a1", "a2", "b1"}),
    ("!app", {"none"}),
    ("app in (a, b)", {"a1", "a2", "b1"}),
    ("app notin (a)", {"b1", "none"}),
    ("app=a,tier=x", {"a1"}),
    ("app in (a,b),!tier", {"a2", "b1"}),
    ("", {"a1", "a2", "b1", "none"}),
]

LABELS = {"a1": {"app": "a", "tier": "x"}, "a2": {"app": "a"}, "b1": {"app": "b"}, "none": {}}


def collection(api_version: str, plural: str, namespace: str | None = NS) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return prefix + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"


@pytest.mark.parametrize(("api_version", "plural", "kind"), OPERATOR_KINDS)
def test_label_and_field_selectors_on_lists(
    api: httpx.Client, api_version: str, plural: str, kind: str
) -> None:
    for name, labels in LABELS.items():
        body = {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name, "labels": labels},
        }
        assert api.post(collection(api_version, plural), json=body).status_code == 201
    body = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "a9", "labels": {"app": "a"}},
    }
    assert api.post(collection(api_version, plural, "team-b"), json=body).status_code == 201

    for selector, expected in SELECTOR_CASES:
        response = api.get(collection(api_version, plural), params={"labelSelector": selector})
        assert response.status_code == 200, response.text
        assert {item["metadata"]["name"] for item in response.json()["items"]} == expected, selector
        assert response.json()["kind"] == f"{kind}List"

    everywhere = api.get(collection(api_version, plural, None), params={"labelSelector": "app=a"})
    assert {i["metadata"]["name"] for i in everywhere.json()["items"]} == {"a1", "a2", "a9"}
    by_field = api.get(
        collection(api_version, plural, None),
        params={"fieldSelector": "metadata.namespace!=team-a,metadata.name=a9"},
    )
    assert [i["metadata"]["name"] for i in by_field.json()["items"]] == ["a9"]
    assert_status(
        api.get(collection(api_version, plural), params={"labelSelector": "a=b=c"}),
        400,
        "BadRequest",
    )


def test_label_selector_parser() -> None:
    assert parse_label_selector("a in (x, y),!b,c!=d,e==f,g") == parse_label_selector(
        " a in (x,y) , !b , c != d , e == f , g "
    )
    for bad in ["a in (b", "a in ()", "=x", "a==b==c", "a b", "bad key=x", "a=in valid", "a,,b"]:
        with pytest.raises(ValueError):
            parse_label_selector(bad)


def test_watch_honours_selectors_with_transitions(api: httpx.Client) -> None:
    api.post(laps(), json=policy("pre", metadata={"name": "pre", "labels": {"app": "a"}}))
    api.post(laps(), json=policy("other", metadata={"name": "other", "labels": {"app": "b"}}))
    with watch(api, laps(), labelSelector="app=a", timeoutSeconds="2") as stream:
        first = stream.next()
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "pre")
        api.post(laps(), json=policy("new", metadata={"name": "new", "labels": {"app": "a"}}))
        api.post(laps(), json=policy("skip", metadata={"name": "skip", "labels": {"app": "b"}}))
        merge(api, laps(name="pre"), {"metadata": {"labels": {"app": "b"}}})  # leaves the selection
        merge(api, laps(name="other"), {"metadata": {"labels": {"app": "a"}}})  # joins it
        merge(api, laps(name="new"), {"spec": {"x": 1}})
        events = [(e["type"], e["object"]["metadata"]["name"]) for e in stream.rest()]
    assert events == [("ADDED", "new"), ("DELETED", "pre"), ("ADDED", "other"), ("MODIFIED", "new")]


def test_watch_field_selector_and_cluster_wide(api: httpx.Client) -> None:
    with watch(api, laps(None), fieldSelector="metadata.name=x", timeoutSeconds="1") as stream:
        api.post(laps("ns1"), json=policy("x"))
        api.post(laps("ns1"), json=policy("y"))
        api.post(laps("ns2"), json=policy("x"))
        events = [
            (e["object"]["metadata"]["namespace"], e["object"]["metadata"]["name"])
            for e in stream.rest()
        ]
    assert events == [("ns1", "x"), ("ns2", "x")]


# --------------------------------------------------------------------------------------------
# Watch streams
# --------------------------------------------------------------------------------------------


def test_watch_without_rv_lists_then_streams(api: httpx.Client) -> None:
    api.post(laps(), json=policy("old"))
    with watch(api, laps(), timeoutSeconds="1") as stream:
        added = stream.next()
        api.post(laps(), json=policy("new"))
        deleted = api.delete(laps(name="old")).json()
        events = stream.rest()
    assert added["type"] == "ADDED" and added["object"]["metadata"]["name"] == "old"
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "new"),
        ("DELETED", "old"),
    ]
    # DELETED carries the last state with a new resourceVersion.
    assert events[1]["object"]["spec"] == {"service": "old"}
    assert rv(events[1]["object"]) == rv(deleted) > rv(events[0]["object"])


def test_watch_from_resource_version_replays_only_later_events(api: httpx.Client) -> None:
    a = api.post(laps(), json=policy("a")).json()
    b = api.post(laps(), json=policy("b")).json()
    modified = merge(api, laps(name="a"), {"spec": {"v": 2}}).json()
    api.post(laps("elsewhere"), json=policy("c"))  # another namespace: not in this watch
    with watch(
        api, laps(), resourceVersion=b["metadata"]["resourceVersion"], timeoutSeconds="1"
    ) as stream:
        replayed = stream.next()
        merge(api, laps(name="b"), {"spec": {"v": 3}})
        live = stream.rest()
    assert (replayed["type"], replayed["object"]) == ("MODIFIED", modified)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in live] == [("MODIFIED", "b")]
    with watch(
        api, laps(), resourceVersion=a["metadata"]["resourceVersion"], timeoutSeconds="0.5"
    ) as stream:
        names = [e["object"]["metadata"]["name"] for e in stream.rest()]
    assert names == ["b", "a", "b"]
    assert_status(
        api.get(laps(), params={"watch": "true", "resourceVersion": "x"}), 400, "BadRequest"
    )


def test_watch_from_a_too_old_resource_version_is_410_expired() -> None:
    with (
        ClusterEmulator(history_size=3) as cluster,
        httpx.Client(base_url=cluster.url, timeout=10) as api,
    ):
        start = cluster.resource_version()
        for index in range(6):
            api.post(laps(), json=policy(f"p{index}"))
        with watch(api, laps(), resourceVersion=str(start)) as stream:
            events = stream.rest()  # the stream ends by itself
        assert len(events) == 1
        assert events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
        # Within the retained history, resumption works.
        recent = str(cluster.resource_version() - 2)
        with watch(api, laps(), resourceVersion=recent, timeoutSeconds="0.5") as stream:
            assert [e["object"]["metadata"]["name"] for e in stream.rest()] == ["p4", "p5"]


def test_watch_subscribes_before_the_snapshot(cluster: ClusterEmulator) -> None:
    """Objects written while watches start are never lost nor duplicated."""
    total = 150
    done = threading.Event()

    def writer() -> None:
        with httpx.Client(base_url=cluster.url, timeout=10) as client:
            for index in range(total):
                client.post(laps(), json={"metadata": {"name": f"o{index:03d}"}})
        done.set()

    def watcher(results: list[list[str]]) -> None:
        with httpx.Client(base_url=cluster.url, timeout=10) as client:
            seen: list[str] = []
            with watch(client, laps(), timeoutSeconds="10") as stream:
                while len(set(seen)) < total:
                    event = stream.next()
                    assert event["type"] == "ADDED"
                    seen.append(event["object"]["metadata"]["name"])
            results.append(seen)

    results: list[list[str]] = []
    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=watcher, args=(results,)) for _ in range(8)]
    for thread in threads:
        thread.start()
        time.sleep(0.01)  # stagger the watch starts across the writes
    for thread in threads:
        thread.join(timeout=20)
    assert done.is_set()
    assert len(results) == 8
    for seen in results:
        assert sorted(seen) == [f"o{index:03d}" for index in range(total)]  # all, once each


def test_watch_bookmarks() -> None:
    with (
        ClusterEmulator(bookmark_interval=0.2) as cluster,
        httpx.Client(base_url=cluster.url, timeout=10) as api,
    ):
        api.post(laps(), json=policy("b"))
        with watch(api, laps(), allowWatchBookmarks="true", timeoutSeconds="1.1") as stream:
            events = stream.rest()
        bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
        assert len(bookmarks) >= 3
        for event in bookmarks:
            assert event["object"] == {
                "apiVersion": "lumen.dev/v1alpha1",
                "kind": "LumenAlertPolicy",
                "metadata": {"resourceVersion": str(cluster.resource_version())},
            }
        with watch(api, laps(), timeoutSeconds="0.5") as stream:
            assert [e["type"] for e in stream.rest()] == ["ADDED"]  # no bookmarks unless asked
        params = {"allowWatchBookmarks": "true", "sendInitialEvents": "true"}
        with watch(
            api, laps(), resourceVersionMatch="NotOlderThan", timeoutSeconds="0.1", **params
        ) as stream:
            first, end = stream.next(), stream.next()
        assert first["type"] == "ADDED"
        assert end["type"] == "BOOKMARK"
        assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_timeout_seconds_ends_the_stream_cleanly(api: httpx.Client) -> None:
    started = time.monotonic()
    with watch(api, laps(), timeoutSeconds="1") as stream:
        assert stream.rest() == []
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3


def test_watch_streams_close_on_shutdown() -> None:
    cluster = ClusterEmulator().start()
    with httpx.Client(base_url=cluster.url, timeout=10) as api, watch(api, laps()) as stream:
        started = time.monotonic()
        cluster.stop()
        assert stream.rest() == []
        assert time.monotonic() - started < 2


def test_overlapping_emulators_stop_in_any_order() -> None:
    first = ClusterEmulator().start()
    second = ClusterEmulator().start()
    assert first.url != second.url
    first.stop()
    assert httpx.get(second.url + "/api").status_code == 200
    second.stop()


def test_startup_is_fast() -> None:
    started = time.monotonic()
    with ClusterEmulator() as cluster:
        assert time.monotonic() - started < 0.5
        assert httpx.get(cluster.url + "/version").status_code == 200


# --------------------------------------------------------------------------------------------
# Deletion
# --------------------------------------------------------------------------------------------


def test_delete_preconditions(api: httpx.Client) -> None:
    obj = api.post(laps(), json=policy("d")).json()
    wrong_uid = {"preconditions": {"uid": str(uuid.uuid4())}}
    body = assert_status(api.request("DELETE", laps(name="d"), json=wrong_uid), 409, "Conflict")
    assert "Precondition failed" in body["message"]
    wrong_rv = {"preconditions": {"resourceVersion": "1"}}
    assert_status(api.request("DELETE", laps(name="d"), json=wrong_rv), 409, "Conflict")
    assert api.get(laps(name="d")).status_code == 200

    right = {
        "preconditions": {
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
        }
    }
    assert api.request("DELETE", laps(name="d"), json=right).status_code == 200
    assert_status(api.get(laps(name="d")), 404, "NotFound")
    assert_status(api.delete(laps(name="d")), 404, "NotFound")


def test_finalizers_delay_deletion(api: httpx.Client) -> None:
    api.post(laps(), json=policy("f", metadata={"name": "f", "finalizers": ["lumen.dev/cleanup"]}))
    with watch(api, laps(), timeoutSeconds="1") as stream:
        stream.next()  # ADDED
        deleting = api.delete(laps(name="f"))
        assert deleting.status_code == 202, deleting.text
        assert deleting.json()["metadata"]["deletionTimestamp"]
        assert deleting.json()["metadata"]["generation"] == 2  # as the real server does
        assert api.get(laps(name="f")).json()["metadata"]["deletionTimestamp"]
        assert api.delete(laps(name="f")).status_code == 202  # still terminating, no change

        extra = {"metadata": {"finalizers": ["lumen.dev/cleanup", "more"]}}
        assert_status(merge(api, laps(name="f"), extra), 422, "Invalid")

        released = merge(api, laps(name="f"), {"metadata": {"finalizers": None}})
        assert released.status_code == 200, released.text
        events = stream.rest()
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert "finalizers" not in events[1]["object"]["metadata"]
    assert rv(events[1]["object"]) == rv(released.json()) > rv(events[0]["object"])
    assert_status(api.get(laps(name="f")), 404, "NotFound")


def test_deletecollection(cluster: ClusterEmulator, api: httpx.Client) -> None:
    for name, labels in LABELS.items():
        api.post(laps(), json=policy(name, metadata={"name": name, "labels": labels}))
    response = api.delete(laps(), params={"labelSelector": "app=a"})
    assert response.status_code == 200, response.text
    assert {i["metadata"]["name"] for i in response.json()["items"]} == {"a1", "a2"}
    assert {o["metadata"]["name"] for o in cluster.list(LAP, NS)} == {"b1", "none"}


# --------------------------------------------------------------------------------------------
# Fault injection, garbage collection, request log
# --------------------------------------------------------------------------------------------


def test_fault_injection(cluster: ClusterEmulator, api: httpx.Client) -> None:
    cluster.fail("GET", "v1/configmaps", status=503, times=2)
    for _ in range(2):
        assert_status(api.get("/api/v1/namespaces/team-a/configmaps"), 503, "ServiceUnavailable")
    assert api.get("/api/v1/namespaces/team-a/configmaps").status_code == 200

    cluster.fail("create", "monitoring.coreos.com/v1/prometheusrules", status=429, retry_after=3)
    url = "/apis/monitoring.coreos.com/v1/namespaces/team-a/prometheusrules"
    throttled = api.post(url, json={"metadata": {"name": "r"}})
    body = assert_status(throttled, 429, "TooManyRequests")
    assert throttled.headers["Retry-After"] == "3"
    assert body["details"]["retryAfterSeconds"] == 3
    assert cluster.get("monitoring.coreos.com/v1/prometheusrules", NS, "r") is None
    assert api.post(url, json={"metadata": {"name": "r"}}).status_code == 201

    api.post(laps(), json=policy("p"))
    cluster.fail("patch", LAP, status=500, subresource="status")
    assert merge(api, laps(name="p"), {"spec": {"a": 1}}).status_code == 200  # main: unaffected
    assert_status(merge(api, laps(name="p", sub="status"), {"status": {}}), 500, "InternalError")
    assert merge(api, laps(name="p", sub="status"), {"status": {"ok": 1}}).status_code == 200

    statuses = [c.status for c in cluster.calls() if c.plural == "configmaps"]
    assert statuses == [503, 503, 200]


def test_collect_garbage_deletes_only_orphans_and_cascades(
    cluster: ClusterEmulator, api: httpx.Client
) -> None:
    def make(
        path: str, name: str, *owners: dict[str, Any], finalizers: list[str] | None = None
    ) -> dict[str, Any]:
        refs = [
            {
                "apiVersion": o["apiVersion"],
                "kind": o["kind"],
                "name": o["metadata"]["name"],
                "uid": o["metadata"]["uid"],
            }
            for o in owners
        ]
        meta: dict[str, Any] = {
            "name": name,
            "ownerReferences": refs,
            "finalizers": finalizers or [],
        }
        response = api.post(path, json={"metadata": meta})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    cms = "/api/v1/namespaces/team-a/configmaps"
    secrets = "/api/v1/namespaces/team-a/secrets"
    root = api.post(laps(), json=policy("root")).json()
    keeper = api.post(laps(), json=policy("keeper")).json()
    child = make(cms, "child", root)
    make(secrets, "grandchild", child)
    make(cms, "shared", root, keeper)  # one owner survives
    make(cms, "standalone")  # no owners at all
    impostor = dict(root, metadata={**root["metadata"], "uid": str(uuid.uuid4())})
    make(cms, "wrong-uid", impostor)  # the owner by name exists, but it is another object
    elsewhere = api.post(laps("team-b"), json=policy("root")).json()
    make(cms, "cross-ns", elsewhere)  # owners are looked up in the dependent's namespace
    held = make(cms, "held", root, finalizers=["x/hold"])
    make(secrets, "held-child", held)

    assert sorted(cluster.collect_garbage()) == [
        ("v1/configmaps", NS, "cross-ns"),
        ("v1/configmaps", NS, "wrong-uid"),
    ]
    assert api.delete(laps(name="root")).status_code == 200
    assert sorted(cluster.collect_garbage()) == sorted(
        [
            ("v1/configmaps", NS, "child"),
            ("v1/configmaps", NS, "held"),
            ("v1/secrets", NS, "grandchild"),
        ]
    )
    remaining = {o["metadata"]["name"] for o in cluster.list("v1/configmaps", NS)}
    assert remaining == {"shared", "standalone", "held"}
    held_now = cluster.get("v1/configmaps", NS, "held")
    assert held_now is not None and held_now["metadata"]["deletionTimestamp"]
    assert cluster.get("v1/secrets", NS, "held-child") is not None  # its owner still exists
    merge(api, f"{cms}/held", {"metadata": {"finalizers": None}})
    assert cluster.collect_garbage() == [("v1/secrets", NS, "held-child")]
    assert cluster.collect_garbage() == []


def test_request_log_verbs(cluster: ClusterEmulator, api: httpx.Client) -> None:
    cluster.reset_calls()
    api.post(laps(), json=policy("r"))
    api.get(laps(name="r"))
    api.get(laps())
    with watch(api, laps(), timeoutSeconds="0.1") as stream:
        stream.rest()
    obj = merge(api, laps(name="r", sub="status"), {"status": {"a": 1}}).json()
    api.put(laps(name="r"), json=obj)
    api.delete(laps(name="r"))
    api.delete(laps(name="r"))
    api.delete(laps())
    api.get("/apis/lumen.dev/v1alpha1")
    *calls, discovery = cluster.calls()
    assert discovery == ApiCall("get", "lumen.dev", "v1alpha1", None, None, None, None, 200)
    assert not discovery.is_resource and discovery.resource == ""
    assert all((c.user_agent or "").startswith("python-httpx/") for c in [*calls, discovery])
    expected = [
        ("create", None, None, 201),
        ("get", None, "r", 200),
        ("list", None, None, 200),
        ("watch", None, None, 200),
        ("patch", "status", "r", 200),
        ("update", None, "r", 200),
        ("delete", None, "r", 200),
        ("delete", None, "r", 404),
        ("deletecollection", None, None, 200),
    ]
    assert [(c.verb, c.subresource, c.name, c.status) for c in calls] == expected
    assert calls[0] == ApiCall(
        "create", "lumen.dev", "v1alpha1", "lumenalertpolicies", None, NS, None, 201
    )
    assert calls[0].resource == LAP
    with pytest.raises(dataclasses.FrozenInstanceError):
        calls[0].status = 500  # type: ignore[misc]


def test_discovery_and_bundled_builtins(cluster: ClusterEmulator, api: httpx.Client) -> None:
    server = ApiServer()
    expected = {
        "apps/v1/deployments": ("Deployment", True),
        "v1/services": ("Service", True),
        "v1/configmaps": ("ConfigMap", True),
        "v1/secrets": ("Secret", True),
        "v1/events": ("Event", True),
        "v1/namespaces": ("Namespace", False),
        "coordination.k8s.io/v1/leases": ("Lease", True),
        LAP: ("LumenAlertPolicy", True),
        "monitoring.coreos.com/v1/prometheusrules": ("PrometheusRule", True),
        "monitoring.coreos.com/v1/servicemonitors": ("ServiceMonitor", True),
        "monitoring.coreos.com/v1alpha1/alertmanagerconfigs": ("AlertmanagerConfig", True),
    }
    for key, (kind, namespaced) in expected.items():
        info = server.resources[kmock.resource(key)]
        assert (info.kind, info.namespaced) == (kind, namespaced), key
    assert server.resources[kmock.resource(LAP)].subresources == {"status"}

    groups = {g["name"]: g for g in api.get("/apis").json()["groups"]}
    assert groups["monitoring.coreos.com"]["preferredVersion"]["version"] == "v1"
    assert groups["lumen.dev"]["preferredVersion"]["version"] == "v1alpha1"
    resources = api.get("/apis/lumen.dev/v1alpha1").json()["resources"]
    assert {r["name"] for r in resources} == {"lumenalertpolicies", "lumenalertpolicies/status"}
    assert {"list", "watch", "patch"} <= set(resources[0]["verbs"])
    core = {r["name"]: r for r in api.get("/api/v1").json()["resources"]}
    assert core["configmaps"]["kind"] == "ConfigMap" and core["configmaps"]["namespaced"]
    assert api.get("/api").json()["versions"] == ["v1"]
    assert {n["metadata"]["name"] for n in api.get("/api/v1/namespaces").json()["items"]} >= {
        "default",
        "kube-system",
    }
    assert api.get("/api/v1/namespaces/default").json()["status"]["phase"] == "Active"


def test_put_and_dry_run(cluster: ClusterEmulator, api: httpx.Client) -> None:
    first = cluster.put(
        LAP, {"metadata": {"name": "x", "namespace": NS}, "spec": {"a": 1}, "status": {"s": 1}}
    )
    assert first["status"] == {"s": 1} and first["metadata"]["generation"] == 1
    second = cluster.put(LAP, {"metadata": {"name": "x", "namespace": NS}, "spec": {"a": 2}})
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["generation"] == 2
    assert rv(second) > rv(first)
    before = cluster.resource_version()
    dry = merge(api, laps(name="x"), {"spec": {"a": 3}}, dryRun="All")
    assert dry.status_code == 200 and dry.json()["spec"] == {"a": 3}
    stored = cluster.get(LAP, NS, "x")
    assert stored is not None and stored["spec"] == {"a": 2}
    assert cluster.resource_version() == before


# --------------------------------------------------------------------------------------------
# kopf end-to-end
# --------------------------------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.timeout(45)
def test_kopf_operator_end_to_end(cluster: ClusterEmulator, api: httpx.Client) -> None:
    namespace = "lumen-e2e"
    cluster.put("v1/namespaces", {"metadata": {"name": namespace}})
    registry = kopf.OperatorRegistry()
    created: list[str] = []
    deleted: list[str] = []

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.StatusProgressStorage()
        settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage()
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 1  # reconnects with a resourceVersion every second
        settings.watching.client_timeout = 3
        settings.networking.error_backoffs = [0.1]

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=cluster.url, insecure=True, scheme=None, token=None)

    @kopf.on.create("lumen.dev", "v1alpha1", "lumenalertpolicies", registry=registry)
    def on_create(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        created.append(body["metadata"]["name"])
        patch.status["phase"] = "Ready"
        kopf.event(body, type="Normal", reason="Rendered", message="rules rendered")

    @kopf.on.delete("lumen.dev", "v1alpha1", "lumenalertpolicies", registry=registry)
    def on_delete(body: kopf.Body, **_: Any) -> None:
        deleted.append(body["metadata"]["name"])

    records = _Records()
    kopf_logger = logging.getLogger("kopf")
    old_level = kopf_logger.level
    kopf_logger.addHandler(records)
    kopf_logger.setLevel(logging.DEBUG)
    stop_flag, ready_flag = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    standalone=True,
                    namespaces=[namespace],
                    stop_flag=stop_flag,
                    ready_flag=ready_flag,
                )
            )
        except BaseException as e:
            failures.append(e)

    thread = threading.Thread(target=run, name="kopf-operator")
    thread.start()
    try:
        assert ready_flag.wait(10)
        wait_for(
            lambda: any(
                c.verb == "watch" and c.plural == "lumenalertpolicies" for c in cluster.calls()
            )
        )

        url = f"{LAP_PATH}/namespaces/{namespace}/lumenalertpolicies"
        assert api.post(url, json=policy("p1")).status_code == 201

        def handled() -> bool:
            obj = cluster.get(LAP, namespace, "p1") or {}
            kopf_status = obj.get("status", {}).get("kopf", {})
            return (
                obj.get("status", {}).get("phase") == "Ready"
                and "last-handled-configuration" in kopf_status
            )

        wait_for(handled)
        time.sleep(1.5)  # let the watch reconnect (server_timeout=1) and any re-handling happen
        assert created == ["p1"]

        obj = cluster.get(LAP, namespace, "p1")
        assert obj is not None and obj["metadata"]["finalizers"] == [
            "kopf.zalando.org/KopfFinalizerMarker"
        ]
        assert obj["metadata"]["generation"] == 1
        calls = cluster.calls()
        status_patches = [
            c
            for c in calls
            if c.verb == "patch" and c.plural == "lumenalertpolicies" and c.subresource == "status"
        ]
        assert status_patches and all(c.status == 200 for c in status_patches)
        watches = [c for c in calls if c.verb == "watch" and c.plural == "lumenalertpolicies"]
        assert len(watches) >= 2  # resumed at least once from a resourceVersion
        events = cluster.list("v1/events", namespace)
        assert [(e["type"], e["reason"], e["message"]) for e in events] == [
            ("Normal", "Rendered", "rules rendered")
        ]
        assert events[0]["involvedObject"]["uid"] == obj["metadata"]["uid"]

        # Deletion goes through kopf's finalizer (a JSON patch guarded by a resourceVersion test).
        assert api.delete(f"{url}/p1").status_code == 202
        wait_for(lambda: cluster.get(LAP, namespace, "p1") is None)
        assert deleted == ["p1"]
        assert created == ["p1"]
    finally:
        stop_flag.set()
        stopped_at = time.monotonic()
        thread.join(timeout=10)
        kopf_logger.removeHandler(records)
        kopf_logger.setLevel(old_level)
    assert not thread.is_alive()
    assert time.monotonic() - stopped_at < 5
    assert not failures
    errors = [r.getMessage() for r in records.records if r.levelno >= logging.ERROR]
    assert not errors
    expected_warnings = {"OS signals are ignored: running not in the main thread."}
    warnings = [r.getMessage() for r in records.records if r.levelno == logging.WARNING]
    assert set(warnings) <= expected_warnings, warnings
    assert not any(c.status >= 500 for c in cluster.calls())
    agents = {(c.user_agent or "").split("/")[0] for c in cluster.calls()}
    assert agents == {"python-httpx", "kopf"}  # the test's own calls and the operator's


def test_objects_over_etcds_limit_are_refused_as_the_api_server_does(api: httpx.Client) -> None:
    """etcd's 1.5 MiB limit on one write (500 ``etcdserver: request is too large``, nothing
    stored), and the API server's 3 MiB limit on a request body (413)."""
    from tests.render.test_sizes import big_policy

    small = big_policy(100)
    small["metadata"]["namespace"] = NS
    assert api.post(laps(), json=small).status_code == 201
    name = small["metadata"]["name"]
    before = api.get(laps(name=name)).json()

    too_big = merge(api, laps(name=name, sub="status"), {"status": {"copy": "x" * 1_000_000}})
    assert too_big.status_code == 500
    assert too_big.json()["message"] == "etcdserver: request is too large"
    assert api.get(laps(name=name)).json() == before, "nothing stored"

    huge = big_policy(256)
    huge["metadata"] = {"name": "huge", "namespace": NS}
    refused = api.post(laps(), json=huge)
    assert refused.status_code == 500, refused.text
    assert refused.json()["message"] == "etcdserver: request is too large"
    assert api.get(laps(name="huge")).status_code == 404

    body = api.post(laps(), content=b" " * (3 * 1024 * 1024 + 1) + b"{}")
    assert body.status_code == 413
    assert body.json()["message"] == "Request entity too large: limit is 3145728"


def test_applies_and_lists_cost_the_same_with_thousands_of_objects(api: httpx.Client) -> None:
    """#8 item 13: every create used to scan every server-side-apply record and every list to
    sort every stored object, so the emulator slowed down as objects piled up (5,000 objects:
    applies 4x, lists 10x slower) and starved the operator it shared the cores with."""

    def apply(client: httpx.Client, index: int) -> float:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"c{index}", "namespace": "bulk"},
            "data": {"k": "v"},
        }
        started = time.perf_counter()
        answer = client.patch(
            f"/api/v1/namespaces/bulk/configmaps/c{index}",
            params={"fieldManager": "bench"},
            content=json.dumps(body),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        assert answer.status_code == 201, answer.text
        return time.perf_counter() - started

    def list_small_namespace(client: httpx.Client) -> float:
        started = time.perf_counter()
        assert client.get("/api/v1/namespaces/small/configmaps").status_code == 200
        return time.perf_counter() - started

    for index in range(5000):
        apply(api, index)
    # Against a second, nearly empty emulator, call for call, so that a busy machine slows
    # both sides alike; medians, so that a few slow calls do not count.
    with ClusterEmulator() as empty, httpx.Client(base_url=empty.url, timeout=10) as small:
        applies = [(apply(small, i), apply(api, 5000 + i)) for i in range(100)]
        lists = [(list_small_namespace(small), list_small_namespace(api)) for _ in range(40)]
    for what, pairs in (("apply", applies), ("list", lists)):
        few, many = (statistics.median(side) for side in zip(*pairs, strict=True))
        assert many < 2.5 * few, f"{what}: {few * 1e3:.2f} ms with few objects, {many * 1e3:.2f} ms"


# --------------------------------------------------------------------------------------------
# Discovery, OpenAPI, CRDs and protobuf bodies (what kubectl and helm need)
# --------------------------------------------------------------------------------------------


def test_version_and_discovery_as_kubectl_reads_them(api: httpx.Client) -> None:
    version = api.get("/version").json()
    assert (version["major"], version["minor"]) == ("1", "35")
    core = api.get("/api/v1").json()
    entries = {entry["name"]: entry for entry in core["resources"]}
    assert entries["namespaces"]["shortNames"] == ["ns"]
    assert entries["namespaces"]["namespaced"] is False
    assert entries["services"]["namespaced"] is True
    # Subresources carry no names of their own: "ns" must resolve to one resource only.
    assert "shortNames" not in entries["namespaces/status"]
    assert entries["namespaces/status"]["singularName"] == ""
    assert entries["pods/log"]["verbs"] == ["get"]
    group = api.get("/apis/rbac.authorization.k8s.io").json()
    assert group["preferredVersion"]["groupVersion"] == "rbac.authorization.k8s.io/v1"
    assert_status(api.get("/apis/nowhere.example.com"), 404, "NotFound")
    assert_status(api.get("/apis/apps/v9"), 404, "NotFound")


def test_openapi_v3_tells_clients_the_server_validates_fields(api: httpx.Client) -> None:
    root = api.get("/openapi/v3").json()
    url = root["paths"]["apis/lumen.dev/v1alpha1"]["serverRelativeURL"]
    document = api.get(url).json()
    operation = document["paths"][
        "/apis/lumen.dev/v1alpha1/namespaces/{namespace}/lumenalertpolicies/{name}"
    ]["patch"]
    assert operation["x-kubernetes-group-version-kind"] == {
        "group": "lumen.dev",
        "version": "v1alpha1",
        "kind": "LumenAlertPolicy",
    }
    assert {"name": "fieldValidation", "in": "query"}.items() <= operation["parameters"][2].items()
    assert (
        "/api/v1/namespaces/{name}"
        in api.get(root["paths"]["api/v1"]["serverRelativeURL"]).json()["paths"]
    )
    assert_status(api.get("/openapi/v3/apis/nowhere.example.com/v1"), 404, "NotFound")
    assert_status(api.get("/openapi/v2"), 404, "NotFound")  # not served: no schemas here


def widget_crd(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}}
            ],
            **spec,
        },
    }


CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/example.com/v1/namespaces/team-a/widgets"


def test_a_crd_serves_its_kind_until_deleted_with_its_objects(api: httpx.Client) -> None:
    assert_status(api.get(WIDGETS), 404, "NotFound")
    assert api.post(CRD_PATH, json=widget_crd()).status_code == 201
    crd = api.get(f"{CRD_PATH}/widgets.example.com").json()
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["storedVersions"] == ["v1"]
    assert crd["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]
    (entry, status) = api.get("/apis/example.com/v1").json()["resources"]
    assert (entry["name"], entry["kind"], entry["shortNames"]) == ("widgets", "Widget", ["wd"])
    assert status["name"] == "widgets/status"

    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    kept = {**widget, "metadata": {"name": "kept", "finalizers": ["example.com/hold"]}}
    assert api.post(WIDGETS, json=widget).status_code == 201
    assert api.post(WIDGETS, json=kept).status_code == 201
    assert api.delete(f"{CRD_PATH}/widgets.example.com").status_code == 202  # finalized
    # Terminating: its objects are deleted; one with a finalizer holds the CRD back.
    assert api.get(f"{WIDGETS}/w").status_code == 404
    assert api.get(f"{WIDGETS}/kept").json()["metadata"]["deletionTimestamp"]
    assert_status(api.post(WIDGETS, json=widget), 405, "MethodNotAllowed")
    terminating = api.get(f"{CRD_PATH}/widgets.example.com").json()
    assert {"type": "Terminating", "status": "True"}.items() <= terminating["status"]["conditions"][
        -1
    ].items()

    assert merge(api, f"{WIDGETS}/kept", {"metadata": {"finalizers": None}}).status_code == 200
    assert api.get(f"{CRD_PATH}/widgets.example.com").status_code == 404
    assert_status(api.get(WIDGETS), 404, "NotFound")
    assert api.get("/apis/example.com/v1").status_code == 404


def test_an_invalid_crd_is_refused(api: httpx.Client) -> None:
    misnamed = widget_crd()
    misnamed["metadata"]["name"] = "gadgets.example.com"
    body = assert_status(api.post(CRD_PATH, json=misnamed), 422, "Invalid")
    assert "spec.names.plural" in body["message"]
    two_storages = widget_crd(
        versions=[{"name": v, "served": True, "storage": True} for v in ("v1", "v2")]
    )
    assert_status(api.post(CRD_PATH, json=two_storages), 422, "Invalid")
    assert_status(api.get(WIDGETS), 404, "NotFound")


def pb_field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return pb_varint(number << 3 | 2) + pb_varint(len(value)) + value


def pb_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def pb_object(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = pb_field(1, api_version.encode()) + pb_field(2, kind.encode())
    return b"k8s\x00" + pb_field(1, type_meta) + pb_field(2, raw)


def test_protobuf_bodies_of_known_kinds_are_read(api: httpx.Client) -> None:
    labels = pb_field(1, b"owner") + pb_field(2, b"helm")
    meta = pb_field(1, b"release") + pb_field(2, b"") + pb_field(11, labels)
    data = pb_field(1, b"release") + pb_field(2, b"\x00\xffpayload")
    secret = pb_field(1, meta) + pb_field(2, data) + pb_field(3, b"helm.sh/release.v1")
    headers = {"Content-Type": "application/vnd.kubernetes.protobuf"}
    created = api.post(
        f"/api/v1/namespaces/{NS}/secrets",
        content=pb_object("v1", "Secret", secret),
        headers=headers,
    )
    assert created.status_code == 201, created.text
    stored = api.get(f"/api/v1/namespaces/{NS}/secrets/release").json()
    assert stored["metadata"]["labels"] == {"owner": "helm"}
    assert "generateName" not in stored["metadata"]  # Go sends empty strings; JSON omits them
    assert stored["type"] == "helm.sh/release.v1"
    assert stored["data"] == {"release": base64.b64encode(b"\x00\xffpayload").decode()}

    pod = pb_field(1, pb_field(1, b"p"))
    refused = api.post(
        f"/api/v1/namespaces/{NS}/pods", content=pb_object("v1", "Pod", pod), headers=headers
    )
    assert (
        "no protobuf schema for v1, Kind=Pod"
        in assert_status(refused, 415, "UnsupportedMediaType")["message"]
    )


TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def test_crd_kinds_are_listed_and_watched_as_tables_when_asked(api: httpx.Client) -> None:
    columns = [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]
    crd = widget_crd()
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = columns
    assert api.post(CRD_PATH, json=crd).status_code == 201
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert api.post(WIDGETS, json={**widget, "spec": {"size": 3}}).status_code == 201

    plain = api.get(WIDGETS).json()
    assert plain["kind"] == "WidgetList"
    table = api.get(WIDGETS, headers={"Accept": TABLE_ACCEPT}).json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size"]
    (row,) = table["rows"]
    assert row["cells"] == ["w", 3]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "w"

    params = {"watch": "true", "timeoutSeconds": "0.2"}
    headers = {"Accept": TABLE_ACCEPT}
    with api.stream("GET", WIDGETS, params=params, headers=headers) as response:
        events = [json.loads(line) for line in response.iter_lines() if line.strip()]
    assert [(e["type"], e["object"]["kind"]) for e in events] == [("ADDED", "Table")]
    assert events[0]["object"]["rows"][0]["cells"] == ["w", 3]
