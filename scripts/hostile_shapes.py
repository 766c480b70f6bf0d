"""Hostile request shapes of any size, for timing the node on what an attacker would send.

`build(shape, size)` returns a RequestMessage whose variable part is about `size` bytes. The
shapes: long runs of each character class and of shell syntax, `key=value` and `a=b;` runs,
nested URL and Base64 encodings, deep JSON and XML, many fields (JSON keys the engine must judge
among them), many headers, distinct shell globs (each one a walk of the command paths), and an
attack with padding in each
place a request carries data (query, form, JSON, multipart, header, cookie, path). Used by
scripts/bench_hostile.py (through a running node) and tests/test_node_hostile.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import quote

from wallarm_wire.protocol import RequestMessage

ATTACK = "<script>alert(1);</script>"
SQLI = "' OR 1=1--"
FORM = b"application/x-www-form-urlencoded"


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _form(value: str) -> RequestMessage:
    body = ("comment=" + value).encode("utf-8", "surrogateescape")
    return RequestMessage("POST", "/form", [(b"Host", b"shop.test"), (b"Content-Type", FORM)], body)


def _json(body: bytes) -> RequestMessage:
    return RequestMessage("POST", "/api", [(b"Host", b"api.test"), (b"Content-Type", b"application/json")], body)


def _run(unit: str) -> Callable[[int], RequestMessage]:
    """A run of one character class, then an attack: the issue 13 shape (`AAAA...;<script>`)."""
    return lambda size: _form(_fill(unit, size) + ";" + ATTACK)


def _nested_url(size: int) -> RequestMessage:
    """The attack URL-encoded 1 to 16 times over, again and again, up to `size`."""
    levels = [quote(SQLI, safe="")]
    for _ in range(15):
        levels.append(levels[-1].replace("%", "%25"))  # what quote() does to an encoded text
    parts: list[str] = []
    total = 0
    while total < size:
        parts.append(levels[len(parts) % len(levels)])
        total += len(parts[-1]) + 1
    return RequestMessage("GET", "/search?q=" + "+".join(parts)[:size], [(b"Host", b"shop.test")])


def _nested_base64(size: int) -> RequestMessage:
    value = ATTACK.encode()
    while len(value) < size:
        value = base64.b64encode(value)
    return _form(value[:size].decode())


def _deep_json(size: int) -> RequestMessage:
    depth = size // 6
    return _json(b'{"a":' * depth + json.dumps(ATTACK).encode() + b"}" * depth)


def _deep_json_arrays(size: int) -> RequestMessage:
    depth = size // 2
    return _json(b"[" * depth + json.dumps(SQLI).encode() + b"]" * depth)


def _deep_xml(size: int) -> RequestMessage:
    depth = size // 7
    body = b"<a><b>" * (depth // 2) + ATTACK.replace("<", "&lt;").encode() + b"</b></a>" * (depth // 2)
    return RequestMessage("POST", "/xml", [(b"Host", b"api.test"), (b"Content-Type", b"application/xml")], body)


def _many_fields(size: int) -> RequestMessage:
    n = max(size // 12, 1)
    body = "&".join(f"f{i}=v{i}" for i in range(n)) + "&last=" + quote(SQLI)
    return RequestMessage("POST", "/form", [(b"Host", b"shop.test"), (b"Content-Type", FORM)], body.encode())


def _many_json_fields(size: int) -> RequestMessage:
    n = max(size // 14, 1)
    doc = {f"k{i}": i for i in range(n)}
    doc["last"] = SQLI
    return _json(json.dumps(doc).encode())


def _judged_json_keys(size: int) -> RequestMessage:
    """Distinct keys that are no plain token (a space and a quote in each): the engine judges
    every one, where many:json-fields' `k1`, `k2` are dismissed in bulk."""
    n = max(size // 14, 1)
    doc: dict[str, object] = {f"k {i}'x": 1 for i in range(n)}
    doc["last"] = SQLI
    return _json(json.dumps(doc).encode())


def _shell_syntax(size: int) -> RequestMessage:
    """Shell separators, substitutions and redirections naming no command, in one form value:
    every separator is a place the shell analyser looks for a command, then an attack."""
    return _form(quote(_fill(";|&$(`x`)<>{}\n", size) + ";" + ATTACK, safe=""))


def _many_headers(size: int) -> RequestMessage:
    n = max(size // 20, 1)
    headers = [(b"Host", b"shop.test")] + [(b"X-H-%d" % i, b"v%d" % i) for i in range(n)]
    headers.append((b"X-Last", ATTACK.encode()))
    return RequestMessage("GET", "/", headers)


def _repeated_names(size: int) -> RequestMessage:
    """One name given again and again with values that are not plain tokens, then an attack
    under it: every value is judged, and all of them joined (request._join_repeated)."""
    unit = "q=%3Cb%3Ex%3C%2Fb%3E&"
    body = _fill(unit, size) + "q=" + quote(SQLI)
    return RequestMessage("POST", "/form", [(b"Host", b"shop.test"), (b"Content-Type", FORM)], body.encode())


def _fullwidth_prose(size: int) -> RequestMessage:
    """Chinese prose whose fullwidth punctuation sits next to ASCII (it asks for the fold,
    readings._folded), then a fullwidth attack."""
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in ATTACK)
    return _json(json.dumps({"note": _fill("备案（含）1个月：https，", size // 3) + fullwidth}, ensure_ascii=False).encode())


def _distinct_glob(i: int) -> str:
    """`;/bin/?` and a name no command has, different for each `i`: each is resolved against the
    command paths anew (no cache holds it)."""
    name = "".join("abcdefghijklmnopqrstuvwxyz0123456789"[(i // 36**k) % 36] for k in range(4))
    return f";/bin/?x{name}q "


def _globs_in_one_value(size: int) -> RequestMessage:
    """Distinct globbed command paths in one value, up to `size`."""
    return _form("".join(_distinct_glob(i) for i in range(max(size // 14, 1))))


def _globs_in_many_fields(size: int) -> RequestMessage:
    """The same, 15 to a field (under a window's limit on glob walks), in as many fields as fit."""
    per_field = 15 * 14
    fields = [quote("".join(_distinct_glob(f * 15 + i) for i in range(15))) for f in range(max(size // per_field, 1))]
    body = "&".join(f"f{i}={v}" for i, v in enumerate(fields))
    return RequestMessage("POST", "/form", [(b"Host", b"shop.test"), (b"Content-Type", FORM)], body.encode())


def _globs_in_lines(size: int) -> RequestMessage:
    """Distinct globbed command paths, each starting a line of a JSON string (free text, where
    a line break starts a command line), up to `size`."""
    text = "".join("\n" + _distinct_glob(i)[1:] + "x" for i in range(max(size // 15, 1)))
    return _json(json.dumps({"note": text}).encode())


def _pad(size: int) -> str:
    return _fill("a", size)


def _attack_in_query(size: int) -> RequestMessage:
    return RequestMessage("GET", f"/search?pad={_pad(size)}&q={quote(SQLI)}", [(b"Host", b"shop.test")])


def _attack_in_form(size: int) -> RequestMessage:
    body = f"pad={_pad(size)}&q={quote(SQLI)}".encode()
    return RequestMessage("POST", "/form", [(b"Host", b"shop.test"), (b"Content-Type", FORM)], body)


def _attack_in_json(size: int) -> RequestMessage:
    return _json(json.dumps({"pad": _pad(size), "q": SQLI}).encode())


def _attack_in_multipart(size: int) -> RequestMessage:
    body = (f"--B\r\nContent-Disposition: form-data; name=\"pad\"\r\n\r\n{_pad(size)}\r\n"
            f"--B\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\n{ATTACK}\r\n--B--\r\n").encode()
    return RequestMessage("POST", "/upload", [(b"Host", b"shop.test"),
                                              (b"Content-Type", b"multipart/form-data; boundary=B")], body)


def _attack_in_header(size: int) -> RequestMessage:
    return RequestMessage("GET", "/", [(b"Host", b"shop.test"), (b"X-Pad", _pad(size).encode()),
                                       (b"X-Q", ATTACK.encode())])


def _attack_in_header_value(size: int) -> RequestMessage:
    return RequestMessage("GET", "/", [(b"Host", b"shop.test"), (b"Referer", (_pad(size) + ATTACK).encode())])


def _attack_in_cookie(size: int) -> RequestMessage:
    return RequestMessage("GET", "/", [(b"Host", b"shop.test"),
                                       (b"Cookie", f"pad={_pad(size)}; q={quote(SQLI)}".encode())])


def _attack_in_path(size: int) -> RequestMessage:
    return RequestMessage("GET", f"/{_pad(size)}/../../etc/passwd", [(b"Host", b"shop.test")])


SHAPES: dict[str, Callable[[int], RequestMessage]] = {
    "run:word": _run("A"),
    # runs of base64 characters one short of a token (readings._B64_TOKEN_RE starts only where a run does)
    "run:short-tokens": _run("abcdefghijklm "),
    "run:digits": _run("7"),
    "run:spaces": _run(" "),
    "run:quotes": _run("'\""),
    "run:lt": _run("<"),
    "run:percent": _run("%"),
    "run:backslash": _run("\\"),
    "run:control": _run("\x01\x02\x1f"),
    "run:secret-words": _run("password"),
    "run:key=value": _run("key=value"),
    "run:a=b;": _run("a=b;"),
    # the xss dangling-markup rule: tags ending at quotes (closed by the next tag's, or never)
    "run:url-quotes": _run("<a href='//e"),
    "run:url-values-lt": _run('<a href="//x <'),
    # the sqli select list folded over its operand chain (sqli._first_column_folded)
    "run:column-chain": _run("1 union select a||b||"),
    # the SQL tokenizer (_sqltok.c): line comments with SQL after each (the rest of the window
    # is read for more than white space at each), block comments never closed, doubled quotes
    # up to a backslash that ends the window (the literal backs off to the last pair)
    "run:sql-line-comments": _run("' union#c\n"),
    "run:sql-open-comments": _run("/*!1 or/* '"),
    "run:sql-quote-pairs": _run("'a''b\\"),
    # the base64 token search (readings._tokens_decoded, _b64scan.c): tokens that are no base64
    # of text (beacon layout codes), and tokens that are, each decoded and judged
    "run:beacon-tokens": _run("@4u/1m/I//50/4e/3k/g/5/MT/-1+"),
    "run:text-tokens": _run("Y2F0IC9ldGMvaG9zdHM7IA== "),
    "nested:url": _nested_url,
    "nested:base64": _nested_base64,
    "deep:json-objects": _deep_json,
    "deep:json-arrays": _deep_json_arrays,
    "deep:xml": _deep_xml,
    "many:form-fields": _many_fields,
    "many:json-fields": _many_json_fields,
    "many:judged-json-keys": _judged_json_keys,
    "many:headers": _many_headers,
    "many:repeated-names": _repeated_names,
    "run:fullwidth-prose": _fullwidth_prose,
    "run:shell-syntax": _shell_syntax,
    "globs:one-value": _globs_in_one_value,
    "globs:many-fields": _globs_in_many_fields,
    "globs:lines": _globs_in_lines,
    "padded:query": _attack_in_query,
    "padded:form": _attack_in_form,
    "padded:json": _attack_in_json,
    "padded:multipart": _attack_in_multipart,
    "padded:header": _attack_in_header,
    "padded:header-value": _attack_in_header_value,
    "padded:cookie": _attack_in_cookie,
    "padded:path": _attack_in_path,
}

SIZES = [1024, 8 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024]


def build(shape: str, size: int) -> RequestMessage:
    return SHAPES[shape](size)
