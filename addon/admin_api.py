"""Kong's Admin API on the status listener: services, routes, plugins, `/`, `/status`.

Shapes and codes as Kong's: lists are `{"data": [...], "next": null}`, 201 on create, 200 on
read/update (PUT is an upsert), 204 on delete, 400 `schema violation` with `fields`, 404
`{"message": "Not found"}`, 409 on a duplicate. Bodies are JSON or form-encoded (`admin_body`).
Entities are looked up by id or name. Reads answer from the running config; writes go through
the `DeclarativeStore` (file first, then applied). Off loopback every request but `/metrics` and
`/status` needs the admin token in `Kong-Admin-Token`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from addon.admin_body import BodyError, parse_body
from addon.admin_entities import AdminError, Entities, view
from addon.admin_store import DeclarativeStore
from addon.config import PLUGIN_NAME
from addon.declarative import _resolve_ca_paths

TOKEN_HEADER = "Kong-Admin-Token"
OPEN_PATHS = frozenset({"/metrics", "/status"})  # read-only, no configuration: scrapers need no token
MAX_BODY = 1024 * 1024
DEFAULT_PAGE, MAX_PAGE = 100, 1000  # Kong's list page sizes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, indent=2) + "\n")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


def _server_paths(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A relative `node_ca_file` in a plugin sent to the Admin API is relative to the connector's
    working directory (as Kong resolves paths against its prefix), stored absolute: in the file, a
    relative path would mean relative to the file's own directory."""
    if kind == "plugins":
        _resolve_ca_paths(body, Path.cwd())
    return body


def _page(request: web.Request) -> tuple[int, int]:
    """(start, size) of a list request: Kong's `size` (1..1000, default 100) and `offset`."""
    try:
        size = int(request.query.get("size", DEFAULT_PAGE))
        start = int(request.query.get("offset", "0"))
    except ValueError:
        raise AdminError(400, {"code": 2, "name": "schema violation", "message": "invalid size or offset",
                               "fields": {"size": "expected an integer", "offset": "invalid offset"}}) from None
    if not 1 <= size <= MAX_PAGE or start < 0:
        raise AdminError(400, {"code": 2, "name": "schema violation",
                               "message": f"size must be from 1 to {MAX_PAGE}", "fields": {"size": "out of range"}})
    return start, size


class AdminApi:
    """The entity routes; `store` is None when no declarative file is configured (reads only)."""

    def __init__(self, store: Callable[[], DeclarativeStore | None],
                 plugin_runtime: Callable[[dict[str, Any]], dict[str, Any]],
                 token: Callable[[], str], bound_host: Callable[[], str | None]):
        self._store = store
        self._plugin_runtime = plugin_runtime
        self._token = token
        self._bound_host = bound_host

    # ------------------------------------------------------------------ wiring
    def add_routes(self, app: web.Application) -> None:
        r = app.router
        for base in ("/services", "/routes"):
            kind = base[1:]
            r.add_get(base, self._list(kind))
            r.add_post(base, self._create(kind))
            item = f"{base}/{{ident}}"
            r.add_get(item, self._read(kind))
            r.add_patch(item, self._update(kind, partial=True))
            r.add_put(item, self._update(kind, partial=False))
            r.add_delete(item, self._delete(kind))
            r.add_get(f"{item}/plugins", self._list("plugins", parent=kind))
            r.add_post(f"{item}/plugins", self._create("plugins", parent=kind))
        r.add_get("/services/{parent}/routes", self._list("routes", parent="services"))
        r.add_post("/services/{parent}/routes", self._create("routes", parent="services"))
        r.add_get("/plugins", self._list("plugins"))
        r.add_post("/plugins", self._create("plugins"))
        r.add_get("/plugins/enabled", self._enabled)
        r.add_get("/plugins/{ident}", self._read("plugins"))
        r.add_patch("/plugins/{ident}", self._update("plugins", partial=True))
        r.add_put("/plugins/{ident}", self._update("plugins", partial=False))
        r.add_delete("/plugins/{ident}", self._delete("plugins"))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS and not self._authorized(request):
            return json_response({"message": "Invalid credentials. Token or User credentials required"}, 401)
        try:
            return await handler(request)
        except AdminError as e:
            return json_response(e.body, e.status)
        except web.HTTPMethodNotAllowed:
            return json_response({"message": "Method not allowed"}, 405)
        except web.HTTPNotFound:
            return json_response({"message": "Not found"}, 404)
        except web.HTTPRequestEntityTooLarge:
            return json_response({"message": "request body too large"}, 413)

    def _authorized(self, request: web.Request) -> bool:
        """On loopback: always. Off loopback: the token, for reads too (the answers carry the
        node addresses and the whole configuration); with no token configured, nothing but the
        open paths (set `wallarm_admin_token` or $WALLARM_ADMIN_TOKEN)."""
        bound = self._bound_host()
        if is_loopback(request.remote) and is_loopback(bound):
            return True
        expected = self._token()
        if not expected:
            return False
        given = request.headers.get(TOKEN_HEADER, "")
        return hmac.compare_digest(given.encode(), expected.encode())

    # ------------------------------------------------------------------ helpers
    def _running(self) -> Entities:
        store = self._store()
        return store.running if store is not None else Entities()

    def _writable(self) -> DeclarativeStore:
        store = self._store()
        if store is None:
            raise AdminError(405, {"message": "no declarative file to write: start mitmdump with "
                                              "--set wallarm_config=PATH"})
        return store

    def _view(self, kind: str, entity: dict[str, Any]) -> dict[str, Any]:
        out = view(kind, entity)
        if kind == "plugins":
            out.update(self._plugin_runtime(entity))
        return out

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise AdminError(413, {"message": "request body too large"})
        try:
            return parse_body(request.headers.get("Content-Type", ""), raw)
        except BodyError as e:
            raise AdminError(400, {"message": str(e)}) from None

    @staticmethod
    def _scope(entities: Entities, parent: str | None, request: web.Request) -> dict[str, Any]:
        """The reference a nested URL implies: `/services/x/routes` -> {"service": {"id": ...}}."""
        if parent is None:
            return {}
        ident = request.match_info.get("parent") or request.match_info["ident"]
        return {parent[:-1]: {"id": entities.get(parent, ident)["id"]}}

    # ------------------------------------------------------------------ handlers
    def _list(self, kind: str, parent: str | None = None) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            entities = self._running()
            items: list[dict[str, Any]] = getattr(entities, kind)
            if parent is not None:
                (ref, value), = self._scope(entities, parent, request).items()
                items = [e for e in items if (e.get(ref) or {}).get("id") == value["id"]]
            start, size = _page(request)
            page = items[start:start + size]
            nxt = None
            if start + size < len(items):  # Kong's paging: `next` is the path of the following page
                nxt = str(request.rel_url.update_query(offset=str(start + size)))
            return json_response({"data": [self._view(kind, e) for e in page], "next": nxt,
                                  **({"offset": str(start + size)} if nxt else {})})
        return handle

    def _read(self, kind: str) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            return json_response(self._view(kind, self._running().get(kind, request.match_info["ident"])))
        return handle

    def _create(self, kind: str, parent: str | None = None) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            body = _server_paths(kind, await self._body(request))
            def mutate(entities: Entities) -> dict[str, Any]:
                return entities.create(kind, body, self._scope(entities, parent, request))
            entity = await self._writable().change(mutate)
            return json_response(self._view(kind, entity), 201)
        return handle

    def _update(self, kind: str, partial: bool) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            body = _server_paths(kind, await self._body(request))
            ident = request.match_info["ident"]
            def mutate(entities: Entities) -> tuple[dict[str, Any], bool]:
                return entities.replace(kind, ident, body, partial)
            entity, _created = await self._writable().change(mutate)
            return json_response(self._view(kind, entity), 200)
        return handle

    def _delete(self, kind: str) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            ident = request.match_info["ident"]
            if self._running().find(kind, ident) is None:
                return web.Response(status=204)  # Kong: deleting what is not there is still a 204
            def mutate(entities: Entities) -> None:
                if entities.find(kind, ident) is not None:  # gone already: another writer won, still 204
                    entities.delete(kind, ident)
            await self._writable().change(mutate)
            return web.Response(status=204)
        return handle

    async def _enabled(self, _: web.Request) -> web.Response:
        return json_response({"enabled_plugins": [PLUGIN_NAME]})
