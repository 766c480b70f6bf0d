"""Body bytes as text, the ways backends decode them.

A body is read as UTF-8 (invalid bytes kept as surrogate escapes, as before); besides that,
as its byte-order mark says (UTF-8/16/32), as Python's json module detects JSON's encoding
(RFC 4627 §3: the pattern of zero bytes) and as its declared `charset` says (latin-1,
windows-1252, UTF-16, ...). A backend may honour either and some ignore `charset`, so every
distinct reading is returned; for the usual body (no BOM, UTF-8 or no charset, or plain
ASCII under an ASCII-compatible charset) that is one string.
"""

from __future__ import annotations

import codecs
import json
from functools import lru_cache

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


# a body starting otherwise has no BOM, nor is it JSON in UTF-16/32 (a zero byte in the first two)
_BOM_STARTS = frozenset((b"\xef", b"\xff", b"\xfe", b"\x00"))


def bom_encoding(body: bytes) -> tuple[str, int] | None:
    """(codec, BOM length) when the body starts with a byte-order mark."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec, len(bom)
    return None


@lru_cache(maxsize=256)
def codec_of(charset: str) -> str | None:
    """Python's codec name for a charset label ("UTF8" -> "utf-8"); None if unknown."""
    try:
        return codecs.lookup(charset.strip(" \t\"'")).name
    except (LookupError, ValueError):  # ValueError: a label with a NUL or a non-UTF-8 byte (tests/fuzz)
        return None


@lru_cache(maxsize=256)
def ascii_compatible(codec: str) -> bool:
    """ASCII text encodes to the same bytes (latin-1, windows-1252: yes; UTF-16, cp037: no)."""
    sample = "az AZ 09 <>'\"%=&;"
    try:
        return sample.encode(codec) == sample.encode("ascii")
    except (UnicodeError, LookupError):
        return False


def text_readings(body: bytes, charset: str | None, sniff_json: bool = False) -> list[str]:
    """Every distinct text a backend may decode `body` to (see the module doc)."""
    if not charset and body[:1] not in _BOM_STARTS and not (sniff_json and body[1:2] == b"\x00"):
        return [body.decode("utf-8", "surrogateescape")]  # the usual body: one reading
    readings: list[str] = []
    sniffed: str | None = None
    bom = bom_encoding(body)
    if bom:
        sniffed = bom[0]
        readings.append(body[bom[1] :].decode(sniffed, "replace"))
    elif sniff_json and len(body) >= 2 and (body[0] == 0 or body[1] == 0):
        sniffed = json.detect_encoding(body)
        readings.append(body.decode(sniffed, "replace"))
    declared = codec_of(charset) if charset else None
    if declared and declared not in ("utf-8", sniffed):
        if not (ascii_compatible(declared) and body.isascii()):
            readings.append(body.decode(declared, "replace"))
    if sniffed != "utf-8" or declared not in (None, "utf-8"):
        # the plain UTF-8 reading: what a backend that ignores BOM and charset sees
        plain = body.decode("utf-8", "surrogateescape")
        if plain not in readings:
            readings.append(plain)
    return readings
