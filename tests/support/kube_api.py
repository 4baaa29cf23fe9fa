"""
An in-memory Kubernetes API server for tests, built on kmock's ``KubernetesEmulator``.

No real API server can run where these tests run, so the operator (kopf plus the operator's
own aiohttp client) is tested against :class:`ApiServer`: a kmock emulator that adds the API
server semantics the operator depends on — resourceVersions from one etcd-like counter, uids,
generations, the status subresource, all four patch types incl. server-side apply with
a simple managed-fields model, finalizers, delete preconditions, label/field selectors,
watch streams with resumption from a resourceVersion, bookmarks, 410 Expired, server-side
timeouts — and its failures, always as Kubernetes ``Status`` objects.

It is also enough of a server for the real ``kubectl`` and ``helm`` (tests/support/kube_cli.py):
it reports Kubernetes v1.35, serves discovery (subresources as kubectl expects them) and a
minimal OpenAPI v3 (the PATCH parameters only, so kubectl leaves field validation to the
server), makes the kinds of CustomResourceDefinition objects served (Established, printer
columns as ``kubectl get`` tables, unknown fields pruned or refused by the CRD's schema,
instances deleted with the CRD), and reads the protobuf bodies of typed Go clients for
Secrets, ConfigMaps, Namespaces and DeleteOptions (helm's release storage). Not emulated:
controllers (no pods run, Deployments get no status, namespaces are deleted without their
contents), RBAC, admission, schemas and tables of built-in kinds, ``managedFields`` in
responses, OpenAPI v2 and aggregated discovery (clients fall back to per-group documents).

Tests are synchronous (no pytest-asyncio), so :class:`ClusterEmulator` runs the server with
a real HTTP port in a background thread with its own event loop::

    with ClusterEmulator() as cluster:
        httpx.post(f"{cluster.url}/api/v1/namespaces/default/configmaps", json={...})
        assert cluster.get("v1/configmaps", "default", "x") is not None

Resources are addressed as kmock does: ``"group/version/plural"``, e.g. ``"v1/secrets"``,
``"monitoring.coreos.com/v1/prometheusrules"``.

All state lives on the server's event loop and changes only there; every mutation is done
in synchronous code (no ``await`` between reading, changing and publishing), so requests are
atomic towards each other and a watch that subscribes and snapshots in one step can lose
nothing. ``server.objects[...]`` (kmock's store) holds the objects and their history.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import collections
import contextlib
import copy
import dataclasses
import datetime
import functools
import gzip
import hashlib
import importlib.resources
import json
import random
import re
import traceback
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from typing import Any, Final, TypeVar

import aiohttp.abc
import aiohttp.http
import aiohttp.test_utils
import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml

from tests.support import kube_protobuf
from tests.support.background_loop import BackgroundLoop

__all__ = [
    "ApiCall",
    "ApiError",
    "ApiServer",
    "ClusterEmulator",
    "LabelRequirement",
    "parse_label_selector",
]

T = TypeVar("T")
Path = tuple[str, ...]
ObjKey = tuple[kmock.resource, str | None, str]

ALL_VERBS: Final[frozenset[str]] = frozenset(
    {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
)

# (resource, kind, namespaced, subresources) declared by default on every ApiServer.
DEFAULT_CUSTOM_RESOURCES: Final[tuple[tuple[str, str, bool, frozenset[str]], ...]] = (
    ("lumen.dev/v1alpha1/lumenalertpolicies", "LumenAlertPolicy", True, frozenset({"status"})),
    ("monitoring.coreos.com/v1/prometheusrules", "PrometheusRule", True, frozenset()),
    ("monitoring.coreos.com/v1/servicemonitors", "ServiceMonitor", True, frozenset()),
    ("monitoring.coreos.com/v1alpha1/alertmanagerconfigs", "AlertmanagerConfig", True, frozenset()),
)

# What /version says: the Kubernetes release whose behaviour the emulator follows (helm checks
# charts' kubeVersion against it). The build metadata tells it from a real server.
SERVER_VERSION: Final[dict[str, str]] = {
    "major": "1",
    "minor": "35",
    "emulationMajor": "1",
    "emulationMinor": "35",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "34",
    "gitVersion": "v1.35.0+lumen-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-12-17T00:00:00Z",
    "goVersion": "go1.25.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# Query parameters of every PATCH operation published in the OpenAPI v3 documents.
OPENAPI_PATCH_PARAMETERS: Final[tuple[tuple[str, str], ...]] = (
    ("dryRun", "string"),
    ("fieldManager", "string"),
    ("fieldValidation", "string"),
    ("force", "boolean"),
    ("pretty", "string"),
)

NAMESPACES: Final = kmock.resource("", "v1", "namespaces")
# The column a CRD without additionalPrinterColumns gets.
AGE_COLUMN: Final = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
CRDS: Final = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
# The API server's own finalizer on every CRD: instances go first, then the definition.
CRD_CLEANUP_FINALIZER: Final = "customresourcecleanup.apiextensions.k8s.io"

# Metadata that only the server sets; never taken from request bodies.
SERVER_METADATA: Final[tuple[str, ...]] = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
# Metadata excluded from field ownership (identity + server-managed).
UNTRACKED_METADATA: Final[tuple[str, ...]] = (*SERVER_METADATA, "name", "namespace")
# Metadata maps/lists that Kubernetes omits when empty (Go's omitempty).
OMIT_EMPTY_METADATA: Final[tuple[str, ...]] = (
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
)

REASONS: Final[dict[int, str]] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_PATCH: Final = "application/strategic-merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"
PROTOBUF: Final = "application/vnd.kubernetes.protobuf"
# Bodies of creates and updates ("" is a body without a type, taken as JSON).
OBJECT_MEDIA_TYPES: Final = ("application/json", "application/yaml", PROTOBUF, "")

UNKNOWN_FORMAT: Final = (
    "the body of the request was in an unknown format - accepted media types include"
)
NAMESPACE_MISMATCH: Final = (
    "the namespace of the provided object does not match the namespace sent on the request"
)
MODIFIED_CONFLICT: Final = (
    "the object has been modified; please apply your changes to the latest version and try again"
)

MAX_REQUEST_BYTES: Final = 3 * 1024 * 1024  # the API server's request body limit
# etcd's default --max-request-bytes: a bigger object is refused with a 500 from the API server.
MAX_STORED_BYTES: Final = 1_572_864
ETCD_TOO_LARGE: Final = "etcdserver: request is too large"
MAX_DATA_BYTES: Final = 1024 * 1024  # ConfigMap/Secret data limit
MAX_ANNOTATIONS_BYTES: Final = 256 * 1024
NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # as in Kubernetes' generateName

DNS_LABEL_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN_RE: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
QUALIFIED_NAME_RE: Final = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
LABEL_VALUE_RE: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
DNS_LABEL_NAMED: Final = frozenset({("", "namespaces"), ("", "services")})

# Field selectors supported beyond metadata.name/metadata.namespace (as the real server does).
EXTRA_FIELD_LABELS: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("", "events"): frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "type",
        }
    ),
    ("", "secrets"): frozenset({"type"}),
    ("", "pods"): frozenset({"spec.nodeName", "spec.restartPolicy", "status.phase"}),
}


# --------------------------------------------------------------------------------------------
# Public records & errors
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ApiCall:
    """
    One served request, as the RBAC authorizer would see it, plus the response status.

    ``verb`` is the Kubernetes RBAC verb (get, list, watch, create, update, patch, delete,
    deletecollection). Non-resource requests (discovery: ``/api``, ``/apis/…``, ``/version``)
    are recorded with the lowercase HTTP method as the verb and ``plural=None``.
    ``user_agent`` (not compared) tells the operator's calls from a test's own client calls;
    ``authorization`` (not compared) is the credential it came with (no authentication here:
    tests check what clients present).
    """

    verb: str
    group: str
    version: str
    plural: str | None
    subresource: str | None
    namespace: str | None
    name: str | None
    status: int
    user_agent: str | None = dataclasses.field(default=None, compare=False)
    authorization: str | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def resource(self) -> str:
        """The kmock-style resource key (``group/version/plural``, ``v1/plural``), or ""."""
        if self.plural is None:
            return ""
        return (
            f"{self.group}/{self.version}/{self.plural}"
            if self.group
            else f"{self.version}/{self.plural}"
        )

    @property
    def is_resource(self) -> bool:
        return self.plural is not None


class ApiError(Exception):
    """A Kubernetes API failure, rendered as a ``Status`` object with its HTTP code."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


# --------------------------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LabelRequirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=":
                return present and value == self.values[0]
            case "!=":
                return not present or value != self.values[0]
            case "in":
                return present and value in self.values
            case "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
            case "gt" | "lt":
                try:
                    number = int(value or "")
                except ValueError:
                    return False
                bound = int(self.values[0])
                return number > bound if self.op == "gt" else number < bound
        return False  # pragma: no cover


_KEY_TOKEN = r"[^\s!=<>(),]+"
_EXISTS_RE = re.compile(rf"\s*(!?)\s*({_KEY_TOKEN})\s*")
_EQUALITY_RE = re.compile(rf"\s*({_KEY_TOKEN})\s*(==|=|!=)\s*([^\s!=<>(),]*)\s*")
_SET_RE = re.compile(rf"\s*({_KEY_TOKEN})\s+(in|notin)\s*\(([^()]*)\)\s*")
_NUMERIC_RE = re.compile(rf"\s*({_KEY_TOKEN})\s*([<>])\s*(-?\d+)\s*")


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced parentheses")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError("unbalanced parentheses")
    parts.append("".join(current))
    return parts


def _is_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN_RE.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and QUALIFIED_NAME_RE.fullmatch(name) is not None


def _is_label_value(value: str) -> bool:
    return len(value) <= 63 and LABEL_VALUE_RE.fullmatch(value) is not None


def parse_label_selector(text: str) -> list[LabelRequirement]:
    """Parse a Kubernetes label selector; raise ``ValueError`` if it is malformed."""
    if not text.strip():
        return []
    requirements: list[LabelRequirement] = []
    for part in _split_top_level(text):
        requirement: LabelRequirement
        if m := _SET_RE.fullmatch(part):
            values = tuple(v.strip() for v in m.group(3).split(","))
            if m.group(3).strip() == "" or any(not v for v in values):
                raise ValueError(f"empty value in a set: {part!r}")
            requirement = LabelRequirement(m.group(1), m.group(2), values)
        elif m := _NUMERIC_RE.fullmatch(part):
            requirement = LabelRequirement(
                m.group(1), "gt" if m.group(2) == ">" else "lt", (m.group(3),)
            )
        elif m := _EQUALITY_RE.fullmatch(part):
            requirement = LabelRequirement(
                m.group(1), "!=" if m.group(2) == "!=" else "=", (m.group(3),)
            )
        elif m := _EXISTS_RE.fullmatch(part):
            requirement = LabelRequirement(m.group(2), "!" if m.group(1) else "exists")
        else:
            raise ValueError(f"unable to parse requirement: {part.strip()!r}")
        if not _is_qualified_name(requirement.key):
            raise ValueError(f"invalid label key: {requirement.key!r}")
        if requirement.op not in {"gt", "lt"}:
            for value in requirement.values:
                if not _is_label_value(value):
                    raise ValueError(f"invalid label value: {value!r}")
        requirements.append(requirement)
    return requirements


@dataclasses.dataclass(frozen=True)
class _FieldRequirement:
    field: str
    negate: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        actual = _field_value(obj, self.field)
        return (actual != self.value) if self.negate else (actual == self.value)


def _field_value(obj: Mapping[str, Any], field: str) -> str:
    current: Any = obj
    for part in field.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    return "" if current is None else str(current)


def _parse_field_selector(text: str, allowed: frozenset[str]) -> list[_FieldRequirement]:
    requirements: list[_FieldRequirement] = []
    if not text.strip():
        return requirements
    for part in text.split(","):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*([^,]*?)\s*", part)
        if not m:
            raise ValueError(f"invalid field selector: {part!r}")
        if m.group(1) not in allowed:
            raise ValueError(f'field label not supported: "{m.group(1)}"')
        requirements.append(_FieldRequirement(m.group(1), m.group(2) == "!=", m.group(3)))
    return requirements


# --------------------------------------------------------------------------------------------
# Dict helpers
# --------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, ``null`` deletes, others replace."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _deep_merge(base: Any, doc: Any) -> Any:
    """Apply-merge: dicts merge recursively; lists & scalars replace; ``None`` means unset."""
    if not isinstance(doc, dict) or not isinstance(base, dict):
        return copy.deepcopy(doc)
    result = dict(base)
    for key, value in doc.items():
        if value is not None:
            result[key] = _deep_merge(base.get(key), value)
    return result


def _drop_nones(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _drop_nones(v) for k, v in doc.items() if v is not None}
    return doc


def _leaves(doc: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Leaf fields of a document; lists & empty dicts are atomic leaves."""
    if isinstance(doc, dict) and (doc or not prefix):
        found: dict[Path, Any] = {}
        for key, value in doc.items():
            found.update(_leaves(value, (*prefix, str(key))))
        return found
    return {prefix: doc}


def _tracked(obj: Mapping[str, Any], region: str) -> dict[str, Any]:
    """The part of an object whose fields have owners: no identity/server metadata."""
    result = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("apiVersion", "kind")}
    if isinstance(result.get("metadata"), dict):
        meta = {k: v for k, v in result["metadata"].items() if k not in UNTRACKED_METADATA}
        if meta:
            result["metadata"] = meta
        else:
            del result["metadata"]
    if region == "status":
        return {"status": result["status"]} if "status" in result else {}
    if region == "main":
        result.pop("status", None)
    return result


def _is_prefix(short: Path, long: Path) -> bool:
    return len(short) < len(long) and long[: len(short)] == short


def _delete_path(obj: dict[str, Any], path: Path) -> None:
    parents: list[tuple[dict[str, Any], str]] = []
    current: Any = obj
    for part in path[:-1]:
        if not isinstance(current, dict) or part not in current:
            return
        parents.append((current, part))
        current = current[part]
    if isinstance(current, dict):
        current.pop(path[-1], None)
    # Prune the parents that became empty (but never the metadata itself).
    for parent, part in reversed(parents):
        child = parent[part]
        if isinstance(child, dict) and not child and not (parent is obj and part == "metadata"):
            del parent[part]
        else:
            break


def _essence(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that makes the generation: all but metadata & status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _api_version(res: kmock.resource) -> str:
    return f"{res.group}/{res.version}" if res.group else str(res.version)


def _res_key(res: kmock.resource) -> str:
    return f"{res.group}/{res.version}/{res.plural}" if res.group else f"{res.version}/{res.plural}"


def _qualified(res: kmock.resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else str(res.plural)


def _version_priority(version: str) -> tuple[int, int, int, str]:
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0, version)
    stability = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stability, -int(m.group(1)), -int(m.group(3) or 0), version)


@functools.cache
def _bundled_resources() -> bytes:
    """kmock's bundled built-in resources (as ``load_bundled()``, minus its deprecation warning)."""
    data = importlib.resources.files("kmock._internal").joinpath("resources.json.gz").read_bytes()
    return gzip.decompress(data)


@functools.cache
def _bundled_subresource_verbs() -> dict[tuple[str, str], tuple[str, ...]]:
    """The verbs of built-in subresources (``pods/log``: get), by (groupVersion, name)."""
    return {
        (str(group["groupVersion"]), str(entry["name"])): tuple(entry.get("verbs") or ())
        for group in json.loads(_bundled_resources())
        for entry in group["resources"]
        if "/" in entry["name"]
    }


def _hash(document: Any) -> str:
    """A content hash, as the API server puts in OpenAPI URLs (clients cache by it)."""
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()


def _parse_resource(resource: str | kmock.resource) -> kmock.resource:
    res = resource if isinstance(resource, kmock.resource) else kmock.resource(resource)
    if res.group is None or res.version is None or res.plural is None:
        raise ValueError(f"Expected 'group/version/plural' or 'v1/plural', got {resource!r}")
    return res


# --------------------------------------------------------------------------------------------
# Request parsing
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _ParsedPath:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


def _parse_path(path: str) -> _ParsedPath | tuple[str, str] | None:
    """A resource path, or (group, version) for discovery paths, or None for the others."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    elif len(parts) == 2 and parts[0] == "apis":
        return (parts[1], "")
    else:
        return None
    if not rest:
        return (group, version)
    namespace: str | None = None
    namespace_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if rest[0] == "namespaces" and len(rest) >= 3 and not namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return _ParsedPath(group, version, plural, namespace, name, subresource)


def _verb(method: str, path: _ParsedPath, params: Mapping[str, str]) -> str:
    if method == "GET":
        if params.get("watch", "").lower() in ("true", "1"):
            return "watch"
        return "get" if path.name else "list"
    if method == "DELETE":
        return "delete" if path.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _header(request: kmock.Request, name: str) -> str:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return str(value)
    return ""


def _content_type(request: kmock.Request) -> str:
    return _header(request, "Content-Type").split(";")[0].strip().lower()


def _flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "").lower()
    if value in ("", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise ApiError(400, f"invalid boolean value for {name}: {value!r}")


# --------------------------------------------------------------------------------------------
# Watch plumbing
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Change:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    namespace: str | None
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclasses.dataclass(eq=False)
class _Watcher:
    namespace: str | None
    matches: Callable[[Mapping[str, Any]], bool]
    pending: collections.deque[_Change | None] = dataclasses.field(
        default_factory=collections.deque
    )
    wakeup: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def push(self, change: _Change | None) -> None:
        self.pending.append(change)
        self.wakeup.set()

    def translate(self, change: _Change) -> str | None:
        """The event type this watcher sees, considering selector transitions."""
        if self.namespace is not None and change.namespace != self.namespace:
            return None
        now = self.matches(change.obj)
        if change.type == "MODIFIED":
            before = change.old is not None and self.matches(change.old)
            if before and now:
                return "MODIFIED"
            if now:
                return "ADDED"
            return "DELETED" if before else None
        return change.type if now else None


@dataclasses.dataclass
class _Fault:
    method: str
    resource: kmock.resource
    status: int
    remaining: int
    retry_after: int | None
    subresource: str | None
    namespace: str | None
    name: str | None
    when: Callable[[Any], bool] | None = None  # on the request's JSON body

    def matches(self, method: str, verb: str, path: _ParsedPath, body: bytes) -> bool:
        method_ok = self.method == "*" or self.method.upper() == method or self.method == verb
        return (
            method_ok
            and self.resource == kmock.resource(path.group, path.version, path.plural)
            and self.subresource == path.subresource
            and (self.namespace is None or self.namespace == path.namespace)
            and (self.name is None or self.name == path.name)
            and (self.when is None or self.when(_json_or_none(body)))
        )


def _crd_problems(crd: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the API server's CRD validation refuses, of what the emulator serves a CRD by."""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [("spec", "Required value")]
    problems: list[tuple[str, str]] = []
    group = spec.get("group")
    names: dict[str, Any] = spec["names"] if isinstance(spec.get("names"), dict) else {}
    if not isinstance(group, str) or not DNS_SUBDOMAIN_RE.fullmatch(group) or "." not in group:
        problems.append(("spec.group", f"Invalid value: {group!r}: should be a domain"))
    for field in ("plural", "kind"):
        if not isinstance(names.get(field), str) or not names[field]:
            problems.append((f"spec.names.{field}", "Required value"))
    name = _meta(crd).get("name")
    if name != f"{names.get('plural')}.{group}":
        problems.append(
            ("metadata.name", f'Invalid value: {name!r}: must be spec.names.plural+"."+spec.group')
        )
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        problems.append(("spec.scope", f"Unsupported value: {scope!r}"))
    versions = spec.get("versions")
    if not isinstance(versions, list) or not all(
        isinstance(v, dict) and isinstance(v.get("name"), str) and v["name"] for v in versions
    ):
        problems.append(("spec.versions", "Invalid value: every version needs a name"))
    elif sum(bool(v.get("storage")) for v in versions) != 1:
        problems.append(
            ("spec.versions", "Invalid value: must have exactly one version marked as storage")
        )
    return problems


_JSONPATH_STEP: Final = re.compile(
    r"\.(?P<field>[^.\[\]]+)"
    r"|\[\?\(@\.(?P<key>[\w.]+)\s*==\s*[\"'](?P<value>[^\"']*)[\"']\)\]"
    r"|\[(?P<index>\d+|\*)\]"
)


def _jsonpath(obj: Any, path: str) -> list[Any]:
    """
    The values at a printer column's JSONPath, in the subset that CRDs use: ``.a.b``,
    ``[0]``, ``[*]`` and ``[?(@.type=="Ready")]``.
    """
    current: list[Any] = [obj]
    for step in _JSONPATH_STEP.finditer(path):
        if step["field"] is not None:
            current = [
                c[step["field"]] for c in current if isinstance(c, dict) and step["field"] in c
            ]
        elif step["key"] is not None:
            current = [
                e
                for c in current
                if isinstance(c, list)
                for e in c
                if isinstance(e, dict) and _field_value(e, step["key"]) == step["value"]
            ]
        elif step["index"] == "*":
            current = [e for c in current if isinstance(c, list) for e in c]
        else:
            index = int(step["index"])
            current = [c[index] for c in current if isinstance(c, list) and index < len(c)]
    return current


def _cell(values: list[Any], kind: str, timestamp: bool) -> Any:
    """A table cell: None when the path found nothing; dates as ages ("5m"), as the server
    renders them (unless ``timestamp``: the default table shows the time itself)."""
    if not values or values[0] is None:
        return None
    value = values[0]
    if kind == "date" and not timestamp:
        try:
            moment = datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return str(value)
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        return _human_duration(now - moment)
    if kind in ("integer", "number", "boolean") and isinstance(value, (int, float, bool)):
        return value
    return ",".join(v if isinstance(v, str) else json.dumps(v) for v in values)


def _human_duration(age: datetime.timedelta) -> str:
    """Kubernetes' duration.HumanDuration: "42s", "5m10s", "3h", "2d4h", "400d", "3y20d"."""
    seconds = int(age.total_seconds())
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 0:
        return "<invalid>"
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def _prune_unknown(value: Any, schema: Mapping[str, Any], path: str, unknown: list[str]) -> Any:
    """``value`` without what a structural schema does not declare; the paths dropped are
    added to ``unknown`` (as the API server names them: ``spec.routes[0].reciever``)."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields")) or (
            additional is True
        )
        result: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(properties, dict) and key in properties:
                result[key] = _prune_unknown(item, properties[key], where, unknown)
            elif isinstance(additional, dict):
                result[key] = _prune_unknown(item, additional, where, unknown)
            elif keep_unknown or schema.get("x-kubernetes-embedded-resource"):
                result[key] = item
            else:
                unknown.append(where)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            _prune_unknown(item, schema["items"], f"{path}[{index}]", unknown)
            for index, item in enumerate(value)
        ]
    return value


def _decode_protobuf(body: bytes) -> dict[str, Any]:
    """A protobuf body as JSON; 415 for kinds whose schema the emulator lacks (all but a few)."""
    try:
        return kube_protobuf.decode(body)
    except kube_protobuf.ProtobufError as e:
        raise ApiError(415, f"the emulator cannot read this protobuf body: {e}") from None


def _check_stored_size(obj: Mapping[str, Any]) -> None:
    """etcd's limit on one write, as the API server reports it (dry runs included)."""
    if len(json.dumps(obj, separators=(",", ":")).encode()) > MAX_STORED_BYTES:
        raise ApiError(500, ETCD_TOO_LARGE)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# The API server
# --------------------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    """
    kmock's Kubernetes emulator with real API-server semantics (see the module docstring).

    Options: ``bookmark_interval`` (seconds between BOOKMARK events on watches that allow them),
    ``history_size`` (watch events retained per resource for resumption; older → 410 Expired),
    ``strict_namespaces`` (creating namespaced objects in a nonexistent namespace → 404, as
    on a real cluster; by default, such a namespace is created implicitly instead — kopf only
    serves namespaces that exist), ``declare_defaults`` (declare Lumen's custom resources).
    """

    bookmark_interval: float = 5.0
    history_size: int = 10_000
    strict_namespaces: bool = False
    declare_defaults: bool = True
    namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease")

    _rv: int = attrs.field(default=1, init=False)
    _history: dict[kmock.resource, collections.deque[_Change]] = attrs.field(
        factory=dict, init=False
    )
    _floors: dict[kmock.resource, int] = attrs.field(factory=dict, init=False)
    _watchers: dict[kmock.resource, set[_Watcher]] = attrs.field(factory=dict, init=False)
    _faults: list[_Fault] = attrs.field(factory=list, init=False)
    _calls: list[ApiCall] = attrs.field(factory=list, init=False)
    _custom: set[kmock.resource] = attrs.field(factory=set, init=False)
    # Resources served because a CustomResourceDefinition object says so: resource → CRD name.
    _crd_served: dict[kmock.resource, str] = attrs.field(factory=dict, init=False)
    _crds_reconciling: set[str] = attrs.field(factory=set, init=False)
    # The openAPIV3Schema of CRD-defined resources: unknown fields are pruned or refused.
    _schemas: dict[kmock.resource, dict[str, Any]] = attrs.field(factory=dict, init=False)
    # Warnings about unknown fields for the response of the request being served (requests
    # are served one at a time between awaits, and none awaits while writing).
    _field_warnings: list[str] = attrs.field(factory=list, init=False)
    # The additionalPrinterColumns of CRD-defined resources, for `kubectl get`'s tables.
    _printer_columns: dict[kmock.resource, list[dict[str, Any]]] = attrs.field(
        factory=dict, init=False
    )
    _owners: dict[ObjKey, dict[Path, set[str]]] = attrs.field(factory=dict, init=False)
    # What each (manager, subresource) last applied to an object, by object: found without a
    # scan, as every create forgets the object's previous life.
    _applied: dict[ObjKey, dict[tuple[str, str], dict[Path, Any]]] = attrs.field(
        factory=dict, init=False
    )
    # Keys of stored objects by resource and namespace, so a list reads only its own objects.
    _index: dict[kmock.resource, dict[str | None, dict[ObjKey, None]]] = attrs.field(
        factory=dict, init=False
    )
    _internal_errors: list[str] = attrs.field(factory=list, init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        # Only the scaffold's set-up: no request reaches kmock's own (race-prone, semantics-free)
        # object handling or its discovery — _handle() below serves both.
        kmock.KubernetesScaffold.__attrs_post_init__(self)
        self.resources.load_data(_bundled_resources())
        if self.declare_defaults:
            for resource, kind, namespaced, subresources in DEFAULT_CUSTOM_RESOURCES:
                self.declare(resource, kind=kind, namespaced=namespaced, subresources=subresources)
        for namespace in self.namespaces:
            self._ensure_namespace(namespace)

    # ---- public API (call on the server's loop, or before it starts) ----

    def declare(
        self,
        resource: str,
        *,
        kind: str,
        namespaced: bool = True,
        subresources: Iterable[str] = (),
        singular: str | None = None,
        shortnames: Iterable[str] = (),
        categories: Iterable[str] = (),
        verbs: Iterable[str] = ALL_VERBS,
        custom: bool = True,
    ) -> None:
        """Declare a (custom) resource for discovery & serving, e.g. as a CRD would."""
        res = _parse_resource(resource)
        self.resources[res] = kmock.ResourceInfo(
            kind=kind,
            namespaced=namespaced,
            singular=singular or kind.lower(),
            subresources=set(subresources),
            shortnames=set(shortnames),
            categories=set(categories),
            verbs=set(verbs),
        )
        if custom:
            self._custom.add(res)

    def fail(
        self,
        method: str,
        resource: str,
        *,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        subresource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> None:
        """
        Answer the next ``times`` matching requests with ``status`` (a proper Status object).

        ``method`` is an HTTP method (``GET``, ``PUT``, ``PATCH``, ``DELETE``) or
        an RBAC verb (``list``, ``watch``, ``create``, …) or ``*``; ``get`` and ``delete``
        match as HTTP methods (so ``get`` also fails lists & watches). ``subresource=None``
        matches only the main resource. 429/503 get a ``Retry-After`` header if given.
        ``when`` narrows it to requests whose JSON body it accepts (e.g. one status patch).
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        self._faults.append(
            _Fault(
                method=method.lower(),
                resource=_parse_resource(resource),
                status=status,
                remaining=times,
                retry_after=retry_after,
                subresource=subresource,
                namespace=namespace,
                name=name,
                when=when,
            )
        )

    def lift(self, method: str, resource: str, *, subresource: str | None = None) -> None:
        """End the faults injected with this method, resource and subresource (an outage ends)."""
        res = _parse_resource(resource)
        self._faults[:] = [
            f
            for f in self._faults
            if (f.method, f.resource, f.subresource) != (method.lower(), res, subresource)
        ]

    @property
    def calls(self) -> list[ApiCall]:
        return list(self._calls)

    def reset_calls(self) -> None:
        self._calls.clear()

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of emulator bugs (unexpected exceptions answered with 500)."""
        return list(self._internal_errors)

    @property
    def resource_version(self) -> int:
        return self._rv

    def live(
        self, resource: str | kmock.resource, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """The current state of an object (not a copy!), or None if absent."""
        return self._live((_parse_resource(resource), namespace, name))

    def select(
        self,
        resource: str | kmock.resource,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Live objects (not copies!), optionally in one namespace and by a label selector."""
        res = _parse_resource(resource)
        reqs = parse_label_selector(label_selector or "")
        return [
            obj
            for key, obj in self._iter_live(res, namespace)
            if all(r.matches(_meta(obj).get("labels") or {}) for r in reqs)
        ]

    def put_object(self, resource: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object directly (test setup); status is taken as given."""
        res = _parse_resource(resource)
        info = self._info(res)
        body = copy.deepcopy(dict(obj))
        meta = _meta(body)
        namespace = meta.get("namespace") if info.namespaced else None
        if info.namespaced and not namespace:
            raise ValueError("Namespaced objects need metadata.namespace")
        name = meta.get("name")
        if not name:
            raise ValueError("put() needs metadata.name")
        key: ObjKey = (res, namespace, name)
        old = self._live(key)
        if old is None:
            return self._create(res, namespace, body, manager="test-setup", keep_status=True)
        new = {"apiVersion": _api_version(res), "kind": self._kind(res), **copy.deepcopy(body)}
        new.setdefault("metadata", {})
        for field in SERVER_METADATA:
            new["metadata"].pop(field, None)
            if field in old["metadata"]:
                new["metadata"][field] = old["metadata"][field]
        return self._update(res, key, old, new, manager="test-setup", main=True)[1]

    def delete_object(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete an object as the API would (finalizers respected)."""
        res = _parse_resource(resource)
        key: ObjKey = (res, namespace if self._info(res).namespaced else None, name)
        return self._delete(res, key, {})[1]

    def collect_garbage(self) -> list[tuple[str, str, str]]:
        """
        Do what Kubernetes' garbage collector does (background propagation), on demand.

        Repeatedly deletes every namespaced object with ownerReferences none of whose owners
        exists any more; an owner exists if an object of its apiVersion/kind with its name
        is found in the dependent's namespace (or cluster-wide for cluster-scoped owners) and
        has the referenced uid. Owners of unknown kinds count as existing (unresolvable).
        Deletion respects finalizers, so a finalized dependent stays (terminating) and keeps
        its own dependents alive. Returns the (resource, namespace, name) deletes issued.
        """
        kinds: dict[tuple[str, str], kmock.resource] = {}
        for res in self.resources:
            info = self.resources[res]
            if info.kind:
                kinds[(_api_version(res), info.kind)] = res
        deleted: list[tuple[str, str, str]] = []
        progress = True
        while progress:
            progress = False
            for key, obj in list(self._iter_live(None, None)):
                res, namespace, name = key
                meta = _meta(obj)
                refs = meta.get("ownerReferences") or []
                if namespace is None or not refs or meta.get("deletionTimestamp"):
                    continue
                if any(self._owner_exists(ref, namespace, kinds) for ref in refs):
                    continue
                self._delete(res, key, {})
                deleted.append((_res_key(res), namespace, name))
                progress = True
        return deleted

    def close_watches(self) -> None:
        """End all watch streams (at shutdown); new ones end immediately."""
        self._closing = True
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.push(None)

    # ---- discovery & OpenAPI (what kubectl and helm read before they touch a resource) ----

    def _served(self) -> list[kmock.resource]:
        """The served resources, by plural name."""
        found = [r for r in self.resources if isinstance(r, kmock.resource)]
        return sorted(found, key=lambda r: str(r.plural))

    def _group_versions(self) -> dict[str, list[str]]:
        """Served versions by group ("" is the core group), most preferred first."""
        found: dict[str, set[str]] = {}
        for res in self._served():
            found.setdefault(str(res.group), set()).add(str(res.version))
        return {g: sorted(vs, key=_version_priority) for g, vs in sorted(found.items())}

    def _api_group(self, group: str, versions: list[str]) -> dict[str, Any]:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        """The APIResourceList of one group/version, subresources as separate entries."""
        group_version = f"{group}/{version}" if group else version
        entries: list[dict[str, Any]] = []
        for res in self._served():
            if (res.group, res.version) != (group, version):
                continue
            info = self.resources[res]
            entry: dict[str, Any] = {
                "name": res.plural,
                "singularName": info.singular or "",
                "namespaced": bool(info.namespaced),
                "kind": self._kind(res),
                "verbs": sorted(info.verbs),
            }
            if info.shortnames:
                entry["shortNames"] = sorted(info.shortnames)
            if info.categories:
                entry["categories"] = sorted(info.categories)
            entries.append(entry)
            # A subresource has no singular name, short names or categories: clients that
            # resolve "ns" must find one resource, not namespaces/status & co. too.
            for subresource in sorted(info.subresources):
                name = f"{res.plural}/{subresource}"
                entries.append(
                    {
                        "name": name,
                        "singularName": "",
                        "namespaced": bool(info.namespaced),
                        "kind": self._kind(res),
                        "verbs": sorted(
                            _bundled_subresource_verbs().get((group_version, name))
                            or ("get", "patch", "update")
                        ),
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": entries,
        }

    def _openapi_documents(self) -> dict[str, dict[str, Any]]:
        """
        A minimal OpenAPI v3 document per group/version: the PATCH operation of each resource
        with its query parameters and GVK. kubectl reads exactly this to learn that the server
        validates fields itself (``fieldValidation``) instead of downloading full schemas for
        client-side validation. No schemas are published (the emulator knows none).
        """
        documents: dict[str, dict[str, Any]] = {}
        for group, versions in self._group_versions().items():
            for version in versions:
                prefix = f"apis/{group}/{version}" if group else f"api/{version}"
                paths: dict[str, Any] = {}
                for res in self._served():
                    if (res.group, res.version) != (group, version):
                        continue
                    info = self.resources[res]
                    scope = "/namespaces/{namespace}" if info.namespaced else ""
                    gvk = {"group": group, "version": version, "kind": self._kind(res)}
                    parameters = [
                        {"name": n, "in": "query", "schema": {"type": t}, "uniqueItems": True}
                        for n, t in OPENAPI_PATCH_PARAMETERS
                    ]
                    paths[f"/{prefix}{scope}/{res.plural}/{{name}}"] = {
                        "patch": {
                            "operationId": f"patch{self._kind(res)}",
                            "parameters": parameters,
                            "x-kubernetes-action": "patch",
                            "x-kubernetes-group-version-kind": gvk,
                            "responses": {"200": {"description": "OK"}},
                        }
                    }
                documents[prefix] = {
                    "openapi": "3.0.0",
                    "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
                    "paths": paths,
                    "components": {"schemas": {}},
                }
        return documents

    def _discovery(self, path: str) -> dict[str, Any] | str:
        """A non-resource endpoint's body (JSON document or plain text); ApiError if unknown."""
        parts = [part for part in path.split("/") if part]
        match parts:
            case []:
                served = ["/api", "/api/v1", "/apis", "/openapi/v3", "/version"]
                for group, versions in self._group_versions().items():
                    if group:
                        served += [f"/apis/{group}", *(f"/apis/{group}/{v}" for v in versions)]
                return {"paths": sorted([*served, "/healthz", "/livez", "/readyz"])}
            case ["healthz" | "livez" | "readyz"]:
                return "ok"
            case ["version"]:
                return dict(SERVER_VERSION)
            case ["api"]:
                return {
                    "kind": "APIVersions",
                    "versions": self._group_versions().get("", []),
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
                    ],
                }
            case ["api", version] if version in self._group_versions().get("", []):
                return self._resource_list("", version)
            case ["apis"]:
                groups = [self._api_group(g, vs) for g, vs in self._group_versions().items() if g]
                return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
            case ["apis", group] if group in self._group_versions() and group:
                versions = self._group_versions()[group]
                return {"kind": "APIGroup", "apiVersion": "v1", **self._api_group(group, versions)}
            case ["apis", group, version] if version in self._group_versions().get(group, []):
                return self._resource_list(group, version)
            case ["openapi", "v3"]:
                return {
                    "paths": {
                        prefix: {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={_hash(doc)}"}
                        for prefix, doc in self._openapi_documents().items()
                    }
                }
            case ["openapi", "v3", *rest] if "/".join(rest) in self._openapi_documents():
                return self._openapi_documents()["/".join(rest)]
        raise ApiError(404, "the server could not find the requested resource")

    # ---- request handling ----

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock's own entry point crashes on some valid URLs (e.g. GET /api/v1/namespaces) while
        # guessing the Kubernetes intentions; we parse resource paths ourselves in _handle().
        body = await raw_request.read()
        try:
            request = await kmock.Request._parse(raw_request, id=len(self._requests))
        except Exception:
            request = kmock.Request(
                id=len(self._requests),
                raw_request=raw_request,
                url=raw_request.url,
                method=raw_request.method,
                params=dict(raw_request.query),
                headers=dict(raw_request.headers),
                cookies=dict(raw_request.cookies),
                body=body,
                text=body.decode("utf-8", errors="replace"),
            )
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as e:
            self._internal_errors.append(traceback.format_exc())
            return self._error_response(ApiError(500, f"emulator error: {e!r}"))

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        method = str(request.method.value).upper()
        params = {str(k): str(v) for k, v in request.params.items()}
        parsed = _parse_path(request.url.path)
        if not isinstance(parsed, _ParsedPath):
            group, version = parsed if parsed is not None else ("", "")
            response: aiohttp.web.StreamResponse = self._serve_discovery(method, request.url.path)
            self._calls.append(
                ApiCall(
                    method.lower(),
                    group,
                    version,
                    None,
                    None,
                    None,
                    None,
                    response.status,
                    user_agent=_header(request, "User-Agent") or None,
                )
            )
            return response

        verb = _verb(method, parsed, params)
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            recorded = True
            call = ApiCall(
                verb,
                parsed.group,
                parsed.version,
                parsed.plural,
                parsed.subresource,
                parsed.namespace,
                parsed.name,
                status,
                user_agent=_header(request, "User-Agent") or None,
                authorization=_header(request, "Authorization") or None,
            )
            self._calls.append(call)

        for fault in self._faults:
            if fault.remaining > 0 and fault.matches(method, verb, parsed, request.body or b""):
                fault.remaining -= 1
                self._faults[:] = [f for f in self._faults if f.remaining > 0]
                headers = {}
                details: dict[str, Any] = {"name": parsed.name or "", "kind": parsed.plural}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                    details["retryAfterSeconds"] = fault.retry_after
                error = ApiError(
                    fault.status,
                    f"injected failure {fault.status} for {verb} {parsed.plural}",
                    details=details,
                    headers=headers,
                )
                response = self._error_response(error)
                record(response.status)
                return response

        self._field_warnings.clear()
        try:
            response = await self._serve(request, method, verb, params, parsed, record)
            for warning in self._field_warnings:
                response.headers.add("Warning", f'299 - "{warning}"')
        except ApiError as e:
            response = self._error_response(e)
        except Exception as e:
            self._internal_errors.append(traceback.format_exc())
            response = self._error_response(ApiError(500, f"emulator error: {e!r}"))
        if not recorded:
            record(response.status)
        return response

    def _serve_discovery(self, method: str, path: str) -> aiohttp.web.Response:
        if method != "GET":
            return self._error_response(ApiError(405, f"method {method} is not allowed"))
        try:
            body = self._discovery(path)
        except ApiError as e:
            return self._error_response(e)
        if isinstance(body, str):
            return aiohttp.web.Response(text=body)
        return self._json(body)

    @staticmethod
    def _error_response(error: ApiError) -> aiohttp.web.Response:
        return aiohttp.web.json_response(error.status(), status=error.code, headers=error.headers)

    async def _serve(
        self,
        request: kmock.Request,
        method: str,
        verb: str,
        params: dict[str, str],
        path: _ParsedPath,
        record: Callable[[int], None],
    ) -> aiohttp.web.StreamResponse:
        res = kmock.resource(path.group, path.version, path.plural)
        if res not in self.resources:
            raise ApiError(404, "the server could not find the requested resource")
        info = self.resources[res]
        if not info.namespaced and path.namespace is not None:
            raise ApiError(404, "the server could not find the requested resource")
        if info.namespaced and path.name is not None and path.namespace is None:
            raise ApiError(404, "the server could not find the requested resource")
        if path.subresource is not None:
            if path.subresource not in info.subresources:
                raise ApiError(404, "the server could not find the requested resource")
            if path.subresource != "status" or verb not in ("get", "update", "patch"):
                raise ApiError(405, f"the emulator does not serve {verb} on {path.subresource}")
        if len(request.body) > MAX_REQUEST_BYTES:
            raise ApiError(413, "Request entity too large: limit is 3145728")
        dry_run = (
            self._dry_run(params)
            if verb in ("create", "update", "patch", "delete", "deletecollection")
            else False
        )

        key: ObjKey = (res, path.namespace, path.name or "")
        match verb:
            case "get":
                obj = self._live(key)
                if obj is None:
                    raise self._not_found(res, path.name or "")
                if self._wants_table(request, res):
                    return self._json(self._table(res, [obj], params))
                return self._json(obj)
            case "list":
                listed = self._list(res, path.namespace, params)
                if self._wants_table(request, res):
                    table = self._table(res, listed["items"], params)
                    table["metadata"] = listed["metadata"]
                    return self._json(table)
                return self._json(listed)
            case "watch":
                return await self._watch(request, res, path, params, record)
            case "create":
                crd = self._live((CRDS, None, self._crd_served.get(res, "")))
                if crd is not None and _meta(crd).get("deletionTimestamp"):
                    raise ApiError(
                        405,
                        "create not allowed while custom resource definition is terminating",
                    )
                if path.name is not None:
                    raise ApiError(405, "POST is not supported on a named object")
                if info.namespaced and path.namespace is None:
                    raise ApiError(405, "POST on the cluster-wide path of a namespaced resource")
                body = self._known_fields(res, self._body(request, OBJECT_MEDIA_TYPES), params)
                manager = self._manager(request, params)
                obj = self._create(res, path.namespace, body, manager=manager, dry_run=dry_run)
                return self._json(obj, status=201)
            case "update":
                if path.name is None:
                    raise ApiError(405, "PUT needs an object name")
                body = self._known_fields(res, self._body(request, OBJECT_MEDIA_TYPES), params)
                manager = self._manager(request, params)
                code, obj = self._put(res, key, body, path.subresource, manager, dry_run)
                return self._json(obj, status=code)
            case "patch":
                if path.name is None:
                    raise ApiError(405, "PATCH needs an object name")
                code, obj = self._patch(request, res, key, path.subresource, params, dry_run)
                return self._json(obj, status=code)
            case "delete":
                options = self._delete_options(request)
                code, obj = self._delete(res, key, options, dry_run=dry_run)
                return self._json(obj, status=code)
            case "deletecollection":
                options = self._delete_options(request)
                selected = self._list(res, path.namespace, params)["items"]
                items = []
                for item in selected:
                    item_meta = item["metadata"]
                    item_ns = item_meta.get("namespace") if info.namespaced else None
                    item_key: ObjKey = (res, item_ns, item_meta["name"])
                    items.append(self._delete(res, item_key, options, dry_run=dry_run)[1])
                return self._json(self._list_envelope(res, items))
        raise ApiError(405, f"method {method} is not allowed")

    # ---- parsing helpers ----

    @staticmethod
    def _dry_run(params: Mapping[str, str]) -> bool:
        value = params.get("dryRun")
        if value is None or value == "":
            return False
        if value != "All":
            raise ApiError(400, f"Invalid dryRun value: {value!r}; only 'All' is supported")
        return True

    @staticmethod
    def _manager(request: kmock.Request, params: Mapping[str, str]) -> str:
        manager = params.get("fieldManager")
        if manager:
            if len(manager) > 128:
                raise ApiError(422, "fieldManager: Too long: may not be longer than 128")
            return manager
        agent = _header(request, "User-Agent")
        return agent.split("/")[0].strip() or "unknown"

    @staticmethod
    def _body(request: kmock.Request, allowed: tuple[str, ...]) -> Any:
        ctype = _content_type(request)
        if ctype not in allowed:
            raise ApiError(415, f"{UNKNOWN_FORMAT}: {', '.join(t for t in allowed if t)}")
        if ctype == PROTOBUF:
            return _decode_protobuf(request.body)
        text = request.body.decode("utf-8", errors="replace")
        if not text.strip():
            raise ApiError(400, "the request body is empty")
        try:
            if ctype in ("application/yaml", APPLY_PATCH):
                # JSON is YAML, and most clients send it; PyYAML's Python parser is slow.
                with contextlib.suppress(ValueError):
                    return json.loads(text)
                return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            return json.loads(text)
        except (ValueError, yaml.YAMLError) as e:
            raise ApiError(400, f"error decoding the request body: {e}") from None

    def _delete_options(self, request: kmock.Request) -> dict[str, Any]:
        if not request.body.strip():
            return {}
        try:
            if _content_type(request) == PROTOBUF:
                options = _decode_protobuf(request.body)
            else:
                options = json.loads(request.body)
        except ValueError as e:
            raise ApiError(400, f"error decoding DeleteOptions: {e}") from None
        if not isinstance(options, dict):
            raise ApiError(400, "DeleteOptions must be an object")
        policy = options.get("propagationPolicy")
        if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
            raise ApiError(422, f"propagationPolicy: Unsupported value: {policy!r}")
        return options

    # ---- store helpers ----

    def _info(self, res: kmock.resource) -> kmock.ResourceInfo:
        if res not in self.resources:
            raise ApiError(
                404, f"the server could not find the requested resource ({_res_key(res)})"
            )
        return self.resources[res]

    def _kind(self, res: kmock.resource) -> str:
        kind = self.resources[res].kind if res in self.resources else None
        return kind or str(res.plural).capitalize()

    def _live(self, key: ObjKey) -> dict[str, Any] | None:
        if key not in self._objects:
            return None
        stored = self._objects[key]
        return None if stored.deleted else stored.raw

    def _iter_live(
        self, res: kmock.resource | None, namespace: str | None
    ) -> Iterator[tuple[ObjKey, dict[str, Any]]]:
        if res is None:
            keys: Iterable[ObjKey] = self._objects.keys()
        elif namespace is not None:
            keys = self._index.get(res, {}).get(namespace, {})
        else:
            keys = [k for keys in self._index.get(res, {}).values() for k in keys]
        for key in sorted(keys, key=lambda k: (k[1] or "", k[2])):
            if namespace is not None and key[1] != namespace:
                continue
            obj = self._live(key)
            if obj is not None:
                yield key, obj

    def _store(self, key: ObjKey, obj: dict[str, Any] | None) -> None:
        if obj is None:
            self._objects[key].delete()
        elif key not in self._objects:
            self._objects[key] = obj
            self._index.setdefault(key[0], {}).setdefault(key[1], {})[key] = None
        else:
            self._objects[key].history.append(obj)

    def _publish(self, res: kmock.resource, change: _Change) -> None:
        history = self._history.setdefault(res, collections.deque())
        history.append(change)
        while len(history) > self.history_size:
            self._floors[res] = history.popleft().rv
        for watcher in self._watchers.get(res, ()):
            watcher.push(change)
        # The API server's CRD controllers react to every change of a definition, and to the
        # last instance of a terminating one going away.
        if res == CRDS:
            self._reconcile_crd(str(change.obj["metadata"]["name"]))
        elif change.type == "DELETED" and res in self._crd_served:
            self._reconcile_crd(self._crd_served[res])

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _not_found(self, res: kmock.resource, name: str) -> ApiError:
        return ApiError(
            404,
            f'{_qualified(res)} "{name}" not found',
            details={"name": name, "group": res.group, "kind": res.plural},
        )

    def _conflict(self, res: kmock.resource, name: str, why: str) -> ApiError:
        return ApiError(
            409,
            f'Operation cannot be fulfilled on {_qualified(res)} "{name}": {why}',
            details={"name": name, "group": res.group, "kind": res.plural},
        )

    def _invalid(self, res: kmock.resource, name: str, causes: list[tuple[str, str]]) -> ApiError:
        text = "; ".join(f"{field}: {message}" for field, message in causes)
        return ApiError(
            422,
            f'{self._kind(res)}{"." + res.group if res.group else ""} "{name}" is invalid: {text}',
            details={
                "name": name,
                "group": res.group,
                "kind": self._kind(res),
                "causes": [
                    {"reason": "FieldValueInvalid", "field": f, "message": m} for f, m in causes
                ],
            },
        )

    def _json(self, obj: Any, status: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.json_response(obj, status=status)

    # ---- validation & normalisation ----

    def _validate(self, res: kmock.resource, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata")
        name = str(_meta(obj).get("name", ""))
        if not isinstance(meta, dict):
            raise ApiError(400, "metadata must be an object")
        causes: list[tuple[str, str]] = []
        if (res.group, res.plural) in DNS_LABEL_NAMED:
            if len(name) > 63 or not DNS_LABEL_RE.fullmatch(name):
                causes.append(
                    ("metadata.name", f"Invalid value: {name!r}: must be a DNS-1123 label")
                )
        elif len(name) > 253 or not DNS_SUBDOMAIN_RE.fullmatch(name):
            causes.append(
                ("metadata.name", f"Invalid value: {name!r}: must be a DNS-1123 subdomain")
            )
        for field in ("labels", "annotations"):
            mapping = meta.get(field)
            if mapping is None:
                continue
            if not isinstance(mapping, dict) or not all(
                isinstance(v, str) for v in mapping.values()
            ):
                raise ApiError(400, f"metadata.{field} must be a map of strings")
            for k, v in mapping.items():
                if not _is_qualified_name(k):
                    causes.append((f"metadata.{field}", f"Invalid value: {k!r}: invalid key"))
                if field == "labels" and not _is_label_value(v):
                    causes.append(("metadata.labels", f"Invalid value: {v!r}: invalid label value"))
            if (
                field == "annotations"
                and sum(len(k) + len(v) for k, v in mapping.items()) > MAX_ANNOTATIONS_BYTES
            ):
                causes.append(("metadata.annotations", "Too long: must have at most 262144 bytes"))
        for field in ("finalizers", "ownerReferences"):
            if meta.get(field) is not None and not isinstance(meta.get(field), list):
                raise ApiError(400, f"metadata.{field} must be a list")
        for ref in meta.get("ownerReferences") or []:
            if not isinstance(ref, dict) or not all(
                ref.get(f) for f in ("apiVersion", "kind", "name", "uid")
            ):
                causes.append(
                    ("metadata.ownerReferences", "apiVersion, kind, name and uid are required")
                )
        if (res.group, res.plural) in (("", "configmaps"), ("", "secrets")):
            size = sum(
                len(k) + len(json.dumps(v))
                for f in ("data", "binaryData", "stringData")
                for k, v in (obj.get(f) or {}).items()
            )
            if size > MAX_DATA_BYTES:
                causes.append(("data", "Too long: must have at most 1048576 bytes"))
        if res == CRDS:
            causes += _crd_problems(obj)
        if causes:
            raise self._invalid(res, name, causes)

    @staticmethod
    def _normalise(obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        for field in OMIT_EMPTY_METADATA:
            if field in meta and not meta[field]:
                del meta[field]

    def _check_identity(
        self, res: kmock.resource, obj: dict[str, Any], key: ObjKey, *, strict_kind: bool
    ) -> None:
        """The body's apiVersion/kind/namespace/name must agree with the URL."""
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if strict_kind and (not api_version or not kind):
            raise ApiError(400, "apiVersion and kind must be set")
        if api_version is not None and api_version != _api_version(res):
            raise ApiError(
                400, f"apiVersion {api_version!r} does not match the URL ({_api_version(res)})"
            )
        if kind is not None and kind != self._kind(res):
            raise ApiError(400, f"kind {kind!r} does not match the URL ({self._kind(res)})")
        meta = _meta(obj)
        if meta.get("name") not in (None, key[2]):
            raise ApiError(
                400,
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({key[2]})",
            )
        if key[1] is not None and meta.get("namespace") not in (None, "", key[1]):
            raise ApiError(400, NAMESPACE_MISMATCH)

    # ---- writes ----

    def _create(
        self,
        res: kmock.resource,
        namespace: str | None,
        body: Any,
        *,
        manager: str,
        dry_run: bool = False,
        keep_status: bool = False,
    ) -> dict[str, Any]:
        info = self._info(res)
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be an object")
        obj = copy.deepcopy(body)
        if not isinstance(obj.get("metadata", {}), dict):
            raise ApiError(400, "metadata must be an object")
        meta = obj.setdefault("metadata", {})
        if obj.get("apiVersion") not in (None, _api_version(res)) or obj.get("kind") not in (
            None,
            self._kind(res),
        ):
            raise ApiError(
                400,
                f"apiVersion/kind do not match the URL ({_api_version(res)}, {self._kind(res)})",
            )
        obj = {"apiVersion": _api_version(res), "kind": self._kind(res), **obj}
        meta = obj["metadata"]
        if info.namespaced:
            if namespace is None:
                namespace = meta.get("namespace")
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(400, NAMESPACE_MISMATCH)
            if not namespace:
                raise ApiError(400, "a namespace is required for namespaced objects")
            meta["namespace"] = namespace
            if self.strict_namespaces and self._live((NAMESPACES, None, namespace)) is None:
                raise self._not_found(NAMESPACES, namespace)
        else:
            namespace = None
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise ApiError(400, "resourceVersion should not be set on objects to be created")
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise self._invalid(
                    res, "", [("metadata.name", "Required value: name or generateName is required")]
                )
            meta["name"] = str(prefix)[:58] + "".join(random.choices(NAME_ALPHABET, k=5))
        key: ObjKey = (res, namespace, meta["name"])
        if self._live(key) is not None:
            raise ApiError(
                409,
                f'{_qualified(res)} "{meta["name"]}" already exists',
                reason="AlreadyExists",
                details={"name": meta["name"], "group": res.group, "kind": res.plural},
            )
        for field in SERVER_METADATA:
            meta.pop(field, None)
        if "status" in info.subresources and not keep_status:
            obj.pop("status", None)
        if res == NAMESPACES:
            # What the API server's defaulting and admission give every new namespace.
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        self._normalise(obj)
        self._validate(res, obj)
        _check_stored_size(obj)
        if dry_run:
            meta["resourceVersion"] = str(self._rv)
            return obj
        if namespace is not None:
            self._ensure_namespace(namespace)  # only if not strict: checked above
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        self._store(key, obj)
        self._forget(key)
        self._take_ownership(key, None, obj, manager)
        self._publish(res, _Change(rv, "ADDED", namespace, obj, None))
        return obj

    def _ensure_namespace(self, name: str) -> None:
        """Create a namespace implicitly, as if an admin had, so that objects never dangle."""
        if self._live((NAMESPACES, None, name)) is None:
            self._create(NAMESPACES, None, {"metadata": {"name": name}}, manager="emulator")

    def _update(
        self,
        res: kmock.resource,
        key: ObjKey,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        manager: str | None,
        main: bool,
        dry_run: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Commit a proposed new state of an existing object (server fields already restored)."""
        self._normalise(new)
        self._validate(res, new)
        old_meta, new_meta = _meta(old), _meta(new)
        if old_meta.get("deletionTimestamp"):
            added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise self._invalid(
                    res,
                    key[2],
                    [
                        (
                            "metadata.finalizers",
                            "Forbidden: no new finalizers can be added if the object is being "
                            f"deleted, found new finalizers {sorted(added)!r}",
                        )
                    ],
                )
        if main and _essence(new) != _essence(old):
            new_meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if new == old:
            return 200, old  # a no-op: no write, no new resourceVersion, no event
        _check_stored_size(new)
        if dry_run:
            return 200, new
        rv = self._next_rv()
        new_meta["resourceVersion"] = str(rv)
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            self._store(key, None)
            self._forget(key)
            self._publish(res, _Change(rv, "DELETED", key[1], new, old))
            return 200, new
        self._store(key, new)
        if manager is not None:
            self._take_ownership(key, old, new, manager)
        self._publish(res, _Change(rv, "MODIFIED", key[1], new, old))
        return 200, new

    def _merge_server_fields(
        self, res: kmock.resource, old: dict[str, Any], new: Any, subresource: str | None
    ) -> dict[str, Any]:
        """Take a client-proposed full object and keep what the client may not change."""
        if not isinstance(new, dict):
            raise ApiError(400, "the object must be a JSON object")
        if not isinstance(new.get("metadata", {}), dict):
            raise ApiError(400, "metadata must be an object")
        info = self.resources[res]
        proposed_rv = _meta(new).get("resourceVersion")
        if proposed_rv not in (None, "") and str(proposed_rv) != old["metadata"].get(
            "resourceVersion"
        ):
            raise self._conflict(res, old["metadata"]["name"], MODIFIED_CONFLICT)
        proposed_uid = _meta(new).get("uid")
        if proposed_uid not in (None, "") and proposed_uid != old["metadata"].get("uid"):
            raise self._conflict(
                res,
                old["metadata"]["name"],
                f"Precondition failed: UID in precondition: {proposed_uid}, "
                f"UID in object meta: {old['metadata'].get('uid')}",
            )
        if subresource == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = copy.deepcopy(new["status"])
            else:
                result.pop("status", None)
            return result
        result = copy.deepcopy(new)
        result["apiVersion"], result["kind"] = old["apiVersion"], old["kind"]
        meta = result.setdefault("metadata", {})
        meta["name"] = old["metadata"]["name"]
        if "namespace" in old["metadata"]:
            meta["namespace"] = old["metadata"]["namespace"]
        else:
            meta.pop("namespace", None)
        for field in SERVER_METADATA:
            meta.pop(field, None)
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
        if "status" in info.subresources:
            if "status" in old:
                result["status"] = copy.deepcopy(old["status"])
            else:
                result.pop("status", None)
        return result

    def _put(
        self,
        res: kmock.resource,
        key: ObjKey,
        body: Any,
        subresource: str | None,
        manager: str,
        dry_run: bool,
    ) -> tuple[int, dict[str, Any]]:
        old = self._live(key)
        if old is None:
            raise self._not_found(res, key[2])
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be an object")
        self._check_identity(res, body, key, strict_kind=False)
        if res in self._custom and not _meta(body).get("resourceVersion"):
            raise self._invalid(
                res,
                key[2],
                [
                    (
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        new = self._merge_server_fields(res, old, body, subresource)
        return self._update(
            res, key, old, new, manager=manager, main=subresource is None, dry_run=dry_run
        )

    def _patch(
        self,
        request: kmock.Request,
        res: kmock.resource,
        key: ObjKey,
        subresource: str | None,
        params: Mapping[str, str],
        dry_run: bool,
    ) -> tuple[int, dict[str, Any]]:
        ctype = _content_type(request)
        if ctype not in (MERGE_PATCH, STRATEGIC_PATCH, JSON_PATCH, APPLY_PATCH):
            raise ApiError(
                415,
                f"{UNKNOWN_FORMAT}: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}"
                + ("" if res in self._custom else f", {STRATEGIC_PATCH}"),
            )
        if ctype == STRATEGIC_PATCH and res in self._custom:
            raise ApiError(415, f"{UNKNOWN_FORMAT}: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}")
        force = _flag(params, "force")
        if ctype == APPLY_PATCH:
            manager = params.get("fieldManager")
            if not manager:
                raise ApiError(
                    400, "PATCH, application/apply-patch+yaml requires fieldManager parameter"
                )
            body = self._known_fields(res, self._body(request, (APPLY_PATCH,)), params)
            return self._apply(res, key, body, subresource, manager, force, dry_run)
        if force:
            raise ApiError(400, "force is only allowed for apply patches")
        manager = self._manager(request, params)
        body = self._body(request, (ctype,))
        if ctype != JSON_PATCH:
            body = self._known_fields(res, body, params)
        old = self._live(key)
        if old is None:
            raise self._not_found(res, key[2])
        if ctype == JSON_PATCH:
            if not isinstance(body, list):
                raise ApiError(400, "a JSON patch must be a list of operations")
            try:
                patched = jsonpatch.apply_patch(copy.deepcopy(old), body, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise self._invalid(
                    res, key[2], [("patch", f"the JSON patch failed: {e}")]
                ) from None
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
                raise self._invalid(
                    res, key[2], [("patch", f"the JSON patch is invalid: {e!r}")]
                ) from None
        else:
            if not isinstance(body, dict):
                raise ApiError(400, "a merge patch must be a JSON object")
            patched = merge_patch(old, body)
        if not isinstance(patched, dict):
            raise self._invalid(res, key[2], [("patch", "the result is not an object")])
        meta = _meta(patched)
        if patched.get("apiVersion") != old["apiVersion"] or patched.get("kind") != old["kind"]:
            raise ApiError(400, "apiVersion and kind cannot be changed")
        if meta.get("name") != key[2] or meta.get("namespace") != old["metadata"].get("namespace"):
            raise ApiError(400, "metadata.name and metadata.namespace cannot be changed")
        new = self._merge_server_fields(res, old, patched, subresource)
        return self._update(
            res, key, old, new, manager=manager, main=subresource is None, dry_run=dry_run
        )

    def _apply(
        self,
        res: kmock.resource,
        key: ObjKey,
        body: Any,
        subresource: str | None,
        manager: str,
        force: bool,
        dry_run: bool,
    ) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            raise ApiError(400, "an apply patch must be an object")
        if not isinstance(body.get("metadata", {}), dict):
            raise ApiError(400, "metadata must be an object")
        self._check_identity(res, body, key, strict_kind=True)
        info = self.resources[res]
        region = (
            "status"
            if subresource == "status"
            else ("main" if "status" in info.subresources else "all")
        )
        doc = _drop_nones(_tracked(body, region))
        old = self._live(key)
        if old is not None:
            proposed_rv = _meta(body).get("resourceVersion")
            if (
                proposed_rv not in (None, "")
                and str(proposed_rv) != old["metadata"]["resourceVersion"]
            ):
                raise self._conflict(res, key[2], MODIFIED_CONFLICT)
        elif subresource == "status":
            raise self._not_found(res, key[2])

        base: dict[str, Any] = copy.deepcopy(old) if old is not None else {"metadata": {}}
        owners = {path: set(who) for path, who in self._owners.get(key, {}).items()}
        new_leaves = _leaves(doc)
        live_leaves = _leaves(_tracked(base, region))
        slot = (manager, subresource or "")
        previous = self._applied.get(key, {}).get(slot, {}) if old is not None else {}

        # Conflicts: changing a field (or replacing its parent/children) that others own.
        conflicts: dict[Path, set[str]] = {}
        for path, value in new_leaves.items():
            for live_path, live_value in live_leaves.items():
                related = (
                    live_path == path or _is_prefix(live_path, path) or _is_prefix(path, live_path)
                )
                if not related or (live_path == path and live_value == value):
                    continue
                if value == {} and _is_prefix(path, live_path):
                    continue  # an empty map only asserts that the map exists: it merges

                others = owners.get(live_path, set()) - {manager}
                if others:
                    conflicts[live_path] = others
        if conflicts and not force:
            text = "; ".join(
                f"conflict with {', '.join(sorted(f'{w!r}' for w in who))}: .{'.'.join(path)}"
                for path, who in sorted(conflicts.items())
            )
            raise ApiError(
                409,
                f"Apply failed with {len(conflicts)} conflict(s): {text}",
                details={
                    "name": key[2],
                    "group": res.group,
                    "kind": res.plural,
                    "causes": [
                        {
                            "reason": "FieldManagerConflict",
                            "field": "." + ".".join(p),
                            "message": f"conflict with {sorted(w)}",
                        }
                        for p, w in sorted(conflicts.items())
                    ],
                },
            )
        for path in conflicts:
            owners[path] = set()

        # Fields this manager applied before but not now: released, removed if no one else owns.
        for path in previous:
            if path in new_leaves:
                continue
            others = owners.get(path, set()) - {manager}
            if others:
                owners[path] = others
            else:
                owners.pop(path, None)
                if not any(_is_prefix(path, live_path) for live_path in live_leaves):
                    _delete_path(base, path)  # (a released map keeps others' fields in it)

        merged = _deep_merge(base, doc)
        for path, value in new_leaves.items():
            if path in live_leaves and live_leaves[path] == value:
                owners[path] = owners.get(path, set()) | {manager}
            else:
                owners[path] = {manager}

        if old is None:
            merged["apiVersion"], merged["kind"] = _api_version(res), self._kind(res)
            merged["metadata"]["name"] = key[2]
            obj = self._create(res, key[1], merged, manager=manager, dry_run=dry_run)
            code = 201
        else:
            merged = self._merge_server_fields(res, old, merged, subresource)
            code, obj = self._update(
                res, key, old, merged, manager=None, main=subresource is None, dry_run=dry_run
            )
        if not dry_run and self._live(key) is not None:
            final_leaves = _leaves(_tracked(obj, "all"))
            self._owners[key] = {p: w for p, w in owners.items() if p in final_leaves and w}
            self._applied.setdefault(key, {})[slot] = new_leaves
        return code, obj

    def _take_ownership(
        self, key: ObjKey, old: dict[str, Any] | None, new: dict[str, Any], manager: str
    ) -> None:
        """Update operations (create/put/patch) own the fields they change."""
        old_leaves = _leaves(_tracked(old, "all")) if old is not None else {}
        new_leaves = _leaves(_tracked(new, "all"))
        owners = self._owners.setdefault(key, {})
        for path, value in new_leaves.items():
            if path not in old_leaves or old_leaves[path] != value:
                owners[path] = {manager}
        for path in list(owners):
            if path not in new_leaves:
                del owners[path]

    def _forget(self, key: ObjKey) -> None:
        self._owners.pop(key, None)
        self._applied.pop(key, None)

    def _delete(
        self, res: kmock.resource, key: ObjKey, options: Mapping[str, Any], *, dry_run: bool = False
    ) -> tuple[int, dict[str, Any]]:
        old = self._live(key)
        if old is None:
            raise self._not_found(res, key[2])
        preconditions = options.get("preconditions") or {}
        if not isinstance(preconditions, dict):
            raise ApiError(400, "preconditions must be an object")
        meta = old["metadata"]
        for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            expected = preconditions.get(field)
            if expected is not None and str(expected) != meta.get(field):
                raise self._conflict(
                    res,
                    key[2],
                    f"Precondition failed: {label} in precondition: {expected}, "
                    f"{label} in object meta: {meta.get(field)}",
                )
        if meta.get("deletionTimestamp"):
            return 202, old  # already terminating
        if meta.get("finalizers"):
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if new["metadata"].get("generation"):
                new["metadata"]["generation"] += 1
            if dry_run:
                return 202, new
            rv_new = self._next_rv()
            new["metadata"]["resourceVersion"] = str(rv_new)
            self._store(key, new)
            self._publish(res, _Change(rv_new, "MODIFIED", key[1], new, old))
            return 202, new
        if dry_run:
            return 200, old
        rv_new = self._next_rv()
        last = copy.deepcopy(old)
        last["metadata"]["resourceVersion"] = str(rv_new)
        self._store(key, None)
        self._forget(key)
        self._publish(res, _Change(rv_new, "DELETED", key[1], last, old))
        return 200, last

    def _owner_exists(
        self, ref: Any, namespace: str, kinds: Mapping[tuple[str, str], kmock.resource]
    ) -> bool:
        if not isinstance(ref, dict):
            return True
        owner_res = kinds.get((str(ref.get("apiVersion")), str(ref.get("kind"))))
        if owner_res is None:
            return True  # unresolvable kind: the real GC leaves the dependent alone
        owner_ns = namespace if self.resources[owner_res].namespaced else None
        owner = self._live((owner_res, owner_ns, str(ref.get("name"))))
        return owner is not None and owner["metadata"].get("uid") == ref.get("uid")

    # ---- CustomResourceDefinitions (what apiextensions-apiserver's controllers do) ----

    def _reconcile_crd(self, name: str) -> None:
        """
        Serve what a CRD defines, as soon as it is written: declare its served versions,
        accept its names and mark it Established (clients such as helm wait for that), and
        keep the cleanup finalizer on it. A terminating CRD has its instances deleted; once
        they are all gone, its finalizer is removed, it goes, and its resources stop being
        served. Runs inside the write that changed the CRD (or its last instance), so a
        client sees the CRD's status right after its own write; status changes are writes
        of their own (a watcher sees ADDED, then MODIFIED), as on a real server.
        """
        if name in self._crds_reconciling:
            return  # deleting instances below reports back here; the outer call goes on
        self._crds_reconciling.add(name)
        try:
            self._reconcile_crd_once(name)
        finally:
            self._crds_reconciling.discard(name)

    def _reconcile_crd_once(self, name: str) -> None:
        key: ObjKey = (CRDS, None, name)
        crd = self._live(key)
        if crd is None:
            self._unserve_crd(name)
            return
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        new = copy.deepcopy(crd)
        meta = new["metadata"]
        if meta.get("deletionTimestamp"):
            remaining = False
            for res in [r for r, owner in self._crd_served.items() if owner == name]:
                for obj_key, obj in list(self._iter_live(res, None)):
                    if not _meta(obj).get("deletionTimestamp"):
                        self._delete(res, obj_key, {})
                    remaining = remaining or self._live(obj_key) is not None
            if not remaining:
                finalizers = [f for f in meta.get("finalizers") or [] if f != CRD_CLEANUP_FINALIZER]
                meta["finalizers"] = finalizers
            self._set_crd_condition(
                new,
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            )
            self._update(CRDS, key, crd, new, manager="kube-apiserver", main=False)
            if self._live(key) is None:  # that was the last finalizer
                self._unserve_crd(name)
            return

        served = {
            _parse_resource(f"{spec['group']}/{version['name']}/{names['plural']}"): version
            for version in spec.get("versions") or []
            if version.get("served")
        }
        for res in [r for r, owner in self._crd_served.items() if owner == name]:
            if res not in served:
                self._unserve(res)
        for res, version in served.items():
            self.declare(
                _res_key(res),
                kind=names["kind"],
                namespaced=spec.get("scope") == "Namespaced",
                subresources=set(version.get("subresources") or {}) & {"status", "scale"},
                singular=names.get("singular") or None,
                shortnames=names.get("shortNames") or (),
                categories=names.get("categories") or (),
            )
            self._crd_served[res] = name
            self._printer_columns[res] = version.get("additionalPrinterColumns") or [AGE_COLUMN]
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if isinstance(schema, dict):
                self._schemas[res] = schema
            else:
                self._schemas.pop(res, None)

        if CRD_CLEANUP_FINALIZER not in (meta.get("finalizers") or []):
            meta["finalizers"] = [*(meta.get("finalizers") or []), CRD_CLEANUP_FINALIZER]
        status = new.setdefault("status", {})
        status["acceptedNames"] = {k: v for k, v in names.items() if v}
        status["acceptedNames"].setdefault("singular", names["kind"].lower())
        status["acceptedNames"].setdefault("listKind", f"{names['kind']}List")
        storage = [v["name"] for v in spec["versions"] if v.get("storage")]
        status["storedVersions"] = sorted(set(status.get("storedVersions") or []) | set(storage))
        self._set_crd_condition(new, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
        self._set_crd_condition(
            new,
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        )
        self._update(CRDS, key, crd, new, manager="kube-apiserver", main=False)

    @staticmethod
    def _set_crd_condition(
        crd: dict[str, Any], kind: str, value: str, reason: str, message: str
    ) -> None:
        """Set a status condition; its lastTransitionTime changes only when its status does."""
        conditions = crd.setdefault("status", {}).setdefault("conditions", [])
        for condition in conditions:
            if condition.get("type") == kind:
                if condition.get("status") != value:
                    condition["lastTransitionTime"] = _now()
                condition.update(status=value, reason=reason, message=message)
                return
        conditions.append(
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": _now(),
            }
        )

    def _unserve_crd(self, name: str) -> None:
        for res in [r for r, owner in self._crd_served.items() if owner == name]:
            self._unserve(res)

    def _unserve(self, res: kmock.resource) -> None:
        """Stop serving a CRD-defined resource: 404 from now on, watch streams end."""
        del self.resources[res]
        self._custom.discard(res)
        self._crd_served.pop(res, None)
        self._printer_columns.pop(res, None)
        self._schemas.pop(res, None)
        for watcher in self._watchers.get(res, ()):
            watcher.push(None)

    # ---- field validation (fieldValidation=Strict|Warn|Ignore) ----

    def _known_fields(self, res: kmock.resource, body: Any, params: Mapping[str, str]) -> Any:
        """
        The body without the fields its CRD's schema does not declare, as the API server
        prunes them; with ``fieldValidation=Strict`` (kubectl's default) they are refused
        instead, and by default (Warn) each is reported in a ``Warning`` header. Built-in
        kinds are not checked: the emulator has no schemas for them.
        """
        directive = params.get("fieldValidation") or "Warn"
        if directive not in ("Ignore", "Warn", "Strict"):
            raise ApiError(
                400,
                f'fieldValidation: Unsupported value: "{directive}": '
                'supported values: "Ignore", "Strict", "Warn"',
            )
        schema = self._schemas.get(res)
        if schema is None or not isinstance(body, dict):
            return body
        unknown: list[str] = []
        identity = ("apiVersion", "kind", "metadata")  # ObjectMeta is not the CRD's to declare
        content = {k: v for k, v in body.items() if k not in identity}
        pruned = {k: v for k, v in body.items() if k in identity}
        pruned.update(_prune_unknown(content, schema, "", unknown))
        if unknown and directive == "Strict":
            fields = ", ".join(f'unknown field "{f}"' for f in unknown)
            raise ApiError(
                400,
                f'{self._kind(res)} in version "{res.version}" cannot be handled as a '
                f"{self._kind(res)}: strict decoding error: {fields}",
            )
        if directive == "Warn":
            self._field_warnings.extend(f'unknown field \\"{f}\\"' for f in unknown)
        return pruned

    # ---- tables (what `kubectl get` asks for and prints) ----

    def _wants_table(self, request: kmock.Request, res: kmock.resource) -> bool:
        """
        A meta.k8s.io Table is asked for first (``Accept: application/json;as=Table;…``) and
        the emulator knows the columns: those of a CRD, and the default ones of CRDs
        themselves. Built-in kinds have columns compiled into the API server, unknown here:
        they are answered as plain objects, which kubectl prints with NAME and AGE itself.
        """
        if res not in self._printer_columns and res != CRDS:
            return False
        first = _header(request, "Accept").split(",")[0]
        params = dict(p.strip().partition("=")[::2] for p in first.split(";")[1:])
        return params.get("as") == "Table" and params.get("g") == "meta.k8s.io"

    def _table(
        self, res: kmock.resource, items: list[dict[str, Any]], params: Mapping[str, str]
    ) -> dict[str, Any]:
        name_column = {"name": "Name", "type": "string", "format": "name", "priority": 0}
        columns: list[dict[str, Any]]
        if res == CRDS:  # the API server's default table
            columns = [{"name": "Created At", "type": "date", "priority": 0}]
            jsonpaths = [".metadata.creationTimestamp"]
        else:
            printer = self._printer_columns[res]
            columns = [
                {
                    "name": c["name"],
                    "type": c.get("type", "string"),
                    "format": c.get("format", ""),
                    "description": c.get("description", ""),
                    "priority": c.get("priority", 0),
                }
                for c in printer
            ]
            jsonpaths = [str(c["jsonPath"]) for c in printer]
        include = params.get("includeObject") or "PartialObjectMetadata"
        rows = []
        for obj in items:
            cells: list[Any] = [_meta(obj).get("name")]
            for column, jsonpath in zip(columns, jsonpaths, strict=True):
                cells.append(_cell(_jsonpath(obj, jsonpath), column["type"], res == CRDS))
            row: dict[str, Any] = {"cells": cells}
            if include == "Object":
                row["object"] = obj
            elif include == "PartialObjectMetadata":
                row["object"] = {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": _meta(obj),
                }
            rows.append(row)
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(self._rv)},
            "columnDefinitions": [name_column, *columns],
            "rows": rows,
        }

    # ---- reads ----

    def _matcher(
        self, res: kmock.resource, params: Mapping[str, str], name: str | None = None
    ) -> Callable[[Mapping[str, Any]], bool]:
        try:
            labels = parse_label_selector(params.get("labelSelector", ""))
        except ValueError as e:
            raise ApiError(400, f"unable to parse requirement: {e}") from None
        allowed = frozenset({"metadata.name", "metadata.namespace"}) | EXTRA_FIELD_LABELS.get(
            (str(res.group), str(res.plural)), frozenset()
        )
        try:
            fields = _parse_field_selector(params.get("fieldSelector", ""), allowed)
        except ValueError as e:
            raise ApiError(400, str(e)) from None

        def matches(obj: Mapping[str, Any]) -> bool:
            meta = _meta(obj)
            if name is not None and meta.get("name") != name:
                return False
            obj_labels = meta.get("labels") or {}
            return all(r.matches(obj_labels) for r in labels) and all(
                f.matches(obj) for f in fields
            )

        return matches

    def _list_envelope(
        self, res: kmock.resource, items: list[dict[str, Any]], **meta: Any
    ) -> dict[str, Any]:
        if res not in self._custom:
            # Typed lists of built-in kinds carry no apiVersion/kind per item (custom resources,
            # served as unstructured objects, do): clients must not rely on them.
            items = [
                {k: v for k, v in item.items() if k not in ("apiVersion", "kind")} for item in items
            ]
        return {
            "apiVersion": _api_version(res),
            "kind": f"{self._kind(res)}List",
            "metadata": {"resourceVersion": str(self._rv), **meta},
            "items": items,
        }

    def _list(
        self, res: kmock.resource, namespace: str | None, params: Mapping[str, str]
    ) -> dict[str, Any]:
        matches = self._matcher(res, params)
        items = [obj for _, obj in self._iter_live(res, namespace) if matches(obj)]
        limit_text = params.get("limit", "")
        token = params.get("continue", "")
        if token:
            try:
                after = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
                start = (str(after[0]), str(after[1]))
            except (ValueError, TypeError, IndexError):
                raise ApiError(400, "invalid continue token") from None
            items = [
                o for o in items if (_meta(o).get("namespace") or "", _meta(o)["name"]) > start
            ]
        meta: dict[str, Any] = {}
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError:
                raise ApiError(400, f"invalid limit: {limit_text!r}") from None
            if 0 < limit < len(items):
                last = _meta(items[limit - 1])
                cursor = json.dumps([last.get("namespace") or "", last["name"]])
                meta["continue"] = base64.urlsafe_b64encode(cursor.encode()).decode()
                meta["remainingItemCount"] = len(items) - limit
                items = items[:limit]
        return self._list_envelope(res, items, **meta)

    async def _watch(
        self,
        request: kmock.Request,
        res: kmock.resource,
        path: _ParsedPath,
        params: Mapping[str, str],
        record: Callable[[int], None],
    ) -> aiohttp.web.StreamResponse:
        matches = self._matcher(res, params, name=path.name)
        bookmarks = _flag(params, "allowWatchBookmarks")
        initial_events = _flag(params, "sendInitialEvents")
        if initial_events and not bookmarks:
            raise ApiError(422, "sendInitialEvents requires allowWatchBookmarks=true")
        timeout: float | None = None
        if params.get("timeoutSeconds"):
            try:
                timeout = float(params["timeoutSeconds"])
            except ValueError:
                raise ApiError(400, "invalid timeoutSeconds") from None
        since_text = params.get("resourceVersion", "")
        since: int | None = None
        if since_text not in ("", "0") and not initial_events:
            try:
                since = int(since_text)
            except ValueError:
                raise ApiError(400, f"invalid resource version: {since_text!r}") from None

        # Subscribe and take the snapshot/replay in one synchronous step: nothing can be lost.
        watcher = _Watcher(namespace=path.namespace, matches=matches)
        first: list[dict[str, Any]] = []
        if since is None:
            first = [
                {"type": "ADDED", "object": obj}
                for _, obj in self._iter_live(res, path.namespace)
                if matches(obj)
            ]
            if initial_events:
                first.append(self._bookmark(res, initial_end=True))
        elif since < self._floors.get(res, 0):
            first = [
                {
                    "type": "ERROR",
                    "object": ApiError(
                        410,
                        f"too old resource version: {since} ({self._floors[res]})",
                        reason="Expired",
                    ).status(),
                }
            ]
            watcher.push(None)
        else:
            for change in self._history.get(res, ()):
                if change.rv > since and (kind := watcher.translate(change)):
                    first.append({"type": kind, "object": change.obj})
        if self._closing:
            watcher.push(None)
        self._watchers.setdefault(res, set()).add(watcher)

        as_table = self._wants_table(request, res)

        def encode(event: dict[str, Any]) -> bytes:
            if as_table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                # `kubectl get --watch` asks for every change as a one-row Table, as its list.
                table = self._table(res, [event["object"]], params)
                table["metadata"] = {"resourceVersion": _meta(event["object"])["resourceVersion"]}
                event = {"type": event["type"], "object": table}
            return json.dumps(event).encode() + b"\n"

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        next_bookmark = loop.time() + self.bookmark_interval if bookmarks else None
        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = "application/json"
        assert request._raw_request is not None
        try:
            record(200)
            await response.prepare(request._raw_request)
            for event in first:
                await response.write(encode(event))
            while await self._stream_step(response, watcher, deadline, encode):
                now = loop.time()
                if next_bookmark is not None and now >= next_bookmark:
                    await response.write(json.dumps(self._bookmark(res)).encode() + b"\n")
                    next_bookmark = now + self.bookmark_interval
                    continue
                moments = [t for t in (deadline, next_bookmark) if t is not None]
                wait = max(0.0, min(moments) - now) if moments else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watcher.wakeup.wait(), timeout=wait)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self._watchers.get(res, set()).discard(watcher)
        return response

    async def _stream_step(
        self,
        response: aiohttp.web.StreamResponse,
        watcher: _Watcher,
        deadline: float | None,
        encode: Callable[[dict[str, Any]], bytes],
    ) -> bool:
        """Send the pending events; False if the stream must end (closed or timed out)."""
        while watcher.pending:
            change = watcher.pending.popleft()
            if change is None:
                return False
            if kind := watcher.translate(change):
                await response.write(encode({"type": kind, "object": change.obj}))
        watcher.wakeup.clear()  # no await since the last check: nothing can slip through
        return deadline is None or asyncio.get_running_loop().time() < deadline

    def _bookmark(self, res: kmock.resource, *, initial_end: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {
            "type": "BOOKMARK",
            "object": {"apiVersion": _api_version(res), "kind": self._kind(res), "metadata": meta},
        }


# --------------------------------------------------------------------------------------------
# The threaded runner for synchronous tests
# --------------------------------------------------------------------------------------------


class _ApiHttpServer(aiohttp.test_utils.RawTestServer):
    """aiohttp cuts request bodies at 1 MiB by default; the API server takes up to 3 MiB and
    answers 413 itself past that (``MAX_REQUEST_BYTES``, checked in ``_serve``)."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web.ServerRunner:
        def request(
            message: aiohttp.http.RawRequestMessage,
            payload: aiohttp.StreamReader,
            protocol: aiohttp.web.RequestHandler,
            writer: aiohttp.abc.AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> aiohttp.web.BaseRequest:
            return aiohttp.web.BaseRequest(
                message,
                payload,
                protocol,
                writer,
                task,
                asyncio.get_running_loop(),
                client_max_size=2 * MAX_REQUEST_BYTES,
            )

        return await super()._make_runner(debug=debug, request_factory=request, **kwargs)


@attrs.mutable
class _LocalServer(kmock.Server):
    """
    kmock's HTTP server without its DNS interceptor.

    The interceptor monkey-patches aiohttp process-wide and must be exited in LIFO order, which
    breaks when emulators in different threads overlap; the URL is an IP address anyway.
    """

    async def __aenter__(self) -> _LocalServer:
        if self._managed_server is not None:
            raise RuntimeError("The server can be started only once.")
        self._managed_server = _ApiHttpServer(self.handler, host=self._host, port=self._port)
        await self._managed_server.__aenter__()
        self._managed_client = self._client_fct(self._managed_server.make_url("/"))
        await self._managed_client.__aenter__()
        self.handler.servers.append(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_value: BaseException | None, traceback: Any
    ) -> None:
        self.handler.servers.remove(self)
        if self._managed_client is not None:
            await self._managed_client.close()
        if self._managed_server is not None:
            await self._managed_server.close()
        self._managed_client = None
        self._managed_server = None


class ClusterEmulator(BackgroundLoop):
    """
    An :class:`ApiServer` on ``http://127.0.0.1:<random port>`` in a background thread.

    Use as a context manager (or ``start()``/``stop()``). Accessors are thread-safe: they run
    on the server's loop and return deep copies. At exit, emulator bugs (unexpected exceptions
    answered with HTTP 500, not injected faults) fail loudly unless ``check_errors=False``.
    """

    thread_name = "kube-api-emulator"
    title = "The API emulator"

    def __init__(
        self,
        *,
        bookmark_interval: float = 5.0,
        history_size: int = 10_000,
        strict_namespaces: bool = False,
        declare_defaults: bool = True,
        check_errors: bool = True,
    ) -> None:
        self.server = ApiServer(
            bookmark_interval=bookmark_interval,
            history_size=history_size,
            strict_namespaces=strict_namespaces,
            declare_defaults=declare_defaults,
        )
        self.check_errors = check_errors
        super().__init__()

    # ---- lifecycle ----

    def __enter__(self) -> ClusterEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        self.stop()
        if exc is None and self.check_errors and self.server.internal_errors:
            raise AssertionError(
                "The API emulator failed internally:\n" + "\n".join(self.server.internal_errors)
            )

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        async with self.server, _LocalServer(self.server, user_agent="") as http:
            self._url = str(http.url).rstrip("/")
            self._ready.set()
            await self._stopped.wait()
            self.server.close_watches()
            await asyncio.sleep(0)  # let the watch streams see the end and finish

    def _call(self, fn: Callable[[], T]) -> T:
        loop = self._loop
        if loop is None or self._url is None:
            raise RuntimeError("The emulator is not running")

        async def run() -> T:
            return fn()

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        return future.result(timeout=10)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop (for advanced use) and return its result."""
        if self._loop is None:
            raise RuntimeError("The emulator is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    # ---- thread-safe accessors ----

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._call(lambda: copy.deepcopy(self.server.live(resource, namespace, name)))

    def list(
        self, resource: str, namespace: str | None = None, label_selector: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        return self._call(
            lambda: copy.deepcopy(self.server.select(resource, namespace, label_selector))
        )

    def put(self, resource: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(lambda: copy.deepcopy(self.server.put_object(resource, obj)))

    def delete(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        return self._call(
            lambda: copy.deepcopy(self.server.delete_object(resource, namespace, name))
        )

    def calls(self) -> builtins.list[ApiCall]:
        return self._call(lambda: self.server.calls)

    def reset_calls(self) -> None:
        self._call(self.server.reset_calls)

    def resource_version(self) -> int:
        return self._call(lambda: self.server.resource_version)

    def fail(
        self,
        method: str,
        resource: str,
        *,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        subresource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> None:
        self._call(
            lambda: self.server.fail(
                method,
                resource,
                status=status,
                times=times,
                retry_after=retry_after,
                subresource=subresource,
                namespace=namespace,
                name=name,
                when=when,
            )
        )

    def lift(self, method: str, resource: str, *, subresource: str | None = None) -> None:
        self._call(lambda: self.server.lift(method, resource, subresource=subresource))

    def collect_garbage(self) -> builtins.list[tuple[str, str, str]]:
        return self._call(self.server.collect_garbage)

    def declare(
        self, resource: str, *, kind: str, namespaced: bool = True, subresources: Iterable[str] = ()
    ) -> None:
        self._call(
            lambda: self.server.declare(
                resource, kind=kind, namespaced=namespaced, subresources=subresources
            )
        )
