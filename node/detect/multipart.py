"""multipart/form-data bodies (RFC 2046 §5.1, RFC 7578), split as the backends split them.

A delimiter is `--boundary` at the start of a line, followed by `--` (the close delimiter,
which ends the body: the rest is epilogue) or by optional spaces/tabs and a line break;
`--boundary` inside a line, or followed by anything else, is part data. The first delimiter
may follow a preamble of any text. Backends disagree on what a line break is and on where a
part's headers end, so every body is read twice:

- strict (RFC, python-multipart, busboy): CRLF only, a part's headers end at CRLF CRLF;
- lenient (Werkzeug): CRLF, LF or CR before and after a delimiter, headers end at the first
  blank line of any of them (a part that starts with a line break has headers too), the
  search for the next delimiter starts half-way through that blank line, folded header
  lines are unfolded.

Parts are read one after the other, as a streaming parser reads them: a delimiter inside a
part's header block is not one. Parts both readings find alike are judged once.

A part's name and filename come from its own Content-Disposition header (content_type.py
reads its parameters: exact names, quoted strings, RFC 2231/5987 `filename*`). Every scan is
str/bytes.find or a regular expression of fixed alternatives: linear in the body.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from functools import lru_cache

from node.detect.content_type import MAX_READINGS_TEXT, parse_disposition

MAX_PART_HEADER = 16 * 1024  # bytes searched for the blank line that ends a part's headers
MAX_PART_HEADER_LINES = 64  # header lines read per part; the rest stay unread as headers
# parts read per reading: Werkzeug's and Starlette's default limit (more: 413/400 there);
# past it the reading says it was cut (Reading.cut) and the caller marks the verdict partial
MAX_PARTS = 1000
MAX_DELIMITERS = 4 * MAX_PARTS  # delimiter candidates looked at (a run of dashes is many)

_BLANK_LINE_RE = re.compile(rb"\r\n\r\n|\r\r|\n\n")
_FOLD_RE = re.compile(rb"(?:\r\n|\n|\r)[ \t]")


@dataclass(frozen=True, slots=True)
class Head:
    """What a part's header block says."""

    headers: tuple[tuple[str, str], ...] = ()  # (lower-cased name, value)
    names: tuple[str, ...] = ()
    filenames: tuple[str, ...] = ()
    content_type: str = ""
    # the raw Content-Disposition value when it says more than one name and filename
    disposition: str = ""


NO_HEAD = Head()


@dataclass(slots=True)
class Part:
    span: tuple[int, int]  # where the part lies in the body (tells a part both readings found)
    head: Head
    content: bytes
    headers_found: bool = True  # False: no blank line within MAX_PART_HEADER, content is it all


@dataclass(slots=True)
class Reading:
    parts: list[Part]
    preamble: bytes
    epilogue: bytes
    closed: bool  # a close delimiter was found
    cut: bool = False  # MAX_PARTS or MAX_DELIMITERS ended the reading: the rest was not read


# A delimiter found in the body, as a tuple (one per part: cheaper than an object):
# (start: its preceding line break, or `--` when there is none; end: past its trailing line
#  break, or past `--boundary--`; close; line_start: 0 not at a line start, 1 after a bare
#  LF/CR, 2 after CRLF; crlf_after: followed by CRLF or `--`)
_Delimiter = tuple[int, int, bool, int, bool]


def split(body: bytes, boundary: bytes) -> list[Reading]:
    """The body's strict and lenient readings under `boundary`; empty when no delimiter is
    found."""
    if not boundary or len(boundary) > 256:  # RFC 2046 allows 70; python-multipart refuses > 256
        return []
    delimiters = _delimiters(body, b"--" + boundary)
    if not delimiters:
        return []
    # both readings always: even with CRLF only they differ (a part that starts with CRLF,
    # a delimiter right after the blank line, folded header lines)
    readings = [_read(body, delimiters, strict=True), _read(body, delimiters, strict=False)]
    return [r for r in readings if r is not None]


def _delimiters(body: bytes, dash: bytes) -> list[_Delimiter]:
    out: list[_Delimiter] = []
    append = out.append
    find = body.find
    startswith = body.startswith
    size = len(dash)
    pos = find(dash)
    while pos >= 0 and len(out) < MAX_DELIMITERS:
        after = pos + size
        before = body[pos - 2 : pos] if pos >= 2 else body[:pos]
        if before == b"\r\n":
            line_start, start = 2, pos - 2
        elif before[-1:] == b"\n" or before[-1:] == b"\r":
            line_start, start = 1, pos - 1
        else:
            line_start, start = 0, pos
        if startswith(b"\r\n", after):  # the usual delimiter
            append((start, after + 2, False, line_start, True))
        elif startswith(b"--", after):
            append((start, after + 2, True, line_start, True))
        else:
            j = after
            while body[j : j + 1] in (b" ", b"\t"):  # transport padding (RFC 2046)
                j += 1
            if startswith(b"\r\n", j):
                append((start, j + 2, False, line_start, True))
            elif body[j : j + 1] in (b"\n", b"\r"):
                append((start, j + 1, False, line_start, False))
            # else: `--boundary` followed by other text is data
        pos = find(dash, after)
    return out


def _read(body: bytes, delimiters: list[_Delimiter], strict: bool) -> Reading | None:
    """Part after part, as a streaming parser goes: a part's headers first, then the first
    delimiter after them (one inside the header block is not a delimiter)."""
    usable = [d for d in delimiters if d[4]] if strict else delimiters
    if not usable:
        return None
    first_start, pos, first_close, _, _ = usable[0]  # any text may precede it (preamble)
    preamble = body[:first_start]
    parts: list[Part] = []
    if first_close:
        return Reading(parts, preamble, body[pos:], True)
    needed = 2 if strict else 1  # the line break before a delimiter: CRLF, or any
    i, n = 1, len(usable)
    blanks = _BlankLines(body, strict)
    while True:
        head_end, content_start, data_from = _head_bounds(body, pos, blanks)
        while i < n and (usable[i][0] < data_from or usable[i][3] < needed):
            i += 1
        if i == n:  # no close delimiter: the rest is a part
            parts.append(_part(body, pos, len(body), head_end, content_start, strict))
            return Reading(parts, preamble, b"", False, cut=len(delimiters) >= MAX_DELIMITERS)
        d_start, d_end, close, _, _ = usable[i]
        parts.append(_part(body, pos, d_start, head_end, content_start, strict))
        if close:
            return Reading(parts, preamble, body[d_end:], True)
        if len(parts) >= MAX_PARTS:
            return Reading(parts, preamble, b"", False, cut=True)
        pos = d_end
        i += 1


class _BlankLines:
    """Finds the blank line that ends a part's headers, searching each byte of the body at
    most about once: parts that lie closer together than MAX_PART_HEADER would otherwise
    search the same bytes again and again (a body of 200,000 empty parts)."""

    __slots__ = ("body", "strict", "searched_from", "searched_to", "hit")

    def __init__(self, body: bytes, strict: bool) -> None:
        self.body = body
        self.strict = strict
        self.searched_from = self.searched_to = -1
        self.hit: tuple[int, int] | None = None  # the first blank line at or after searched_from

    def find(self, start: int) -> tuple[int, int] | None:
        """(start, end) of the first blank line at or after `start` that ends within
        MAX_PART_HEADER bytes of it."""
        limit = start + MAX_PART_HEADER
        begin = start
        if self.searched_from >= 0 and self.searched_from <= start:
            hit = self.hit
            if hit is not None and hit[0] >= start:
                return hit if hit[1] <= limit else None
            if hit is None and start < self.searched_to:
                begin = max(start, self.searched_to - 3)  # none wholly before searched_to
        if self.strict:
            at = self.body.find(b"\r\n\r\n", begin, limit)
            hit = (at, at + 4) if at >= 0 else None
        else:
            m = _BLANK_LINE_RE.search(self.body, begin, limit)
            hit = m.span() if m else None
        self.searched_from, self.searched_to, self.hit = start, limit, hit
        return hit


def _head_bounds(body: bytes, start: int, blanks: _BlankLines) -> tuple[int, int, int]:
    """(end of a part's header block, start of its content, where the search for the next
    delimiter starts); (-1, -1, start) when no blank line ends the headers within
    MAX_PART_HEADER bytes."""
    if blanks.strict:
        if body.startswith(b"\r\n", start):  # no headers at all: the blank line comes first
            return start, start + 2, start + 2
        hit = blanks.find(start)
        # the delimiter's CRLF belongs to the data: the search starts at the content
        return (hit[0], hit[1], hit[1]) if hit else (-1, -1, start)
    hit = blanks.find(start)
    if not hit:
        return -1, -1, start
    # Werkzeug: the headers end half-way through the blank line, where the search for the
    # delimiter starts (its line break may be the blank line's second one); the content
    # starts one line break later
    middle = (hit[0] + hit[1]) // 2
    return hit[0], middle + (2 if body.startswith(b"\r\n", middle) else 1), middle


def _span(body: bytes, start: int, end: int) -> bytes:
    """body[start:end], b"" when end < start: compiled by mypyc, such a bytes slice raises
    SystemError (its fast path passes the negative length on) where Python gives b""."""
    return body[start:end] if start < end else b""


def _part(body: bytes, start: int, end: int, head_end: int, content_start: int, strict: bool) -> Part:
    if head_end < 0:
        return Part((start, end), NO_HEAD, _span(body, start, end), False)
    head = _span(body, start, head_end)
    if not head:
        return Part((start, end), NO_HEAD, _span(body, content_start, end))
    return Part((start, end), _cached_head(head, strict) if len(head) <= 512 else _read_head(head, strict),
                _span(body, content_start, end))


@lru_cache(maxsize=1024)  # a form's parts repeat their header blocks (`name="tags[]"`)
def _cached_head(head: bytes, strict: bool) -> Head:
    return _read_head(head, strict)


def _read_head(head: bytes, strict: bool) -> Head:
    headers: list[tuple[str, str]] = []
    names: list[str] = []
    filenames: list[str] = []
    content_type = disposition = ""
    lines = head.split(b"\r\n") if strict else _FOLD_RE.sub(b" ", head).splitlines()
    for line in lines[:MAX_PART_HEADER_LINES]:
        raw_name, colon, raw_value = line.partition(b":")
        if not colon:
            continue
        name = raw_name.strip(b" \t").decode("latin-1").lower()
        value = raw_value.strip(b" \t").decode("utf-8", "surrogateescape")
        headers.append((name, value))
        if name == "content-disposition":
            if len(value) > MAX_READINGS_TEXT:
                disposition = value  # read the RFC's way only: the whole header is judged too
            _kind, params = parse_disposition(value)
            for pname, pvalue in params:
                found = names if pname == "name" else filenames if pname == "filename" else None
                if found is None:
                    disposition = value  # other parameters: judge the whole header too
                elif pvalue not in found:
                    found.append(pvalue)
                    if found is filenames and (pvalue[1:3] == ":\\" or pvalue[:2] == "\\\\"):
                        # python-multipart keeps the last part of a Windows path (an IE6 habit)
                        base = pvalue.rsplit("\\", 1)[-1]
                        if base not in found:
                            found.append(base)
        elif name == "content-type" and not content_type:
            content_type = value
    if len(names) > 1 or len(filenames) > 1:
        disposition = disposition or ", ".join(h[1] for h in headers if h[0] == "content-disposition")
    return Head(tuple(headers), tuple(names), tuple(filenames), content_type, disposition)


# ---------------------------------------------------------------------------- transfer codings

# python-multipart's FormParser undoes a part's Content-Transfer-Encoding (base64 and
# quoted-printable, RFC 2045 §6) before handing the field on; RFC 7578 deprecates it and most
# parsers ignore it, so the decoded content is a reading beside the content as sent


def transfer_decoded(head: Head, content: bytes) -> list[bytes]:
    """The part's content with its declared transfer coding undone: base64 as python-multipart
    decodes it (the whole 4-byte groups of the raw content, characters outside the alphabet
    skipped by binascii) and as a lenient decoder does (all of it), quoted-printable by
    binascii's decoder; [] when it declares none or nothing decodes."""
    coding = next((value for name, value in head.headers if name == "content-transfer-encoding"), "")
    coding = coding.strip(" \t").lower()
    if coding == "quoted-printable":
        decodings = [binascii.a2b_qp(content)]
    elif coding == "base64":
        decodings = []
        for data in (content[: len(content) // 4 * 4], content):
            try:
                decodings.append(binascii.a2b_base64(data))
            except binascii.Error:
                pass
    else:
        return []
    return [d for d in dict.fromkeys(decodings) if d and d != content]
