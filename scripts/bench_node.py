#!/usr/bin/env python3
"""Benchmark the node's connector endpoint against plain mitmdump, side by side in one run.

    python scripts/bench_node.py [--duration 10] [--connections 50] [--threads 2]

Starts (all on loopback, free ports, stopped at the end):
  1. the demo upstream (scripts/demo_upstream.py);
  2. plain mitmdump in reverse mode in front of it, no addon: wrk sends a benign GET;
  3. the node (`python -m node`, block mode, temp SQLite store): wrk POSTs benign protocol v1
     request messages (a browser-like GET with cookies, each with a fresh request id, keep-alive)
     straight to its endpoint.
Prints req/s and latency for both and the ratio (target: node >= 2.5x plain mitmdump).

Then, in this process, the cost of one analysis inline vs. through a thread (why the node runs
the engine on the event loop). Everything is bounded by --duration / --samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wallarm_wire.protocol import RequestMessage, encode_request  # noqa: E402
sys.path.insert(0, str(REPO / "scripts"))
from benchproc import parse_prometheus  # noqa: E402

BENIGN = RequestMessage(
    "GET", "/api/v1/products?q=lamp&page=2&sort=price",
    [(b"Host", b"shop.example.com"),
     (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
     (b"Accept", b"application/json, text/plain, */*"), (b"Accept-Language", b"en-US,en;q=0.9"),
     (b"Accept-Encoding", b"gzip, deflate, br"), (b"Referer", b"https://shop.example.com/catalog?page=1"),
     (b"Cookie", b"session=3f9a1c2e7b; theme=dark; consent=1")],
)

WRK_LUA = r"""
local body = %(body)s
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local a, b = math.random(0, 0x7fffffff), math.random(0, 0x7fffffff)
local n = 0
request = function()
  n = n + 1
  local rid = string.format("%%08x%%08x%%08x%%08x", a, b, math.random(0, 0x7fffffff), n %% 0x7fffffff)
  return wrk.format("POST", "/", {
    ["Content-Type"] = "message/http; msgtype=request",
    ["X-Wallarm-Request-Id"] = rid,
    ["X-Wallarm-Forwarded-For"] = "192.0.2.44",
    ["X-Wallarm-Forwarded-Host"] = "shop.example.com",
    ["X-Wallarm-Delivery"] = "sync",
    ["X-Wallarm-Connector-Type"] = "mitmproxy",
  }, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback only
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b:03d}" if b < 32 or b > 126 or b in (34, 92) else chr(b) for b in data) + '"'


def run_wrk(url: str, duration: int, connections: int, threads: int, script: Path | None = None) -> dict:
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)

    def pct(p: str) -> str:
        m = re.search(rf"^\s+{p}%\s+(\S+)", out, re.M)
        return m.group(1) if m else "?"
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(0) if errors else "", "raw": out}


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    f = open(log, "wb")
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def inline_vs_thread(samples: int) -> tuple[float, float, float, float]:
    """Median analysis cost inline, and wall time for `samples` messages at concurrency 50
    analysed inline vs. via the default thread pool."""
    from node.detect.engine import Engine

    engine = Engine()
    for _ in range(200):
        engine.analyze_request(BENIGN)
    each = []
    for _ in range(samples):
        t = time.perf_counter()
        engine.analyze_request(BENIGN)
        each.append(time.perf_counter() - t)

    async def batch(in_thread: bool) -> float:
        loop = asyncio.get_running_loop()

        async def one() -> None:
            if in_thread:
                await loop.run_in_executor(None, engine.analyze_request, BENIGN)
            else:
                engine.analyze_request(BENIGN)
                await asyncio.sleep(0)
        t = time.perf_counter()
        for _ in range(samples // 50):
            await asyncio.gather(*(one() for _ in range(50)))
        return (time.perf_counter() - t) / (samples // 50 * 50)

    inline = asyncio.run(batch(False))
    threaded = asyncio.run(batch(True))
    return statistics.median(each), statistics.quantiles(each, n=100)[98], inline, threaded


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=5000, help="messages for the inline/thread comparison")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    py = sys.executable
    mitmdump = str(Path(py).parent / "mitmdump")
    work = Path(tempfile.mkdtemp(prefix="bench-node-"))
    up_port, proxy_port, node_port, console_port = free_port(), free_port(), free_port(), free_port()
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start([py, "scripts/demo_upstream.py", "--listen", f"127.0.0.1:{up_port}"], work / "upstream.log"))
        procs.append(start([mitmdump, "-q", "--mode", f"reverse:http://127.0.0.1:{up_port}@127.0.0.1:{proxy_port}"],
                           work / "mitmdump.log"))
        config = {"listen": f"127.0.0.1:{node_port}", "console_listen": f"127.0.0.1:{console_port}",
                  "db": str(work / "node.db"), "mode": "block", "console_token": "bench-token-0123456789",
                  "log_level": "WARNING"}
        (work / "node.json").write_text(json.dumps(config))
        procs.append(start([py, "-m", "node", "--config", str(work / "node.json")], work / "node.log"))
        wait_http(f"http://127.0.0.1:{up_port}/health")
        wait_http(f"http://127.0.0.1:{proxy_port}/health")
        wait_http(f"http://127.0.0.1:{console_port}/ready")

        lua = work / "node.lua"
        lua.write_text(WRK_LUA % {"body": lua_string(encode_request(BENIGN))})
        # A short warm-up of each, then the measured runs back to back.
        run_wrk(f"http://127.0.0.1:{proxy_port}/api/v1/products?q=lamp", 2, a.connections, a.threads)
        run_wrk(f"http://127.0.0.1:{node_port}/", 2, a.connections, a.threads, lua)
        proxy = run_wrk(f"http://127.0.0.1:{proxy_port}/api/v1/products?q=lamp", a.duration, a.connections, a.threads)
        node = run_wrk(f"http://127.0.0.1:{node_port}/", a.duration, a.connections, a.threads, lua)

        print(f"wrk -t{a.threads} -c{a.connections} -d{a.duration}s, keep-alive, loopback")
        print(f"{'target':<44} {'req/s':>9} {'p50':>9} {'p99':>9} {'non-2xx':>8}  ratio")
        print(f"{'plain mitmdump (reverse, no addon), GET':<44} {proxy['rps']:>9.0f} {proxy['p50']:>9} {proxy['p99']:>9} {proxy['non2xx']:>8}  1.00")
        print(f"{'node endpoint, benign protocol v1 POST':<44} {node['rps']:>9.0f} {node['p50']:>9} {node['p99']:>9} {node['non2xx']:>8}  {node['rps'] / proxy['rps']:.2f}")
        for name, r in (("mitmdump", proxy), ("node", node)):
            if r["errors"]:
                print(f"  {name}: {r['errors']}")
        ok = node["rps"] >= 2.5 * proxy["rps"] and node["non2xx"] == 0
        print(f"target node >= 2.5x plain mitmdump: {'met' if ok else 'NOT met'}")
        with urllib.request.urlopen(f"http://127.0.0.1:{console_port}/metrics", timeout=5) as r:  # noqa: S310
            metrics = r.read().decode()
        got = parse_prometheus(metrics)
        total, count = got.get("wallarm_node_analysis_seconds_sum", 0.0), int(got.get("wallarm_node_analysis_seconds_count", 0))
        if count:
            print(f"node analysis time (its /metrics): mean {total / count * 1e6:.0f} us over {count} messages")
    finally:
        for p in reversed(procs):
            stop(p)

    median, p99, inline, threaded = inline_vs_thread(a.samples)
    print(f"\nin-process, benign message: analysis median {median * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us")
    print(f"at concurrency 50: inline {inline * 1e6:.0f} us/msg vs thread pool {threaded * 1e6:.0f} us/msg "
          f"({threaded / inline:.1f}x)")
    print(f"logs in {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
