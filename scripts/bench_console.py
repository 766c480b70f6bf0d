#!/usr/bin/env python3
"""Benchmark the console API over a store of 10,000 attacks: is the first page < 100 ms?

Fills a temporary SQLite store with --count synthetic attacks (varied types, IPs, hosts, paths,
actions, spread over 7 days), serves the real console app (auth, validation, serialisation)
on a free loopback port and calls it over HTTP with a keep-alive client and a bearer token,
like a script or the Attacks page's 1-second poll would. For each query it reports the median,
p95 and max latency of --calls calls (each scenario also stops after --max-seconds), side by
side with the same query made directly on the store, so the API's own overhead is visible.
Exit status 1 when the first page's p95 is not under the target.

    .venv/bin/python scripts/bench_console.py [--count 10000] [--calls 200] [--target-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from wallarm_wire.protocol import AttackInfo  # noqa: E402
from node.console.app import setup_console  # noqa: E402
from node.context import NodeContext
from node.detect.engine import Engine  # noqa: E402
from node.metrics import NodeMetrics  # noqa: E402
from node.policy import Policy  # noqa: E402
from node.settings import NodeSettings  # noqa: E402
from node.store.base import AttackFilter, AttackRecord  # noqa: E402
from node.store.sqlite import SQLiteStore  # noqa: E402

TOKEN = "bench-console-token-0123456789abcdef"
TYPES = ["sqli", "xss", "ptrav", "rce", "nosqli", "ssti", "xxe", "log4j", "scanner"]
WEIGHTS = [30, 25, 15, 10, 5, 3, 3, 2, 7]
HOSTS = [f"api{i}.example.com" for i in range(8)] + ["shop.example.org", "admin.example.net"]
PATHS = ["/api/v1/users", "/api/v1/orders", "/login", "/search", "/etc/passwd", "/api/v2/items",
         "/admin/config", "/wp-login.php", "/graphql", "/static/app.js"]


def synthetic(count: int, now: float, seed: int = 1) -> list[AttackRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        types = set(rng.choices(TYPES, WEIGHTS, k=rng.choice([1, 1, 1, 2])))
        path = rng.choice(PATHS) + (f"/{rng.randrange(1000)}" if rng.random() < 0.5 else "")
        out.append(AttackRecord(
            time=now - rng.uniform(0, 7 * 86400), request_id=f"{i:032x}",
            client_ip=f"198.51.{rng.randrange(4)}.{rng.randrange(1, 255)}", host=rng.choice(HOSTS),
            method=rng.choice(["GET", "GET", "POST", "PUT"]), path=path,
            hits=[AttackInfo(t, "query.id", f"{t}.rule-{rng.randrange(20)}", f"payload {i}", 10) for t in types],
            action="blocked" if rng.random() < 0.6 else "monitored", mode="block",
            response_status=rng.choice([200, 403, 404, None]),
            request_excerpt=f"GET {path}?id=1 HTTP/1.1\r\nHost: x\r\n\r\n"))
    return out


async def measure(call: Callable[[], Awaitable[None]], calls: int, max_seconds: float) -> list[float]:
    await call()  # warm-up (SQLite page cache, first connection)
    times: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(times) < calls and time.perf_counter() < deadline:
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def row(name: str, api: list[float], store: list[float] | None) -> str:
    def fmt(ts: list[float]) -> str:
        p95 = statistics.quantiles(ts, n=20)[-1] if len(ts) >= 20 else max(ts)
        return f"{statistics.median(ts):8.2f} {p95:8.2f} {max(ts):8.2f}"
    direct = f"{statistics.median(store):10.2f}" if store else f"{'-':>10}"
    return f"{name:<34} {len(api):6d} {fmt(api)} {direct}"


async def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        db = Path(tmp) / "bench.db"
        store = SQLiteStore(db)
        await store.open()
        now = time.time()
        t0 = time.perf_counter()
        for r in synthetic(args.count, now):
            store.add_attack(r)
        await store.flush()
        print(f"stored {args.count} attacks in {time.perf_counter() - t0:.1f}s")

        settings = NodeSettings(db=str(db), mode="block", console_token=TOKEN)
        policy = Policy(store, settings.mode_settings())
        await policy.load(settings.mode_settings(), forced=False)
        ctx = NodeContext(settings=settings, store=store, policy=policy, engine=Engine(),
                          metrics=NodeMetrics(), console_token=TOKEN)
        app = web.Application()
        setup_console(app, ctx)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"})

        async def first_cursor_deep(pages: int) -> str:
            cursor = None
            for _ in range(pages):
                async with session.get(base + "/api/v1/attacks?limit=50" + (f"&cursor={cursor}" if cursor else "")) as r:
                    cursor = (await r.json())["next_cursor"]
            return cursor

        deep = await first_cursor_deep(100)
        day_ago = int(now - 86400)
        scenarios: list[tuple[str, str, AttackFilter | None, str | None]] = [
            ("first page (50), no filter", "/api/v1/attacks?limit=50", AttackFilter(), None),
            ("first page (200), no filter", "/api/v1/attacks?limit=200", AttackFilter(), None),
            ("type=sqli&action=blocked", "/api/v1/attacks?type=sqli&action=blocked",
             AttackFilter(types=["sqli"], action="blocked"), None),
            ("ip=198.51.1.0/24", "/api/v1/attacks?ip=198.51.1.0/24", AttackFilter(client_ip="198.51.1.0/24"), None),
            ("host + since 24h", f"/api/v1/attacks?host=api3.example.com&since={day_ago}",
             AttackFilter(host="api3.example.com", since=day_ago), None),
            ("q=admin (path search)", "/api/v1/attacks?q=admin", AttackFilter(path_search="admin"), None),
            ("page 101 (cursor)", f"/api/v1/attacks?limit=50&cursor={deep}", AttackFilter(), deep),
            ("stats last 24h", f"/api/v1/stats?since={day_ago}", None, None),
            ("stats 7 days", f"/api/v1/stats?since={int(now - 7 * 86400)}", None, None),
        ]
        print(f"\n{args.count} attacks; {args.calls} calls per query (max {args.max_seconds}s each); ms\n")
        print(f"{'query':<34} {'calls':>6} {'median':>8} {'p95':>8} {'max':>8} {'store med':>10}")
        first_p95 = None
        for name, path, flt, cursor in scenarios:
            async def api_call(path: str = path) -> None:
                async with session.get(base + path) as r:
                    assert r.status == 200, (r.status, await r.text())
                    await r.read()
            api_times = await measure(api_call, args.calls, args.max_seconds)
            store_times = None
            if flt is not None:
                limit = 200 if "limit=200" in path else 50
                async def store_call(flt: AttackFilter = flt, cursor: str | None = cursor, limit: int = limit) -> None:
                    await store.list_attacks(flt, cursor=cursor, limit=limit)
                store_times = await measure(store_call, args.calls, args.max_seconds)
            elif name.startswith("stats"):
                since = day_ago if "24h" in name else now - 7 * 86400
                async def stats_call(since: float = since) -> None:
                    await store.stats(since, time.time(), 48)
                store_times = await measure(stats_call, args.calls, args.max_seconds)
            print(row(name, api_times, store_times))
            if first_p95 is None:
                first_p95 = statistics.quantiles(api_times, n=20)[-1]
        await session.close()
        await runner.cleanup()
        await store.close()
    ok = first_p95 is not None and first_p95 < args.target_ms
    print(f"\nfirst page p95 {first_p95:.2f} ms vs target {args.target_ms} ms: {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=10_000, help="attacks to store (default 10000)")
    p.add_argument("--calls", type=int, default=200, help="calls per query (default 200)")
    p.add_argument("--max-seconds", type=float, default=10.0, help="time cap per query (default 10)")
    p.add_argument("--target-ms", type=float, default=100.0, help="first-page p95 target (default 100)")
    sys.exit(asyncio.run(main(p.parse_args())))
