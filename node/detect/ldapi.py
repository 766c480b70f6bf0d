"""LDAP filter injection, judged by parsing the filter the value would make (RFC 4515).

An application builds a filter such as `(uid=VALUE)` or `(&(uid=VALUE)(pass=X))`. The value
is an injection when, placed there, it closes the item it was meant to fill and goes on with
filter syntax of its own:

* `*)(uid=*))(|(uid=*`: `(x=*)`, then the complete item `(uid=*)`;
* `admin)(&)`: the absolute-true filter `(&)` (RFC 4526) after the closed item;
* `x)(!(cn=x))`, `*)(|(objectclass=*)`: a complete composite after it;
* or the value is a whole filter: `(&(uid=*)(userPassword=*))`, `(|(mail=*)(cn=*))`.

The parser is a small recursive descent over `filter = "(" ( ("&"|"|") filter* | "!" filter |
attr op value ) ")"`, with `op` one of `= ~= >= <= :=` and extensible matches; lenient as
servers are (spaces around parts, a missing close at the end of the text). `(a)(b)(c)`,
`f(x) = x * (x + 1)` and `great :))` are no filters. Linear: no backtracking, one pass per
start position tried, bounded nesting (MAX_DEPTH) and window (MAX_LEN).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from node.detect.windows import Gate, judge_windows, normalise

MAX_LEN = 1024
MAX_DEPTH = 16
# attribute description: a name or an OID, options after ';', or an extensible match's ':dn:rule'
_ATTR_RE = re.compile(r"\s*(?:[a-z][\w\-]*|\d+(?:\.\d+)+)(?:;[\w\-]+)*(?::dn)?(?::[\w.\-]+)?\s*(?:[~<>:]?=)", re.I)
# a value: anything but the characters RFC 4515 makes escape (lenient on spaces)
_VALUE_RE = re.compile(r"[^()\x00]*")
_COMPOSITE_RE = re.compile(r"\(\s*[&|!]\s*\(")


class _Parse:
    """One parse of `text` from a position: counts what the filter was made of."""

    __slots__ = ("text", "items", "composites", "presence", "reach")

    def __init__(self, text: str) -> None:
        self.text = text
        self.items = 0
        self.composites = 0
        self.presence = 0
        self.reach = 0  # the furthest position read: later starts before it were read already

    def filter(self, i: int, depth: int = 0) -> int:
        """End of the filter starting at `i` (a '('), or -1. The end of the text closes
        whatever is open (the application appends its own closing parentheses)."""
        text, n = self.text, len(self.text)
        self.reach = max(self.reach, i)
        if depth > MAX_DEPTH or i >= n or text[i] != "(":
            return -1
        i += 1
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] in "&|!":
            op = text[i]
            i += 1
            count = 0
            while True:
                while i < n and text[i] == " ":
                    i += 1
                if i >= n:
                    break
                if text[i] == ")":
                    i += 1
                    break
                end = self.filter(i, depth + 1)
                if end < 0:
                    return -1
                count += 1
                i = end
            if op == "!" and count != 1 and i <= n and text[i - 1:i] == ")":
                return -1
            self.composites += 1
            return i
        m = _ATTR_RE.match(text, i)
        if not m:
            return -1
        v = _VALUE_RE.match(text, m.end())
        value = v.group(0) if v else ""
        i = v.end() if v else m.end()
        self.reach = max(self.reach, i)
        if i < n and text[i] != ")":
            return -1
        self.items += 1
        if value.strip() == "*":
            self.presence += 1
        return i + 1 if i < n else n


def _whole_filter(text: str) -> bool:
    """`text` is one filter with structure of its own (a composite, a presence test)."""
    stripped = text.strip()
    if not stripped.startswith("("):
        return False
    parse = _Parse(stripped)
    end = parse.filter(0)
    return end >= len(stripped.rstrip(")")) and parse.items >= 1 and (parse.composites or parse.presence) > 0


def _breakout(text: str) -> str | None:
    """Placed in `(x=TEXT)`: does it close that item and go on with filter syntax?"""
    close = text.find(")")
    if close < 0:
        return None
    i, n = close + 1, len(text)
    while i < n and text[i] in ") ":
        i += 1
    if i >= n or text[i] != "(":
        return None
    parse = _Parse(text)
    end = parse.filter(i)
    if end < 0:
        # lenient servers: '((|attr=*)': one stray '(' before a filter
        if text[i + 1:i + 2] == "(" and parse.filter(i + 1) >= 0 and parse.items:
            return "filter-breakout"
        return None
    if parse.composites or parse.presence or parse.items > 1 or "*" in text:
        return "filter-breakout"
    return None


def judge(text: str) -> str | None:
    if "(" not in text:
        return None  # '*))' and a NUL: the normalised text has no NUL left (ldapi signature)
    rule = _breakout(text)
    if rule:
        return rule
    # a whole filter, or one that starts within the value: '(&(' '(|(' '(!('
    reach = -1
    for m in _COMPOSITE_RE.finditer(text):
        if m.start() <= reach:
            continue  # inside a filter already read from an earlier start
        parse = _Parse(text)
        if parse.filter(m.start()) >= 0 and parse.items >= 1:
            return "filter"
        reach = parse.reach
    if text.lstrip().startswith("(") and _whole_filter(text):
        return "filter"
    return None


def _detect_window(text: str, _start: int = 0, _owned: int = 0) -> str | None:
    return judge(text)


def detect_ldapi(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
                 gate: Gate | None = None) -> str | None:
    """A rule name if `value`, placed in an LDAP filter, changes the filter's structure."""
    if ")" not in value and "(" not in value:
        return None
    return judge_windows(normalise(value), MAX_LEN, _detect_window, out_of_time, gate)
