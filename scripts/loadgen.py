#!/usr/bin/env python3
"""HTTP load for the benchmarks: wrk when installed, else a small asyncio generator.

Both drive N keep-alive HTTP/1.1 connections with the same GET for a bounded time and report
requests/s and latency percentiles (p50/p90/p99, ms) as a `LoadResult`.

The built-in generator runs in the calling process: one task per connection sends a request,
reads the whole answer (Content-Length, chunked or until close) and records the time, until the
deadline. It costs about 0.1-0.2 ms of CPU per request (wrk: ~0.03 ms), against several ms for
mitmdump on these machines; each run reports its own CPU use (`client_cpu_s`) so that can be checked.

    python scripts/loadgen.py http://127.0.0.1:8000/health -c 50 -d 5 [--loadgen builtin|wrk|auto]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

LOADGENS = ("auto", "builtin", "wrk")
GRACE_S = 15.0  # a run may overrun its duration by this much (slow last answers) before it is cut


@dataclass(frozen=True)
class LoadResult:
    tool: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int  # answers outside 2xx/3xx
    socket_errors: int  # connect/read/write errors and timeouts
    client_cpu_s: float  # CPU the load generator itself used
    p95_ms: float = math.nan  # the built-in generator only (wrk does not print it)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def resolve_loadgen(choice: str) -> str:
    """`auto` -> wrk when it is on PATH, else builtin; `wrk` without wrk installed is an error."""
    if choice not in LOADGENS:
        raise ValueError(f"unknown load generator {choice!r} (one of {', '.join(LOADGENS)})")
    has_wrk = shutil.which("wrk") is not None
    if choice == "wrk" and not has_wrk:
        raise RuntimeError("--loadgen wrk: wrk is not installed (apt-get install wrk)")
    if choice == "auto":
        return "wrk" if has_wrk else "builtin"
    return choice


def run_load(tool: str, url: str, connections: int, duration: float) -> LoadResult:
    if tool == "wrk":
        return run_wrk(url, connections, duration)
    if tool == "builtin":
        return run_builtin(url, connections, duration)
    raise ValueError(f"unknown load generator {tool!r}")


# ------------------------------------------------------------------ percentiles
def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 100]."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


# ------------------------------------------------------------------ wrk
_WRK_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def wrk_time_ms(value: str, unit: str) -> float:
    """wrk prints times as e.g. `812.00us`, `1.20ms`, `2.01s`, `1.50m`."""
    return float(value) * _WRK_UNITS_MS[unit]


def parse_wrk(out: str, connections: int, client_cpu_s: float = 0.0) -> LoadResult:
    """A LoadResult from `wrk --latency` output (its distribution has 50/75/90/99%)."""
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", out, re.MULTILINE)
    if not total:
        raise RuntimeError(f"wrk output without a request count:\n{out}")
    pct = {int(p): wrk_time_ms(v, u)
           for p, v, u in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.MULTILINE)}
    if set(pct) != {50, 90, 99}:
        raise RuntimeError(f"wrk output without the 50/90/99% latencies (was --latency given?):\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return LoadResult(
        tool="wrk", connections=connections, requests=int(total.group(1)),
        seconds=wrk_time_ms(total.group(2), total.group(3)) / 1000,
        p50_ms=pct[50], p90_ms=pct[90], p99_ms=pct[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        client_cpu_s=client_cpu_s,
    )


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_wrk(url: str, connections: int, duration: float) -> LoadResult:
    seconds = max(1, round(duration))  # wrk takes whole seconds
    cpu0 = _children_cpu_s()
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         check=False, capture_output=True, text=True, timeout=seconds + GRACE_S)
    if out.returncode != 0:
        raise RuntimeError(f"wrk exited {out.returncode}: {out.stderr or out.stdout}")
    return parse_wrk(out.stdout, connections, _children_cpu_s() - cpu0)


# ------------------------------------------------------------------ built-in asyncio generator
class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.non_2xx = 0
        self.socket_errors = 0


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one whole HTTP/1.1 answer; (status, connection reusable)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    code = int(status)
    reusable = version == "HTTP/1.1" and headers.get("connection") != "close"
    if "chunked" in headers.get("transfer-encoding", ""):
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # chunk + CRLF; the last chunk's CRLF ends the trailers
            if size == 0:
                break
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif code not in (204, 304) and not 100 <= code < 200:
        await reader.read()  # delimited by close
        reusable = False
    return code, reusable


async def _client(host: str, port: int, request: bytes, deadline: float, tally: _Tally) -> None:
    """One keep-alive connection sending `request` back to back until the deadline."""
    writer: asyncio.StreamWriter | None = None
    try:
        while time.perf_counter() < deadline:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(host, port)
                except OSError:
                    tally.socket_errors += 1
                    await asyncio.sleep(0.05)  # a refused connect must not spin
                    continue
            started = time.perf_counter()
            try:
                writer.write(request)
                code, reusable = await _read_answer(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                tally.socket_errors += 1
                writer.close()
                writer = None
                continue
            tally.latencies.append(time.perf_counter() - started)
            if not 200 <= code < 400:
                tally.non_2xx += 1
            if not reusable:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def run_builtin_async(url: str, connections: int, duration: float) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: bench-loadgen\r\n"
               f"Accept: */*\r\n\r\n").encode()
    tally = _Tally()
    cpu0 = time.process_time()
    started = time.perf_counter()
    deadline = started + duration
    clients = [asyncio.create_task(_client(host, port, request, deadline, tally)) for _ in range(connections)]
    try:
        async with asyncio.timeout(duration + GRACE_S):
            await asyncio.gather(*clients)
    finally:
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    seconds = time.perf_counter() - started
    lat_ms = sorted(x * 1000 for x in tally.latencies)
    return LoadResult(
        tool="builtin", connections=connections, requests=len(lat_ms), seconds=seconds,
        p50_ms=percentile(lat_ms, 50), p90_ms=percentile(lat_ms, 90), p99_ms=percentile(lat_ms, 99),
        non_2xx=tally.non_2xx, socket_errors=tally.socket_errors, client_cpu_s=time.process_time() - cpu0,
        p95_ms=percentile(lat_ms, 95),
    )


def run_builtin(url: str, connections: int, duration: float) -> LoadResult:
    return asyncio.run(run_builtin_async(url, connections, duration))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("-c", "--connections", type=int, default=50)
    ap.add_argument("-d", "--duration", type=float, default=5.0, help="seconds (default 5)")
    ap.add_argument("--loadgen", choices=LOADGENS, default="auto")
    args = ap.parse_args()
    r = run_load(resolve_loadgen(args.loadgen), args.url, args.connections, args.duration)
    print(f"{r.tool} c={r.connections}: {r.requests} requests in {r.seconds:.2f} s = {r.rps:.1f} req/s, "
          f"p50 {r.p50_ms:.2f} ms, p90 {r.p90_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, non-2xx {r.non_2xx}, "
          f"socket errors {r.socket_errors}, client CPU {r.client_cpu_s:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
