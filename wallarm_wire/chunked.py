"""HTTP/1.1 chunked transfer coding (RFC 9112 7.1), read from a connection's buffer.

One reader for both sides: the connector's client reading a node's answer (`addon/http1.py`)
and the node's server reading a message (`node/http1server.py`).
"""

from __future__ import annotations

MAX_CHUNKS = 10_000  # our peers never send many chunks; a body of 1-byte chunks must stay cheap
MAX_LINE = 1024  # a chunk-size or trailer line


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
        self._in_trailers = False

    def feed(self, buf: bytearray) -> int:
        """Parse what `buf` holds; the end position once the body is complete, else -1."""
        while True:
            eol = buf.find(b"\r\n", self.pos)
            if eol < 0:
                if len(buf) - self.pos > MAX_LINE:
                    raise ChunkedError("chunk size or trailer line too long")
                return -1
            if self._in_trailers:  # trailer lines are read and ignored, up to the empty line
                if eol == self.pos:
                    return eol + 2
                self.pos = eol + 2
                continue
            size = self._chunk_size(bytes(buf[self.pos:eol]))
            if size == 0:
                self._in_trailers = True
                self.pos = eol + 2
                continue
            data_end = eol + 2 + size
            if len(buf) < data_end + 2:
                return -1
            if buf[data_end:data_end + 2] != b"\r\n":
                raise ChunkedError("chunk not followed by CRLF")
            self.body += buf[eol + 2:data_end]
            self.pos = data_end + 2

    def _chunk_size(self, line: bytes) -> int:
        text = line.split(b";", 1)[0].strip()
        try:
            size = int(text, 16)
        except ValueError:
            raise ChunkedError(f"bad chunk size {text[:20]!r}") from None
        self.chunks += 1
        if self.chunks > MAX_CHUNKS:
            raise ChunkedError(f"more than {MAX_CHUNKS} chunks")
        if len(self.body) + size > self.max_body:
            raise ChunkedError(f"message exceeds the limit of {self.max_body} bytes", too_large=True)
        return size
