"""A probe field's JSON value -> a gauge's number: numbers, booleans 1/0, numeric strings; all
else is a named problem, never a guess."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumen_alerting.exporter.values import (
    INVALID_BODY,
    FieldProblem,
    field_value,
    number,
    parse_body,
)
from lumen_alerting.policy.probe_metrics import JSONPATH


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.42, 0.42),
        (7, 7.0),
        (-3, -3.0),
        (True, 1.0),
        (False, 0.0),
        ("0.40", 0.40),
        (" 12 ", 12.0),
        ("-1.5e-3", -0.0015),
        ("+.5", 0.5),
    ],
)
def test_numbers_booleans_and_numeric_strings(value, expected):
    assert number(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        *(None, {}, [], [1], "", "locked", "nan", "NaN", "inf", "-Infinity", "1_000", "0x10"),
        *("1e999", 10**400, float("nan"), float("inf")),
    ],
)
def test_anything_else_is_not_a_number(value):
    assert number(value) is FieldProblem.NOT_A_NUMBER


@pytest.mark.parametrize("value", ["\u0663", "\u0661.5", "\uff17", "\u20037"])
def test_only_ascii_digits_and_spaces_make_a_numeric_string(value):
    assert number(value) is FieldProblem.NOT_A_NUMBER


def test_fields_are_read_by_jsonpath_from_the_body():
    document = parse_body(b'{"mock": false, "gateway": {"status": 1}, "list": [1, 2]}')
    assert field_value(document, JSONPATH.compile("$.mock")) == 0.0
    assert field_value(document, JSONPATH.compile("$.gateway.status")) == 1.0
    assert field_value(document, JSONPATH.compile("$.list[1]")) == 2.0
    assert field_value(document, JSONPATH.compile("$.absent")) is FieldProblem.MISSING
    assert field_value(document, JSONPATH.compile("$.gateway.x.y")) is FieldProblem.MISSING
    assert field_value(document, JSONPATH.compile("$.list[*]")) is FieldProblem.MANY_VALUES
    assert field_value(document, JSONPATH.compile("$.list")) is FieldProblem.NOT_A_NUMBER


def test_a_json_null_body_is_json_without_the_field():
    document = parse_body(b"null")
    assert document is None
    assert field_value(document, JSONPATH.compile("$.mock")) is FieldProblem.MISSING


@pytest.mark.parametrize("body", [b"", b"<html>oops</html>", b'{"mock": ', b"\xff\xfe"])
def test_a_body_that_is_not_json_fails_every_field(body):
    document = parse_body(body)
    assert document is INVALID_BODY
    assert field_value(document, JSONPATH.compile("$.mock")) is FieldProblem.INVALID_JSON


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_finite_number_survives_json_and_its_string_form(value):
    body = json.dumps({"n": value, "s": repr(value)}).encode()
    document = parse_body(body)
    assert field_value(document, JSONPATH.compile("$.n")) == value
    text_value = field_value(document, JSONPATH.compile("$.s"))
    assert isinstance(text_value, float) and math.isclose(text_value, value, rel_tol=0, abs_tol=0)
