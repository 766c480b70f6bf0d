"""The node client against real loopback servers: parsing, keep-alive, breaker, failover, TLS."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from addon.active import ActiveConfig
from addon.config import parse_config
from addon.http1 import Connection, HTTPClientError, open_connection
from addon.node_client import CALL, CHECK, REJECT, Breaker, NodeCallError, NodeClient
from tests.support.fake_node import FakeNode
from tests.support.procs import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[bytes], Awaitable[int]]]:
    """A raw TCP server answering every request with the given bytes (to test odd framings)."""
    servers: list[asyncio.Server] = []

    async def start(reply: bytes, close_after: bool = False) -> int:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await r.readuntil(b"\r\n\r\n")
                    length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
                    await r.readexactly(length)
                    w.write(reply)
                    await w.drain()
                    if close_after:
                        w.close()
                        return
            except (asyncio.IncompleteReadError, ConnectionError):
                w.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        return srv.sockets[0].getsockname()[1]

    yield start  # type: ignore[misc]
    for s in servers:
        s.close()


async def one_call(port: int) -> tuple[Connection, object]:
    conn = await open_connection("127.0.0.1", port, None, None)
    answer = await conn.request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n", b"hi")
    return conn, answer


@pytest.mark.parametrize(("reply", "body", "reusable"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
    (b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
])
async def test_answer_framings(raw_server, reply: bytes, body: bytes, reusable: bool) -> None:  # type: ignore[no-untyped-def]
    port = await raw_server(reply)
    conn, answer = await one_call(port)
    assert answer.body == body and conn.reusable is reusable  # type: ignore[attr-defined]
    if reusable:  # keep-alive: the same connection serves a second request
        again = await conn.request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"")
        assert again.body == body
    conn.close()


async def test_body_delimited_by_close(raw_server) -> None:  # type: ignore[no-untyped-def]
    port = await raw_server(b"HTTP/1.1 200 OK\r\n\r\nuntil-close", close_after=True)
    conn, answer = await one_call(port)
    assert answer.body == b"until-close" and not conn.reusable  # type: ignore[attr-defined]


@pytest.mark.parametrize("reply", [
    b"\x00\x17garbage, not HTTP\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
])
async def test_unreadable_answers_raise(raw_server, reply: bytes) -> None:  # type: ignore[no-untyped-def]
    port = await raw_server(reply, close_after=True)
    with pytest.raises(HTTPClientError):
        await one_call(port)


async def test_connection_refused_is_a_connect_error() -> None:
    with pytest.raises(HTTPClientError) as e:
        await open_connection("127.0.0.1", free_port(), None, None)
    assert e.value.cause == "connect"


def test_breaker_opens_only_after_a_failed_liveness_check_and_recovers_through_one() -> None:
    b = Breaker(failures=2, cooldown_s=1.0)
    assert b.allow(0) == CALL and b.state == "closed"
    assert not b.failure(0.0, started=0.0)
    assert b.allow(0.1) == CALL and b.state == "closed"
    assert b.failure(0.1, started=0.05)  # the threshold: the caller must check liveness now
    assert b.state == "checking" and b.allow(0.1) == CALL  # calls go on while the check runs
    assert not b.failure(0.2, started=0.15)  # no second check while one is in flight
    b.checked(0.3, alive=False, started=0.1)
    assert b.state == "open" and b.allow(0.5) == REJECT
    assert b.allow(1.4) == CHECK and b.state == "half_open"  # after the cooldown: one check decides
    assert b.allow(1.4) == REJECT  # and nothing passes while it runs
    b.checked(1.5, alive=False, started=1.4)
    assert b.state == "open" and b.allow(2.0) == REJECT and b.allow(2.6) == CHECK
    b.checked(2.7, alive=True, started=2.6)
    assert b.state == "closed" and b.allow(2.8) == CALL and b.failures == 0


def test_breaker_ignores_a_failure_the_node_outlived_and_closes_when_it_answers_a_check() -> None:
    b = Breaker(failures=1, cooldown_s=1.0)
    b.success(5.0)  # another call was answered at t=5 ...
    assert not b.failure(6.0, started=4.0)  # ... while this one (started at t=4) waited: one slow message
    assert b.state == "closed" and b.failures == 0
    assert b.failure(7.0, started=6.5)  # nothing answered since t=6.5: check
    b.checked(7.2, alive=True, started=7.0)  # the node answers the check: it is up, stay closed
    assert b.state == "closed" and b.failures == 0
    assert b.failure(8.0, started=7.5)
    b.success(8.1)  # a call succeeded while the check ran: the node is up whatever the check says
    b.checked(8.3, alive=False, started=8.0)
    assert b.state == "closed"


def client_for(*urls: str, **settings: object) -> NodeClient:
    cfg = {"name": "wallarm-plugin", "config": {"wallarm_node_address": list(urls), **settings}}
    return ActiveConfig.build(parse_config(json.dumps(cfg))).client


HEAD = b"Content-Type: message/http; msgtype=request\r\nX-Wallarm-Request-Id: " + b"a" * 32 + b"\r\n"
MSG = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


@pytest.fixture
async def node() -> AsyncIterator[FakeNode]:
    n = FakeNode("127.0.0.1", free_port(), mode="pass")
    await n.start_node()
    yield n
    await n.stop_node()


async def test_keep_alive_reuses_one_connection(node: FakeNode) -> None:
    client = client_for(f"http://127.0.0.1:{node.port}/")
    for _ in range(5):
        assert (await client.send(HEAD, MSG, 1.0)).status == 200
    assert len(client.endpoints[0].idle) == 1
    client.close()


async def test_node_restart_is_survived_by_a_retry_on_a_fresh_connection(node: FakeNode) -> None:
    client = client_for(f"http://127.0.0.1:{node.port}/")
    assert (await client.send(HEAD, MSG, 1.0)).status == 200
    await node.stop_node()
    await node.start_node()  # the pooled connection is now dead
    assert (await client.send(HEAD, MSG, 1.0)).status == 200
    client.close()


async def settled(client: NodeClient) -> None:
    """Wait for the liveness checks the client started in the background."""
    for ep in client.endpoints:
        if ep.check_task is not None:
            await asyncio.wait_for(asyncio.shield(ep.check_task), 5)


async def test_a_stalled_node_times_out_then_the_breaker_makes_calls_fast(node: FakeNode) -> None:
    node.mode, node.delay_ms = "slow", 1000  # the whole node stalls: liveness checks too
    client = client_for(f"http://127.0.0.1:{node.port}/", timeout_ms=100, breaker_failures=2,
                        breaker_cooldown_ms=60_000)
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(NodeCallError) as e:
            await client.send(HEAD, MSG, 0.1)
        assert e.value.cause == "timeout" and time.monotonic() - started < 0.5
    await settled(client)
    assert node.liveness_checks == 1
    started = time.monotonic()
    with pytest.raises(NodeCallError) as e:
        await client.send(HEAD, MSG, 0.1)
    assert e.value.cause == "breaker_open" and time.monotonic() - started < 0.01
    client.close()


async def test_half_open_check_recovers(node: FakeNode) -> None:
    await node.stop_node()
    client = client_for(f"http://127.0.0.1:{node.port}/", breaker_failures=1, breaker_cooldown_ms=100)
    with pytest.raises(NodeCallError) as e:
        await client.send(HEAD, MSG, 0.5)
    assert e.value.cause == "connect"
    await settled(client)
    with pytest.raises(NodeCallError, match="breaker_open"):
        await client.send(HEAD, MSG, 0.5)
    await node.start_node()
    await asyncio.sleep(0.15)
    assert (await client.send(HEAD, MSG, 0.5)).status == 200  # a liveness check first, then the call
    assert client.breaker_states() == {f"http://127.0.0.1:{node.port}/": "closed"}
    assert node.liveness_checks == 1 and len(node.received) == 1
    client.close()


async def test_one_slow_message_does_not_open_the_breaker_while_the_node_answers(node: FakeNode) -> None:
    """Issue 13: one slow message opened the breaker and half the next requests went unjudged."""
    node.slow_token, node.delay_ms = b"/slow", 2000
    client = client_for(f"http://127.0.0.1:{node.port}/", timeout_ms=200, breaker_failures=1,
                        breaker_cooldown_ms=60_000)
    slow_msg = MSG.replace(b"GET / ", b"GET /slow ")
    slow = [asyncio.create_task(client.send(HEAD, slow_msg, 0.2)) for _ in range(3)]
    answered = 0
    for _ in range(20):  # the other calls, meanwhile and after: all get the node's answer
        assert (await client.send(HEAD, MSG, 0.2)).status == 200
        answered += 1
        await asyncio.sleep(0.01)
    for task in slow:
        with pytest.raises(NodeCallError, match="timeout"):
            await task
    for _ in range(3):  # slow messages alone, nothing else in flight: counted, then the check says "up"
        with pytest.raises(NodeCallError, match="timeout"):
            await client.send(HEAD, slow_msg, 0.2)
        await settled(client)
        assert client.breaker_states() == {f"http://127.0.0.1:{node.port}/": "closed"}
    assert node.liveness_checks >= 1
    assert [(await client.send(HEAD, MSG, 0.2)).status for _ in range(5)] == [200] * 5
    client.close()


async def test_a_node_that_stops_answering_still_opens_the_breaker(node: FakeNode) -> None:
    client = client_for(f"http://127.0.0.1:{node.port}/", timeout_ms=200, breaker_failures=2,
                        breaker_cooldown_ms=60_000)
    assert (await client.send(HEAD, MSG, 0.2)).status == 200
    await node.stop_node()
    for _ in range(2):
        with pytest.raises(NodeCallError, match="connect|reset"):
            await client.send(HEAD, MSG, 0.2)
    await settled(client)
    with pytest.raises(NodeCallError, match="breaker_open"):
        await client.send(HEAD, MSG, 0.2)
    client.close()


async def test_a_node_answering_5xx_is_failed_over(node: FakeNode) -> None:
    broken = FakeNode("127.0.0.1", free_port(), mode="500")
    await broken.start_node()
    client = client_for(f"http://127.0.0.1:{broken.port}/", f"http://127.0.0.1:{node.port}/")
    try:
        assert [(await client.send(HEAD, MSG, 1.0)).status for _ in range(4)] == [200] * 4
        assert len(node.received) == 4 and len(broken.received) >= 1
    finally:
        client.close()
        await broken.stop_node()
    alone = client_for(f"http://127.0.0.1:{broken.port}/")
    await broken.start_node()
    try:
        assert (await alone.send(HEAD, MSG, 1.0)).status == 500  # no better node: the caller sees the 5xx
    finally:
        alone.close()
        await broken.stop_node()


async def test_failover_and_balancing_across_nodes(node: FakeNode) -> None:
    other = FakeNode("127.0.0.1", free_port(), mode="pass")
    await other.start_node()
    dead = free_port()
    client = client_for(f"http://127.0.0.1:{node.port}/", f"http://127.0.0.1:{dead}/",
                        f"http://127.0.0.1:{other.port}/")
    try:
        for _ in range(12):
            assert (await client.send(HEAD, MSG, 1.0)).status == 200
        assert len(node.received) >= 4 and len(other.received) >= 4  # both live nodes share the load
        assert len(node.received) + len(other.received) == 12  # the dead one never lost a request
        assert client.breaker_states()[f"http://127.0.0.1:{dead}/"] == "open"
    finally:
        client.close()
        await other.stop_node()


async def tls_node(certs: Path) -> tuple[asyncio.Server, int]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs / "node.pem", certs / "node-key.pem")
    body = b'{"request_id":"","action":"pass"}'

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            head = await r.readuntil(b"\r\n\r\n")
            length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
            await r.readexactly(length)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        w.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    return srv, srv.sockets[0].getsockname()[1]


async def test_tls_with_node_ca_file_and_untrusted_failure(certs: Path) -> None:
    srv, port = await tls_node(certs)
    try:
        trusted = client_for(f"https://localhost:{port}/", node_ca_file=str(certs / "ca.pem"))
        assert (await trusted.send(HEAD, MSG, 2.0)).status == 200
        trusted.close()
        system_store = client_for(f"https://localhost:{port}/")  # the dev CA is not in the system store
        with pytest.raises(NodeCallError) as e:
            await system_store.send(HEAD, MSG, 2.0)
        assert e.value.cause == "tls"
        system_store.close()
    finally:
        srv.close()


async def test_pipelined_requests_get_their_answers_in_order(raw_server) -> None:  # type: ignore[no-untyped-def]
    port = await raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    conn = await open_connection("127.0.0.1", port, None, None)
    req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    answers = await conn.request_many([req] * 5)
    assert [a.body for a in answers] == [b"ok"] * 5 and conn.reusable
    assert (await conn.request(req[:-3], b"abc")).body == b"ok"  # still in sync afterwards
    conn.close()


async def test_send_many_to_a_real_aiohttp_node(node: FakeNode) -> None:
    client = client_for(f"http://127.0.0.1:{node.port}/")
    messages = [(HEAD.replace(b"a" * 32, f"{i:032x}".encode()), MSG) for i in range(10)]
    answers = await client.send_many(messages, 2.0)
    assert [a.status for a in answers] == [200] * 10
    assert [r["headers"]["X-Wallarm-Request-Id"] for r in node.received] == [f"{i:032x}" for i in range(10)]
    assert len(client.endpoints[0].idle) == 1  # one connection carried all ten
    client.close()


async def ask_all(client: NodeClient, messages: list[bytes], timeout_s: float) -> list[object]:
    """`ask` each message in one turn of the loop; each one's outcome (Answer or NodeCallError)."""
    futures = [client.ask(HEAD.replace(b"a" * 32, f"{i:032x}".encode()), m, timeout_s)
               for i, m in enumerate(messages)]
    return list(await asyncio.gather(*futures))


async def test_verdicts_asked_in_one_turn_share_one_pipelined_write(node: FakeNode) -> None:
    client = client_for(f"http://127.0.0.1:{node.port}/")
    try:
        outcomes = await ask_all(client, [MSG] * 10, 2.0)
        assert [o.status for o in outcomes] == [200] * 10  # type: ignore[attr-defined]
        assert [r["headers"]["X-Wallarm-Request-Id"] for r in node.received] == [f"{i:032x}" for i in range(10)]
        assert len(client.endpoints[0].idle) == 1 and node.max_in_flight == 1  # one connection carried all
        big = MSG[:-4] + b"\r\nX-Pad: " + b"p" * 9000 + b"\r\n\r\n"  # past COALESCE_MAX_MESSAGE: sent alone
        outcomes = await ask_all(client, [MSG, big, MSG], 2.0)
        assert [o.status for o in outcomes] == [200] * 3  # type: ignore[attr-defined]
        assert len(client.endpoints[0].idle) == 2
    finally:
        client.close()


async def test_a_slow_message_in_a_shared_write_keeps_the_answers_before_it(node: FakeNode) -> None:
    node.slow_token, node.delay_ms = b"/slow", 1000
    client = client_for(f"http://127.0.0.1:{node.port}/", breaker_failures=1, breaker_cooldown_ms=60_000)
    try:
        slow = MSG.replace(b"GET / ", b"GET /slow ")
        outcomes = await ask_all(client, [MSG, MSG, slow, MSG], 0.3)
        assert [getattr(o, "status", None) for o in outcomes[:2]] == [200, 200]
        assert all(isinstance(o, NodeCallError) and o.cause == "timeout" for o in outcomes[2:])
        # the node answered within the call: its breaker heard of a live node, not of a failure
        assert client.breaker_states() == {f"http://127.0.0.1:{node.port}/": "closed"}
        assert client.endpoints[0].check_task is None
    finally:
        client.close()


async def test_a_shared_write_answered_5xx_is_failed_over_and_each_caller_gets_its_answer(node: FakeNode) -> None:
    broken = FakeNode("127.0.0.1", free_port(), mode="500")
    await broken.start_node()
    client = client_for(f"http://127.0.0.1:{broken.port}/", f"http://127.0.0.1:{node.port}/")
    try:
        outcomes = await ask_all(client, [MSG] * 4, 1.0)  # the first node in turn is the broken one
        assert [o.status for o in outcomes] == [200] * 4  # type: ignore[attr-defined]
        assert len(broken.received) == 4 and len(node.received) == 4
    finally:
        client.close()
        await broken.stop_node()
    alone = client_for(f"http://127.0.0.1:{broken.port}/")
    await broken.start_node()
    try:
        assert [o.status for o in await ask_all(alone, [MSG] * 3, 1.0)] == [500] * 3  # type: ignore[attr-defined]
        dead = client_for(f"http://127.0.0.1:{free_port()}/")
        outcomes = await ask_all(dead, [MSG] * 3, 1.0)
        assert all(isinstance(o, NodeCallError) and o.cause == "connect" for o in outcomes)
        dead.close()
    finally:
        alone.close()
        await broken.stop_node()
