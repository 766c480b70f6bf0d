"""Attack families generated from a class's grammar (tests/cases/grammar.yaml), not listed.

Each class has rules that combine its vocabulary the way the attack is built: a shell
command line is a prefix, a separator and a command whose word is rewritten by one of the
shell's own obfuscations; a traversal is a prefix, N steps up written one of many ways and a
target; an SSRF URL is a scheme, a host written in any IPv4/IPv6 spelling and a tail... The
full products are large, so a fixed-seed sample of each is taken (the same every run).

`families(cls)` -> (attack values, benign values); `placed(value, where)` -> a request.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import urllib.parse
from collections.abc import Callable, Iterator
from itertools import product

import yaml

from tests.support.cases import BROWSER_UA, CASES_DIR
from wallarm_wire.protocol import RequestMessage

GRAMMAR: dict = yaml.safe_load((CASES_DIR / "grammar.yaml").read_text("utf-8"))
SAMPLE = 400
PLACES = ("query", "json", "form", "header")


def _sample(items: list, n: int = SAMPLE, seed: int = 14) -> list:
    return items if len(items) <= n else random.Random(seed).sample(items, n)


# ---------------------------------------------------------------------------- shell

def _shell_words(word: str) -> Iterator[tuple[str, str]]:
    """(obfuscation, the command word as the shell would still run it)."""
    yield "plain", word
    if len(word) >= 2:
        yield "quote-split", f"{word[0]}'{word[1:-1]}'{word[-1]}" if len(word) > 2 else f"{word[0]}'{word[1]}'"
        yield "dquote-split", f'{word[0]}"{word[1]}"{word[2:]}'
        yield "backslash", "\\".join(word)
        yield "empty-quotes", f"{word[0]}''{word[1:]}"
        yield "dollar-at", f"{word[0]}$@{word[1:]}"
        yield "empty-var", f"{word[0]}${{x}}{word[1:]}"
        yield "glob", "/b??/" + (word[0] + "?" * (len(word) - 2) + word[-1] if len(word) > 2 else word[0] + "?")
        yield "bracket", f"/bin/{word[:-1]}[{word[-1]}]"


def _shell_lines(word: str, args: str) -> Iterator[str]:
    for _name, w in _shell_words(word):
        yield f"{w} {args}".rstrip()
        if args:
            yield f"{w}${{IFS}}{args.replace(' ', '${IFS}')}"
    if args:
        yield "{" + ",".join([word, *args.split(" ")]) + "}"
    if len(word) >= 2:
        yield f"a={word[:1]};b={word[1:]};$a$b {args}".rstrip()


def rce_attacks(text_kinds: bool = False) -> list[str]:
    g = GRAMMAR["rce"]
    seps = [s for s in g["separators"] if not (text_kinds and s in ("\n", "%0a"))]
    lines = [line for word, args in g["commands"] for line in _shell_lines(word, args)]
    out = [p + s + line for p, s, line in product(g["prefixes"], seps, lines)]
    out += [p + "$(" + line + ")" for p, line in product(g["prefixes"], lines)]
    out += [p + "`" + line + "`" for p, line in product(g["prefixes"], lines)]
    return _sample(out) + [p + w for p, w in product(g["prefixes"], g["windows"])]


# ---------------------------------------------------------------------------- traversal

def ptrav_attacks() -> list[str]:
    g = GRAMMAR["ptrav"]
    out = []
    for prefix, up, depth, target in product(g["prefixes"], g["ups"], g["depths"], g["targets"]):
        if depth == 1 and prefix and not prefix.startswith("/") and ":" not in prefix:
            depth = 2  # images/../x is back inside: one more step to leave the root
        out.append(prefix + up * depth + target)
    return _sample(out) + list(g["absolute"])


# ---------------------------------------------------------------------------- ssrf

def ipv4_spellings(address: str) -> list[str]:
    """`address` as inet_aton reads it in every spelling: dotted, decimal, hex, octal, mixed,
    short, IPv4-mapped and -compatible IPv6."""
    n = int(ipaddress.IPv4Address(address))
    b = [int(x) for x in address.split(".")]
    return [
        address,
        str(n),
        hex(n),
        "0" + oct(n)[2:],
        ".".join("0" + oct(x)[2:] for x in b),
        ".".join(hex(x) for x in b),
        f"{hex(b[0])}.{b[1]}.0{oct(b[2])[2:]}.{hex(b[3])}",
        f"{b[0]}.{(b[1] << 16) + (b[2] << 8) + b[3]}",
        f"{b[0]}.{b[1]}.{(b[2] << 8) + b[3]}",
        f"[::ffff:{address}]",
        f"[::ffff:{b[0] * 256 + b[1]:x}:{b[2] * 256 + b[3]:x}]",
        f"[0:0:0:0:0:ffff:{address}]",
    ]


def ssrf_attacks() -> list[str]:
    g = GRAMMAR["ssrf"]
    hosts = []
    for address in g["addresses"]:
        spellings = ipv4_spellings(address)
        # an internal address in its usual dotted form needs a telling tail to be an attack
        hosts += [(h, h != address or address in ("169.254.169.254", "100.100.100.200")) for h in spellings]
    hosts += [(name, name not in ("localhost", "[::1]")) for name in g["names"]]
    out = []
    for (host, always), scheme, tail in product(hosts, g["schemes"], g["tails"]):
        telling = always or scheme in ("gopher", "dict", "ftp") or tail in ("/admin", "/latest/meta-data/", ":6379/",
                                                                           ":22/", "/computeMetadata/v1/", ":11211/stats")
        if telling:
            out.append(f"{scheme}://{host}{tail}")
    return _sample(out) + ["http://0/", "http://127.1/", "http://0.0.0.0:80/", "http://①②⑦.⓪.⓪.①/",
                           "url=http://2852039166/latest/meta-data/", "http://[fd00:ec2::254]/latest/"]


# ---------------------------------------------------------------------------- nosqli

def nosqli_attacks() -> tuple[list[str], list[str]]:
    """(values, query-string names) carrying an operator in a key position."""
    g = GRAMMAR["nosqli"]
    values, keys = [], []
    for field, op in product(g["fields"], g["operators"]):
        values.append(json.dumps({field: {"$" + op: None}}))
        values.append(f'{{"{field}": {{"${op}": ""}}}}')
        values.append(f"{field}[${op}]=1")
        keys.append(f"{field}[${op}]")
        keys.append(f"{field}.${op}")
    for js in g["js"]:
        values.append(json.dumps({"$where": js}))
        values.append(f"$where={js}")
        keys.append("$where")
    return _sample(values), sorted(set(keys))


# ---------------------------------------------------------------------------- ldap

def ldapi_attacks() -> list[str]:
    g = GRAMMAR["ldapi"]
    out = [p + b + i + s for p, b, i, s in product(g["prefixes"], g["breakouts"], g["injected"], g["suffixes"])]
    return _sample(out) + list(g["whole"])


# ---------------------------------------------------------------------------- xxe

def xxe_attacks() -> list[str]:
    g = GRAMMAR["xxe"]
    out = []
    for uri, root in product(g["uris"], g["roots"]):
        out += [
            f'<?xml version="1.0"?><!DOCTYPE {root} [<!ENTITY xxe SYSTEM "{uri}">]><{root}>&xxe;</{root}>',
            f'<!DOCTYPE {root} [<!ENTITY % p SYSTEM "{uri}"> %p;]><{root}/>',
            f'<!DOCTYPE {root} [<!ENTITY x PUBLIC "-//A//B" "{uri}">]><{root}>&x;</{root}>',
            f'<!DOCTYPE {root} SYSTEM "{uri}"><{root}/>',
            f'<{root} xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include parse="text" href="{uri}"/></{root}>',
            f'<{root} xmlns:inc="http://www.w3.org/2001/XInclude"><inc:include href="{uri}"/></{root}>',
            f'<{root} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="{uri}"/>',
            f'<{root} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="urn:x {uri}"/>',
        ]
    out.append('<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>')
    return _sample(out)


# ---------------------------------------------------------------------------- placing

ATTACKS: dict[str, Callable[[], list[str]]] = {
    "ptrav": ptrav_attacks,
    "ssrf": ssrf_attacks,
    "ldapi": ldapi_attacks,
    "xxe": xxe_attacks,
}


def benign(cls: str) -> list[str]:
    return list(GRAMMAR[cls]["benign"])


def placed(value: str, where: str, encoding: str = "plain") -> RequestMessage:
    """A request with `value` in one place; `encoding` applies to query values (GoTestWAF's
    URL and Base64 encoders)."""
    host = [(b"Host", b"app.example"), BROWSER_UA]
    if where == "query":
        if encoding == "base64":
            value = base64.b64encode(value.encode()).decode()
        elif encoding == "url-double":
            value = urllib.parse.quote(value, safe="")
        return RequestMessage("GET", "/search?q=" + urllib.parse.quote(value, safe=""), host)
    if where == "json":
        body = json.dumps({"data": {"comment": value}}).encode()
        return RequestMessage("POST", "/api/comments", host + [(b"Content-Type", b"application/json")], body)
    if where == "form":
        body = urllib.parse.urlencode({"comment": value}).encode()
        return RequestMessage("POST", "/comments", host + [(b"Content-Type", b"application/x-www-form-urlencoded")], body)
    if where == "header":
        return RequestMessage("GET", "/", host + [(b"X-Client-Info", value.encode("utf-8"))])
    if where == "xmlbody":
        return RequestMessage("POST", "/xml", host + [(b"Content-Type", b"application/xml")], value.encode())
    if where == "query-key":
        return RequestMessage("GET", "/login?" + urllib.parse.quote(value, safe="[]$.") + "=1", host)
    raise ValueError(where)
