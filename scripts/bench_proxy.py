#!/usr/bin/env python3
"""Proxy benchmark: plain mitmdump vs the connector (out-of-band, in-line, in-line routed, node down).

One run starts on loopback the demo upstream (scripts/demo_upstream.py), the real node
(`python -m node`, mode block, temp SQLite store) and five mitmdump reverse proxies in front of
the upstream, all kept running for the whole run:
  plain             no addon
  oob               the connector, `blocking: false` (request + response mirrored to the node)
  inline            the connector, `blocking: true`, consulting the local node
  inline_routed     the same plugin in a declarative config (benchproc.write_declarative_config:
                    6 services, 18 routes of every kind); mitmdump's reverse-mode upstream is a
                    placeholder nothing listens on, the route picks the demo upstream
  inline_node_down  the connector, `blocking: true`, pointed at a port nothing listens on;
                    measured only once its status listener's /metrics shows the circuit breaker
                    open and `fail_open_total{cause="breaker_open"}` counting
Each is driven with the same keep-alive benign GET at c=50 and c=1 for `--duration` seconds (wrk
when installed, else scripts/loadgen.py's asyncio generator; `--loadgen`), after a short unmeasured
warm-up. The CPU time that mitmdump, the node and the upstream spend per request is read from /proc.

Interleaving: every round measures all configurations at c=50, then all at c=1; odd
rounds run the configurations in reverse order (ABCD, DCBA, ...), so a linear drift of the
machine's speed (a neighbour's benchmark starting, thermal changes) hits every configuration
alike over two rounds.

Aggregation: the per-configuration figure is the **median across rounds** of each quantity
(req/s, p50, p90, p99, CPU/request), not the best. On a shared machine a round can be lucky as
well as unlucky; the best-of-N rewards whichever configuration happened to catch a quiet moment
and biases the ratios toward noise, while the median discards one outlier either way (with two
rounds it is their mean, which is what the DCBA order is built for). Ratios to plain are computed
from those medians. Per-round values are kept in the JSON (`measurements`).

Defaults: `--rounds 2` with `--duration 10`: 2 rounds x 8 measurements x (10 s + 1 s warm-up)
plus ~7 s of start-up took 3 min 12 s wall on a 2-core machine with load average 2.6 (08:41 UTC,
2026-11-26); `--rounds 3` would take ~4 min 45 s, too close to the 5-minute budget.

Targets (issue 16, c=50 keep-alive benign GET): oob >= 0.90x plain req/s; inline >= 0.85x; at c=1
inline adds <= 0.5 ms to the median latency (issue 2's were 0.85x, 0.60x, 1 ms); (issue 15)
inline_routed >= 0.95x inline req/s at c=50.
Exit status: 0 all met, 1 a target missed, 2 error.

    python scripts/bench_proxy.py [--duration 10] [--rounds 2] [--loadgen auto|builtin|wrk]
                                  [--json FILE] [--plot FILE.png] [--no-progress]
    python scripts/bench_proxy.py --workers N ...   the scaling benchmark, scripts/bench_workers.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchproc import (
    BENIGN_PATH,
    Proxy,
    cpu_seconds,
    managed_processes,
    start_node,
    start_proxy,
    start_upstream,
    wait_ready,
    write_declarative_config,
    write_plugin_config,
)
from loadgen import LOADGENS, LoadResult, resolve_loadgen, run_load

from tests.support.procs import ManagedProcess, free_port

CONFIGS = ("plain", "oob", "inline", "inline_routed", "inline_node_down")
LEVELS = (("c50", 50), ("c1", 1))
BREAKER_WAIT_S = 20.0
MIRROR_DRAIN_S = 30.0
IDLE_WAIT_S = 3.0

# (configuration, ratios to, ratio key, comparison, threshold, text)
TARGETS = (
    ("oob", "plain", "c50_rps", ">=", 0.90, "oob c=50 req/s >= 0.90x plain"),
    ("inline", "plain", "c50_rps", ">=", 0.85, "inline c=50 req/s >= 0.85x plain"),
    ("inline", "plain", "c1_p50_added_ms", "<=", 0.5, "inline c=1 median latency +<= 0.5 ms over plain"),
    ("inline_routed", "inline", "c50_rps", ">=", 0.95, "inline_routed c=50 req/s >= 0.95x inline"),
)


@dataclass
class Measurement:
    round: int
    config: str
    level: str
    load: LoadResult
    cpu_us_per_req: dict[str, float]
    connector: dict[str, float] = field(default_factory=dict)  # counter deltas from its /metrics


# ------------------------------------------------------------------ connector /metrics
def counter_sum(metrics: dict[str, float], name: str) -> float:
    """Sum of a metric over all its label sets."""
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


CONNECTOR_COUNTERS = {
    "inspected": "wallarm_connector_requests_inspected_total",
    "passed": "wallarm_connector_requests_passed_total",
    "blocked": "wallarm_connector_requests_blocked_total",
    "fail_open": "wallarm_connector_fail_open_total",
    "mirror_sent": "wallarm_connector_mirror_sent_total",
    "mirror_dropped": "wallarm_connector_mirror_dropped_total",
}


def connector_counters(proxy: Proxy) -> dict[str, float]:
    m = proxy.metrics()
    return {short: counter_sum(m, full) for short, full in CONNECTOR_COUNTERS.items()}


def breaker_open(proxy: Proxy) -> bool:
    m = proxy.metrics()
    return (counter_sum(m, "wallarm_connector_node_breaker_open") > 0
            and m.get('wallarm_connector_fail_open_total{cause="breaker_open"}', 0) > 0)


def wait_mirror_drained(proxy: Proxy) -> None:
    """Out-of-band messages still queued would load the node during the next measurement."""
    deadline = time.monotonic() + MIRROR_DRAIN_S
    while proxy.metrics().get("wallarm_connector_mirror_queue_depth", 0) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proxy.name}: mirror queue not drained in {MIRROR_DRAIN_S:.0f} s")
        time.sleep(0.1)


# ------------------------------------------------------------------ one measurement
@dataclass
class Bench:
    tool: str
    duration: float
    warmup: float
    proxies: dict[str, Proxy]
    node: ManagedProcess
    upstream: ManagedProcess


def wait_idle(pid: int, timeout: float = IDLE_WAIT_S) -> None:
    """Until the process stops using CPU: wrk leaves up to c requests in flight when it stops, and
    their work must not be counted in the next measurement (CPU and connector counters)."""
    deadline = time.monotonic() + timeout
    last, still = cpu_seconds(pid), 0
    while still < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        now = cpu_seconds(pid)
        still = still + 1 if now == last else 0
        last = now


def warm_up(bench: Bench, proxy: Proxy, connections: int) -> None:
    """Unmeasured load first; for the node-down setup, until its breaker is seen open."""
    run_load(bench.tool, proxy.url(), connections, bench.warmup)
    if proxy.name == "inline_node_down":
        deadline = time.monotonic() + BREAKER_WAIT_S
        while not breaker_open(proxy):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proxy.name}: circuit breaker not open after {BREAKER_WAIT_S:.0f} s of load")
            run_load(bench.tool, proxy.url(), connections, 1)
    wait_idle(proxy.proc.proc.pid)


def measure(bench: Bench, rnd: int, config: str, level: str, connections: int) -> Measurement:
    proxy = bench.proxies[config]
    warm_up(bench, proxy, connections)
    pids = {"mitmdump": proxy.proc.proc.pid, "node": bench.node.proc.pid, "upstream": bench.upstream.proc.pid}
    before_cpu = {k: cpu_seconds(p) for k, p in pids.items()}
    before_counters = connector_counters(proxy) if proxy.admin_port else {}
    load = run_load(bench.tool, proxy.url(), connections, bench.duration)
    cpu = {k: cpu_seconds(p) - before_cpu[k] for k, p in pids.items()}
    cpu["loadgen"] = load.client_cpu_s
    if load.requests == 0:
        raise RuntimeError(f"{config} {level}: no request completed ({load})")
    if load.non_2xx:
        raise RuntimeError(f"{config} {level}: {load.non_2xx} answers outside 2xx/3xx to a benign GET")
    counters: dict[str, float] = {}
    if proxy.admin_port:
        wait_idle(proxy.proc.proc.pid)  # requests still in flight when wrk stopped count as this run's
        after = connector_counters(proxy)
        counters = {k: after[k] - before_counters[k] for k in after}
        wait_mirror_drained(proxy)
    per_req = {k: round(v / load.requests * 1e6, 1) for k, v in cpu.items()}
    return Measurement(rnd, config, level, load, per_req, counters)


def schedule(rounds: int) -> list[tuple[int, str, str, int]]:
    """(round, config, level, connections): per round c=50 for all, then c=1; odd rounds reversed."""
    plan = []
    for rnd in range(rounds):
        order = CONFIGS if rnd % 2 == 0 else tuple(reversed(CONFIGS))
        for level, connections in LEVELS:
            plan.extend((rnd, config, level, connections) for config in order)
    return plan


# ------------------------------------------------------------------ aggregation
def summarize_level(ms: list[Measurement]) -> dict:
    """Median across rounds of each figure for one configuration at one concurrency."""
    med = statistics.median
    return {
        "rps": round(med(m.load.rps for m in ms), 1),
        "p50_ms": round(med(m.load.p50_ms for m in ms), 3),
        "p90_ms": round(med(m.load.p90_ms for m in ms), 3),
        "p99_ms": round(med(m.load.p99_ms for m in ms), 3),
        "requests": sum(m.load.requests for m in ms),
        "socket_errors": sum(m.load.socket_errors for m in ms),
        "rounds": len(ms),
        "cpu_us_per_req": {k: round(med(m.cpu_us_per_req[k] for m in ms), 1) for k in ms[0].cpu_us_per_req},
        "connector": {k: sum(m.connector[k] for m in ms) for k in ms[0].connector},
    }


def ratios(mine: dict, plain: dict) -> dict[str, float]:
    """Figures of one configuration relative to another's (`plain` unless said otherwise)."""
    def ratio(a: float, b: float) -> float:
        return round(a / b, 3) if b else float("nan")

    return {
        "c50_rps": ratio(mine["c50"]["rps"], plain["c50"]["rps"]),
        "c1_rps": ratio(mine["c1"]["rps"], plain["c1"]["rps"]),
        "c1_p50_added_ms": round(mine["c1"]["p50_ms"] - plain["c1"]["p50_ms"], 3),
        "c50_p50_added_ms": round(mine["c50"]["p50_ms"] - plain["c50"]["p50_ms"], 3),
        "c1_p99_added_ms": round(mine["c1"]["p99_ms"] - plain["c1"]["p99_ms"], 3),
        # plain mitmdump's CPU per request / this one's: the req/s ratio a CPU-bound mitmdump would reach
        "c50_mitmdump_cpu": ratio(plain["c50"]["cpu_us_per_req"]["mitmdump"], mine["c50"]["cpu_us_per_req"]["mitmdump"]),
    }


def summarize(measurements: list[Measurement]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for config in CONFIGS:
        out[config] = {level: summarize_level([m for m in measurements if m.config == config and m.level == level])
                       for level, _ in LEVELS}
    for config in CONFIGS:
        out[config]["ratio_to_plain"] = ratios(out[config], out["plain"])
        out[config]["ratio_to_plain"].update(per_round_ratios(measurements, config))
    out["inline_routed"]["ratio_to_inline"] = ratios(out["inline_routed"], out["inline"])
    out["inline_routed"]["ratio_to_inline"].update(per_round_ratios(measurements, "inline_routed", "inline"))
    return out


def per_round_ratios(measurements: list[Measurement], config: str, base: str = "plain") -> dict[str, list[float]]:
    """Each round's own ratio to plain (measured minutes apart at most): their spread shows how
    much of a difference between configurations the machine's noise can explain."""
    def pick(cfg: str, level: str) -> list[Measurement]:
        return sorted((m for m in measurements if m.config == cfg and m.level == level), key=lambda m: m.round)

    out: dict[str, list[float]] = {}
    for level, _ in LEVELS:
        pairs = list(zip(pick(config, level), pick(base, level)))
        out[f"{level}_rps_rounds"] = [round(m.load.rps / p.load.rps, 3) for m, p in pairs]
    out["c1_p50_added_ms_rounds"] = [round(m.load.p50_ms - p.load.p50_ms, 3)
                                     for m, p in zip(pick(config, "c1"), pick(base, "c1"))]
    return out


def evaluate_targets(summary: dict[str, dict]) -> list[dict]:
    results = []
    for config, base, key, op, threshold, text in TARGETS:
        value = summary[config][f"ratio_to_{base}"][key]
        ok = value >= threshold if op == ">=" else value <= threshold
        results.append({"target": text, "config": config, "base": base, "metric": key, "op": op,
                        "threshold": threshold, "value": value, "pass": bool(ok)})
    return results


def machine_info() -> dict:
    import mitmproxy.version

    return {"nproc": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "mitmproxy": mitmproxy.version.VERSION,
            "platform": platform.platform()}


# ------------------------------------------------------------------ output
def table(summary: dict[str, dict]) -> str:
    head = (f"{'config':17s} {'c50 req/s':>10s} {'x plain':>7s} {'p50':>7s} {'p90':>7s} {'p99':>7s}  "
            f"{'c1 req/s':>9s} {'x plain':>7s} {'p50':>7s} {'+ms':>6s} {'p99':>7s}  "
            f"{'mitm us/req':>11s} {'cpu x':>5s} {'node us/req':>11s}")
    lines = [head, "-" * len(head)]
    for config in CONFIGS:
        s, r = summary[config], summary[config]["ratio_to_plain"]
        c50, c1 = s["c50"], s["c1"]
        lines.append(
            f"{config:17s} {c50['rps']:10.1f} {r['c50_rps']:7.2f} {c50['p50_ms']:7.2f} {c50['p90_ms']:7.2f} "
            f"{c50['p99_ms']:7.2f}  {c1['rps']:9.1f} {r['c1_rps']:7.2f} {c1['p50_ms']:7.2f} "
            f"{r['c1_p50_added_ms']:+6.2f} {c1['p99_ms']:7.2f}  {c50['cpu_us_per_req']['mitmdump']:11.0f} "
            f"{r['c50_mitmdump_cpu']:5.2f} {c50['cpu_us_per_req']['node']:11.0f}")
    for config in CONFIGS[1:]:
        r = summary[config]["ratio_to_plain"]
        lines.append(f"{config:17s} per round: c50 x plain {r['c50_rps_rounds']}, c1 x plain {r['c1_rps_rounds']}, "
                     f"c1 p50 +ms {r['c1_p50_added_ms_rounds']}")
    r = summary["inline_routed"]["ratio_to_inline"]
    lines.append(f"inline_routed x inline: c50 {r['c50_rps']:.3f} (rounds {r['c50_rps_rounds']}), c1 {r['c1_rps']:.3f}, "
                 f"c1 p50 +ms {r['c1_p50_added_ms']:+.3f}")
    lines.append("(p50/p90/p99 in ms; us/req: CPU per request at c=50 from /proc; cpu x: plain mitmdump's CPU per "
                 "request / this one's,\n the req/s ratio a CPU-bound mitmdump would reach without competition "
                 "for its core)")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(CONFIGS)
    x = range(len(names))
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for col, level in enumerate(("c50", "c1")):
        ax = axes[0][col]
        rps = [report[n][level]["rps"] for n in names]
        bars = ax.bar(x, rps, color=["#888888", "#4c72b0", "#dd8452", "#55a868", "#c44e52"])
        for bar, n in zip(bars, names):
            ax.annotate(f"{report[n]['ratio_to_plain'][level + '_rps']:.2f}x", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=9)
        ax.set_title(f"requests/s at {level.replace('c', 'c=')} (x plain)")
        ax.set_xticks(list(x), names, rotation=15)
        ax = axes[1][col]
        width = 0.38
        ax.bar([i - width / 2 for i in x], [report[n][level]["p50_ms"] for n in names], width, label="p50")
        ax.bar([i + width / 2 for i in x], [report[n][level]["p99_ms"] for n in names], width, label="p99")
        ax.set_title(f"latency at {level.replace('c', 'c=')} (ms)")
        ax.set_xticks(list(x), names, rotation=15)
        ax.legend()
    meta = report["meta"]
    fig.suptitle(f"mitmdump + connector, GET {meta['path']}, {meta['loadgen']}, {meta['duration_s']} s x "
                 f"{meta['rounds']} rounds (median), {meta['date']}, {meta['machine']['nproc']} cores, "
                 f"load {meta['machine']['load_average'][0]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------ main
def start_setups(tmp: Path, upstream_url: str, node_url: str, procs: list[ManagedProcess]) -> dict[str, Proxy]:
    """All the proxies, started together so their start-ups overlap; kept for the whole run."""
    down_url = f"http://127.0.0.1:{free_port()}/"  # nothing listens here
    configs = {
        "plain": None,
        "oob": write_plugin_config(tmp / "oob.json", node_url, blocking=False),
        "inline": write_plugin_config(tmp / "inline.json", node_url, blocking=True),
        "inline_routed": write_declarative_config(tmp / "routed.json", node_url, upstream_url),
        "inline_node_down": write_plugin_config(tmp / "down.json", down_url, blocking=True),
    }
    placeholder = f"http://127.0.0.1:{free_port()}"  # routing: the reverse-mode upstream is never used
    proxies = {}
    for name, cfg in configs.items():
        proxies[name] = start_proxy(name, placeholder if name == "inline_routed" else upstream_url, cfg)
        procs.append(proxies[name].proc)
    for proxy in proxies.values():
        wait_ready(proxy)
    return proxies


def progress(total: int, disabled: bool):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, unit="run", disable=disabled or not sys.stderr.isatty(),
                dynamic_ncols=True)


def run(args: argparse.Namespace, tool: str, procs: list[ManagedProcess], tmp: Path) -> dict:
    started = time.monotonic()
    load_at_start = machine_info()["load_average"]
    upstream, upstream_url = start_upstream()
    procs.append(upstream)
    node, node_url = start_node(tmp)
    procs.append(node)
    proxies = start_setups(tmp, upstream_url, node_url, procs)
    startup_s = time.monotonic() - started
    bench = Bench(tool, args.duration, args.warmup, proxies, node, upstream)
    plan = schedule(args.rounds)
    measurements: list[Measurement] = []
    with progress(len(plan), args.no_progress) as bar:
        for rnd, config, level, connections in plan:
            bar.set_description(f"round {rnd + 1} {config} {level}")
            m = measure(bench, rnd, config, level, connections)
            measurements.append(m)
            bar.write(f"round {rnd + 1} {config:17s} {level:3s} {m.load.rps:8.1f} req/s  p50 {m.load.p50_ms:7.2f}  "
                      f"p99 {m.load.p99_ms:7.2f} ms  mitmdump {m.cpu_us_per_req['mitmdump']:6.0f} us/req  "
                      f"node {m.cpu_us_per_req['node']:5.0f} us/req", file=sys.stdout)
            bar.update()
    summary = summarize(measurements)
    targets = evaluate_targets(summary)
    machine = machine_info()
    machine["load_average_at_start"] = load_at_start
    return {
        **summary,
        "targets": targets,
        "all_targets_pass": all(t["pass"] for t in targets),
        "meta": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine, "duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds,
            "loadgen": tool, "path": BENIGN_PATH, "aggregate": "median across rounds",
            "node": "python -m node --mode block", "startup_s": round(startup_s, 1),
            "wall_s": round(time.monotonic() - started, 1),
            "processes": {p.name: p.proc.pid for p in procs},  # each led its own session (pgid = pid)
        },
        "measurements": [{**asdict(m), "load": {**asdict(m.load), "rps": round(m.load.rps, 1)}} for m in measurements],
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--workers" or a.startswith("--workers=") for a in argv):
        from bench_workers import main as bench_workers_main  # the scaling benchmark: its own options

        return bench_workers_main(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10, help="seconds per measurement (default 10)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    ap.add_argument("--warmup", type=float, default=1, help="unmeasured seconds before each measurement (default 1)")
    ap.add_argument("--loadgen", choices=LOADGENS, default="auto", help="wrk, the built-in asyncio generator, or "
                    "auto: wrk when installed (default)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    ap.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the comparison chart")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.duration <= 0 or args.rounds < 1 or args.warmup <= 0:
        ap.error("--duration and --warmup must be > 0, --rounds >= 1")
    tool = resolve_loadgen(args.loadgen)
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp, managed_processes() as procs:
        report = run(args, tool, procs, Path(tmp))
    print()
    print(f"# {tool}, GET {BENIGN_PATH} keep-alive, {args.duration:g} s per measurement, median of {args.rounds} "
          f"round(s); load average {report['meta']['machine']['load_average']} on "
          f"{report['meta']['machine']['nproc']} cores; wall {report['meta']['wall_s']} s")
    print(table(report))
    print()
    for t in report["targets"]:
        print(f"{'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']:g}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(report, args.plot)
    return 0 if report["all_targets_pass"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - a broken setup is exit 2, not a missed target
        import traceback

        traceback.print_exc()
        print(f"bench_proxy: {e}", file=sys.stderr)
        sys.exit(2)
