"""Parse an HTTP request into (location, value) fields: every place an attack can hide.

The parser never judges. It bounds its own work: field count, body size, decompressed size,
JSON depth, target length; a value is judged whole (the body bounds it). Every bound that cuts
inspection short is noted in the sink (`FieldSink.reasons`), so that the verdict says it is
partial instead of passing for clean. Locations are dotted paths (`query.id`, `json.user.name`,
`header.user-agent`, `multipart.file.filename`, `xml.doctype`, `path`, `body`).
"""

from __future__ import annotations

import itertools
import json
import re
import zlib

from wallarm_wire.protocol import RequestMessage
from node.detect.decode import url_decode

# Fields judged per request; past it: partial "fields". A 900 KB JSON document of small
# objects has ~35,000 (keys count too).
MAX_FIELDS = 100_000
# Bytes of body parsed, and of a decompressed body (partial "body" / "inflated"): the node
# setting max_body sets it per engine (FieldSink.max_body); this is the default.
MAX_BODY = 1024 * 1024
MAX_INFLATED = MAX_BODY  # kept for callers of inflate() without a sink
MAX_JSON_DEPTH = 32  # past it: partial "depth"
MAX_KEY_PART = 40  # chars of a key kept in a location path
# XML tokens walked for locations; the whole XML text is judged as the `body` value as well,
# so the rest of a longer document is still judged (no partial mark)
MAX_XML_TOKENS = 2_000
MAX_TARGET = 64 * 1024  # chars of the request target parsed; past it: partial "value"


class FieldSink:
    """Collects fields up to MAX_FIELDS; `dropped` says how many did not fit, `reasons` which
    limits cut the parse short (findings.PARTIAL_REASONS).

    `fields` holds plain `(kind, location, value)` tuples, not objects: most values
    are dismissed at once by the engine, and the tuple doubles as its verdict-cache key.
    `kind` is one of path query cookie header form json multipart filename xml xmlattr doctype
    body key."""

    __slots__ = ("fields", "dropped", "cuts", "max_body")

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self.fields: list[tuple[str, str, str]] = []
        self.dropped = 0
        self.cuts: list[str] = []
        self.max_body = max_body

    def add(self, location: str, value: str, kind: str) -> None:
        if not value:
            return
        fields = self.fields
        if len(fields) >= MAX_FIELDS:
            self.dropped += 1
            return
        fields.append((kind, location, value))

    def cut(self, reason: str) -> None:
        """A limit ended part of the parse (a reason from findings.PARTIAL_REASONS)."""
        if reason not in self.cuts:
            self.cuts.append(reason)

    @property
    def reasons(self) -> list[str]:
        return self.cuts + ["fields"] if self.dropped and "fields" not in self.cuts else self.cuts


def _key(name: str) -> str:
    name = name.strip()[:MAX_KEY_PART]
    return name or "_"


# ---------------------------------------------------------------------------- url parts

def _unquote_plus(text: str) -> str:
    return url_decode(text.replace("+", " ")) if "+" in text else url_decode(text)


def parse_pairs(text: str, prefix: str, kind: str, sink: FieldSink, plus: bool = True) -> None:
    """`a=1&b=2` style: values under `prefix.<name>`, names themselves as kind `key`."""
    # one URL-decoding round, as the application would see it; overlong and broken
    # sequences are kept meaningful (see decode.url_decode), not turned into U+FFFD
    dec = _unquote_plus if plus else url_decode
    fields = sink.fields
    append = fields.append
    for part in text.split("&"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        # without '%' or '+' both decoders return the text itself: skip the call
        name_d = dec(name) if "%" in name or "+" in name else name
        loc = f"{prefix}.{name_d.strip()[:MAX_KEY_PART] or '_'}"  # _key(name_d)
        if eq and ("%" in value or "+" in value):
            value = dec(value)
        if len(fields) < MAX_FIELDS - 1:
            # room for both fields: FieldSink.add inlined (same checks, same order of fields),
            # this loop runs for every query string
            if eq:
                if value:
                    append((kind, loc, value))
                if name_d:
                    append(("key", loc, name_d))
            elif name_d:
                # a bare token (`?<script>`): judge it as a value
                append((kind, loc, name_d))
        elif eq:
            # at most one field left: the sink counts what does not fit
            sink.add(loc, value, kind)
            sink.add(loc, name_d, "key")
        else:
            sink.add(loc, name_d, kind)
        if len(fields) >= MAX_FIELDS:
            sink.dropped += 1
            return


def parse_target(target: str, sink: FieldSink) -> None:
    if len(target) > MAX_TARGET:
        sink.cut("value")
        target = target[:MAX_TARGET]
    if target.startswith(("http://", "https://")):  # absolute-form (proxy requests): drop scheme://host
        slash = target.find("/", target.find("//") + 2)
        target = target[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    if "#" in query:
        query = query.split("#", 1)[0]
    if path:
        sink.add("path", url_decode(path), "path")
    if query:
        parse_pairs(query, "query", "query", sink)


# ---------------------------------------------------------------------------- headers

_SKIP_HEADERS = frozenset({"content-length", "connection", "accept-encoding", "host"})
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-:\[\]]*$")


def parse_header(raw_name: bytes, raw_value: bytes, sink: FieldSink) -> None:
    parse_header_line((raw_name, raw_value), sink)


def parse_header_line(line: tuple[bytes, bytes], sink: FieldSink) -> None:
    """One header line's fields (a Cookie header yields one field per cookie)."""
    raw_name, raw_value = line
    name = raw_name.decode("latin-1").lower()
    value = raw_value.decode("utf-8", "surrogateescape")
    if name == "cookie":
        for part in value.split(";", MAX_FIELDS):
            cname, eq, cval = part.strip().partition("=")
            if eq:
                sink.add(f"cookie.{_key(cname)}", url_decode(cval), "cookie")
            else:
                sink.add("cookie", url_decode(cname), "cookie")
        return
    if name in _SKIP_HEADERS and (name != "host" or _HOST_RE.match(value)):
        return
    sink.add(f"header.{_key(name)}", value, "header")
    if name == "referer" and "?" in value:
        # the page the client came from: attacks ride in its query string too
        query = value.partition("?")[2]
        if len(query) > MAX_TARGET:
            sink.cut("value")  # the whole header value is judged; its query's pairs up to here
        parse_pairs(query[:MAX_TARGET], "header.referer", "query", sink)


def parse_headers(msg: RequestMessage, sink: FieldSink) -> None:
    for raw_name, raw_value in msg.headers:
        parse_header(raw_name, raw_value, sink)


# ---------------------------------------------------------------------------- bodies

def inflate(body: bytes, encoding: str, limit: int = MAX_INFLATED) -> bytes | None:
    """Decode gzip/deflate, at most `limit` bytes of output; None if it is not what it claims."""
    enc = encoding.strip().lower()
    if enc in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif enc == "deflate":
        wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        return None
    try:
        d = zlib.decompressobj(wbits)
        return d.decompress(body, limit)
    except zlib.error:
        return None


_BINARY_RE = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")


def looks_binary(body: bytes) -> bool:
    """Protobuf, images, archives: no text payload to judge as a whole."""
    head = body[:512]
    return len(_BINARY_RE.findall(head)) > max(2, len(head) // 20)


def _text(body: bytes) -> str:
    return body.decode("utf-8", "surrogateescape")


def parse_json_value(obj: object, prefix: str, sink: FieldSink) -> None:
    # iterative walk: deep nesting cannot blow the Python stack. FieldSink.add and _key are
    # inlined (same checks, same order of fields): this loop is the hot spot of large JSON
    # bodies. Numbers, booleans and null carry no payload and are never pushed.
    fields = sink.fields
    append = fields.append
    stack: list[tuple[str, object, int]] = [(prefix, obj, 0)]
    pop = stack.pop
    push = stack.append
    while stack:
        loc, node, depth = pop()
        n = len(fields)
        if n >= MAX_FIELDS:
            sink.dropped += 1
            return
        kind = type(node)
        if kind is str:
            if node:
                append(("json", loc, node))
        elif kind is dict:
            if depth >= MAX_JSON_DEPTH:
                if node:
                    sink.cut("depth")
                continue
            room = MAX_FIELDS - n
            items = list(node.items()) if len(node) <= room else list(itertools.islice(node.items(), room))  # type: ignore[attr-defined]
            sink.dropped += len(node) - len(items)  # type: ignore[arg-type]
            depth += 1
            # at most `room` keys are added: the sink cannot overflow inside this loop
            # json.loads makes every key a str
            for k, v in reversed(items):
                kloc = f"{loc}.{k.strip()[:MAX_KEY_PART] or '_'}"
                if k:
                    append(("key", kloc, k))
                if type(v) in _JSON_PAYLOAD:
                    push((kloc, v, depth))
        elif kind is list:
            if depth >= MAX_JSON_DEPTH:
                if node:
                    sink.cut("depth")
                continue
            room = MAX_FIELDS - n
            if len(node) > room:  # type: ignore[arg-type]
                sink.dropped += len(node) - room  # type: ignore[arg-type]
            depth += 1
            stack.extend((loc, v, depth) for v in reversed(node[:room]) if type(v) in _JSON_PAYLOAD)  # type: ignore[index]


# what json.loads builds that can carry a payload (str, or containers of it)
_JSON_PAYLOAD = frozenset({str, dict, list})


def parse_json(text: str, sink: FieldSink) -> bool:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return False
    if isinstance(obj, str):
        sink.add("json", obj, "json")
    else:
        parse_json_value(obj, "json", sink)
    return True


_XML_ATTR_RE = re.compile(r"([\w:.\-]+)\s*=\s*(?:\"([^\"<>]*)\"|'([^'<>]*)')")
_XML_NAME_RE = re.compile(r"</?\s*([\w:.\-]+)")
MAX_XML_TAG = 4096  # chars of one tag searched for attributes


def _xml_tokens(text: str):
    """(kind, token) pairs, found with str.find so that unclosed constructs cost one scan,
    not one scan per '<' (a regex tokenizer is quadratic on "<!--<!--<!--...")."""
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


def parse_xml(text: str, sink: FieldSink) -> None:
    """A tolerant scanner, not a parser: no entity expansion, so no billion laughs."""
    path: list[str] = []
    for n, (kind, tok) in enumerate(_xml_tokens(text)):
        if len(sink.fields) >= MAX_FIELDS:
            sink.dropped += 1
            return
        if n >= MAX_XML_TOKENS:
            return  # the caller judges the whole text as `body` too
        loc = "xml." + ".".join(path[-4:]) if path else "xml"
        if kind == "doctype":
            sink.add("xml.doctype", tok, "doctype")
        elif kind == "cdata":
            sink.add(loc, tok[9:].removesuffix("]]>"), "xml")
        elif kind == "comment":
            sink.add(loc, tok, "xml")
        elif kind == "text":
            if tok.strip():
                sink.add(loc, tok.strip(), "xml")
        elif tok.startswith("<?"):
            sink.add("xml.pi", tok, "xml")
        else:
            nm = _XML_NAME_RE.match(tok)
            name = _key(nm.group(1)) if nm else "_"
            if tok.startswith("</"):
                if path:
                    path.pop()
                continue
            for am in _XML_ATTR_RE.finditer(tok[:MAX_XML_TAG]):
                sink.add(f"xml.{'.'.join((path + [name])[-4:])}.@{_key(am.group(1))}",
                         am.group(2) if am.group(2) is not None else am.group(3), "xmlattr")
            if not tok.endswith("/>") and len(path) < 64:
                path.append(name)


_BOUNDARY_RE = re.compile(r'boundary="?([^";]+)"?', re.I)
_DISPO_RE = re.compile(r'\b(name|filename)\*?\s*=\s*(?:"([^"]*)"|([^;\s]*))', re.I)


def parse_multipart(body: bytes, content_type: str, sink: FieldSink) -> bool:
    m = _BOUNDARY_RE.search(content_type)
    if not m:
        return False
    delim = b"--" + m.group(1).strip().encode("latin-1", "replace")
    parts = body.split(delim)
    for part in parts[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = part.partition(b"\n\n")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        name, filename, ctype = "_", None, ""
        for line in _text(head).splitlines():
            hname, _, hval = line.partition(":")
            hname = hname.strip().lower()
            if hname == "content-disposition":
                for dm in _DISPO_RE.finditer(hval):
                    val = dm.group(2) if dm.group(2) is not None else dm.group(3)
                    if dm.group(1).lower() == "name":
                        name = _key(val)
                    else:
                        filename = val
            elif hname == "content-type":
                ctype = hval.strip().lower()
            elif hname:
                sink.add(f"multipart.{name}.header.{_key(hname)}", hval.strip(), "header")
        loc = f"multipart.{name}"
        if filename is not None:
            sink.add(f"{loc}.filename", filename, "filename")
            # judge text uploads (scripts, web shells); skip binary content
            if b"\x00" in content[:1024]:
                continue
        sub = _text(content)
        if ctype.startswith("application/json") and parse_json(sub, sink):
            continue
        sink.add(loc, sub, "multipart")
        if len(sink.fields) >= MAX_FIELDS:
            sink.dropped += 1
            break
    return True


def parse_body(body: bytes, content_type: str | None, encoding: str | None, sink: FieldSink) -> None:
    """The body's fields, read as its Content-Type and Content-Encoding say (or as it looks)."""
    if not body:
        return
    limit, reason = sink.max_body, "body"
    if encoding:
        inflated = inflate(body, encoding, limit + 1)  # one byte more tells "over the limit"
        if inflated is not None:
            body, reason = inflated, "inflated"
    if len(body) > limit:
        sink.cut(reason)
        body = body[:limit]
    raw_ctype = content_type or ""
    ctype = raw_ctype.lower()
    stripped = body.lstrip()[:1]
    if "multipart/" in ctype:
        if parse_multipart(body, raw_ctype, sink):  # the boundary is case-sensitive
            return
    text = _text(body)
    if "json" in ctype or (not ctype and stripped in (b"{", b"[")):
        if parse_json(text, sink):
            return
    if "x-www-form-urlencoded" in ctype or (not ctype and b"=" in body[:256] and b"<" not in body[:1]):
        parse_pairs(text, "body.form", "form", sink)
        return
    if "xml" in ctype or (stripped == b"<" and text.lstrip()[:5].lower() in ("<?xml", "<!doc")):
        parse_xml(text, sink)
        sink.add("body", text, "body")
        return
    if "json" not in ctype and stripped in (b"{", b"[") and parse_json(text, sink):
        return
    if looks_binary(body):
        return
    sink.add("body", text, "body")


def extract(msg: RequestMessage) -> FieldSink:
    sink = FieldSink()
    parse_target(msg.target, sink)
    parse_headers(msg, sink)
    parse_body(msg.body, msg.header("content-type"), msg.header("content-encoding"), sink)
    return sink
