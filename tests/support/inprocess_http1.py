"""Drive the node's HTTP/1.1 server in-process: a transport that only records what is written.

The differential test against h11 and the fuzz targets feed a ServerConnection bytes directly
(byte for byte, no sockets), so a generated input runs in microseconds and a failure replays
exactly.
"""

from __future__ import annotations


class RecordingTransport:
    """The asyncio.Transport calls ServerConnection makes; writes are collected in `out`."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closing = False
        self.reading = True

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 1) if name == "peername" else None

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.out += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def feed(raw: bytes, max_body: int = 1 << 20) -> tuple[list, RecordingTransport]:
    """`raw` fed to a fresh ServerConnection at once: the requests its handler received (each
    answered 200) and the transport (what the server wrote, e.g. a refusal)."""
    from node.http1server import HTTPServer, Incoming, Outgoing, ServerConnection

    seen: list[Incoming] = []

    def handler(incoming: Incoming) -> Outgoing:
        seen.append(incoming)
        return Outgoing(200, b"{}")

    conn = ServerConnection(HTTPServer(handler, max_body=max_body))
    transport = RecordingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(raw)
    return seen, transport
