#!/usr/bin/env python3
"""Connector costs measured in-process: its CPU per request, and the HTTP clients for the node call.

Starts the node (`python -m node`, mode block, temp store; `--fake-node`: tests/support/fake_node.py)
and measures, without any proxy around the connector:
  * the connector's CPU per request (its hooks, message encoding, node I/O and the mirror, 50
    concurrent flows through mitmproxy's test helpers), out-of-band and in-line;
    with `--plain-cpu-us N` (plain mitmdump's CPU per request, e.g. `plain.c50.cpu_us_per_req.mitmdump`
    in scripts/bench_proxy.py's JSON) it also prints the throughput a CPU-bound mitmdump keeps;
  * `--clients`: the candidate HTTP clients for the node call (CPU time per call in this process,
    against the same node) and the in-line round trip at c=1, which is how the connector's client
    was chosen (docs/decisions.md, "HTTP client for the node").

The side-by-side proxy benchmark (plain mitmdump vs out-of-band vs in-line, wrk or a built-in load
generator) is scripts/bench_proxy.py. Bounded: fixed call counts; the node is stopped at the end.

    python scripts/bench_connector.py [--clients | --clients-only] [--fake-node] [--plain-cpu-us N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchproc import BENIGN_PATH, managed_processes, start_node, write_plugin_config

# ------------------------------------------------------------------ client candidates
SAMPLE = (b"GET /api/v1/users?limit=5 HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nUser-Agent: bench\r\n"
          b"Accept: */*\r\nContent-Length: 0\r\n\r\n")
HEADERS = {"Content-Type": "message/http; msgtype=request", "X-Wallarm-Request-Id": "0" * 32,
           "X-Wallarm-Forwarded-For": "127.0.0.1", "X-Wallarm-Connector-Type": "mitmproxy",
           "X-Wallarm-Delivery": "sync"}


async def _measure(call, calls: int, concurrency: int) -> float:  # type: ignore[no-untyped-def]
    async def worker(n: int) -> None:
        for _ in range(n):
            await call()
    await worker(20)  # warm up: connections open
    cpu0 = time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return (time.process_time() - cpu0) / calls * 1e6


async def bench_clients(node_url: str, calls: int = 3000, concurrency: int = 20) -> dict[str, float]:
    import logging

    import aiohttp
    import httpx

    from addon.config import parse_config
    from addon.active import ActiveConfig

    logging.getLogger("httpx").setLevel(logging.WARNING)
    results: dict[str, float] = {}
    cfg = parse_config(json.dumps({"name": "wallarm-plugin", "config": {"wallarm_node_address": node_url}}))
    ours = ActiveConfig.build(cfg).client
    head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items()).encode()

    async def call_ours() -> None:
        a = await ours.send(head, SAMPLE, 2.0)
        assert a.status in (200, 403)
    results["http1 (addon/http1.py)"] = await _measure(call_ours, calls, concurrency)
    ours.close()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as s:
        async def call_aiohttp() -> None:
            async with s.post(node_url, data=SAMPLE, headers=HEADERS,
                              timeout=aiohttp.ClientTimeout(total=2)) as r:
                await r.read()
        results["aiohttp.ClientSession"] = await _measure(call_aiohttp, calls, concurrency)

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as c:
        async def call_httpx() -> None:
            r = await c.post(node_url, content=SAMPLE, headers=HEADERS, timeout=2)
            assert r.status_code in (200, 403)
        results["httpx.AsyncClient"] = await _measure(call_httpx, calls, concurrency)
    return results


async def node_rtt(node_url: str, calls: int = 300) -> dict[str, float]:
    """Median wall time of one in-line node call (sequential, c=1), alone and with each
    request's response mirrored right after it (the default `inspect_response: true`)."""
    from addon.config import parse_config
    from addon.active import ActiveConfig

    cfg = parse_config(json.dumps({"name": "wallarm-plugin", "config": {"wallarm_node_address": node_url}}))
    client = ActiveConfig.build(cfg).client
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"users\":[]}\n"
    out: dict[str, float] = {}
    for label, mirror in (("verdict only", False), ("verdict + response mirrored", True)):
        lat = []
        for i in range(calls):
            head = (f"Content-Type: message/http; msgtype=request\r\nX-Wallarm-Request-Id: {i:032x}\r\n"
                    f"X-Wallarm-Forwarded-For: 127.0.0.1\r\nX-Wallarm-Delivery: sync\r\n").encode()
            started = time.perf_counter()
            await client.send(head, SAMPLE, 2.0)
            lat.append(time.perf_counter() - started)
            if mirror:
                await client.send(head.replace(b"msgtype=request", b"msgtype=response"), response, 2.0)
        out[label] = statistics.median(lat) * 1000
    client.close()
    return out


# ------------------------------------------------------------------ addon CPU in-process
async def addon_cpu(node_url: str, tmp: Path, blocking: bool, flows: int = 1500) -> float:
    """CPU µs the connector adds per request (hooks + node I/O + mirror), measured in-process.

    Uses mitmproxy's own test helpers to run the hooks without the proxy around them, so the
    number is the addon's share alone; the proxy's share is the plain mitmdump CPU per request.
    """
    from mitmproxy.test import taddons, tflow

    from addon.connector import WallarmConnector

    cfg = write_plugin_config(tmp / f"cpu-{blocking}.json", node_url, blocking=blocking)
    addon = WallarmConnector()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, wallarm_config=str(cfg), wallarm_admin_listen="")
        addon.running()
        batch = []
        for _ in range(flows):
            f = tflow.tflow(resp=False)
            f.client_conn.timestamp_tls_setup = None
            f.request.path = BENIGN_PATH
            batch.append(f)
        resp = tflow.tresp()

        async def one(f) -> None:  # type: ignore[no-untyped-def]
            await addon.requestheaders(f)
            await addon.request(f)
            f.response = resp
            addon.response(f)

        for f in batch[:100]:  # warm-up: connections open
            await one(f)
        await addon.mirror.join()
        cpu0 = time.process_time()
        # 50 concurrent "clients", like wrk -c50
        async def client(chunk) -> None:  # type: ignore[no-untyped-def]
            for f in chunk:
                await one(f)
        rest = batch[100:]
        await asyncio.gather(*(client(rest[i::50]) for i in range(50)))
        await addon.mirror.join()
        used = (time.process_time() - cpu0) / len(rest) * 1e6
        addon.done()
        await asyncio.sleep(0.05)
        return used


# ------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", action="store_true", help="also compare HTTP clients for the node call")
    ap.add_argument("--clients-only", action="store_true", help="only compare HTTP clients")
    ap.add_argument("--fake-node", action="store_true", help="use tests/support/fake_node.py instead of the node")
    ap.add_argument("--plain-cpu-us", type=float, metavar="N",
                    help="plain mitmdump's CPU per request (from bench_proxy.py): print the CPU-bound estimate")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-connector-") as tmp_dir, managed_processes() as procs:
        tmp = Path(tmp_dir)
        node, node_url = start_node(tmp, args.fake_node)
        procs.append(node)
        if args.clients or args.clients_only:
            print(f"# node client candidates: CPU per call in the caller, 20 concurrent (node {node_url})")
            for name, us in asyncio.run(bench_clients(node_url)).items():
                print(f"  {name:28s} {us:8.1f} us CPU/call", flush=True)
            print("# in-line node round trip with addon/http1.py, c=1 (median):")
            for label, ms in asyncio.run(node_rtt(node_url)).items():
                print(f"  {label:28s} {ms:8.3f} ms", flush=True)
            if args.clients_only:
                return 0

        print("# connector CPU per request in-process (hooks + node I/O + mirror), 50 concurrent:")
        for blocking, name in ((False, "oob"), (True, "inline")):
            used = asyncio.run(addon_cpu(node_url, tmp, blocking))
            line = f"  {name:7s} {used:7.0f} us CPU/req"
            if args.plain_cpu_us:
                # what a CPU-bound mitmdump keeps of its throughput with the connector's share added
                line += (f"   -> {args.plain_cpu_us / (args.plain_cpu_us + used):.2f}x plain "
                         f"(plain {args.plain_cpu_us:.0f} us + connector {used:.0f} us)")
            print(line, flush=True)
        return 0

if __name__ == "__main__":
    sys.exit(main())
