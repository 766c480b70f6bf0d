"""Content-Type and Content-Disposition values: a media type and its parameters (RFC 9110
§5.6.6, §8.3; RFC 2231/8187 extended values), read so that every reading a backend makes
is among ours.

Parameter names are matched whole and case-insensitively, never by substring: `x=multipart/`
is a parameter, not the media type. Where backends read a malformed value differently, each
reading is kept (a parameter name may then carry several values), and the caller parses the
body under each of them:

- the quote-aware split on `;` (RFC 9110, Werkzeug, python-multipart) and, when a quoted value
  holds a `;`, the naive split on every `;` as well;
- a quoted value unquoted by the RFC (backslash escapes), and as python-multipart leaves it
  when it is malformed (no closing quote, text after it: the value stays as written);
- `%22` read as `"` (Werkzeug, the HTML standard's escaping of quotes in multipart names);
- `name*=charset'lang'%xx` decoded, `name*0=`/`name*1=` continuations joined (Werkzeug);
- the media type cut at `;` (everyone) and also at `,` or white space (PHP);
- `boundary` also as PHP finds it: the first "boundary" substring, then its `=`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

MAX_READINGS = 8  # distinct values kept per parameter name
# parameter text read under the references' scanners too; a longer value (no client sends
# one) gets the RFC's reading, and the caller judges the whole value
MAX_READINGS_TEXT = 1024
MAX_PARAMETERS = 64  # parameters read per value (a form-data header has two or three)


@dataclass(frozen=True, slots=True)
class MediaType:
    essences: tuple[str, ...]  # "type/subtype" lower-cased: one reading, or two (see above)
    params: tuple[tuple[str, str], ...]  # (lower-cased name, value), every reading, in order

    def values(self, name: str) -> list[str]:
        """Every distinct value of parameter `name`, in order."""
        return _distinct(v for n, v in self.params if n == name)

    def first(self, name: str) -> str | None:
        for n, v in self.params:
            if n == name:
                return v
        return None


def _distinct(values) -> list[str]:
    out: list[str] = []
    for v in values:
        if v not in out:
            out.append(v)
            if len(out) >= MAX_READINGS:
                break
    return out


@lru_cache(maxsize=1024)  # the same few Content-Type values arrive again and again
def parse_content_type(value: str) -> MediaType:
    head, _, rest = value.partition(";")
    essence = head.strip(" \t").lower()
    essences = [essence]
    # PHP cuts the media type at the first of ";, " (SAPI), so "multipart/form-data, x" is multipart there
    php = essence
    for stop in (",", " ", "\t"):
        php = php.partition(stop)[0]
    if php != essence:
        essences.append(php)
    params = parse_parameters(rest)
    php_boundary = _php_boundary(value)
    if php_boundary is not None and ("boundary", php_boundary) not in params:
        params.append(("boundary", php_boundary))
    return MediaType(tuple(essences), tuple(params))


def parse_disposition(value: str) -> tuple[str, list[tuple[str, str]]]:
    """`form-data; name="a"; filename="b"` -> ("form-data", [("name", "a"), ("filename", "b")])."""
    head, _, rest = value.partition(";")
    return head.strip(" \t").lower(), parse_parameters(rest)


def parse_parameters(text: str) -> list[tuple[str, str]]:
    """`a=1; b="x;y"` -> [("a", "1"), ("b", "x;y")] plus the other readings (module doc)."""
    segments, quoted_semicolon = _split_quote_aware(text)
    params = _read_segments(segments)
    if len(text) > MAX_READINGS_TEXT:
        return params  # the RFC's reading alone (callers judge such a value whole)
    others = []
    if quoted_semicolon:
        others.append(text.split(";"))
    if '"' in text:  # where quotes are, the stdlib's email scanner may disagree with the RFC's
        others.append(_split_like_email(text))
    others.append(_split_like_werkzeug(text))  # ASCII tokens only, stray quotes open nothing
    known = set(params)
    for other in others:
        if other != segments:
            for pair in _read_segments(other):
                if pair not in known:
                    known.add(pair)
                    params.append(pair)
    return params


_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)
# the rest of a quoted string after its opening quote; possessive: no backtracking
_SEGMENT_RE = re.compile(r'(?:[^;"]++|"(?:[^"\\]++|\\.?)*+"?)*+', re.S)
_QUOTED_REST_RE = re.compile(r'(?:[^"\\]++|\\.)*+"', re.S)
_WZ_KEY_RE = re.compile(r"([\w!#$%&'*+\-.^`|~]+)=", re.ASCII)
_WZ_TOKEN_RE = re.compile(r"[\w!#$%&'*+\-.^`|~]+", re.ASCII)


def _split_like_werkzeug(text: str) -> list[str]:
    """`key=value` segments as Werkzeug's parse_options_header scans them: a key and `=` at
    the scan position, a token or quoted string, then on to the next `;` whatever lies
    between (quotes there open nothing)."""
    rest = text.strip(" \t")
    segments: list[str] = []
    pos, n = 0, len(rest)
    while pos < n:
        key = _WZ_KEY_RE.match(rest, pos)
        if key is not None:
            pos = key.end()
            token = _WZ_TOKEN_RE.match(rest, pos)
            if token is not None:
                segments.append(rest[key.start() : token.end()])
            elif rest.startswith('"', pos):
                close = _closing_quote_pairs(rest, pos + 1)
                if close < 0:
                    break
                segments.append(rest[key.start() : close + 1])
                pos = close + 1
        semi = rest.find(";", pos)
        if semi < 0:
            break
        pos = semi + 1
        while pos < n and rest[pos] in " \t":
            pos += 1
    return segments


def _closing_quote_pairs(text: str, i: int) -> int:
    """Werkzeug's quoted-string end: a backslash and the `\\` or `"` after it are consumed
    together, then a quote ends it; -1 if none does. Linear: both searches only move on."""
    q = text.find('"', i)
    while q >= 0:
        b = text.find("\\", i, q)
        if b < 0:
            return q
        i = b + 2 if text.startswith(("\\\\", '\\"'), b) else b + 1
        if i > q:
            q = text.find('"', i)
    return -1


def _split_like_email(text: str) -> list[str]:
    """The split of the standard library's email.message._parseparam, which python-multipart
    vendors: a `;` ends a segment once its quotes, less those after a backslash, pair up."""
    s = ";" + text
    segments: list[str] = []
    start = 0
    while s.find(";", start) == start:
        start += 1
        end = s.find(";", start)
        ind, diff = start, 0
        while end > 0:
            diff += s.count('"', ind, end) - s.count('\\"', ind, end)
            if diff % 2 == 0:
                break
            end, ind = ind, s.find(";", end + 1)
        if end < 0:
            end = len(s)
        segments.append(s[start:end])
        start = end
    return segments


def _split_quote_aware(text: str) -> tuple[list[str], bool]:
    """Split on `;` outside quoted strings (an unterminated one runs to the end), at most
    MAX_PARAMETERS segments; also says whether a quoted string held a `;`."""
    if '"' not in text:
        return text.split(";", MAX_PARAMETERS)[:MAX_PARAMETERS], False
    segments: list[str] = []
    quoted_semicolon = False
    pos, n = 0, len(text)
    while len(segments) < MAX_PARAMETERS:
        m = _SEGMENT_RE.match(text, pos)
        segment = m.group()  # type: ignore[union-attr]  # it matches the empty string too
        segments.append(segment)
        quoted_semicolon = quoted_semicolon or ('"' in segment and ";" in segment)
        pos = m.end() + 1  # type: ignore[union-attr]  # past the `;`
        if pos > n:
            break
    return segments, quoted_semicolon


def closing_quote(text: str, i: int) -> int:
    """Index of the first '"' at or after i not escaped by a backslash, or -1."""
    m = _QUOTED_REST_RE.match(text, i)
    return m.end() - 1 if m else -1


def _read_segments(segments: list[str]) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    continued: dict[str, list[str]] = {}
    for seg in segments[:MAX_PARAMETERS]:
        name, eq, raw = seg.partition("=")
        name = name.strip(" \t").lower()
        if not eq or not name:
            continue
        raw = raw.strip(" \t")
        base, star, _ = name.partition("*")
        if star:
            # RFC 2231 / 8187: name*=charset'lang'%xx, name*0=, name*1*=...
            readings = [_extended(v) if name.endswith("*") else v for v in _value_readings(raw)]
            params.extend((base, v) for v in readings)
            if name != base + "*":  # a numbered continuation
                continued.setdefault(base, []).append(readings[0])
            continue
        for value in _value_readings(raw):
            params.append((name, value))
    for base, pieces in continued.items():
        params.append((base, "".join(pieces)))
    return list(dict.fromkeys(params))  # distinct, in order


def _value_readings(raw: str) -> list[str]:
    """The readings of one parameter value as written (token or quoted-string)."""
    readings: list[str] = []
    if raw.startswith('"'):
        close = closing_quote(raw, 1)
        inner = raw[1:close] if close > 0 else raw[1:]
        readings.append(_unescape(inner))  # RFC 9110 quoted-string
        # python-multipart: the outer quotes go when both are there (else the value stays as
        # written), then only \\ and \" are undone
        if len(raw) >= 2 and raw.endswith('"'):
            readings.append(raw[1:-1].replace("\\\\", "\\").replace('\\"', '"'))
        else:
            readings.append(raw)
    else:
        readings.append(raw)
    if "%22" in raw:
        readings.append(readings[0].replace("%22", '"'))  # Werkzeug, HTML's quote escaping
    return _distinct(readings)


def _unescape(inner: str) -> str:
    """A quoted-string's content without its backslash escapes (RFC 9110 §5.6.4)."""
    return _QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner


def _extended(value: str) -> str:
    """`utf-8'en'%e2%82%ac` -> "€"; a value without the two quotes stays as written."""
    charset, q1, rest = value.partition("'")
    _lang, q2, encoded = rest.partition("'")
    if not (q1 and q2):
        return value
    try:
        return unquote(encoded, encoding=charset.strip() or "utf-8", errors="replace")
    except LookupError:  # an unknown charset: the bytes as UTF-8
        return unquote(encoded, errors="replace")


def _php_boundary(value: str) -> str | None:
    """PHP's reading (main/rfc1867.c): the first "boundary" substring (case-sensitive, else
    case-insensitive), the text after the next '=': up to the next '"' when quoted, else up
    to ',' or ';'."""
    at = value.find("boundary")
    if at < 0:
        at = value.lower().find("boundary")
        if at < 0:
            return None
    eq = value.find("=", at)
    if eq < 0:
        return None
    rest = value[eq + 1 :]
    if rest.startswith('"'):
        return rest[1:].partition('"')[0]
    for stop in (",", ";"):
        rest = rest.partition(stop)[0]
    return rest
