"""A fault-injection node: a real aiohttp HTTP server that misbehaves on request.

Only for fault tests (the real node lives in `node/`). Two listeners: the node port speaks
protocol v1 (or deliberately fails to), the control port lets a test switch the mode and read
what the node received.

Modes: pass (200), block (403), match (403 when the message contains a known attack token, else
200), slow (the whole node stalls: every call, liveness checks included, waits `delay_ms`, then
passes), refuse (answer `refuse_status`, 431 by default, with `{"error": ...}`: "I cannot read
this message"), 500, garbage (non-HTTP bytes, then close), reset (close the connection with RST,
no answer), cut (the start of a 200 answer, then RST: a reset mid-answer), down (the node port
stops listening).

`/stats` on the control port: POSTs received, in flight now and the most ever at once.

`slow_token`: in any mode, a message containing these bytes waits `delay_ms` before it is
answered while every other call is answered at once (one slow message on a live node).
Anything but a POST (the connector's liveness check, `GET /live`) is answered 405 like the real
node's protocol port, after the mode's faults; such calls are counted in `liveness_checks`, not
recorded in `received`.

Run: python -m tests.support.fake_node --listen 127.0.0.1:P --control 127.0.0.1:Q [--mode pass]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import socket
import struct
import sys

from aiohttp import web

from wallarm_wire import protocol

MODES = ("pass", "block", "match", "slow", "refuse", "500", "garbage", "reset", "cut", "down")
# What "cut" sends before the reset: a head promising more body than ever comes.
CUT_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
              b'{"verdict":"pa')
ATTACK_TOKENS = (b"/etc/passwd", b"' OR '1'='1", b"%27%20OR%20", b"<script>", b"UNION SELECT", b"union+select")

log = logging.getLogger("fake_node")


class FakeNode:
    def __init__(self, host: str, port: int, mode: str = "pass", delay_ms: int = 2000):
        self.host, self.port = host, port
        self.mode = mode
        self.delay_ms = delay_ms
        self.slow_token = b""
        self.refuse_status = 431
        self.received: list[dict] = []
        self.liveness_checks = 0
        self.in_flight = 0  # POSTs being handled now, and the most ever at once (overload tests)
        self.max_in_flight = 0
        self.posts = 0
        self._node_runner: web.AppRunner | None = None

    # ---------------------------------------------------------------- node side
    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method != "POST":
            return await self.handle_other(request)
        self.posts += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.answer(request, body)
        finally:
            self.in_flight -= 1

    async def answer(self, request: web.Request, body: bytes) -> web.StreamResponse:
        self.received.append({
            "path": request.path,
            "headers": {k: v for k, v in request.headers.items()},
            "body_b64": base64.b64encode(body).decode(),
            "mode": self.mode,
        })
        rid = request.headers.get(protocol.H_REQUEST_ID, "")
        mode = self.mode
        if mode == "slow" or (self.slow_token and self.slow_token in body):
            await asyncio.sleep(self.delay_ms / 1000)
            mode = "pass" if mode == "slow" else mode
        if mode == "refuse":
            return web.json_response({"error": "too many headers"}, status=self.refuse_status)
        if mode == "500":
            return web.Response(status=500, text="internal error")
        if mode in ("garbage", "reset", "cut"):
            transport = request.transport
            assert transport is not None
            if mode == "garbage":
                transport.write(b"\x00\x17garbage, not HTTP at all\r\n\r\n")
                transport.close()
            else:
                if mode == "cut":
                    transport.write(CUT_ANSWER)
                    await asyncio.sleep(0.01)  # let the partial answer leave before the RST
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.close()
            raise asyncio.CancelledError  # aiohttp drops the handler without writing anything
        block = mode == "block" or (mode == "match" and any(t.lower() in body.lower() for t in ATTACK_TOKENS))
        is_response = "msgtype=response" in request.headers.get("Content-Type", "")
        if is_response:
            block = False
        verdict = protocol.Verdict(rid, "block" if block else "pass", mode="block",
                                   attacks=[protocol.AttackInfo("ptrav", "path", "fake-1")] if block else [],
                                   reason="attack" if block else "")
        return web.Response(status=verdict.status, body=verdict.to_json(), content_type="application/json")

    async def handle_other(self, request: web.Request) -> web.StreamResponse:
        """A liveness check: the node's faults apply to it too (a stalled node answers nothing)."""
        self.liveness_checks += 1
        if self.mode == "slow":
            await asyncio.sleep(self.delay_ms / 1000)
        if self.mode == "500":
            return web.Response(status=500, text="internal error")
        if self.mode in ("garbage", "reset", "cut"):
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        return web.json_response({"error": f"method {request.method} not allowed"}, status=405)

    async def start_node(self) -> None:
        if self._node_runner is not None:
            return
        runner = web.AppRunner(self._node_app(), access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
        self._node_runner = runner

    async def stop_node(self) -> None:
        if self._node_runner is not None:
            runner, self._node_runner = self._node_runner, None
            await runner.cleanup()

    def _node_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    # ---------------------------------------------------------------- control side
    async def control_mode(self, request: web.Request) -> web.Response:
        data = await request.json()
        mode = data.get("mode", self.mode)
        if mode not in MODES:
            return web.json_response({"error": f"unknown mode {mode!r}"}, status=400)
        self.delay_ms = int(data.get("delay_ms", self.delay_ms))
        self.slow_token = str(data.get("slow_token", self.slow_token.decode())).encode()
        self.refuse_status = int(data.get("refuse_status", self.refuse_status))
        self.mode = mode
        if mode == "down":
            await self.stop_node()
        else:
            await self.start_node()
        return web.json_response({"mode": self.mode})

    async def control_received(self, request: web.Request) -> web.Response:
        return web.json_response(self.received)

    async def control_clear(self, request: web.Request) -> web.Response:
        self.received.clear()
        self.posts = self.max_in_flight = 0
        return web.json_response({"ok": True})

    async def control_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"posts": self.posts, "in_flight": self.in_flight,
                                  "max_in_flight": self.max_in_flight, "liveness_checks": self.liveness_checks})

    def control_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/mode", self.control_mode)
        app.router.add_get("/received", self.control_received)
        app.router.add_get("/stats", self.control_stats)
        app.router.add_post("/clear", self.control_clear)
        app.router.add_get("/ready", lambda r: web.json_response({"mode": self.mode}))
        return app


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _main(args: argparse.Namespace) -> None:
    host, port = _hostport(args.listen)
    node = FakeNode(host, port, args.mode, args.delay_ms)
    if args.mode != "down":
        await node.start_node()
    chost, cport = _hostport(args.control)
    runner = web.AppRunner(node.control_app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, chost, cport).start()
    log.info("fake node on %s:%d (mode %s), control on %s:%d", host, port, args.mode, chost, cport)
    await asyncio.Event().wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--mode", default="pass", choices=MODES)
    p.add_argument("--delay-ms", type=int, default=2000)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
