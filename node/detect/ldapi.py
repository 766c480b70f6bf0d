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
opening tried and no opening inside what an earlier parse read tried again, nesting bounded
(MAX_DEPTH).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from node.detect.candidates import first_rule
from node.detect.windows import Gate, normalise

MAX_DEPTH = 16
# attribute description: a name or an OID, options after ';', or an extensible match's ':dn:rule'
_ATTR_RE = re.compile(r"\s*(?:[a-z][\w\-]*|\d+(?:\.\d+)+)(?:;[\w\-]+)*(?::dn)?(?::[\w.\-]+)?\s*(?:[~<>:]?=)", re.I)
# a value: anything but the characters RFC 4515 makes escape (lenient on spaces)
_VALUE_RE = re.compile(r"[^()\x00]*")
_COMPOSITE_RE = re.compile(r"\(\s*[&|!]\s*\(")
# a ')' then a '(' that opens something a filter can hold (the look-ahead keeps ')(' runs and
# prose out of the Python loop)
_BREAKOUT_RE = re.compile(r"\)[\s)]*\((?=\s*(?:[&|!(]|[a-z][\w\-;]*\s*[~<>:]?=|\d+(?:\.\d+)+\s*[~<>:]?=))", re.I)


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


class _Reader:
    """Parses filters of one text from the openings a pattern finds, each part of the text
    once: an opening inside what an earlier parse read was read by it (`reach`), so the
    parses together cost one pass."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.reach = -1

    def openings(self, pattern: re.Pattern[str]) -> Iterator[re.Match[str]]:
        self.reach = -1
        for m in pattern.finditer(self.text):
            if m.start() >= self.reach:
                yield m

    def parse(self, start: int) -> tuple[_Parse, int]:
        parse = _Parse(self.text)
        end = parse.filter(start)
        self.reach = max(self.reach, parse.reach)
        return parse, end

    def breakout(self, m: re.Match[str]) -> str | None:
        """At `m`, a ')' then a '(': placed in `(x=TEXT)`, does the value close its item there
        and go on with filter syntax of its own?"""
        text = self.text
        start = m.end() - 1
        parse, end = self.parse(start)
        if end < 0:
            # lenient servers: '((|attr=*)': one stray '(' before a filter
            if text[start + 1:start + 2] == "(":
                inner, inner_end = self.parse(start + 1)
                if inner_end >= 0 and inner.items:
                    return "filter-breakout"
            return None
        star = "*" in text[max(0, m.start() - 64):end]
        if parse.composites or parse.presence or parse.items > 1 or star:
            return "filter-breakout"
        return None

    def composite(self, m: re.Match[str]) -> str | None:
        """At `m`, '(&(' '(|(' or '(!(': a whole filter of the value's own."""
        parse, end = self.parse(m.start())
        return "filter" if end >= 0 and parse.items >= 1 else None


def judge(text: str, out_of_time: Callable[[], bool] | None = None) -> str | None:
    if "(" not in text:
        return None  # '*))' and a NUL: the normalised text has no NUL left (ldapi signature)
    reader = _Reader(text)
    rule = first_rule(reader.openings(_BREAKOUT_RE), reader.breakout, out_of_time)
    if rule is None:
        rule = first_rule(reader.openings(_COMPOSITE_RE), reader.composite, out_of_time)
    if rule is None and text.lstrip().startswith("(") and _whole_filter(text):
        rule = "filter"
    return rule


def detect_ldapi(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
                 gate: Gate | None = None) -> str | None:
    """A rule name if `value`, placed in an LDAP filter, changes the filter's structure (the
    whole value, opening by opening: no windows, `gate` is not needed)."""
    if ")" not in value and "(" not in value:
        return None
    return judge(normalise(value), out_of_time)
