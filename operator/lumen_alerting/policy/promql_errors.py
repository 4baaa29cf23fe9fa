"""Where in a PromQL expression the parser's error applies, for messages a person can act on.

``promql-parser`` (0.12) raises a ``ValueError`` whose text is the message alone ("unclosed
left parenthesis"): neither the exception nor its arguments carry a position. So the position
is worked out here, from the expression and that message, in the ways that give a true answer:

- bracket and quote errors: a small scan of the expression that pairs brackets outside string
  literals and comments, as PromQL's lexer does, names the unclosed ``(``/``{``/``[``, the stray
  closer or the opening quote of an unterminated string;
- errors naming a function (``unknown function with name 'rat'``): that name followed by ``(``;
- ``illegal regex for X``: the string literal holding ``X``;
- the generic syntax error ("invalid promql query"): the parser gives it as well for a prefix
  that merely ends early ("up +"), so the position is found from the other side: after the
  longest prefix that, its open brackets and string closed, does not give that error. That is
  where the expression stops making sense, hence "near", not "at";
- any other error: the shortest prefix for which the parser gives the same message. The parser
  reads left to right, so a lexer error ("unexpected character inside brackets") is met at that
  prefix's last character; a message only the whole expression gives (a type error) gets no
  position, as it is about no one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import promql_parser

_CLOSER = {"(": ")", "[": "]", "{": "}"}
_STRAY = {"parenthesis": ")", "bracket": "]", "brace": "}"}
# The prefix search parses prefixes of growing length: this many characters in all (about 0.1 s)
# bound it, so a long expression with an early error costs no more than that.
_PREFIX_BUDGET = 150_000
_EXCERPT = 24
_SYNTAX_ERROR = "invalid promql query"
_WORD = re.compile(r"[\w.:]")


@dataclass(frozen=True)
class Position:
    offset: int  # in the expression, 0-based
    exact: bool  # False: the error is near here (see the module docstring)


def parse_error(expr: str) -> str | None:
    """None when ``expr`` parses, else the parser's message."""
    try:
        promql_parser.parse(expr)
    except (ValueError, TypeError) as error:
        return str(error)
    return None


def parse_problem(expr: str, shown: str | None = None) -> str | None:
    """None when ``expr`` parses, else the parser's message with its position, e.g.
    ``unclosed left parenthesis (column 5: "(x[5m]")``. ``shown``: the text to quote and count
    lines in, when ``expr`` was made from it by substitutions of equal length."""
    message = parse_error(expr)
    if message is None:
        return None
    return with_position(shown if shown is not None else expr, message, locate(expr, message))


def with_position(text: str, message: str, position: Position | None) -> str:
    """``message (column C: "<text from there>")``; ``line L, column C`` in a text of several
    lines, ``near`` for a position that is not exact."""
    if position is None:
        return message
    before = text[: position.offset]
    line = before.count("\n") + 1
    column = position.offset - (before.rfind("\n") + 1) + 1
    where = f"line {line}, column {column}" if "\n" in text.rstrip("\n") else f"column {column}"
    excerpt = text[position.offset :].split("\n", 1)[0]
    if len(excerpt) > _EXCERPT:
        excerpt = excerpt[:_EXCERPT] + "…"
    return f'{message} ({"" if position.exact else "near "}{where}: "{excerpt}")'


def locate(expr: str, message: str) -> Position | None:
    """Where ``message`` (the parser's error for ``expr``) applies, if that can be told."""
    scan = _scan(expr)
    if message.startswith("unclosed left parenthesis"):
        return _innermost(scan.open_brackets, "(")
    if message.startswith("unexpected end of input inside braces"):
        return _innermost(scan.open_brackets, "{")
    if message.startswith("unexpected end of input inside brackets"):
        return _innermost(scan.open_brackets, "[")
    if message.startswith("unterminated quoted string"):
        return None if scan.open_quote is None else Position(scan.open_quote, exact=True)
    stray = re.match(r"unexpected right (parenthesis|bracket|brace)\b", message)
    if stray:
        offset = scan.stray_closers.get(_STRAY[stray.group(1)])
        return None if offset is None else Position(offset, exact=True)
    function = re.search(r"function\b.*?'([A-Za-z_][A-Za-z0-9_]*)'", message)
    if function:
        call = re.search(rf"(?<![\w:]){re.escape(function.group(1))}\s*\(", expr)
        return None if call is None else Position(call.start(), exact=True)
    regex = re.match(r"illegal regex for (.*)$", message, re.DOTALL)
    if regex:
        literal = re.search(r"""(["'`])""" + re.escape(regex.group(1)) + r"\1", expr)
        return None if literal is None else Position(literal.start(), exact=True)
    if message == _SYNTAX_ERROR:
        return _after_longest_sound_prefix(expr)
    return _first_prefix_with(expr, message)


@dataclass(frozen=True)
class _Scan:
    open_brackets: list[tuple[str, int]]  # still open at the end, outermost first
    stray_closers: dict[str, int]  # the first closer of each kind that closes nothing
    open_quote: int | None  # the opening quote of a string still open at the end


def _scan(expr: str) -> _Scan:
    """Pair brackets as PromQL's lexer does: not inside "...", '...' or `...` strings (where a
    backslash escapes in the first two), not in a # comment (to the end of its line)."""
    stack: list[tuple[str, int]] = []
    stray: dict[str, int] = {}
    quote: int | None = None
    i = 0
    while i < len(expr):
        char = expr[i]
        if quote is not None:
            if char == "\\" and expr[quote] != "`":
                i += 1
            elif char == expr[quote]:
                quote = None
        elif char in "\"'`":
            quote = i
        elif char == "#":
            newline = expr.find("\n", i)
            i = len(expr) if newline < 0 else newline
        elif char in _CLOSER:
            stack.append((char, i))
        elif char in ")]}":
            if stack and _CLOSER[stack[-1][0]] == char:
                stack.pop()
            else:
                stray.setdefault(char, i)
        i += 1
    return _Scan(stack, stray, quote)


def _innermost(open_brackets: list[tuple[str, int]], kind: str) -> Position | None:
    for char, offset in reversed(open_brackets):
        if char == kind:
            return Position(offset, exact=True)
    return None


def _closed(prefix: str) -> str:
    """``prefix`` with its open string and brackets closed, so that only its syntax is judged."""
    scan = _scan(prefix)
    tail = "" if scan.open_quote is None else prefix[scan.open_quote]
    if "#" in prefix:  # the closers must not land in a comment
        tail += "\n"
    return prefix + tail + "".join(_CLOSER[char] for char, _ in reversed(scan.open_brackets))


def _after_longest_sound_prefix(expr: str) -> Position | None:
    spent = 0
    for end in range(len(expr) - 1, 0, -1):
        if _WORD.match(expr, end - 1) and _WORD.match(expr, end):
            continue  # a cut through a name or number makes another word of it
        spent += end
        if spent > _PREFIX_BUDGET:
            return None
        try:
            promql_parser.parse(_closed(expr[:end]))
        except (ValueError, TypeError) as error:
            if str(error) == _SYNTAX_ERROR:
                continue
        offset = end
        while offset < len(expr) - 1 and expr[offset].isspace():
            offset += 1
        return Position(offset, exact=False)
    return None


def _first_prefix_with(expr: str, message: str) -> Position | None:
    """The end of the shortest prefix giving ``message`` (as it is, or with its brackets
    closed), found by bisection: a prefix that holds the place the parser stopped at gives that
    message, and a shorter one, cut before it, does not, as the parser reads left to right."""

    def gives(end: int) -> bool:
        prefix = expr[:end]
        return message in (_message(prefix), _message(_closed(prefix)))

    low, high = 0, len(expr)  # low: does not give the message (the empty prefix); high: does
    while high - low > 1:
        middle = (low + high) // 2
        if gives(middle):
            high = middle
        else:
            low = middle
    if high == len(expr):
        return None  # only the whole expression is wrong (a type error): no one place to show
    offset = high - 1
    while offset > 0 and expr[offset].isspace():
        offset -= 1
    return Position(offset, exact=message.startswith("unexpected"))


def _message(expr: str) -> str | None:
    try:
        promql_parser.parse(expr)
    except (ValueError, TypeError) as error:
        return str(error)
    return None
