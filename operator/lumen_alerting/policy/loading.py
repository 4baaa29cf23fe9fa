"""Build the typed spec from parsed YAML, collecting every structural problem as ``path: reason``.

The checks here are exactly the field declarations of ``policy.model`` (types, patterns, ranges,
lengths, list keys, CEL mirrors), i.e. what the API server also enforces from the generated CRD.
Checks that need more than the schema (PromQL, cross references) live in ``policy.validation``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, TypeVar

from .fields import FieldDoc, field_doc, field_key

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class InvalidPolicy(ValueError):
    """The policy breaks one or more rules; ``problems`` lists each as ``path: reason``."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


@cache
def spec_fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    """The declared fields of a spec dataclass with their resolved types."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if "lumen" in f.metadata]


@dataclass(frozen=True)
class _FieldPlan:
    """How to load one field, worked out once per class (loading runs for every policy)."""

    name: str
    key: str
    type: Any
    doc: FieldDoc
    required: bool


@cache
def _plan(cls: type) -> tuple[tuple[_FieldPlan, ...], frozenset[str]]:
    plans = tuple(
        _FieldPlan(
            name=f.name,
            key=field_key(f),
            type=optional_inner(tp) or tp,
            doc=field_doc(f),
            required=f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f, tp in spec_fields(cls)
    )
    return plans, frozenset(p.key for p in plans)


def optional_inner(tp: Any) -> Any | None:
    """``X`` for ``X | None``, else None."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def load(cls: type[T], data: Any, path: str) -> T:
    """Build ``cls`` from ``data`` or raise InvalidPolicy with every problem found."""
    problems: list[Problem] = []
    value = _load_object(cls, data, path, problems)
    if problems:
        raise InvalidPolicy(problems)
    return typing.cast(T, value)  # _load_object builds a cls or records a problem


def _load_object(cls: type, data: Any, path: str, problems: list[Problem]) -> Any:
    if not isinstance(data, dict):
        problems.append(Problem(path, "must be an object"))
        return None
    plans, known = _plan(cls)
    for key in data:
        if key not in known:
            allowed = ", ".join(sorted(known))
            problems.append(Problem(_join(path, str(key)), f"unknown field (allowed: {allowed})"))
    before = len(problems)
    values: dict[str, Any] = {}
    for plan in plans:
        value = data.get(plan.key)
        if value is None:
            if plan.required:
                problems.append(Problem(_join(path, plan.key), "required"))
            continue
        values[plan.name] = _load_value(plan.type, value, _join(path, plan.key), plan.doc, problems)
    if len(problems) > before:
        return None
    obj = cls(**values)
    for rule in getattr(cls, "__rules__", ()):
        if rule.check is not None and not rule.check(obj):
            problems.append(Problem(path, rule.message))
    return obj


@cache
def _shape(tp: Any) -> tuple[str, Any]:
    """What kind of value a type annotation asks for, and its parameter (resolved once)."""
    tp = optional_inner(tp) or tp
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return "object", tp
    if origin is list:
        return "list", typing.get_args(tp)[0]
    if origin is dict:
        return "map", typing.get_args(tp)[1]
    if origin is Literal:
        return "choice", typing.get_args(tp)
    return "scalar", tp


def _load_value(tp: Any, data: Any, path: str, doc: FieldDoc, problems: list[Problem]) -> Any:
    kind, arg = _shape(tp)
    before = len(problems)
    if kind == "object":
        value = _load_object(arg, data, path, problems)
    elif kind == "list":
        value = _load_list(arg, data, path, doc, problems)
    elif kind == "map":
        value = _load_map(arg, data, path, doc, problems)
    elif kind == "choice":
        if data not in arg:
            problems.append(Problem(path, f"must be one of {', '.join(map(str, arg))}"))
        value = data
    else:
        value = _load_scalar(arg, data, path, doc, problems)
    if doc.rules and len(problems) == before:
        for rule in doc.rules:
            if rule.check is not None and not rule.check(value):
                problems.append(Problem(path, rule.message))
    return value


def _load_list(
    item_tp: Any, data: Any, path: str, doc: FieldDoc, problems: list[Problem]
) -> list[Any]:
    if not isinstance(data, list):
        problems.append(Problem(path, "must be a list"))
        return []
    if doc.min_items is not None and len(data) < doc.min_items:
        problems.append(Problem(path, f"needs at least {doc.min_items} item(s)"))
    if doc.max_items is not None and len(data) > doc.max_items:
        problems.append(Problem(path, f"has {len(data)} items, at most {doc.max_items} allowed"))
    item_doc = FieldDoc(description="")
    items = [
        _load_value(item_tp, x, f"{path}[{i}]", item_doc, problems) for i, x in enumerate(data)
    ]
    if doc.list_map_key:
        seen: dict[Any, int] = {}
        for i, item in enumerate(data):
            key = item.get(doc.list_map_key) if isinstance(item, dict) else None
            if not isinstance(key, str):  # missing or mistyped: reported on the item itself
                continue
            if key in seen:
                problems.append(
                    Problem(
                        f"{path}[{i}].{doc.list_map_key}",
                        f"duplicate {doc.list_map_key} {key!r} (also at [{seen[key]}])",
                    )
                )
            seen.setdefault(key, i)
    return items


def _load_map(
    value_tp: Any, data: Any, path: str, doc: FieldDoc, problems: list[Problem]
) -> dict[str, Any]:
    if not isinstance(data, dict):
        problems.append(Problem(path, "must be a map"))
        return {}
    if doc.max_properties is not None and len(data) > doc.max_properties:
        problems.append(Problem(path, f"has {len(data)} keys, at most {doc.max_properties}"))
    result = {}
    value_doc = FieldDoc(description="")
    for key, value in data.items():
        sub = f"{path}.{key}"
        if not isinstance(key, str):
            # JSON (and so the API server) has only string keys; YAML 1.1 reads on/off/yes/no,
            # true/false and numbers as other types, which would render as "true" or 1.
            problems.append(
                Problem(
                    sub,
                    f"key {key!r} is not a string: quote it (YAML reads unquoted on/off, "
                    "yes/no, true/false and numbers as booleans and numbers)",
                )
            )
            continue
        if doc.key_pattern and not _matches(doc.key_pattern, key):
            problems.append(Problem(sub, f"key must match {doc.key_pattern}"))
            continue
        result[key] = _load_value(value_tp, value, sub, value_doc, problems)
    return result


def _load_scalar(tp: type, data: Any, path: str, doc: FieldDoc, problems: list[Problem]) -> Any:
    ok = isinstance(data, tp) and not (tp is not bool and isinstance(data, bool))
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        data, ok = float(data), True
    if not ok:
        problems.append(Problem(path, f"must be {_TYPE_NAMES[tp]}, not {_describe(data)}"))
        return data
    if isinstance(data, float) and not math.isfinite(data):
        # YAML has .nan and .inf; JSON (and so the API server) has neither.
        problems.append(Problem(path, f"must be a finite number, not {data}"))
        return data
    if isinstance(data, str):
        if doc.min_length is not None and len(data) < doc.min_length:
            problems.append(
                Problem(
                    path,
                    "must not be empty"
                    if doc.min_length == 1
                    else f"must be at least {doc.min_length} characters",
                )
            )
        if doc.max_length is not None and len(data) > doc.max_length:
            problems.append(Problem(path, f"must be at most {doc.max_length} characters"))
        if doc.pattern is not None and not _matches(doc.pattern, data):
            problems.append(Problem(path, f"{data!r} does not match {doc.pattern}"))
    else:
        _check_range(data, path, doc, problems)
    return data


def _matches(pattern: str, text: str) -> bool:
    """Whether ``text`` matches ``pattern`` as the API server (Go's RE2) and the services read
    it: Python's ``$`` also matches before a final newline, so ``"ion-api\\n"`` (a YAML block
    scalar) would pass ``re.match`` and then be refused by the API server or the exporter."""
    return re.fullmatch(pattern, text) is not None


def _check_range(value: float, path: str, doc: FieldDoc, problems: list[Problem]) -> None:
    low, high = doc.minimum, doc.maximum
    if low is not None and (value <= low if doc.exclusive_minimum else value < low):
        problems.append(Problem(path, f"must be {'>' if doc.exclusive_minimum else '>='} {low:g}"))
    if high is not None and (value >= high if doc.exclusive_maximum else value > high):
        problems.append(Problem(path, f"must be {'<' if doc.exclusive_maximum else '<='} {high:g}"))


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
