#!/usr/bin/env python3
"""Scaling benchmark: in-line req/s through HAProxy with 1, 2 and N mitmdump workers, beside
nginx + ModSecurity + CRS (PL1) with 1, 2 and N worker processes, in front of the same upstream.

What `scripts/bench_proxy.py --workers N` runs. One run on loopback: the demo upstream
(scripts/demo_upstream.py) and the real node (mode block) are started once; then, one setup at a
time (the others stopped, so each has the machine to itself):
  upstream          the upstream alone, no proxy: the ceiling every setup below shares
  haproxy+K         HAProxy (docker/haproxy.cfg.template, as `make run WORKERS=K`) in front of K
                    mitmdump workers with the connector in-line (blocking: true) on one node
  nginx+modsec K    nginx with `worker_processes K` (1, 2 and N), ModSecurity v3 + CRS 3.3 at PL1
                    (scripts/peers/nginx_modsecurity.py)
Each is driven with the same keep-alive benign GET at c=`--connections` for `--duration` seconds
after a `--warmup`, by wrk (or scripts/loadgen.py's generator: `--loadgen`). CPU per request is
read from /proc for the proxy tier (HAProxy + workers, or nginx's master + workers) and the node.

    python scripts/bench_workers.py --workers N [--duration 10] [--warmup 2] [--connections 50]
        [--json FILE] [--plot FILE.png] [--doc docs/benchmarks.md]

`--doc` rewrites the part of the file between `<!-- bench_workers:begin -->` and
`<!-- bench_workers:end -->` with this run's table. Exit status 0, or 2 on a broken setup.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchproc import (  # noqa: E402
    BENIGN_PATH,
    Proxy,
    cpu_seconds,
    managed_processes,
    start_node,
    start_proxy,
    start_upstream,
    stop_all,
    wait_ready,
    write_plugin_config,
)
from haproxy_config import Worker, haproxy_up, render  # noqa: E402
from loadgen import LOADGENS, LoadResult, resolve_loadgen, run_load  # noqa: E402
from peers.nginx_modsecurity import NginxModSecurity  # noqa: E402

from tests.support.procs import ManagedProcess, free_port  # noqa: E402

DOC_BEGIN, DOC_END = "<!-- bench_workers:begin -->", "<!-- bench_workers:end -->"
READY_TIMEOUT_S = 120.0


@dataclass
class Row:
    setup: str
    kind: str  # upstream | haproxy | nginx
    workers: int
    load: LoadResult
    proxy_cpu_us: float  # CPU of the proxy tier per request (HAProxy and the workers, or nginx)
    balancer_cpu_us: float  # HAProxy's part of it (0: no HAProxy)
    node_cpu_us: float

    @property
    def rps(self) -> float:
        return self.load.rps


def find_haproxy() -> str:
    from run_system import find_haproxy as find
    return find()


def measure(tool: str, url: str, connections: int, duration: float, warmup: float,
            groups: dict[str, list[int]]) -> tuple[LoadResult, dict[str, float]]:
    """One load run after a warm-up; the CPU each group of processes spent per request (µs)."""
    run_load(tool, url, connections, warmup)  # unmeasured: connections, caches, warm paths
    before = {name: sum(cpu_seconds(p) for p in pids) for name, pids in groups.items()}
    load = run_load(tool, url, connections, duration)
    n = max(load.requests, 1)
    return load, {name: (sum(cpu_seconds(p) for p in pids) - before[name]) / n * 1e6
                  for name, pids in groups.items()}


def haproxy_setup(k: int, tmp: Path, upstream_url: str, config: Path, procs: list[ManagedProcess]
                  ) -> tuple[str, list[ManagedProcess]]:
    """K workers on the one config, HAProxy in front, all servers UP; returns the URL and processes."""
    workers: list[Proxy] = [start_proxy(f"w{k}-{i + 1}", upstream_url, config) for i in range(k)]
    started = [w.proc for w in workers]
    procs.extend(started)
    for w in workers:
        wait_ready(w, READY_TIMEOUT_S)
    port, admin, stats = free_port(), free_port(), free_port()
    cfg = tmp / f"haproxy-{k}.cfg"
    cfg.write_text(render(f"127.0.0.1:{port}", f"127.0.0.1:{admin}", f"127.0.0.1:{stats}",
                          [Worker(f"worker{i + 1}", "127.0.0.1", w.port, w.admin_port or 0)
                           for i, w in enumerate(workers)], token_required=False))
    haproxy = ManagedProcess(f"haproxy-{k}", [find_haproxy(), "-db", "-f", str(cfg)])
    started.append(haproxy)
    procs.append(haproxy)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            if haproxy_up(f"http://127.0.0.1:{stats}", "workers") == k:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or haproxy.proc.poll() is not None:
            raise RuntimeError(f"haproxy with {k} worker(s) not up:\n{haproxy.output()[-2000:]}")
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}{BENIGN_PATH}", started


def teardown(started: list[ManagedProcess], procs: list[ManagedProcess]) -> None:
    stop_all(started)
    for p in started:
        procs.remove(p)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(args: argparse.Namespace, tool: str, procs: list[ManagedProcess], tmp: Path) -> dict:
    started_at = time.monotonic()
    load_at_start = load_average()
    upstream, upstream_url = start_upstream()
    procs.append(upstream)
    node, node_url = start_node(tmp)
    procs.append(node)
    config = write_plugin_config(tmp / "inline.json", node_url, blocking=True, trusted_proxies=["127.0.0.1/32"])
    counts = sorted({1, 2, args.workers})
    rows: list[Row] = []
    seen: dict[str, int] = {}  # every process started, by name: its pid (each leads its own group)

    def record(setup: str, kind: str, k: int, url: str, proxy: list[int], balancer: list[int] | None = None) -> None:
        load, cpu = measure(tool, url, args.connections, args.duration, args.warmup,
                            {"proxy": proxy, "balancer": balancer or [], "node": [node.proc.pid]})
        rows.append(Row(setup, kind, k, load, cpu["proxy"], cpu["balancer"], cpu["node"]))
        print(f"{setup:18s} {load.rps:8.1f} req/s  p50 {load.p50_ms:7.2f}  p99 {load.p99_ms:7.2f} ms  "
              f"non-2xx {load.non_2xx}  errors {load.socket_errors}  proxy {cpu['proxy']:6.0f} us/req "
              f"(haproxy {cpu['balancer']:4.0f})  node {cpu['node']:5.0f} us/req  (load average {load_average()[0]})",
              flush=True)

    record("upstream", "upstream", 0, upstream_url + BENIGN_PATH, [upstream.proc.pid])
    for k in counts:
        url, started = haproxy_setup(k, tmp, upstream_url, config, procs)
        seen.update((p.name, p.proc.pid) for p in started)
        try:
            record(f"haproxy+{k} worker{'s' if k > 1 else ''}", "haproxy", k, url,
                   [p.proc.pid for p in started], [started[-1].proc.pid])
        finally:
            teardown(started, procs)
    upstream_port = int(upstream_url.rsplit(":", 1)[1])
    for k in counts:  # the same counts as HAProxy: a side-by-side row for each
        with NginxModSecurity(upstream_port, workers=k) as peer:
            assert peer.proc is not None
            seen[peer.proc.name] = peer.proc.proc.pid
            record(f"nginx+modsec {k}", "nginx", k, peer.url + BENIGN_PATH, peer.pids())
    return {
        "rows": [{**asdict(r), "rps": round(r.rps, 1)} for r in rows],
        "meta": {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "nproc": os.cpu_count(),
                 "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                 "load_average_at_start": load_at_start, "load_average_at_end": load_average(),
                 "loadgen": tool, "connections": args.connections, "duration_s": args.duration,
                 "warmup_s": args.warmup, "path": BENIGN_PATH, "workers": args.workers,
                 "wall_s": round(time.monotonic() - started_at, 1),
                 "processes": {"upstream": upstream.proc.pid, "node": node.proc.pid, **seen}},
    }


def table(report: dict) -> str:
    rows = report["rows"]
    base = {r["kind"]: r["rps"] for r in rows if r["workers"] == 1}
    lines = ["| setup | workers | req/s | x 1 worker | p50 ms | p99 ms | non-2xx / errors | proxy CPU µs/req "
             "(of it HAProxy) | req/s per core of proxy CPU | node CPU µs/req |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        load = r["load"]
        ratio = f"{r['rps'] / base[r['kind']]:.2f}x" if r["kind"] in base and base[r["kind"]] else "-"
        lines.append(f"| {r['setup']} | {r['workers'] or '-'} | {r['rps']:,.0f} | {ratio} | {load['p50_ms']:.1f} | "
                     f"{load['p99_ms']:.1f} | {load['non_2xx']} / {load['socket_errors']} | "
                     f"{r['proxy_cpu_us']:,.0f}" + (f" ({r['balancer_cpu_us']:,.0f})" if r["kind"] == "haproxy" else "")
                     + f" | {1e6 / r['proxy_cpu_us'] if r['proxy_cpu_us'] > 0 else 0:,.0f} | {r['node_cpu_us']:,.0f} |")
    m = report["meta"]
    lines.append("")
    lines.append(f"{m['date']}, {m['nproc']} cores, Python {m['python']}, {m['loadgen']} c={m['connections']} "
                 f"keep-alive GET {m['path']}, {m['duration_s']:g} s per setup after {m['warmup_s']:g} s warm-up, "
                 f"one run; load average {m['load_average_at_start']} at the start, "
                 f"{m['load_average_at_end']} at the end; wall {m['wall_s']} s.")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Two panels: req/s of each proxy setup, and req/s per core of its CPU (what a CPU-bound
    setup would reach per core it owns: less distorted by a busy machine). The upstream alone is
    far above both and named in the title instead of drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if r["kind"] != "upstream"]
    ceiling = next((r["rps"] for r in report["rows"] if r["kind"] == "upstream"), 0)
    colors = {"haproxy": "#4c72b0", "nginx": "#c44e52"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    panels = (("requests/s (c=%d)" % report["meta"]["connections"], [r["rps"] for r in rows]),
              ("requests/s per core of proxy CPU", [1e6 / r["proxy_cpu_us"] if r["proxy_cpu_us"] > 0 else 0
                                                    for r in rows]))
    for ax, (title, values) in zip(axes, panels):
        bars = ax.bar(range(len(rows)), values, color=[colors[r["kind"]] for r in rows])
        for bar, v in zip(bars, values):
            ax.annotate(f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=9)
        ax.set_xticks(range(len(rows)), [r["setup"] for r in rows], rotation=20, fontsize=9)
        ax.set_title(title, fontsize=10)
    m = report["meta"]
    fig.suptitle(f"in-line: mitmdump workers + connector behind HAProxy vs nginx + ModSecurity + CRS PL1; "
                 f"upstream alone {ceiling:,.0f} req/s\n{m['loadgen']}, {m['duration_s']:g} s each, {m['nproc']} cores, "
                 f"load average {m['load_average_at_start'][0]} at start, {m['date'][:16]} UTC", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_doc(path: Path, text: str) -> None:
    doc = path.read_text()
    if DOC_BEGIN not in doc or DOC_END not in doc:
        raise SystemExit(f"bench_workers: {path} has no {DOC_BEGIN} ... {DOC_END} section")
    head, rest = doc.split(DOC_BEGIN, 1)
    path.write_text(f"{head}{DOC_BEGIN}\n{text}\n{DOC_END}{rest.split(DOC_END, 1)[1]}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, metavar="N",
                    help="the largest worker count (default: the number of cores)")
    ap.add_argument("--duration", type=float, default=10, help="seconds per setup (default 10)")
    ap.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each (default 2)")
    ap.add_argument("--connections", type=int, default=50, help="keep-alive connections (default 50)")
    ap.add_argument("--loadgen", choices=LOADGENS, default="auto")
    ap.add_argument("--json", type=Path, metavar="FILE")
    ap.add_argument("--plot", type=Path, metavar="FILE.png")
    ap.add_argument("--doc", type=Path, metavar="FILE.md", help="rewrite this file's bench_workers section")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1 or args.duration <= 0 or args.warmup <= 0 or args.connections < 1:
        build_parser().error("--workers and --connections >= 1, --duration and --warmup > 0")
    tool = resolve_loadgen(args.loadgen)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, managed_processes() as procs:
        report = run(args, tool, procs, Path(tmp))
    text = table(report)
    print()
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(report, args.plot)
    if args.doc:
        image = f"\n\n![scaling]({os.path.relpath(args.plot, args.doc.parent)})" if args.plot else ""
        write_doc(args.doc, text + image)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - a broken setup is exit 2
        import traceback

        traceback.print_exc()
        print(f"bench_workers: {e}", file=sys.stderr)
        sys.exit(2)
