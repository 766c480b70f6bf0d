"""NoSQL (MongoDB) operator injection: a `$operator` where a query reads field names.

Query-string parsers (qs, PHP, Rack) turn `user[$ne]=x` and `user.$ne=x` into
`{"user": {"$ne": "x"}}`; a JSON body carries `{"user": {"$ne": null}}` directly. So a value
or a parameter name is an injection when one of MongoDB's query operators stands where a key
does: a bracket segment (`[$ne]`), a dotted segment (`.$gt`), a whole name (`$where`), or a
JSON/JS object key (`{"$regex": ...}`, `{$where: ...}`). The operator must be one MongoDB
knows (`$ref`, `$id`, `$schema` of JSON Schema and `$5` prices are no operators), and its
key position is checked by the characters around it, not by a word search: `price: $ne`
in prose, `cost $gt 5` and shell `$where_var` pass.

A value that breaks out of a string or number of a server-side JavaScript expression (`$where`,
mapReduce) and goes on with JavaScript (`1'; return true; var x='`, `' || 'a'=='a`,
`;this.password.length>0//`, `&& Object.keys(this)[0].match(...)`) is reported too.

A `$where` (or `$function`, `$accumulator`) operand is JavaScript run by the server: with
`sleep(`, `this.`, `return`, `function`, `==` or `||` in it, it is reported as such.

Linear: one `finditer` of `$word` over the value, and a bounded look around each hit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from node.detect.candidates import first_rule
from node.detect.windows import Gate, normalise

OPERATORS = frozenset(
    "eq ne gt gte lt lte in nin and or not nor exists type expr jsonschema mod regex options text "
    "search where geointersects geowithin near nearsphere all elemmatch size bitsallset bitsanyset "
    "bitsallclear bitsanyclear function accumulator lookup comment slice meta rand natural "
    "center centersphere box polygon maxdistance mindistance geometry".split()
)
_JS_OPERATORS = frozenset({"where", "function", "accumulator"})
_OPERATOR_RE = re.compile(r"\$([a-z]+)\b", re.I)
# what may stand before a key: start, '[', '.', '{', ',', a quote after one of those
_KEY_BEFORE = frozenset("[.{,\n")
_KEY_AFTER = frozenset("]:=\n")
_JS_RE = re.compile(r"sleep\s*\(|\bthis\s*\.|\breturn\b|\bfunction\b|==|\|\||&&|\bwhile\s*\(|\bdb\s*\.|\bemit\s*\(|tojson\s*\(", re.I)


def _before(text: str, start: int) -> str:
    """The character before a key at `start`, past one quote and spaces ('' at the start)."""
    i = start - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    if i >= 0 and text[i] in "\"'":
        i -= 1
        while i >= 0 and text[i] in " \t":
            i -= 1
    return text[i] if i >= 0 else "\n"


def _after(text: str, end: int) -> str:
    """The character after a key ending at `end`, past one quote and spaces."""
    i, n = end, len(text)
    if i < n and text[i] in "\"'":
        i += 1
    while i < n and text[i] in " \t":
        i += 1
    return text[i] if i < n else "\n"


def judge_operator(text: str, m: re.Match[str], kind: str) -> str | None:
    op = m.group(1).lower()
    if op not in OPERATORS:
        return None
    before, after = _before(text, m.start()), _after(text, m.end())
    if after == "." and before in _KEY_BEFORE:
        after = ":"  # user.$ne.x: a segment of a dotted path
    if before not in _KEY_BEFORE or after not in _KEY_AFTER:
        return None
    if after == "=" and before == "{":
        return None  # ${where=...}: a template, not a key
    if op in _JS_OPERATORS and _JS_RE.search(text, m.end(), m.end() + 400):
        return "js-operator"
    if after == "\n" and before == "\n" and kind != "key":
        return None  # a value that is nothing but "$ne": a price tag or a variable, not a key
    return "operator-key" if kind == "key" else "operator"


# JavaScript injected into a server-side expression (`$where: "this.user == '" + v + "'"`):
# the value opens with at most a word and a quote, breaks out with ';' '||' '&&', and goes on
# with JavaScript no form field holds. Anchored at the value's start: in free text the same
# shapes are code snippets.
_JS_BREAKOUT_RE = re.compile(
    r"\s*[\w.\-]{0,32}['\"]?\s*(?:;|\|\||&&)\s*(?:return\s+)?"
    r"(?:true\b|false\b|this\s*\.\s*\w|object\s*\.\s*(?:keys|values|entries)\s*\(|db\s*\.\s*\w|function\s*\(\s*\)\s*\{"
    r"|while\s*\(\s*(?:true|1)\s*\)|sleep\s*\(\s*\d|tojson\s*\(|['\"]?\w{1,32}['\"]?\s*[=!]==?\s*['\"]?\w"
    r"|\d+\s*[<>]=?\s*\d)",
    re.I,
)


def _js_breakout(text: str, kind: str) -> bool:
    """The value opens with a break-out; in a path, any segment does (`/files/1;return true`)."""
    if _JS_BREAKOUT_RE.match(text):
        return True
    if kind == "path":
        return first_rule(_segment_starts(text), lambda at: "js" if _JS_BREAKOUT_RE.match(text, at) else None,
                          None) is not None
    return False


def _segment_starts(text: str) -> Iterator[int]:
    at = text.find("/")
    while at >= 0:
        yield at + 1
        at = text.find("/", at + 1)


def detect_nosqli(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
                  gate: Gate | None = None) -> str | None:
    """A rule name if a MongoDB query operator stands in a key position of `value` (the whole
    value, `$word` by `$word`: no windows, `gate` is not needed)."""
    text = normalise(value)
    if kind != "key" and _js_breakout(text, kind):
        return "js-breakout"
    if "$" not in text:
        return None
    return first_rule(_OPERATOR_RE.finditer(text), lambda m: judge_operator(text, m, kind), out_of_time)
