"""The HTML pages: login/logout and the shells that the static JS fills from the JSON API.

Jinja2 autoescapes every variable, so attacker-controlled strings (paths, hosts, excerpts)
are rendered as text. The only page rendered completely on the server is the attack detail.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from node.console import serialize
from node.console.access import PRINCIPAL_KEY, Gate, LockedOut, Principal, read_form, safe_next
from node.console.auth import CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE, token_matches
from node.console.params import ApiError, parse_int_id
from node.context import NodeContext

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["iso"] = serialize.iso
    return env


class ConsolePages:
    def __init__(self, ctx: NodeContext, gate: Gate) -> None:
        self.ctx = ctx
        self.gate = gate
        self.env = make_environment()

    def render(self, request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
        principal: Principal | None = request.get(PRINCIPAL_KEY)
        csrf = principal.session.csrf_token if principal and principal.session else ""
        html = self.env.get_template(name).render(csrf_token=csrf, csrf_field=CSRF_FIELD,
                                                  active=name.removesuffix(".html"), **values)
        return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)

    # ------------------------------------------------------------------ login / logout

    def _login_form(self, request: web.Request, error: str = "", status: int = 200) -> web.Response:
        nonce = secrets.token_urlsafe(24)
        response = self.render(request, "login.html", status=status, error=error, login_nonce=nonce,
                               next=safe_next(request.query.get("next")))
        response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="Strict", path="/login",
                            secure=request.secure, max_age=3600)
        return response

    async def login_get(self, request: web.Request) -> web.StreamResponse:
        principal = await self.gate.authenticate(request)
        if principal is not None and principal.kind == "session":  # already logged in
            raise web.HTTPSeeOther(safe_next(request.query.get("next")))
        return self._login_form(request)

    async def login_post(self, request: web.Request) -> web.StreamResponse:
        # Pre-session, so no CSRF token yet: the form's nonce (bound to a cookie) stands for it,
        # and the middleware has already refused a foreign Origin.
        form = await read_form(request)
        if form is None:
            return self._login_form(request, "The login form could not be read; please try again.", 400)
        nonce = form.get("login_nonce")
        if not isinstance(nonce, str) or not token_matches(request.cookies.get(LOGIN_COOKIE, ""), nonce):
            return self._login_form(request, "The login form expired; please try again.", 403)
        token = form.get("token")
        try:
            ok = self.gate.check_token(request, token.strip() if isinstance(token, str) else None, "login")
        except LockedOut as e:
            response = self._login_form(request, f"Too many wrong tokens from your address: try again in "
                                                 f"{e.retry_after_header} s.", 429)
            response.headers["Retry-After"] = e.retry_after_header
            return response
        if not ok:
            return self._login_form(request, "Wrong console token.", 401)
        session = await self.gate.sessions.create()
        next_raw = form.get("next")
        response = web.HTTPSeeOther(safe_next(next_raw if isinstance(next_raw, str) else None))
        response.set_cookie(SESSION_COOKIE, session.id, httponly=True, samesite="Strict", path="/",
                            secure=request.secure)
        response.del_cookie(LOGIN_COOKIE, path="/login")
        log.info("console: login from %s", request.remote)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        principal: Principal = request[PRINCIPAL_KEY]  # page_handler checked the CSRF token
        assert principal.session is not None
        await self.gate.sessions.delete(principal.session.id)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    # ------------------------------------------------------------------ pages

    async def index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/attacks")

    async def attacks(self, request: web.Request) -> web.Response:
        q = request.query
        return self.render(request, "attacks.html", f={
            k: q.get(k, "") for k in ("type", "ip", "action", "host", "since", "until", "q", "partial", "range")})

    async def attack_detail(self, request: web.Request) -> web.Response:
        try:
            attack_id = parse_int_id(request.match_info["id"])
        except ApiError as e:
            return self.render(request, "not_found.html", status=404, message=e.message)
        record = await self.ctx.store.get_attack(attack_id)
        if record is None:
            return self.render(request, "not_found.html", status=404, message=f"Attack {attack_id} not found.")
        return self.render(request, "attack.html", a=serialize.attack_detail(record))

    async def overview(self, request: web.Request) -> web.Response:
        return self.render(request, "overview.html")

    async def settings(self, request: web.Request) -> web.Response:
        return self.render(request, "settings.html")
