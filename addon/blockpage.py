"""The answer a blocked client gets: a short HTML page or JSON, chosen by the client's Accept."""

from __future__ import annotations

import html
import json
from http import HTTPStatus

from mitmproxy import http

DEFAULT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{status} {reason}</title></head>
<body><h1>{status} {reason}</h1>
<p>This request was blocked by the API security policy.</p>
<p>Request id: <code>{request_id}</code></p></body></html>
"""


def wants_json(accept: str) -> bool:
    """True when the client prefers JSON over HTML (API clients); browsers get HTML."""
    accept = accept.lower()
    if not accept:
        return False
    json_pos = min((p for p in (accept.find("application/json"), accept.find("+json")) if p >= 0), default=-1)
    html_pos = accept.find("text/html")
    return json_pos >= 0 and (html_pos < 0 or json_pos < html_pos)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Blocked"


def render_page(template: str, status: int, request_id: str) -> str:
    """Fill `{status}`, `{reason}` and `{request_id}` without letting other braces break the page."""
    return (template.replace("{status}", str(status))
            .replace("{reason}", html.escape(_reason(status)))
            .replace("{request_id}", request_id))


def block_response(status: int, request_id: str, accept: str, page: str | None,
                   message: str = "blocked") -> http.Response:
    if wants_json(accept):
        body = json.dumps({"status": status, "error": message, "request_id": request_id}).encode()
        ctype = "application/json"
    else:
        body = render_page(page or DEFAULT_PAGE, status, request_id).encode("utf-8")
        ctype = "text/html; charset=utf-8"
    return http.Response.make(status, body, {
        "Content-Type": ctype,
        "Cache-Control": "no-store",
        "X-Wallarm-Request-Id": request_id,
    })
