"""GoTestWAF's placements: where in an HTTP request a payload travels, rendered as a client
sends it, with what a backend reads there (`Rendered.arrives`), so tests can check the payload
arrives where the placement says.

Escaping follows the wire: in the URL and in urlencoded forms the characters that cannot stand
there raw (space, `&`, `=`, `+`, `#`, `%` not starting an escape, `"<>\\^`{|}`, controls,
non-ASCII) are percent-encoded and every existing `%XX` is left as it is (a payload written
with `%2e%2e%2f` reaches the backend decoded once, as its author meant); in JSON a string is
JSON-escaped, in XML character data `&<>` become entities. Encoders that are syntax of the
carrier (JSUnicode, XMLEntity) are inserted raw, so the carrier's parser reads the payload back.
"""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape as xml_escape

from owncorpus.encoders import BASE64, BASE64FLAT, JSUNICODE, PLAIN, URL, XMLENTITY, js_unicode

URLPATH, URLPARAM, HEADER, USERAGENT, HTMLFORM, MULTIPART, JSONREQUEST, JSONBODY, SOAPBODY, XMLBODY, RAWREQUEST = (
    "URLPath", "URLParam", "Header", "UserAgent", "HTMLForm", "HTMLMultipartForm", "JSONRequest", "JSONBody",
    "SOAPBody", "XMLBody", "RawRequest")
PLACEMENTS_ORDER = (URLPATH, URLPARAM, HEADER, USERAGENT, HTMLFORM, MULTIPART, JSONREQUEST, JSONBODY, SOAPBODY,
                    XMLBODY, RAWREQUEST)

_TEXT_ENCODERS = (PLAIN, URL, BASE64, BASE64FLAT)
# Plain, URL and the Base64s write a text any placement can carry; JSUnicode only means the
# payload inside a JSON string and XMLEntity inside XML character data, so they go only there
ENCODINGS_BY_PLACEMENT: dict[str, tuple[str, ...]] = {
    URLPATH: _TEXT_ENCODERS, URLPARAM: _TEXT_ENCODERS, HEADER: _TEXT_ENCODERS, USERAGENT: _TEXT_ENCODERS,
    HTMLFORM: _TEXT_ENCODERS, MULTIPART: _TEXT_ENCODERS, JSONREQUEST: _TEXT_ENCODERS + (JSUNICODE,),
    JSONBODY: _TEXT_ENCODERS + (JSUNICODE,), SOAPBODY: _TEXT_ENCODERS + (XMLENTITY,),
    XMLBODY: _TEXT_ENCODERS + (XMLENTITY,), RAWREQUEST: _TEXT_ENCODERS,
}


@dataclass(frozen=True, slots=True)
class Context:
    """The ordinary parts of a request around the payload (drawn per request by render.py)."""

    host: str
    user_agent: str
    name: str  # the parameter / field / header suffix / XML element the payload is under
    token: str  # a hex string for boundaries, CSRF tokens and the like


@dataclass(slots=True)
class Rendered:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    # what the backend reads: a str (path tail, parameter, header, field, XML text, raw body),
    # a JSON value (JSON placements), or [(key, value), ...] (a STRUCT as bracketed keys)
    arrives: object
    key: str = ""  # the parameter / header / field name it arrives under ("" for path, whole body)


_ESCAPE_RE = re.compile(r"%[0-9A-Fa-f]{2}")
_QUERY_SAFE = "!$'()*,/:?@-._~[]"
_PATH_SAFE = "!$&'()*+,;=:@/-._~[]"
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_XML_ILLEGAL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def wire_escape(text: str, safe: str) -> str:
    """Percent-encode what cannot stand raw, keep existing %XX escapes."""
    out, pos = [], 0
    for m in _ESCAPE_RE.finditer(text):
        out.append(urllib.parse.quote(text[pos:m.start()], safe=safe))
        out.append(m.group(0))
        pos = m.end()
    out.append(urllib.parse.quote(text[pos:], safe=safe))
    return "".join(out)


def unquote(text: str, plus: bool = False) -> str:
    return (urllib.parse.unquote_plus if plus else urllib.parse.unquote)(text, errors="replace")


def _other(name: str) -> str:
    """An ordinary second parameter, never the payload's own name: a repeated name is read as
    its last value by PHP and most JSON parsers, which would drop the payload."""
    return "limit" if name != "limit" else "offset"


def _base_headers(ctx: Context) -> list[tuple[str, str]]:
    return [("Host", ctx.host), ("User-Agent", ctx.user_agent), ("Accept", "*/*"),
            ("Accept-Language", "en-US,en;q=0.9")]


def _with_body(headers: list[tuple[str, str]], ctype: str, body: bytes) -> list[tuple[str, str]]:
    return headers + [("Content-Type", ctype), ("Content-Length", str(len(body)))]


def _flatten(obj: object, prefix: str) -> list[tuple[str, str]]:
    """A JSON object as the bracketed keys qs / PHP / Rack parse back into it."""
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in _flatten(v, f"{prefix}[{k}]" if prefix else k)]
    if isinstance(obj, list):
        return [kv for i, v in enumerate(obj) for kv in _flatten(v, f"{prefix}[{i}]" if isinstance(v, (dict, list)) else f"{prefix}[]")]
    if obj is None:
        return [(prefix, "")]
    if isinstance(obj, bool):
        return [(prefix, "true" if obj else "false")]
    return [(prefix, str(obj))]


def json_unicode_dump(obj: object) -> str:
    """JSON with every character of every string (keys too) written as \\uXXXX."""
    if isinstance(obj, dict):
        return "{" + ",".join(f'"{js_unicode(str(k))}":{json_unicode_dump(v)}' for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(json_unicode_dump(v) for v in obj) + "]"
    if isinstance(obj, str):
        return '"' + js_unicode(obj) + '"'
    return json.dumps(obj)


def json_string(text: str, encoding: str) -> str:
    return '"' + text + '"' if encoding == JSUNICODE else json.dumps(text, ensure_ascii=False)


# ---------------------------------------------------------------------------- text values


def url_path(text: str, encoding: str, ctx: Context) -> Rendered | None:
    wire = wire_escape(text, _PATH_SAFE)
    return Rendered("GET", "/api/v1/files/" + wire, _base_headers(ctx), b"", unquote(wire))


def url_param(text: str, encoding: str, ctx: Context) -> Rendered | None:
    wire = wire_escape(text, _QUERY_SAFE)
    return Rendered("GET", f"/search?{ctx.name}={wire}&{_other(ctx.name)}=1", _base_headers(ctx), b"", unquote(wire), ctx.name)


def _header_value(text: str) -> str | None:
    # a header line cannot carry line breaks or controls; the value's outer blanks are not part of it
    if _CONTROL_RE.search(text) or not text.isascii() or not text.strip(" \t"):
        return None
    return text.strip(" \t")


def header(text: str, encoding: str, ctx: Context) -> Rendered | None:
    value = _header_value(text)
    if value is None:
        return None
    name = "X-" + ctx.name.replace("_", "-").title()
    return Rendered("GET", "/api/v1/profile", _base_headers(ctx) + [(name, value)], b"", value, name)


def user_agent(text: str, encoding: str, ctx: Context) -> Rendered | None:
    value = _header_value(text)
    if value is None:
        return None
    headers = [(k, value if k == "User-Agent" else v) for k, v in _base_headers(ctx)]
    return Rendered("GET", "/", headers, b"", value, "User-Agent")


def html_form(text: str, encoding: str, ctx: Context) -> Rendered | None:
    wire = wire_escape(text, _QUERY_SAFE).replace("%20", "+")
    body = f"csrf_token={ctx.token}&{ctx.name}={wire}&submit=Send".encode()
    headers = _with_body(_base_headers(ctx), "application/x-www-form-urlencoded", body)
    return Rendered("POST", "/account/update", headers, body, unquote(wire, plus=True), ctx.name)


def _multipart(fields: list[tuple[str, str]], ctx: Context) -> tuple[bytes, str]:
    boundary = "----WebKitFormBoundary" + ctx.token[:16]
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields]
    return "".join(parts).encode() + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def multipart_form(text: str, encoding: str, ctx: Context) -> Rendered | None:
    if "\r" in text:  # a CR LF before the next boundary line is the multipart syntax's, not the value's
        return None
    body, ctype = _multipart([(ctx.name, text), ("submit", "Send")], ctx)
    return Rendered("POST", "/account/upload", _with_body(_base_headers(ctx), ctype, body), body, text, ctx.name)


def json_request(text: str, encoding: str, ctx: Context, value: str | None = None) -> Rendered | None:
    body = ('{"' + ctx.name + '":' + (value if value is not None else json_string(text, encoding))
            + f',"{_other(ctx.name)}":1,"locale":"en-US"}}').encode()
    headers = _with_body(_base_headers(ctx), "application/json", body)
    return Rendered("POST", "/api/v1/search", headers, body, json.loads(body)[ctx.name], ctx.name)


def json_body(text: str, encoding: str, ctx: Context, value: str | None = None) -> Rendered | None:
    body = (value if value is not None else json_string(text, encoding)).encode()
    headers = _with_body(_base_headers(ctx), "application/json", body)
    return Rendered("POST", "/api/v1/items", headers, body, json.loads(body))


def _xml_text(text: str, encoding: str) -> str | None:
    if _XML_ILLEGAL_RE.search(text):
        return None  # XML 1.0 has no way to carry these characters
    return text if encoding == XMLENTITY else xml_escape(text)


SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


def soap_envelope(inner: str, declaration: bool = True) -> str:
    return (('<?xml version="1.0" encoding="UTF-8"?>' if declaration else "")
            + f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}" xmlns:ns="urn:example:service">'
            + f"<soapenv:Header/><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>")


def _soap_headers(ctx: Context, body: bytes, op: str) -> list[tuple[str, str]]:
    return _with_body(_base_headers(ctx) + [("SOAPAction", f'"urn:example:service#{op}"')],
                      "text/xml; charset=utf-8", body)


def soap_body(text: str, encoding: str, ctx: Context) -> Rendered | None:
    xml_text = _xml_text(text, encoding)
    if xml_text is None:
        return None
    body = soap_envelope(f"<ns:Lookup><ns:{ctx.name}>{xml_text}</ns:{ctx.name}></ns:Lookup>").encode()
    return Rendered("POST", "/ws/service", _soap_headers(ctx, body, "Lookup"), body, html.unescape(xml_text), ctx.name)


def xml_body(text: str, encoding: str, ctx: Context) -> Rendered | None:
    xml_text = _xml_text(text, encoding)
    if xml_text is None:
        return None
    body = f'<?xml version="1.0" encoding="UTF-8"?><request><{ctx.name}>{xml_text}</{ctx.name}></request>'.encode()
    headers = _with_body(_base_headers(ctx), "application/xml", body)
    return Rendered("POST", "/api/v1/import", headers, body, html.unescape(xml_text), ctx.name)


def raw_request(text: str, encoding: str, ctx: Context) -> Rendered | None:
    body = text.encode("utf-8", "surrogateescape")
    headers = _with_body(_base_headers(ctx), "text/plain; charset=utf-8", body)
    return Rendered("POST", "/api/v1/notes", headers, body, text)


TEXT_RENDERERS: dict[str, Callable[[str, str, Context], Rendered | None]] = {
    URLPATH: url_path, URLPARAM: url_param, HEADER: header, USERAGENT: user_agent, HTMLFORM: html_form,
    MULTIPART: multipart_form, JSONREQUEST: json_request, JSONBODY: json_body, SOAPBODY: soap_body,
    XMLBODY: xml_body, RAWREQUEST: raw_request,
}


# ---------------------------------------------------------------------------- structures and documents


def struct_native(struct: dict, placement: str, encoding: str, ctx: Context) -> Rendered | None:
    """A NoSQL operator object where the placement's parser builds objects: bracketed keys in a
    query string or form (Plain / URL), JSON in JSON bodies (Plain / JSUnicode). None elsewhere."""
    if placement in (URLPARAM, HTMLFORM, MULTIPART) and encoding in (PLAIN, URL):
        pairs = _flatten(struct, "")
        if encoding == URL:
            wire = [(urllib.parse.quote(k, safe=""), urllib.parse.quote(v, safe="")) for k, v in pairs]
        else:
            wire = [(wire_escape(k, _QUERY_SAFE), wire_escape(v, _QUERY_SAFE)) for k, v in pairs]
        if placement == MULTIPART:
            body, ctype = _multipart(pairs, ctx)
            return Rendered("POST", "/login", _with_body(_base_headers(ctx), ctype, body), body, pairs)
        query = "&".join(f"{k}={v}" for k, v in wire)
        if placement == URLPARAM:
            return Rendered("GET", "/api/v1/users?" + query, _base_headers(ctx), b"", pairs)
        body = query.encode()
        return Rendered("POST", "/login", _with_body(_base_headers(ctx), "application/x-www-form-urlencoded", body),
                        body, pairs)
    if placement in (JSONREQUEST, JSONBODY) and encoding in (PLAIN, JSUNICODE):
        value = json_unicode_dump(struct) if encoding == JSUNICODE else json.dumps(struct)
        return (json_request if placement == JSONREQUEST else json_body)("", encoding, ctx, value)
    return None


def document_native(doc: str, prolog: str, placement: str, encoding: str, ctx: Context) -> Rendered | None:
    """An XML document as the body (XMLBody) or its root inside a SOAP envelope after its prolog
    (SOAPBody), Plain only. None elsewhere."""
    if encoding != PLAIN or placement not in (SOAPBODY, XMLBODY):
        return None
    if placement == XMLBODY:
        body = doc.encode()
        headers = _with_body(_base_headers(ctx), "application/xml", body)
        return Rendered("POST", "/api/v1/import", headers, body, doc)
    element = doc[len(prolog):]
    # the declaration must come first, then the attack's DOCTYPE, then the envelope
    declaration = "" if prolog.startswith("<?xml") else '<?xml version="1.0" encoding="UTF-8"?>'
    body = (declaration + prolog + soap_envelope(element, declaration=False)).encode()
    return Rendered("POST", "/ws/service", _soap_headers(ctx, body, "Import"), body, element)
