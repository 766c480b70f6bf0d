"""The console/admin listener: health and metrics (never behind the token), then the console.

`/live`: the process answers. `/ready`: the store accepts writes (the engine is loaded before
the listener starts; this is what a load balancer or an orchestrator should wait for). `/metrics`: Prometheus text.
"""

from __future__ import annotations

import logging

from aiohttp import web

from node.console.app import setup_console
from node.context import NodeContext
from node.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)


def make_admin_app(ctx: NodeContext) -> web.Application:
    app = web.Application()

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def ready(_: web.Request) -> web.Response:
        if not await ctx.store.writable():
            return web.json_response({"status": "not ready", "problems": ["attack store not writable"]}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=ctx.metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/live", live)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    _mount_console(app, ctx)
    return app


def _mount_console(app: web.Application, ctx: NodeContext) -> None:
    try:
        setup_console(app, ctx)
    except Exception:  # noqa: BLE001 - protection must not depend on the console
        log.exception("console failed to start: serving health and metrics only")
