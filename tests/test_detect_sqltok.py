"""_sqltok.c, the C pass of sqli.py's tokenizer, against its Python reference (sqli._tokens_py,
the regex walk): the same tokens, kinds and texts, on every text and every token bound, so the
SQL analyser's verdicts do not depend on which of the two runs."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from node.detect import sqli

_sqltok = pytest.importorskip("node.detect._sqltok", reason="node/detect is not compiled in this tree (make native)")

KINDS = (sqli.WORD, sqli.STR, sqli.NUM, sqli.VAR, sqli.OP, sqli.LOGIC, sqli.COMMENT, sqli.OTHER)


def _native(text: str, max_tokens: int = sqli.MAX_TOKENS) -> list[tuple[str, str]]:
    return _sqltok.tokens(text, max_tokens, sqli._WORD_KINDS, KINDS)


def _check(text: str) -> None:
    for bound in (sqli.MAX_TOKENS, 2, sqli.HEAD_TOKENS + 1, 1, 0, 10_000):
        assert _native(text, bound) == sqli._tokens_py(text, bound), (text, bound)


# what each of the regex's alternatives turns on: quotes doubled and escaped, comment marks
# closed and not, executable comments, number shapes at their edges, variables, dotted and
# dashed names, two-character operators, the letters IGNORECASE maps to ASCII ones (dotted and
# dotless i, long s, Kelvin sign), Unicode digits, spaces and word characters, controls,
# line breaks (a final one is what `$` may stand before), a backslash at the very end
PIECES = [
    "'", '"', "`", "''", '""', "\\", "\\'", '\\"', "\\\\", "/*", "*/", "/*!", "/*!5", "/**/", "--", "-- ", "--\n",
    "--+", "---", "--1", "--/*", "--\x01", "#", "#x", ";%00", ";%0", ";", "0x", "0X1f", "0xg", "0b", "0B01",
    "0b2", "1", "12.5", "1.", ".5", ".", "1e5", "1E+5", "1e-", "1e", "e", "@", "@@", "@a.b$c", "@`x`", "a", "Z",
    "_", "$", "a.b", "a-b", "a-", "a.", "rc-select", "union", "UNION", "select", "Select", "or", "and", "not",
    "like", "true", "null", "sleep", "<=>", "!=", "<>", "<=", ">=", "||", "&&", ":=", "<<", ">>", "=", "<", ">",
    "!", "+", "-", "*", "/", "%", "^", "&", "|", "~", ":", "(", ")", ",", "{", "}", "[", "]", "?",
    "\u0130", "\u0131", "\u017f", "\u212a", "\u0663", "\uff11", "\u00b2", "\u00e9", "\u4e2d", "\u00a0",
    "\u2028", "\x85", "\x1c", "\x1f", "\x00", "\x0b", "\t", "\n", "\r", " ", "  ", "\ud800", "\U0001d7d8",
    "\U0001f600",
]

_texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=24).map("".join)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts)
def test_the_c_pass_tokenizes_as_the_regex_does(text: str) -> None:
    _check(text)


def test_random_sql_shaped_texts() -> None:
    rng = random.Random(14)
    for _ in range(20_000):
        _check("".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 30))))


@pytest.mark.parametrize("text", [
    "", " ", "1' or 1=1-- x", "1' or 1=1--", "1 union/**/select 1,2", "1 union#x\nselect 2", "/*!50000union*/ select",
    "x' or ''='", "'a''b\\", "'ab\\", "'a\\'b", "\"a\"\"b\\", "`a", "`a`b", "a'b'c'", "--", "--\n", "-- \n ",
    "1;%00", "@@version", "@`a`", "0x41414141", "0b0101", "1.5e10", ".5e+2", "rc-select.x-y", "İ or ı=ſ",
    "K" * 3, "١٢٣ or 1=1", "a\u2028or\u20281=1", "x /* open", "x /*! 1", "sleep(5)", "benchmark(1,md5(1))",
    "1 or 1=1 " * 20,
])
def test_shapes(text: str) -> None:
    _check(text)


# the character classes the C pass uses, against the regex's own classes under its flags, on
# every code point
_FLAGS = re.I | re.S | re.X
_CLASSES = {
    "space": re.compile(r"\s", _FLAGS),
    "digit": re.compile(r"\d", _FLAGS),
    "word": re.compile(r"[\w$]", _FLAGS),
    "word_start": re.compile(r"[a-z_$]", _FLAGS),
    "hex": re.compile(r"[0-9a-f]", _FLAGS),
}


@pytest.mark.parametrize("name", sorted(_CLASSES))
def test_character_classes_on_every_code_point(name: str) -> None:
    pattern = _CLASSES[name]
    wrong = [c for c in range(0x110000) if _sqltok.char_class(name, c) != (pattern.fullmatch(chr(c)) is not None)]
    assert not wrong, [hex(c) for c in wrong[:20]]


def test_literal_letters_are_ascii_only_under_ignorecase() -> None:
    # the C pass compares x, b, e and the hex digits' letters as ASCII: no other character
    # matches them under the regex's flags
    for letter in "xbe01":
        pattern = re.compile(letter, _FLAGS)
        assert [c for c in range(128, 0x110000) if pattern.fullmatch(chr(c))] == []


def test_the_analyser_uses_the_c_pass_exactly_when_compiled() -> None:
    import node.detect

    # beside compiled modules the C pass; from the sources (make test's second pass) the regex
    assert (sqli._tokens is not sqli._tokens_py) == node.detect.COMPILED
    assert sqli.tokenize("1 or sleep(5)") == [(sqli.NUM, "1"), (sqli.LOGIC, "or"), (sqli.FUNC, "sleep"),
                                             ("(", "("), (sqli.NUM, "5"), (")", ")")]


def test_a_wrong_call_is_a_clear_error() -> None:
    with pytest.raises(TypeError):
        _sqltok.tokens(b"1 or 1=1", 48, sqli._WORD_KINDS, KINDS)
    with pytest.raises(TypeError):
        _sqltok.tokens("1", 48, sqli._WORD_KINDS, KINDS[:3])
    with pytest.raises(ValueError):
        _sqltok.char_class("nothing", 65)
