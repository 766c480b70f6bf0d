#!/usr/bin/env python3
"""Soak the whole system: node + mitmdump with the addon + demo upstream, for N minutes.

Everything runs on 127.0.0.1 free ports in a temporary directory (removed afterwards):
  * the real node (`python -m node`, mode block, SQLite store TMP/node.db), restarted every
    --restart-every seconds (SIGTERM, then started again on the same ports and database);
  * mitmdump in reverse mode with the addon in-line (`blocking: true`), whose plugin file is
    rewritten atomically every --config-every seconds (timeout_ms flips between two values);
  * scripts/demo_upstream.py as the upstream.
An asyncio client sends mixed traffic at a bounded rate and concurrency: ~90% benign (GET with
parameters, JSON POST, form POST, multipart POST) and ~10% attacks. Every --sample-every seconds
it records client errors, client latency (p50/p99), the connector's node-latency histogram and
fail-opens (its /metrics), RSS and open fds of mitmdump and of the node, and the store size.

Outputs: --json (samples, events, summary), --csv (samples), --plot (PNG: errors, RSS, fds,
store size, latency over time), and a summary on stdout: RSS/fd growth after warm-up, requests,
errors, fail-opens by cause. A request that fails open while the node restarts is by design and
counted as a fail-open, not as an error; a client-visible error (connection error, a status
that the upstream or the block page would not give) is an error.

    python scripts/soak.py --minutes 30 --plot docs/img/soak.png --json docs/soak.json
    python scripts/soak.py --seconds 30 --restart-every 10 --config-every 6 --sample-every 1
    python scripts/soak.py --from-json docs/soak.json --plot docs/img/soak.png   # no load: redo figures
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.benchproc import (  # noqa: E402
    exit_on_signals, ignore_signals, parse_prometheus, start_proxy, start_upstream, stop_all, wait_ready)
from tests.support.procs import ManagedProcess, free_port  # noqa: E402

TIMEOUTS_MS = (2000, 2500)  # both far above a verdict's cost: a flip must not cause fail-opens
BLOCK_STATUS = 403
LATENCY = "wallarm_connector_node_latency_seconds"


# ---------------------------------------------------------------- traffic

@dataclass(frozen=True)
class Shot:
    """One request to send and the statuses the upstream may answer it with."""

    kind: str  # shape name, e.g. "get_params", "attack_sqli_get"
    attack: bool
    method: str
    path: str
    expected: frozenset[int]  # upstream answers (benign) / upstream answers if not blocked (attack)
    json_body: object | None = None
    form: dict[str, str] | None = None
    multipart: dict[str, tuple[str, bytes, str]] | None = None  # name -> (filename, content, type)


def benign_shot(rng: random.Random) -> Shot:
    n = rng.randrange(1, 10_000)
    shape = rng.choice(("get_params", "get_params", "get_item", "json_post", "form_post", "multipart_post"))
    if shape == "get_params":
        path = rng.choice((f"/api/v1/users?limit={n % 50 + 1}&offset={n % 7}",
                           f"/api/v1/products?q={rng.choice(['mouse', 'keyboard', 'monitor'])}",
                           f"/api/v1/orders?user_id={n % 4 + 1}&status=shipped"))
        return Shot(shape, False, "GET", path, frozenset({200}))
    if shape == "get_item":
        return Shot(shape, False, "GET", f"/api/v1/users/{n % 6 + 1}", frozenset({200, 404}))
    if shape == "json_post":
        body = {"name": f"Soak User {n}", "email": f"soak{n}@example.com"}
        return Shot(shape, False, "POST", "/api/v1/users", frozenset({201, 409}), json_body=body)
    if shape == "form_post":  # the demo API takes JSON only: 400 is its answer
        return Shot(shape, False, "POST", "/api/v1/users", frozenset({400}),
                    form={"name": f"Form User {n}", "email": f"form{n}@example.com", "note": "hello there"})
    content = (f"id,name\n{n},widget\n{n + 1},gadget\n").encode()
    return Shot("multipart_post", False, "POST", "/api/v1/users", frozenset({400}),
                multipart={"file": ("items.csv", content, "text/csv")})


ATTACKS = (
    ("sqli_get", "GET", "/api/v1/products?q=1'%20UNION%20SELECT%20password%20FROM%20users--", None),
    ("xss_get", "GET", "/api/v1/products?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E", None),
    ("traversal_get", "GET", "/api/v1/users?file=../../../../etc/passwd", None),
    ("rce_json", "POST", "/api/v1/users", {"name": "x; cat /etc/passwd", "email": "a@b.co"}),
    ("sqli_form", "POST", "/api/v1/users", "form"),
    ("rce_multipart", "POST", "/api/v1/users", "multipart"),
)


def attack_shot(rng: random.Random) -> Shot:
    name, method, path, body = rng.choice(ATTACKS)
    # not blocked (fail-open): the upstream's ordinary answer to this method and path
    expected = frozenset({200, 404}) if method == "GET" else frozenset({201, 400, 409, 422})
    if body == "form":
        return Shot(f"attack_{name}", True, method, path, expected,
                    form={"name": "admin' OR '1'='1' --", "email": "x@y.co"})
    if body == "multipart":
        php = b"<?php system($_GET['cmd']); ?>"
        return Shot(f"attack_{name}", True, method, path, expected,
                    multipart={"file": ("shell.php", php, "application/x-php")})
    return Shot(f"attack_{name}", True, method, path, expected, json_body=body)


@dataclass
class Tally:
    """Client-side counts; `interval_*` is reset at every sample, the rest is cumulative."""

    requests: int = 0
    errors: int = 0  # client-visible: connection errors, unexpected statuses, benign blocked
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    attacks_sent: int = 0
    attacks_blocked: int = 0
    attacks_passed: int = 0  # answered by the upstream: only when the node gave no verdict
    by_shape: Counter[str] = field(default_factory=Counter)
    interval_requests: int = 0
    interval_errors: int = 0
    interval_latency_s: list[float] = field(default_factory=list)

    def take_interval(self) -> tuple[int, int, list[float]]:
        out = (self.interval_requests, self.interval_errors, self.interval_latency_s)
        self.interval_requests, self.interval_errors, self.interval_latency_s = 0, 0, []
        return out


def make_data(shot: Shot) -> aiohttp.FormData | dict[str, str] | None:
    if shot.form is not None:
        return shot.form
    if shot.multipart is not None:
        fd = aiohttp.FormData()
        for name, (filename, content, ctype) in shot.multipart.items():
            fd.add_field(name, content, filename=filename, content_type=ctype)
        fd.add_field("comment", "uploaded by soak")
        return fd
    return None


async def send(session: aiohttp.ClientSession, base: str, shot: Shot, tally: Tally) -> None:
    started = time.perf_counter()
    status: int | None = None
    try:
        async with session.request(shot.method, base + shot.path, json=shot.json_body,
                                   data=make_data(shot)) as r:
            await r.read()
            status = r.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        error = f"connection:{type(e).__name__}"
    else:
        error = None
    tally.requests += 1
    tally.interval_requests += 1
    tally.interval_latency_s.append(time.perf_counter() - started)
    tally.by_shape[shot.kind] += 1
    if shot.attack:
        tally.attacks_sent += 1
        if status == BLOCK_STATUS:
            tally.attacks_blocked += 1
            return
        if status in shot.expected:
            tally.attacks_passed += 1
            return
    elif status in shot.expected:
        return
    if error is None:
        error = "benign_blocked" if status == BLOCK_STATUS else f"status:{status}"
    tally.errors += 1
    tally.interval_errors += 1
    tally.errors_by_kind[f"{shot.kind} {error}"] += 1


async def client_worker(session: aiohttp.ClientSession, base: str, per_worker_rate: float,
                        attack_ratio: float, tally: Tally, stop_at: float, seed: int) -> None:
    """Sends at most `per_worker_rate` requests per second, one at a time: bounded load, no queue."""
    rng = random.Random(seed)
    next_at = time.monotonic()
    while time.monotonic() < stop_at:
        shot = attack_shot(rng) if rng.random() < attack_ratio else benign_shot(rng)
        await send(session, base, shot, tally)
        next_at = max(next_at + 1 / per_worker_rate, time.monotonic() - 1)  # no burst to catch up
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


# ---------------------------------------------------------------- the system

def write_config_atomically(path: Path, node_url: str, timeout_ms: int) -> None:
    """The connector watches the file: write a sibling, then rename over it (never half a file)."""
    doc = {"name": "wallarm-plugin", "instance_name": "soak", "protocols": ["http", "https"], "enabled": True,
           "config": {"blocking": True, "wallarm_node_address": node_url, "timeout_ms": timeout_ms}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2), "utf-8")
    os.replace(tmp, path)


class Node:
    """The real node on fixed ports and database, so that it can be restarted in place."""

    def __init__(self, work: Path):
        self.port, self.console_port = free_port(), free_port()
        self.db = work / "node.db"
        self.url = f"http://127.0.0.1:{self.port}/"
        self.cmd = [sys.executable, "-m", "node", "--listen", f"127.0.0.1:{self.port}", "--console-listen",
                    f"127.0.0.1:{self.console_port}", "--db", str(self.db), "--mode", "block"]
        self.procs: list[ManagedProcess] = []  # every incarnation, for clean-up and logs
        self.start()

    @property
    def current(self) -> ManagedProcess:
        return self.procs[-1]

    def start(self) -> None:
        proc = ManagedProcess("node", self.cmd, env={"WALLARM_CONSOLE_TOKEN": "soak"})
        self.procs.append(proc)
        proc.wait_http(f"http://127.0.0.1:{self.console_port}/ready", timeout=120)

    def restart(self) -> float:
        """SIGTERM (the node drains and flushes its store), start again; returns the seconds down."""
        started = time.monotonic()
        code = self.current.stop(timeout=30)
        if code not in (0, None):
            raise RuntimeError(f"node exited with {code} on SIGTERM:\n{self.current.output()[-3000:]}")
        self.current.log_path.unlink(missing_ok=True)
        self.start()
        return time.monotonic() - started

    def store_bytes(self) -> int:
        return sum(file_size(p) for p in (self.db, self.wal, self.db.with_name(self.db.name + "-shm")))

    @property
    def wal(self) -> Path:
        return self.db.with_name(self.db.name + "-wal")


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # the WAL comes and goes with checkpoints and restarts
        return 0


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


# ---------------------------------------------------------------- sampling

def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def histogram_buckets(metrics: dict[str, float], delivery: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of one series of the node-latency histogram."""
    out = []
    for key, value in metrics.items():
        if key.startswith(LATENCY + "_bucket{") and f'delivery="{delivery}"' in key:
            le = key.split('le="', 1)[1].split('"', 1)[0]
            out.append((float("inf") if le == "+Inf" else float(le), value))
    return sorted(out)


def histogram_quantile(now: list[tuple[float, float]], before: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile of the observations between two scrapes: the upper bound of the bucket that
    holds it (coarse, but exact about which bucket; no interpolation to invent precision)."""
    prev = dict(before)
    delta = [(le, count - prev.get(le, 0.0)) for le, count in now]
    total = delta[-1][1] if delta else 0
    if total <= 0:
        return None
    for le, count in delta:
        if count >= q * total:
            return le
    return None


def counter_by(metrics: dict[str, float], name: str, label: str) -> dict[str, float]:
    prefix = f"{name}{{{label}=\""
    return {k[len(prefix):].split('"', 1)[0]: v for k, v in metrics.items() if k.startswith(prefix)}


@dataclass
class Sample:
    t: float  # seconds since the load started
    requests: int
    errors: int
    client_p50_ms: float | None
    client_p99_ms: float | None
    node_p50_ms: float | None  # connector's histogram (bucket upper bound)
    node_p99_ms: float | None
    fail_open: int  # in this interval, all causes
    attacks_sent: int  # cumulative
    attacks_blocked: int
    attacks_passed: int
    proxy_rss_kib: int | None
    proxy_fds: int | None
    node_rss_kib: int | None
    node_fds: int | None
    node_pid: int
    store_bytes: int  # node.db + WAL + SHM
    wal_bytes: int


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url) as r:
        return parse_prometheus(await r.text())


# ---------------------------------------------------------------- summary

def growth(values: list[float]) -> float | None:
    """% growth from the first to the last 20% of `values` (their means, so a single spike or a
    momentarily busy moment does not decide it)."""
    if len(values) < 5:
        return None
    k = max(1, len(values) // 5)
    first, last = statistics.fmean(values[:k]), statistics.fmean(values[-k:])
    return 100.0 * (last - first) / first if first else None


def incarnations(samples: list[Sample], key: str, after: float) -> list[list[float]]:
    """The node's samples of `key` after `after`, one list per incarnation (pid); a node restarted
    after `after` loses its first fifth (start-up: the engine and the store warm up)."""
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for s in samples:
        v = getattr(s, key)
        if v is not None:
            by_pid.setdefault(s.node_pid, []).append((s.t, v))
    out = []
    for series in by_pid.values():
        post = [v for t, v in series if t >= after]
        if series[0][0] >= after:
            post = post[len(post) // 5:]
        if len(post) >= 4:
            out.append(post)
    return out


def growth_figures(samples: list[Sample], warmup_s: float) -> dict:
    """RSS and fd growth after warm-up. mitmdump lives through the run: its first vs its last fifth.
    The node is restarted, which hides a leak from a whole-run view, so two figures: within each
    incarnation (the median; a leak grows every incarnation) and across incarnations (the last
    one's level vs the first after warm-up; a leak through the store or the files persists)."""
    steady = [s for s in samples if s.t >= warmup_s]
    out: dict = {}
    for name, key in (("proxy_rss", "proxy_rss_kib"), ("proxy_fds", "proxy_fds")):
        vals = [getattr(s, key) for s in steady if getattr(s, key) is not None]
        out[f"{name}_growth_pct"] = growth(vals)
        out[f"{name}_first_last"] = (vals[0], vals[-1]) if vals else None
    for name, key in (("node_rss", "node_rss_kib"), ("node_fds", "node_fds")):
        lives = incarnations(samples, key, warmup_s)
        within = [g for g in (growth(v) for v in lives) if g is not None]
        out[f"{name}_within_incarnation_pct"] = [round(g, 2) for g in within]
        out[f"{name}_growth_pct"] = statistics.median(within) if within else None
        levels = [statistics.fmean(v[len(v) // 2:]) for v in lives]
        out[f"{name}_across_incarnations_pct"] = (100.0 * (levels[-1] - levels[0]) / levels[0]
                                                  if len(levels) >= 2 else None)
        out[f"{name}_levels"] = [round(x, 1) for x in levels]
    return out


def summarize(samples: list[Sample], events: list[dict], tally: Tally, metrics: dict[str, float],
              warmup_s: float, duration_s: float) -> dict:
    steady = [s for s in samples if s.t >= warmup_s]
    summary: dict = {"duration_s": round(duration_s, 1), "warmup_s": round(warmup_s, 1),
                     "samples": len(samples), "requests": tally.requests, "errors": tally.errors,
                     "errors_by_kind": dict(tally.errors_by_kind.most_common()),
                     "attacks_sent": tally.attacks_sent, "attacks_blocked": tally.attacks_blocked,
                     "attacks_passed_without_verdict": tally.attacks_passed,
                     "fail_open_by_cause": counter_by(metrics, "wallarm_connector_fail_open_total", "cause"),
                     "fail_closed_by_cause": counter_by(metrics, "wallarm_connector_fail_closed_total", "cause"),
                     "connector_blocked": metrics.get("wallarm_connector_requests_blocked_total", 0),
                     "connector_passed": metrics.get("wallarm_connector_requests_passed_total", 0),
                     "config_reloads": metrics.get("wallarm_connector_config_reloads_total", 0),
                     "config_errors": metrics.get("wallarm_connector_config_errors_total", 0),
                     "node_restarts": sum(1 for e in events if e["event"] == "node_restart"),
                     "config_changes": sum(1 for e in events if e["event"] == "config_change"),
                     "by_shape": dict(sorted(tally.by_shape.items()))}
    summary.update(growth_figures(samples, warmup_s))
    lat = [s.client_p99_ms for s in steady if s.client_p99_ms is not None]
    summary["client_p99_ms_median_interval"] = statistics.median(lat) if lat else None
    p50 = [s.client_p50_ms for s in steady if s.client_p50_ms is not None]
    summary["client_p50_ms_median_interval"] = statistics.median(p50) if p50 else None
    summary["store_bytes_first_last"] = (samples[0].store_bytes, samples[-1].store_bytes) if samples else None
    return summary


def print_summary(s: dict) -> None:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:+.1f}%"

    fo = s["fail_open_by_cause"]
    print(f"""
================ soak summary ================
duration            {s['duration_s']:.0f} s (warm-up {s['warmup_s']:.0f} s excluded from growth)
requests            {s['requests']}  errors {s['errors']}  {s['errors_by_kind'] or ''}
attacks             sent {s['attacks_sent']}  blocked {s['attacks_blocked']}  passed without a verdict {s['attacks_passed_without_verdict']}
fail-open           {int(sum(fo.values()))} by cause {fo or '{}'}  (fail-closed {s['fail_closed_by_cause'] or 0})
node restarts       {s['node_restarts']}   config changes {s['config_changes']} (connector reloads {s['config_reloads']:.0f}, errors {s['config_errors']:.0f})
mitmdump RSS growth {pct(s['proxy_rss_growth_pct'])}  fds growth {pct(s['proxy_fds_growth_pct'])}
node RSS growth     {pct(s['node_rss_growth_pct'])} within an incarnation (median), {pct(s['node_rss_across_incarnations_pct'])} across incarnations
node fds growth     {pct(s['node_fds_growth_pct'])} within an incarnation (median), {pct(s['node_fds_across_incarnations_pct'])} across incarnations
client latency      p50 {s['client_p50_ms_median_interval']} ms, p99 {s['client_p99_ms_median_interval']} ms (median over intervals)
store bytes         {s['store_bytes_first_last']}
==============================================""", flush=True)


def plot(samples: list[Sample], events: list[dict], path: Path, warmup_s: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t / 60 for s in samples]
    fig, ax = plt.subplots(5, 1, figsize=(10, 13), sharex=True)

    def col(key: str, scale: float = 1.0) -> list[float]:
        return [float("nan") if getattr(s, key) is None else getattr(s, key) * scale for s in samples]

    ax[0].plot(t, col("errors"), label="client errors / interval", color="red")
    ax[0].plot(t, col("fail_open"), label="fail-opens / interval (connector)", color="orange")
    ax[0].set_ylabel("count")
    ax[1].plot(t, col("proxy_rss_kib", 1 / 1024), label="mitmdump + addon")
    ax[1].plot(t, col("node_rss_kib", 1 / 1024), label="node")
    ax[1].set_ylabel("RSS (MiB)")
    ax[2].plot(t, col("proxy_fds"), label="mitmdump + addon")
    ax[2].plot(t, col("node_fds"), label="node")
    ax[2].set_ylabel("open fds")
    ax[3].plot(t, col("store_bytes", 1 / 1024 / 1024), label="node.db + WAL + SHM", color="purple")
    ax[3].plot(t, col("wal_bytes", 1 / 1024 / 1024), label="of which WAL", color="violet", alpha=0.7)
    ax[3].set_ylabel("store (MiB)")
    ax[4].plot(t, col("client_p50_ms"), label="client p50")
    ax[4].plot(t, col("client_p99_ms"), label="client p99")
    ax[4].step(t, col("node_p99_ms"), label="node call p99 (bucket bound)", where="post", alpha=0.7)
    ax[4].set_ylabel("latency (ms)")
    ax[4].set_yscale("log")
    ax[4].set_xlabel("minutes")
    for a in ax:
        for e in events:
            restart = e["event"] == "node_restart"
            a.axvline(e["t"] / 60, color="grey" if restart else "tab:blue", linestyle="--" if restart else ":",
                      linewidth=0.8, alpha=1.0 if restart else 0.5)
        a.axvspan(0, warmup_s / 60, color="0.93")
        a.legend(loc="upper left", fontsize=8)
        a.grid(alpha=0.3)
    ax[0].set_title("soak: grey dashed = node restart, blue dotted = config change, shaded = warm-up")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(path: Path, head: dict, samples: list[dict]) -> None:
    """JSON with one sample per line: a 30-minute run stays small and diffable in the docs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(head, indent=1)[:-2]  # reopen the object to append the samples
    rows = ",\n  ".join(json.dumps(s) for s in samples)
    path.write_text(f'{body},\n "samples": [\n  {rows}\n ]\n}}\n', "utf-8")


# ---------------------------------------------------------------- main loop

async def run(args: argparse.Namespace, node: Node, proxy_pid: int, proxy_url: str, admin: str,
              config: Path) -> tuple[list[Sample], list[dict], Tally, dict[str, float], float]:
    tally = Tally()
    samples: list[Sample] = []
    events: list[dict] = []
    t0 = time.monotonic()
    stop_at = t0 + args.duration_s
    timeout = aiohttp.ClientTimeout(total=30)
    conn = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as scraper:
        workers = [asyncio.create_task(client_worker(session, proxy_url, args.rate / args.concurrency,
                                                     args.attack_ratio, tally, stop_at, seed=args.seed + i))
                   for i in range(args.concurrency)]

        async def chaos() -> None:
            next_restart, next_config, flip = args.restart_every, args.config_every, 0
            while True:
                now = time.monotonic() - t0
                if now >= args.duration_s:
                    return
                if args.config_every and now >= next_config:
                    flip ^= 1
                    write_config_atomically(config, node.url, TIMEOUTS_MS[flip])
                    events.append({"t": round(now, 1), "event": "config_change", "timeout_ms": TIMEOUTS_MS[flip]})
                    next_config += args.config_every
                if args.restart_every and now >= next_restart:
                    down = await asyncio.to_thread(node.restart)
                    events.append({"t": round(now, 1), "event": "node_restart", "down_s": round(down, 2),
                                   "pid": node.current.proc.pid})
                    print(f"[soak] t={now:.0f}s node restarted in {down:.1f}s", flush=True)
                    next_restart += args.restart_every
                await asyncio.sleep(0.25)

        chaos_task = asyncio.create_task(chaos())
        prev = await scrape(scraper, admin)
        last = prev
        try:
            while time.monotonic() < stop_at:
                await asyncio.sleep(min(args.sample_every, max(0.0, stop_at - time.monotonic())))
                if chaos_task.done() and chaos_task.exception():
                    raise chaos_task.exception()  # type: ignore[misc]
                try:
                    last = await scrape(scraper, admin)
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    print(f"[soak] cannot read the connector's /metrics: {e}", flush=True)
                    continue
                n, errs, lat = tally.take_interval()
                fo = sum(counter_by(last, "wallarm_connector_fail_open_total", "cause").values()) - \
                    sum(counter_by(prev, "wallarm_connector_fail_open_total", "cause").values())
                now_b, prev_b = histogram_buckets(last, "sync"), histogram_buckets(prev, "sync")
                node_pid = node.current.proc.pid
                p50, p99 = histogram_quantile(now_b, prev_b, 0.5), histogram_quantile(now_b, prev_b, 0.99)
                s = Sample(t=round(time.monotonic() - t0, 2), requests=n, errors=errs,
                           client_p50_ms=None if not lat else round(percentile(lat, 0.5) * 1000, 2),
                           client_p99_ms=None if not lat else round(percentile(lat, 0.99) * 1000, 2),
                           node_p50_ms=None if p50 is None else p50 * 1000,
                           node_p99_ms=None if p99 is None else p99 * 1000,
                           fail_open=int(fo), attacks_sent=tally.attacks_sent, attacks_blocked=tally.attacks_blocked,
                           attacks_passed=tally.attacks_passed, proxy_rss_kib=rss_kib(proxy_pid),
                           proxy_fds=open_fds(proxy_pid), node_rss_kib=rss_kib(node_pid), node_fds=open_fds(node_pid),
                           node_pid=node_pid, store_bytes=node.store_bytes(),
                           wal_bytes=file_size(node.wal))
                samples.append(s)
                prev = last
                if args.verbose:
                    print(f"[soak] t={s.t:.0f}s req={n} err={errs} fo={fo:.0f} p99={s.client_p99_ms}ms "
                          f"rss proxy={s.proxy_rss_kib} node={s.node_rss_kib} fds {s.proxy_fds}/{s.node_fds} "
                          f"store={s.store_bytes}", flush=True)
        finally:
            await asyncio.gather(*workers, return_exceptions=True)
            chaos_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos_task
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            last = await scrape(scraper, admin)
    return samples, events, tally, last, time.monotonic() - t0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    length = ap.add_mutually_exclusive_group(required=True)
    length.add_argument("--minutes", type=float, help="how long the load runs")
    length.add_argument("--seconds", type=float, help="the same in seconds (short CI runs)")
    length.add_argument("--from-json", type=Path, help="run nothing: recompute the growth figures of a saved "
                                                       "run (--json FILE), rewrite it, redraw --plot")
    ap.add_argument("--rate", type=float, default=40.0, help="requests per second, all workers (default 40)")
    ap.add_argument("--concurrency", type=int, default=12, help="client workers / connections (default 12)")
    ap.add_argument("--attack-ratio", type=float, default=0.1)
    ap.add_argument("--restart-every", type=float, default=300.0, help="node restart period, s (default 300; 0: never)")
    ap.add_argument("--config-every", type=float, default=120.0, help="plugin config change period, s (default 120; 0: never)")
    ap.add_argument("--sample-every", type=float, default=5.0, help="sampling period, s (default 5)")
    ap.add_argument("--warmup", type=float, help="seconds excluded from growth (default: 300, or 20%% of "
                                                  "a run shorter than 25 minutes)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="samples, events and summary as JSON")
    ap.add_argument("--csv", type=Path, help="samples as CSV")
    ap.add_argument("--plot", type=Path, help="PNG with errors, RSS, fds, store size and latency over time")
    ap.add_argument("--verbose", action="store_true", help="print every sample")
    return ap


def report_again(args: argparse.Namespace) -> int:
    """--from-json: the same figures and plot from a saved run, e.g. after changing how growth is
    computed, without another 30 minutes of load."""
    doc = json.loads(args.from_json.read_text("utf-8"))
    samples = [Sample(**d) for d in doc.pop("samples")]
    summary = doc["summary"]
    warmup = args.warmup if args.warmup is not None else summary["warmup_s"]
    summary["warmup_s"] = warmup
    summary.update(growth_figures(samples, warmup))
    write_report(args.json or args.from_json, doc, [asdict(s) for s in samples])
    if args.plot:
        plot(samples, doc["events"], args.plot, warmup)
    print_summary(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_json:
        return report_again(args)
    args.duration_s = args.seconds if args.seconds is not None else args.minutes * 60
    if args.duration_s <= 0 or args.concurrency < 1 or args.rate <= 0:
        raise SystemExit("soak: duration, concurrency and rate must be positive")
    warmup = args.warmup if args.warmup is not None else (300.0 if args.duration_s >= 1500 else 0.2 * args.duration_s)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    procs: list[ManagedProcess] = []
    failed = False
    exit_on_signals()
    try:
        upstream, upstream_url = start_upstream()
        procs.append(upstream)
        node = Node(work)
        config = work / "enable-plugin.json"
        write_config_atomically(config, node.url, TIMEOUTS_MS[0])
        proxy = start_proxy("soak", upstream_url, config)
        procs.append(proxy.proc)
        wait_ready(proxy)
        print(f"[soak] up: proxy 127.0.0.1:{proxy.port} (pid {proxy.proc.proc.pid}), node {node.url} "
              f"(pid {node.current.proc.pid}), upstream {upstream_url}; load for {args.duration_s:.0f}s "
              f"at {args.rate:g} req/s, {args.concurrency} workers", flush=True)
        try:
            samples, events, tally, metrics, took = asyncio.run(
                run(args, node, proxy.proc.proc.pid, proxy.url(""), f"http://127.0.0.1:{proxy.admin_port}/metrics",
                    config))
        finally:
            procs.extend(node.procs)  # stopped with the rest, node last (flushes its store)
        summary = summarize(samples, events, tally, metrics, warmup, took)
        pids = {"mitmdump": proxy.proc.proc.pid, "upstream": upstream.proc.pid,
                "node": [p.proc.pid for p in node.procs]}
        if args.json:
            write_report(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary,
                                     "events": events, "processes": pids}, [asdict(s) for s in samples])
        if args.csv:
            with args.csv.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(Sample.__dataclass_fields__))
                w.writeheader()
                w.writerows(asdict(s) for s in samples)
        if args.plot:
            plot(samples, events, args.plot, warmup)
        print_summary(summary)
        return 0
    except Exception:
        failed = True
        raise
    finally:
        ignore_signals()
        # the proxy first, then the upstream, the node last
        order = [p for p in procs if p.name.startswith("mitmdump")] + \
                [p for p in procs if p.name == "upstream"] + [p for p in procs if p.name == "node"]
        stop_all(list(reversed(order)), keep_logs=failed)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
