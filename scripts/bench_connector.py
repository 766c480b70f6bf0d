#!/usr/bin/env python3
"""Connector benchmark: plain mitmdump vs the connector out-of-band vs in-line, side by side.

One run starts a real upstream (scripts/demo_upstream.py), the real node (`python -m node`,
mode block) and, one after the other, three reverse proxies in front of the upstream:
  plain     mitmdump without any addon
  oob       the connector with `blocking: false` (mirrors request + response to the node)
  inline    the connector with `blocking: true` (waits for the node's verdict)
and measures each with wrk (keep-alive, benign GET): c=50 throughput and c=1 median latency.
Rounds alternate the setups so that background load on a shared machine hits them alike; the
best round of each is reported with ratios against plain mitmdump.

`--clients` additionally measures the candidate HTTP clients for the node call alone (CPU
time per call in this process, against the same node), which is how the connector's client
was chosen (docs/decisions.md, "HTTP client for the node").

Bounded: every wrk run lasts --duration seconds; everything started is stopped at the end.

    python scripts/bench_connector.py [--duration 8] [--rounds 2] [--clients] [--fake-node]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.procs import MITMDUMP, ManagedProcess, free_port  # noqa: E402

PATH = "/api/v1/users?limit=5"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_wrk(out: str) -> tuple[float, float, int]:
    """(requests/s, median latency ms, total requests) from wrk --latency output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\b", out, re.M)
    value, unit = float(m.group(1)), m.group(2)  # type: ignore[union-attr]
    median_ms = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} non-2xx answers:\n{out}")
    return rps, median_ms, total


def wrk(url: str, connections: int, duration: int) -> tuple[float, float, int]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, timeout=duration + 30)
    if out.returncode != 0:
        raise RuntimeError(out.stderr or out.stdout)
    return parse_wrk(out.stdout)


def write_config(path: Path, node_url: str, blocking: bool) -> Path:
    path.write_text(json.dumps({
        "name": "wallarm-plugin", "instance_name": "bench", "protocols": ["http", "https"], "enabled": True,
        "config": {"blocking": blocking, "wallarm_node_address": node_url, "timeout_ms": 500},
    }))
    return path


def start_proxy(name: str, upstream: str, config: Path | None) -> tuple[ManagedProcess, int]:
    port = free_port()
    cmd = [MITMDUMP, "-q", "--mode", f"reverse:{upstream}@127.0.0.1:{port}"]
    if config is not None:
        cmd += ["-s", str(REPO / "addon" / "wallarm.py"), "--set", f"wallarm_config={config}",
                "--set", f"wallarm_admin_listen=127.0.0.1:{free_port()}"]
    proc = ManagedProcess(name, cmd)
    proc.wait_http(f"http://127.0.0.1:{port}/health", timeout=40)
    return proc, port


def start_node(tmp: Path, fake: bool) -> tuple[ManagedProcess, str]:
    port, console = free_port(), free_port()
    if fake:
        proc = ManagedProcess("fake-node", [sys.executable, "-m", "tests.support.fake_node", "--listen",
                                            f"127.0.0.1:{port}", "--control", f"127.0.0.1:{console}",
                                            "--mode", "match"])
    else:
        proc = ManagedProcess("node", [sys.executable, "-m", "node", "--listen", f"127.0.0.1:{port}",
                                       "--console-listen", f"127.0.0.1:{console}", "--db", str(tmp / "node.db"),
                                       "--mode", "block"])
    proc.wait_http(f"http://127.0.0.1:{console}/ready", timeout=120)
    return proc, f"http://127.0.0.1:{port}/"


# ------------------------------------------------------------------ client candidates
SAMPLE = (b"GET /api/v1/users?limit=5 HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nUser-Agent: bench\r\n"
          b"Accept: */*\r\nContent-Length: 0\r\n\r\n")
HEADERS = {"Content-Type": "message/http; msgtype=request", "X-Wallarm-Request-Id": "0" * 32,
           "X-Wallarm-Forwarded-For": "127.0.0.1", "X-Wallarm-Connector-Type": "mitmproxy",
           "X-Wallarm-Mode": "sync"}


async def _measure(call, calls: int, concurrency: int) -> float:  # type: ignore[no-untyped-def]
    async def worker(n: int) -> None:
        for _ in range(n):
            await call()
    await worker(20)  # warm up: connections open
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return (time.process_time() - cpu0) / calls * 1e6


async def bench_clients(node_url: str, calls: int = 3000, concurrency: int = 20) -> dict[str, float]:
    import logging

    import aiohttp
    import httpx

    from addon.config import parse_config
    from addon.node_client import NodeClient

    logging.getLogger("httpx").setLevel(logging.WARNING)
    results: dict[str, float] = {}
    cfg = parse_config(json.dumps({"name": "wallarm-plugin", "config": {"wallarm_node_address": node_url}}))
    ours = NodeClient(cfg.config, [])
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
    from addon.node_client import NodeClient

    cfg = parse_config(json.dumps({"name": "wallarm-plugin", "config": {"wallarm_node_address": node_url}}))
    client = NodeClient(cfg.config, [])
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"users\":[]}\n"
    out: dict[str, float] = {}
    for label, mirror in (("verdict only", False), ("verdict + response mirrored", True)):
        lat = []
        for i in range(calls):
            head = (f"Content-Type: message/http; msgtype=request\r\nX-Wallarm-Request-Id: {i:032x}\r\n"
                    f"X-Wallarm-Forwarded-For: 127.0.0.1\r\nX-Wallarm-Mode: sync\r\n").encode()
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

    cfg = write_config(tmp / f"cpu-{blocking}.json", node_url, blocking=blocking)
    addon = WallarmConnector()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, wallarm_config=str(cfg), wallarm_admin_listen="")
        addon.running()
        batch = []
        for _ in range(flows):
            f = tflow.tflow(resp=False)
            f.client_conn.timestamp_tls_setup = None
            f.request.path = PATH
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
    ap.add_argument("--duration", type=int, default=8, help="seconds per wrk run (default 8)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    ap.add_argument("--clients", action="store_true", help="also compare HTTP clients for the node call")
    ap.add_argument("--clients-only", action="store_true", help="only compare HTTP clients (no wrk runs)")
    ap.add_argument("--fake-node", action="store_true", help="use tests/support/fake_node.py instead of the node")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-connector-"))
    procs: list[ManagedProcess] = []
    try:
        up_port = free_port()
        upstream = ManagedProcess("upstream", [sys.executable, str(REPO / "scripts" / "demo_upstream.py"),
                                               "--listen", f"127.0.0.1:{up_port}"])
        procs.append(upstream)
        upstream.wait_http(f"http://127.0.0.1:{up_port}/health")
        node, node_url = start_node(tmp, args.fake_node)
        procs.append(node)
        up_url = f"http://127.0.0.1:{up_port}"

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
        addon_us = {}
        for blocking in (False, True):
            addon_us[blocking] = asyncio.run(addon_cpu(node_url, tmp, blocking))
            print(f"  {'inline' if blocking else 'oob':7s} {addon_us[blocking]:7.0f} us CPU/req", flush=True)

        setups = {
            "plain": None,
            "oob": write_config(tmp / "oob.json", node_url, blocking=False),
            "inline": write_config(tmp / "inline.json", node_url, blocking=True),
        }
        results: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in setups}
        for rnd in range(args.rounds):
            for name, cfg in setups.items():
                proc, port = start_proxy(f"mitmdump-{name}", up_url, cfg)
                try:
                    url = f"http://127.0.0.1:{port}{PATH}"
                    wrk(url, 50, 2)  # warm-up
                    cpu0, node0 = cpu_seconds(proc.proc.pid), cpu_seconds(node.proc.pid)
                    rps, _, total = wrk(url, 50, args.duration)
                    cpu_us = (cpu_seconds(proc.proc.pid) - cpu0) / total * 1e6
                    node_us = (cpu_seconds(node.proc.pid) - node0) / total * 1e6
                    _, median1, _ = wrk(url, 1, max(3, args.duration // 2))
                    results[name].append((rps, median1, cpu_us, node_us))
                    print(f"round {rnd + 1} {name:7s} c=50 {rps:8.1f} req/s  mitmdump {cpu_us:6.0f} us CPU/req  "
                          f"node {node_us:6.0f} us CPU/req   c=1 median {median1:6.2f} ms", flush=True)
                finally:
                    proc.stop()
                    time.sleep(0.5)

        best = {k: (max(r[0] for r in v), statistics.median(r[1] for r in v), min(r[2] for r in v),
                    statistics.median(r[3] for r in v)) for k, v in results.items()}
        plain_rps, plain_med, plain_cpu, _ = best["plain"]
        print()
        print(f"# best of {args.rounds} rounds, c=50 keep-alive, GET {PATH}, node: "
              f"{'fake (tests/support/fake_node.py)' if args.fake_node else 'real (python -m node, mode block)'}")
        print("# 'cpu x' = plain mitmdump's CPU per request / this setup's: the throughput ratio a")
        print("# CPU-bound mitmdump reaches when nothing else competes for its core.")
        print(f"{'setup':8s} {'req/s':>9s} {'x plain':>8s} {'us/req':>8s} {'cpu x':>6s} {'node us':>8s} "
              f"{'c=1 med ms':>11s} {'+ms':>6s}  target")
        targets = {"plain": "", "oob": ">= 0.85x", "inline": ">= 0.60x, c=1 +<= 1 ms"}
        for name, (rps, med, cpu, node_cpu) in best.items():
            print(f"{name:8s} {rps:9.1f} {rps / plain_rps:8.2f} {cpu:8.0f} {plain_cpu / cpu:6.2f} {node_cpu:8.0f} "
                  f"{med:11.2f} {med - plain_med:6.2f}  {targets[name]}")
        print()
        print("# estimate from CPU alone: plain mitmdump CPU/req / (that + the connector's in-process CPU/req)")
        for blocking, name in ((False, "oob"), (True, "inline")):
            print(f"{name:8s} {plain_cpu / (plain_cpu + addon_us[blocking]):.2f}x  "
                  f"(plain {plain_cpu:.0f} us + connector {addon_us[blocking]:.0f} us)")
        return 0
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
