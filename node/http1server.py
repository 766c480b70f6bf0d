"""A small HTTP/1.1 server over an asyncio Protocol, for the connector endpoint.

Why hand-written: every in-line request waits for this round trip, and at c=1 the node's CPU
per message is paid twice (a cold core after idle runs it slower still). aiohttp's server spent
about half of the node's time per verdict in its own machinery (a task per request, request
and response objects, routing). The endpoint needs a small, strict subset of HTTP/1.1: POST
with a Content-Length or chunked body, keep-alive, pipelining, `Expect: 100-continue`, TLS (the
stdlib's, through `loop.create_server`). The handler is synchronous and runs as soon as a
message is complete: no task, no future. Numbers are in docs/decisions.md ("Node server library").

Limits keep a hostile client cheap: head size and body size (each at most the message limit,
`max_body`: the head carries the client's Host, which mitmproxy takes at any length; 413/431,
then the rest of the body is read and dropped for a moment so the client sees the answer),
a deadline for a started message (408) and an idle timeout for keep-alive connections.
Parsing is strict where RFC 9112 and h11 are (tests/test_node_http1_differential.py): a
request target of visible characters, field values without control characters, chunk sizes of
hex digits only, bounded trailers (wallarm_wire/chunked.py).

A handler may answer later: it returns an asyncio future instead of an Outgoing (the endpoint
does so for large messages, judged in a worker thread). The connection then holds its further
pipelined messages until that answer is written, so answers stay in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from wallarm_wire.chunked import ChunkedBody, ChunkedError
from wallarm_wire.protocol import is_token

log = logging.getLogger(__name__)

MAX_HEADERS = 100  # lines in the connector's POST head (it sends about eight)
MESSAGE_TIMEOUT_S = 30.0  # a started message must be complete by then (slow senders)
KEEPALIVE_TIMEOUT_S = 75.0  # an idle keep-alive connection is closed after this
LINGER_S = 2.0  # after refusing a body: keep reading (and dropping) it so the client sees the answer
SWEEP_INTERVAL_S = 1.0
DRAIN_SETTLE_S = 0.3  # graceful stop: quiet time that proves no message is still arriving

@dataclass(slots=True)
class Incoming:
    method: str
    target: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its first value
    body: bytes
    peer: str  # the client's IP address


@dataclass(slots=True)
class Outgoing:
    status: int
    body: bytes
    content_type: str = "application/json"
    close: bool = False


Handler = Callable[[Incoming], "Outgoing | asyncio.Future[Outgoing]"]
# RFC 9112 3.2 / 5: a target of visible ASCII; a field value of visible characters, obs-text,
# spaces and tabs; NUL, CR and LF are refused (RFC 9110 5.5; other controls pass, as in h11)
_TARGET_RE = re.compile(rb"[\x21-\x7e]+")
_FIELD_VALUE_BAD_RE = re.compile(rb"[\x00\r\n]")


class BadRequest(Exception):
    """The bytes are not an HTTP/1.1 request we serve; answered, then the connection closes."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class _DateCache:
    """RFC 9110 wants a Date on answers; formatting it once per second is enough."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


def render(out: Outgoing, keep_alive: bool, date: bytes) -> bytes:
    head = (b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (out.status, _REASONS.get(out.status, b"Status"), date, out.content_type.encode(), len(out.body),
               b"" if keep_alive else b"Connection: close\r\n"))
    return head + out.body


def error_body(reason: str) -> bytes:
    return json.dumps({"error": reason}).encode()


@dataclass(slots=True)
class _Head:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    length: int  # -1: chunked
    keep_alive: bool
    expect_continue: bool


def parse_head(raw: bytes) -> _Head:
    """Request line and headers (without the final CRLFCRLF). Raises BadRequest."""
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TARGET_RE.fullmatch(parts[1]) or not is_token(parts[0]):
        raise BadRequest(400, f"malformed request line {lines[0][:60]!r}")
    version = parts[2]
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version.startswith(b"HTTP/") and len(version) == 8:
            raise BadRequest(505, f"HTTP version {version.decode('latin-1')} not supported")
        raise BadRequest(400, f"malformed request line {lines[0][:60]!r}")
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, f"too many header lines (more than {MAX_HEADERS})")
    headers: dict[str, str] = {}
    lengths: set[bytes] = set()
    chunked = False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not is_token(name) or _FIELD_VALUE_BAD_RE.search(value):
            raise BadRequest(400, f"malformed header line {line[:40]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip(b" \t")
        if key == "content-length":
            lengths.add(text)
        elif key == "transfer-encoding":
            if text.lower() != b"chunked" or chunked:
                raise BadRequest(501, f"Transfer-Encoding {text[:30]!r} not supported (only chunked)")
            chunked = True
        headers.setdefault(key, text.decode("utf-8", "surrogateescape"))
    length = _body_length(lengths, chunked)
    connection = headers.get("connection", "").lower()
    keep_alive = ("close" not in connection) if version == b"HTTP/1.1" else ("keep-alive" in connection)
    expect = headers.get("expect", "").lower() == "100-continue" and version == b"HTTP/1.1"
    return _Head(parts[0].decode("latin-1"), parts[1].decode("utf-8", "surrogateescape"),
                 version.decode("latin-1"), headers, length, keep_alive, expect)


def _body_length(lengths: set[bytes], chunked: bool) -> int:
    # Both framings at once, or disagreeing lengths, is how requests get smuggled: refuse.
    if chunked and lengths:
        raise BadRequest(400, "both Content-Length and Transfer-Encoding: chunked")
    if chunked:
        return -1
    if not lengths:
        return 0
    if len(lengths) > 1:
        raise BadRequest(400, "conflicting Content-Length headers")
    value = next(iter(lengths))
    if not value.isdigit() or len(value) > 15:
        raise BadRequest(400, f"bad Content-Length {value[:20]!r}")
    return int(value)


class ServerConnection(asyncio.Protocol):
    def __init__(self, server: HTTPServer):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._buf = bytearray()
        self._head: _Head | None = None  # parsed head of the message being received
        self._body_at = 0  # where that message's body starts in the buffer
        self._chunked: ChunkedBody | None = None
        self._head_scanned = 0  # the buffer before this holds no end of head (no rescans)
        self._answering: asyncio.Future[Outgoing] | None = None  # a handler's later answer
        self._continue_sent = False
        self._paused = False  # the client does not read its answers: stop reading its requests
        self.lingering = False  # a refused message's rest is being read and dropped
        self.started = 0.0  # monotonic time the current message's first byte arrived
        self.last_active = time.monotonic()

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.lingering:
            return
        if not self._buf:
            self.started = self.last_active
        self._buf += data
        if self._answering is not None:
            # the current message is being judged: hold the next ones, but not without bound
            if len(self._buf) > self.server.max_body and self.transport is not None:
                self.transport.pause_reading()
            return
        if not self._paused:
            self._serve()

    def eof_received(self) -> bool | None:
        return False  # the client is done sending; what it sent was answered, close

    def pause_writing(self) -> None:
        self._paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is not None and not self.transport.is_closing() and self._answering is None:
            self.transport.resume_reading()
            self._serve()

    # -- seen by the server
    @property
    def receiving(self) -> bool:
        """A message has started arriving and is not answered yet."""
        return (bool(self._buf) or self._answering is not None) and not self.lingering

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def check_timeouts(self, now: float, draining: bool) -> None:
        if self.lingering:
            if now - self.started >= LINGER_S:
                self.close()
        elif self._answering is not None:
            pass  # judged now; bounded by the endpoint, not by the client
        elif self.receiving:
            if now - self.started >= MESSAGE_TIMEOUT_S:
                self._refuse(BadRequest(408, f"message not complete within {MESSAGE_TIMEOUT_S:.0f}s"))
        elif draining or now - self.last_active >= KEEPALIVE_TIMEOUT_S:
            self.close()

    # -- serving
    def _serve(self) -> None:
        """Answer every complete message in the buffer, in order (pipelining)."""
        while (self._buf and self.transport is not None and not self._paused and not self.lingering
               and self._answering is None):
            try:
                message = self._next_message()
            except BadRequest as e:
                self._refuse(e)
                return
            if message is None:
                return
            incoming, keep_alive = message
            out = self.server.call_handler(incoming)
            if not isinstance(out, Outgoing):
                self._answering = out
                out.add_done_callback(lambda fut, keep=keep_alive: self._answered(fut, keep))
                return
            if not self._send(out, keep_alive):
                return

    def _send(self, out: Outgoing, keep_alive: bool) -> bool:
        """Write an answer; False when the connection closes after it."""
        assert self.transport is not None
        keep_alive = keep_alive and not out.close and not self.server.draining
        self.transport.write(render(out, keep_alive, self.server.dates.get()))
        if not keep_alive:
            self.transport.close()
            # what the client pipelined after this message is never served: drop it, or the
            # connection counts as receiving until its answer is flushed and the sweeper would
            # write a 408 after the close (found by tests/fuzz, http1)
            self._buf.clear()
            return False
        self.started = self.last_active = time.monotonic()
        return True

    def _answered(self, fut: asyncio.Future[Outgoing], keep_alive: bool) -> None:
        self._answering = None
        if self.transport is None or self.transport.is_closing():
            return
        out = self.server.answer_of(fut)
        if self._send(out, keep_alive):
            if not self._buf:
                self.started = self.last_active
            if not self._paused:
                self.transport.resume_reading()
                self._serve()

    def _next_message(self) -> tuple[Incoming, bool] | None:
        buf = self._buf
        if self._head is None:
            self._head = self._read_head()
            if self._head is None:
                return None
        head = self._head
        if head.length >= 0:
            end = self._body_at + head.length
            if len(buf) < end:
                self._send_continue(head)
                return None
            body = bytes(buf[self._body_at:end])
        else:
            if self._chunked is None:
                self._chunked = ChunkedBody(self._body_at, self.server.max_body)
            try:
                end = self._chunked.feed(buf)
            except ChunkedError as e:
                raise BadRequest(413 if e.too_large else 400, str(e)) from None
            if end < 0:
                self._send_continue(head)
                return None
            body = bytes(self._chunked.body)
            self._chunked = None
        del buf[:end]
        self._head = None
        return Incoming(head.method, head.target, head.version, head.headers, body, self.peer), head.keep_alive

    def _read_head(self) -> _Head | None:
        buf = self._buf
        limit = self.server.max_body
        end = buf.find(b"\r\n\r\n", self._head_scanned)
        if end < 0:
            # the end of the head may already be arriving: up to 3 bytes of it can be in the buffer,
            # so a head read in pieces is refused exactly when the whole one is (tests/fuzz)
            if len(buf) - 3 > limit:
                raise BadRequest(431, f"request head larger than {limit} bytes")
            self._head_scanned = max(len(buf) - 3, 0)  # the next search starts here, not at 0
            return None
        self._head_scanned = 0
        if end > limit:
            raise BadRequest(431, f"request head larger than {limit} bytes")
        head = parse_head(bytes(buf[:end]))
        if head.length > self.server.max_body:
            raise BadRequest(413, f"message of {head.length} bytes exceeds the limit of {self.server.max_body}")
        self._body_at = end + 4
        self._continue_sent = False
        return head

    def _send_continue(self, head: _Head) -> None:
        if head.expect_continue and not self._continue_sent and self.transport is not None:
            self._continue_sent = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _refuse(self, e: BadRequest) -> None:
        """Answer a message we will not serve and end the connection (its framing is lost)."""
        self.server.on_bad_request(e)
        if self.transport is None:
            return
        self.transport.write(render(Outgoing(e.status, error_body(e.reason)), False, self.server.dates.get()))
        self._buf.clear()
        self._head = self._chunked = None
        self._head_scanned = 0
        # Keep reading for a moment: closing with unread bytes resets the connection, and a
        # client still sending its body would never see the answer.
        self.lingering = True
        self.started = time.monotonic()
        if self.transport.can_write_eof():
            self.transport.write_eof()


class HTTPServer:
    """Listens, hands complete messages to `handler`, and knows how to stop gracefully."""

    def __init__(self, handler: Handler, max_body: int,
                 on_bad_request: Callable[[BadRequest], None] = lambda e: None):
        self.handler = handler
        self.max_body = max_body
        self.on_bad_request = on_bad_request
        self.connections: set[ServerConnection] = set()
        self.draining = False
        self.dates = _DateCache()
        self._server: asyncio.base_events.Server | None = None
        self.address: tuple[str, int] = ("", 0)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, ssl_context=None, backlog: int = 1024) -> None:  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ServerConnection(self), host, port, ssl=ssl_context,
                                                backlog=backlog)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])  # the bound one: port 0 picks a free port
        self._sweeper = loop.create_task(self._sweep_forever())


    def call_handler(self, incoming: Incoming) -> Outgoing | asyncio.Future[Outgoing]:
        try:
            return self.handler(incoming)
        except Exception:  # noqa: BLE001 - the handler has its own; this is the last line of defence
            log.exception("handler failed for %s %s", incoming.method, incoming.target[:100])
            return Outgoing(500, error_body("internal error; see the node log"), close=True)

    @staticmethod
    def answer_of(fut: asyncio.Future[Outgoing]) -> Outgoing:
        """A later answer's Outgoing, or a 500 when computing it failed."""
        if not fut.cancelled() and fut.exception() is None:
            return fut.result()
        if not fut.cancelled():
            log.error("handler failed", exc_info=fut.exception())
        return Outgoing(500, error_body("internal error; see the node log"), close=True)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        """Close connections that are idle too long, too slow sending a message, or done lingering."""
        for conn in list(self.connections):
            conn.check_timeouts(now, self.draining)

    @property
    def receiving(self) -> int:
        return sum(1 for c in self.connections if c.receiving)

    async def drain(self, timeout: float) -> int:
        """Stop listening, let started messages finish (at most `timeout`); returns how many did not."""
        self.draining = True  # answers now carry Connection: close
        if self._server is not None:
            self._server.close()
        try:
            await asyncio.wait_for(self._settle(), timeout)
        except TimeoutError:
            pass
        return self.receiving

    async def _settle(self) -> None:
        # Quiet twice, DRAIN_SETTLE_S apart: bytes a client sent just before the signal may still
        # sit unread in a socket, and their message only counts once it is read.
        while True:
            await asyncio.sleep(DRAIN_SETTLE_S)
            if self.receiving == 0:
                await asyncio.sleep(DRAIN_SETTLE_S)
                if self.receiving == 0:
                    return

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
