"""
Decoding of the Kubernetes protobuf request bodies that real clients send, for the API emulator.

Go clients built on typed clientsets (``kubectl create namespace``, helm's release storage in
Secrets) send ``application/vnd.kubernetes.protobuf`` bodies and cannot be told otherwise,
so the emulator must read them. The encoding: the magic ``k8s\\x00``, then a ``runtime.Unknown``
message whose ``raw`` field is the object's own message (field numbers from the upstream
``generated.proto`` files). Only the kinds in :data:`SCHEMAS` are known here; any other kind
is refused by the caller with 415, as no schema means no honest decoding.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any, Final

__all__ = ["MAGIC", "SCHEMAS", "ProtobufError", "decode"]

MAGIC: Final = b"k8s\x00"

# A field's type: a scalar name, ("map", value type), ("list", element type) or a message schema.
FieldType = str | tuple[str, Any] | Mapping[int, tuple[str, Any]]
Schema = Mapping[int, tuple[str, FieldType]]

OWNER_REFERENCE: Final[Schema] = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
OBJECT_META: Final[Schema] = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")),
    13: ("ownerReferences", ("list", OWNER_REFERENCE)),
    14: ("finalizers", ("list", "string")),
}
# runtime.Unknown, the envelope: the type, then the object's own message.
UNKNOWN: Final[Schema] = {
    1: ("typeMeta", {1: ("apiVersion", "string"), 2: ("kind", "string")}),
    2: ("raw", "raw"),
}
PRECONDITIONS: Final[Schema] = {1: ("uid", "string"), 2: ("resourceVersion", "string")}

# (apiVersion, kind) → the object's message.
SCHEMAS: Final[Mapping[tuple[str, str], Schema]] = {
    ("v1", "Namespace"): {
        1: ("metadata", OBJECT_META),
        2: ("spec", {1: ("finalizers", ("list", "string"))}),
        3: ("status", {1: ("phase", "string")}),
    },
    ("v1", "Secret"): {
        1: ("metadata", OBJECT_META),
        2: ("data", ("map", "bytes")),
        3: ("type", "string"),
        4: ("stringData", ("map", "string")),
        5: ("immutable", "bool"),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", OBJECT_META),
        2: ("data", ("map", "string")),
        3: ("binaryData", ("map", "bytes")),
        4: ("immutable", "bool"),
    },
    ("meta.k8s.io/v1", "DeleteOptions"): {
        1: ("gracePeriodSeconds", "int"),
        2: ("preconditions", PRECONDITIONS),
        3: ("orphanDependents", "bool"),
        4: ("propagationPolicy", "string"),
        5: ("dryRun", ("list", "string")),
    },
}
SCHEMAS_BY_KIND: Final = {kind: schema for (_, kind), schema in SCHEMAS.items()}


class ProtobufError(ValueError):
    """The body is not Kubernetes protobuf, or of a kind without a known schema."""


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object (apiVersion and kind included)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic")
    envelope = _message(body[len(MAGIC) :], UNKNOWN)
    type_meta = envelope.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    # DeleteOptions are sent as v1 or meta.k8s.io/v1, depending on the client.
    schema = SCHEMAS.get((api_version, kind)) or (
        SCHEMAS_BY_KIND.get(kind) if kind == "DeleteOptions" else None
    )
    if schema is None:
        raise ProtobufError(f"no protobuf schema for {api_version}, Kind={kind}")
    raw = envelope.get("raw", b"")
    assert isinstance(raw, bytes)
    return {"apiVersion": api_version, "kind": kind, **_message(raw, schema)}


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of a message."""
    position = 0
    while position < len(data):
        tag, position = _varint(data, position)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 2:
            length, position = _varint(data, position)
            value = data[position : position + length]
            if len(value) != length:
                raise ProtobufError("truncated message")
            position += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value = int.from_bytes(data[position : position + size], "little")
            position += size
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        yield number, wire, value


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _message(data: bytes, schema: Schema) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for number, _, value in _fields(data):
        if number not in schema:
            continue  # a field the emulator does not read (e.g. managedFields)
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "map":
            entry = _message(_bytes(value), {1: ("key", "string"), 2: ("value", kind[1])})
            default = "" if kind[1] == "string" else base64.b64encode(b"").decode()
            result.setdefault(name, {})[entry.get("key", "")] = entry.get("value", default)
        elif isinstance(kind, tuple) and kind[0] == "list":
            result.setdefault(name, []).append(_scalar(value, kind[1]))
        elif (scalar := _scalar(value, kind)) != "":
            # Go encodes every string field, set or not; JSON (omitempty) leaves empty ones out.
            result[name] = scalar
    return result


def _scalar(value: int | bytes, kind: FieldType) -> Any:
    if isinstance(kind, Mapping):
        return _message(_bytes(value), kind)
    match kind:
        case "string":
            return _bytes(value).decode("utf-8")
        case "bytes":
            return base64.b64encode(_bytes(value)).decode()
        case "raw":
            return _bytes(value)
        case "bool":
            return bool(value)
        case "int":
            number = _int(value)
            return number - (1 << 64) if number >= 1 << 63 else number  # two's complement
    raise ProtobufError(f"unknown field type {kind!r}")  # pragma: no cover


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a length-delimited field")
    return value


def _int(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise ProtobufError("expected a varint field")
    return value
