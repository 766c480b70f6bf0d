"""Mount the console (pages, static files, JSON API) on the node's console/admin aiohttp app.

The node owns the app and its unauthenticated /live, /ready and /metrics; everything added
here is behind the console token (see `access.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from node.console.access import Gate, add_security_headers, api_handler, guard_middleware, page_handler
from node.console.api import ConsoleApi
from node.console.auth import SessionStore
from node.console.login_limit import LoginLimiter
from node.console.pages import ConsolePages
from node.context import NodeContext

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
GATE_KEY = web.AppKey("wallarm_console_gate", Gate)
SESSION_SWEEP_INTERVAL = 600.0  # seconds between deletions of expired sessions from the store


def setup_console(app: web.Application, ctx: NodeContext) -> None:
    if not ctx.console_token:
        raise ValueError("the console needs a token: resolve it with node.console.auth.resolve_console_token")
    limiter = LoginLimiter()
    gate = Gate(ctx.console_token, SessionStore(ctx.store), limiter, ctx.metrics)
    app[GATE_KEY] = gate
    ctx.metrics.add_gauge("wallarm_node_console_login_clients", "Clients with recent wrong console tokens "
                          "being tracked (bounded).", lambda: float(len(limiter)))
    api = ConsoleApi(ctx)
    pages = ConsolePages(ctx, gate)

    def a(handler):  # noqa: ANN001, ANN202 - local shorthand
        return api_handler(gate, handler)

    def p(handler):  # noqa: ANN001, ANN202
        return page_handler(gate, handler)

    r = app.router
    r.add_get("/api/v1/attacks", a(api.list_attacks))
    r.add_get("/api/v1/attacks/{id}", a(api.get_attack))
    r.add_get("/api/v1/stats", a(api.stats))
    r.add_get("/api/v1/mode", a(api.get_mode))
    r.add_put("/api/v1/mode", a(api.put_mode))
    r.add_get("/api/v1/iplists", a(api.list_ip_entries))
    r.add_post("/api/v1/iplists", a(api.add_ip_entry))
    r.add_delete("/api/v1/iplists/{id}", a(api.delete_ip_entry))
    r.add_get("/api/v1/exceptions", a(api.list_exceptions))
    r.add_post("/api/v1/exceptions", a(api.add_exception))
    r.add_delete("/api/v1/exceptions/{id}", a(api.delete_exception))
    r.add_get("/api/v1/openapi.json", a(api.openapi))

    r.add_get("/", pages.index)
    r.add_get("/login", pages.login_get)
    r.add_post("/login", pages.login_post)
    r.add_post("/logout", p(pages.logout))
    r.add_get("/attacks", p(pages.attacks))
    r.add_get("/attacks/{id}", p(pages.attack_detail))
    r.add_get("/overview", p(pages.overview))
    r.add_get("/settings", p(pages.settings))
    # Static JS/CSS are public (no secrets in them) so the login page can use them.
    r.add_static("/static/", STATIC, name="console_static", append_version=False)

    app.on_response_prepare.append(add_security_headers)
    app.middlewares.append(guard_middleware)
    app.cleanup_ctx.append(_session_sweeper(gate.sessions))


def _session_sweeper(sessions: SessionStore):  # noqa: ANN202 - an aiohttp cleanup context
    async def sweep_forever() -> None:
        while True:
            try:
                swept = await sessions.sweep()
                if swept:
                    log.info("console: %d expired session(s) deleted", swept)
            except Exception as e:  # noqa: BLE001 - a store hiccup must not end the sweeper
                log.warning("console: session sweep failed: %s", e)
            await asyncio.sleep(SESSION_SWEEP_INTERVAL)

    async def context(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sweep_forever())
        yield
        task.cancel()

    return context
