"""Undo a body's content codings (Content-Encoding, and Transfer-Encoding codings other than
chunked) the way backends do, with a bound on the output.

Codings are listed in the order they were applied (RFC 9110 §8.4), so they are undone from
the last to the first. gzip bodies may hold several members (RFC 1952 §2.2; zlib, Node and
Python's gzip module read them all); deflate is zlib-wrapped by the RFC and raw in practice,
so both are tried; `br` and `zstd` come from the `brotli` and `zstandard` packages.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import brotli
import zstandard

# codings that change nothing (RFC 9110 §8.4.1: identity; chunked is framing, not a coding)
_NO_OP = frozenset({"", "identity", "chunked"})
_GZIP_MAGIC = b"\x1f\x8b"
MAX_GZIP_MEMBERS = 1000  # members of one gzip body undone; past them the output counts as over the limit


@dataclass(slots=True)
class Decoded:
    body: bytes
    over_limit: bool = False  # the output reached the bound: what follows was not decoded
    failed: str = ""  # the first coding that could not be undone ("" when all were)


class _OverLimit(Exception):
    pass


def split_codings(header: str | None) -> list[str]:
    """`gzip, br` -> ["gzip", "br"]; no-op codings dropped, names lower-cased."""
    if not header:
        return []
    return [c for c in (p.strip(" \t").lower() for p in header.split(",")) if c not in _NO_OP]


def decode_body(body: bytes, header: str | None, limit: int) -> Decoded:
    """Undo every coding `header` lists; stops at the first one that fails (its input is
    then the body a backend that ignores the header would read) or at `limit` bytes."""
    out = Decoded(body)
    for coding in reversed(split_codings(header)):
        try:
            out.body = _undo(coding, out.body, limit)
        except _OverLimit as over:
            out.body = over.args[0]
            out.over_limit = True
            return out
        except (zlib.error, brotli.error, zstandard.ZstdError, EOFError, ValueError, LookupError):
            out.failed = coding
            return out
    return out


def _undo(coding: str, data: bytes, limit: int) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return _gunzip(data, limit)
    if coding == "deflate":
        return _inflate(data, limit)
    if coding == "br":
        return _unbrotli(data, limit)
    if coding == "zstd":
        return _unzstd(data, limit)
    raise LookupError(coding)


def _bounded(chunks: list[bytes], size: int, limit: int) -> None:
    if size > limit:
        raise _OverLimit(b"".join(chunks)[:limit])


def _gunzip(data: bytes, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if len(chunks) >= MAX_GZIP_MEMBERS:  # 20,000 tiny members cost 50 ms: partial instead
            raise _OverLimit(b"".join(chunks))
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        chunk = d.decompress(data, limit + 1 - size)
        chunks.append(chunk)
        size += len(chunk)
        _bounded(chunks, size, limit)
        if d.unconsumed_tail:  # output bound hit inside this member
            raise _OverLimit(b"".join(chunks)[:limit])
        if not d.eof:
            if not size:
                raise zlib.error("truncated gzip data")
            return b"".join(chunks)  # a truncated last member: judge what it held
        rest = d.unused_data.lstrip(b"\x00")  # zero padding after a member is tolerated
        if not rest.startswith(_GZIP_MAGIC):
            return b"".join(chunks)  # trailing garbage is ignored, as gzip(1) does
        data = rest


def _inflate(data: bytes, limit: int) -> bytes:
    # zlib-wrapped when the first two bytes are a valid zlib header, else raw deflate
    wrapped = len(data) >= 2 and (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0
    for wbits in ((zlib.MAX_WBITS, -zlib.MAX_WBITS) if wrapped else (-zlib.MAX_WBITS,)):
        try:
            d = zlib.decompressobj(wbits)
            out = d.decompress(data, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit or d.unconsumed_tail:
            raise _OverLimit(out[:limit])
        return out
    raise zlib.error("not deflate data")


def _unbrotli(data: bytes, limit: int) -> bytes:
    d = brotli.Decompressor()
    chunks = [d.process(data, output_buffer_limit=limit + 1)]
    size = len(chunks[0])
    while not d.is_finished() and not d.can_accept_more_data():
        _bounded(chunks, size, limit)
        chunk = d.process(b"", output_buffer_limit=limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    _bounded(chunks, size, limit)
    if not size and not d.is_finished():
        raise brotli.error("not brotli data")
    return b"".join(chunks)


def _unzstd(data: bytes, limit: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    out = reader.read(limit + 1)
    while len(out) <= limit:  # read() may return less than asked before the end
        more = reader.read(limit + 1 - len(out))
        if not more:
            break
        out += more
    if len(out) > limit:
        raise _OverLimit(out[:limit])
    return out
