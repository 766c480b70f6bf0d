"""A minimal HTTP/1.1 keep-alive client connection over an asyncio Protocol.

Why hand-written: the node call sits on every in-line request's hot path, and general-purpose
clients (httpx, aiohttp) spend most of a small request's CPU in their own machinery. The node
speaks a tiny, known subset of HTTP/1.1 (POST with Content-Length, answers with Content-Length
or chunked), so a connection that writes one request and parses one answer is all we need.
Numbers are in docs/decisions.md ("HTTP client for the node").
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from wallarm_wire.chunked import ChunkedBody, ChunkedError

MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024


class HTTPClientError(Exception):
    """Connection-level or protocol-level failure talking to the node; the message is the cause."""

    def __init__(self, cause: str, detail: str = ""):
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause  # short label used in metrics: connect, tls, reset, protocol, ...


@dataclass(slots=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]  # lower-cased names, last value wins (enough for the node)
    body: bytes


class Connection(asyncio.Protocol):
    """One keep-alive connection. Not safe for concurrent use: the pool hands it out alone.

    `request_many` pipelines several requests in one write (HTTP/1.1 pipelining; the answers come
    back in order). The out-of-band mirror uses it to send a backlog with one syscall instead of
    one per message; the protocol stays one POST per message.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[list[Answer]] | None = None
        self._answers: list[Answer] = []
        self._expect = 0
        self._on_answer: Callable[[int, Answer], None] | None = None
        self._closed = False
        self.reusable = True

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is not None and not self._waiter.done():
            try:
                self._collect(eof=False)
            except HTTPClientError as e:
                self._fail(e)
        elif len(self._buf) > MAX_HEAD:  # unsolicited data: the connection is unusable
            self.close()

    def eof_received(self) -> bool | None:
        self._settle_on_close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle_on_close(exc)

    # -- public
    @property
    def is_open(self) -> bool:
        return not self._closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self._closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    async def request(self, head: bytes, body: bytes) -> Answer:
        """Send one request (pre-built head ending with CRLFCRLF) and wait for its answer."""
        payload = head + body if len(body) < 16 * 1024 else None
        answers = await self._exchange([payload] if payload is not None else [head, body], 1)
        return answers[0]

    async def request_many(self, chunks: list[bytes], expect: int | None = None,
                           on_answer: Callable[[int, Answer], None] | None = None) -> list[Answer]:
        """Pipeline `expect` complete requests, written as `chunks` in one write (by default one
        chunk per request); all answers, in order, or an error. `on_answer(i, answer)` hears of
        each answer as it arrives, so the answers before an error are not lost with it."""
        return await self._exchange(chunks, len(chunks) if expect is None else expect, on_answer)

    # -- internals
    async def _exchange(self, chunks: list[bytes], expect: int,
                        on_answer: Callable[[int, Answer], None] | None = None) -> list[Answer]:
        if not self.is_open:
            raise HTTPClientError("reset", "connection closed")
        self._buf.clear()
        self._answers = []
        self._expect = expect
        self._on_answer = on_answer
        self._waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        if len(chunks) == 1:
            self.transport.write(chunks[0])
        else:
            self.transport.writelines(chunks)
        try:
            return await self._waiter
        finally:
            self._waiter = None
            self._on_answer = None

    def _collect(self, eof: bool) -> None:
        """Parse as many complete answers as the buffer holds; resolve when all arrived."""
        while len(self._answers) < self._expect:
            parsed = self._try_parse(eof)
            if parsed is None:
                return
            answer, consumed = parsed
            del self._buf[:consumed]
            if self._on_answer is not None:
                self._on_answer(len(self._answers), answer)
            self._answers.append(answer)
        if self._buf:
            self.reusable = False  # bytes nobody asked for: out of sync
        assert self._waiter is not None
        self._waiter.set_result(self._answers)

    def _fail(self, err: Exception) -> None:
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(err)
        self.close()

    def _settle_on_close(self, exc: Exception | None = None) -> None:
        was_closed = self._closed
        self._closed = True
        self.reusable = False
        if self._waiter is None or self._waiter.done():
            return
        try:  # the last answer may be delimited by the end of the connection
            self._collect(eof=True)
        except HTTPClientError as e:
            if isinstance(exc, OSError):  # a reset cut the answer short: not an unreadable answer
                e = HTTPClientError("reset", f"{exc or 'connection reset'} ({e})")
            self._waiter.set_exception(e)
            return
        if not self._waiter.done():
            detail = str(exc) if exc else ("closed locally" if was_closed else "closed by the node")
            self._waiter.set_exception(HTTPClientError("reset", detail))

    def _try_parse(self, eof: bool) -> tuple[Answer, int] | None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise HTTPClientError("protocol", "answer head too large")
            if eof and buf:
                raise HTTPClientError("protocol", "truncated answer head")
            return None
        lines = bytes(buf[:end]).split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") or not status_line[1].isdigit():
            raise HTTPClientError("protocol", f"bad status line {lines[0][:40]!r}")
        status = int(status_line[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise HTTPClientError("protocol", f"bad header line {line[:40]!r}")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"connection", b"").lower() == b"close" or status_line[0] == b"HTTP/1.0":
            self.reusable = False
        start = end + 4
        if status in (204, 304) or 100 <= status < 200:
            return Answer(status, headers, b""), start
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            chunked = ChunkedBody(start, MAX_BODY)
            try:
                end = chunked.feed(buf)
            except ChunkedError as e:
                raise HTTPClientError("protocol", f"bad chunked answer: {e}") from None
            if end < 0:
                if eof:
                    raise HTTPClientError("protocol", "truncated chunked answer")
                return None
            return Answer(status, headers, bytes(chunked.body)), end
        cl = headers.get(b"content-length")
        if cl is not None:
            if not cl.isdigit() or int(cl) > MAX_BODY:
                raise HTTPClientError("protocol", f"bad Content-Length {cl[:20]!r}")
            need = int(cl)
            if len(buf) - start < need:
                if eof:
                    raise HTTPClientError("protocol", "truncated answer body")
                return None
            return Answer(status, headers, bytes(buf[start:start + need])), start + need
        # No length: the body runs until the node closes the connection.
        self.reusable = False
        if len(buf) - start > MAX_BODY:
            raise HTTPClientError("protocol", "answer body too large")
        return (Answer(status, headers, bytes(buf[start:])), len(buf)) if eof else None


async def open_connection(host: str, port: int, ssl_context: ssl.SSLContext | None,
                          server_hostname: str | None) -> Connection:
    loop = asyncio.get_running_loop()
    try:
        _, proto = await loop.create_connection(
            Connection, host, port, ssl=ssl_context,
            server_hostname=server_hostname if ssl_context else None,
        )
    except ssl.SSLError as e:
        raise HTTPClientError("tls", str(e)) from None
    except OSError as e:
        raise HTTPClientError("connect", e.strerror or str(e)) from None
    return proto
