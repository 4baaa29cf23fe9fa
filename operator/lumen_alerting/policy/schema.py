"""Generate the LumenAlertPolicy CustomResourceDefinition from the typed model.

``crds/lumen.dev_lumenalertpolicies.yaml`` is this module's output (``lumenctl crd``); a test fails
when the committed file and the model drift apart.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from .fields import Cel, field_doc, field_key
from .loading import optional_inner, spec_fields
from .model import API_GROUP, API_VERSION, KIND, MAX_POLICY_NAME, PLURAL, PolicySpec

Schema = dict[str, Any]
SHORT_NAMES = ["lap", "lumenpolicy"]


def _validations(rules: tuple[Cel, ...]) -> list[dict[str, str]]:
    return [{"rule": r.rule, "message": r.message} for r in rules]


def object_schema(cls: type) -> Schema:
    """The OpenAPI v3 schema of a spec dataclass, with descriptions, defaults and rules."""
    properties: Schema = {}
    required = []
    for f, tp in spec_fields(cls):
        key = field_key(f)
        properties[key] = field_schema(f, tp)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(key)
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    rules = getattr(cls, "__rules__", ())
    if rules:
        schema["x-kubernetes-validations"] = _validations(rules)
    return schema


def field_schema(f: dataclasses.Field[Any], tp: Any) -> Schema:
    doc = field_doc(f)
    schema = type_schema(optional_inner(tp) or tp, f)
    schema = {"description": doc.description, **schema}
    default = _default(f)
    if default is not None:
        schema["default"] = default
    limits = {
        "pattern": doc.pattern,
        "minimum": doc.minimum,
        "maximum": doc.maximum,
        "minLength": doc.min_length,
        "maxLength": doc.max_length,
        "minItems": doc.min_items,
        "maxItems": doc.max_items,
        "maxProperties": doc.max_properties,
    }
    schema.update({k: v for k, v in limits.items() if v is not None})
    if doc.exclusive_minimum:
        schema["exclusiveMinimum"] = True
    if doc.exclusive_maximum:
        schema["exclusiveMaximum"] = True
    if doc.list_map_key:
        schema["x-kubernetes-list-type"] = "map"
        schema["x-kubernetes-list-map-keys"] = [doc.list_map_key]
    rules = list(_validations(doc.rules))
    if doc.key_pattern:
        rules.append(
            {
                "rule": f"self.all(k, k.matches('{doc.key_pattern}'))",
                "message": f"keys must match {doc.key_pattern}",
            }
        )
    if rules:
        schema["x-kubernetes-validations"] = schema.get("x-kubernetes-validations", []) + rules
    return schema


def type_schema(tp: Any, f: dataclasses.Field[Any] | None = None) -> Schema:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return object_schema(tp)  # type: ignore[arg-type]
    if origin is list:
        return {"type": "array", "items": type_schema(typing.get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(typing.get_args(tp)[1])}
    if origin is Literal:
        return {"type": "string", "enum": list(typing.get_args(tp))}
    return {"type": {str: "string", int: "integer", float: "number", bool: "boolean"}[tp]}


def _default(f: dataclasses.Field[Any]) -> Any:
    """Scalar defaults as they are; objects default to ``{}`` so the API server fills in their
    own field defaults; lists and maps to their (usually empty) value."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return {} if dataclasses.is_dataclass(value) else value
    return None


def _status_schema() -> Schema:
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "description": "`Ready` or `Valid`."},
            "status": {
                "type": "string",
                "enum": ["True", "False", "Unknown"],
                "description": "Whether the condition holds.",
            },
            "reason": {"type": "string", "description": "Machine-readable cause, CamelCase."},
            "message": {"type": "string", "description": "What happened, for people."},
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When status last changed.",
            },
            "observedGeneration": {
                "type": "integer",
                "description": "Spec generation the condition refers to.",
            },
        },
    }
    child = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "name": {"type": "string", "description": "Name, in the policy's namespace."},
        },
    }
    return {
        "type": "object",
        "description": "Written by the operator only.",
        "properties": {
            "observedGeneration": {
                "type": "integer",
                "description": "Last spec generation the operator acted on.",
            },
            "conditions": {
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "description": "`Valid`: the spec passed validation. `Ready`: every "
                "child object is applied. `Routed`: every alert the policy renders reaches a "
                "receiver (`False` names those that reach no one).",
            },
            "children": {
                "type": "array",
                "items": child,
                "description": "Objects the operator applies for this policy.",
            },
            "rules": {"type": "integer", "description": "Alerting rules rendered."},
            "slos": {"type": "integer", "description": "SLOs rendered."},
            "kopf": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "description": "The operator framework's (kopf) own bookkeeping: handler "
                "progress and the last handled spec.",
            },
        },
    }


def crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition."""
    spec_schema = object_schema(PolicySpec)
    spec_schema["description"] = "What to alert on and where the alerts go."
    root: Schema = {
        "type": "object",
        "description": "Alerting for one service: Prometheus rules, SLO burn-rate alerts, "
        "Alertmanager routing, a Slack threader and an exporter, applied by the Lumen operator.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": _status_schema(),
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.size() <= {MAX_POLICY_NAME}",
                "message": f"metadata.name must be at most {MAX_POLICY_NAME} characters "
                "(children are named lumen-<name>-threader)",
            }
        ],
    }
    columns = [
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "Rules", "type": "integer", "jsonPath": ".status.rules"},
        {"name": "SLOs", "type": "integer", "jsonPath": ".status.slos"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{API_GROUP}",
            "labels": {"app.kubernetes.io/part-of": "lumen"},
        },
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": SHORT_NAMES,
                "categories": ["lumen", "monitoring"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }
