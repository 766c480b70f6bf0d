"""The client for one or more nodes: keep-alive pools, TLS, timeouts, circuit breaker, failover.

Each node address gets a pool of idle keep-alive connections and a circuit breaker. A call walks
the addresses round-robin, skipping those whose breaker is open, and fails over to the next one
while the deadline allows. When every breaker is open the call fails at once, so a dead node
costs in-line requests almost nothing until a liveness check finds it alive again.

A breaker opens only for a node that does not answer: a failed call whose node answered another
call since it started says nothing about the node (one slow message), and when failures do add
up, a liveness check (`GET <node path>/live`, any answer below 500 counts) must fail too before
the breaker opens. One slow or refused message can therefore never switch inspection off for
everyone while the node is up.

Calls to one node at once are bounded (`max_in_flight`; each holds its own connection, and the
node answers one message per connection at a time). At the bound a call waits for a slot within
its own deadline; if none frees up, or one frees up with less time left than the node's recent
answer time (the node would work for a caller already gone), it fails with cause `overload`
(fail-open or 503 like any call without a verdict, counted by cause). An overload says nothing about the node's health, so
it never counts toward the breaker. Nothing queues without bound: the waiters are the callers
themselves, each bounded by its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from addon.config import NodeAddress, Timeouts
from addon.http1 import Answer, Connection, HTTPClientError, open_connection

log = logging.getLogger("wallarm.node")

MAX_IDLE_PER_NODE = 128
DEFAULT_MAX_IN_FLIGHT = 128
OVERLOAD = "overload"  # NodeCallError.cause when no call slot freed up within the deadline
# A slot that frees up with less time left than this is not used, whatever the node's answer time.
MIN_USEFUL_BUDGET_S = 0.001
ANSWER_TIME_WEIGHT = 0.2  # of the newest answered call in the node's moving-average answer time

# In-line verdicts asked for in one turn of the loop share a write, up to this many messages. A
# message over COALESCE_MAX_MESSAGE bytes (the embedded HTTP message) goes alone: the node takes
# longer to judge it, and the node answers a connection's messages in order, so nobody may wait
# behind it.
COALESCE_MAX_CALLS = 32
COALESCE_MAX_MESSAGE = 8 * 1024
INLINE_BODY_BYTES = 16 * 1024  # smaller bodies are copied behind their head: one buffer per message

CALL, CHECK, REJECT = "call", "check", "reject"  # Breaker.allow's answers


class NodeCallError(Exception):
    """No usable answer from any node. `cause` is a short label for metrics and logs."""

    def __init__(self, cause: str, detail: str = ""):
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause


class Breaker:
    """closed -> (N failures nobody explains, then a failed liveness check) -> open -> (cooldown)
    -> half-open: a liveness check decides, no call goes through until it has.

    Pure state, no I/O: the endpoint runs the checks and reports back. `started` is when the
    failed call began; a success recorded after it means the node was answering meanwhile.
    """

    def __init__(self, failures: int, cooldown_s: float):
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.open_until = 0.0
        self.is_open = False
        self.checking = False  # a liveness check is in flight
        self.last_success = float("-inf")

    def allow(self, now: float) -> str:
        """CALL: go ahead; CHECK: half-open, the caller runs the liveness check first; REJECT."""
        if not self.is_open:
            return CALL
        if self.checking or now < self.open_until:
            return REJECT
        self.checking = True
        return CHECK

    def success(self, now: float) -> None:
        self.last_success = now
        self.failures = 0
        self.is_open = False

    def failure(self, now: float, started: float) -> bool:
        """Count a failed call; True when the caller must now start a liveness check."""
        if self.last_success >= started:
            return False  # the node answered another call while this one waited: not the node's fault
        self.failures += 1
        if self.is_open or self.checking or self.failures < self.threshold:
            return False
        self.checking = True
        return True

    def checked(self, now: float, alive: bool, started: float) -> None:
        """The liveness check that began at `started` is over."""
        self.checking = False
        if alive or self.last_success >= started:
            self.success(now)
        else:
            self.is_open = True
            self.open_until = now + self.cooldown_s

    @property
    def state(self) -> str:
        if not self.is_open:
            return "checking" if self.checking else "closed"
        return "half_open" if self.checking else "open"


def make_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class NodeEndpoint:
    """One node address: its idle connections, its breaker and the request head prefix."""

    def __init__(self, address: NodeAddress, breaker: Breaker, ssl_context: ssl.SSLContext | None,
                 static_headers: Sequence[tuple[str, str]], max_in_flight: int = DEFAULT_MAX_IN_FLIGHT):
        self.address = address
        self.max_in_flight = max_in_flight
        self.slots = asyncio.Semaphore(max_in_flight)
        self.in_flight = 0
        self.answer_time_s = 0.0  # moving average of answered calls' durations (0: nothing known yet)
        self.ssl_context = ssl_context if address.tls else None
        self.breaker = breaker
        self.idle: deque[Connection] = deque()
        self.closed = False
        self.check_task: asyncio.Task[bool] | None = None  # a background liveness check
        default_port = 443 if address.tls else 80
        hostport = address.host if address.port == default_port else f"{address.host}:{address.port}"
        if ":" in address.host and address.port != default_port:
            hostport = f"[{address.host}]:{address.port}"
        lines = [f"Host: {hostport}"] + [f"{k}: {v}" for k, v in static_headers]
        common = "\r\n".join(lines) + "\r\n"
        self.head_prefix = f"POST {address.path} HTTP/1.1\r\n{common}".encode("latin-1", "replace")
        self.liveness_request = (f"GET {address.path.rstrip('/')}/live HTTP/1.1\r\n{common}"
                                 "Content-Length: 0\r\n\r\n").encode("latin-1", "replace")

    async def take_slot(self, budget_s: float) -> bool:
        """A call slot, waiting up to `budget_s` for one at the bound; False when none freed up."""
        if self.slots.locked():
            try:
                async with asyncio.timeout(budget_s):
                    await self.slots.acquire()
            except TimeoutError:
                return False
        else:
            await self.slots.acquire()  # free: returns without suspending
        self.in_flight += 1
        return True

    def answered_in(self, seconds: float) -> None:
        if self.answer_time_s == 0.0:  # the first answer is the whole estimate
            self.answer_time_s = seconds
        else:
            self.answer_time_s += ANSWER_TIME_WEIGHT * (seconds - self.answer_time_s)

    def release_slot(self) -> None:
        self.in_flight -= 1
        self.slots.release()

    async def acquire(self, connect_timeout_s: float) -> tuple[Connection, bool]:
        while self.idle:
            conn = self.idle.pop()  # LIFO: the warmest connection
            if conn.is_open:
                return conn, True
        return await self.connect(connect_timeout_s), False

    async def connect(self, connect_timeout_s: float) -> Connection:
        try:  # around the timeout block: the TimeoutError is raised as that block exits
            async with asyncio.timeout(connect_timeout_s):
                return await open_connection(self.address.host, self.address.port, self.ssl_context,
                                             self.address.host)
        except TimeoutError:
            raise HTTPClientError("connect_timeout", f"no connection within {connect_timeout_s:.3f}s") from None

    def release(self, conn: Connection) -> None:
        if not self.closed and conn.reusable and conn.is_open and len(self.idle) < MAX_IDLE_PER_NODE:
            self.idle.append(conn)
        else:
            conn.close()

    async def answers_liveness(self, budget_s: float, connect_s: float) -> bool:
        """Does the node answer a trivial request within `budget_s`? (any status below 500)

        On a fresh connection: a pooled one the node closed while idle would say nothing about it."""
        conn: Connection | None = None
        try:
            async with asyncio.timeout(budget_s):
                conn = await self.connect(min(connect_s, budget_s))
                answer = await conn.request(self.liveness_request, b"")
        except (TimeoutError, HTTPClientError):
            return False
        finally:
            if conn is not None:
                conn.close()
        return answer.status < 500

    async def check_liveness(self, budget_s: float, connect_s: float) -> bool:
        """Run the liveness check the breaker asked for and tell the breaker its outcome."""
        started = time.monotonic()
        failures = self.breaker.failures
        alive = False
        try:
            alive = await self.answers_liveness(budget_s, connect_s)
        finally:  # a cancelled check must not leave the breaker waiting for it forever
            was_open = self.breaker.is_open
            self.breaker.checked(time.monotonic(), alive, started)
        if not alive and not was_open:
            log.warning("node %s: %d failed call(s) and no answer to a liveness check within %.0f ms: "
                        "circuit breaker open for %.0f ms", self.address.url, failures, budget_s * 1000,
                        self.breaker.cooldown_s * 1000)
        elif alive and was_open:
            log.info("node %s answers again: circuit breaker closed", self.address.url)
        elif alive:
            log.info("node %s: %d failed call(s), but the node answers a liveness check: breaker stays closed",
                     self.address.url, failures)
        return alive

    def close(self) -> None:
        self.closed = True
        if self.check_task is not None:
            self.check_task.cancel()
        while self.idle:
            self.idle.pop().close()


@dataclass(slots=True, eq=False)
class NodeCall:
    """One message on its way to a node: the head's tail (protocol headers and length), the body,
    and the future its caller waits on. The future's value is the node's `Answer` or the
    `NodeCallError` standing for one: it never raises, so a caller gone meanwhile (a flow killed
    before its `request` hook) leaves no unretrieved exception behind."""

    tail: bytes
    body: bytes
    budget_s: float
    deadline: float  # time.monotonic()
    future: asyncio.Future[Answer | NodeCallError]
    server_error: Answer | None = None  # a 5xx, kept while other nodes are tried

    @property
    def open(self) -> bool:
        return not self.future.done()

    def settle(self, outcome: Answer | NodeCallError) -> None:
        if not self.future.done():
            self.future.set_result(outcome)


class _Attempt:
    """One node's go at some calls: which of them it answered, and whether any answer was below 5xx."""

    __slots__ = ("calls", "heard", "answered")

    def __init__(self, calls: list[NodeCall]):
        self.calls = calls
        self.heard: set[NodeCall] = set()
        self.answered = False  # an answer below 5xx: the node is up

    def unanswered(self) -> list[NodeCall]:
        return [c for c in self.calls if c not in self.heard] if self.heard else self.calls

    def take(self, call: NodeCall, answer: Answer) -> None:
        self.heard.add(call)
        if answer.status >= 500:
            call.server_error = answer  # the next node may do better
        else:
            self.answered = True
            call.settle(answer)


class NodeClient:
    """Sends protocol messages to the nodes of one configuration; immutable once built.

    In-line verdicts asked for during one turn of the event loop (`ask`) go out together: one
    pipelined write on one connection instead of one send per request (at c=50 a turn carries
    several requests, and every send that wakes the node costs the sender tens of µs of CPU).
    Each message is still its own call: its answer applies as it arrives, and a message without
    an answer or with a 5xx is failed over alone. The messages of one write share the earliest
    deadline (they were asked for microseconds apart).
    """

    def __init__(self, addresses: Sequence[NodeAddress], timeouts: Timeouts, breaker_failures: int,
                 ssl_context: ssl.SSLContext | None, static_headers: Sequence[tuple[str, str]],
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT):
        self.timeouts = timeouts
        self.endpoints = [NodeEndpoint(a, Breaker(breaker_failures, timeouts.breaker_cooldown_s), ssl_context,
                                       static_headers, max_in_flight) for a in addresses]
        self._next = 0
        self._turn: list[NodeCall] = []  # verdicts asked for during this turn of the loop, not yet sent
        self._deliveries: set[asyncio.Task[None]] = set()  # running, kept from the garbage collector

    @staticmethod
    def _call(headers: bytes, body: bytes, timeout_s: float, loop: asyncio.AbstractEventLoop) -> NodeCall:
        tail = headers + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        return NodeCall(tail, body, timeout_s, time.monotonic() + timeout_s, loop.create_future())

    def ask(self, headers: bytes, body: bytes, timeout_s: float) -> asyncio.Future[Answer | NodeCallError]:
        """POST one message with the others of this turn of the loop; the future's value is the
        node's answer (whatever its status), or the NodeCallError standing for one, within `timeout_s`.

        `headers` are extra CRLF-terminated header lines (without length)."""
        loop = asyncio.get_running_loop()
        call = self._call(headers, body, timeout_s, loop)
        if len(body) > COALESCE_MAX_MESSAGE:  # goes alone: nobody waits behind a message slow to judge
            self._deliver([call])
            return call.future
        self._turn.append(call)
        if len(self._turn) == 1:
            loop.call_soon(self._send_turn)
        elif len(self._turn) >= COALESCE_MAX_CALLS:
            self._send_turn()
        return call.future

    def _send_turn(self) -> None:
        if self._turn:
            calls, self._turn = self._turn, []
            self._deliver(calls)

    def _deliver(self, calls: list[NodeCall]) -> None:
        """Send `calls` in the background (eager: the write happens before this returns when a
        pooled connection is free). Every call's future is settled, whatever happens."""
        task = asyncio.eager_task_factory(asyncio.get_running_loop(), self._route_settled(calls))
        if not task.done():
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _route_settled(self, calls: list[NodeCall]) -> None:
        try:
            await self._route(calls)
        except BaseException as e:  # a bug must not leave a caller waiting: it gets no verdict
            if not isinstance(e, asyncio.CancelledError):
                log.exception("node call failed unexpectedly")
            for call in calls:
                call.settle(NodeCallError("internal", f"{type(e).__name__}: {e}"))
            if isinstance(e, asyncio.CancelledError):
                raise

    async def send(self, headers: bytes, body: bytes, timeout_s: float) -> Answer:
        """POST one message on its own. `headers` are extra CRLF-terminated header lines (without length).

        Returns the node's answer whatever its status; raises NodeCallError when no node answered
        within `timeout_s`.
        """
        call = self._call(headers, body, timeout_s, asyncio.get_running_loop())
        await self._route_settled([call])
        outcome = call.future.result()
        if isinstance(outcome, NodeCallError):
            raise outcome
        return outcome

    async def send_many(self, messages: Sequence[tuple[bytes, bytes]], timeout_s: float) -> list[Answer | NodeCallError]:
        """POST several messages pipelined on one connection (one write); each one's answer, in
        order, or the NodeCallError that stands for it."""
        loop = asyncio.get_running_loop()
        calls = [self._call(h, b, timeout_s, loop) for h, b in messages]
        await self._route_settled(calls)
        return [call.future.result() for call in calls]

    async def _route(self, calls: list[NodeCall]) -> None:
        """Round-robin over the nodes, skipping open breakers, failing over within the deadline.

        Each call is settled by the first node that answers it with less than a 5xx; calls a node
        answered with a 5xx or did not answer are tried on the next node. A call no node did better
        for gets its 5xx (the caller counts it as the node's error), else the last error.
        """
        deadline = min(c.deadline for c in calls)
        count = len(self.endpoints)
        start = self._next
        self._next = (start + 1) % count
        last: NodeCallError | None = None
        now = time.monotonic()
        for i in range(count):
            todo = [c for c in calls if c.open]
            if not todo:
                return
            ep = self.endpoints[(start + i) % count]
            now = time.monotonic()
            if now >= deadline:
                break
            admission = ep.breaker.allow(now)
            if admission == REJECT:
                continue
            if admission == CHECK and not await ep.check_liveness(min(self.timeouts.liveness_s, deadline - now),
                                                                   self.timeouts.connect_s):
                continue
            started = time.monotonic()
            if started >= deadline:  # the half-open check used the whole budget
                now = started
                break
            attempt = _Attempt(todo)
            try:
                await self._call_node(ep, attempt, deadline - started)
            except NodeCallError as e:
                last = e
                if attempt.answered:  # it answered some: the node is up, this batch just ran out of time
                    ep.breaker.success(time.monotonic())
                elif e.cause != OVERLOAD:  # busy is not down: the breaker hears only of the node's failures
                    self._failed(ep, started)
                continue
            if attempt.answered:
                ep.breaker.success(time.monotonic())
            else:
                self._failed(ep, started)  # every answer a 5xx
        if not any(c.open for c in calls):
            return
        error = last
        if error is None:
            if now >= deadline:
                error = NodeCallError("timeout", f"no answer within {calls[0].budget_s * 1000:.0f} ms")
            else:
                error = NodeCallError("breaker_open", "every node is marked down; waiting for the cooldown")
        for call in calls:
            call.settle(call.server_error if call.server_error is not None else error)

    def _failed(self, ep: NodeEndpoint, started: float) -> None:
        if ep.breaker.failure(time.monotonic(), started) and not ep.closed:
            # In the background: the failed call already paid its wait, it must not pay the check's.
            ep.check_task = asyncio.get_running_loop().create_task(
                ep.check_liveness(self.timeouts.liveness_s, self.timeouts.connect_s),
                name=f"wallarm-liveness-{ep.address.url}")

    async def _call_node(self, ep: NodeEndpoint, attempt: _Attempt, budget_s: float) -> None:
        started = time.monotonic()
        contended = ep.slots.locked()
        if not await ep.take_slot(budget_s):
            raise NodeCallError(OVERLOAD, f"{ep.address.url}: {ep.max_in_flight} calls in flight, none ended "
                                          f"within {budget_s * 1000:.0f} ms")
        try:
            now = time.monotonic()
            left = budget_s - (now - started)
            if contended and left < max(ep.answer_time_s, MIN_USEFUL_BUDGET_S):
                # A slot came too late for the node's usual answer time: sending would only make
                # the node work for a caller that is gone, deepening the overload.
                raise NodeCallError(OVERLOAD, f"{ep.address.url}: waited {(now - started) * 1000:.0f} ms for one of "
                                              f"{ep.max_in_flight} call slots; {left * 1000:.0f} ms left, the node "
                                              f"answers in about {ep.answer_time_s * 1000:.0f} ms")
            await self._exchange(ep, attempt, left)
            ep.answered_in(time.monotonic() - now)
        finally:
            ep.release_slot()

    async def _exchange(self, ep: NodeEndpoint, attempt: _Attempt, budget_s: float) -> None:
        conn: Connection | None = None
        try:
            async with asyncio.timeout(budget_s):
                for try_ in (1, 2):
                    sending = attempt.unanswered()
                    conn, reused = await ep.acquire(min(self.timeouts.connect_s, budget_s))
                    chunks: list[bytes] = []
                    for call in sending:
                        head = ep.head_prefix + call.tail
                        if len(call.body) < INLINE_BODY_BYTES:
                            chunks.append(head + call.body)
                        else:  # not copied: written from where it is
                            chunks += (head, call.body)
                    try:
                        await conn.request_many(chunks, len(sending),
                                                lambda i, answer: attempt.take(sending[i], answer))
                    except HTTPClientError as e:
                        conn.close()
                        # A pooled connection the node closed while idle: retry once on a fresh one.
                        if reused and e.cause == "reset" and try_ == 1 and not attempt.heard:
                            continue
                        raise
                    ep.release(conn)
                    conn = None
                    return
        except TimeoutError:
            if conn is not None:
                conn.close()  # the answer may still come; this connection is out of sync
            raise NodeCallError("timeout", f"{ep.address.url}: no answer within {budget_s * 1000:.0f} ms") from None
        except HTTPClientError as e:
            raise NodeCallError(e.cause, f"{ep.address.url}: {e}") from None
        raise NodeCallError("reset", f"{ep.address.url}: connection closed")  # pragma: no cover

    def in_flight(self) -> dict[str, int]:
        return {ep.address.url: ep.in_flight for ep in self.endpoints}

    def breaker_states(self) -> dict[str, str]:
        return {ep.address.url: ep.breaker.state for ep in self.endpoints}

    def all_open(self) -> bool:
        """Every node's breaker is open: no call can be judged until a liveness check passes."""
        return all(ep.breaker.is_open for ep in self.endpoints)

    def probe_open(self) -> None:
        """Start the liveness check of every open breaker whose cooldown is over, in the background.

        Breakers are otherwise re-checked only by calls; a worker that a load balancer took out
        of rotation because its breakers are open gets no calls, so without this its health
        check (`/status`) would keep it out for good."""
        now = time.monotonic()
        for ep in self.endpoints:
            if ep.closed or not ep.breaker.is_open or ep.breaker.allow(now) != CHECK:
                continue
            ep.check_task = asyncio.get_running_loop().create_task(
                ep.check_liveness(self.timeouts.liveness_s, self.timeouts.connect_s),
                name=f"wallarm-probe-{ep.address.url}")

    def close(self) -> None:
        for ep in self.endpoints:
            ep.close()
