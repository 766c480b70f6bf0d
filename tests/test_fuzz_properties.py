"""Property-based tests of the three parsers that read attacker- or peer-controlled bytes
(issue 18, fuzzing): the wire protocol's decoders, the node's HTTP/1.1 server and the
detection engine's request parser. The checks are tests/fuzz/targets.py's, the same ones the
atheris harness runs for longer (`make fuzz`, docs/reliability.md "Fuzzing").

Profiles: "fuzz-ci" (the default) is derandomized with bounded example counts, so CI runs the
same inputs every time in well under a minute; FUZZ_PROFILE=fuzz-deep runs 20x more, random.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib

import brotli
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.fuzz import targets
from wallarm_wire.protocol import (AttackInfo, RequestMessage, ResponseMessage, Verdict, decode_request,
                                   decode_response, encode_request, encode_response)

settings.register_profile("fuzz-ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz-deep", derandomize=False, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("FUZZ_PROFILE", "fuzz-ci")
SCALE = 20 if PROFILE == "fuzz-deep" else 1  # fuzz-ci: about 20 s on a loaded 2-core machine


def fuzz(examples: int) -> settings:
    return settings(settings.get_profile(PROFILE), max_examples=examples * SCALE)


# ---------------------------------------------------------------------------- wire protocol

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=TCHARS, min_size=1, max_size=12).map(str.encode)
# field values as the connector may forward them: any byte but LF, no surrounding blanks
# (a lone CR stays in a value: the decoder splits lines on LF)
values = st.binary(max_size=24).map(lambda v: v.replace(b"\n", b"").strip(b" \t"))
headers = st.lists(st.tuples(tokens, values), max_size=8).map(
    lambda hs: [(k, v) for k, v in hs if k.lower() not in (b"content-length", b"transfer-encoding")])
targets_ = st.binary(min_size=1, max_size=40).filter(lambda t: b" " not in t and b"\n" not in t).map(
    lambda t: t.decode("utf-8", "surrogateescape"))
versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/0.9"])


@fuzz(600)
@given(tokens, targets_, headers, st.binary(max_size=64), versions)
def test_request_encode_decode_round_trips(method: bytes, target: str, fields, body: bytes, version: str) -> None:
    msg = RequestMessage(method.decode(), target, fields, body, version)
    back = decode_request(encode_request(msg))
    assert back == RequestMessage(msg.method, target, [*fields, (b"Content-Length", str(len(body)).encode())],
                                  body, version)


reasons = st.binary(max_size=20).map(lambda r: r.replace(b"\n", b"").decode("utf-8", "surrogateescape")).filter(
    lambda r: r == r.rstrip())


@fuzz(600)
@given(st.integers(100, 999), reasons, headers, st.binary(max_size=64), versions)
def test_response_encode_decode_round_trips(status: int, reason: str, fields, body: bytes, version: str) -> None:
    msg = ResponseMessage(status, fields, body, reason, version)
    back = decode_response(encode_response(msg))
    assert back == ResponseMessage(status, [*fields, (b"Content-Length", str(len(body)).encode())], body,
                                   reason, version)


attacks = st.builds(AttackInfo, st.text(max_size=8), st.text(max_size=12), st.text(max_size=8),
                    st.text(max_size=20), st.integers(-(2**70), 2**70))


@fuzz(400)
@given(st.text(max_size=32), st.sampled_from(["pass", "block"]), st.text(max_size=8),
       st.lists(attacks, max_size=3), st.text(max_size=12))
def test_verdict_json_round_trips(rid: str, action: str, mode: str, found, reason: str) -> None:
    verdict = Verdict(rid, action, mode, found, reason)  # type: ignore[arg-type]
    assert Verdict.from_json(verdict.to_json()) == verdict


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10)
verdict_shaped = st.fixed_dictionaries(
    {"action": st.sampled_from(["pass", "block", "allow"]) | json_values},
    optional={"request_id": json_values, "mode": json_values, "reason": json_values,
              "attacks": st.lists(st.fixed_dictionaries({"type": json_values}, optional={
                  "location": json_values, "rule_id": json_values, "excerpt": json_values,
                  "score": json_values | st.sampled_from([1e400, -1e400, 1e308, "12", "x"])}), max_size=3)
              | json_values})


@fuzz(800)
@given(verdict_shaped | json_values)
def test_any_json_read_as_a_verdict_is_a_verdict_or_a_protocol_error(obj: object) -> None:
    targets.check_verdict_bytes(json.dumps(obj).encode())


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"action":"pass","attacks":' + b"[" * 50_000],
                         ids=["nested-arrays", "nested-attacks"])
def test_json_nested_past_the_recursion_limit_is_a_protocol_error(data: bytes) -> None:
    targets.check_verdict_bytes(data)


@fuzz(1000)
@given(st.binary(max_size=200))
def test_wire_decoders_take_any_bytes(data: bytes) -> None:
    targets.wire(data)


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    """An encoded request or response with a few bytes replaced, inserted or removed."""
    if draw(st.booleans()):
        wire = encode_request(RequestMessage(draw(tokens).decode(), draw(targets_), draw(headers),
                                             draw(st.binary(max_size=16))))
    else:
        wire = encode_response(ResponseMessage(draw(st.integers(100, 599)), draw(headers),
                                               draw(st.binary(max_size=16)), "OK"))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(wire)))
        insert = draw(st.sampled_from([b"", b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"\x00", b"\xff", b"\n "]))
        wire = wire[:at] + insert + wire[at + draw(st.integers(0, 2)):]
    return wire


@fuzz(800)
@given(mutated_messages())
def test_mutated_messages_decode_or_raise_protocol_error(wire: bytes) -> None:
    targets.check_request_bytes(wire)
    targets.check_response_bytes(wire)


@fuzz(600)
@given(st.binary(max_size=300), st.binary(min_size=2, max_size=2))
def test_chunked_bodies_round_trip_in_any_pieces(body: bytes, choice: bytes) -> None:
    targets.check_chunked_round_trip(body, targets.Choices(choice, 2))


chunked_lines = st.lists(st.sampled_from([
    b"5\r\nhello\r\n", b"5;a=b\r\nhello\r\n", b"0\r\n", b"\r\n", b"X-T: v\r\n", b"bad\r\n", b"FFFFFFFFFFFFFFFFFFFFF\r\n",
    b"5\r\nhel", b"3 \r\nabc\r\n", b"0x3\r\nabc\r\n", b"-1\r\n", b"40\r\n" + b"z" * 64 + b"\r\n", b"\x00", b"\n"]),
    max_size=8).map(b"".join)


@fuzz(800)
@given(chunked_lines, st.binary(min_size=2, max_size=2))
def test_chunked_reader_is_the_same_whole_or_in_pieces(data: bytes, choice: bytes) -> None:
    targets.check_chunked_bytes(data, targets.Choices(choice, 2))


# ---------------------------------------------------------------------------- HTTP/1.1 server

@st.composite
def http_requests(draw: st.DrawFn) -> bytes:
    """Mostly well-formed requests of every framing the server takes, with faults mixed in."""
    body = draw(st.binary(max_size=80))
    lines = [b"%s %s %s" % (draw(st.sampled_from([b"POST", b"GET", b"P@ST", b""])),
                            draw(st.sampled_from([b"/", b"/a?b", b"*", b"/a b", b"/\xff"])),
                            draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"http/1.1"])))]
    lines += draw(st.lists(st.sampled_from([
        b"Host: node", b"Connection: close", b"Connection: keep-alive", b"Expect: 100-continue",
        b"X-A: \x00", b"Bad Header: x", b": v", b"X-F: a\r\n b", b"Transfer-Encoding: gzip",
        b"Content-Length: 3", b"Content-Length: x"]), max_size=4))
    framing = draw(st.sampled_from(["length", "chunked", "none", "both"]))
    if framing in ("length", "both"):
        lines.append(b"Content-Length: %d" % len(body))
    if framing in ("chunked", "both"):
        lines.append(b"Transfer-Encoding: chunked")
        body = targets.encode_chunked(body, draw(st.lists(st.integers(1, 30), max_size=4)), draw(st.booleans()),
                                      [b"X-T: v"] * draw(st.integers(0, 2)))
    if framing == "none":
        body = b""
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


streams = st.lists(http_requests(), min_size=1, max_size=4).map(b"".join)


@fuzz(600)
@given(streams, st.binary(min_size=2, max_size=2))
def test_server_answers_every_stream_in_any_pieces(stream: bytes, choice: bytes) -> None:
    targets.http1(choice + stream)


@fuzz(600)
@given(streams, st.integers(0, 10_000), st.binary(min_size=1, max_size=3), st.binary(min_size=2, max_size=2))
def test_server_answers_mutated_streams(stream: bytes, at: int, insert: bytes, choice: bytes) -> None:
    at %= len(stream) + 1
    targets.http1(choice + stream[:at] + insert + stream[at + 1:])


@fuzz(600)
@given(st.binary(max_size=300))
def test_server_answers_any_bytes(data: bytes) -> None:
    targets.http1(data)


# ---------------------------------------------------------------------------- detection engine

CONTENT_TYPES = [
    b"application/json", b"application/json; charset=utf-16", b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=B", b"multipart/form-data; boundary=\"B\"; boundary=C", b"multipart/mixed",
    b"text/xml; charset=iso-8859-1", b"application/soap+xml", b"text/plain; charset=nonsense", b"application/x-ndjson",
    b"application/json; charset=utf-32", b"*/*", b";;;", b"multipart/form-data; boundary=", b"text/html; charset=cp1252",
]
ENCODINGS = [b"gzip", b"deflate", b"br", b"zstd", b"identity", b"gzip, gzip", b"x-gzip", b"compress", b"chunked",
             b"gzip, br", b"GZIP", b""]
BODIES = [
    b'{"a": "1 or 1=1", "b": [1, {"c": "<script>"}]}', b'{"a": ', b'[{"x": {"y": [[[[["z"]]]]]}}]',
    b"a=1&b=%27%20or%201%3D1--&c", b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><a>&e;</a>",
    b'--B\r\nContent-Disposition: form-data; name="f"; filename="../a.php"\r\nContent-Type: application/json\r\n\r\n'
    b'{"q": "$(id)"}\r\n--B--\r\n', b"--B\nContent-Disposition: form-data; name=x\n\n${jndi:ldap://a}\n--B--",
    b"\xff\xfe<\x00s\x00c\x00r\x00i\x00p\x00t\x00>\x00", b"\x00" * 40, b"{" * 5000, b"[" * 3000 + b"]" * 3000,
]


def encode_body(body: bytes, coding: bytes) -> bytes:
    """The body under `coding` where we can make it (the others stay as they are: undecodable)."""
    for one in reversed([c.strip().lower() for c in coding.split(b",")]):
        if one in (b"gzip", b"x-gzip"):
            body = gzip.compress(body)
        elif one == b"deflate":
            body = zlib.compress(body)
        elif one == b"br":
            body = brotli.compress(body)
        elif one == b"zstd":
            body = zstandard.ZstdCompressor().compress(body)
    return body


# the listed ones, and any bytes as a charset label (a NUL or a non-UTF-8 byte once made the parser raise)
content_types = st.sampled_from(CONTENT_TYPES) | st.builds(
    lambda base, label: base + b"; charset=" + label, st.sampled_from([b"text/xml", b"application/json", b"text/plain"]),
    st.binary(max_size=6))
header_names = st.sampled_from([b"Content-Type", b"content-type", b"Content-Encoding", b"Transfer-Encoding",
                                b"Cookie", b"User-Agent", b"Referer", b"X-Forwarded-For", b"Authorization"]) | tokens
header_values = st.sampled_from(CONTENT_TYPES + ENCODINGS + [b"a=1; b=<img onerror=x>", b"Basic YWRtaW46MSBvciAxPTE="]) \
    | st.binary(max_size=40)


@st.composite
def request_messages(draw: st.DrawFn) -> RequestMessage:
    fields = draw(st.lists(st.tuples(header_names, header_values), max_size=6))
    body = draw(st.sampled_from(BODIES) | st.binary(max_size=200))
    if draw(st.booleans()):
        ctype = draw(content_types)
        coding = draw(st.sampled_from(ENCODINGS))
        fields += [(b"Content-Type", ctype), (b"Content-Encoding", coding)]
        if draw(st.booleans()):
            body = encode_body(body, coding)
    target = draw(st.sampled_from(["/", "/a?x=1%27", "/%2e%2e/etc/passwd", "http://h/p?q", "/?" + "&" * 500, ""])
                  | targets_)
    return RequestMessage(draw(st.sampled_from(["GET", "POST", "PUT"])), target, fields, body)


@pytest.fixture(scope="module", autouse=True)
def engine():  # type: ignore[no-untyped-def]
    return targets.engine_instance()  # built once here, not inside the first example's deadline


@fuzz(800)
@given(request_messages())
def test_engine_judges_any_request(msg: RequestMessage) -> None:
    targets.check_message(msg)


@fuzz(400)
@given(st.binary(max_size=400))
def test_engine_judges_any_bytes(data: bytes) -> None:
    targets.engine(data)


# ---------------------------------------------------------------------------- the node's endpoint

@fuzz(300)
@given(request_messages(), st.binary(min_size=2, max_size=2))
def test_endpoint_answers_any_request_with_a_verdict(msg: RequestMessage, choice: bytes) -> None:
    targets.endpoint(choice + encode_request(msg))


@fuzz(200)
@given(mutated_messages(), st.binary(min_size=2, max_size=2))
def test_endpoint_answers_any_message_with_a_verdict_or_a_4xx(wire: bytes, choice: bytes) -> None:
    targets.endpoint(choice + wire)
