"""Guards around every console handler: authentication, CSRF, error shape, security headers."""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web

from node.console.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    Session,
    SessionStore,
    bearer_token,
    token_matches,
)
from node.console.login_limit import LoginLimiter, client_key
from node.console.params import ApiError
from node.metrics import NodeMetrics
from node.store.base import StoreError

if TYPE_CHECKING:
    from multidict import MultiDictProxy  # aiohttp's form type

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
    # same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on its own
    # POSTs, and the CSRF check needs the real origin. Other sites still get no Referer.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


@dataclass(slots=True)
class Principal:
    kind: str  # "bearer" or "session"
    session: Session | None = None


PRINCIPAL_KEY = web.RequestKey("wallarm_console_principal", Principal)


class LockedOut(Exception):
    """This client failed too often: answer 429 without looking at its token."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"locked out for {retry_after:.0f}s")
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


@dataclass(slots=True)
class Gate:
    token: str
    sessions: SessionStore
    limiter: LoginLimiter
    metrics: NodeMetrics

    def check_token(self, request: web.Request, presented: str | None, via: str) -> bool:
        """Compare a presented console token, under the per-client limit on wrong ones.
        Raises LockedOut (before comparing) while the client is locked out."""
        key = client_key(request.remote)
        decision = self.limiter.check(key)
        if not decision.allowed:
            self.metrics.console_auth.inc(via, "refused")
            raise LockedOut(decision.retry_after)
        if token_matches(self.token, presented):
            self.limiter.succeeded(key)
            self.metrics.console_auth.inc(via, "ok")
            return True
        self.metrics.console_auth.inc(via, "wrong")
        decision = self.limiter.failed(key)
        if decision.allowed:
            log.warning("console: wrong token (%s) from %s", via, request.remote)
        else:
            self.metrics.console_lockouts.inc()
            log.warning("console: wrong token (%s) from %s: locked out for %.0fs", via, request.remote,
                        decision.retry_after)
        return False

    async def authenticate(self, request: web.Request) -> Principal | None:
        """Bearer token first (API clients); else the session cookie (browsers)."""
        auth = request.headers.get("Authorization")
        if auth is not None:
            # A wrong bearer is a failure even if a cookie is present: no silent fallback.
            return Principal("bearer") if self.check_token(request, bearer_token(auth), "bearer") else None
        session = await self.sessions.get(request.cookies.get(SESSION_COOKIE))
        return Principal("session", session) if session else None


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def locked_out_response(request: web.Request, e: LockedOut) -> web.Response:
    message = f"too many wrong console tokens from your address: retry in {e.retry_after_header}s"
    headers = {"Retry-After": e.retry_after_header}
    if request.path.startswith("/api/"):
        return json_error(429, message, headers)
    return web.Response(status=429, text=message, headers=headers)


def _origin_host(value: str) -> str | None:
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. "http://[": not an origin at all
        return None
    return parts.netloc.lower() if parts.scheme in ("http", "https") and parts.netloc else None


def foreign_origin(request: web.Request) -> bool:
    """The browser says this request comes from another origin (another host or port, an
    opaque "null" origin, a cross-site fetch)."""
    if request.headers.get("Sec-Fetch-Site", "same-origin").lower() not in ("same-origin", "none"):
        return True
    host = (request.host or "").lower()
    for name in ("Origin", "Referer"):
        value = request.headers.get(name)
        if value is not None and _origin_host(value) != host:
            return True
    return False


async def read_form(request: web.Request) -> MultiDictProxy | None:
    """The posted form, or None when it cannot be read (a bad boundary, bytes that are not
    UTF-8, an unknown charset...): the caller answers 400, never 500."""
    try:
        return await request.post()
    except (ValueError, LookupError):  # UnicodeDecodeError is a ValueError
        return None


def names_an_origin(request: web.Request) -> bool:
    """Origin or Referer present: a browser (they are not optional for a browser's POST)."""
    return "Origin" in request.headers or "Referer" in request.headers


def csrf_ok(request: web.Request, session: Session, presented: str | None) -> bool:
    """A cookie session's state change: the session's CSRF token, and the browser must say
    where the request comes from (its own origin; a foreign one is refused by the middleware)."""
    return names_an_origin(request) and not foreign_origin(request) and token_matches(session.csrf_token, presented)


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """For every route, present or future: a state change from a foreign origin is refused
    whatever its credentials, a locked-out client gets 429, an unavailable store 503."""
    if request.method in MUTATING and foreign_origin(request):
        message = "cross-origin request refused: the Origin/Referer is not this console"
        if request.path.startswith("/api/"):
            return json_error(403, message)
        return web.Response(status=403, text=message)
    try:
        return await handler(request)
    except LockedOut as e:
        return locked_out_response(request, e)
    except StoreError as e:  # sessions are in the store: without it nobody can be authenticated
        log.error("console %s %s: %s", request.method, request.path, e)
        if request.path.startswith("/api/"):
            return json_error(503, "the node's store is unavailable")
        return web.Response(status=503, text="the node's store is unavailable")


def api_handler(gate: Gate, handler: Handler) -> Handler:
    """401 without credentials, 403 on CSRF failure, ApiError -> 4xx JSON, crash -> 500 JSON."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        principal = await gate.authenticate(request)  # the middleware answers LockedOut, StoreError
        if principal is None:
            return json_error(401, "authentication required: Authorization: Bearer <console token>",
                              {"WWW-Authenticate": 'Bearer realm="wallarm-console"'})
        if request.method in MUTATING and principal.kind == "session":
            assert principal.session is not None
            if not csrf_ok(request, principal.session, request.headers.get(CSRF_HEADER)):
                return json_error(403, f"CSRF check failed: send the session's {CSRF_HEADER} header "
                                       "from the console's own pages")
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
    """Pages need a browser session; without one, go to the login page. A page that changes
    state (a POST form) also needs the session's CSRF token (form field or header)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        principal = await gate.authenticate(request)
        if principal is None or principal.kind != "session":
            if request.method in MUTATING:
                return web.Response(status=401, text="log in first")
            raise web.HTTPSeeOther("/login?next=" + quote(request.path_qs, safe=""))
        if request.method in MUTATING:
            assert principal.session is not None
            presented = request.headers.get(CSRF_HEADER)
            if presented is None and request.content_type in FORM_TYPES:
                form = await read_form(request)
                if form is None:
                    return web.Response(status=400, text="malformed form")
                field_value = form.get(CSRF_FIELD)
                presented = field_value if isinstance(field_value, str) else None
            if not csrf_ok(request, principal.session, presented):
                return web.Response(status=403, text="CSRF check failed")
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
