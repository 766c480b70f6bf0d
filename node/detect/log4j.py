"""Log4Shell: resolve Log4j's own lookup syntax, then look for a JNDI lookup.

Obfuscated forms nest lookups that evaluate to single characters: `${lower:J}`,
`${upper:n}`, `${::-d}`, `${env:NOPE:-i}`, `${date:'j'}`. Those are resolved innermost
first (bounded rounds), then `${jndi:ldap:...}` (or rmi, dns, ...) is searched.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from node.detect.windows import Gate, judge_windows, normalise

MAX_LEN = 2048
MAX_ROUNDS = 8

_INNER_RE = re.compile(r"\$\{([^${}]*)\}")
_JNDI_RE = re.compile(r"\$\{\s*jndi\s*:\s*(?:ldaps?|rmi|dns|iiop|corba|nds|nis|https?)?", re.I)
_LOOKUP_RE = re.compile(r"\$\{\s*(?:jndi|ctx|java|env|sys|main|bundle|k8s|docker|spring|log4j|web|date|base64|event|marker|sd|map|jvmrunargs|lower|upper)\s*:", re.I)
_NESTED_RE = re.compile(r"\$\{[^}]{0,40}\$\{")


def _resolve(m: re.Match[str]) -> str:
    body = m.group(1)
    low = body.lower()
    if low.startswith(("lower:", "upper:")):
        return body[6:]
    if low.startswith("date:"):
        return body[5:].strip("'\"")
    if ":-" in body:
        return body.split(":-", 1)[1]
    if low.startswith(("jndi:", "ctx:", "java:", "env:", "sys:")):
        return "\x00LOOKUP(" + body + ")"
    return body


def detect_log4j(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
                 gate: Gate | None = None) -> str | None:
    """A rule name if `value` holds a Log4j JNDI lookup; the whole value, window by window
    past MAX_LEN characters (node/detect/windows.py)."""
    if "${" not in value:
        return None
    return judge_windows(normalise(value), MAX_LEN, _detect_window, out_of_time, gate)


def _detect_window(value: str, _start: int = 0, _owned: int = 0) -> str | None:
    if "${" not in value:
        return None
    if _JNDI_RE.search(value):
        return "jndi"
    cur = value
    for _ in range(MAX_ROUNDS):
        nxt = _INNER_RE.sub(lambda m: "${" + m.group(1) + "}" if _JNDI_RE.match("${" + m.group(1)) else _resolve(m), cur)
        if _JNDI_RE.search(nxt) or re.search(r"\x00lookup\(jndi:", nxt, re.I):
            return "jndi-obfuscated"
        if nxt == cur:
            break
        cur = nxt
    # jndi assembled from resolved pieces, e.g. "${${::-j}ndi:ldap://...}" -> "jndi:ldap://"
    if re.search(r"j\W{0,3}n\W{0,3}d\W{0,3}i\W{0,3}:", cur, re.I) and _NESTED_RE.search(value):
        return "jndi-obfuscated"
    if _NESTED_RE.search(value) and _LOOKUP_RE.search(value):
        return "nested-lookup"
    return None
