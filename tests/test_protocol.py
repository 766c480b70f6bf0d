"""Wire protocol v1 (`wallarm_wire/protocol.py`), shared by the connector and the node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wallarm_wire import protocol as p


def reference_json(v: p.Verdict) -> bytes:
    """The verdict as json.dumps writes it: what to_json's hand-written form must equal."""
    return json.dumps({
        "protocol": p.PROTOCOL_VERSION, "request_id": v.request_id, "action": v.action, "mode": v.mode,
        "reason": v.reason,
        "attacks": [{"type": a.type, "location": a.location, "rule_id": a.rule_id, "excerpt": a.excerpt,
                     "score": a.score} for a in v.attacks],
        "partial": v.partial,
    }, separators=(",", ":")).encode()


VERDICTS = [
    p.Verdict("0" * 32),
    p.Verdict("a" * 32, "block", "block", [p.AttackInfo("sqli", "query.id", "sqli:tautology", "' or 1=1--", 10)],
              "attack"),
    p.Verdict("b" * 32, "pass", "monitoring", [
        p.AttackInfo("xss", 'json.a"b', "xss:1", '<img src=x onerror="alert(1)">\\', 12),
        p.AttackInfo("ptrav", "path", "pt:1", "..\u2215..\u0000\u001f\u2028é\U0001f600", 5),
    ], "attack"),
    p.Verdict("c" * 32, "block", "block", [p.AttackInfo("partial_inspection", "request", "partial.fields", "", 0)],
              "partial", ["fields", "dead\"line"]),
]


@pytest.mark.parametrize("verdict", VERDICTS)
def test_verdict_json_is_exactly_what_json_dumps_writes_and_reads_back(verdict):
    data = verdict.to_json()
    assert data == reference_json(verdict)
    assert p.Verdict.from_json(data) == verdict


@pytest.mark.parametrize("partial,want", [(None, []), ("fields", []), ([1, "body"], ["1", "body"])])
def test_verdict_from_json_is_tolerant_of_the_partial_field(partial, want):
    obj = {"protocol": 1, "request_id": "0" * 32, "action": "pass"}
    if partial is not None:
        obj["partial"] = partial
    assert p.Verdict.from_json(json.dumps(obj).encode()).partial == want


@pytest.mark.parametrize("verdict", VERDICTS)
def test_action_of_reads_the_action_of_every_verdict(verdict):
    assert p.Verdict.action_of(verdict.to_json()) == verdict.action


@pytest.mark.parametrize("body", [
    b"", b"<html>ok</html>", b"{}", b'{"action":"maybe"}', b'{"action": "allow"}', b"[1]", b'"pass"',
    b'{"reason":"x", "action" : 1}', b"[" * 100_000,
])
def test_action_of_refuses_what_is_not_a_verdict(body):
    with pytest.raises(p.ProtocolError):
        p.Verdict.action_of(body)


def test_action_of_reads_a_pass_spelled_otherwise_through_json():
    assert p.Verdict.action_of(b'{ "action" : "pass" }') == "pass"
    assert p.Verdict.action_of(b'{"excerpt":"\\"action\\":\\"pass\\"","action":"block"}') == "block"


def test_request_ids_are_well_formed_distinct_and_differ_in_a_forked_child():
    import subprocess
    import sys

    ids = [p.new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(p.is_valid_request_id(i) for i in ids)
    # forked from a single-threaded interpreter (this one runs threads): parent's and child's ids
    script = ("import os; from wallarm_wire import protocol as p; a = p.new_request_id(); pid = os.fork()\n"
              "if pid == 0: print(p.new_request_id(), flush=True); os._exit(0)\n"
              "os.waitpid(pid, 0); print(a)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                         cwd=Path(__file__).resolve().parents[1])
    child, parent = out.stdout.split()
    assert p.is_valid_request_id(child) and p.is_valid_request_id(parent) and child[:16] != parent[:16]


@pytest.mark.parametrize("content_type,want", [
    (p.CONTENT_TYPE_REQUEST, "request"),
    (p.CONTENT_TYPE_RESPONSE, "response"),
    ("Message/HTTP ; msgtype=\"Response\"", "response"),
    ("message/http", "request"),  # RFC 9112's default
])
def test_msgtype_of(content_type, want):
    assert p.msgtype_of(content_type) == want


@pytest.mark.parametrize("content_type,reason", [
    (None, "missing"), ("", "missing"), ("application/json", "wrong Content-Type"),
    ("message/http; msgtype=foo", "unknown msgtype"),
])
def test_msgtype_of_refuses_other_types(content_type, reason):
    with pytest.raises(p.ProtocolError, match=reason):
        p.msgtype_of(content_type)


def test_request_round_trip_rewrites_the_length_and_drops_chunking():
    msg = p.RequestMessage("POST", "/a?b=%27", [(b"Host", b"x"), (b"Transfer-Encoding", b"chunked"),
                                                (b"Content-Length", b"999")], b"body")
    back = p.decode_request(p.encode_request(msg))
    assert (back.method, back.target, back.body) == ("POST", "/a?b=%27", b"body")
    assert back.headers == [(b"Host", b"x"), (b"Content-Length", b"4")]


def test_a_head_of_any_size_and_count_is_decoded() -> None:
    # mitmproxy 12 accepts any HTTP/1 head; the node must judge what the connector forwards
    headers = [(b"X-H-%d" % i, b"v" * 40) for i in range(20_000)] + [(b"X-Big", b"b" * 200_000)]
    msg = p.decode_request(p.encode_request(p.RequestMessage("GET", "/" + "p" * 100_000, headers)))
    assert len(msg.headers) == 20_001 + 1 and msg.header("x-big") == "b" * 200_000  # + Content-Length
    assert len(msg.target) == 100_001


def test_folded_lines_are_joined_in_linear_time() -> None:
    import time

    def decode(n: int) -> float:
        data = b"GET / HTTP/1.1\r\nX-Fold: a\r\n" + b" x\r\n" * n + b"\r\n"
        started = time.perf_counter()
        msg = p.decode_request(data)
        assert msg.header("x-fold") == "a" + " x" * n
        return time.perf_counter() - started

    decode(1000)
    small, large = decode(20_000), decode(320_000)  # 16x the lines (1.6 MB): a copy per line was 256x
    assert large < 1.0 and large < 40 * small + 0.05, (small, large)


@pytest.mark.parametrize("seed", range(3))
def test_header_fast_path_reads_as_the_line_by_line_parser(seed: int) -> None:
    import random

    rnd = random.Random(seed)
    alphabet = [b"a", b"Z", b"-", b":", b" ", b"\t", b"\r", b"\n", b"(", b"\x00", b"\xff", b"x: y", b"\n "]
    for _ in range(3000):
        head = b"GET / HTTP/1.1\n" + b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(12)))
        try:
            want: object = p._parse_headers(head.split(b"\n")[1:])
        except p.ProtocolError:
            want = p.ProtocolError
        try:
            got: object = p._parse_head_lines(head)
        except p.ProtocolError:
            got = p.ProtocolError
        assert got == want, head


def test_header_lookup_on_many_lines_finds_what_a_walk_finds():
    """Above INDEXED_HEADERS lines a lookup goes through a dict built once: same answers."""
    headers = [(f"X-{i % 50}".encode(), f"v{i}".encode()) for i in range(200)] + [(b"Host", b"h"), (b"host", b"second")]
    msg = p.RequestMessage("GET", "/", headers)
    assert len(headers) > p.INDEXED_HEADERS
    for name in ("x-0", "X-49", "HOST", "missing"):
        assert msg.header(name) == p.header_value(headers, name)
    assert msg.header("missing", "d") == "d"
