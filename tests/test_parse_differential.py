"""Differential tests of the node's body parser against the parsers backends use.

For generated and then mutated multipart/form-data and urlencoded bodies (random boundaries,
quoting, duplicate and prefixed parameters, LF vs CRLF, preamble and epilogue, close
delimiters inside values, filename inside other parameters, charset parameters), every name,
value and filename that python-multipart (Starlette, FastAPI) or Werkzeug (Flask) extracts
must be among what the node's parser hands the engine: a whole field value, or inside a
value it judges (the whole body judged as text, a raw Content-Disposition header).
For bodies that were generated but not mutated, every reference value must be a whole field.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from urllib.parse import quote, unquote_plus

import python_multipart
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.formparser import parse_form_data

from wallarm_wire.protocol import RequestMessage
from node.detect.request import extract

# RFC 2046 bchars (space excluded: a trailing space is not allowed and adds nothing here)
BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"
# text of names and values: letters, and every character that matters to a parser
TEXT = st.lists(st.sampled_from(list("abcXYZ019 ;=\"\\%&+-_/.:<>'\r\n\t") + ["--", "é", "%22", "\r\n"]),
               max_size=16).map("".join)
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# characters outside ASCII, and percent-escapes of bytes outside it (Werkzeug leaves those of
# invalid UTF-8 encoded)
_NON_ASCII_RE = re.compile(r"(?:[^\x00-\x7f]|%[89a-fA-F][0-9a-fA-F])+")


def _norm(value: bytes | str | None) -> str:
    """Both sides as text the same way: UTF-8, each run of non-ASCII as one "?".
    (Where a reference makes U+FFFD of a broken percent-encoded or UTF-8 sequence, the node
    keeps the bytes as latin-1 characters, decode.url_decode: they differ only outside ASCII,
    where no payload character is.)"""
    if value is None:
        return ""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return _NON_ASCII_RE.sub("?", value.decode("utf-8", "replace"))


# ---------------------------------------------------------------------------- references


def python_multipart_values(ctype: str, body: bytes) -> list[str] | None:
    """Names, values and filenames python-multipart extracts; None when it refuses the body."""
    out: list[bytes | None] = []

    def on_field(f) -> None:
        out.extend([f.field_name, f.value])

    def on_file(f) -> None:
        f.flush_to_disk = lambda: None  # small files stay in memory
        out.extend([f.field_name, f.file_name, f.file_object.getvalue()])

    headers = {"Content-Type": ctype.encode("latin-1"), "Content-Length": str(len(body)).encode()}
    try:
        python_multipart.parse_form(headers, io.BytesIO(body), on_field, on_file)
    except Exception:  # noqa: BLE001 - any refusal: the backend answers 400, nothing to compare
        return None
    if ctype.startswith("application/x-www-form-urlencoded"):
        # as Starlette does: the parser leaves them percent-encoded
        return [_norm(unquote_plus(v.decode("latin-1"))) for v in out if v]
    return [_norm(v) for v in out if v]


def werkzeug_values(ctype: str, body: bytes) -> list[str] | None:
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": ctype,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    try:
        _stream, form, files = parse_form_data(environ, silent=False)
    except Exception:  # noqa: BLE001
        return None
    values: list[str] = []
    for name, value in form.items(multi=True):
        values += [name, value]
    for name, storage in files.items(multi=True):
        values += [name, storage.filename or "", _norm(storage.read())]
    return [_norm(v) for v in values if v]


# ---------------------------------------------------------------------------- the node


def node_values(ctype: str, body: bytes) -> list[str]:
    msg = RequestMessage("POST", "/", [(b"Content-Type", ctype.encode("utf-8", "surrogateescape"))], body)
    return [_norm(value) for kind, _loc, value in extract(msg).fields if kind not in ("path", "header") or
            _loc.startswith("multipart.")]


def _json_scalar(value: str) -> bool:
    try:
        return not isinstance(json.loads(value), (str, list, dict))
    except ValueError:
        return False


def _pattern(value: str) -> re.Pattern[str]:
    """The value as a pattern where each non-ASCII run ("?" after _norm) matches any 0-4
    characters: the node decodes a broken sequence to a separator ("/") or latin-1 bytes."""
    return re.compile(".{0,4}".join(re.escape(piece) for piece in value.split("?")), re.S)


def missing(reference: list[str], ours: list[str], whole: bool) -> list[str]:
    """Reference values the node does not see (whole: as a field of its own)."""
    exact = set(ours)
    lost = []
    for value in reference:
        if not value.strip() or "\x00" in value or _json_scalar(value):
            # nothing to judge; binary uploads are not judged as text, nor are the numbers,
            # booleans and nulls of a JSON part (by design: they carry no payload)
            continue
        if value in exact:
            continue
        pattern = _pattern(value)
        if whole and any(pattern.fullmatch(o) for o in ours):
            continue
        if not whole and any(pattern.search(o) for o in ours):
            continue
        lost.append(value)
    return lost


def check(ctype: str, body: bytes, mutated: bool) -> None:
    ours = node_values(ctype, body)
    for name, ref in (("python-multipart", python_multipart_values), ("werkzeug", werkzeug_values)):
        values = ref(ctype, body)
        if values is None:
            continue
        lost = missing(values, ours, whole=not mutated)
        assert not lost, f"{name} extracts {lost!r} the node does not see\nctype={ctype!r}\nbody={body!r}\nours={ours!r}"


# ---------------------------------------------------------------------------- generators


def _quoted(value: str, style: str) -> str:
    if style == "token" and value and all(c.isalnum() or c in "-_." for c in value):
        return value
    if style == "html":  # what browsers send: quotes as %22, CR/LF as %0D/%0A
        return '"' + value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A") + '"'
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "") + '"'


@st.composite
def multipart_bodies(draw) -> tuple[str, bytes]:
    boundary = draw(st.text(alphabet=BCHARS, min_size=1, max_size=40))
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    style = draw(st.sampled_from(["token", "html", "backslash"]))
    params = [f"boundary={_quoted(boundary, style if style != 'token' else 'token')}"]
    if draw(st.booleans()):
        params.insert(draw(st.integers(0, 1)), f"xboundary={draw(st.text(alphabet=BCHARS, min_size=1, max_size=8))}")
    if draw(st.booleans()):
        params.append(f"boundary={draw(st.text(alphabet=BCHARS, min_size=1, max_size=8))}")  # a duplicate
    if draw(st.booleans()):
        params.insert(0, "charset=" + draw(st.sampled_from(["utf-8", "latin-1", "utf-16"])))
    ctype = "multipart/form-data; " + "; ".join(params)
    body = draw(st.sampled_from([b"", b"preamble " + eol, eol])) if draw(st.booleans()) else b""
    dash = b"--" + boundary.encode()
    for _ in range(draw(st.integers(1, 4))):
        name = draw(TEXT)
        disposition = f"form-data; name={_quoted(name, style)}"
        if draw(st.booleans()):
            disposition += f"; filename={_quoted(draw(TEXT), style)}"
        if draw(st.booleans()):
            disposition += f'; x="filename={draw(TEXT).replace(chr(34), "")}"'
        headers = [b"Content-Disposition: " + disposition.encode()]
        if draw(st.booleans()):
            headers.append(b"Content-Type: " + draw(st.sampled_from([b"text/plain", b"application/json", b"text/plain; charset=latin-1"])))
        value = draw(TEXT).encode()
        coding = draw(st.sampled_from([None, None, "base64", "Base64", "quoted-printable"]))
        if coding:  # python-multipart undoes it (Werkzeug does not): both readings are judged
            headers.append(b"Content-Transfer-Encoding: " + coding.encode())
            value = base64.encodebytes(value).rstrip(b"\n") if coding.lower() == "base64" else binascii.b2a_qp(value)
        if draw(st.booleans()):  # a delimiter or close delimiter inside a value, not at a line start
            value += draw(st.sampled_from([dash, dash + b"--", b"x" + dash + b"--" + eol]))
        body += dash + eol + eol.join(headers) + eol + eol + value + eol
    body += dash + b"--" + eol
    if draw(st.booleans()):
        body += b"epilogue " + draw(TEXT).encode()
    return ctype, body


@st.composite
def urlencoded_bodies(draw) -> tuple[str, bytes]:
    pairs = []
    for _ in range(draw(st.integers(1, 6))):
        name, value = draw(TEXT), draw(TEXT)
        enc = draw(st.sampled_from(["quote", "plus", "raw"]))
        if enc == "quote":
            name, value = quote(name, safe=""), quote(value, safe="")
        elif enc == "plus":
            name, value = quote(name, safe="").replace("%20", "+"), quote(value, safe="").replace("%20", "+")
        else:
            name, value = name.replace("&", "").replace("=", ""), value.replace("&", "")
        pairs.append(f"{name}={value}" if draw(st.integers(0, 5)) else name)
    ctype = "application/x-www-form-urlencoded" + draw(st.sampled_from(["", "; charset=UTF-8", "; charset=latin-1"]))
    return ctype, "&".join(pairs).encode("utf-8")


@st.composite
def mutated(draw, bodies) -> tuple[str, bytes]:
    ctype, body = draw(bodies)
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "lf", "dup", "cut"]))
        at = draw(st.integers(0, len(data)))
        if op == "insert":
            data[at:at] = draw(st.sampled_from([b"\r\n", b"\n", b"\r", b"--", b";", b'"', b"\\", b"=", b" ", b"\t"]))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 4))]
        elif op == "replace" and at < len(data):
            data[at] = draw(st.sampled_from(b"\r\n-;\"= \\a"))
        elif op == "lf":  # one CRLF becomes a bare LF
            crlf = data.find(b"\r\n", at)
            if crlf >= 0:
                del data[crlf]
        elif op == "dup":
            end = min(len(data), at + draw(st.integers(1, 60)))
            data[at:at] = data[at:end]
        elif op == "cut":
            del data[max(at, 1):]
    return ctype, bytes(data)


# ---------------------------------------------------------------------------- tests


@SETTINGS
@given(multipart_bodies())
def test_multipart_generated(case: tuple[str, bytes]) -> None:
    check(*case, mutated=False)


@SETTINGS
@given(mutated(multipart_bodies()))
def test_multipart_mutated(case: tuple[str, bytes]) -> None:
    check(*case, mutated=True)


@SETTINGS
@given(urlencoded_bodies())
def test_urlencoded_generated(case: tuple[str, bytes]) -> None:
    check(*case, mutated=False)


@SETTINGS
@given(mutated(urlencoded_bodies()))
def test_urlencoded_mutated(case: tuple[str, bytes]) -> None:
    check(*case, mutated=True)


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        # the shapes of issue 13, spelled out
        ("multipart/form-data; boundary=a; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nv1\r\n--b--\r\n"),
        ("multipart/form-data; xboundary=a; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nv2\r\n--b--\r\n"),
        ("multipart/form-data; boundary=B", b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx--B--\r\n--B\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nv3\r\n--B--\r\n"),
        ("multipart/form-data; boundary=B", b"--B\nContent-Disposition: form-data; name=\"q\"\n\nv4\n--B--\n"),
        ("multipart/form-data; boundary=B", b"--B\r\nContent-Disposition: form-data; name=\"f\"; x=\"filename=a\"; filename=\"v5\"\r\n\r\nc\r\n--B--\r\n"),
    ],
)
def test_known_disagreements(ctype: str, body: bytes) -> None:
    check(ctype, body, mutated=False)
    refs = (python_multipart_values(ctype, body) or []) + (werkzeug_values(ctype, body) or [])
    assert any(v.startswith("v") for v in refs)  # the references do read these bodies
