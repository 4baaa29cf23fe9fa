"""A probe field's JSON value -> a gauge's number: numbers, booleans 1/0, numeric strings, and
the strings of the field's value map; all else is a named problem, never a guess. A counted
field's value -> the string it is counted under."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumen_alerting.exporter.config import ExporterConfig
from lumen_alerting.exporter.values import (
    INVALID_BODY,
    MAX_COUNTED_TEXT,
    BodyFields,
    FieldProblem,
    FieldReading,
    counted_value,
    field_value,
    mapped_number,
    number,
    parse_body,
    read_fields,
    value_text,
)
from lumen_alerting.json_paths import JSONPATH


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
        *(
            None,
            {},
            [],
            [1],
            "",
            "locked",
            "nan",
            "NaN",
            "inf",
            "-Infinity",
            "1_000",
            "0x10",
        ),
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


GATEWAY_STATUS = {"down": 0.0, "locked": 1.0, "unlocked": 2.0}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("locked", 1.0),
        ("unlocked", 2.0),
        ("down", 0.0),
        # Not keys: numbers, booleans and numeric strings convert as without a map.
        (2, 2.0),
        (True, 1.0),
        (" 7 ", 7.0),
        # Matched exactly: any other string is unmapped, not guessed.
        ("Locked", FieldProblem.UNMAPPED),
        (" locked", FieldProblem.UNMAPPED),
        ("", FieldProblem.UNMAPPED),
        ("nan", FieldProblem.UNMAPPED),
        # Numeric but not a gauge's number: as without a map.
        ("1e999", FieldProblem.NOT_A_NUMBER),
        (None, FieldProblem.NOT_A_NUMBER),
        ({"status": "locked"}, FieldProblem.NOT_A_NUMBER),
    ],
)
def test_a_value_map_turns_its_strings_into_numbers(value, expected):
    assert mapped_number(value, GATEWAY_STATUS) == expected
    document = parse_body(json.dumps({"gateway": {"status": value}}).encode())
    path = JSONPATH.compile("$.gateway.status")
    assert field_value(document, path, GATEWAY_STATUS) == expected


def test_a_map_key_wins_over_the_numeric_reading_of_a_string():
    assert mapped_number("1", {"1": 5.0}) == 5.0
    assert mapped_number(1, {"1": 5.0}) == 1.0  # a number is not a string key


def test_an_empty_string_may_be_mapped_like_any_other():
    # lumenctl validate and the CRD accept {"": 0} (an API answering "" for unknown): so must
    # the exporter's config, or an accepted policy would crash-loop the exporter.
    assert mapped_number("", {"": 0.0, "up": 1.0}) == 0.0
    config = ExporterConfig.model_validate(
        {
            "probes": [
                {
                    "name": "a",
                    "url": "http://a",
                    "fields": {"m": "$.s"},
                    "value_maps": {"m": {"": 0}},
                }
            ]
        }
    )
    assert config.probes[0].value_maps == {"m": {"": 0.0}}


def test_without_a_map_a_word_is_not_a_number():
    document = parse_body(b'{"status": "locked"}')
    assert field_value(document, JSONPATH.compile("$.status")) is FieldProblem.NOT_A_NUMBER
    assert field_value(document, JSONPATH.compile("$.status"), {}) is FieldProblem.NOT_A_NUMBER


@given(st.dictionaries(st.text(min_size=1), st.floats(allow_nan=False), min_size=1))
def test_every_key_of_a_map_reads_as_its_number(value_map):
    for key, mapped in value_map.items():
        assert mapped_number(key, value_map) == mapped


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Nana", "Nana"),
        ("", ""),
        ("  spaced  ", "  spaced  "),
        ("한국어", "한국어"),
        (3, "3"),
        (-0.5, "-0.5"),
        (1e100, "1e+100"),
        (True, "true"),
        (False, "false"),
        (None, FieldProblem.NOT_A_NUMBER),
        ({}, FieldProblem.NOT_A_NUMBER),
        (["Nana"], FieldProblem.NOT_A_NUMBER),
        (float("nan"), FieldProblem.NOT_A_NUMBER),
    ],
)
def test_a_counted_field_is_read_as_a_string(value, expected):
    assert value_text(value) == expected
    document = parse_body(json.dumps({"persona": value}).encode())
    assert counted_value(document, JSONPATH.compile("$.persona")) == expected


def test_a_counted_field_missing_or_many_is_a_problem_as_for_gauges():
    document = parse_body(b'{"personas": ["Nana", "Lua"]}')
    assert counted_value(document, JSONPATH.compile("$.persona")) is FieldProblem.MISSING
    assert counted_value(document, JSONPATH.compile("$.personas[*]")) is FieldProblem.MANY_VALUES
    assert counted_value(document, JSONPATH.compile("$.personas[1]")) == "Lua"
    assert counted_value(INVALID_BODY, JSONPATH.compile("$.persona")) is FieldProblem.INVALID_JSON


WANTED = BodyFields(
    gauges={"status": "$.gateway.status", "mock": "$.mock"},
    value_maps={"status": GATEWAY_STATUS},
    counted={"persona": "$.persona", "absent": "$.absent"},
)


def test_read_fields_reads_gauges_through_their_maps_and_counted_fields():
    body = b'{"mock": false, "gateway": {"status": "unlocked"}, "persona": "Nana"}'
    assert read_fields(body, WANTED) == FieldReading(
        numbers={"status": 2.0, "mock": 0.0},
        counted={"persona": "Nana"},
        problems={"absent": FieldProblem.MISSING},
    )


@pytest.mark.parametrize("body", [None, b"<html>", b"[" * 100_000])
def test_read_fields_of_an_unusable_body_is_invalid_json_everywhere(body):
    reading = read_fields(body, WANTED)
    assert (reading.numbers, reading.counted) == ({}, {})
    assert reading.problems == dict.fromkeys(
        ["status", "mock", "persona", "absent"], FieldProblem.INVALID_JSON
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # json.loads takes a lone surrogate; the str it gives cannot be encoded as UTF-8.
        (b'{"persona": "\\ud800"}', FieldProblem.NOT_TEXT),
        (b'{"persona": "Na\\udfffna"}', FieldProblem.NOT_TEXT),
        # A surrogate pair is one character, as any other.
        (b'{"persona": "\\ud83c\\udf19"}', "\U0001f319"),
        (json.dumps({"persona": "N" * MAX_COUNTED_TEXT}).encode(), "N" * MAX_COUNTED_TEXT),
        (json.dumps({"persona": "N" * (MAX_COUNTED_TEXT + 1)}).encode(), FieldProblem.TOO_LONG),
        (b'{"persona": ' + b"7" * 200 + b"}", FieldProblem.TOO_LONG),
    ],
)
def test_a_counted_value_is_a_short_utf8_text_or_a_problem(body, expected):
    """A counted value becomes a label and a CSV cell: one that cannot be encoded would break
    every later scrape, and a long one would be in every scrape."""
    assert counted_value(parse_body(body), JSONPATH.compile("$.persona")) == expected
