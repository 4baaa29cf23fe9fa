"""A probe's JSON body -> the numbers of its fields (pure: no I/O, no clock).

A field's value is a JSON number, a boolean (1/0) or a string holding a decimal number
(``"0.42"``, ``" 7 "``, ``"1e-3"``); it must be finite. Anything else is a ``FieldProblem``, and
the exporter then removes that field's series rather than keep a stale value. No body makes this
raise: one nested too deep to parse is invalid JSON, a JSONPath that cannot be evaluated over it
(``$..x`` past the recursion limit) is ``unreadable``.
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from typing import Any

import jsonpath

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


def field_value(
    document: Any, path: jsonpath.JSONPath | jsonpath.CompoundJSONPath
) -> float | FieldProblem:
    """The number ``path`` selects in ``document`` (as ``parse_body`` returned it)."""
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
    return number(found[0])


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
