"""Overload, in process: the bounds that keep the connector's memory and node calls finite.

The side-by-side run with real processes (RSS over time, drops, client latency) is
scripts/bench_overload.py; tests/test_overload_e2e.py runs it CI-sized.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from addon.active import ActiveConfig
from addon.config import parse_config
from addon.delivery import MirrorDelivery
from addon.metrics import Metrics
from addon.mirror import Mirror
from addon.node_client import OVERLOAD, NodeCallError, NodeClient
from tests.support.fake_node import FakeNode
from tests.support.procs import free_port

HEAD = b"Content-Type: message/http; msgtype=request\r\nX-Wallarm-Request-Id: " + b"a" * 32 + b"\r\n"
MSG = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


@pytest.fixture
async def slow_node() -> AsyncIterator[FakeNode]:
    n = FakeNode("127.0.0.1", free_port(), mode="slow", delay_ms=300)
    await n.start_node()
    yield n
    await n.stop_node()


def client_for(node: FakeNode, **settings: object) -> NodeClient:
    cfg = {"name": "wallarm-plugin",
           "config": {"wallarm_node_address": f"http://127.0.0.1:{node.port}/", **settings}}
    return ActiveConfig.build(parse_config(json.dumps(cfg))).client


async def outcome(client: NodeClient, timeout_s: float) -> str:
    try:
        await client.send(HEAD, MSG, timeout_s)
    except NodeCallError as e:
        return e.cause
    return "answered"


async def test_calls_past_the_bound_wait_then_fail_as_overload(slow_node: FakeNode) -> None:
    client = client_for(slow_node, max_in_flight_per_node=3)
    try:
        results = await asyncio.gather(*(outcome(client, 0.2) for _ in range(10)))
        # 3 calls reached the node (and timed out there); 7 never got a slot within their deadline
        assert sorted(results) == [OVERLOAD] * 7 + ["timeout"] * 3
        assert slow_node.posts == 3 and slow_node.max_in_flight == 3
        assert client.in_flight() == {f"http://127.0.0.1:{slow_node.port}/": 0}
        # overloads are not the node's failures: only the 3 timeouts count toward the breaker
        assert client.endpoints[0].breaker.failures <= 3
    finally:
        client.close()


async def test_calls_at_the_bound_wait_for_a_slot_and_are_answered(slow_node: FakeNode) -> None:
    slow_node.delay_ms = 50
    client = client_for(slow_node, max_in_flight_per_node=2)
    try:
        results = await asyncio.gather(*(outcome(client, 2.0) for _ in range(12)))
        assert results == ["answered"] * 12
        assert slow_node.posts == 12 and slow_node.max_in_flight == 2
    finally:
        client.close()


async def test_mirror_queue_is_bounded_by_bytes_as_well_as_count() -> None:
    dropped: list[int] = []
    gate = asyncio.Event()

    async def deliver(items: list[bytes]) -> None:
        await gate.wait()  # a node that takes nothing

    mirror: Mirror[bytes] = Mirror(deliver, lambda: dropped.append(1), capacity=1000, workers=1,
                                   max_bytes=10_000, size_of=len)
    mirror.start()
    try:
        accepted = sum(mirror.offer(b"x" * 1000) for _ in range(50))
        await asyncio.sleep(0.01)  # the worker takes its batch (and blocks on the gate)
        accepted += sum(mirror.offer(b"x" * 1000) for _ in range(50))
        # never more than 10,000 queued bytes; a worker's batch in hand is out of the queue
        assert mirror.bytes <= 10_000 and mirror.depth <= 10
        assert accepted + len(dropped) == 100 and len(dropped) >= 80
        assert accepted == 10 + mirror.depth  # the first batch taken (10) and what waits now
        mirror.resize(1000, 1, 0.0, max_bytes=20_000)
        assert sum(mirror.offer(b"y" * 1000) for _ in range(20)) == 10
    finally:
        gate.set()
        mirror.stop()


@pytest.mark.parametrize("value", [0, 10_001, "8"])
def test_max_in_flight_setting_is_validated(value: object) -> None:
    cfg = {"name": "wallarm-plugin", "config": {"wallarm_node_address": "https://n.example",
                                                "max_in_flight_per_node": value}}
    with pytest.raises(ValueError, match="max_in_flight_per_node"):
        parse_config(json.dumps(cfg))



async def test_a_slot_that_comes_too_late_for_the_node_is_not_used(slow_node: FakeNode) -> None:
    """Past the bound, a call whose slot frees up with less time left than the node's usual answer
    time fails as overload at once: the node never works for a caller already gone."""
    slow_node.delay_ms = 200
    client = client_for(slow_node, max_in_flight_per_node=1)
    try:
        assert await outcome(client, 2.0) == "answered"  # the node's answer time is now known: ~200 ms
        results = await asyncio.gather(*(outcome(client, 0.5) for _ in range(5)))
        # the 1st is sent at once, the 2nd after 200 ms (300 ms left), the rest after 400 ms (100 ms left)
        assert results == ["answered", "answered", OVERLOAD, OVERLOAD, OVERLOAD]
        assert slow_node.posts == 3 and slow_node.max_in_flight == 1
    finally:
        client.close()


def test_drops_are_counted_each_and_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    delivery = MirrorDelivery(metrics)
    with caplog.at_level("WARNING", logger="wallarm.mirror"):
        for _ in range(500):
            delivery.count_drop()
    assert metrics.mirror_dropped == 500
    lines = [r.getMessage() for r in caplog.records if "mirror queue full" in r.getMessage()]
    assert lines == ["mirror queue full (the node takes messages slower than they come): dropping; "
                     "1 dropped so far (wallarm_connector_mirror_dropped_total)"]
