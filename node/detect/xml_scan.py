"""A tolerant XML tokenizer: the tokens of an XML (or SOAP) text, and the texts a backend reads.

Not a parser: no entity expansion (no billion laughs), no well-formedness. Every construct is
found with str.find, so an unclosed one costs one scan, not one scan per '<' (a regex
tokenizer is quadratic on "<!--<!--<!--..."). Used for XML bodies (request.parse_xml: each
text node and attribute value is a field) and for XML found inside a value
(readings.py: a SOAP envelope sent as a JSON string or a form field).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# attribute values: quoted, up to the closing quote (no '<' inside, as XML requires)
ATTR_RE = re.compile(r"([\w:.\-]+)\s*=\s*(?:\"([^\"<>]*)\"|'([^'<>]*)')")
NAME_RE = re.compile(r"</?\s*([\w:.\-]+)")
MAX_TAG = 4096  # chars of one tag searched for attributes


def tokens(text: str) -> Iterator[tuple[str, str]]:
    """(kind, token) pairs in order; kind is text, comment, cdata, doctype or tag (a `<?pi?>`
    is a tag starting with `<?`). An unclosed construct is the rest of the text."""
    i, n = 0, len(text)
    while i < n:
        lt = text.find("<", i)
        if lt < 0:
            yield "text", text[i:]
            return
        if lt > i:
            yield "text", text[i:lt]
        if text.startswith("<!--", lt):
            end, close = text.find("-->", lt + 4), 3
            kind = "comment"
        elif text.startswith("<![CDATA[", lt):
            end, close = text.find("]]>", lt + 9), 3
            kind = "cdata"
        elif text[lt : lt + 9].upper() == "<!DOCTYPE":
            bracket, gt = text.find("[", lt), text.find(">", lt)
            if 0 <= bracket < gt or (bracket >= 0 and gt < 0):
                end = text.find("]", bracket)
                end = text.find(">", end) if end >= 0 else -1
            else:
                end = gt
            close, kind = 1, "doctype"
        else:
            end, close = text.find(">", lt + 1), 1
            kind = "tag"
        if end < 0:  # unclosed: the rest is one token
            yield kind, text[lt:]
            return
        yield kind, text[lt : end + close]
        i = end + close


def cdata_text(token: str) -> str:
    return token[9:].removesuffix("]]>")


def attributes(tag: str) -> Iterator[tuple[str, str]]:
    """(name, value) of a tag's quoted attributes (its first MAX_TAG characters)."""
    for m in ATTR_RE.finditer(tag[:MAX_TAG]):
        yield m.group(1), m.group(2) if m.group(2) is not None else m.group(3)


def looks_like_xml(text: str) -> bool:
    """A value worth reading as XML: starts with '<' (after white space) and closes a tag."""
    head = text[:64].lstrip()
    return head[:1] == "<" and (head[1:2].isalpha() or head[1:2] in "?!_") and (
        "</" in text or "/>" in text or "]]>" in text)


def texts(text: str, limit: int) -> tuple[list[str], bool]:
    """What an application reads of an XML text: text nodes, CDATA sections and attribute
    values, at most `limit` tokens walked; True when the limit cut the walk short."""
    out: list[str] = []
    run = Run()
    for n, (kind, tok) in enumerate(tokens(text)):
        if n >= limit:
            out += run.unread(text)
            return out, True
        run.past(tok)
        if kind == "text":
            run.add(tok)
            if not tok.isspace():
                out.append(tok.strip())
        elif kind == "cdata":
            run.add(cdata_text(tok))
            out.append(run.pieces[-1])
        elif kind == "tag":
            if not tok.startswith("<?"):  # a processing instruction does not end the run
                out += run.end()
            if "=" in tok and not tok.startswith("</"):
                out.extend(value for _, value in attributes(tok) if value)
    out += run.end()
    return out, False


_COMMENT_RE = re.compile(r"<!--.*?-->", re.S)
_PI_RE = re.compile(r"<\?.*?\?>", re.S)


def character_data_past(text: str, start: int) -> list[str]:
    """What a token limit leaves unread from `start` (where a run of character data began) as
    ElementTree reads it, when comments, processing instructions or CDATA sections split it:
    those removed, CDATA's markers dropped ([] when there are none: the text judged whole is
    that reading already). Each regex runs only up to its last closing marker, so an opening
    without one cannot make it scan the rest again and again: linear in the text."""
    rest = text[start:]
    if "<!--" not in rest and "<?" not in rest and "<![CDATA[" not in rest:
        return []
    for opener, closer, rx in (("<!--", "-->", _COMMENT_RE), ("<?", "?>", _PI_RE)):
        end = rest.rfind(closer)
        if opener in rest and end >= 0:
            end += len(closer)
            rest = rx.sub("", rest[:end]) + rest[end:]
    rest = rest.replace("<![CDATA[", "").replace("]]>", "").strip()
    return [rest] if rest else []


class Run:
    """An element's character data split by comments, processing instructions or CDATA
    sections (`<q>1' UNI<!---->ON SELECT</q>`): one text to ElementTree (`.text`) and to a
    normalised DOM, so a split run is read joined too, when the next tag ends it."""

    __slots__ = ("pieces", "pos", "start")

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.pos = 0  # where the walk is in the text (past() keeps it)
        self.start = 0  # where this run of character data began

    def past(self, token: str) -> None:
        """The walk has read `token` (every token, in order)."""
        self.pos += len(token)

    def add(self, piece: str) -> None:
        self.pieces.append(piece)

    def end(self) -> list[str]:
        """The run joined, when it was split and holds more than white space (else nothing);
        the next run starts empty, after the token just read."""
        joined = "".join(self.pieces).strip() if len(self.pieces) > 1 else ""
        self.pieces.clear()
        self.start = self.pos
        return [joined] if joined else []

    def unread(self, text: str) -> list[str]:
        """At a token limit: character_data_past(text) from where this run began."""
        return character_data_past(text, self.start)
