"""An upstream that answers with what it parsed, and remembers every request it received.

A WAF must judge what the backend will read. This upstream reads requests the way a common
Python backend does (Werkzeug's `Request`: query args, form fields, multipart files, JSON),
after undoing the body's Content-Encoding as decompression middleware would, and answers 200
with JSON:

    {"method", "path", "args": [[k, v]...], "form": [[k, v]...],
     "files": [{"name", "filename", "size"}...], "json": <parsed or null>, "json_error",
     "headers": [[k, v]...], "body_sha256", "body_size", "decoded_sha256"}

Every request head is counted the moment it is parsed, before any WSGI code runs, so a test
can assert that a blocked request never reached the backend at all:
GET /_upstream/heads lists their targets, GET /_upstream/count counts them (neither is counted).

Run: python -m tests.support.parsing_upstream --listen 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import io
import json
import logging
import threading
import urllib.request
import zlib
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.support.procs import ManagedProcess, free_port

CONTROL = "/_upstream/"
# http.server refuses more than 100 header lines (431); mitmproxy and many backends take more,
# and a test of "many headers" must see them arrive if the WAF lets them through.
MAX_HEADER_LINES = 10_000
MAX_FORM_BYTES = 64 * 1024 * 1024
LONG_NUMBER = 1_000  # digits; longer JSON integers are kept as text (Python refuses > 4300)


class HeadLog:
    """The targets of every request head received, in order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: list[str] = []

    def add(self, target: str) -> None:
        with self._lock:
            self._targets.append(target)

    def targets(self) -> list[str]:
        with self._lock:
            return list(self._targets)


HEADS = HeadLog()


class CountingHandler(WSGIRequestHandler):
    """Counts a request as received as soon as its head parsed, whatever happens next."""

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok and not self.path.startswith(CONTROL):
            HEADS.add(self.path)
        return ok

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # quiet: one line per request would flood the test log


def decode_content(body: bytes, encoding: str) -> bytes:
    """Undo Content-Encoding codings in the order they were applied (last listed, first undone)."""
    for coding in reversed([c.strip().lower() for c in encoding.split(",") if c.strip()]):
        if coding in ("gzip", "x-gzip"):
            body = gzip.decompress(body)  # every member, as RFC 1952 says
        elif coding == "deflate":
            try:
                body = zlib.decompress(body)
            except zlib.error:
                body = zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as browsers accept
        elif coding == "br":
            import brotli

            body = brotli.decompress(body)
        elif coding == "zstd":
            import zstandard

            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        elif coding != "identity":
            raise ValueError(f"unknown content coding {coding!r}")
    return body


def parse_json(body: bytes, charset: str | None) -> Any:
    text = body.decode(charset) if charset else body  # bytes: json detects UTF-8/16/32 itself
    if isinstance(text, str):
        text = text.removeprefix("\ufeff")
    return json.loads(text, parse_int=lambda s: int(s) if len(s) < LONG_NUMBER else s)


def describe(request: Request) -> dict[str, Any]:
    raw = request.get_data(cache=True)
    out: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "args": [[k, v] for k, v in request.args.items(multi=True)],
        "headers": [[k, v] for k, v in request.headers.items()],
        "body_sha256": hashlib.sha256(raw).hexdigest(),
        "body_size": len(raw),
        "form": [], "files": [], "json": None, "json_error": None, "decode_error": None,
    }
    try:
        decoded = decode_content(raw, request.headers.get("Content-Encoding", ""))
    except Exception as e:  # noqa: BLE001 - report it, as a backend would answer 400
        out["decode_error"] = str(e)
        return out
    out["decoded_sha256"] = hashlib.sha256(decoded).hexdigest()
    environ = dict(request.environ, **{"wsgi.input": io.BytesIO(decoded), "CONTENT_LENGTH": str(len(decoded))})
    parsed = Request(environ)
    parsed.max_form_memory_size = MAX_FORM_BYTES
    parsed.max_form_parts = 100_000
    out["form"] = [[k, v] for k, v in parsed.form.items(multi=True)]
    out["files"] = [{"name": k, "filename": f.filename, "size": len(f.read())} for k, f in parsed.files.items(multi=True)]
    if parsed.mimetype.endswith("json") or parsed.mimetype.endswith("+json"):
        try:
            out["json"] = parse_json(decoded, parsed.mimetype_params.get("charset"))
        except (ValueError, LookupError) as e:
            out["json_error"] = str(e)
    return out


@Request.application
def app(request: Request) -> Response:
    if request.path == CONTROL + "heads":
        return Response(json.dumps(HEADS.targets()), mimetype="application/json")
    if request.path == CONTROL + "count":
        return Response(json.dumps(len(HEADS.targets())), mimetype="application/json")
    return Response(json.dumps(describe(request)), mimetype="application/json")


# ------------------------------------------------------------------------- for tests
@dataclass
class ParsingUpstream:
    proc: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def heads(self) -> list[str]:
        """The request targets received so far."""
        with urllib.request.urlopen(self.url + CONTROL + "heads", timeout=5) as r:
            return json.load(r)

    def count(self) -> int:
        with urllib.request.urlopen(self.url + CONTROL + "count", timeout=5) as r:
            return json.load(r)

    def stop(self) -> int | None:
        return self.proc.stop()


def start_parsing_upstream() -> ParsingUpstream:
    import sys

    port = free_port()
    proc = ManagedProcess("parsing-upstream", [sys.executable, "-m", "tests.support.parsing_upstream",
                                               "--listen", f"127.0.0.1:{port}"])
    try:
        proc.wait_http(f"http://127.0.0.1:{port}{CONTROL}count")
    except Exception:
        proc.stop()
        raise
    return ParsingUpstream(proc, port)


def main() -> None:
    p = argparse.ArgumentParser(description="an upstream that reports what it parsed")
    p.add_argument("--listen", required=True, help="HOST:PORT")
    args = p.parse_args()
    host, _, port = args.listen.rpartition(":")
    http.client._MAXHEADERS = MAX_HEADER_LINES  # type: ignore[attr-defined]  # see MAX_HEADER_LINES
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server(host, int(port), app, threaded=True, request_handler=CountingHandler)
    server.serve_forever()


if __name__ == "__main__":
    main()
