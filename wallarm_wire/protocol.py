"""Wire protocol v1 between the connector and the node: the one place the contract lives.

Both sides import this module; `docs/protocol.md` describes the same thing for humans.

A message is one `POST` to the node address. Its body is the original HTTP message in
HTTP/1.1 wire form (`message/http`): start line, header lines, a blank line, then the body.
The body is *everything after the blank line*; the embedded `Content-Length` is rewritten to
match and `Transfer-Encoding` is dropped, so the node never has to de-chunk.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _q  # what json.dumps uses for str (C)
from typing import Literal

PROTOCOL_VERSION = 1

MSGTYPE_REQUEST = "request"
MSGTYPE_RESPONSE = "response"
CONTENT_TYPE_REQUEST = "message/http; msgtype=request"
CONTENT_TYPE_RESPONSE = "message/http; msgtype=response"

# Headers the connector sets on the POST to the node.
H_REQUEST_ID = "X-Wallarm-Request-Id"
H_FORWARDED_FOR = "X-Wallarm-Forwarded-For"
H_FORWARDED_HOST = "X-Wallarm-Forwarded-Host"
H_FORWARDED_PROTO = "X-Wallarm-Forwarded-Proto"
H_CONNECTOR_TYPE = "X-Wallarm-Connector-Type"
H_CONNECTOR_VERSION = "X-Wallarm-Connector-Version"
H_INSTANCE = "X-Wallarm-Instance"
H_DELIVERY = "X-Wallarm-Delivery"
H_BODY_TRUNCATED = "X-Wallarm-Body-Truncated"
H_SECRET = "X-Wallarm-Secret"  # optional shared secret; the node refuses foreign connectors

CONNECTOR_TYPE = "mitmproxy"
DELIVERY_SYNC = "sync"
DELIVERY_ASYNC = "async"

# Node answers.
STATUS_PASS = 200
STATUS_BLOCK = 403

REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# The embedded message's head (start line + headers) has no limit of its own: mitmproxy 12
# accepts any HTTP/1 head (its reader has none) and the node must judge whatever the connector
# forwards. The POST that carries it is bounded by the node's message size limit, and
# decoding is linear in it.

Action = Literal["pass", "block"]


class ProtocolError(ValueError):
    """A message that cannot be understood; `str(err)` is the reason given back (HTTP 400)."""


_ACTION_PASS = b'"action":"pass"'


def _checked_action(action: object) -> Action:
    """A verdict's `action` member; ValueError unless "pass" or "block"."""
    if action == "pass" or action == "block":
        return action  # type: ignore[return-value]
    raise ValueError(f"unknown action {action!r}")


class _RequestIds:
    """32 hex digits: a random 64-bit prefix per process, then a counter. Unique across processes
    and workers (the prefix) without a getrandom() call per request; a forked child draws its own
    prefix. Nothing trusts an id being unguessable: it names a request to the node and in logs."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(int.from_bytes(os.urandom(4)))  # not 0: ids of restarts differ in the tail too

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


_request_ids = _RequestIds()
os.register_at_fork(after_in_child=_request_ids.reseed)


def new_request_id() -> str:
    return _request_ids.next()


def is_valid_request_id(value: str | None) -> bool:
    return bool(value) and REQUEST_ID_RE.match(value) is not None  # type: ignore[arg-type]


HeaderFields = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class RequestMessage:
    method: str
    target: str  # raw request target as sent by the client: path and query, still percent-encoded
    headers: HeaderFields  # not changed after the message is made (the lookup index relies on it)
    body: bytes = b""
    http_version: str = "HTTP/1.1"
    _index: dict[bytes, bytes] | None = field(default=None, repr=False, compare=False)

    def header(self, name: str, default: str | None = None) -> str | None:
        if len(self.headers) <= INDEXED_HEADERS:
            return header_value(self.headers, name, default)
        if self._index is None:  # 50,000 header lines made each lookup a long walk
            self._index = first_values(self.headers)
        value = self._index.get(name.lower().encode("latin-1"))
        return default if value is None else value.decode("utf-8", "surrogateescape")


@dataclass(slots=True)
class ResponseMessage:
    status: int
    headers: HeaderFields
    body: bytes = b""
    reason: str = ""
    http_version: str = "HTTP/1.1"

    def header(self, name: str, default: str | None = None) -> str | None:
        return header_value(self.headers, name, default)


INDEXED_HEADERS = 32  # above this many header lines, lookups go through a dict built once


def first_values(headers: HeaderFields) -> dict[bytes, bytes]:
    """Lower-cased name -> the first value of that name (as header_value finds it)."""
    index: dict[bytes, bytes] = {}
    for key, value in headers:
        index.setdefault(key.lower(), value)
    return index


def header_value(headers: HeaderFields, name: str, default: str | None = None) -> str | None:
    wanted = name.lower().encode("latin-1")
    for key, value in headers:
        if key.lower() == wanted:
            return value.decode("utf-8", "surrogateescape")
    return default


# ---------------------------------------------------------------------------- encoding

_HOP_BY_HOP = {b"transfer-encoding", b"content-length"}


def _head_lines(headers: HeaderFields, body_length: int) -> list[bytes]:
    lines = [k + b": " + v for k, v in headers if k.lower() not in _HOP_BY_HOP]
    lines.append(b"Content-Length: " + str(body_length).encode())
    return lines


def encode_request(msg: RequestMessage) -> bytes:
    start = f"{msg.method} {msg.target} {msg.http_version}".encode("utf-8", "surrogateescape")
    return b"\r\n".join([start, *_head_lines(msg.headers, len(msg.body))]) + b"\r\n\r\n" + msg.body


def encode_response(msg: ResponseMessage) -> bytes:
    reason = msg.reason or ""
    # three digits always: a status of 000 decodes as 0, and "0" is not a status line (tests/fuzz)
    start = f"{msg.http_version} {msg.status:03d} {reason}".rstrip().encode("utf-8", "surrogateescape")
    return b"\r\n".join([start, *_head_lines(msg.headers, len(msg.body))]) + b"\r\n\r\n" + msg.body


# ---------------------------------------------------------------------------- decoding

TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # RFC 9110 tchar


def is_token(value: bytes) -> bool:
    """A non-empty RFC 9110 token (method, header name): nothing left once token characters go."""
    return bool(value) and not value.translate(None, TOKEN_CHARS)


_VERSION_RE = re.compile(r"^HTTP/[0-9](\.[0-9])?$")  # ASCII digits: \d takes any script's (tests/fuzz)


def msgtype_of(content_type: str | None) -> str:
    """`message/http; msgtype=request` -> "request"; anything else raises ProtocolError."""
    if content_type == CONTENT_TYPE_REQUEST:  # what the connector sends, spelled exactly
        return MSGTYPE_REQUEST
    if content_type == CONTENT_TYPE_RESPONSE:
        return MSGTYPE_RESPONSE
    if not content_type:
        raise ProtocolError("missing Content-Type (want message/http)")
    parts = [p.strip() for p in content_type.split(";")]
    if parts[0].lower() != "message/http":
        raise ProtocolError(f"wrong Content-Type {parts[0]!r} (want message/http)")
    for p in parts[1:]:
        key, _, value = p.partition("=")
        if key.strip().lower() == "msgtype":
            value = value.strip().strip('"').lower()
            if value in (MSGTYPE_REQUEST, MSGTYPE_RESPONSE):
                return value
            raise ProtocolError(f"unknown msgtype {value!r}")
    return MSGTYPE_REQUEST  # RFC 9112 default for message/http without msgtype


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """(head with LF line ends, body)."""
    end = data.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = data.find(b"\n\n"), 2
    if end < 0:
        raise ProtocolError("truncated message: no end of headers")
    return data[:end].replace(b"\r\n", b"\n"), data[end + sep :]


# one header line each (the head is split on LF; a CR inside a value stays in it); `.` stops at
# the line's end, so every match is linear and the lines are found in one pass of C code
_HEADER_LINE_RE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*)$", re.MULTILINE)


def _start_line(head: bytes) -> str:
    return head.split(b"\n", 1)[0].decode("utf-8", "surrogateescape")


def _parse_head_lines(head: bytes) -> HeaderFields:
    """The header lines after the start line, as (name, value) pairs."""
    first_end = head.find(b"\n")
    if first_end < 0:
        return []
    if b"\n " not in head and b"\n\t" not in head:  # no folded line: the fast path
        found = _HEADER_LINE_RE.findall(head, first_end + 1)
        if len(found) == head.count(b"\n"):
            if b" \n" in head or b"\t\n" in head or head.endswith((b" ", b"\t")):
                return [(name, value.rstrip(b" \t")) for name, value in found]
            return found  # no white space at any line's end: findall's tuples are the fields
    return _parse_headers(head[first_end + 1:].split(b"\n"))  # folding, or a malformed line to name


def _parse_headers(lines: list[bytes]) -> HeaderFields:
    fields: HeaderFields = []
    folded: dict[int, list[bytes]] = {}  # field index -> its value and continuation lines
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:  # obsolete line folding: join to previous value
            # joined once at the end: appending to the value on every line would copy it each time
            folded.setdefault(len(fields) - 1, [fields[-1][1]]).append(line.strip())
            continue
        name, colon, value = line.partition(b":")
        if not colon or not is_token(name):
            raise ProtocolError(f"malformed header line {line[:40]!r}")
        fields.append((name, value.strip(b" \t")))
    for i, parts in folded.items():
        # RFC 9112 5.2: each fold becomes a space, then the value is trimmed (an empty
        # continuation line would otherwise leave a trailing space; tests/fuzz)
        fields[i] = (fields[i][0], b" ".join(parts).strip(b" \t"))
    return fields


def decode_request(data: bytes) -> RequestMessage:
    head, body = _split_head(data)
    start = _start_line(head)
    parts = start.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise ProtocolError(f"malformed request line {start[:60]!r}")
    method, target, version = parts
    if not is_token(method.encode("utf-8", "surrogateescape")):
        raise ProtocolError(f"malformed method {method[:20]!r}")
    if not _VERSION_RE.match(version):
        raise ProtocolError(f"malformed HTTP version {version[:20]!r}")
    return RequestMessage(method, target, _parse_head_lines(head), body, version)


def decode_response(data: bytes) -> ResponseMessage:
    head, body = _split_head(data)
    start = _start_line(head)
    version, _, rest = start.partition(" ")
    code, _, reason = rest.partition(" ")
    if not _VERSION_RE.match(version) or not (code.isascii() and code.isdigit() and len(code) == 3):
        raise ProtocolError(f"malformed status line {start[:60]!r}")
    return ResponseMessage(int(code), _parse_head_lines(head), body, reason, version)


# ---------------------------------------------------------------------------- verdicts


@dataclass(slots=True)
class AttackInfo:
    type: str  # sqli, xss, ptrav, ...
    location: str  # query.id, json.user.name, header.user-agent, path, ...
    rule_id: str
    excerpt: str = ""
    score: int = 0


@dataclass(slots=True)
class Verdict:
    """The node's JSON answer. HTTP 200 = pass, 403 = block; the body explains why."""

    request_id: str
    action: Action = "pass"
    mode: str = ""
    attacks: list[AttackInfo] = field(default_factory=list)
    reason: str = ""  # e.g. "attack", "partial", "denylist", "allowlist", "mode off"
    # why the request was only partly inspected (a limit ended inspection early): e.g.
    # ["fields", "deadline"]; empty when it was judged whole
    partial: list[str] = field(default_factory=list)

    @property
    def status(self) -> int:
        return STATUS_BLOCK if self.action == "block" else STATUS_PASS

    def to_json(self) -> bytes:
        # Written by hand around the C string encoder: the node answers every in-line request
        # with this, and json.dumps of the whole dict cost more than the rest of a cached verdict.
        # The output is exactly json.dumps(..., separators=(",", ":")) (tested).
        attacks = ",".join(
            f'{{"type":{_q(a.type)},"location":{_q(a.location)},"rule_id":{_q(a.rule_id)},'
            f'"excerpt":{_q(a.excerpt)},"score":{int(a.score)}}}'
            for a in self.attacks
        )
        partial = ",".join(map(_q, self.partial))
        return (f'{{"protocol":{PROTOCOL_VERSION},"request_id":{_q(self.request_id)},"action":{_q(self.action)},'
                f'"mode":{_q(self.mode)},"reason":{_q(self.reason)},"attacks":[{attacks}],"partial":[{partial}]}}').encode()

    @staticmethod
    def action_of(data: bytes) -> Action:
        """A verdict body's action, checked as from_json checks it, without reading the rest: what
        a pass needs (most answers; their attacks, in monitoring mode, are the node's to store)."""
        if data[:1] == b"{" and data[-1:] == b"}" and _ACTION_PASS in data:
            # to_json's spelling: in JSON text `":"` occurs only between a key and a string value
            # (a quote inside a string is escaped), so this is the action member, not an excerpt's
            # text; the parse costs more than the rest of a pass
            return "pass"
        try:
            return _checked_action(json.loads(data)["action"])
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise ProtocolError(f"unreadable verdict: {e}") from e

    @classmethod
    def from_json(cls, data: bytes) -> Verdict:
        try:
            obj = json.loads(data)
            action = _checked_action(obj["action"])
            attacks = [
                AttackInfo(str(a["type"]), str(a.get("location", "")), str(a.get("rule_id", "")),
                           str(a.get("excerpt", "")), int(a.get("score", 0)))
                for a in obj.get("attacks", [])
            ]
            # absent from nodes before it existed; anything but a list of strings is ignored
            partial = obj.get("partial")
            partial = [str(p) for p in partial] if isinstance(partial, list) else []
            return cls(str(obj.get("request_id", "")), action, str(obj.get("mode", "")), attacks,
                       str(obj.get("reason", "")), partial)
        # OverflowError: a score of 1e400 (json reads inf); RecursionError: arrays nested past
        # the interpreter's depth (json's C scanner gives up cleanly); both found by tests/fuzz
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as e:
            raise ProtocolError(f"unreadable verdict: {e}") from e
