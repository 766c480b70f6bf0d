"""The string literals of a JSON-like text that Python's json module refuses.

Express (body-parser, JSON.parse) accepts documents that json.loads rejects: numbers past
Python's 4,300-digit int limit, nesting past its recursion limit; newline-delimited JSON is
several documents. Their string leaves and keys still reach the application, so they are
found here by one scan for "..." literals (a possessive regex: no backtracking), each decoded as
JSON.parse would, leniently where it is malformed.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterator
from itertools import groupby, zip_longest


_ESCAPE_RE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(.))", re.S)
_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


# a literal: its body (escapes kept), then its closing quote and a ':' after white space (an
# object key), or no closing quote: an unterminated literal runs to the end of the text (a
# lone backslash at the very end included). Possessive, so no backtracking: one C pass finds
# every literal of the text, with no Python step per character or per quote.
_LITERAL_RE = re.compile(r'"((?:[^"\\]++|\\.)*+)(?:(")[ \t\r\n]*+(:?)|(\\?)\Z)', re.S)


def string_literals(text: str) -> Iterator[tuple[str, bool]]:
    """(decoded literal, is it an object key) for each literal in order; an unterminated
    literal runs to the end of the text. A literal repeated right after itself (`{"a":{"a":...`
    or `["x","x",...]`) is given once: to a reader that tracks the last key, the repeat says
    nothing new, and a megabyte of it is then one item, not 100,000."""
    prev: tuple[str, bool] | None = None
    # groupby (C) drops repeats of the same token; `prev` those that read the same (`"aA"`
    # after `"a\u0041"`)
    for item, _ in groupby(_tokens(text)):
        if item != prev:
            yield item
            prev = item


def _tokens(text: str) -> Iterator[tuple[str, bool]]:
    if "\\" in text:
        for raw, closed, colon, tail in _LITERAL_RE.findall(text):
            yield decode_literal(raw + tail), bool(colon) and bool(closed)
        return
    # no escapes: the literals are the odd pieces between quotes (str.split, a C pass), each
    # followed by the text up to the next quote (None after an unterminated last literal);
    # repeats of a (literal, what follows) pair are dropped before any Python step
    pieces = text.split('"')
    for (body, gap), _ in groupby(zip_longest(pieces[1::2], pieces[2::2])):
        yield body, gap is not None and gap.lstrip(" \t\r\n")[:1] == ":"


def decode_literal(raw: str) -> str:
    if "\\" not in raw:
        return raw
    try:
        return json.loads('"' + raw + '"')
    except ValueError:
        pass
    decoded = _ESCAPE_RE.sub(_unescape, raw)
    # pair up surrogates written as two \u escapes; lone ones become U+FFFD
    return decoded.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _unescape(m: re.Match[str]) -> str:
    if m.group(1):
        return chr(int(m.group(1), 16))
    c = m.group(2)
    return _SIMPLE.get(c, c)


# JSON objects as lists of their (key, value) pairs, in order, repeated keys included: Python's
# json (and Express, Go) keep a repeated key's last value, other parsers its first (Jackson's
# default was, some PHP versions), so `{"q":"<payload>","q":1}` must have both judged. The
# `list` hook is C: no Python step per object, and faster than building dicts. A JSON array
# never holds a tuple, so a non-empty list whose first item is a tuple is an object.
DECODER = json.JSONDecoder(object_pairs_hook=list)
loads = DECODER.decode


KEY = operator.itemgetter(0)  # of a (key, value) pair
VALUE = operator.itemgetter(1)


def is_object(node: list) -> bool:
    """A list that DECODER made of a JSON object (an empty object reads as an empty array:
    neither carries anything)."""
    return bool(node) and type(node[0]) is tuple
