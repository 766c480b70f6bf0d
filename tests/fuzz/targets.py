"""Fuzz targets: each takes arbitrary bytes and raises AssertionError (or any unexpected
exception) when a property of the code under test fails; a clean return means the input was
handled as it should be. The same functions run under atheris (tests/fuzz/harness.py), under
hypothesis (tests/test_fuzz_properties.py) and on the kept findings (tests/fuzz_regressions/).

The bytes also carry the choices a target makes (where to split a stream, which decoder to
call) through `Choices`, so any input replays exactly, with or without atheris.

- wire:   wallarm_wire.protocol's decoders and wallarm_wire.chunked: only ProtocolError /
          ChunkedError escape; what decodes re-encodes to the same bytes; a chunked body reads
          the same whole or in pieces.
- http1:  node.http1server's connection, fed a byte stream in pieces: every complete message
          is answered in order, anything else gets one clear 4xx (or 501/505) and the connection
          closes; nothing raises, nothing is left waiting once the client goes quiet.
- engine: node.detect's parser and Engine.analyze_request on any RequestMessage: no exception,
          no error logged on the way (the engine catches and logs its parser's failures), and a
          Detection whose score and attacks agree.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from node.context import NodeContext
from node.detect.engine import Engine
from node.detect.findings import Detection
from node.detect.request import MAX_BODY, MAX_FIELDS, extract
from node.http1server import (KEEPALIVE_TIMEOUT_S, LINGER_S, MESSAGE_TIMEOUT_S, HTTPServer, Incoming, Outgoing,
                              ServerConnection)
from node.metrics import NodeMetrics
from node.pairing import Pairing
from node.policy import Policy
from node.server import Endpoint
from node.settings import NodeSettings
from node.store.sqlite import SQLiteStore
from tests.support.inprocess_http1 import RecordingTransport
from wallarm_wire.chunked import ChunkedBody, ChunkedError
from wallarm_wire.protocol import (CONTENT_TYPE_REQUEST, CONTENT_TYPE_RESPONSE, DELIVERY_ASYNC, DELIVERY_SYNC,
                                   MSGTYPE_REQUEST, MSGTYPE_RESPONSE, AttackInfo, ProtocolError, RequestMessage,
                                   Verdict, decode_request, decode_response, encode_request, encode_response,
                                   msgtype_of)


class Choices:
    """Decisions read off the front of an input; the rest is the payload. A seeded RNG for
    split points: libFuzzer mutates the seed byte like any other and finds other splits."""

    def __init__(self, data: bytes, header: int):
        head = data[:header].ljust(header, b"\0")
        self.flags = head[0]
        self.rng = random.Random(head)
        self.payload = data[header:]

    def flag(self, bit: int) -> bool:
        return bool(self.flags >> bit & 1)

    def cuts(self, length: int, most: int) -> list[int]:
        """Sorted distinct split points inside 0..length."""
        if length < 2 or most <= 0:
            return []
        return sorted(self.rng.sample(range(1, length), min(most, length - 1)))


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


# ---------------------------------------------------------------------------- wire


def check_fixed_point(data: bytes, decode: Callable, encode: Callable, start: Callable) -> None:
    """`decode` raises only ProtocolError; encoding what it decoded is a fixed point of
    encode(decode(...)), with the same start line fields (`start`) and body."""
    try:
        msg = decode(data)
    except ProtocolError:
        return
    wire = encode(msg)
    again = decode(wire)  # our own encoding must decode
    assert encode(again) == wire, (data, wire)
    assert (start(again), again.body, again.http_version) == (start(msg), msg.body, msg.http_version)


def check_request_bytes(data: bytes) -> None:
    check_fixed_point(data, decode_request, encode_request, lambda m: (m.method, m.target))


def check_response_bytes(data: bytes) -> None:
    check_fixed_point(data, decode_response, encode_response, lambda m: m.status)


def check_msgtype(text: str) -> None:
    try:
        assert msgtype_of(text) in (MSGTYPE_REQUEST, MSGTYPE_RESPONSE)
    except ProtocolError:
        pass


def check_verdict_bytes(data: bytes) -> None:
    """Verdict.from_json raises only ProtocolError (it reads whatever a node answers)."""
    try:
        verdict = Verdict.from_json(data)
    except ProtocolError:
        return
    assert verdict.action in ("pass", "block")
    assert all(isinstance(a, AttackInfo) and isinstance(a.score, int) for a in verdict.attacks)
    assert Verdict.from_json(verdict.to_json()) == verdict


def read_chunked(buf: bytes, cuts: list[int], max_body: int) -> tuple:
    """(end, body) of the chunked body at the start of `buf`, fed in pieces; ("error", too_large)
    when refused; ("incomplete",) when the pieces end first."""
    reader = ChunkedBody(0, max_body)
    grown = bytearray()
    try:
        for piece in pieces(buf, cuts):
            grown += piece
            end = reader.feed(grown)
            if end >= 0:
                return end, bytes(reader.body)
    except ChunkedError as e:
        return "error", e.too_large
    return ("incomplete",)


def check_chunked_bytes(data: bytes, choices: Choices) -> None:
    """Any bytes: ChunkedError or a body; the same whole as in pieces; never past the limit."""
    max_body = 64 if choices.flag(0) else 1 << 20
    whole = read_chunked(data, [], max_body)
    split = read_chunked(data, choices.cuts(len(data), 8), max_body)
    assert whole == split, (data, whole, split)
    if whole[0] not in ("error", "incomplete"):
        end, body = whole
        assert 0 < end <= len(data) and len(body) <= max_body


def encode_chunked(body: bytes, sizes: list[int], extensions: bool, trailers: list[bytes]) -> bytes:
    """`body` in chunks of `sizes` (the rest in one), then the last chunk and trailer lines."""
    out = bytearray()
    at = 0
    for size in [*sizes, len(body)]:
        part = body[at:at + size]
        if not part:
            continue
        at += len(part)
        out += b"%x%s\r\n%s\r\n" % (len(part), b";ext=1" if extensions else b"", part)
    out += b"0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"
    return bytes(out)


def check_chunked_round_trip(body: bytes, choices: Choices) -> None:
    sizes = [1 + choices.rng.randrange(max(len(body), 1)) for _ in range(choices.rng.randrange(6))]
    trailers = [b"X-T%d: v" % i for i in range(choices.rng.randrange(3))]
    wire = encode_chunked(body, sizes, choices.flag(1), trailers)
    assert read_chunked(wire + b"NEXT", choices.cuts(len(wire), 8), len(body)) == (len(wire), body)


def wire(data: bytes) -> None:
    choices = Choices(data, 2)
    payload = choices.payload
    which = choices.flags % 6
    if which == 0:
        check_request_bytes(payload)
    elif which == 1:
        check_response_bytes(payload)
    elif which == 2:
        check_msgtype(payload.decode("utf-8", "surrogateescape"))
    elif which == 3:
        check_verdict_bytes(payload)
    elif which == 4:
        check_chunked_bytes(payload, choices)
    else:
        check_chunked_round_trip(payload, choices)


# ---------------------------------------------------------------------------- http1

REFUSALS = {400, 408, 413, 431, 501, 505}
_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    """One private loop for the handler's later answers (futures) of every run."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP


def parse_answers(out: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """The server's answers, read strictly: (status, headers, body) each; 100 Continue included."""
    answers = []
    at = 0
    while at < len(out):
        end = out.index(b"\r\n\r\n", at)
        lines = out[at:end].split(b"\r\n")
        version, status, _ = lines[0].split(b" ", 2)
        assert version == b"HTTP/1.1", lines[0]
        headers = dict(line.split(b": ", 1) for line in lines[1:])
        at = end + 4
        if status == b"100":
            answers.append((100, headers, b""))
            continue
        length = int(headers[b"Content-Length"])
        answers.append((int(status), headers, out[at:at + length]))
        at += length
    assert at == len(out), "answers end mid-message"
    return answers


def serve_stream(stream: bytes, cuts: list[int], later: bool, pause: bool, max_body: int) -> tuple:
    """Feed `stream` in pieces to one connection, let the client go quiet, and return
    (answers as (status, Connection header, body), messages the handler saw, closed)."""
    loop = _loop()
    seen: list[Incoming] = []
    waiting: list[tuple[asyncio.Future[Outgoing], int]] = []  # later answers and their message's number

    def handler(incoming: Incoming) -> Outgoing | asyncio.Future[Outgoing]:
        seen.append(incoming)
        if later and len(seen) % 2 == 0:  # answered later, as the endpoint does for large messages
            fut = loop.create_future()
            waiting.append((fut, len(seen)))
            return fut
        return Outgoing(200, b'{"n":%d}' % len(seen))

    def settle() -> None:
        while waiting:
            fut, number = waiting.pop(0)
            fut.set_result(Outgoing(200, b'{"n":%d}' % number))
            loop.run_until_complete(asyncio.sleep(0))  # runs the done callback: the answer, the next messages

    server = HTTPServer(handler, max_body=max_body)
    conn = ServerConnection(server)
    transport = RecordingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    for piece in pieces(stream, cuts):
        if transport.closing:
            break  # a closed connection reads nothing more
        conn.data_received(piece)
        settle()
        if pause and not transport.closing:  # the client stops reading its answers for a moment
            conn.pause_writing()
            conn.data_received(b"")
            conn.resume_writing()
            settle()
    # the client goes quiet: every timeout passes
    later_on = time.monotonic() + MESSAGE_TIMEOUT_S + KEEPALIVE_TIMEOUT_S + LINGER_S + 1
    for _ in range(2):
        conn.check_timeouts(later_on, draining=False)
        later_on += LINGER_S + 1
    conn.connection_lost(None)
    assert not waiting
    answers = [(status, headers.get(b"Connection"), body) for status, headers, body in parse_answers(bytes(transport.out))]
    return answers, seen, transport.closing


def check_stream(stream: bytes, cuts: list[int], later: bool, pause: bool, max_body: int) -> None:
    answers, seen, closed = serve_stream(stream, cuts, later, pause, max_body)
    final = [a for a in answers if a[0] != 100]
    handled = [a for a in final if a[0] == 200]
    # every message the handler took is answered, in order; a refusal can only come last
    assert [a[2] for a in handled] == [b'{"n":%d}' % (i + 1) for i in range(len(seen))], final
    assert len(handled) == len(seen)
    refused = final[len(handled):]
    assert len(refused) <= 1 and final[:len(handled)] == handled, final
    if refused:
        status, connection, body = refused[0]
        assert status in REFUSALS and connection == b"close" and body.startswith(b'{"error": '), \
            refused
    # once the client is quiet, the connection is closed: nothing waits forever
    assert closed, (stream, final)
    # the same bytes in one piece get the same answers and the handler the same messages
    if cuts:
        answers1, seen1, _ = serve_stream(stream, [], later, pause, max_body)
        assert [a for a in answers1 if a[0] != 100] == final, (stream, cuts)
        assert seen1 == seen


def http1(data: bytes) -> None:
    choices = Choices(data, 2)
    stream = choices.payload
    cuts = choices.cuts(len(stream), choices.flags & 7)
    check_stream(stream, cuts, later=choices.flag(3), pause=choices.flag(4),
                 max_body=64 if choices.flag(5) else 1 << 16)


# ---------------------------------------------------------------------------- engine


class _ErrorRecords(logging.Handler):
    """Errors logged under node: the engine logs (and survives) a parser or detector exception,
    the endpoint an analysis that failed; for the fuzzer a logged error is a failure like a raised one."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_ENGINE: Engine | None = None
_ERRORS = _ErrorRecords()


def engine_instance() -> Engine:
    """One engine per process (building one compiles every signature)."""
    global _ENGINE
    if _ENGINE is None:
        logging.getLogger("node").addHandler(_ERRORS)
        _ENGINE = Engine()
    return _ENGINE


def message_of(data: bytes) -> RequestMessage:
    """The message the node would judge for `data`; bytes it would refuse are still made into
    a message (first line the target, `name: value` lines, a blank line, the body) so every
    input reaches the engine: it must take any RequestMessage, not only a well-formed one."""
    try:
        return decode_request(data)
    except ProtocolError:
        pass
    head, _, body = data.partition(b"\n\n")
    first, *lines = head.split(b"\n")
    headers = [(name, value) for name, _, value in (line.partition(b":") for line in lines)]
    return RequestMessage("POST", first.decode("utf-8", "surrogateescape"), headers, body)


def check_message(msg: RequestMessage) -> Detection:
    engine = engine_instance()
    _ERRORS.records.clear()
    sink = extract(msg)  # the parser alone, as tools and tests call it
    assert len(sink.fields) <= MAX_FIELDS
    # values are judged whole now (no per-value cap): a value is text, never longer than its
    # message and its decompressed body (at most MAX_BODY) could make it
    size = len(msg.target) + len(msg.body) + sum(len(k) + len(v) + 2 for k, v in msg.headers) + MAX_BODY
    assert all(type(v) is str and len(v) <= size for _, _, v in sink.fields)
    det = engine.analyze_request(msg)
    assert not _ERRORS.records, [r.getMessage() + "\n" + str(r.exc_info) for r in _ERRORS.records]
    assert isinstance(det, Detection) and det.score >= 0
    # an attack is reported exactly when the score reaches the threshold, with what was found
    assert det.is_attack == bool(det.attacks), det
    assert all(isinstance(a, AttackInfo) and a.type and a.rule_id for a in det.attacks)
    return det


def engine(data: bytes) -> None:
    check_message(message_of(data))


# ---------------------------------------------------------------------------- endpoint

ENDPOINT_REFUSALS = {400, 401, 405, 413, 415}
_REQUEST_IDS = ["%032x" % i for i in range(1, 5)]  # few, so responses meet their requests (pairing)
_HOSTS = ["shop.example", "off.test", "mon.test", "safe.test"]  # the modes, through overrides
_ENDPOINT: Endpoint | None = None


def endpoint_instance() -> Endpoint:
    """The node's real endpoint (policy, pairing, a SQLite store in a temporary directory) on
    the process's engine, without a judging lane: every answer comes back at once."""
    global _ENDPOINT
    if _ENDPOINT is None:
        loop = _loop()
        shm = Path("/dev/shm")
        db = Path(tempfile.mkdtemp(prefix="fuzz-node-", dir=shm if shm.is_dir() else None)) / "node.db"
        store = SQLiteStore(db, flush_interval=0)  # each input's records are written before the next input
        loop.run_until_complete(store.open())
        settings = NodeSettings(db=str(db), mode="block", overrides=[
            {"host": "off.test", "mode": "off"}, {"host": "mon.test", "mode": "monitoring"},
            {"host": "safe.test", "mode": "safe_blocking"}])
        policy = Policy(store, settings.mode_settings())
        loop.run_until_complete(policy.load(settings.mode_settings(), forced=False))
        ctx = NodeContext(settings=settings, store=store, policy=policy, engine=engine_instance(),
                          metrics=NodeMetrics())
        _ENDPOINT = Endpoint(ctx, Pairing(settings.pairing.ttl_seconds, settings.pairing.max_entries))
    return _ENDPOINT


def check_posted(incoming: Incoming) -> Outgoing:
    """The endpoint answers a verdict (200 pass / 403 block, its JSON agreeing) or a clear 4xx."""
    _ERRORS.records.clear()
    out = endpoint_instance().respond(incoming)
    assert isinstance(out, Outgoing), out
    assert not _ERRORS.records, [r.getMessage() + "\n" + str(r.exc_info) for r in _ERRORS.records]
    if out.status in (200, 403):
        # what the verdict recorded is in the store now, or its write failed (and logged): this input's
        _loop().run_until_complete(endpoint_instance().store.flush())
        assert not _ERRORS.records, [r.getMessage() for r in _ERRORS.records]
        verdict = Verdict.from_json(out.body)
        assert verdict.status == out.status and verdict.request_id == incoming.headers["x-wallarm-request-id"]
    else:
        assert out.status in ENDPOINT_REFUSALS and set(json.loads(out.body)) == {"error"}, out
    return out


def endpoint(data: bytes) -> None:
    """A POST to the node's endpoint carrying `data` as the embedded message; the first two
    bytes choose its headers (msgtype, delivery, request id, forwarded host and client)."""
    choices = Choices(data, 2)
    headers = {
        "content-type": CONTENT_TYPE_RESPONSE if choices.flag(0) else CONTENT_TYPE_REQUEST,
        "x-wallarm-delivery": DELIVERY_ASYNC if choices.flag(1) else DELIVERY_SYNC,
        "x-wallarm-request-id": "not-an-id" if choices.flags & 0b11100 == 0b11100 else choices.rng.choice(_REQUEST_IDS),
    }
    if choices.flag(5):
        headers["x-wallarm-forwarded-host"] = choices.rng.choice(_HOSTS)
    if choices.flag(6):
        headers["x-wallarm-forwarded-for"] = choices.rng.choice(["203.0.113.9", "2001:db8::1", "999.1.1.1", ""])
    check_posted(Incoming("POST", "/", "HTTP/1.1", headers, choices.payload, "127.0.0.1"))


TARGETS: dict[str, Callable[[bytes], None]] = {"wire": wire, "http1": http1, "engine": engine, "endpoint": endpoint}
