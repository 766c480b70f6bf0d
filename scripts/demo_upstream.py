#!/usr/bin/env python3
"""A small, realistic JSON API to put behind the proxy: users, orders, products, health.

It never echoes the request back (a WAF demo whose upstream reflects the attack proves
nothing); it answers from its own in-memory data, like a real service would.

    python scripts/demo_upstream.py --listen 127.0.0.1:9000 [--tls-cert PEM --tls-key PEM]

Endpoints:
  GET  /health                      {"status": "ok"}
  GET  /api/v1/users[?limit=&offset=]   paged list
  GET  /api/v1/users/{id}           one user, 404 when unknown
  POST /api/v1/users                JSON {"name", "email"} -> 201 with the new user
  GET  /api/v1/orders[?user_id=&status=]
  GET  /api/v1/orders/{id}
  GET  /api/v1/products[?q=]        search by name (the query is used, not echoed)
  anything else                     404 {"error": "not found"}
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import re
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
# this tree's code first: the venv holds a copy of the project that `make install` does not keep
# editable, which a script run without PYTHONPATH would otherwise import, stale after any edit
sys.path.insert(0, str(REPO))

from wallarm_wire.addresses import parse_hostport  # noqa: E402

log = logging.getLogger("demo_upstream")

USERS: dict[int, dict] = {
    1: {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "role": "admin"},
    2: {"id": 2, "name": "Alan Turing", "email": "alan@example.com", "role": "user"},
    3: {"id": 3, "name": "Grace Hopper", "email": "grace@example.com", "role": "user"},
    4: {"id": 4, "name": "Tim O'Reilly", "email": "tim@example.com", "role": "user"},
}
PRODUCTS: list[dict] = [
    {"sku": "KB-101", "name": "Mechanical keyboard", "price_cents": 8900},
    {"sku": "MS-220", "name": "Wireless mouse", "price_cents": 2900},
    {"sku": "MN-270", "name": "27-inch monitor", "price_cents": 24900},
    {"sku": "HD-330", "name": "Noise-cancelling headphones", "price_cents": 19900},
]
ORDERS: dict[int, dict] = {
    1001: {"id": 1001, "user_id": 1, "status": "shipped", "items": [{"sku": "KB-101", "qty": 1}],
           "total_cents": 8900},
    1002: {"id": 1002, "user_id": 2, "status": "pending", "items": [{"sku": "MS-220", "qty": 2}],
           "total_cents": 5800},
    1003: {"id": 1003, "user_id": 1, "status": "delivered",
           "items": [{"sku": "MN-270", "qty": 1}, {"sku": "HD-330", "qty": 1}], "total_cents": 44800},
}
EMAIL_RX = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[a-z]{2,}$", re.I)
MAX_USERS = 10_000  # POSTs beyond this are refused: the demo must not grow without bound


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "%s must be an integer"}' % name,
                                 content_type="application/json") from None
    return max(lo, min(hi, value))


def _not_found(what: str) -> web.Response:
    return web.json_response({"error": f"{what} not found"}, status=404)


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": "demo-api"})


async def list_users(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 20, 1, 100)
    offset = _int_param(request, "offset", 0, 0, 1_000_000)
    users = list(USERS.values())
    return web.json_response({"items": users[offset:offset + limit], "total": len(users),
                              "limit": limit, "offset": offset})


async def get_user(request: web.Request) -> web.Response:
    try:
        user = USERS.get(int(request.match_info["id"]))
    except ValueError:
        user = None
    return web.json_response(user) if user else _not_found("user")


async def create_user(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    name, email = body.get("name"), body.get("email")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        return web.json_response({"error": "name: 1-100 characters required"}, status=422)
    if not isinstance(email, str) or not EMAIL_RX.match(email):
        return web.json_response({"error": "email: a valid address required"}, status=422)
    if len(USERS) >= MAX_USERS:
        return web.json_response({"error": "user limit reached"}, status=409)
    new_id = max(USERS) + 1
    USERS[new_id] = {"id": new_id, "name": name, "email": email, "role": "user"}
    return web.json_response(USERS[new_id], status=201)


async def list_orders(request: web.Request) -> web.Response:
    orders = list(ORDERS.values())
    if "user_id" in request.query:
        uid = _int_param(request, "user_id", 0, 0, 10**9)
        orders = [o for o in orders if o["user_id"] == uid]
    if status := request.query.get("status"):
        orders = [o for o in orders if o["status"] == status]
    return web.json_response({"items": orders, "total": len(orders)})


async def get_order(request: web.Request) -> web.Response:
    try:
        order = ORDERS.get(int(request.match_info["id"]))
    except ValueError:
        order = None
    return web.json_response(order) if order else _not_found("order")


async def list_products(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip().lower()
    items = [p for p in PRODUCTS if q in p["name"].lower()] if q else PRODUCTS
    return web.json_response({"items": items, "total": len(items)})


@web.middleware
async def json_errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Unknown routes and methods answer JSON, like the rest of the API."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.json_response({"error": "not found"}, status=404)
    except web.HTTPMethodNotAllowed:
        return web.json_response({"error": "method not allowed"}, status=405)


def build_app() -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=1 << 20)
    app.add_routes([
        web.get("/health", health),
        web.get("/api/v1/users", list_users),
        web.post("/api/v1/users", create_user),
        web.get("/api/v1/users/{id}", get_user),
        web.get("/api/v1/orders", list_orders),
        web.get("/api/v1/orders/{id}", get_order),
        web.get("/api/v1/products", list_products),
    ])
    return app


def parse_listen(value: str) -> tuple[str, int]:
    try:
        return parse_hostport(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


async def serve(host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0]
    log.info("demo upstream listening at %s://%s:%d", "https" if ssl_context else "http", bound[0], bound[1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Demo JSON API for the proxy walkthrough.")
    ap.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 9000),
                    help="HOST:PORT (default 127.0.0.1:9000; port 0 picks a free one)")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (with --tls-key)")
    ap.add_argument("--tls-key", help="its private key")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    ctx = None
    try:
        if args.tls_cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
        asyncio.run(serve(*args.listen, ssl_context=ctx))
    except (OSError, ssl.SSLError) as e:
        log.error("cannot serve on %s:%d: %s", *args.listen, e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
