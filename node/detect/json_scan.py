"""The string literals of a JSON-like text that Python's json module refuses.

Express (body-parser, JSON.parse) accepts documents that json.loads rejects: numbers past
Python's 4,300-digit int limit, nesting past its recursion limit; newline-delimited JSON is
several documents. Their string leaves and keys still reach the application, so they are
found here by a linear scan for "..." literals (str.find, no backtracking), each decoded as
JSON.parse would, leniently where it is malformed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from node.detect.content_type import closing_quote

_ESCAPE_RE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(.))", re.S)
_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def string_literals(text: str) -> Iterator[tuple[str, bool]]:
    """(decoded literal, is it an object key) for each literal in order; an unterminated
    literal runs to the end of the text."""
    i = 0
    n = len(text)
    while True:
        q = text.find('"', i)
        if q < 0:
            return
        close = closing_quote(text, q + 1)
        if close < 0:
            yield decode_literal(text[q + 1 :]), False
            return
        j = close + 1
        while j < n and text[j] in " \t\r\n":
            j += 1
        yield decode_literal(text[q + 1 : close]), j < n and text[j] == ":"
        i = close + 1


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
