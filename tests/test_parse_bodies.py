"""Bodies read as the backends read them (issue 13, item 4): each shape here once carried an
attack past the engine (a Content-Type read by substring, a boundary taken from the wrong
parameter, a close delimiter inside a value, a codec the node did not undo, JSON that
Python's parser refuses and Express accepts). Each test builds the attack that way and asks
the engine for its verdict; the helpers of node/detect/ have their own cases below."""

from __future__ import annotations

import base64
import gzip
import json
import random
import urllib.parse
import time
import zlib

import brotli
import pytest
import zstandard

from wallarm_wire.protocol import RequestMessage
from node.detect import charset, codings, multipart
from node.detect.content_type import parse_content_type, parse_disposition
from node.detect.engine import Engine
from node.detect.json_scan import string_literals
from node.detect.request import MAX_INFLATED, extract

XSS = "<script>alert(document.cookie)</script>"
TRAVERSAL = "../../../../etc/passwd"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def req(body: bytes, *headers: tuple[str, str]) -> RequestMessage:
    h = [(b"Host", b"app.example")] + [(k.encode(), v.encode()) for k, v in headers]
    return RequestMessage("POST", "/submit", h, body)


def ctype(value: str) -> tuple[str, str]:
    return ("Content-Type", value)


def mp(*parts: bytes, boundary: bytes = b"B", eol: bytes = b"\r\n") -> bytes:
    """A multipart body from (headers + eol + eol + content) parts."""
    out = b""
    for part in parts:
        out += b"--" + boundary + eol + part + eol
    return out + b"--" + boundary + b"--" + eol


def field(name: str, value: str, eol: bytes = b"\r\n", extra: str = "") -> bytes:
    return f'Content-Disposition: form-data; name="{name}"{extra}'.encode() + eol + eol + value.encode()


def blocked(engine: Engine, msg: RequestMessage) -> bool:
    return engine.analyze_request(msg).is_attack


# ---------------------------------------------------------------------------- Content-Type


def test_multipart_in_a_parameter_does_not_make_json_multipart(engine: Engine) -> None:
    body = json.dumps({"q": XSS}).encode()
    assert blocked(engine, req(body, ctype("application/json; x=multipart/; boundary=z")))


def test_media_type_and_parameters_by_exact_name() -> None:
    media = parse_content_type('Multipart/Form-Data; X-Boundary=a; BOUNDARY="q;r"; charset=utf-8')
    assert media.essences == ("multipart/form-data",)
    assert media.values("boundary")[0] == "q;r"  # the quoted `;` is part of the value
    assert ("x-boundary", "a") in media.params
    assert media.first("charset") == "utf-8"
    assert parse_content_type("application/json; x=multipart/").essences == ("application/json",)
    # PHP cuts the media type at a comma too: both readings are kept
    assert parse_content_type("multipart/form-data, application/json").essences == (
        "multipart/form-data, application/json", "multipart/form-data")


def test_each_boundary_parameter_is_a_reading(engine: Engine) -> None:
    attack = mp(field("q", XSS), boundary=b"second")
    assert blocked(engine, req(attack, ctype("multipart/form-data; boundary=first; boundary=second")))
    attack = mp(field("q", XSS), boundary=b"first")
    assert blocked(engine, req(attack, ctype("multipart/form-data; boundary=first; boundary=second")))


def test_a_prefixed_boundary_parameter_is_not_the_boundary(engine: Engine) -> None:
    # the substring regex took `decoy` from `xboundary=`; Werkzeug and python-multipart use `real`
    attack = mp(field("q", XSS), boundary=b"real")
    assert blocked(engine, req(attack, ctype("multipart/form-data; xboundary=decoy; boundary=real")))
    assert parse_content_type("multipart/form-data; xboundary=decoy; boundary=real").values("boundary")[0] == "real"


def test_two_content_type_headers_are_two_readings(engine: Engine) -> None:
    body = mp(field("q", XSS))
    assert blocked(engine, req(body, ctype("application/json"), ctype("multipart/form-data; boundary=B")))
    # the attack past the first 16 K characters: only the JSON reading (the second header) finds it
    body = json.dumps({"pad": "p" * 20_000, "q": XSS}).encode()
    assert blocked(engine, req(body, ctype("multipart/form-data; boundary=B"), ctype("application/json")))


def test_multipart_without_boundary_or_part_is_judged_as_text(engine: Engine) -> None:
    assert blocked(engine, req(f"q={XSS}".encode(), ctype("multipart/form-data")))
    assert blocked(engine, req(f"junk {XSS} junk".encode(), ctype("multipart/form-data; boundary=absent")))


# ---------------------------------------------------------------------------- multipart


def test_close_delimiter_inside_a_value_does_not_end_the_body(engine: Engine) -> None:
    # `--B--` not at a line start is data; the part after it is read
    body = mp(field("a", "harmless--B--"), field("q", XSS))
    assert blocked(engine, req(body, ctype("multipart/form-data; boundary=B")))


def test_filename_inside_another_parameter_is_not_the_filename(engine: Engine) -> None:
    part = (f'Content-Disposition: form-data; name="f"; filename="{TRAVERSAL}"; x="filename=a.txt"'
            "\r\n\r\ncontent").encode()
    det = engine.analyze_request(req(mp(part), ctype("multipart/form-data; boundary=B")))
    assert det.is_attack and "multipart.f.filename" in {a.location for a in det.attacks}


def test_rfc5987_filename_is_read(engine: Engine) -> None:
    part = b"Content-Disposition: form-data; name=\"f\"; filename*=UTF-8''..%2F..%2F..%2F..%2Fetc%2Fpasswd\r\n\r\nx"
    det = engine.analyze_request(req(mp(part), ctype("multipart/form-data; boundary=B")))
    assert "multipart.f.filename" in {a.location for a in det.attacks}


def test_bare_lf_multipart_is_read(engine: Engine) -> None:
    body = mp(field("q", XSS, eol=b"\n"), eol=b"\n")
    assert blocked(engine, req(body, ctype("multipart/form-data; boundary=B")))


def test_lenient_and_strict_line_breaks_are_both_read() -> None:
    # Werkzeug ends the first part at "\n--B\n"; python-multipart (CRLF only) reads it as data
    body = (b"--B\r\n" + field("a", "one\n--B\n") + field("b", "two").replace(b"\r\n", b"\n")
            + b"\r\n--B--\r\n")
    readings = multipart.split(body, b"B")
    assert len(readings) == 2
    contents = [[p.content for p in r.parts] for r in readings]
    assert [b"one\n--B\n" + field("b", "two").replace(b"\r\n", b"\n")] in contents  # strict
    assert any(b"one" in c and b"two" in c for c in contents)  # lenient: two parts


def test_part_headers_are_bounded() -> None:
    body = b"--B\r\nX-Long: " + b"a" * (multipart.MAX_PART_HEADER + 10) + b"\r\n\r\nvalue\r\n--B--\r\n"
    for reading in multipart.split(body, b"B"):  # no blank line within the bound: all content
        assert not reading.parts[0].headers_found and reading.parts[0].content.endswith(b"value")


def test_preamble_and_epilogue_are_judged(engine: Engine) -> None:
    body = f"{XSS}\r\n".encode() + mp(field("a", "1"))
    assert blocked(engine, req(body, ctype("multipart/form-data; boundary=B")))
    body = mp(field("a", "1")) + XSS.encode()
    assert blocked(engine, req(body, ctype("multipart/form-data; boundary=B")))


def test_disposition_parameters() -> None:
    kind, params = parse_disposition('form-data; name="a;b"; filename="c\\"d"')
    assert kind == "form-data" and params[:2] == [("name", "a;b"), ("filename", 'c"d')]
    # a quoted `;` also gets the naive reading (a parser that splits on every `;`)
    assert ("name", '"a') in params
    kind, params = parse_disposition("form-data; name=x; filename*=utf-8''%E2%82%AC.php")
    assert ("filename", "\u20ac.php") in params


# ---------------------------------------------------------------------------- codings


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


def _two_gzip_members(data: bytes) -> bytes:
    return gzip.compress(data[:10]) + gzip.compress(data[10:])


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", _two_gzip_members),  # the old inflate read the first member only
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("br", brotli.compress),
        ("zstd", zstandard.ZstdCompressor().compress),
        ("gzip, br", lambda b: brotli.compress(gzip.compress(b))),  # applied in this order
    ],
)
def test_content_codings_are_undone(engine: Engine, coding: str, encode) -> None:
    msg = req(encode(f"a=1&q={XSS}".encode()), ctype("application/x-www-form-urlencoded"), ("Content-Encoding", coding))
    assert blocked(engine, msg)


def test_transfer_coding_is_undone_too(engine: Engine) -> None:
    msg = req(gzip.compress(f"q={XSS}".encode()), ctype("application/x-www-form-urlencoded"),
              ("Transfer-Encoding", "gzip, chunked"))
    assert blocked(engine, msg)


def test_decompression_bomb_is_partial_not_clean() -> None:
    bomb = gzip.compress(b"a=" + b"A" * (4 * MAX_INFLATED))
    sink = extract(req(bomb, ctype("application/x-www-form-urlencoded"), ("Content-Encoding", "gzip")))
    assert "inflated" in sink.cuts
    for coding, data in (("br", brotli.compress(b"A" * (4 * MAX_INFLATED))),
                         ("zstd", zstandard.ZstdCompressor().compress(b"A" * (4 * MAX_INFLATED)))):
        out = codings.decode_body(data, coding, MAX_INFLATED)
        assert out.over_limit and len(out.body) == MAX_INFLATED


def test_undecodable_binary_body_is_partial() -> None:
    sink = extract(req(bytes(range(256)) * 4, ctype("application/octet-stream"), ("Content-Encoding", "x-unknown")))
    assert "encoding" in sink.cuts


def test_wrong_coding_header_judges_the_bytes_as_they_are(engine: Engine) -> None:
    assert blocked(engine, req(f"q={XSS}".encode(), ctype("application/x-www-form-urlencoded"), ("Content-Encoding", "br")))


# ---------------------------------------------------------------------------- charsets


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
def test_utf16_32_json(engine: Engine, encoding: str) -> None:
    body = json.dumps({"q": XSS}).encode(encoding)  # "utf-16"/"utf-32" write a BOM, the others none
    assert blocked(engine, req(body, ctype("application/json")))


def test_declared_charset_form_and_text(engine: Engine) -> None:
    assert blocked(engine, req(f"q={XSS}".encode("utf-16-le"), ctype("application/x-www-form-urlencoded; charset=utf-16le")))
    assert blocked(engine, req(f"<a>{XSS}</a>".encode("utf-16"), ctype("text/xml")))


def _escaped_in(text: str, codec: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode(codec))


@pytest.mark.parametrize("codec", ["ibm037", "ibm500", "cp1026", "utf-16-le", "utf-32-be"])
def test_form_escapes_are_read_in_the_declared_charset(engine: Engine, codec: str) -> None:
    # Django's QueryDict and ASP.NET decode the bytes of the %-escapes in the declared charset:
    # the IBM037 bypass reaches them as plain `<script>`, where a UTF-8 reader sees mojibake
    body = f"{_escaped_in('q', codec)}={_escaped_in(XSS, codec)}".encode()
    assert blocked(engine, req(body, ctype(f"application/x-www-form-urlencoded; charset={codec}")))
    # an ASCII-compatible charset means the same escapes: nothing more to read
    assert not blocked(engine, req(b"q=%C1%C2", ctype("application/x-www-form-urlencoded; charset=latin-1")))


def test_the_query_is_read_in_the_body_charset(engine: Engine) -> None:
    target = f"/search?{_escaped_in('q', 'ibm037')}={_escaped_in(TRAVERSAL, 'ibm037')}"
    h = [(b"Host", b"app.example"), (b"Content-Type", b"application/x-www-form-urlencoded; charset=ibm037")]
    assert blocked(engine, RequestMessage("POST", target, h, b"a=1"))
    assert not blocked(engine, RequestMessage("POST", target, h[:1], b"a=1"))  # no charset: mojibake


def test_charset_form_fields_equal_djangos_reading() -> None:
    # Django's QueryDict is urllib.parse.parse_qsl(..., encoding=<charset>) over the body
    from urllib.parse import parse_qsl

    rng = random.Random(7)
    alphabet = "abc<>'\"();=&+%/ -_.\u00e9"
    for _ in range(300):
        codec = rng.choice(["ibm037", "ibm500", "utf-16-le"])
        pairs = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(4)]
        body = "&".join(f"{_escaped_in(pairs[i], codec)}={_escaped_in(pairs[i + 1], codec)}" for i in (0, 2))
        msg = req(body.encode(), ctype(f"application/x-www-form-urlencoded; charset={codec}"))
        ours = {value for _kind, _loc, value in extract(msg).fields}
        for name, value in parse_qsl(body, keep_blank_values=True, encoding=codec, errors="replace"):
            assert name.strip() in {o.strip() for o in ours} and (not value or value in ours), (codec, body)


@pytest.mark.parametrize("coding", ["base64", "quoted-printable"])
def test_a_parts_transfer_coding_is_undone_too(engine: Engine, coding: str) -> None:
    # python-multipart's FormParser undoes Content-Transfer-Encoding before the application
    # sees the field: base64 wrapped at 76 columns (MIME), quoted-printable with every byte escaped
    payload = XSS + " " * 40 + "<img src=x onerror=alert(1)>"
    if coding == "base64":
        content = base64.encodebytes(payload.encode()).replace(b"\n", b"\r\n").rstrip()
    else:
        content = "".join(f"={b:02X}" for b in payload.encode()).encode()
    body = (b"--b\r\nContent-Disposition: form-data; name=\"q\"\r\nContent-Transfer-Encoding: " + coding.encode()
            + b"\r\n\r\n" + content + b"\r\n--b--\r\n")
    assert blocked(engine, req(body, ctype("multipart/form-data; boundary=b")))
    fields = [value for kind, _loc, value in extract(req(body, ctype("multipart/form-data; boundary=b"))).fields]
    assert payload in fields and content.decode() in fields  # both readings


def test_charset_readings() -> None:
    assert charset.text_readings(b"plain", None) == ["plain"]
    assert charset.text_readings(b"plain", "utf-8") == ["plain"]
    assert charset.text_readings(b"plain", "windows-1252") == ["plain"]  # ASCII: one reading
    assert charset.text_readings("caf\u00e9".encode("latin-1"), "latin-1")[0] == "caf\u00e9"
    # declared UTF-16 but ASCII bytes: a backend that ignores charset reads the ASCII
    assert "q=1" in charset.text_readings(b"q=1", "utf-16")
    assert charset.text_readings(b"\xef\xbb\xbf{}", None) == ["{}"]  # a UTF-8 BOM is dropped


# ---------------------------------------------------------------------------- JSON Python refuses


def test_json_with_a_number_past_pythons_digit_limit(engine: Engine) -> None:
    # Express's JSON.parse reads it; json.loads raises (4,300 digits); the attack sits past
    # the first 16 K characters of the body, so only its string leaf shows it
    body = b'{"n": ' + b"1" * 20_000 + b', "q": ' + json.dumps(XSS).encode() + b"}"
    det = engine.analyze_request(req(body, ctype("application/json")))
    assert det.is_attack and "json.q" in {a.location for a in det.attacks}


def test_json_nested_past_pythons_recursion_limit(engine: Engine) -> None:
    body = b"[" * 20_000 + json.dumps(XSS).encode() + b"]" * 20_000  # RecursionError in json.loads
    assert blocked(engine, req(body, ctype("application/json")))


def test_newline_delimited_json(engine: Engine) -> None:
    body = b'{"a": "x"}\n' + b'{"pad": "' + b"p" * 20_000 + b'"}\n' + json.dumps({"q": XSS}).encode()
    assert blocked(engine, req(body, ctype("application/x-ndjson")))


def test_form_body_labelled_json_is_read_as_a_form(engine: Engine) -> None:
    body = b"pad=" + b"p" * 20_000 + b"&q=" + XSS.replace("<", "%3C").encode()
    assert blocked(engine, req(body, ctype("application/json")))


def test_string_literals() -> None:
    text = '{"a": "x\\"y", "b\\u0041": ["\\ud83d\\ude00", 1e999999], "c": "unterminated'
    assert list(string_literals(text)) == [("a", True), ('x"y', False), ("bA", True), ("\U0001f600", False),
                                           ("c", True), ("unterminated", False)]
    # malformed escapes are read leniently, never raise
    assert list(string_literals('"a\\x\\u12"')) == [("ax" + "u12", False)]


def test_more_parts_than_a_backend_reads_is_partial() -> None:
    body = mp(*[field("a", "1")] * (multipart.MAX_PARTS + 5))
    sink = extract(req(body, ctype("multipart/form-data; boundary=B")))
    assert "parts" in sink.cuts
    assert "parts" not in extract(req(mp(field("a", "1")), ctype("multipart/form-data; boundary=B"))).cuts


@pytest.mark.parametrize(
    ("name", "body", "content_type"),
    [
        ("empty parts", b"--B\r\n" * 200_000, "multipart/form-data; boundary=B"),
        ("bare CR delimiters", b"--B\r" * 250_000, "multipart/form-data; boundary=B"),
        ("a run of dashes", b"-" * 1_000_000, "multipart/form-data; boundary=-"),
        ("escaped quotes", b'["' + b'\\"' * 500_000, "application/json"),
        ("many parameters", b"x", "multipart/form-data; " + "a=b;" * 20_000),
        ("quote runs", b"x", "multipart/form-data; b=" + '"' * 40_000),
    ],
)
def test_hostile_bodies_are_linear(engine: Engine, name: str, body: bytes, content_type: str) -> None:
    # the whole request under 50 ms of CPU (issue 13's bound through the node), on 1 MB shapes
    # that a per-part or per-quote rescan would make quadratic (seconds)
    msg = req(body, ctype(content_type))
    engine.analyze_request(msg)  # caches warm
    engine._unit_cache.clear()
    start = time.thread_time()
    engine.analyze_request(msg)
    assert time.thread_time() - start < 0.05, name


def test_gzip_members_are_bounded() -> None:
    out = codings.decode_body(gzip.compress(b"a") * (codings.MAX_GZIP_MEMBERS + 10), "gzip", MAX_INFLATED)
    assert out.over_limit and out.body == b"a" * codings.MAX_GZIP_MEMBERS


def test_utf16_json_python_refuses_is_judged_as_text(engine: Engine) -> None:
    # the text reading is judged whole even though the body's bytes are full of zeros
    body = ('{"n": ' + "1" * 5_000 + ', "q": "' + XSS + '"}').encode("utf-16")
    sink = extract(req(body, ctype("application/json")))
    assert any(kind == "body" and XSS in value for kind, _loc, value in sink.fields)
    assert blocked(engine, req(body, ctype("application/json")))


# ---------------------------------------------------------------------------- binary data

def test_a_binary_upload_is_judged_by_its_printable_runs(engine: Engine) -> None:
    """A NUL up front once made a file part "binary" and unjudged; a reading that sees no
    filename (`dummy="; filename=a.bin"`) hands the backend that part as a text field."""
    noise = bytes((i * 7) % 32 for i in range(1024))  # control bytes: no printable run of its own
    for disposition in ('form-data; name="file"; filename="photo.jpg"',
                        'form-data; dummy="; filename=a.bin"; name="q"'):
        part = (f"Content-Disposition: {disposition}\r\n\r\n".encode() + b"\x00" + noise
                + XSS.encode() + noise)
        body = b"--B\r\n" + part + b"\r\n--B--\r\n"
        assert engine.analyze_request(req(body, ctype("multipart/form-data; boundary=B"))).is_attack, disposition


def test_a_binary_body_is_judged_by_its_printable_runs(engine: Engine) -> None:
    body = b"\x00\x01\x02\x03" * 64 + TRAVERSAL.encode() + b"\x00" * 64
    assert engine.analyze_request(req(body, ctype("application/octet-stream"))).is_attack


def test_random_binary_uploads_stay_clean() -> None:
    import random

    engine = Engine(max_body=8 * 1024 * 1024)
    for seed in range(3):
        data = random.Random(seed).randbytes(2 * 1024 * 1024)
        body = (b'--B\r\nContent-Disposition: form-data; name="f"; filename="x.bin"\r\n\r\n' + data
                + b"\r\n--B--\r\n")
        det = engine.analyze_request(req(body, ctype("multipart/form-data; boundary=B")))
        assert not det.is_attack and not det.partial, seed


def _string_literals_by_find(text: str) -> list[tuple[str, bool]]:
    """The str.find scan json_scan used before its one-regex pass: the reference."""
    from itertools import groupby

    from node.detect.content_type import closing_quote
    from node.detect.json_scan import decode_literal

    out: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while True:
        q = text.find('"', i)
        if q < 0:
            break
        close = closing_quote(text, q + 1)
        if close < 0:
            out.append((decode_literal(text[q + 1:]), False))
            break
        j = close + 1
        while j < n and text[j] in " \t\r\n":
            j += 1
        out.append((decode_literal(text[q + 1:close]), j < n and text[j] == ":"))
        i = close + 1
    return [item for item, _ in groupby(out)]  # consecutive repeats given once


def test_string_literals_equal_the_find_scan_on_random_text() -> None:
    import random

    rng = random.Random(31)
    atoms = ['"', '"', '\\', '\\"', ':', ' ', '\n', 'a', 'b', '{', '}', '[', ']', ',', '\\u0041', '\\x', '1', 'é']
    for _ in range(30_000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 14)))
        assert list(string_literals(text)) == _string_literals_by_find(text), text


def test_repeated_literals_are_one_item() -> None:
    deep = '{"a":' * 50_000 + '"<script>"' + "}" * 50_000
    assert list(string_literals(deep)) == [("a", True), ("<script>", False)]


def test_a_body_binary_past_its_first_512_bytes_is_judged_by_its_printable_runs(engine: Engine) -> None:
    """A PDF starts as text and goes on as compressed streams: read whole as text, the random
    bytes scored as an attack (a benign 124 KB PDF sent as JSON was blocked)."""
    import random

    noise = random.Random(3).randbytes(120_000)
    body = b"%PDF-1.7\n" + b"1 0 obj <</Type/Font/BaseFont/Helvetica>> endobj\n" * 12 + noise
    det = engine.analyze_request(req(body, ctype("application/json")))
    assert not det.is_attack and not det.partial
    attack = body + b"\n" + XSS.encode() + b"\n" + noise[:2000]
    assert engine.analyze_request(req(attack, ctype("application/json"))).is_attack


# ---------------------------------------------------------------------------- parameter pollution


@pytest.mark.parametrize("pieces", [
    ["1/*", "*/UNION/*", "*/SELECT/*", "*/password/*", "*/FROM/*", "*/users--"],
    ["1/*", "*/union/*", "*/select/*", "*/1,2,3"],
])
def test_repeated_parameters_are_read_joined(engine: Engine, pieces: list[str]) -> None:
    # ASP.NET joins a repeated name's values with commas: `1/*,*/UNION/*,*/SELECT...` is SQL
    # that no piece is alone (the classic parameter-pollution bypass)
    query = "&".join(f"q={urllib.parse.quote(p, safe='')}" for p in pieces)
    msg = RequestMessage("GET", f"/search?{query}", [(b"Host", b"app.example")], b"")
    assert blocked(engine, msg)
    assert ",".join(pieces) in [value for _kind, loc, value in extract(msg).fields if loc == "query.q"]
    assert blocked(engine, req(query.encode(), ctype("application/x-www-form-urlencoded")))


def test_the_join_keeps_trivial_values_in_their_place() -> None:
    msg = RequestMessage("GET", "/s?q=a%27&q=x&id=1&q=%2A%2F&id=2", [(b"Host", b"h")], b"")
    joined = [value for kind, loc, value in extract(msg).fields if loc == "query.q" and "," in value]
    assert joined == ["a',x,*/"]


def test_lists_of_plain_values_are_not_an_attack(engine: Engine) -> None:
    for query in ("tag=a&tag=b%20c&tag=d", "id=1&id=2&id=3", "f=name%3Aasc&f=date%3Adesc&f=(x)"):
        assert not blocked(engine, RequestMessage("GET", f"/list?{query}", [(b"Host", b"h")], b"")), query


def test_a_pair_repeated_in_a_row_is_judged_once(engine: Engine) -> None:
    body = "q=%3Cb%3Ex%3C%2Fb%3E&" * 20_000 + "q=%27+OR+1%3D1--"
    msg = req(body.encode(), ctype("application/x-www-form-urlencoded"))
    fields = [value for kind, loc, value in extract(msg).fields if kind == "form"]
    assert fields.count("<b>x</b>") == 1 and "' OR 1=1--" in fields
    # joined, the run of 20,000 reads as two copies (the parity of its quotes and brackets kept)
    assert "<b>x</b>,<b>x</b>,' OR 1=1--" in fields
    assert blocked(engine, msg)


@pytest.mark.parametrize("split", ["<!-- c -->", "<?pi x?>", "]]><![CDATA["])
def test_xml_text_split_by_comments_pis_or_cdata_is_read_joined(engine: Engine, split: str) -> None:
    # ElementTree's `.text` and a normalised DOM read the run as one text
    payload = "1' UNION SELECT password FROM users--"
    half = len(payload) // 2
    inner = f"<![CDATA[{payload[:half]}{split}{payload[half:]}]]>" if split.startswith("]]>") else \
        f"{payload[:half]}{split}{payload[half:]}".replace("'", "&apos;")
    body = f"<r><q>{inner}</q></r>".encode()
    assert blocked(engine, req(body, ctype("application/xml")))
    # ... the reference: what ElementTree hands the application
    import xml.etree.ElementTree as ET
    text = ET.fromstring(body).find("q").text
    assert text == payload
    assert text in [v.replace("&apos;", "'") for _k, _loc, v in extract(req(body, ctype("application/xml"))).fields]
    # XML inside a value reads the same way
    assert engine.analyze_value(f"<q>{inner}</q>", "json.doc", "json").attacks


def test_a_split_run_past_the_xml_token_limit_is_judged_joined(engine: Engine) -> None:
    # past request.MAX_XML_TOKENS the body is judged whole as text, where `SEL<!---->ECT` is
    # no keyword: what comments or CDATA split there is judged joined, from where its run began
    from node.detect.request import MAX_XML_TOKENS

    body = ("<r><q>" + "a<!---->" * MAX_XML_TOKENS + "1&apos; UNION SEL<!---->ECT password FROM users--</q></r>").encode()
    assert blocked(engine, req(body, ctype("application/xml")))
    # ... and inside a value (readings.MAX_XML_TOKENS)
    from node.detect.readings import MAX_XML_TOKENS as VALUE_LIMIT

    value = "<q>" + "a<!---->" * VALUE_LIMIT + "<![CDATA[<scr]]><![CDATA[ipt>alert(1)</scr]]><![CDATA[ipt>]]></q>"
    assert engine.analyze_value(value, "json.doc", "json").attacks


def test_what_the_limit_leaves_is_stripped_in_linear_time() -> None:
    from node.detect import xml_scan

    assert xml_scan.character_data_past("<q>a<!-- x -->b<?p?><![CDATA[c]]>", 3) == ["abc"]
    assert xml_scan.character_data_past("<q>plain</q>", 0) == []  # nothing split: judged whole already
    for unit in ("<!--a", "<?x a", "-->", "<!--<?]]><![CDATA["):
        large = (unit * ((1 << 20) // len(unit) + 1))[: 1 << 20]
        started = time.perf_counter()
        xml_scan.character_data_past(large, 0)
        assert time.perf_counter() - started < 1.0, unit  # ~3 ms measured for 1 MB: quadratic would take minutes
