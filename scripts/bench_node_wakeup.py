#!/usr/bin/env python3
"""How much of in-line mode's c=1 latency is the node waking up from idle.

Sends 300 sequential verdict requests to a real node (`python -m node`, mode block) with the
connector's own client (`addon/node_client.py`), first back to back, then with the caller
busy for 2, 5 and 10 ms between calls (the time mitmdump spends on each request at c=1 on a
slow machine), and prints the median node round trip for each gap. If the round trip grows
with the gap, the difference is the node process (and its core) waking from idle, not work
the connector or the node does. Bounded: 5 x 300 calls, then everything is stopped.

    python scripts/bench_node_wakeup.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wallarm_wire import protocol  # noqa: E402
from addon.config import parse_config  # noqa: E402
from addon.active import ActiveConfig  # noqa: E402
from tests.support.procs import ManagedProcess, free_port  # noqa: E402

CALLS = 300
GAPS_S = (0.0, 0.002, 0.005, 0.010, 0.0)


def message_head() -> bytes:
    return (f"Content-Type: {protocol.CONTENT_TYPE_REQUEST}\r\n"
            f"{protocol.H_REQUEST_ID}: {protocol.new_request_id()}\r\n"
            f"{protocol.H_FORWARDED_FOR}: 127.0.0.1\r\n{protocol.H_DELIVERY}: {protocol.DELIVERY_SYNC}\r\n").encode()


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-wakeup-"))
    port, console = free_port(), free_port()
    node = ManagedProcess("node", [sys.executable, "-m", "node", "--listen", f"127.0.0.1:{port}",
                                   "--console-listen", f"127.0.0.1:{console}", "--db", str(tmp / "node.db"),
                                   "--mode", "block"])
    client = None
    try:
        node.wait_http(f"http://127.0.0.1:{console}/ready", timeout=120)
        cfg = parse_config(json.dumps({"name": "wallarm-plugin",
                                       "config": {"wallarm_node_address": f"http://127.0.0.1:{port}/"}}))
        client = ActiveConfig.build(cfg).client
        wire = protocol.encode_request(protocol.RequestMessage(
            "GET", "/api/v1/users?limit=5", [(b"Host", b"api.test"), (b"User-Agent", b"wrk")], b""))
        for gap in GAPS_S:
            latencies = []
            for _ in range(CALLS):
                started = time.perf_counter()
                await client.send(message_head(), wire, 1.0)
                latencies.append(time.perf_counter() - started)
                if gap:
                    time.sleep(gap)  # the caller is busy elsewhere; the node idles meanwhile
            print(f"caller busy {gap * 1000:4.0f} ms between calls: node round trip median "
                  f"{statistics.median(latencies) * 1000:.3f} ms")
    finally:
        if client is not None:
            client.close()
        node.stop()


if __name__ == "__main__":
    asyncio.run(main())
