"""GoTestWAF's encoders: how a payload is written before a placement puts it in a request.

Each encoder turns the payload into the text a placement carries. Two of them only mean
something inside the syntax that decodes them, so they are only used there (see
placements.ENCODINGS_BY_PLACEMENT): `JSUnicode` writes a JSON string's characters as `\\uXXXX`
(a JSON parser reads the payload back), `XMLEntity` writes them as `&#x..;` character
references (an XML parser reads the payload back).
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Callable

PLAIN, URL, BASE64, BASE64FLAT, JSUNICODE, XMLENTITY = (
    "Plain", "URL", "Base64", "Base64Flat", "JSUnicode", "XMLEntity")
ENCODERS_ORDER = (PLAIN, URL, BASE64, BASE64FLAT, JSUNICODE, XMLENTITY)


def plain(payload: str) -> str:
    return payload


def url(payload: str) -> str:
    # every character but the unreserved ones percent-encoded (UTF-8), as Go's url.PathEscape
    # would do it for a path segment and a client does for a query value
    return urllib.parse.quote(payload, safe="-._~")


def b64(payload: str) -> str:
    return base64.b64encode(payload.encode("utf-8")).decode("ascii")


def b64flat(payload: str) -> str:
    # base64url without padding: what JWTs and most URL-carried tokens use
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii").rstrip("=")


def js_unicode(payload: str) -> str:
    """Inside a JSON string literal: every UTF-16 code unit as \\uXXXX."""
    units = payload.encode("utf-16-be")
    return "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))


def xml_entity(payload: str) -> str:
    """Inside XML character data: every character as a hexadecimal character reference."""
    return "".join(f"&#x{ord(c):x};" for c in payload)


ENCODERS: dict[str, Callable[[str], str]] = {
    PLAIN: plain,
    URL: url,
    BASE64: b64,
    BASE64FLAT: b64flat,
    JSUNICODE: js_unicode,
    XMLENTITY: xml_entity,
}
