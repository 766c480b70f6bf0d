"""Normalisation: the decoded forms of a value that detectors judge.

`variants(value)` returns the value itself plus each distinct decoded form: URL (double and
mixed), `%uXXXX`, overlong UTF-8 dots/slashes, HTML/XML entities, JS/JSON `\\uXXXX` `\\xXX`
escapes, and base64/base64url when the result is printable text. Decoding repeats up to
MAX_ROUNDS times; base64 is tried on the value and on each decoded form, once per level, up to
MAX_B64_DEPTH levels. Everything is bounded, so a hostile value costs a few passes at most.
"""

from __future__ import annotations

import base64
import binascii
import html
import re

MAX_ROUNDS = 4
MAX_B64_DEPTH = 2
MAX_VARIANTS = 6

# characters that make a value worth decoding at all
_NEEDS_DECODE_RE = re.compile(r"[%&\\+]")

_PCT_U_RE = re.compile(r"%u([0-9a-fA-F]{4})")
# overlong UTF-8 encodings of '.', '/', '\\' (classic IIS/Tomcat traversal bypasses), and
# the 2-byte forms %c0%ae / %c0%af / %c1%9c / %c1%1c / %c0%2f ... written raw or percent-encoded
_OVERLONG_RE = re.compile(
    r"%(?:e0%80%(?P<a>ae|af|80)|c0%(?P<b>ae|af|2e|2f|5c|9v|qf|80)|c1%(?P<c>9c|1c|pc|8s|af))",
    re.I,
)
_OVERLONG_MAP = {
    "ae": ".", "2e": ".", "af": "/", "2f": "/", "qf": "/", "9v": "/", "5c": "\\", "9c": "\\",
    "1c": "/", "pc": "\\", "8s": "\\", "80": "",
}
_PCT_RE = re.compile(r"%([0-9a-fA-F]{2})")
_JS_ESC_RE = re.compile(r"\\(?:u\{?([0-9a-fA-F]{4})\}?|x([0-9a-fA-F]{2})|([0-7]{3}))")
_ENTITY_RE = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});?")
_B64_RE = re.compile(r"[A-Za-z0-9+/_\-]{12,}={0,2}")
_B64_WHOLE_RE = re.compile(r"^[A-Za-z0-9+/_\-\s]{8,}={0,2}$")


def _overlong(m: re.Match[str]) -> str:
    code = (m.group("a") or m.group("b") or m.group("c") or "").lower()
    return _OVERLONG_MAP.get(code, "/")


def _pct_byte(m: re.Match[str]) -> str:
    return chr(int(m.group(1), 16))


def url_decode(value: str) -> str:
    """One round of %XX / %uXXXX decoding; UTF-8 sequences are rebuilt when valid."""
    if "%" not in value:
        return value
    out = _OVERLONG_RE.sub(_overlong, value)
    out = _PCT_U_RE.sub(lambda m: chr(int(m.group(1), 16)), out)
    if "%" not in out:
        return out
    latin = _PCT_RE.sub(_pct_byte, out)
    try:
        return latin.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return latin


def _js_esc(m: re.Match[str]) -> str:
    hexa = m.group(1) or m.group(2)
    if hexa:
        return chr(int(hexa, 16))
    return chr(int(m.group(3), 8))


def js_unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _JS_ESC_RE.sub(_js_esc, value)


def entity_decode(value: str) -> str:
    if "&" not in value:
        return value
    return html.unescape(value)


def decode_round(value: str) -> str:
    return entity_decode(js_unescape(url_decode(value)))


def _printable_ratio(text: str) -> float:
    if not text:
        return 0.0
    good = sum(1 for c in text if c.isprintable() or c in "\r\n\t")
    return good / len(text)


def b64_decode(token: str) -> str | None:
    """Decoded text of a base64/base64url token, or None when it is not printable text."""
    t = token.strip()
    if len(t) < 8:
        return None
    t = t.replace("-", "+").replace("_", "/")
    t = re.sub(r"\s+", "", t)
    t += "=" * (-len(t) % 4)
    try:
        raw = base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _printable_ratio(text) < 0.95:
        return None
    return text


def b64_candidates(value: str) -> list[str]:
    """Decoded forms of base64 in the value: the whole value, else its long tokens."""
    out: list[str] = []
    if _B64_WHOLE_RE.match(value):
        d = b64_decode(value)
        if d:
            return [d]
    if len(value) < 16:
        return out
    for m in _B64_RE.finditer(value[:8192]):
        tok = m.group(0)
        if len(tok) < 16 or tok.isalpha() or tok.isdigit():
            continue
        d = b64_decode(tok)
        if d and any(not c.isalnum() for c in d):
            out.append(d)
            if len(out) >= 3:
                break
    return out


def decoded(value: str) -> str:
    """Fixed point of URL/escape/entity decoding, at most MAX_ROUNDS rounds."""
    cur = value
    for _ in range(MAX_ROUNDS):
        if not _NEEDS_DECODE_RE.search(cur):
            break
        nxt = decode_round(cur)
        if nxt == cur:
            break
        cur = nxt
    return cur


def variants(value: str) -> list[str]:
    """The value and its distinct decoded forms, at most MAX_VARIANTS of them."""
    out = [value]
    frontier = [value]
    for depth in range(MAX_B64_DEPTH + 1):
        nxt: list[str] = []
        for v in frontier:
            d = decoded(v)
            if d not in out:
                out.append(d)
            if depth < MAX_B64_DEPTH:
                for b in b64_candidates(d):
                    if b not in out:
                        out.append(b)
                        nxt.append(b)
            if len(out) >= MAX_VARIANTS:
                return out[:MAX_VARIANTS]
        if not nxt:
            break
        frontier = nxt
    return out
