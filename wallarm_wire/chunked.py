"""HTTP/1.1 chunked transfer coding (RFC 9112 7.1), read from a connection's buffer.

One reader for both sides: the connector's client reading a node's answer (`addon/http1.py`)
and the node's server reading a message (`node/http1server.py`).

Strict where `int(x, 16)` is lenient: a chunk size is 1 to 20 hex digits and nothing else
(no `0x`, sign, `_` or spaces before it; h11 allows the same 20), an extension starts with
`;` and holds no control characters; trailer lines are field lines (`name: value`) and are
bounded in number and bytes. Anything else is a ChunkedError (the server answers 400).
"""

from __future__ import annotations

import re

MAX_CHUNKS = 10_000  # our peers never send many chunks; a body of 1-byte chunks must stay cheap
MAX_LINE = 1024  # a chunk-size or trailer line
MAX_TRAILERS = 32  # trailer lines (read and dropped)
MAX_TRAILER_BYTES = 8 * 1024

# size, optional extensions, optional trailing whitespace (h11 allows it: servers send it)
_CHUNK_LINE_RE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\x00\r\n]*)?[ \t]*")
_TRAILER_LINE_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00\r\n]*")


class ChunkedError(ValueError):
    """Not a chunked body we accept; `too_large` when only its size is the problem."""

    def __init__(self, reason: str, too_large: bool = False):
        super().__init__(reason)
        self.too_large = too_large


class ChunkedBody:
    """Incremental reader: each `feed` continues where the last one stopped."""

    def __init__(self, start: int, max_body: int):
        self.pos = start  # next unread byte in the buffer
        self.body = bytearray()
        self.chunks = 0
        self.max_body = max_body
        self._pending = -1  # size of the chunk whose data is still arriving (its line is read)
        self._in_trailers = False
        self._trailers = 0
        self._trailer_bytes = 0

    def feed(self, buf: bytearray) -> int:
        """Parse what `buf` holds; the end position once the body is complete, else -1."""
        while True:
            if self._pending >= 0:  # the data of a chunk whose size line was read
                data_end = self.pos + self._pending
                if len(buf) < data_end + 2:
                    return -1
                if buf[data_end:data_end + 2] != b"\r\n":
                    raise ChunkedError("chunk not followed by CRLF")
                self.body += buf[self.pos:data_end]
                self.pos = data_end + 2
                self._pending = -1
            eol = buf.find(b"\r\n", self.pos)
            if eol < 0:
                if len(buf) - self.pos > MAX_LINE:
                    raise ChunkedError("chunk size or trailer line too long")
                return -1
            if eol - self.pos > MAX_LINE:
                raise ChunkedError("chunk size or trailer line too long")
            line = bytes(buf[self.pos:eol])
            self.pos = eol + 2
            if self._in_trailers:  # trailer lines are checked and dropped, up to the empty line
                if not line:
                    return self.pos
                self._trailer(line)
                continue
            size = self._chunk_size(line)
            if size == 0:
                self._in_trailers = True
            else:
                self._pending = size

    def _chunk_size(self, line: bytes) -> int:
        m = _CHUNK_LINE_RE.fullmatch(line)
        if m is None:
            raise ChunkedError(f"bad chunk size line {line[:20]!r}: want hex digits")
        size = int(m.group(1), 16)
        self.chunks += 1
        if self.chunks > MAX_CHUNKS:
            raise ChunkedError(f"more than {MAX_CHUNKS} chunks")
        if len(self.body) + size > self.max_body:
            raise ChunkedError(f"message exceeds the limit of {self.max_body} bytes", too_large=True)
        return size

    def _trailer(self, line: bytes) -> None:
        self._trailers += 1
        self._trailer_bytes += len(line) + 2
        if self._trailers > MAX_TRAILERS or self._trailer_bytes > MAX_TRAILER_BYTES:
            raise ChunkedError(f"trailer section over {MAX_TRAILERS} lines or {MAX_TRAILER_BYTES} bytes")
        if _TRAILER_LINE_RE.fullmatch(line) is None:
            raise ChunkedError(f"malformed trailer line {line[:40]!r}")
