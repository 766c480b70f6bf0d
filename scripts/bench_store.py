#!/usr/bin/env python3
"""Benchmark the attack store (SQLite, or PostgreSQL with --backend): insert throughput and the
console's queries.

For each size (default 10,000 and 100,000 synthetic attacks with varied types, IPs, hosts,
paths and actions, arriving over 7 days) it measures, in one run:
  - insert throughput: records/s through add_attack + flush (and records dropped, if any);
  - list_attacks first page (50) without filters, with each filter, with all combined;
  - a deep page (cursor from the middle of the store);
  - stats over the whole range (48 buckets) and over the last 24 hours;
then a scan burst (--scan, default 100,000 attacks in 30 minutes from 5 IPs): insert rate,
first pages and stats. The synthetic stores above spread attacks over 2,500 IPs and ~5,000
paths almost uniformly: the worst case for the overview's top-10 lists (nothing repeats).
Query times are the median and max of --repeat runs, in milliseconds. Everything happens in a
temporary directory that is removed at the end; the run is bounded by the sizes given.
`--backend postgresql` runs the same on a throwaway PostgreSQL cluster (the tests' one,
tests/support/postgres.py: Debian's initdb/pg_ctl, or the server of WALLARM_TEST_POSTGRES_DSN),
a fresh database per scenario; `--backend both` runs each scenario on both.

    .venv/bin/python scripts/bench_store.py [--sizes 10000,100000] [--repeat 20] [--scan 100000]
                                            [--backend sqlite|postgresql|both]
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
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.store import open_store  # noqa: E402
from node.store.base import AttackFilter, AttackRecord, Hit, Store  # noqa: E402
from node.store.filters import encode_cursor  # noqa: E402

# A scenario's store: name -> an unopened store of the backend under test.
MakeStore = Callable[[str], Store]

TYPES = ["sqli", "xss", "ptrav", "rce", "nosqli", "ldapi", "ssti", "xxe", "log4j", "scanner", "ssrf"]
TYPE_WEIGHTS = [30, 25, 15, 10, 5, 3, 3, 3, 2, 4, 0.05]
HOSTS = [f"api{i}.example.com" for i in range(8)] + ["shop.example.org", "admin.example.net"]
PATHS = ["/api/v1/users", "/api/v1/orders", "/login", "/search", "/etc/passwd", "/api/v2/items",
         "/admin/config", "/wp-login.php", "/graphql", "/static/app.js"]
DAY = 86_400.0


def synthetic(rng: random.Random, n: int, now: float) -> list[AttackRecord]:
    ips = [f"203.0.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(2000)]
    ips += [f"2001:db8::{rng.randrange(65536):x}" for _ in range(500)]
    records = []
    for i in range(n):
        k = 1 + (rng.random() < 0.3) + (rng.random() < 0.1)
        types = rng.choices(TYPES, TYPE_WEIGHTS, k=k)
        hits = [Hit(type=t, location=rng.choice(["query.id", "json.user.name", "header.user-agent", "path"]),
                    rule_id=str(900000 + rng.randrange(5000)), excerpt="' OR 1=1 --"[: rng.randrange(4, 12)],
                    score=rng.randrange(1, 10))
                for t in types]
        path = rng.choice(PATHS) + (f"/{rng.randrange(1000)}" if rng.random() < 0.5 else "")
        records.append(AttackRecord(
            time=now - 7 * DAY * (1 - i / n) + rng.uniform(-5, 5), request_id=f"{i:032x}", client_ip=rng.choice(ips),
            host=rng.choice(HOSTS), method=rng.choice(["GET", "POST", "PUT"]), path=path, hits=hits,
            action="blocked" if rng.random() < 0.6 else "monitored", mode="block", instance="bench",
            response_status=rng.choice([None, 403, 200, 404]),
            request_excerpt=f"GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: sqlmap\r\n\r\n",
        ))
    return records


async def timed(fn, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples)


async def load(store: Store, records: list[AttackRecord]) -> tuple[float, float]:
    """Add `records` through the store's hot-path API, then flush. Returns (seconds to enqueue,
    seconds until everything is written)."""
    t0 = time.perf_counter()
    for i, rec in enumerate(records):
        store.add_attack(rec)
        if i % 1000 == 999:
            await asyncio.sleep(0)  # like a busy node: the loop keeps turning
    enqueue_s = time.perf_counter() - t0
    await store.flush()
    return enqueue_s, time.perf_counter() - t0


async def bench_size(n: int, repeat: int, make_store: MakeStore) -> None:
    rng = random.Random(n)
    now = time.time()
    records = synthetic(rng, n, now)
    store = make_store(f"bench-{n}")
    await store.open()
    try:
        enqueue_s, insert_s = await load(store, records)
        print(f"\n== {n:,} attacks, {type(store).__name__} ==")
        print(f"insert: {n / insert_s:,.0f} records/s through add_attack+flush ({insert_s:.2f} s; "
              f"enqueue alone {enqueue_s * 1e6 / n:.1f} us/record on the loop; dropped {store.dropped}; "
              f"written {store.attacks_written})")

        sample_ip = records[n // 2].client_ip
        middle = sorted(records, key=lambda r: r.time)[n // 2]
        page0 = await store.list_attacks(AttackFilter(since=middle.time, until=middle.time + 1e-6), limit=1)
        deep_cursor = encode_cursor(page0.items[0].time, page0.items[0].id) if page0.items else None
        cases: list[tuple[str, AttackFilter, str | None]] = [
            ("first page, no filter", AttackFilter(), None),
            ("type=xss", AttackFilter(types=["xss"]), None),
            ("types=log4j|xxe (rare)", AttackFilter(types=["log4j", "xxe"]), None),
            ("type=ssrf (very rare)", AttackFilter(types=["ssrf"]), None),
            (f"client_ip={sample_ip}", AttackFilter(client_ip=sample_ip), None),
            ("client_ip=203.0.0.0/16 (most)", AttackFilter(client_ip="203.0.0.0/16"), None),
            ("client_ip=203.0.7.0/24 (few)", AttackFilter(client_ip="203.0.7.0/24"), None),
            ("type=ssti + last 24 h", AttackFilter(types=["ssti"], since=now - DAY), None),
            ("action=monitored", AttackFilter(action="monitored"), None),
            ("host=admin.example.net", AttackFilter(host="admin.example.net"), None),
            ("last 24 h", AttackFilter(since=now - DAY, until=now + 1), None),
            ("path contains 'passwd'", AttackFilter(path_search="PASSWD"), None),
            ("combined (type+action+host+24h+path)", AttackFilter(types=["sqli"], action="blocked",
                                                                  host="api3.example.com", since=now - DAY,
                                                                  path_search="api"), None),
            ("deep page (cursor at the middle)", AttackFilter(), deep_cursor),
            ("deep page + type=sqli", AttackFilter(types=["sqli"]), deep_cursor),
        ]
        print(f"{'query (50 per page)':42} {'median ms':>10} {'max ms':>8} {'total':>8}")
        for name, flt, cursor in cases:
            page = await store.list_attacks(flt, cursor=cursor, limit=50)
            med, worst = await timed(lambda f=flt, c=cursor: store.list_attacks(f, cursor=c, limit=50), repeat)
            total = "-" if page.total is None else f"{page.total:,}"
            print(f"{name:42} {med:10.2f} {worst:8.2f} {total:>8}")
        for name, since in (("stats: 7 days, 48 buckets", now - 7 * DAY - 1), ("stats: last 24 h, 48 buckets", now - DAY)):
            med, worst = await timed(lambda s=since: store.stats(s, now + 1, 48), max(3, repeat // 4))
            print(f"{name:42} {med:10.2f} {worst:8.2f}")
        t0 = time.perf_counter()
        pages = 0
        cursor = None
        while pages < 40:
            page = await store.list_attacks(AttackFilter(), cursor=cursor, limit=50)
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        print(f"{'paging: 40 consecutive pages, mean':42} {(time.perf_counter() - t0) * 1000 / pages:10.2f}")
    finally:
        await store.close()


async def bench_scan(n: int, repeat: int, make_store: MakeStore) -> None:
    """A scanner's burst: n attacks within 30 minutes from 5 IPs over a 2,000-path word list."""
    rng = random.Random(n + 1)
    now = time.time()
    words = [f"/{rng.choice(['admin', 'api', 'wp', 'cgi-bin', '.git', 'backup'])}/{i}" for i in range(2000)]
    ips = [f"198.51.100.{i}" for i in range(5)]
    records = [AttackRecord(
        time=now - 1800 * (1 - i / n), request_id=f"{i:032x}", client_ip=rng.choice(ips), host="shop.example.org",
        method="GET", path=rng.choice(words), hits=[Hit(type=rng.choice(["ptrav", "scanner", "sqli"]), location="path",
                                                        rule_id="930100", excerpt="../../etc/passwd")],
        action="blocked", mode="block", request_excerpt="GET / HTTP/1.1\r\n\r\n") for i in range(n)]
    store = make_store(f"scan-{n}")
    await store.open()
    try:
        _, insert_s = await load(store, records)
        print(f"\n== scan burst: {n:,} attacks in 30 min from 5 IPs, {type(store).__name__} ==")
        print(f"insert: {n / insert_s:,.0f} records/s through add_attack+flush (dropped {store.dropped})")
        for name, fn in (
            ("first page, no filter", lambda: store.list_attacks(AttackFilter(), limit=50)),
            ("client_ip=198.51.100.3", lambda: store.list_attacks(AttackFilter(client_ip="198.51.100.3"), limit=50)),
            ("stats: last 24 h, 48 buckets", lambda: store.stats(now - DAY, now + 1, 48)),
            ("stats: last 1 h, 60 buckets", lambda: store.stats(now - 3600, now + 1, 60)),
        ):
            med, worst = await timed(fn, max(3, repeat // 2))
            print(f"{name:42} {med:10.2f} {worst:8.2f}")
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated store sizes")
    parser.add_argument("--repeat", type=int, default=20, help="runs per query (median and max reported)")
    parser.add_argument("--scan", type=int, default=100_000, help="attacks in the scan-burst scenario (0 = skip)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite",
                        help="the store to measure (postgresql: a throwaway cluster, see above)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(n < 100 or n > 1_000_000 for n in sizes) or not 1 <= args.repeat <= 1000:
        parser.error("sizes must be 100..1,000,000 and repeat 1..1000")
    logging.basicConfig(level=logging.WARNING)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-store-")))
        makers: list[MakeStore] = []
        if args.backend in ("sqlite", "both"):
            makers.append(lambda name: open_store(tmp / f"{name}.db"))
        if args.backend in ("postgresql", "both"):
            from tests.support.postgres import throwaway_cluster

            cluster = stack.enter_context(throwaway_cluster())
            makers.append(lambda _name: open_store(cluster.create_database()))
        for n in sizes:
            for make_store in makers:
                await bench_size(n, args.repeat, make_store)
        if args.scan:
            for make_store in makers:
                await bench_scan(min(args.scan, 1_000_000), args.repeat, make_store)


if __name__ == "__main__":
    asyncio.run(main())
