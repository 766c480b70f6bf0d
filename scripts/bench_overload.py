#!/usr/bin/env python3
"""Overload benchmark: mirroring to a node 10x slower than the traffic, and in-line at the node's capacity.

Out-of-band, side by side in the same run: the demo upstream and two mitmdumps with the connector
in out-of-band mode (`blocking: false`), each mirroring to its own fake node (tests/support/
fake_node.py, a real HTTP server): `healthy` answers at once, `slow` answers each message after a
delay calibrated so it takes about a tenth of the messages offered (`--slow-factor`). Both proxies
get the same keep-alive benign GET load at the same time, so the machine's noise hits both alike,
while each mitmdump's RSS is sampled from /proc/<pid>/status (VmRSS). Printed: RSS over time, the
mirror accounting (sent, failed, dropped, queued), client latency p50/p95 side by side.

Calibration: a short warm-up with both nodes healthy measures the messages offered per second
(a request and its response each); the slow node's delay is then `factor x workers / rate` (the
connector's mirror workers each hold one connection and the fake node answers a connection's
pipelined messages one after the other). The slowdown actually reached is reported
(`offered / sent` on the slow side).

In-line at capacity: one mitmdump in-line (`blocking: true`, `max_in_flight_per_node`
`--inline-bound`) to a fake node that takes `--inline-delay-ms` per message, driven by more
clients than the bound (`--inline-connections`): the most calls the node ever had at once (must
not exceed the bound), the connector's in-flight gauge sampled during the run, fail-opens by
cause (`overload` past the bound), client latency. The node's count includes calls the
connector gave up on (timeouts) that it is still working on.

Bounded: every process is stopped on the way out (scripts/benchproc.py), the run lasts about
warm-up + 2 x duration + start-up; `--duration` is capped at 600 s.

    python scripts/bench_overload.py [--duration 20] [--connections 20] [--slow-factor 10]
        [--queue-size 10000] [--inline-connections 48] [--inline-bound 8] [--inline-delay-ms 100]
        [--inline-timeout-ms 1000] [--json]

Exit status: 0 every check met, 1 a check missed, 2 error. Checks: slow-side drops counted and
RSS growth after warm-up under `--rss-growth-mb`; slow-side p50 and p95 within 10% of healthy
(plus `--latency-slack-ms`, for sub-millisecond noise); in-line: node concurrency <= bound, every
client answered 2xx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import benchproc  # noqa: E402 - after the path set-up
from loadgen import LoadResult, run_builtin_async  # noqa: E402
from tests.support.proxy import FakeNodeProc, start_fake_node  # noqa: E402

MAX_DURATION_S = 600.0
WARMUP_S = 3.0
SAMPLE_EVERY_S = 0.5
MIRROR_WORKERS = 4  # the connector's default `mirror_workers`
LATENCY_TOLERANCE = 1.10  # the "within 10%"


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MB (VmRSS in /proc/<pid>/status, Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    """Samples each named process's RSS (and optional extra probes) every SAMPLE_EVERY_S."""

    def __init__(self, pids: dict[str, int], probes: dict[str, object] | None = None):
        super().__init__(daemon=True)
        self.pids = pids
        self.probes = probes or {}
        self.rows: list[dict[str, float]] = []
        self._done = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._done.is_set():
            row = {"t": round(time.monotonic() - self._t0, 2)}
            for name, pid in self.pids.items():
                row[name] = round(rss_mb(pid), 1)
            for name, probe in self.probes.items():
                try:
                    row[name] = float(probe())  # type: ignore[operator]
                except Exception:  # noqa: BLE001 - a missed sample is a gap, not a failure
                    pass
            self.rows.append(row)
            self._done.wait(SAMPLE_EVERY_S)

    def finish(self) -> list[dict[str, float]]:
        self._done.set()
        self.join(5)
        return self.rows


MIRROR_KEYS = ("wallarm_connector_mirror_sent_total", "wallarm_connector_mirror_dropped_total")


def mirror_counts(proxy: benchproc.Proxy) -> dict[str, float]:
    m = proxy.metrics()
    failed = sum(v for k, v in m.items() if k.startswith("wallarm_connector_mirror_failed_total"))
    return {"sent": m.get(MIRROR_KEYS[0], 0.0), "dropped": m.get(MIRROR_KEYS[1], 0.0), "failed": failed,
            "queued": m.get("wallarm_connector_mirror_queue_depth", 0.0),
            "queued_bytes": m.get("wallarm_connector_mirror_queue_bytes", 0.0)}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) if k not in ("queued", "queued_bytes") else after[k] for k in after}


async def load_both(urls: list[str], connections: int, duration: float) -> list[LoadResult]:
    return list(await asyncio.gather(*(run_builtin_async(u, connections, duration) for u in urls)))


@dataclass
class Side:
    name: str
    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    non_2xx: int
    socket_errors: int
    rss_start_mb: float
    rss_after_warmup_mb: float
    rss_max_mb: float
    rss_end_mb: float
    mirror: dict[str, float]

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_after_warmup_mb


def side(name: str, load: LoadResult, rows: list[dict[str, float]], mirror: dict[str, float]) -> Side:
    series = [r[name] for r in rows if name in r]
    third = max(1, len(series) // 3)
    return Side(name, load.requests, round(load.rps, 1), round(load.p50_ms, 2), round(load.p95_ms, 2),
                load.non_2xx, load.socket_errors, series[0], max(series[:third]), max(series), series[-1], mirror)


def run_out_of_band(tmp: Path, procs: list, args: argparse.Namespace, upstream: str) -> dict:
    nodes: dict[str, FakeNodeProc] = {}
    proxies: dict[str, benchproc.Proxy] = {}
    for name in ("healthy", "slow"):
        node = start_fake_node("pass")
        procs.append(node.proc)
        nodes[name] = node
        config = benchproc.write_plugin_config(tmp / f"{name}.json", node.url, blocking=False,
                                               mirror_queue_size=args.queue_size, mirror_workers=MIRROR_WORKERS)
        proxies[name] = benchproc.start_proxy(name, upstream, config)
        procs.append(proxies[name].proc)
    for p in proxies.values():
        benchproc.wait_ready(p)
    urls = [proxies[n].url() for n in ("healthy", "slow")]
    warm = asyncio.run(load_both(urls, args.connections, WARMUP_S))
    offered_per_s = 2 * warm[1].rps  # a request and its response are mirrored
    delay_ms = max(1, round(1000 * args.slow_factor * MIRROR_WORKERS / max(offered_per_s, 1.0)))
    nodes["slow"].set_mode("slow", delay_ms=delay_ms)
    before = {n: mirror_counts(p) for n, p in proxies.items()}
    sampler = Sampler({n: p.proc.proc.pid for n, p in proxies.items()})
    sampler.start()
    try:
        loads = asyncio.run(load_both(urls, args.connections, args.duration))
    finally:
        rows = sampler.finish()
    time.sleep(0.5)  # the healthy side's last batches reach its node
    mirror = {n: delta(mirror_counts(p), before[n]) for n, p in proxies.items()}
    sides = [side(n, load, rows, mirror[n]) for n, load in zip(("healthy", "slow"), loads)]
    slow = mirror["slow"]
    offered = slow["sent"] + slow["failed"] + slow["dropped"] + slow["queued"]
    return {"slow_delay_ms": delay_ms, "offered_per_s_warmup": round(offered_per_s, 1),
            "slowdown_reached": round(offered / slow["sent"], 1) if slow["sent"] else None,
            "sides": [asdict(s) | {"rss_growth_mb": round(s.rss_growth_mb, 1)} for s in sides], "rss": rows}


def run_in_line(tmp: Path, procs: list, args: argparse.Namespace, upstream: str) -> dict:
    node = start_fake_node("slow", delay_ms=args.inline_delay_ms)
    procs.append(node.proc)
    config = benchproc.write_plugin_config(tmp / "inline.json", node.url, blocking=True,
                                           timeout_ms=args.inline_timeout_ms,
                                           max_in_flight_per_node=args.inline_bound, inspect_response=False)
    proxy = benchproc.start_proxy("inline", upstream, config)
    procs.append(proxy.proc)
    node.set_mode("pass")  # ready checks pass quickly; the delay applies once loaded
    benchproc.wait_ready(proxy)
    node.set_mode("slow", delay_ms=args.inline_delay_ms)
    node.clear()
    gauge = f'wallarm_connector_node_in_flight{{node="{node.url}"}}'
    sampler = Sampler({"inline": proxy.proc.proc.pid}, {"in_flight": lambda: proxy.metrics()[gauge]})
    sampler.start()
    try:
        [load] = asyncio.run(load_both([proxy.url()], args.inline_connections, args.duration / 2))
    finally:
        rows = sampler.finish()
    m = proxy.metrics()
    fail_open = {k.split('"')[1]: v for k, v in m.items() if k.startswith("wallarm_connector_fail_open_total{")}
    stats = node.stats()
    return {"bound": args.inline_bound, "node_delay_ms": args.inline_delay_ms, "timeout_ms": args.inline_timeout_ms,
            "connections": args.inline_connections, "requests": load.requests, "rps": round(load.rps, 1),
            "p50_ms": round(load.p50_ms, 2), "p95_ms": round(load.p95_ms, 2), "non_2xx": load.non_2xx,
            "socket_errors": load.socket_errors, "node_posts": stats["posts"],
            "node_max_in_flight": stats["max_in_flight"],
            "gauge_max_in_flight": max((r.get("in_flight", 0.0) for r in rows), default=0.0),
            "fail_open": fail_open, "passed": m.get("wallarm_connector_requests_passed_total", 0.0)}


def checks(result: dict, args: argparse.Namespace) -> dict[str, bool]:
    healthy, slow = result["out_of_band"]["sides"]
    slack = args.latency_slack_ms
    inline = result["in_line"]
    return {
        "drops counted": slow["mirror"]["dropped"] > 0,
        "slow-side RSS bounded": slow["rss_growth_mb"] <= args.rss_growth_mb,
        "p50 within 10%": slow["p50_ms"] <= healthy["p50_ms"] * LATENCY_TOLERANCE + slack,
        "p95 within 10%": slow["p95_ms"] <= healthy["p95_ms"] * LATENCY_TOLERANCE + slack,
        "every client answered": all(s["non_2xx"] == 0 and s["socket_errors"] == 0 for s in (healthy, slow))
        and inline["non_2xx"] == 0 and inline["socket_errors"] == 0,
        # A call the connector gave up on (timeout) may still run at the node: the node's own count
        # is held to the bound only when no call timed out.
        "in-line calls bounded": inline["gauge_max_in_flight"] <= inline["bound"]
        and (inline["node_max_in_flight"] <= inline["bound"] or inline["fail_open"].get("timeout", 0) > 0),
    }


def print_report(result: dict) -> None:
    oob = result["out_of_band"]
    print(f"out-of-band: slow node delay {oob['slow_delay_ms']} ms per message "
          f"(offered {oob['offered_per_s_warmup']} msg/s in warm-up; slowdown reached {oob['slowdown_reached']}x)")
    print("\nRSS over time (MB):")
    rows = oob["rss"]
    step = max(1, len(rows) // 15)
    print(f"{'t (s)':>7} {'healthy':>9} {'slow':>9}")
    for r in rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else []):
        print(f"{r['t']:>7.1f} {r.get('healthy', 0):>9.1f} {r.get('slow', 0):>9.1f}")
    print(f"\n{'side':<8} {'req':>7} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'RSS max':>8} {'growth':>7} "
          f"{'sent':>7} {'dropped':>8} {'failed':>7} {'queued':>7}")
    for s in oob["sides"]:
        m = s["mirror"]
        print(f"{s['name']:<8} {s['requests']:>7} {s['rps']:>7.1f} {s['p50_ms']:>7.2f} {s['p95_ms']:>7.2f} "
              f"{s['rss_max_mb']:>8.1f} {s['rss_growth_mb']:>7.1f} {m['sent']:>7.0f} {m['dropped']:>8.0f} "
              f"{m['failed']:>7.0f} {m['queued']:>7.0f}")
    il = result["in_line"]
    print(f"\nin-line at capacity: bound {il['bound']}, node {il['node_delay_ms']} ms/message, "
          f"timeout {il['timeout_ms']} ms, "
          f"c={il['connections']}: {il['requests']} requests ({il['rps']} req/s), p50 {il['p50_ms']} ms, "
          f"p95 {il['p95_ms']} ms, non-2xx {il['non_2xx']}")
    print(f"  node saw at most {il['node_max_in_flight']} calls at once, timed-out calls included "
          f"(connector's in-flight gauge max {il['gauge_max_in_flight']:.0f}); "
          f"passed {il['passed']:.0f}, fail-open by cause {il['fail_open']}")
    print()
    for name, ok in result["checks"].items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of measured load (default 20)")
    ap.add_argument("--connections", type=int, default=20, help="clients per out-of-band proxy (default 20)")
    ap.add_argument("--slow-factor", type=float, default=10.0, help="how much slower the slow node is (default 10)")
    ap.add_argument("--queue-size", type=int, default=10_000, help="mirror_queue_size (default: the connector's)")
    ap.add_argument("--inline-connections", type=int, default=48)
    ap.add_argument("--inline-bound", type=int, default=8, help="max_in_flight_per_node in the in-line part")
    ap.add_argument("--inline-delay-ms", type=int, default=100, help="the in-line node's time per message")
    ap.add_argument("--inline-timeout-ms", type=int, default=1000, help="timeout_ms in the in-line part")
    ap.add_argument("--rss-growth-mb", type=float, default=30.0, help="allowed RSS growth after warm-up")
    ap.add_argument("--latency-slack-ms", type=float, default=1.0, help="absolute slack on the 10%% latency check")
    ap.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    args = ap.parse_args()
    args.duration = min(args.duration, MAX_DURATION_S)
    try:
        with benchproc.managed_processes() as procs, tempfile.TemporaryDirectory(prefix="bench-overload-") as d:
            tmp = Path(d)
            up_proc, upstream = benchproc.start_upstream()
            procs.append(up_proc)
            result = {"duration_s": args.duration, "connections": args.connections,
                      "queue_size": args.queue_size, "slow_factor": args.slow_factor}
            result["out_of_band"] = run_out_of_band(tmp, procs, args, upstream)
            result["in_line"] = run_in_line(tmp, procs, args, upstream)
    except (RuntimeError, OSError) as e:
        print(f"bench_overload: {e}", file=sys.stderr)
        return 2
    result["checks"] = checks(result, args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
