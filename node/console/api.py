"""The JSON API under /api/v1: the same data the pages show, for scripts and the pages' JS."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from node.console import serialize
from node.console.access import PRINCIPAL_KEY
from node.console.params import (
    ApiError,
    parse_attack_query,
    parse_exception_body,
    parse_int_id,
    parse_ip_entry_body,
    parse_list_name,
    parse_mode_body,
    parse_stats_query,
)
from node.context import NodeContext
from node.rules.exceptions import MAX_EXCEPTIONS

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.json")


async def _json_body(request: web.Request) -> Any:
    ctype = request.content_type
    if ctype != "application/json":
        raise ApiError("send Content-Type: application/json", 415)
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(f"body is not valid JSON: {e}") from None


class ConsoleApi:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self._openapi = OPENAPI_PATH.read_bytes()

    async def list_attacks(self, request: web.Request) -> web.Response:
        flt, cursor, limit = parse_attack_query(request.query)
        try:
            page = await self.ctx.store.list_attacks(flt, cursor=cursor, limit=limit)
        except ValueError as e:  # the store's verdict, e.g. on a cursor it did not issue
            raise ApiError(str(e)) from None
        return web.json_response({
            "items": [serialize.attack_summary(r) for r in page.items],
            "next_cursor": page.next_cursor,
            "total": page.total,
        })

    async def get_attack(self, request: web.Request) -> web.Response:
        attack_id = parse_int_id(request.match_info["id"])
        record = await self.ctx.store.get_attack(attack_id)
        if record is None:
            raise ApiError(f"attack {attack_id} not found", 404)
        return web.json_response(serialize.attack_detail(record))

    async def stats(self, request: web.Request) -> web.Response:
        since, until, buckets = parse_stats_query(request.query)
        result = await self.ctx.store.stats(since, until, buckets)
        excepted = sum(e.excepted_requests for e in await self.ctx.store.list_exceptions())
        return web.json_response(serialize.stats(result, since, until, excepted))

    async def get_mode(self, request: web.Request) -> web.Response:
        return web.json_response(serialize.mode_settings(await self.ctx.policy.get_mode_settings()))

    async def put_mode(self, request: web.Request) -> web.Response:
        current = await self.ctx.policy.get_mode_settings()
        new = parse_mode_body(await _json_body(request), current)
        # The policy persists through the store and swaps its in-memory copy: next request sees it.
        await self.ctx.policy.set_mode_settings(new)
        log.info("console: node mode set to %s with %d override(s)", new.default, len(new.overrides))
        return web.json_response(serialize.mode_settings(await self.ctx.policy.get_mode_settings()))

    async def list_ip_entries(self, request: web.Request) -> web.Response:
        unknown = sorted(set(request.query.keys()) - {"list", "include_expired"})
        if unknown:
            raise ApiError(f"unknown parameter(s): {', '.join(unknown)[:100]}")
        list_name = parse_list_name(request.query.get("list"), required=False)
        include_expired = request.query.get("include_expired", "0")
        if include_expired not in ("0", "1", "true", "false"):
            raise ApiError("include_expired: 0/1 or true/false")
        entries = await self.ctx.store.list_ip_entries(list_name,  # type: ignore[arg-type]
                                                       include_expired=include_expired in ("1", "true"))
        return web.json_response({"items": [serialize.ip_entry(e) for e in entries]})

    async def add_ip_entry(self, request: web.Request) -> web.Response:
        entry = parse_ip_entry_body(await _json_body(request))
        try:
            saved = await self.ctx.store.add_ip_entry(entry)
        except ValueError as e:
            raise ApiError(str(e)) from None
        await self.ctx.policy.reload_ip_lists()
        log.info("console: %s %s added to the %s list", "network", saved.network, saved.list)
        return web.json_response(serialize.ip_entry(saved), status=201)

    async def delete_ip_entry(self, request: web.Request) -> web.Response:
        entry_id = parse_int_id(request.match_info["id"])
        if not await self.ctx.store.delete_ip_entry(entry_id):
            raise ApiError(f"IP list entry {entry_id} not found", 404)
        await self.ctx.policy.reload_ip_lists()
        log.info("console: IP list entry %d deleted", entry_id)
        return web.Response(status=204)

    async def list_exceptions(self, request: web.Request) -> web.Response:
        if request.query:
            raise ApiError(f"unknown parameter(s): {', '.join(sorted(request.query.keys()))[:100]}")
        return web.json_response({"items": [serialize.exception_rule(e) for e in await self.ctx.store.list_exceptions()]})

    async def add_exception(self, request: web.Request) -> web.Response:
        principal = request[PRINCIPAL_KEY]
        rule = parse_exception_body(await _json_body(request), f"{principal.kind} from {request.remote}")
        if len(self.ctx.policy.exceptions()) >= MAX_EXCEPTIONS:
            raise ApiError(f"the node holds {MAX_EXCEPTIONS} exceptions already: remove some first", 409)
        try:
            saved = await self.ctx.store.add_exception(rule)
        except ValueError as e:  # the same what and where is excepted already
            raise ApiError(str(e), 409) from None
        await self.ctx.policy.reload_exceptions()  # this node applies it to the next request
        log.info("console: exception %d added: %s", saved.id, saved.describe())
        return web.json_response(serialize.exception_rule(saved), status=201)

    async def delete_exception(self, request: web.Request) -> web.Response:
        exception_id = parse_int_id(request.match_info["id"])
        if not await self.ctx.store.delete_exception(exception_id):
            raise ApiError(f"exception {exception_id} not found", 404)
        await self.ctx.policy.reload_exceptions()
        log.info("console: exception %d deleted", exception_id)
        return web.Response(status=204)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")
