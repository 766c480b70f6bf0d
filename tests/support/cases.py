"""The project's own labelled cases (tests/cases/*.yaml) turned into requests.

Shared by tests/test_detect_cases.py (one test per case) and scripts/bench_detect.py (the
cases as a corpus, also fed to ModSecurity), so both judge exactly the same requests.
"""

from __future__ import annotations

import base64
import gzip
import json
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from wallarm_wire.protocol import RequestMessage

CASES_DIR = Path(__file__).resolve().parents[1] / "cases"
ATTACKS: dict = yaml.safe_load((CASES_DIR / "attacks.yaml").read_text("utf-8"))
BENIGN: dict = yaml.safe_load((CASES_DIR / "benign.yaml").read_text("utf-8"))
REQUESTS: list = yaml.safe_load((CASES_DIR / "requests.yaml").read_text("utf-8"))

# where a payload of each type is placed by default
DEFAULT_PLACES = ("query", "json", "form")
PLACES_BY_TYPE = {
    "scanner": ("user-agent",),
    # header and mail injection target headers and mail forms, not JSON documents
    "crlf": ("query", "form"),
    "mail_injection": ("query", "form"),
}
BROWSER_UA = (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0")


def entries(section: list) -> list[tuple[str, tuple[str, ...] | None]]:
    """(value, places) of a YAML section; places is None when the value does not name them."""
    out = []
    for item in section:
        if isinstance(item, dict):
            out.append((item["value"], tuple(item["where"])))
        else:
            out.append((item, None))
    return out


def attack_places(typ: str, where: tuple[str, ...] | None) -> tuple[str, ...]:
    return where or PLACES_BY_TYPE.get(typ, DEFAULT_PLACES)


def benign_places(group: str) -> tuple[str, ...]:
    return ("query", "json", "form", "header") if group == "browser_header_values" else ("query", "json", "form")


def place(value: str, where: str) -> RequestMessage:
    """A request carrying `value` in one place: query, json, form, xmlbody, user-agent, header."""
    host = [(b"Host", b"app.example")]
    if where == "query":
        return RequestMessage("GET", "/search?q=" + urllib.parse.quote(value, safe=""), host + [BROWSER_UA])
    if where == "json":
        body = json.dumps({"data": {"comment": value}}).encode()
        return RequestMessage("POST", "/api/comments", host + [BROWSER_UA, (b"Content-Type", b"application/json")], body)
    if where == "form":
        body = urllib.parse.urlencode({"comment": value}).encode()
        return RequestMessage("POST", "/comments",
                              host + [BROWSER_UA, (b"Content-Type", b"application/x-www-form-urlencoded")], body)
    if where == "xmlbody":
        return RequestMessage("POST", "/xml", host + [BROWSER_UA, (b"Content-Type", b"application/xml")], value.encode())
    if where == "user-agent":
        return RequestMessage("GET", "/", host + [(b"User-Agent", value.encode())])
    if where == "header":
        return RequestMessage("GET", "/", host + [BROWSER_UA, (b"X-Client-Info", value.encode())])
    raise ValueError(where)


def request_message(case: dict) -> RequestMessage:
    """A whole request of requests.yaml."""
    body = case.get("body", "").encode("utf-8", "surrogateescape") if isinstance(case.get("body"), str) else b""
    if case.get("gzip"):
        body = gzip.compress(body)
    headers = [(k.encode(), str(v).encode()) for k, v in case["headers"].items()]
    return RequestMessage(case["method"], case["target"], headers, body)


# ---------------------------------------------------------------------------- encodings
# GoTestWAF's encoders, applied to the attack cases.


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


ENCODINGS: dict[str, Callable[[str], str]] = {
    "base64": enc_base64,
    "base64url": enc_base64url,
    "js-unicode": enc_js_unicode,
    "xml-entity": enc_xml_entity,
    "url-double": enc_url_double,
    "url-mixed": enc_mixed_url,
}


def carrier(encoded: str, name: str) -> RequestMessage:
    """The request an encoded payload travels in: an XML document for XML entities, else the URL."""
    host = [(b"Host", b"app.example")]
    if name == "xml-entity":
        body = f'<?xml version="1.0"?><request><comment>{encoded}</comment></request>'.encode()
        return RequestMessage("POST", "/xml", host + [(b"Content-Type", b"application/xml")], body)
    if name in ("url-double", "url-mixed"):
        return RequestMessage("GET", "/search?q=" + encoded, host)
    return RequestMessage("GET", "/search?q=" + urllib.parse.quote(encoded, safe=""), host)


def encodable_attacks(name: str) -> Iterator[tuple[str, str]]:
    """(type, value) of the attack cases that an encoding `name` applies to."""
    in_body = name == "xml-entity"  # carried by an XML document, not by the URL
    for typ, section in ATTACKS.items():
        if typ == "scanner":
            continue  # tool fingerprints live in the User-Agent, unencoded by definition
        if in_body and typ in PLACES_BY_TYPE:
            continue  # header and mail injection do not travel in XML documents
        for value, where in entries(section):
            if where and ("query" not in where or in_body):
                continue
            yield typ, value


# ---------------------------------------------------------------------------- as a corpus


@dataclass(frozen=True, slots=True)
class LabelledRequest:
    """One labelled request, whatever it came from (a corpus record or a case)."""

    id: str
    source: str
    label: str  # "attack" | "benign"
    cls: str  # the attack type, or the benign group
    msg: RequestMessage
    placement: str = ""  # GoTestWAF's placement and encoding, where the source says (own corpus)
    encoding: str = ""


def labelled_cases(source: str = "cases", encoded_source: str = "cases-encoded") -> list[LabelledRequest]:
    """Every case as a request: attacks in each of their places, benign values in each of
    theirs, the whole requests (source `source`); and the attacks in every GoTestWAF encoding
    (source `encoded_source`: attacks only, classed by encoding)."""
    out: list[LabelledRequest] = []
    for typ, section in ATTACKS.items():
        for value, where in entries(section):
            for p in attack_places(typ, where):
                out.append(LabelledRequest(f"attack/{typ}/{p}/{value[:60]}", source, "attack", typ, place(value, p)))
    for group, section in BENIGN.items():
        for value in section:
            for p in benign_places(group):
                out.append(LabelledRequest(f"benign/{group}/{p}/{value[:60]}", source, "benign", group, place(value, p)))
    for case in REQUESTS:
        label = "benign" if case["expect"] == "benign" else "attack"
        cls = "requests" if label == "benign" else case["expect"]
        out.append(LabelledRequest(f"request/{case['name']}", source, label, cls, request_message(case)))
    for name, encode in ENCODINGS.items():
        for typ, value in encodable_attacks(name):
            out.append(LabelledRequest(f"{name}/{typ}/{value[:60]}", encoded_source, "attack", name,
                                       carrier(encode(value), name)))
    return out
