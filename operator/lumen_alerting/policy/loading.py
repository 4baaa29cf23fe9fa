"""Build the typed spec from parsed YAML, collecting every structural problem as ``path: reason``.

The checks here are exactly the field declarations of ``policy.model`` (types, patterns, ranges,
lengths, list keys, CEL mirrors), i.e. what the API server also enforces from the generated CRD.
Checks that need more than the schema (PromQL, cross references) live in ``policy.validation``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, TypeVar

from .durations import DURATION_HINT, DURATION_PATTERN
from .fields import FieldDoc, field_doc, field_key
from .store_patterns import REDIS_URL, REDIS_URL_HINT, REPLICA_ACKS, REPLICA_ACKS_HINT

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


# Patterns whose failure is said in words: what a valid value looks like, not the expression.
PATTERN_HINTS = {
    DURATION_PATTERN: DURATION_HINT,
    REDIS_URL: REDIS_URL_HINT,
    REPLICA_ACKS: REPLICA_ACKS_HINT,
}

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
    partial = load_partial(cls, data, path)
    if partial.problems:
        raise InvalidPolicy(partial.problems)
    return typing.cast(T, partial.value)  # no problem: the loader built a cls


@dataclass(frozen=True)
class Partial:
    """What ``load_partial`` could build, for checks that go on after the schema's problems.

    ``value`` is None when nothing usable is left. Otherwise it is a well-formed ``cls`` (every
    value in it meets its declaration, objects their rules) made of the parts that loaded: a
    field whose value has a problem takes its default, and an object that cannot be built (a
    required field with a problem, a broken rule) leaves its list, map or optional field
    without it. ``kept`` says, for each list that lost items (by its path), the original index
    of each item left, so that ``original_path`` can give a path in the value back in the
    manifest's terms. A check on ``value`` must still skip whatever it reads from a path in
    ``problems`` (``touches``): there the value is a default, or missing, not what was written.
    """

    value: Any
    problems: list[Problem]
    kept: dict[str, list[int]]

    def touches(self, path: str) -> bool:
        """Whether a problem is at ``path`` or inside it (``spec.slos[0]`` holds
        ``spec.slos[0].period``, not ``spec.slos[0]x``)."""
        return any(
            p.path == path or p.path.startswith((f"{path}.", f"{path}[")) for p in self.problems
        )

    def original_path(self, path: str) -> str:
        """``path`` in ``value`` as a path in the manifest: list indexes as written."""
        parts: list[str] = []
        last = 0
        for index in _INDEX.finditer(path):
            parts.append(path[last : index.start()])
            kept = self.kept.get("".join(parts))
            i = int(index.group(1))
            parts.append(f"[{kept[i] if kept is not None and i < len(kept) else i}]")
            last = index.end()
        parts.append(path[last:])
        return "".join(parts)


_INDEX = re.compile(r"\[(\d+)\]")


class _Broken:
    """A value that failed its declaration: what the loader returns for it, never a spec value."""


_BROKEN: Any = _Broken()


@dataclass
class _Loading:
    problems: list[Problem]
    kept: dict[str, list[int]]

    def add(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, reason))


def load_partial(cls: type, data: Any, path: str) -> Partial:
    """Build as much of ``cls`` from ``data`` as loads, collecting every problem (``Partial``)."""
    loading = _Loading([], {})
    value = _load_object(cls, data, path, loading)
    return Partial(None if value is _BROKEN else value, loading.problems, loading.kept)


def _load_object(cls: type, data: Any, path: str, loading: _Loading) -> Any:
    if not isinstance(data, dict):
        loading.add(path, "must be an object")
        return _BROKEN
    plans, known = _plan(cls)
    for key in data:
        if key not in known:
            loading.add(_join(path, str(key)), unknown_field(str(key), known))
    values: dict[str, Any] = {}
    buildable, incomplete = True, False
    for plan in plans:
        value = data.get(plan.key)
        if value is None:
            if plan.required:
                loading.add(_join(path, plan.key), "required")
                buildable = False
            continue
        before = len(loading.problems)
        loaded = _load_value(plan.type, value, _join(path, plan.key), plan.doc, loading)
        # A field with a problem inside is not as written: a default stands for it, or a list
        # or map lacks the items that did not load.
        incomplete = incomplete or len(loading.problems) > before
        if loaded is _BROKEN:
            # Reported already. An optional field keeps its default; a required one has none.
            buildable = buildable and not plan.required
            continue
        values[plan.name] = loaded
    if not buildable:
        return _BROKEN
    obj = cls(**values)
    for rule in getattr(cls, "__rules__", ()):
        if rule.check is not None and not rule.check(obj):
            # On an incomplete object the rule may fail for a default's or a missing item's
            # sake: the problems inside are the ones to report, and the object is not usable.
            if not incomplete:
                loading.add(path, rule.message)
            return _BROKEN
    return obj


def unknown_field(key: str, known: Iterable[str]) -> str:
    """The reason for a key the object does not declare, with the likely one it meant."""
    allowed = sorted(known)
    close = difflib.get_close_matches(key, allowed, n=1)
    meant = f"did you mean {close[0]}? " if close else ""
    return f"unknown field ({meant}allowed: {', '.join(allowed)})"


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


def _load_value(tp: Any, data: Any, path: str, doc: FieldDoc, loading: _Loading) -> Any:
    """The loaded value, or _BROKEN when it fails its declaration (every problem reported).
    A list or map that lost items or entries to their own problems is not broken."""
    kind, arg = _shape(tp)
    before = len(loading.problems)
    if kind == "object":
        value = _load_object(arg, data, path, loading)
    elif kind == "list":
        value = _load_list(arg, data, path, doc, loading)
    elif kind == "map":
        value = _load_map(arg, data, path, doc, loading)
    elif kind == "choice":
        value = data
        if data not in arg:
            loading.add(path, f"must be one of {', '.join(map(str, arg))}")
            value = _BROKEN
    else:
        value = _load_scalar(arg, data, path, doc, loading)
    if value is _BROKEN:
        return _BROKEN
    if doc.rules and len(loading.problems) == before:
        for rule in doc.rules:
            if rule.check is not None and not rule.check(value):
                loading.add(path, rule.message)
                return _BROKEN
    return value


def _load_list(item_tp: Any, data: Any, path: str, doc: FieldDoc, loading: _Loading) -> Any:
    if not isinstance(data, list):
        loading.add(path, "must be a list")
        return _BROKEN
    broken = False
    if doc.min_items is not None and len(data) < doc.min_items:
        loading.add(path, f"needs at least {doc.min_items} item(s)")
        broken = True
    if doc.max_items is not None and len(data) > doc.max_items:
        loading.add(path, f"has {len(data)} items, at most {doc.max_items} allowed")
        broken = True
    item_doc = FieldDoc(description="")
    loaded = [
        _load_value(item_tp, x, f"{path}[{i}]", item_doc, loading) for i, x in enumerate(data)
    ]
    if doc.list_map_key:
        seen: dict[Any, int] = {}
        for i, item in enumerate(data):
            key = item.get(doc.list_map_key) if isinstance(item, dict) else None
            if not isinstance(key, str):  # missing or mistyped: reported on the item itself
                continue
            if key in seen:
                loading.add(
                    f"{path}[{i}].{doc.list_map_key}",
                    f"duplicate {doc.list_map_key} {key!r} (also at [{seen[key]}])",
                )
                broken = True
            seen.setdefault(key, i)
    if broken:
        return _BROKEN
    kept = [i for i, item in enumerate(loaded) if item is not _BROKEN]
    if len(kept) < len(loaded):
        loading.kept[path] = kept
    return [loaded[i] for i in kept]


def _load_map(value_tp: Any, data: Any, path: str, doc: FieldDoc, loading: _Loading) -> Any:
    if not isinstance(data, dict):
        loading.add(path, "must be a map")
        return _BROKEN
    broken = False
    if doc.max_properties is not None and len(data) > doc.max_properties:
        loading.add(path, f"has {len(data)} keys, at most {doc.max_properties}")
        broken = True
    result = {}
    value_doc = FieldDoc(description="")
    for key, value in data.items():
        sub = f"{path}.{key}"
        if not isinstance(key, str):
            # JSON (and so the API server) has only string keys; YAML 1.1 reads on/off/yes/no,
            # true/false and numbers as other types, which would render as "true" or 1.
            loading.add(
                sub,
                f"key {key!r} is not a string: quote it (YAML reads unquoted on/off, "
                "yes/no, true/false and numbers as booleans and numbers)",
            )
            continue
        if doc.key_pattern and not _matches(doc.key_pattern, key):
            loading.add(sub, f"key must match {doc.key_pattern}")
            continue
        loaded = _load_value(value_tp, value, sub, value_doc, loading)
        if loaded is not _BROKEN:
            result[key] = loaded
    return _BROKEN if broken else result


def _load_scalar(tp: type, data: Any, path: str, doc: FieldDoc, loading: _Loading) -> Any:
    ok = isinstance(data, tp) and not (tp is not bool and isinstance(data, bool))
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        data, ok = float(data), True
    if not ok:
        reason = f"must be {_TYPE_NAMES[tp]}, not {_describe(data)}"
        if tp is str and isinstance(data, int | float) and not isinstance(data, bool):
            reason += f' (quote it: "{data}")'  # YAML reads `replicaAcks: 0` as a number
        loading.add(path, reason)
        return _BROKEN
    if isinstance(data, float) and not math.isfinite(data):
        # YAML has .nan and .inf; JSON (and so the API server) has neither.
        loading.add(path, f"must be a finite number, not {data}")
        return _BROKEN
    before = len(loading.problems)
    if isinstance(data, str):
        if doc.min_length is not None and len(data) < doc.min_length:
            loading.add(
                path,
                "must not be empty"
                if doc.min_length == 1
                else f"must be at least {doc.min_length} characters",
            )
        if doc.max_length is not None and len(data) > doc.max_length:
            loading.add(path, f"must be at most {doc.max_length} characters")
        if doc.pattern is not None and not _matches(doc.pattern, data):
            loading.add(path, pattern_reason(doc.pattern, data))
    else:
        _check_range(data, path, doc, loading)
    return data if len(loading.problems) == before else _BROKEN


def pattern_reason(pattern: str, text: str) -> str:
    """Why ``text`` fails ``pattern``: in words where the pattern has them (``PATTERN_HINTS``),
    else the regular expression itself (the one the CRD's schema shows)."""
    hint = PATTERN_HINTS.get(pattern)
    return f"{text!r} {hint}" if hint else f"{text!r} does not match {pattern}"


def _matches(pattern: str, text: str) -> bool:
    """Whether ``text`` matches ``pattern`` as the API server (Go's RE2) and the services read
    it: Python's ``$`` also matches before a final newline, so ``"ion-api\\n"`` (a YAML block
    scalar) would pass ``re.match`` and then be refused by the API server or the exporter."""
    return re.fullmatch(pattern, text) is not None


def _check_range(value: float, path: str, doc: FieldDoc, loading: _Loading) -> None:
    low, high = doc.minimum, doc.maximum
    if low is not None and (value <= low if doc.exclusive_minimum else value < low):
        loading.add(path, f"must be {'>' if doc.exclusive_minimum else '>='} {low:g}")
    if high is not None and (value >= high if doc.exclusive_maximum else value > high):
        loading.add(path, f"must be {'<' if doc.exclusive_maximum else '<='} {high:g}")


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
