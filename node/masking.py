"""Mask secrets before anything is stored: credentials never reach the attack store.

Masked: the values of Authorization, Cookie and Set-Cookie (names and attributes stay, so the
record still tells what was sent), and the value of any header, query parameter, form field,
JSON key or cookie whose name looks like a password, token, secret or API key. Finding
excerpts taken from such places are masked too.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

from wallarm_wire.protocol import RequestMessage
from node.store.base import Hit

MASK = "***"
EXCERPT_BODY_BYTES = 2048
EXCERPT_HEAD_CHARS = 16 * 1024  # start line and header lines kept in a stored excerpt
# bigger JSON bodies are masked by pattern, not parsed (parsing and walking them costs ~50 ns
# a byte on the verdict's path; the excerpt keeps only the first 2 KiB anyway)
_JSON_MASK_LIMIT = 64 * 1024

# Name parts that mark a secret. "pass"/"pwd" only as a word of their own (not "bypass",
# "passenger"); "_" and "-" separate words in names like user_pass or x-api-key.
_SECRET_NAME = (
    r"(?<![a-z])(?:pass|pwd)(?![a-z])|pass(?:word|wd|phrase)|token|secret|api[-_]?key|apikey"
    r"|authori[sz]ation|auth[-_]?token|session[-_]?id|sessid|cookie|credential|private[-_]?key"
)
SENSITIVE_NAME_RE = re.compile(_SECRET_NAME, re.IGNORECASE)
# `name=value` / `"name": "value"` pairs in any text (bodies we do not parse, excerpts).
# A key is a run of name characters holding a secret word, then `=` or `:`; the value is a
# quoted string (the quotes may be cut off) or a bare word. Written so that matching is linear
# in the text: the search only starts a key at the start of a run (the lookbehind), finds the
# first secret word in the run once (the atomic group) and takes every other part possessively
# (the grammar leaves only one way to match each of them). A run of word characters used to
# cost quadratic time here (8 KB took 10 s: issue 13). `_KEY_AT` is the same without the
# lookbehind, for the one place a key may start inside a run: right where the previous match
# ended (a bare value stops before `]`, which is a name character).
_NAME_CHARS = r"[\w.\-\[\]]"
_QUOTE = r"""["']?+"""
_KEY_REST = (r"(?>" + _NAME_CHARS + r"*?(?:" + _SECRET_NAME + r"))" + _NAME_CHARS
             + r"""*+["']?+\s*+[=:]\s*+""")
_VALUE = r"""(?P<value>"(?:[^"\\]|\\.)*+"?|'[^']*+'?|[^&\s,;}\]"']++)"""  # quotes may be cut off
_PAIR_RE = re.compile(r"(?P<key>" + _QUOTE + r"(?<!" + _NAME_CHARS + r")" + _KEY_REST + r")" + _VALUE,
                      re.IGNORECASE)
_KEY_AT = re.compile(r"(?P<key>" + _QUOTE + _KEY_REST + r")" + _VALUE, re.IGNORECASE)
_NAME_CHAR_RE = re.compile(_NAME_CHARS)
_ALWAYS_MASKED_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie"}


def is_sensitive_name(name: str) -> bool:
    return SENSITIVE_NAME_RE.search(name) is not None


def mask_text(text: str) -> str:
    """Mask `secret=value` and `"token": "value"` pairs wherever they appear (linear time)."""
    pieces: list[str] = []
    done = 0  # text[:done] is in pieces
    pos = 0  # where the next match may start
    while True:
        m = None
        if 0 < pos < len(text) and _NAME_CHAR_RE.match(text, pos - 1):
            m = _KEY_AT.match(text, pos)  # a key may start inside a run right after a match
        if m is None:
            m = _PAIR_RE.search(text, pos)
            if m is None:
                break
        value = m.group("value")
        quote = value[0] if value[:1] in ('"', "'") else ""
        pieces.extend((text[done:m.start()], m.group("key"), quote, MASK, quote))
        done = pos = m.end()
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _mask_cookie_pairs(value: str, *, set_cookie: bool) -> str:
    parts = value.split(";")
    out = []
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        # In Set-Cookie only the first pair is the cookie; the rest are attributes (Path, ...).
        if eq and (not set_cookie or i == 0):
            out.append(f"{name}={MASK}")
        else:
            out.append(part)
    return ";".join(out)


def mask_header_value(name: str, value: str) -> str:
    lname = name.lower()
    if lname in ("cookie", "set-cookie"):
        return _mask_cookie_pairs(value, set_cookie=lname == "set-cookie")
    if lname in ("authorization", "proxy-authorization"):
        scheme, space, _ = value.partition(" ")
        return f"{scheme} {MASK}" if space else MASK
    if is_sensitive_name(lname):
        return MASK
    return mask_text(value)


def mask_query(query: str) -> str:
    if not query:
        return query
    out = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        out.append(f"{name}={MASK}" if eq and is_sensitive_name(_unquote_name(name)) else part)
    return "&".join(out)


def mask_target(target: str) -> str:
    path, q, query = target.partition("?")
    return path + q + mask_query(query) if q else target


def _unquote_name(name: str) -> str:
    pairs = parse_qsl(name + "=", keep_blank_values=True)
    return pairs[0][0] if pairs else name


def _mask_json(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: (MASK if isinstance(k, str) and is_sensitive_name(k) and not isinstance(v, (dict, list))
                    else _mask_json(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask_json(v) for v in obj]
    return obj


def mask_body(body: bytes, content_type: str | None) -> str:
    """The whole body, masked, as text (callers cut it to an excerpt afterwards)."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype.endswith("json") or ctype.endswith("+json"):
        if len(body) <= _JSON_MASK_LIMIT:
            try:
                return json.dumps(_mask_json(json.loads(body)), ensure_ascii=False)
            except (ValueError, RecursionError):
                pass  # not really JSON: fall back to patterns
    text = body.decode("utf-8", "replace")
    if ctype == "application/x-www-form-urlencoded":
        out = []
        for part in text.split("&"):
            name, eq, _ = part.partition("=")
            out.append(f"{name}={MASK}" if eq and is_sensitive_name(_unquote_name(name)) else part)
        text = "&".join(out)
    return mask_text(text)


def _sensitive_location(location: str) -> bool:
    loc = location.lower()
    if loc.split(".", 1)[0] == "cookie":
        return True
    if loc.startswith("header."):
        header = loc.split(".", 2)[1]
        if header in _ALWAYS_MASKED_HEADERS or is_sensitive_name(header):
            return True
    # query.password, json.user.api_key, form.token ... (the first part is the container)
    return any(is_sensitive_name(p) for p in re.split(r"[.\[\]]", loc)[1:] if p)


def mask_hits(hits: list[Hit]) -> list[Hit]:
    return [
        Hit(h.type, h.location, h.rule_id, MASK if _sensitive_location(h.location) else mask_text(h.excerpt), h.score)
        for h in hits
    ]


def request_excerpt(msg: RequestMessage, max_body: int = EXCERPT_BODY_BYTES) -> str:
    """Masked start line, headers and the start of the body, for the attack detail view.

    Bounded whatever the message (a 1 MiB header block must not become a 1 MiB record): the
    head to EXCERPT_HEAD_CHARS, the body to `max_body`. Parts are cut before they are masked,
    which masks the same secrets: a value cut short is still masked as a value, and a name cut
    short has no value after it to show."""
    budget = EXCERPT_HEAD_CHARS
    target = msg.target if len(msg.target) <= budget else msg.target[:budget]
    lines = [f"{msg.method} {mask_target(target)} {msg.http_version}"]
    budget -= len(lines[0])
    for i, (k, v) in enumerate(msg.headers):
        if budget <= 0:
            lines.append(f"... [{len(msg.headers) - i} more header lines]")
            break
        name = k[:budget].decode("latin-1")
        value = v[:max(budget - len(name), 0)].decode("utf-8", "replace")
        lines.append(f"{name}: {mask_header_value(name, value)}")
        budget -= len(lines[-1])
    text = "\r\n".join(lines) + "\r\n\r\n"
    if msg.body:
        ctype = msg.header("content-type")
        whole_json = (ctype or "").split(";")[0].strip().lower().endswith("json") and len(msg.body) <= _JSON_MASK_LIMIT
        # a JSON body is masked whole (it must parse); anything else only as far as it is shown
        body = msg.body if whole_json else msg.body[:max_body]
        masked = mask_body(body, ctype)
        if len(masked) > max_body or len(body) < len(msg.body):
            masked = masked[:max_body] + f"... [{len(msg.body)} bytes]"
        text += masked
    return text
