"""The connector's node list under load, with real processes (issue 16, item 4): two real nodes in
block mode, mitmdump with the connector in-line listing both, the test upstream, a steady tagged
client load (tests/support/tagged_load.py: every request accounted for, every 5th an attack).

One node is SIGKILLed mid-run: no client sees an error (no 5xx, no dropped connection), every
request still gets a verdict (no fail-open), no attack reaches the upstream. The node is then
restarted on the same port: the connector's breaker finds it alive and traffic returns to it
(its own /metrics counts the messages it judges again).
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.node import NodeHandle, start_node
from tests.support.proxy import start_proxy, start_upstream, write_config
from tests.support.tagged_load import run_tagged_load

pytestmark = pytest.mark.e2e

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CONNECTIONS = 8
ATTACK_EVERY = 5
KILL_AT_S = 3.0
RESTART_AFTER_S = 3.0  # the node stays down this long under load
LOAD_AFTER_RESTART_S = 6.0


def sample(url: str, name: str) -> float:
    """Sum of a metric's samples over its label sets, from a Prometheus page."""
    total = 0.0
    with OPENER.open(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
    return total


def judged(node: NodeHandle) -> float:
    """In-line request messages this node process has judged."""
    return sample(node.console_url + "/metrics", "wallarm_node_messages_total")


def test_a_node_killed_under_load_costs_no_request_and_gets_its_traffic_back(tmp_path: Path) -> None:
    node_a = start_node(tmp_path / "a", mode="block")
    node_b = start_node(tmp_path / "b", mode="block")
    upstream = start_upstream()
    config = write_config(tmp_path / "plugin.json", [node_a.endpoint_url, node_b.endpoint_url], timeout_ms=3000)
    proxy = start_proxy(upstream.url, config)
    restarted: list[NodeHandle] = []
    marks: dict[str, float] = {}
    try:
        async def kill_and_restart() -> None:
            await asyncio.sleep(KILL_AT_S)
            marks["a_before_kill"] = judged(node_a)
            node_a.stop(signal.SIGKILL)
            marks["killed"] = time.monotonic()
            await asyncio.sleep(RESTART_AFTER_S)
            # same database, same ports: the connector's address list does not change
            restarted.append(await asyncio.to_thread(start_node, tmp_path / "a", "block",
                                                     port=node_a.port, console_port=node_a.console_port))
            marks["restarted"] = time.monotonic()

        async def main():  # type: ignore[no-untyped-def]
            # the load runs until LOAD_AFTER_RESTART_S after the restart (the node's start-up time varies)
            task = asyncio.create_task(kill_and_restart())
            tallies = []
            while not task.done() or time.monotonic() - marks.get("restarted", time.monotonic()) < LOAD_AFTER_RESTART_S:
                tallies.append(await run_tagged_load("127.0.0.1", proxy.port, f"mn{len(tallies)}", CONNECTIONS,
                                                     1.0, ATTACK_EVERY))
            await task
            return tallies

        tallies = asyncio.run(main())
        outcomes: dict[str, int] = {}
        for t in tallies:
            for k, v in t.outcomes.items():
                outcomes[k] = outcomes.get(k, 0) + v
        problems = [p for t in tallies for p in t.problems]
        connect_errors = sum(t.proxy_connect_errors for t in tallies)
        a_after = judged(restarted[0])
        b_total = judged(node_b)
        fail_open = sample(proxy.admin + "/metrics", "wallarm_connector_fail_open_total")
        print(f"\n{sum(t.total for t in tallies)} requests: {outcomes}; node A judged {marks['a_before_kill']:.0f} "
              f"before the kill and {a_after:.0f} after its restart, node B {b_total:.0f}; fail-open {fail_open:.0f}; "
              f"A was down {marks['restarted'] - marks['killed']:.1f} s")
        assert set(outcomes) <= {"upstream", "blocked"}, problems
        assert connect_errors == 0 and fail_open == 0
        assert outcomes["upstream"] > 100 and outcomes["blocked"] > 20
        counts = upstream.tag_counts()
        attacks = [tag for tag in counts if int(tag.rsplit("-", 1)[1]) % ATTACK_EVERY == 0]
        assert attacks == [], f"attacks reached the upstream: {attacks[:5]}"
        assert marks["a_before_kill"] > 0  # A had its share before the kill
        assert a_after > 0, "no traffic went back to the restarted node"
        breakers = sample(proxy.admin + "/metrics", "wallarm_connector_node_breaker_open")
        assert breakers == 0  # both breakers closed again
    finally:
        proxy.stop()
        for n in restarted + [node_a, node_b]:
            n.stop()
        upstream.stop()
