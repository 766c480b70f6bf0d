"""Flow -> wire: what the connector puts in a message to the node (docs/protocol.md).

Pure functions of a mitmproxy flow: the embedded HTTP message, the `X-Wallarm-*` protocol
headers, the client address behind trusted proxies, and body truncation. No I/O, no config
object: callers pass the few values that shape a message.
"""

from __future__ import annotations

import ipaddress

from mitmproxy import http

from wallarm_wire import protocol

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

NOT_TRUNCATED = -1


def header_safe(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def _strip_mapped(ip: str) -> str:
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def _in_nets(ip: str, nets: tuple[IPNet, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in n for n in nets)


def client_ip(flow: http.HTTPFlow, trusted: tuple[IPNet, ...]) -> str:
    """The peer address, or, when the peer is a trusted proxy, the first untrusted hop of XFF."""
    peer = flow.client_conn.peername
    ip = _strip_mapped(str(peer[0])) if peer else ""
    if not trusted or not ip or not _in_nets(ip, trusted):
        return ip
    xff = flow.request.headers.get_all("x-forwarded-for")
    hops = [h.strip() for line in xff for h in line.split(",") if h.strip()]
    for hop in reversed(hops):  # right to left: each hop was appended by the proxy after it
        hop = _strip_mapped(hop)
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return ip  # garbage in the chain: do not believe anything left of it
        if not _in_nets(hop, trusted):
            return hop
        ip = hop
    return ip


def client_protocol(flow: http.HTTPFlow) -> str:
    return "https" if flow.client_conn.tls_established else "http"


def has_no_body(req: http.Request) -> bool:
    """An HTTP/1 request whose framing says it has no body (RFC 9112 6.3: no Content-Length and
    no Transfer-Encoding means none). HTTP/2 and 3 say it in frames mitmproxy does not expose here."""
    if req.is_http2 or req.is_http3 or "transfer-encoding" in req.headers:
        return False
    return req.headers.get("content-length", "0").strip() == "0"


def cut_body(body: bytes, limit: int) -> tuple[bytes, int]:
    """(the body the node gets, the original length when it was cut, else NOT_TRUNCATED)."""
    if len(body) > limit:
        return body[:limit], len(body)
    return body, NOT_TRUNCATED


def declared_length(headers: http.Headers) -> int:
    """A streamed body's declared Content-Length, or 0 when unknown (chunked)."""
    declared = headers.get("content-length", "")
    return int(declared) if declared.isdigit() else 0


def _wire_version(version: str) -> str:
    return version if version.startswith("HTTP/") else "HTTP/1.1"


def request_wire(flow: http.HTTPFlow, body: bytes) -> bytes:
    """The client's request as HTTP/1.1 bytes (`message/http; msgtype=request`)."""
    req = flow.request
    fields = req.headers.fields
    if req.is_http2 or req.is_http3:  # no Host line in h2; the authority carries it
        if req.data.authority and not any(k.lower() == b"host" for k, _ in fields):
            fields = ((b"Host", req.data.authority), *fields)
    msg = protocol.RequestMessage(req.method, req.path, list(fields), body, _wire_version(req.http_version))
    return protocol.encode_request(msg)


def response_wire(resp: http.Response, body: bytes) -> bytes:
    """The upstream's (or the block) answer as HTTP/1.1 bytes (`message/http; msgtype=response`)."""
    msg = protocol.ResponseMessage(resp.status_code, list(resp.headers.fields), body, resp.reason,
                                   _wire_version(resp.http_version))
    return protocol.encode_response(msg)


def flow_header_lines(flow: http.HTTPFlow, rid: str, trusted: tuple[IPNet, ...], delivery: str) -> bytes:
    """The `X-Wallarm-*` lines every message of one flow carries (CRLF-terminated): built once per
    flow, its request and response messages both use them."""
    host = flow.client_conn.sni or flow.request.host_header or flow.request.host
    return (f"{protocol.H_REQUEST_ID}: {rid}\r\n"
            f"{protocol.H_FORWARDED_FOR}: {client_ip(flow, trusted)}\r\n"
            f"{protocol.H_FORWARDED_HOST}: {header_safe(host)}\r\n"
            f"{protocol.H_FORWARDED_PROTO}: {client_protocol(flow)}\r\n"
            f"{protocol.H_DELIVERY}: {delivery}\r\n").encode("utf-8", "replace")


_CONTENT_TYPE_LINES = {ct: f"Content-Type: {ct}\r\n".encode() for ct in
                       (protocol.CONTENT_TYPE_REQUEST, protocol.CONTENT_TYPE_RESPONSE)}


def message_header_lines(flow_lines: bytes, content_type: str, truncated: int) -> bytes:
    """One message's protocol header lines (CRLF-terminated; the client adds the length): its
    content type, the flow's lines (flow_header_lines) and the body's original length if cut."""
    head = _CONTENT_TYPE_LINES[content_type] + flow_lines
    if truncated != NOT_TRUNCATED:
        head += f"{protocol.H_BODY_TRUNCATED}: {truncated}\r\n".encode()
    return head
