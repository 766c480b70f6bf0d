"""The client for one or more nodes: keep-alive pools, TLS, timeouts, circuit breaker, failover.

Each node address gets a pool of idle keep-alive connections and a circuit breaker. A call walks
the addresses round-robin, skipping those whose breaker is open, and fails over to the next one
while the deadline allows. When every breaker is open the call fails at once, so a dead node
costs in-line requests almost nothing until a half-open probe finds it alive again.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from addon.config import NodeAddress, PluginSettings
from addon.http1 import Answer, Connection, HTTPClientError, open_connection

MAX_IDLE_PER_NODE = 128

Exchange = Callable[["NodeEndpoint", Connection], Awaitable[list[Answer]]]


class NodeCallError(Exception):
    """No usable answer from any node. `cause` is a short label for metrics and logs."""

    def __init__(self, cause: str, detail: str = ""):
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause


class Breaker:
    """closed -> (N consecutive failures) -> open -> (cooldown) -> half-open: one probe decides."""

    def __init__(self, failures: int, cooldown_s: float):
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.open_until = 0.0
        self.is_open = False
        self.probing = False

    def allow(self, now: float) -> bool:
        if not self.is_open:
            return True
        if now >= self.open_until and not self.probing:
            self.probing = True  # half-open: exactly one call may try
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.is_open = False
        self.probing = False

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.is_open = True
            self.open_until = now + self.cooldown_s
        self.probing = False

    @property
    def state(self) -> str:
        if not self.is_open:
            return "closed"
        return "half_open" if self.probing else "open"


def make_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class NodeEndpoint:
    """One node address: its idle connections, its breaker and the request head prefix."""

    def __init__(self, address: NodeAddress, settings: PluginSettings, ssl_context: ssl.SSLContext | None,
                 static_headers: Sequence[tuple[str, str]]):
        self.address = address
        self.ssl_context = ssl_context if address.tls else None
        self.breaker = Breaker(settings.breaker_failures, settings.breaker_cooldown_ms / 1000)
        self.idle: deque[Connection] = deque()
        self.closed = False
        default_port = 443 if address.tls else 80
        hostport = address.host if address.port == default_port else f"{address.host}:{address.port}"
        if ":" in address.host and address.port != default_port:
            hostport = f"[{address.host}]:{address.port}"
        lines = [f"POST {address.path} HTTP/1.1", f"Host: {hostport}"]
        lines += [f"{k}: {v}" for k, v in static_headers]
        self.head_prefix = ("\r\n".join(lines) + "\r\n").encode("latin-1", "replace")

    async def acquire(self, connect_timeout_s: float) -> tuple[Connection, bool]:
        while self.idle:
            conn = self.idle.pop()  # LIFO: the warmest connection
            if conn.is_open:
                return conn, True
        async with asyncio.timeout(connect_timeout_s):
            try:
                conn = await open_connection(self.address.host, self.address.port, self.ssl_context,
                                             self.address.host)
            except TimeoutError:
                raise HTTPClientError("connect_timeout", f"no connection within {connect_timeout_s:.3f}s") from None
        return conn, False

    def release(self, conn: Connection) -> None:
        if not self.closed and conn.reusable and conn.is_open and len(self.idle) < MAX_IDLE_PER_NODE:
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        self.closed = True
        while self.idle:
            self.idle.pop().close()


class NodeClient:
    """Sends protocol messages to the nodes of one configuration; immutable once built."""

    def __init__(self, settings: PluginSettings, static_headers: Sequence[tuple[str, str]]):
        self.settings = settings
        ssl_context = None
        if any(a.tls for a in settings.wallarm_node_address):
            ssl_context = make_ssl_context(settings.node_ca_file)
        self.endpoints = [NodeEndpoint(a, settings, ssl_context, static_headers)
                          for a in settings.wallarm_node_address]
        self._next = 0
        self.connect_timeout_s = settings.connect_timeout_s

    async def send(self, headers: bytes, body: bytes, timeout_s: float) -> Answer:
        """POST one message. `headers` are extra CRLF-terminated header lines (without length).

        Returns the node's answer whatever its status; raises NodeCallError when no node answered
        within `timeout_s`.
        """
        tail = headers + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"

        async def exchange(ep: NodeEndpoint, conn: Connection) -> list[Answer]:
            return [await conn.request(ep.head_prefix + tail, body)]

        return (await self._route(exchange, timeout_s))[0]

    async def send_many(self, messages: Sequence[tuple[bytes, bytes]], timeout_s: float) -> list[Answer]:
        """POST several messages pipelined on one connection (one write); answers in order."""
        tails = [(h + b"Content-Length: " + str(len(b)).encode() + b"\r\n\r\n", b) for h, b in messages]

        async def exchange(ep: NodeEndpoint, conn: Connection) -> list[Answer]:
            prefix = ep.head_prefix
            return await conn.request_many([prefix + t + b for t, b in tails])

        return await self._route(exchange, timeout_s)

    async def _route(self, exchange: Exchange, timeout_s: float) -> list[Answer]:
        """Round-robin over the nodes, skipping open breakers, failing over within the deadline."""
        now = time.monotonic()
        deadline = now + timeout_s
        count = len(self.endpoints)
        start = self._next
        self._next = (start + 1) % count
        last: NodeCallError | None = None
        for i in range(count):
            ep = self.endpoints[(start + i) % count]
            now = time.monotonic()
            if now >= deadline:
                break
            if not ep.breaker.allow(now):
                continue
            try:
                answers = await self._call(ep, exchange, deadline - now)
            except NodeCallError as e:
                ep.breaker.failure(time.monotonic())
                last = e
                continue
            except asyncio.CancelledError:
                if ep.breaker.probing:  # an interrupted probe must not leave the breaker stuck
                    ep.breaker.failure(time.monotonic())
                raise
            if any(a.status >= 500 for a in answers):
                ep.breaker.failure(time.monotonic())
            else:
                ep.breaker.success()
            return answers
        if last is None:
            if now >= deadline:
                raise NodeCallError("timeout", f"no answer within {timeout_s * 1000:.0f} ms")
            raise NodeCallError("breaker_open", "every node is marked down; waiting for the cooldown")
        raise last

    async def _call(self, ep: NodeEndpoint, exchange: Exchange, budget_s: float) -> list[Answer]:
        conn: Connection | None = None
        try:
            async with asyncio.timeout(budget_s):
                for attempt in (1, 2):
                    conn, reused = await ep.acquire(min(self.connect_timeout_s, budget_s))
                    try:
                        answers = await exchange(ep, conn)
                    except HTTPClientError as e:
                        conn.close()
                        # A pooled connection the node closed while idle: retry once on a fresh one.
                        if reused and e.cause == "reset" and attempt == 1:
                            continue
                        raise
                    ep.release(conn)
                    conn = None
                    return answers
        except TimeoutError:
            if conn is not None:
                conn.close()  # the answer may still come; this connection is out of sync
            raise NodeCallError("timeout", f"{ep.address.url}: no answer within {budget_s * 1000:.0f} ms") from None
        except HTTPClientError as e:
            raise NodeCallError(e.cause, f"{ep.address.url}: {e}") from None
        raise NodeCallError("reset", f"{ep.address.url}: connection closed")  # pragma: no cover

    def breaker_states(self) -> dict[str, str]:
        return {ep.address.url: ep.breaker.state for ep in self.endpoints}

    def close(self) -> None:
        for ep in self.endpoints:
            ep.close()
