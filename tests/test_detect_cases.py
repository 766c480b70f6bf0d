"""The labelled cases in tests/cases/ against the real engine.

Every attack type: real payloads detected (in several places of a request, and encoded the
way GoTestWAF encodes them), benign look-alikes passing, whole requests judged with the right
location.
"""

from __future__ import annotations

import base64
import gzip
import json
import urllib.parse
from pathlib import Path

import pytest
import yaml

from addon.protocol import RequestMessage
from node.detect.engine import Engine

CASES = Path(__file__).parent / "cases"
ATTACKS: dict = yaml.safe_load((CASES / "attacks.yaml").read_text("utf-8"))
BENIGN: dict = yaml.safe_load((CASES / "benign.yaml").read_text("utf-8"))
REQUESTS: list = yaml.safe_load((CASES / "requests.yaml").read_text("utf-8"))

# where a payload of each type is placed by default
DEFAULT_PLACES = ("query", "json", "form")
PLACES_BY_TYPE = {
    "scanner": ("user-agent",),
    # header and mail injection target headers and mail forms, not JSON documents
    "crlf": ("query", "form"),
    "mail_injection": ("query", "form"),
}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def _entries(section: list) -> list[tuple[str, tuple[str, ...] | None]]:
    out = []
    for item in section:
        if isinstance(item, dict):
            out.append((item["value"], tuple(item["where"])))
        else:
            out.append((item, None))
    return out


def attack_cases() -> list:
    params = []
    for typ, section in ATTACKS.items():
        for value, where in _entries(section):
            for place in where or PLACES_BY_TYPE.get(typ, DEFAULT_PLACES):
                params.append(pytest.param(typ, value, place, id=f"{typ}-{place}-{value[:40]}"))
    return params


def benign_cases() -> list:
    params = []
    for group, section in BENIGN.items():
        places = ["query", "json", "form"]
        if group == "browser_header_values":
            places.append("header")
        for value in section:
            for place in places:
                params.append(pytest.param(value, place, id=f"{group}-{place}-{value[:40]}"))
    return params


def place(value: str, where: str) -> RequestMessage:
    host = [(b"Host", b"app.example")]
    ua = (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0")
    if where == "query":
        return RequestMessage("GET", "/search?q=" + urllib.parse.quote(value, safe=""), host + [ua])
    if where == "json":
        body = json.dumps({"data": {"comment": value}}).encode()
        return RequestMessage("POST", "/api/comments", host + [ua, (b"Content-Type", b"application/json")], body)
    if where == "form":
        body = urllib.parse.urlencode({"comment": value}).encode()
        return RequestMessage("POST", "/comments", host + [ua, (b"Content-Type", b"application/x-www-form-urlencoded")], body)
    if where == "xmlbody":
        return RequestMessage("POST", "/xml", host + [ua, (b"Content-Type", b"application/xml")], value.encode())
    if where == "user-agent":
        return RequestMessage("GET", "/", host + [(b"User-Agent", value.encode())])
    if where == "header":
        return RequestMessage("GET", "/", host + [ua, (b"X-Client-Info", value.encode())])
    raise ValueError(where)


@pytest.mark.parametrize(("typ", "value", "where"), attack_cases())
def test_attack_detected(engine: Engine, typ: str, value: str, where: str) -> None:
    det = engine.analyze_request(place(value, where))
    assert det.is_attack, f"missed {typ} in {where}: {value!r} (score {det.score})"
    types = {a.type for a in det.attacks}
    assert typ in types, f"{value!r} in {where}: reported {types}, expected {typ}"


@pytest.mark.parametrize(("value", "where"), benign_cases())
def test_benign_passes(engine: Engine, value: str, where: str) -> None:
    det = engine.analyze_request(place(value, where))
    assert not det.is_attack, f"blocked benign {value!r} in {where}: {det.attacks}"


# ---------------------------------------------------------------------------- encodings
# GoTestWAF's encoders applied to our own attack cases; the engine must see through them.


def enc_base64(v: str) -> str:
    return base64.b64encode(v.encode()).decode()


def enc_base64url(v: str) -> str:
    return base64.urlsafe_b64encode(v.encode()).decode().rstrip("=")


def enc_js_unicode(v: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in v)


def enc_xml_entity(v: str) -> str:
    return "".join(f"&#x{ord(c):x};" for c in v)


def enc_url_double(v: str) -> str:
    return urllib.parse.quote(urllib.parse.quote(v, safe=""), safe="")


_URL_RESERVED = set("#&+%? \r\n")


def enc_mixed_url(v: str) -> str:
    # every other character percent-encoded, the rest raw: "mixed" encoding (characters a
    # URL cannot carry raw are always encoded, as any client would)
    return "".join(
        urllib.parse.quote(c, safe="") if (i % 2 or c in _URL_RESERVED or ord(c) >= 128) else c
        for i, c in enumerate(v)
    )


ENCODINGS = {
    "base64": enc_base64,
    "base64url": enc_base64url,
    "js-unicode": enc_js_unicode,
    "xml-entity": enc_xml_entity,
    "url-double": enc_url_double,
    "url-mixed": enc_mixed_url,
}


def _carrier(encoded: str, name: str) -> RequestMessage:
    host = [(b"Host", b"app.example")]
    if name == "xml-entity":
        body = f'<?xml version="1.0"?><request><comment>{encoded}</comment></request>'.encode()
        return RequestMessage("POST", "/xml", host + [(b"Content-Type", b"application/xml")], body)
    if name in ("url-double", "url-mixed"):
        return RequestMessage("GET", "/search?q=" + encoded, host)
    return RequestMessage("GET", "/search?q=" + urllib.parse.quote(encoded, safe=""), host)


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_encoded_attacks_detected(engine: Engine, name: str) -> None:
    encode = ENCODINGS[name]
    total, missed = 0, []
    in_body = name == "xml-entity"  # carried by an XML document, not by the URL
    for typ, section in ATTACKS.items():
        if typ == "scanner":
            continue  # tool fingerprints live in the User-Agent, unencoded by definition
        if in_body and typ in PLACES_BY_TYPE:
            continue  # header and mail injection do not travel in XML documents
        for value, where in _entries(section):
            if where and ("query" not in where or in_body):
                continue
            total += 1
            det = engine.analyze_request(_carrier(encode(value), name))
            if not det.is_attack:
                missed.append(f"{typ}: {value!r}")
    rate = 1 - len(missed) / total
    assert rate >= 0.97, f"{name}: {rate:.1%} detected; missed {len(missed)}: {missed[:15]}"


# ---------------------------------------------------------------------------- whole requests


def request_cases() -> list:
    return [pytest.param(c, id=c["name"]) for c in REQUESTS]


@pytest.mark.parametrize("case", request_cases())
def test_request_case(engine: Engine, case: dict) -> None:
    body = case.get("body", "").encode("utf-8", "surrogateescape") if isinstance(case.get("body"), str) else b""
    if case.get("gzip"):
        body = gzip.compress(body)
    headers = [(k.encode(), str(v).encode()) for k, v in case["headers"].items()]
    det = engine.analyze_request(RequestMessage(case["method"], case["target"], headers, body))
    if case["expect"] == "benign":
        assert not det.is_attack, f"{case['name']}: blocked {det.attacks}"
        return
    assert det.is_attack, f"{case['name']}: missed (score {det.score})"
    found = [a for a in det.attacks if a.type == case["expect"]]
    assert found, f"{case['name']}: reported {[a.type for a in det.attacks]}, expected {case['expect']}"
    if "location" in case:
        assert case["location"] in {a.location for a in found}, f"{case['name']}: locations {[a.location for a in found]}"
