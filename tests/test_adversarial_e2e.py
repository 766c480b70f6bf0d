"""The adversarial suite: evasion shapes an attacker would try, through the whole running system.

Real processes on loopback: the node in `block` mode, mitmdump with the connector in-line in front
of an upstream that reports what it parsed (tests/support/parsing_upstream.py, Werkzeug's
parser). Every attack case carries a payload that is blocked in its plain form (the `plain`
class proves it) and must not reach the upstream: the client gets the block answer (403) or a
deliberate 4xx. Benign traffic of the same shapes must reach it unaltered. No request may take
2 s or more, and the connector never forwards a request without a verdict while the node is up.

Classes (issue 13): stall, node refusal, content-type tricks, caps, encodings; benign controls.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import brotli
import httpx
import pytest
import zstandard

from tests.support.node import NodeHandle, start_node
from tests.support.parsing_upstream import ParsingUpstream, start_parsing_upstream
from tests.support.proxy import Proxy, start_proxy, write_config

pytestmark = pytest.mark.e2e

MAX_SECONDS = 2.0  # per request, whatever the case
TIMEOUT_MS = 1500  # the connector's wait for a verdict: below MAX_SECONDS, above a busy machine's latency

PAYLOADS = {
    "xss": "<script>alert(1)</script>",
    "sqli": "1' OR '1'='1' --",
    "ptrav": "../../etc/passwd",
    "rce": ";cat /etc/passwd",
}
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do")


# ------------------------------------------------------------------------------ the system
@dataclass
class Sent:
    response: httpx.Response | None
    error: Exception | None
    seconds: float
    path: str
    unjudged: float  # requests the connector forwarded without a verdict meanwhile (fail-open)

    def outcome(self) -> str:
        got = f"{self.response.status_code}" if self.response is not None else f"no answer ({self.error!r})"
        how = ", forwarded WITHOUT a verdict (fail-open)" if self.unjudged else ""
        return f"client got {got} in {self.seconds:.2f} s{how}"


@dataclass
class System:
    cls: str  # the class of cases this system serves (names the request paths)
    node: NodeHandle
    proxy: Proxy
    upstream: ParsingUpstream
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10, trust_env=False))

    def send(self, case: str, *, method: str = "POST", query: str = "", content: bytes = b"",
             headers: list[tuple[str, str]] | None = None) -> Sent:
        """One request to a path unique to this call (so the upstream's log tells if it got it)."""
        path = f"/adv/{self.cls}/{case}/{uuid.uuid4().hex[:12]}"
        url = self.proxy.url + path + (f"?{query}" if query else "")
        before = self.fail_open_total()
        started = time.monotonic()
        try:
            r, err = self.client.request(method, url, content=content or None, headers=headers or []), None
        except httpx.TransportError as e:  # the connector may close a connection it refuses
            r, err = None, e
        seconds = time.monotonic() - started
        return Sent(r, err, seconds, path, self.fail_open_total() - before)

    def reached_upstream(self, path: str) -> bool:
        return any(t.split("?", 1)[0] == path for t in self.upstream.heads())

    def fail_open_total(self) -> float:
        """Every in-line request the connector forwarded without a verdict, all causes."""
        text = self.client.get(self.proxy.admin + "/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("wallarm_connector_fail_open_total{"))


def start_system(cls: str, tmp: Path, upstream: ParsingUpstream) -> System:
    node = start_node(tmp / "node", mode="block", timeout=90)
    try:
        cfg = write_config(tmp / "enable-plugin.json", node.endpoint_url, timeout_ms=TIMEOUT_MS,
                           instance_name="adversarial")
        proxy = start_proxy(upstream.url, cfg)
    except Exception:
        node.stop()
        raise
    return System(cls, node, proxy, upstream)


def stop_system(s: System) -> None:
    s.client.close()
    s.proxy.stop()
    s.node.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ParsingUpstream]:
    up = start_parsing_upstream()
    yield up
    up.stop()


class Systems:
    """One system per class of cases, started when the class starts and stopped when the next
    one does: a node that one class stalls or wedges cannot decide the results of another."""

    def __init__(self, tmp: pytest.TempPathFactory, upstream: ParsingUpstream):
        self.tmp, self.upstream = tmp, upstream
        self.current: tuple[str, System] | None = None

    def __call__(self, cls: str) -> System:
        if self.current is not None and self.current[0] == cls:
            return self.current[1]
        self.close()
        s = start_system(cls, self.tmp.mktemp(cls), self.upstream)
        self.current = (cls, s)
        return s

    def close(self) -> None:
        if self.current is not None:
            stop_system(self.current[1])
            self.current = None


@pytest.fixture(scope="module")
def systems(tmp_path_factory: pytest.TempPathFactory, upstream: ParsingUpstream) -> Iterator[Systems]:
    pool = Systems(tmp_path_factory, upstream)
    yield pool
    pool.close()


def stop_problems(s: System, sent: Sent) -> list[str]:
    """What is wrong with the system's answer to an attack (empty: it was stopped in time)."""
    problems = []
    if s.reached_upstream(sent.path):
        problems.append("the upstream received the attack")
    if sent.response is None or not 400 <= sent.response.status_code < 500:
        problems.append("no block answer (403) nor a deliberate 4xx")
    if sent.seconds >= MAX_SECONDS:
        problems.append(f"slower than {MAX_SECONDS} s")
    if sent.unjudged and not problems:
        problems.append("a request was forwarded without a verdict meanwhile")
    return [f"{', '.join(problems)} ({sent.outcome()})"] if problems else []


def assert_stopped(s: System, sent: Sent) -> None:
    """The attack did not reach the upstream; the client got a block answer or a deliberate 4xx."""
    problems = stop_problems(s, sent)
    assert not problems, "; ".join(problems)


def assert_delivered(s: System, sent: Sent, body: bytes) -> dict:
    """Benign: 200 from the upstream, which got the body byte for byte; returns what it parsed."""
    assert sent.seconds < MAX_SECONDS, f"took {sent.seconds:.2f} s"
    assert not sent.unjudged, sent.outcome()
    assert sent.response is not None, sent.error
    assert sent.response.status_code == 200, sent.response.text[:300]
    assert s.reached_upstream(sent.path)
    seen = sent.response.json()
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest() and seen["body_size"] == len(body)
    return seen


# ------------------------------------------------------------------------------ body builders
def form(*pairs: tuple[str, str]) -> bytes:
    return urlencode(pairs).encode()


def json_doc(obj: object) -> bytes:
    return json.dumps(obj).encode()


def multipart(boundary: str, parts: list[tuple[str, bytes]]) -> bytes:
    """Parts given as (Content-Disposition parameters, content), e.g. ('name="q"', b"...")."""
    out = b""
    for dispo, content in parts:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; {dispo}\r\n\r\n").encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def prose(size: int, seed: int = 1) -> str:
    """Harmless words with spaces, about `size` characters (no long run of word characters)."""
    rng = random.Random(seed)
    out: list[str] = []
    n = 0
    while n < size:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:size]


def gzip_members(*chunks: bytes) -> bytes:
    return b"".join(gzip.compress(c) for c in chunks)


def deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


# ------------------------------------------------------------------------------ plain: the yardstick
PLACES: dict[str, Callable[[str], dict]] = {
    "query": lambda p: {"method": "GET", "query": urlencode({"q": p})},
    "form": lambda p: {"content": form(("q", p)), "headers": [("Content-Type", FORM)]},
    "json": lambda p: {"content": json_doc({"q": p}), "headers": [("Content-Type", JSON)]},
}


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("where", PLACES)
def test_plain_payload_is_blocked(systems: Systems, where: str, payload: str) -> None:
    s = systems("plain")
    assert_stopped(s, s.send(f"{where}-{payload}", **PLACES[where](PAYLOADS[payload])))


# ------------------------------------------------------------------------------ node refusal
def many_header_lines(count: int, attack_in: str, p: str) -> dict:
    headers = [(f"X-Pad-{i}", f"v{i}") for i in range(count)]
    if attack_in == "header":
        headers.append(("X-Comment", p))
        return {"method": "GET", "headers": headers}
    return {"method": "GET", "headers": headers, "query": urlencode({"q": p})}


def big_header_block(kib: int, attack_in: str, p: str) -> dict:
    # lines of 4 KiB of prose: over MAX_HEAD (64 KiB) in total, each line far below any line limit
    headers = [(f"X-Big-{i}", prose(4096, seed=i)) for i in range(kib // 4)]
    if attack_in == "header":
        headers.append(("X-Comment", p))
        return {"method": "GET", "headers": headers}
    return {"method": "GET", "headers": headers, "query": urlencode({"q": p})}


REFUSAL: dict[str, Callable[[str], dict]] = {
    "250-lines-query": lambda p: many_header_lines(250, "query", p),
    "250-lines-header": lambda p: many_header_lines(250, "header", p),
    "1000-lines-query": lambda p: many_header_lines(1000, "query", p),
    "80kib-block-query": lambda p: big_header_block(80, "query", p),
    "80kib-block-header": lambda p: big_header_block(80, "header", p),
    "200kib-block-query": lambda p: big_header_block(200, "query", p),
}


@pytest.mark.parametrize("payload", ["xss", "sqli"])
@pytest.mark.parametrize("case", REFUSAL)
def test_node_refusal_is_not_forwarded(systems: Systems, case: str, payload: str) -> None:
    s = systems("refusal")
    assert_stopped(s, s.send(f"{case}-{payload}", **REFUSAL[case](PAYLOADS[payload])))


# ------------------------------------------------------------------------------ content-type tricks
def ct(ctype: str, body: bytes) -> dict:
    return {"content": body, "headers": [("Content-Type", ctype)]}


CONTENT_TYPE: dict[str, Callable[[str], dict]] = {
    # a parameter that contains "multipart/" is not the media type
    "json-with-multipart-param": lambda p: ct("application/json; x=multipart/; boundary=z", json_doc({"q": p})),
    "form-with-multipart-param": lambda p: ct(f"{FORM}; x=multipart/; boundary=z", form(("q", p))),
    # two boundary parameters: Werkzeug reads the last one
    "duplicate-boundary-second": lambda p: ct("multipart/form-data; boundary=AAA; boundary=BBB",
                                              multipart("BBB", [('name="q"', p.encode())])),
    "duplicate-boundary-first": lambda p: ct("multipart/form-data; boundary=AAA; boundary=BBB",
                                             multipart("AAA", [('name="q"', p.encode())])),
    # a parameter whose name ends in "boundary" is not the boundary
    "prefixed-boundary": lambda p: ct("multipart/form-data; xboundary=ZZZ; boundary=REAL",
                                      multipart("REAL", [('name="q"', p.encode())])),
    "quoted-prefixed-boundary": lambda p: ct('multipart/form-data; x-boundary="ZZZ"; boundary="REAL"',
                                             multipart("REAL", [('name="q"', p.encode())])),
    # a close delimiter that is not at a line start does not end the body
    "close-delimiter-in-value": lambda p: ct("multipart/form-data; boundary=B",
                                             multipart("B", [('name="a"', b"see --B-- here"),
                                                             ('name="q"', p.encode())])),
    # "filename" inside another parameter does not make the part a file
    "filename-in-other-param": lambda p: ct("multipart/form-data; boundary=B",
                                            multipart("B", [('x-filename="a.bin"; name="q"', b"\x00" + p.encode())])),
    "filename-inside-quoted-value": lambda p: ct("multipart/form-data; boundary=B",
                                                 multipart("B", [('dummy="; filename=a.bin"; name="q"',
                                                                  b"\x00" + p.encode())])),
    # no boundary: nothing to split by, so the body is text to judge
    "multipart-without-boundary": lambda p: ct("multipart/form-data",
                                               multipart("B", [('name="q"', p.encode())])),
    # the body does not match its declared type
    "form-declared-json": lambda p: ct(JSON, form(("q", p))),
    "json-declared-form": lambda p: ct(FORM, json_doc({"q": p})),
    "json-declared-multipart": lambda p: ct("multipart/form-data; boundary=B", json_doc({"q": p})),
}


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("case", CONTENT_TYPE)
def test_content_type_trick_is_blocked(systems: Systems, case: str, payload: str) -> None:
    s = systems("ctype")
    assert_stopped(s, s.send(f"{case}-{payload}", **CONTENT_TYPE[case](PAYLOADS[payload])))


# ------------------------------------------------------------------------------ caps
def nested(depth: int, leaf: object) -> object:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


def nested_list(depth: int, leaf: object) -> object:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def numbers(size: int) -> str:
    """A long SQL-ish list: '1, 2, 3, ...' of about `size` characters."""
    out, i = [], 0
    while sum(len(x) + 2 for x in out) < size:
        i += 1
        out.append(str(i))
    return ", ".join(out)


def decoy(i: int) -> str:
    """Clean text the SQL pre-filter flags (a number, then "or"), so the SQL detector must judge it."""
    return f"{i} or {i + 1} items please"


CAPS: dict[str, Callable[[str], dict]] = {
    "1100-spaces-form": lambda p: ct(FORM, form(("q", " " * 1100 + p))),
    "1100-spaces-json": lambda p: ct(JSON, json_doc({"q": " " * 1100 + p})),
    "150-dummy-fields-form": lambda p: ct(FORM, form(*[(f"f{i}", f"v{i}") for i in range(150)], ("q", p))),
    "150-dummy-fields-json": lambda p: ct(JSON, json_doc({**{f"f{i}": f"v {i}" for i in range(150)}, "q": p})),
    "150-dummy-fields-query": lambda p: {"method": "GET",
                                         "query": urlencode([*[(f"f{i}", f"v{i}") for i in range(150)], ("q", p)])},
    "350-dummy-fields-form": lambda p: ct(FORM, form(*[(f"f{i}", f"v{i}") for i in range(350)], ("q", p))),
    # 33 clean values that each cost a structural detector call (all different: no cache), then
    # the payload: past the per-request detector budget
    "33-fresh-decoys-form": lambda p: ct(FORM, form(*[(f"d{i}", decoy(i)) for i in range(33)], ("q", p))),
    "33-fresh-decoys-json": lambda p: ct(JSON, json_doc({**{f"d{i}": decoy(i) for i in range(33)}, "q": p})),
    "13-control-chars-form": lambda p: ct(FORM, form(("q", "\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x10\x11\x12" + p))),
    "13-control-chars-json": lambda p: ct(JSON, json_doc({"q": "\x01" * 13 + p})),
    "8kb-filler-field-form": lambda p: ct(FORM, form(("pad", prose(8 * 1024)), ("q", p))),
    "32kb-filler-field-form": lambda p: ct(FORM, form(("pad", prose(32 * 1024)), ("q", p))),
    "128kb-filler-field-form": lambda p: ct(FORM, form(("pad", prose(128 * 1024)), ("q", p))),
    "300kb-filler-field-form": lambda p: ct(FORM, form(("pad", prose(300 * 1024)), ("q", p))),
    "8kb-filler-same-value": lambda p: ct(FORM, form(("q", prose(8 * 1024) + " " + p))),
    "32kb-filler-json": lambda p: ct(JSON, json_doc({"pad": prose(32 * 1024), "q": p})),
    "128kb-filler-json": lambda p: ct(JSON, json_doc({"pad": prose(128 * 1024), "q": p})),
    "32kb-filler-query": lambda p: {"method": "GET", "query": urlencode([("pad", prose(32 * 1024)), ("q", p)])},
    "deep-json-40": lambda p: ct(JSON, json_doc(nested(40, p))),
    "deep-json-64": lambda p: ct(JSON, json_doc(nested(64, {"q": p}))),
    "deep-json-list-48": lambda p: ct(JSON, json_doc(nested_list(48, p))),
    "value-over-16kb-payload-at-end": lambda p: ct(FORM, form(("q", prose(17 * 1024) + " " + p))),
    "json-value-over-16kb-payload-at-end": lambda p: ct(JSON, json_doc({"q": prose(17 * 1024) + " " + p})),
    "payload-after-2kb-sql-looking": lambda p: ct(FORM, form(("ids", numbers(2100) + " " + p))),
    "payload-after-4kb-sql-looking-json": lambda p: ct(JSON, json_doc({"ids": numbers(4100) + " " + p})),
}


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("case", CAPS)
def test_padding_past_a_cap_is_blocked(systems: Systems, case: str, payload: str) -> None:
    s = systems("caps")
    assert_stopped(s, s.send(f"{case}-{payload}", **CAPS[case](PAYLOADS[payload])))


# ------------------------------------------------------------------------------ encodings
def encoded_json(p: str, codec: str, bom: bytes = b"", charset: str | None = None) -> dict:
    body = bom + json.dumps({"q": p}, ensure_ascii=False).encode(codec)
    return ct(JSON + (f"; charset={charset}" if charset else ""), body)


def coded(coding: str, body: bytes, ctype: str = JSON) -> dict:
    return {"content": body, "headers": [("Content-Type", ctype), ("Content-Encoding", coding)]}


def compressed(coding: str, compress: Callable[[bytes], bytes], p: str, ctype: str = JSON) -> dict:
    """The payload after 2 KB of prose, compressed: enough text that the compressor really codes
    it (a short input is often stored as is, and the node would see the payload in clear)."""
    plain = form(("note", prose(2048)), ("q", p)) if ctype == FORM else json_doc({"note": prose(2048), "q": p})
    body = compress(plain)
    assert p.encode() not in body and quote(p).encode() not in body, f"{coding}: the payload is visible"
    return coded(coding, body, ctype)


def big_number_json(p: str) -> bytes:
    return b'{"n": ' + b"1" * 5000 + b', "q": ' + json.dumps(p).encode() + b"}"


ENCODINGS: dict[str, Callable[[str], dict]] = {
    "utf16le-no-bom": lambda p: encoded_json(p, "utf-16-le"),
    "utf16be-no-bom": lambda p: encoded_json(p, "utf-16-be"),
    "utf16le-bom": lambda p: encoded_json(p, "utf-16-le", bom=b"\xff\xfe"),
    "utf16be-bom": lambda p: encoded_json(p, "utf-16-be", bom=b"\xfe\xff"),
    "utf16le-charset": lambda p: encoded_json(p, "utf-16-le", charset="utf-16le"),
    "utf32le-no-bom": lambda p: encoded_json(p, "utf-32-le"),
    "utf32-bom": lambda p: encoded_json(p, "utf-32"),  # Python's utf-32 writes a BOM
    "utf32be-charset": lambda p: encoded_json(p, "utf-32-be", charset="utf-32be"),
    "gzip-multi-member-json": lambda p: coded("gzip", gzip_members(b'{"a": "b", ', b'"q": ' + json.dumps(p).encode() + b"}")),
    "gzip-multi-member-form": lambda p: coded("gzip", gzip_members(b"a=b&", form(("q", p))), FORM),
    "br-json": lambda p: compressed("br", brotli.compress, p),
    "br-form": lambda p: compressed("br", brotli.compress, p, FORM),
    "zstd-json": lambda p: compressed("zstd", zstandard.ZstdCompressor().compress, p),
    "zstd-form": lambda p: compressed("zstd", zstandard.ZstdCompressor().compress, p, FORM),
    "gzip-then-br": lambda p: compressed("gzip, br", lambda b: brotli.compress(gzip.compress(b)), p),
    "gzip-single-member": lambda p: compressed("gzip", gzip.compress, p),
    "deflate-raw": lambda p: compressed("deflate", deflate_raw, p),
    "deflate-zlib": lambda p: compressed("deflate", zlib.compress, p),
    "json-5000-digit-number": lambda p: ct(JSON, big_number_json(p)),
}


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("case", ENCODINGS)
def test_encoded_body_is_blocked(systems: Systems, case: str, payload: str) -> None:
    s = systems("encoding")
    assert_stopped(s, s.send(f"{case}-{payload}", **ENCODINGS[case](PAYLOADS[payload])))


# ------------------------------------------------------------------------------ benign: must pass
def large_json_document(size: int) -> dict:
    rng = random.Random(5)
    items = []
    n = 0
    while n < size:
        item = {"id": len(items), "sku": f"SKU-{rng.randrange(10**6):06d}", "title": prose(40, seed=len(items)),
                "price": round(rng.uniform(1, 500), 2), "tags": rng.sample(WORDS, 3), "in_stock": rng.random() > .3}
        items.append(item)
        n += len(json.dumps(item)) + 2
    return {"catalog": "spring", "items": items}


def test_benign_large_json_document(systems: Systems) -> None:
    doc = large_json_document(500 * 1024)
    body = json_doc(doc)
    s = systems("benign")
    seen = assert_delivered(s, s.send("large-json", content=body,
                                                headers=[("Content-Type", JSON)]), body)
    assert seen["json"] == doc


def test_benign_sixty_field_form(systems: Systems) -> None:
    pairs = [(f"field_{i}", f"{prose(30, seed=i)} #{i}") for i in range(60)]
    body = form(*pairs)
    s = systems("benign")
    seen = assert_delivered(s, s.send("form-60", content=body,
                                                headers=[("Content-Type", FORM)]), body)
    assert [tuple(p) for p in seen["form"]] == pairs


def test_benign_multipart_upload_with_binary_file(systems: Systems) -> None:
    blob = random.Random(13).randbytes(200 * 1024)
    body = multipart("----formboundary7MA4YWxkTrZu0gW", [
        ('name="title"', b"Quarterly report"),
        ('name="description"', b"Numbers for Q3, see attached (draft)"),
        ('name="file"; filename="report.bin"', blob),
    ])
    s = systems("benign")
    seen = assert_delivered(s, s.send("multipart-binary", content=body, headers=[
        ("Content-Type", "multipart/form-data; boundary=----formboundary7MA4YWxkTrZu0gW")]), body)
    assert seen["files"] == [{"name": "file", "filename": "report.bin", "size": len(blob)}]
    assert [p[0] for p in seen["form"]] == ["title", "description"]


def test_benign_gzip_json_body(systems: Systems) -> None:
    doc = large_json_document(40 * 1024)
    body = gzip.compress(json_doc(doc))
    s = systems("benign")
    seen = assert_delivered(s, s.send("gzip-json", content=body,
                                                headers=[("Content-Type", JSON), ("Content-Encoding", "gzip")]), body)
    assert seen["json"] == doc


BENIGN_CODINGS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "br": ("br", brotli.compress),
    "zstd": ("zstd", zstandard.ZstdCompressor().compress),
    "gzip-two-members": ("gzip", lambda b: gzip_members(b[: len(b) // 2], b[len(b) // 2:])),
    "deflate-raw": ("deflate", deflate_raw),
    "gzip-then-br": ("gzip, br", lambda b: brotli.compress(gzip.compress(b))),
}


@pytest.mark.parametrize("name", BENIGN_CODINGS)
def test_benign_coded_json_body(systems: Systems, name: str) -> None:
    coding, compress = BENIGN_CODINGS[name]
    doc = large_json_document(20 * 1024)
    body = compress(json_doc(doc))
    s = systems("benign")
    seen = assert_delivered(s, s.send(f"coded-{name}", content=body,
                                      headers=[("Content-Type", JSON), ("Content-Encoding", coding)]), body)
    assert seen["json"] == doc


def test_benign_forty_headers(systems: Systems) -> None:
    headers = [(f"X-Trace-{i}", f"span-{i:04d}; sampled=1") for i in range(40)]
    s = systems("benign")
    seen = assert_delivered(s, s.send("headers-40", method="GET", headers=headers), b"")
    got = {k.lower(): v for k, v in seen["headers"]}
    assert all(got[k.lower()] == v for k, v in headers)


@pytest.mark.parametrize("codec,bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"")])
def test_benign_utf16_json_body(systems: Systems, codec: str, bom: bytes) -> None:
    doc = {"name": "Zoë Šťastná", "comment": "Café crème, naïve façade — ok", "qty": 3}
    body = bom + json.dumps(doc, ensure_ascii=False).encode(codec)
    s = systems("benign")
    seen = assert_delivered(s, s.send(f"json-{codec}", content=body,
                                                headers=[("Content-Type", JSON)]), body)
    assert seen["json"] == doc


# ------------------------------------------------------------------------------ stall (own system)
def run(n: int, ch: str) -> str:
    return ch * n


STALL: dict[str, Callable[[], dict]] = {
    # the request: an 8 KB word-character run glued to the payload
    "8kb-A-run-then-script": lambda: ct(FORM, b"comment=" + run(8000, "A").encode() + b";<script>alert(1);</script>"),
    "8kb-run-before-password-pair": lambda: ct(FORM, form(("data", run(8000, "a")), ("password", "hunter2"),
                                                          ("q", PAYLOADS["xss"]))),
    "8kb-digit-run-json": lambda: ct(JSON, json_doc({"n": run(8000, "1") + " " + PAYLOADS["sqli"],
                                                     "api_key": "k-123"})),
    "6kb-underscore-run-query": lambda: {"method": "GET",
                                         "query": "q=" + run(6000, "_") + quote(PAYLOADS["rce"], safe="")
                                         + "&token=abc"},
    "8kb-dotted-run-form": lambda: ct(FORM, form(("path", run(4000, "a.") + PAYLOADS["ptrav"]),
                                                 ("secret", "s3cr3t"))),
}


@pytest.mark.parametrize("case", STALL)
def test_stall_shape_is_blocked_and_the_system_stays_responsive(systems: Systems, case: str) -> None:
    s = systems(f"stall-{case}")  # a fresh node per shape: each must hold on its own
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(s.send, case, **STALL[case]())
        time.sleep(0.2)  # the attack is with the node now
        during = s.send(f"during-{case}", method="GET", query="page=1")  # others are still answered
        attack = pending.result()
    after = s.send(f"after-{case}", method="GET", query="page=2")  # and the node is not left busy
    problems = stop_problems(s, attack)
    for name, benign in (("during", during), ("after", after)):
        if benign.response is None or benign.response.status_code != 200 or benign.seconds >= 1.0:
            problems.append(f"a benign request {name} it: {benign.outcome()}")
    if s.fail_open_total():
        problems.append(f"{s.fail_open_total():.0f} request(s) forwarded without a verdict so far")
    assert not problems, "; ".join(problems)
