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

from wallarm_wire.protocol import HeaderFields, RequestMessage
from node.store.base import Hit

MASK = "***"
EXCERPT_BODY_BYTES = 2048
_JSON_MASK_LIMIT = 256 * 1024  # bigger JSON bodies are masked by pattern, not parsed

# Name parts that mark a secret. "pass"/"pwd" only as a word of their own (not "bypass",
# "passenger"); "_" and "-" separate words in names like user_pass or x-api-key.
_SECRET_NAME = (
    r"(?<![a-z])(?:pass|pwd)(?![a-z])|pass(?:word|wd|phrase)|token|secret|api[-_]?key|apikey"
    r"|authori[sz]ation|auth[-_]?token|session[-_]?id|sessid|cookie|credential|private[-_]?key"
)
SENSITIVE_NAME_RE = re.compile(_SECRET_NAME, re.IGNORECASE)
# `name=value` / `"name": "value"` pairs in any text (bodies we do not parse, excerpts).
_PAIR_RE = re.compile(
    r"""(?P<key>["']?[\w.\-\[\]]*(?:""" + _SECRET_NAME + r""")[\w.\-\[\]]*["']?\s*(?:=|:)\s*)"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"?|'[^']*'?|[^&\s,;}\]"']+)""",  # quotes may be cut off
    re.IGNORECASE,
)
_ALWAYS_MASKED_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie"}


def is_sensitive_name(name: str) -> bool:
    return SENSITIVE_NAME_RE.search(name) is not None


def mask_text(text: str) -> str:
    """Mask `secret=value` and `"token": "value"` pairs wherever they appear."""

    def repl(m: re.Match[str]) -> str:
        value = m.group("value")
        quote = value[0] if value[:1] in ('"', "'") else ""
        return m.group("key") + quote + MASK + quote

    return _PAIR_RE.sub(repl, text)


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


def mask_headers(headers: HeaderFields) -> list[tuple[str, str]]:
    out = []
    for k, v in headers:
        name = k.decode("latin-1")
        out.append((name, mask_header_value(name, v.decode("utf-8", "replace"))))
    return out


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
    """Masked start line, headers and the start of the body, for the attack detail view."""
    lines = [f"{msg.method} {mask_target(msg.target)} {msg.http_version}"]
    lines.extend(f"{k}: {v}" for k, v in mask_headers(msg.headers))
    text = "\r\n".join(lines) + "\r\n\r\n"
    if msg.body:
        masked = mask_body(msg.body, msg.header("content-type"))
        if len(masked) > max_body:
            masked = masked[:max_body] + f"... [{len(msg.body)} bytes]"
        text += masked
    return text
