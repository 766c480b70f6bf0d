"""Guards around every console handler: authentication, CSRF, error shape, security headers."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web

from node.console.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Session,
    SessionStore,
    bearer_token,
    token_matches,
)
from node.console.params import ApiError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No inline script or style anywhere: the pages load /static/*.js and *.css only, so an
# attacker string that slips into markup still cannot run.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(slots=True)
class Principal:
    kind: str  # "bearer" or "session"
    session: Session | None = None


PRINCIPAL_KEY = web.RequestKey("wallarm_console_principal", Principal)


@dataclass(slots=True)
class Gate:
    token: str
    sessions: SessionStore

    def authenticate(self, request: web.Request) -> Principal | None:
        """Bearer token first (API clients); else the session cookie (browsers)."""
        auth = request.headers.get("Authorization")
        if auth is not None:
            # A wrong bearer is a failure even if a cookie is present: no silent fallback.
            return Principal("bearer") if token_matches(self.token, bearer_token(auth)) else None
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        return Principal("session", session) if session else None


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def same_origin(request: web.Request) -> bool:
    """A browser's Origin (or Referer) must name this very host when present."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc.lower() == (request.host or "").lower()


def csrf_ok(request: web.Request, session: Session, presented: str | None) -> bool:
    return same_origin(request) and token_matches(session.csrf_token, presented)


def api_handler(gate: Gate, handler: Handler) -> Handler:
    """401 without credentials, 403 on CSRF failure, ApiError -> 4xx JSON, crash -> 500 JSON."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        principal = gate.authenticate(request)
        if principal is None:
            return json_error(401, "authentication required: Authorization: Bearer <console token>",
                              {"WWW-Authenticate": 'Bearer realm="wallarm-console"'})
        if request.method in MUTATING and principal.kind == "session":
            assert principal.session is not None
            if not csrf_ok(request, principal.session, request.headers.get(CSRF_HEADER)):
                return json_error(403, f"CSRF check failed: send the session's {CSRF_HEADER} header")
        request[PRINCIPAL_KEY] = principal
        try:
            return await handler(request)
        except ApiError as e:
            return json_error(e.status, e.message)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("console API %s %s failed", request.method, request.path)
            return json_error(500, "internal error (see node log)")

    return wrapped


def page_handler(gate: Gate, handler: Handler) -> Handler:
    """Pages need a browser session; without one, go to the login page."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        principal = gate.authenticate(request)
        if principal is None or principal.kind != "session":
            raise web.HTTPSeeOther("/login?next=" + quote(request.path_qs, safe=""))
        request[PRINCIPAL_KEY] = principal
        return await handler(request)

    return wrapped


def safe_next(raw: str | None) -> str:
    """Only local paths after login: never an open redirect to another site."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/attacks"
    return raw


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        # Pages and API answers carry attack data: never cache them.
        response.headers.setdefault("Cache-Control", "no-store")
