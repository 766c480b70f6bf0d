"""The status listener, like Kong's admin listener: `/`, `/status`, `/metrics` and the Admin API.

`/status` answers 503 (same JSON body) while the connector cannot inspect because every node
breaker of an enabled plugin is open: HAProxy's health check (`make run WORKERS=N`) reads it.

`curl -s http://localhost:8001/plugins | grep wallarm-plugin` (the seed's upgrade check) works;
services, routes and plugins are read and written as in Kong (`addon.admin_api`).
Served by aiohttp's server on the proxy's own event loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

from addon import __version__
from addon.admin_api import MAX_BODY, AdminApi, json_response
from addon.config import PLUGIN_NAME
from addon.runtime import RuntimeConfig
from wallarm_wire import protocol

log = logging.getLogger("wallarm.status")

BIND_ATTEMPTS = 20

for _name in ("aiohttp.access", "aiohttp.server", "aiohttp.web"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def root_document(runtime: RuntimeConfig | None, started_at: float, node_id: str) -> dict[str, Any]:
    """`GET /`: like Kong's admin root."""
    return {"tagline": "Welcome to the Wallarm connector for mitmproxy",
            "version": __version__, "node_id": node_id, "hostname": socket.gethostname(),
            "connector_type": protocol.CONNECTOR_TYPE, "protocol_version": protocol.PROTOCOL_VERSION,
            "configuration": {"database": "off", "role": "traditional"},
            "plugins": {"available_on_server": {PLUGIN_NAME: {"version": __version__, "priority": 1000}},
                        "enabled_in_cluster": [PLUGIN_NAME] if runtime and runtime.any_enabled else []},
            "started_at": started_at}


class StatusServer:
    def __init__(self, root: Callable[[], dict[str, Any]], status: Callable[[], tuple[bool, dict[str, Any]]],
                 metrics: Callable[[], str], admin: AdminApi):
        self._root, self._status, self._metrics, self._admin = root, status, metrics, admin
        self._runner: web.AppRunner | None = None
        self.bound: tuple[str, int] | None = None

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._admin.middleware], client_max_size=MAX_BODY)
        app.router.add_get("/", self._handle_root)
        app.router.add_get("/status", self._handle_status)
        app.router.add_get("/metrics", self._handle_metrics)
        self._admin.add_routes(app)
        return app

    async def _handle_root(self, _: web.Request) -> web.Response:
        return json_response(self._root())

    async def _handle_status(self, _: web.Request) -> web.Response:
        healthy, document = self._status()
        return json_response(document, 200 if healthy else 503)  # 503: take this worker out of rotation

    async def _handle_metrics(self, _: web.Request) -> web.Response:
        return web.Response(text=self._metrics(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def start(self, host: str, port: int) -> None:
        await self.stop()
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await runner.setup()
        sock = None
        for attempt in range(BIND_ATTEMPTS):
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                break
            except OSError as e:
                sock.close()
                sock = None
                # After a `-s` script reload the previous instance may still be closing this port.
                if attempt + 1 < BIND_ATTEMPTS and e.errno == errno.EADDRINUSE:
                    await asyncio.sleep(0.1)
                    continue
                await runner.cleanup()
                log.error("status listener: cannot listen on %s:%d: %s", host, port, e.strerror or e)
                return
        assert sock is not None
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        self.bound = sock.getsockname()[:2]
        log.info("status listener at http://%s:%d/ (/, /status, /metrics, Admin API)", self.bound[0], self.bound[1])

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner, self.bound = self._runner, None, None
            await runner.cleanup()
