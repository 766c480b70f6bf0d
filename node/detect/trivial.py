"""Values the engine dismisses unjudged, recognised in bulk by the parser.

Engine._judge_fields skips a value made of [\\w.-] that is either shorter than 8 characters,
not an ALONE_COMMANDS word and not base64 of a probe (decode.short_b64_text), or a longer
token that is not mixed case, not base64 of upper-case text (decode.upper_b64_text) and holds
no '..', '0x', '__proto__' or 'prototype' (engine._plain_token; not in the User-Agent). The token patterns here are an
ASCII subset of that rule (short tokens in one letter case, long ones in lower case or
digits), written as regexes so that a whole text or container is sorted at a time, in C:
80,000 `f1=v1` pairs, `"k1": 1` keys or `X-H-1: v1` header lines then cost no Python step each
and do not count toward the field limit (they would never be judged). Commands are excluded
whatever their case, a stricter test than the engine's. tests/test_detect_speedpaths.py checks
that every value these patterns accept is one the engine skips.
"""

from __future__ import annotations

import re

from node.detect.decode import short_b64_text
from node.detect.shell import ALONE_COMMANDS

MAX_LONG = 64
_COMMANDS = "|".join(sorted(map(re.escape, ALONE_COMMANDS), key=len, reverse=True))
_INITIALS = re.escape("".join(sorted({c for word in ALONE_COMMANDS for c in (word[0].lower(), word[0].upper())})))


def _token(stops: str, long: bool = True) -> str:
    """A trivial token that ends where one of `stops` (a character class body) or the text
    does; `long=False`: only the short (< 8 characters) kind, which no location judges."""
    end = rf"(?=[{stops}]|\Z)"
    # not mixed case: the engine decodes a short mixed-case value as base64 (decode.short_b64_text)
    short = rf"(?:[a-z0-9_.\-]{{1,7}}+{end}|[A-Z0-9_.\-]{{1,7}}+{end})"
    # the command words' first letters first: one character test for most tokens
    not_command = rf"(?!(?=[{_INITIALS}])(?i:{_COMMANDS}){end})"
    if not long:
        return rf"{not_command}{short}"
    # at most MAX_LONG characters, and a lookahead bounded by them: the bulk passes look at
    # many small values; a long one is split off and judged (or dismissed) on its own
    # lower case or digits only: an upper-case one may be base64 of upper-case text (decode.upper_b64_text)
    plain = rf"(?![^{stops}]{{0,{MAX_LONG}}}?(?:\.\.|0[xX]|__proto__|prototype))[a-z0-9_.\-]{{8,{MAX_LONG}}}{end}"
    return rf"{not_command}(?:{short}|{plain})"


TOKEN_RE = re.compile(_token("&="), re.ASCII)  # fullmatch: one value
# `&name=value` where both are tokens (no '%' or '+': nothing to decode), the text being
# given a leading '&': the literal '&' first lets the regex engine skip to each '&' in C
_PAIR_RE = re.compile(rf"&{_token('=')}={_token('&')}(?=&|\Z)", re.ASCII)
# texts shorter than this are split as they are: the regex pass pays off on long ones
MIN_STRIPPED_TEXT = 1024
# the lines of a "\n"-joined list that are not tokens (JSON keys; header values, where only
# short tokens count: the engine judges a long token in the User-Agent)
_NONTRIVIAL_LINE_RE = re.compile(rf"^(?!{_token(chr(10))})[^\n]*", re.ASCII | re.M)
_NONTRIVIAL_HEADER_RE = re.compile(rf"^(?!{_token(chr(10), long=False)})[^\n]*".encode(), re.M)
SHORT_TOKEN_BYTES_RE = re.compile(_token("\n", long=False).encode())
# a short [\w.-] value, which the engine dismisses unless a command word or base64 of a probe
_SHORT_MIXED_RE = re.compile(r"[\w.\-]{1,7}", re.ASCII)


def strip_trivial_pairs(text: str) -> str:
    """`text` without its pairs whose name and value are both tokens (one regex pass,
    no callback): the fields they make are never judged."""
    if len(text) < MIN_STRIPPED_TEXT:
        return text
    return _PAIR_RE.sub("", "&" + text)  # a leading '&' is an empty pair to the caller


def trivial_pair(part: str) -> bool:
    """A `name=value` pair strip_trivial_pairs drops from a long text (whatever its length)."""
    return _PAIR_RE.fullmatch("&" + part) is not None


def nontrivial_keys(keys: list[str]) -> set[str] | None:
    """The keys the engine judges, found by one regex pass over the joined keys (those that
    are not tokens), less the short mixed-case ones that do not decode to a probe (each
    distinct one tested once); None when a key holds a line break (the caller then tests each
    key with TOKEN_RE)."""
    joined = "\n".join(keys)
    if joined.count("\n") != len(keys) - 1:
        return None
    return {k for k in set(_NONTRIVIAL_LINE_RE.findall(joined)) if not _short_plain(k)}


def short_dismissed(value: str) -> bool:
    """Engine._judge_fields' test for a short (< 8 characters) [\\w.-] value: dismissed unless a
    command word or base64 of a probe."""
    # (short_b64_text decodes mixed case only: a lower-case value is answered without the call)
    return value not in ALONE_COMMANDS and (value.islower() or short_b64_text(value) is None)


def _short_plain(value: str) -> bool:
    """A short ASCII token the engine dismisses (short_dismissed), though the regexes keep it."""
    return len(value) < 8 and _SHORT_MIXED_RE.fullmatch(value) is not None and short_dismissed(value)


def nontrivial_header_values(values: list[bytes]) -> set[bytes] | None:
    """nontrivial_keys for header values (bytes), with short tokens only."""
    joined = b"\n".join(values)
    if joined.count(b"\n") != len(values) - 1:
        return None
    return {v for v in set(_NONTRIVIAL_HEADER_RE.findall(joined)) if not _short_plain(v.decode("latin-1"))}
