"""Both stores: the overview's numbers against a plain recount (SQLite: its rollup + raw edges)."""

from __future__ import annotations

import math
import random
import sqlite3
import sys
from collections import Counter

import pytest

from node.store.base import Hit
from node.store.stats_plan import nice_bucket_seconds
from store_support import opened, record

BASE = 1_700_000_017.25  # deliberately not on a minute edge


def _dataset(n: int = 1500, seed: int = 3) -> list:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = BASE + rng.random() * 4 * 3600
        if i % 50 == 0:
            t = math.floor(t / 60) * 60  # exactly on a minute edge
        out.append(record(
            i, time=t, path=rng.choice(["/a", "/b", "/c", "/d"]) + ("/x" if rng.random() < 0.2 else ""),
            client_ip=rng.choice(["198.51.100.1", "198.51.100.2", "2001:db8::1", "203.0.113.9"]),
            action=rng.choice(["blocked", "monitored"]),
            hits=[Hit(type=t_, location="q", rule_id="1") for t_ in rng.sample(["sqli", "xss", "rce"], rng.randrange(3))],
        ))
    return out


def _reference(records, since, until, buckets):
    bs = nice_bucket_seconds(until - since, buckets)
    start0 = math.floor(since / bs) * bs
    n = max(1, math.ceil((until - start0) / bs))
    inside = [r for r in records if since <= r.time < until]
    series_a = [Counter() for _ in range(n)]
    series_t = [Counter() for _ in range(n)]
    for r in inside:
        b = min(int((r.time - start0) // bs), n - 1)
        series_a[b][r.action] += 1
        for t in {h.type for h in r.hits}:
            series_t[b][t] += 1
    by_type = Counter(t for r in inside for t in {h.type for h in r.hits})

    def top(values):
        return sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0]))[:10]

    return dict(total=len(inside), by_action=dict(Counter(r.action for r in inside)), by_type=dict(by_type),
                bucket_seconds=bs, starts=[float(start0 + i * bs) for i in range(n)],
                series_a=[dict(c) for c in series_a], series_t=[dict(c) for c in series_t],
                top_paths=top(r.path for r in inside), top_ips=top(r.client_ip for r in inside))


def _assert_matches(st, ref):
    assert st.total == ref["total"]
    assert st.by_action == ref["by_action"]
    assert st.by_type == ref["by_type"]
    assert st.bucket_seconds == ref["bucket_seconds"]
    assert [b.start for b in st.series] == ref["starts"]
    assert [b.by_action for b in st.series] == ref["series_a"]
    assert [b.by_type for b in st.series] == ref["series_t"]
    assert st.top_paths == ref["top_paths"]
    assert st.top_ips == ref["top_ips"]


RANGES = [
    (BASE - 3600, BASE + 5 * 3600, 48),  # everything, 10-minute buckets: mostly rollup
    (BASE + 100.5, BASE + 3 * 3600 + 7.25, 24),  # ragged ends: raw edges plus rollup
    (BASE + 600, BASE + 600 + 7200, 12),  # ends on minute edges relative to BASE (not absolute)
    (math.floor(BASE / 60) * 60 + 120, math.floor(BASE / 60) * 60 + 3720, 60),  # absolute minute edges
    (BASE + 1000, BASE + 1300, 30),  # 10-second buckets: all raw
    (BASE + 1000, BASE + 1030, 1),  # inside one minute: all raw
    (BASE + 3 * 3600, BASE + 3 * 3600 + 240, 2),  # 2-minute buckets, a few whole minutes
]


@pytest.mark.parametrize("since,until,buckets", RANGES)
async def test_stats_equal_a_recount(stores, since, until, buckets):
    records = _dataset()
    s = await stores.open("stats", batch_max=97)
    try:
        for r in records:
            s.add_attack(r)
        await s.flush()
        _assert_matches(await s.stats(since, until, buckets), _reference(records, since, until, buckets))
    finally:
        await s.close()


async def test_stats_stay_exact_after_retention(stores, monkeypatch):
    records = _dataset(800, seed=9)
    s = await stores.open("retained")
    try:
        for r in records:
            s.add_attack(r)
        await s.flush()
        # Keep the newest 300: the cut falls inside a minute, which must be recounted.
        await s.apply_retention(None, 300)
        kept = sorted(records, key=lambda r: r.time)[-300:]
        for since, until, buckets in RANGES[:4]:
            _assert_matches(await s.stats(since, until, buckets), _reference(kept, since, until, buckets))
        # By age: pretend "now" is 2 hours after BASE, keep one hour.
        monkeypatch.setattr(sys.modules[type(s).__module__].time, "time", lambda: BASE + 7200.0)
        await s.apply_retention(3600.0, None)
        kept = [r for r in kept if r.time >= BASE + 3600.0]
        for since, until, buckets in RANGES[:4]:
            _assert_matches(await s.stats(since, until, buckets), _reference(kept, since, until, buckets))
    finally:
        await s.close()


async def test_upgrading_a_version_1_file_builds_the_rollup(tmp_path):
    path = tmp_path / "v1.db"
    records = _dataset(400, seed=5)
    s = await opened(path)
    for r in records:
        s.add_attack(r)
    await s.close()
    with sqlite3.connect(path) as conn:  # make it look like a file written before the rollup existed
        conn.execute("DROP TABLE attack_rollup")
        conn.execute("DROP TABLE console_sessions")  # (version 3)
        conn.execute("DROP TABLE exceptions")  # (version 4)
        conn.execute("PRAGMA user_version = 1")
    s = await opened(path)
    try:
        since, until, buckets = RANGES[0]
        _assert_matches(await s.stats(since, until, buckets), _reference(records, since, until, buckets))
    finally:
        await s.close()


@pytest.mark.parametrize("span,buckets,expected", [
    (3600, 48, 120), (86400, 48, 1800), (7 * 86400, 48, 14400), (30, 48, 1), (90 * 86400, 48, 2 * 86400),
    (600, 10, 60),
])
def test_bucket_lengths_are_nice(span, buckets, expected):
    assert nice_bucket_seconds(span, buckets) == expected
    assert math.ceil(span / expected) <= buckets
