"""A probe's JSON body -> the numbers of its fields and the values it counts (pure: no I/O, no
clock).

A field's value is a JSON number, a boolean (1/0) or a string holding a decimal number
(``"0.42"``, ``" 7 "``, ``"1e-3"``); it must be finite. A field with a value map also takes the
map's strings (``"locked"`` -> 1); any other string is then ``unmapped``. Anything else is a
``FieldProblem``, and the exporter then removes that field's series rather than keep a stale
value. A counted field (``count_values``) is read as a string: strings as they are, numbers and
booleans as their JSON text, at most ``MAX_COUNTED_TEXT`` characters (a longer one is
``too_long``) and encodable as UTF-8 (a lone surrogate, ``"\\ud800"``, is ``not_text``): the text
becomes a label value and a CSV cell, and one that cannot be encoded would break every later
scrape and CSV batch. No body makes this raise: one nested too deep to parse is invalid
JSON, a JSONPath that cannot be evaluated over it (``$..x`` past the recursion limit) is
``unreadable``.

``read_fields`` does it all for one probe from the raw body; ``body_reader`` runs it in a process
of its own for a big body.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import jsonpath

from ..json_paths import JSONPATH

# A decimal number as JSON writes it, optionally signed and padded: not Python's float()
# grammar, which also takes "nan", "infinity", "1_000" and other scripts' digits ("٣" is 3).
_NUMERIC_STRING = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)


class FieldProblem(StrEnum):
    """Why a field has no value; the ``reason`` label of ``lumen_probe_field_errors_total``."""

    INVALID_JSON = "invalid_json"  # the body is not JSON at all
    MISSING = "missing"  # the JSONPath selects nothing
    MANY_VALUES = "many_values"  # the JSONPath selects more than one node
    NOT_A_NUMBER = "not_a_number"  # null, an object, a list, a non-numeric string, NaN, inf
    UNREADABLE = "unreadable"  # the JSONPath cannot be evaluated (e.g. $..x, nested too deep)
    UNMAPPED = "unmapped"  # a string that is not a key of the field's value map
    # A counted value past the probe's max_distinct_values, counted as "__other__" (the cap is
    # kept by the exporter's metrics, not here: reading a body knows nothing of earlier runs).
    TOO_MANY_VALUES = "too_many_values"
    TOO_LONG = "too_long"  # a counted value longer than MAX_COUNTED_TEXT characters
    NOT_TEXT = "not_text"  # a counted string that is not valid Unicode (a lone surrogate)


# A counted value is a label value: a name, a mode, a persona. One longer than this is no such
# thing (a message, a dump), and would make every scrape and CSV row as long.
MAX_COUNTED_TEXT = 128


class InvalidBody:
    """The body of a probe that could not be parsed as JSON."""

    __slots__ = ()


INVALID_BODY = InvalidBody()


def parse_body(body: bytes) -> Any:
    """The JSON document in ``body``, or ``INVALID_BODY``."""
    try:
        return json.loads(body)
    # JSONDecodeError and UnicodeDecodeError are ValueErrors; RecursionError: nested too deep.
    except (ValueError, RecursionError):
        return INVALID_BODY


JsonPath = jsonpath.JSONPath | jsonpath.CompoundJSONPath


def field_value(
    document: Any, path: JsonPath, value_map: Mapping[str, float] | None = None
) -> float | FieldProblem:
    """The number ``path`` selects in ``document`` (as ``parse_body`` returned it), through
    ``value_map`` when the field has one."""
    found = _one_value(document, path)
    if isinstance(found, FieldProblem):
        return found
    return mapped_number(found, value_map) if value_map else number(found)


def counted_value(document: Any, path: JsonPath) -> str | FieldProblem:
    """The value ``path`` selects in ``document`` as the string it is counted under."""
    found = _one_value(document, path)
    if isinstance(found, FieldProblem):
        return found
    return value_text(found)


def _one_value(document: Any, path: JsonPath) -> Any:
    """The one JSON value ``path`` selects, or why there is not exactly one."""
    if isinstance(document, InvalidBody):
        return FieldProblem.INVALID_JSON
    try:
        found = path.findall(document)
    except (jsonpath.JSONPathError, RecursionError):
        # e.g. $..x over a document nested deeper than the recursion limit: no value rather
        # than an exception that would leave the probe's last result (and its fields) in place.
        return FieldProblem.UNREADABLE
    if not found:
        return FieldProblem.MISSING
    if len(found) > 1:
        return FieldProblem.MANY_VALUES
    return found[0]


def mapped_number(value: object, value_map: Mapping[str, float]) -> float | FieldProblem:
    """A JSON value of a field with a value map: a string that is a key of the map is the
    map's number (matched exactly); any other string must be numeric, else it is
    ``unmapped``; numbers and booleans are as ``number`` has them."""
    if isinstance(value, str):
        if value in value_map:
            return value_map[value]
        if not _NUMERIC_STRING.fullmatch(value):
            return FieldProblem.UNMAPPED
    return number(value)


def value_text(value: object) -> str | FieldProblem:
    """A JSON value as the ``value`` label it is counted under: a string as it is, a number or
    a boolean as JSON writes it (``3``, ``0.5``, ``true``); null, objects and lists have none.
    Past ``MAX_COUNTED_TEXT`` characters it is ``too_long``; a string with a lone surrogate
    (JSON's ``"\\ud800"``, which ``json.loads`` takes) is ``not_text``."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):  # before int: True is an int too
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)  # up to 4300 digits (Python's limit; json.loads refuses more)
    elif isinstance(value, float) and math.isfinite(value):
        text = json.dumps(value)
    else:
        return FieldProblem.NOT_A_NUMBER
    if len(text) > MAX_COUNTED_TEXT:
        return FieldProblem.TOO_LONG
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return FieldProblem.NOT_TEXT
    return text


def number(value: object) -> float | FieldProblem:
    """A JSON value as a gauge's number: numbers, booleans 1/0, numeric strings."""
    if isinstance(value, bool):  # before int: True is an int too
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        try:
            result = float(value)
        except OverflowError:  # an int past float's range (JSON allows any length)
            return FieldProblem.NOT_A_NUMBER
    elif isinstance(value, str) and _NUMERIC_STRING.fullmatch(value):
        result = float(value)
    else:
        return FieldProblem.NOT_A_NUMBER
    return result if math.isfinite(result) else FieldProblem.NOT_A_NUMBER


@dataclass(frozen=True)
class BodyFields:
    """What to read from a probe's body: ``gauges`` metric -> JSONPath (with ``value_maps``
    for some), ``counted`` counter name -> JSONPath."""

    gauges: Mapping[str, str] = field(default_factory=dict)
    value_maps: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    counted: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldReading:
    """What a body gave: numbers of the gauges, strings of the counted fields, and why each of
    the others has none."""

    numbers: dict[str, float] = field(default_factory=dict)
    counted: dict[str, str] = field(default_factory=dict)
    problems: dict[str, FieldProblem] = field(default_factory=dict)


def read_fields(body: bytes | None, wanted: BodyFields) -> FieldReading:
    """Every field of ``wanted`` from ``body`` (None: a body too big to read whole, as unusable
    as one that is not JSON)."""
    reading = FieldReading()
    if not wanted.gauges and not wanted.counted:
        return reading
    document = INVALID_BODY if body is None else parse_body(body)
    for name, path in wanted.gauges.items():
        value = field_value(document, compiled(path), wanted.value_maps.get(name))
        if isinstance(value, FieldProblem):
            reading.problems[name] = value
        else:
            reading.numbers[name] = value
    for name, path in wanted.counted.items():
        text = counted_value(document, compiled(path))
        if isinstance(text, FieldProblem):
            reading.problems[name] = text
        else:
            reading.counted[name] = text
    return reading


@functools.cache
def compiled(path: str) -> JsonPath:
    """``path`` compiled once per process (the config checked it; a worker process compiles
    its own). Unbounded, but only the configuration's paths are ever compiled."""
    return JSONPATH.compile(path)
