"""Both stores (SQLite, PostgreSQL): attacks written, filtered, paged, counted; stats and retention."""

from __future__ import annotations

import random
import sys
import time

import pytest

from node.store import sqlite_query
from node.store.base import AttackFilter, Hit
from node.store.filters import decode_cursor, encode_cursor
from store_support import T0, all_pages, record


@pytest.fixture
async def store(stores):
    return await stores.open("attacks")


async def test_every_field_round_trips(store):
    original = record(
        1, time=T0 + 0.123456789, client_ip="2001:db8::7", host="Shop.Example.org", method="POST",
        path="/api/ünïcode/search?q=<script>", action="monitored", mode="monitoring", instance="edge-1",
        node_instance="node-a", response_status=404, request_excerpt="POST /x HTTP/1.1\r\nCookie: ***\r\n\r\n{}",
        reason="denylist",
        hits=[Hit(type="xss", location="json.user.name", rule_id="941100", excerpt="<img src=x onerror=alert(1)>",
                  score=7),
              Hit(type="sqli", location="query.id", rule_id="942100", excerpt="' OR 1=1 --", score=5)],
    )
    store.add_attack(original)
    await store.flush()
    page = await store.list_attacks(AttackFilter())
    assert len(page.items) == 1 and page.total == 1 and page.next_cursor is None
    stored = page.items[0]
    assert stored.id is not None
    assert await store.get_attack(stored.id) == stored
    original.id = stored.id
    assert stored == original
    assert stored.types == ["sqli", "xss"]


async def test_get_attack_missing_and_invalid(store):
    assert await store.get_attack(12345) is None
    with pytest.raises(ValueError):
        await store.get_attack("1")  # type: ignore[arg-type]


async def test_newest_first_by_time_not_by_arrival(store):
    for i in (5, 1, 9, 3):
        store.add_attack(record(i))
    await store.flush()
    page = await store.list_attacks(AttackFilter())
    assert [r.time - T0 for r in page.items] == [9, 5, 3, 1]


def _dataset(n: int = 300) -> list:
    rng = random.Random(7)
    types = ["sqli", "xss", "ptrav", "rce", "log4j"]
    ips = ["203.0.113.7", "203.0.113.200", "198.51.100.1", "2001:db8::1", "2001:db8:0:1::5", "not-an-ip"]
    hosts = ["api.example.com", "API.example.com", "shop.example.org"]
    paths = ["/Login", "/api/users", "/etc/passwd", "/search/ÄBC", "/static/app.js"]
    out = []
    for i in range(n):
        hit_types = rng.sample(types, rng.choice([0, 1, 1, 2]))
        out.append(record(
            i, time=T0 + rng.randrange(100),  # many ties in time: paging must break them by id
            client_ip=rng.choice(ips), host=rng.choice(hosts), path=rng.choice(paths) + f"/{i}",
            action=rng.choice(["blocked", "monitored"]),
            hits=[Hit(type=t, location="query.q", rule_id="1") for t in hit_types],
        ))
    return out


def _expected(records, *, types=(), ip_match=None, action=None, host=None, since=None, until=None, needle=None):
    out = []
    for r in records:
        if types and not set(types) & {h.type for h in r.hits}:
            continue
        if ip_match and not ip_match(r.client_ip):
            continue
        if action and r.action != action:
            continue
        if host and r.host.lower() != host.lower():
            continue
        if since is not None and r.time < since:
            continue
        if until is not None and r.time >= until:
            continue
        if needle and needle.lower() not in r.path.lower():
            continue
        out.append(r.request_id)
    return out


FILTER_CASES = [
    ("no filter", {}, {}),
    ("one type", {"types": ["xss"]}, {"types": ["xss"]}),
    ("any of two types", {"types": ["log4j", "rce"]}, {"types": ["log4j", "rce"]}),
    ("exact IPv4", {"client_ip": "203.0.113.7"}, {"ip_match": lambda ip: ip == "203.0.113.7"}),
    ("IPv4 CIDR", {"client_ip": "203.0.113.0/24"}, {"ip_match": lambda ip: ip.startswith("203.0.113.")}),
    ("IPv6 exact", {"client_ip": "2001:DB8::1"}, {"ip_match": lambda ip: ip == "2001:db8::1"}),
    ("IPv6 CIDR", {"client_ip": "2001:db8::/48"}, {"ip_match": lambda ip: ip.startswith("2001:db8:")}),
    ("action", {"action": "monitored"}, {"action": "monitored"}),
    ("host, any case", {"host": "api.EXAMPLE.com"}, {"host": "api.example.com"}),
    ("time range, since inclusive, until exclusive", {"since": T0 + 20, "until": T0 + 40},
     {"since": T0 + 20, "until": T0 + 40}),
    ("path substring, any case", {"path_search": "LOGIN"}, {"needle": "login"}),
    ("path substring, non-ASCII case", {"path_search": "äbc"}, {"needle": "äbc"}),
    ("combined", {"types": ["sqli", "xss"], "action": "blocked", "host": "api.example.com",
                  "since": T0 + 10, "path_search": "/api"},
     {"types": ["sqli", "xss"], "action": "blocked", "host": "api.example.com", "since": T0 + 10,
      "needle": "/api"}),
]


@pytest.mark.parametrize("plan_cap", [1, 10**9], ids=["scan-newest-first", "index-driven"])
@pytest.mark.parametrize("name,flt,expect", FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
async def test_filters_and_paging_match_a_reference(store, name, flt, expect, plan_cap, monkeypatch):
    # Both of SQLite's query plans (see sqlite_query.choose_plan) must give the same answer;
    # PostgreSQL plans for itself (it runs the case twice).
    monkeypatch.setattr(sqlite_query, "plan_cap", lambda conn, limit: plan_cap)
    records = _dataset()
    for r in records:
        store.add_attack(r)
    await store.flush()
    wanted = _expected(records, **expect)
    assert wanted, f"the dataset must exercise {name}"
    got = await all_pages(store, AttackFilter(**flt), limit=7)
    ids = [r.request_id for r in got]
    assert len(ids) == len(set(ids)), "a row appeared on two pages"
    assert sorted(ids) == sorted(wanted)
    keys = [(r.time, r.id) for r in got]
    assert keys == sorted(keys, reverse=True), "not newest first"
    first = await store.list_attacks(AttackFilter(**flt), limit=7)
    assert first.total == len(wanted)


async def test_cursor_pages_have_no_total_and_the_last_page_no_cursor(store):
    for i in range(10):
        store.add_attack(record(i))
    await store.flush()
    first = await store.list_attacks(AttackFilter(), limit=4)
    second = await store.list_attacks(AttackFilter(), cursor=first.next_cursor, limit=4)
    third = await store.list_attacks(AttackFilter(), cursor=second.next_cursor, limit=4)
    assert first.total == 10 and second.total is None
    assert [len(p.items) for p in (first, second, third)] == [4, 4, 2]
    assert third.next_cursor is None
    exact = await store.list_attacks(AttackFilter(), limit=10)
    assert exact.next_cursor is None and len(exact.items) == 10


async def test_rows_added_while_paging_do_not_shift_older_pages(store):
    for i in range(10):
        store.add_attack(record(i))
    await store.flush()
    first = await store.list_attacks(AttackFilter(), limit=5)
    store.add_attack(record(100))  # newer than everything: must not appear on the older page
    await store.flush()
    second = await store.list_attacks(AttackFilter(), cursor=first.next_cursor, limit=5)
    assert [r.time - T0 for r in second.items] == [4, 3, 2, 1, 0]


@pytest.mark.parametrize("cursor", ["", "garbage!", "Zm9v", encode_cursor(1.0, 2) + "x" * 200,
                                    "bmFuOjE", "MTo"])
async def test_bad_cursor_is_a_value_error(store, cursor):
    with pytest.raises(ValueError, match="bad cursor"):
        await store.list_attacks(AttackFilter(), cursor=cursor)


def test_cursor_round_trips_exactly():
    t = 1_700_000_000.123456789
    assert decode_cursor(encode_cursor(t, 42)) == (t, 42)


@pytest.mark.parametrize("flt,limit,message", [
    (AttackFilter(action="dropped"), 50, "action"),  # type: ignore[arg-type]
    (AttackFilter(client_ip="300.1.1.1"), 50, "invalid IP network"),
    (AttackFilter(client_ip="evil' OR 1=1"), 50, "invalid IP network"),
    (AttackFilter(since=float("nan")), 50, "since"),
    (AttackFilter(until="yesterday"), 50, "until"),  # type: ignore[arg-type]
    (AttackFilter(types=[""]), 50, "types"),
    (AttackFilter(), 0, "limit"),
    (AttackFilter(), 1001, "limit"),
])
async def test_bad_filters_are_value_errors(store, flt, limit, message):
    with pytest.raises(ValueError, match=message):
        await store.list_attacks(flt, limit=limit)


async def test_filter_values_are_data_not_sql(store):
    store.add_attack(record(1, path="/a'b%_\"c"))
    store.add_attack(record(2, path="/abc"))
    await store.flush()
    for needle, count in (("'", 1), ("%", 1), ("_", 1), ("a'b%_\"", 1), ("') OR 1=1 --", 0)):
        page = await store.list_attacks(AttackFilter(path_search=needle))
        assert len(page.items) == count, needle
    assert (await store.list_attacks(AttackFilter(host="x' OR '1'='1"))).items == []


async def test_stats(store):
    since = T0
    # bucket_seconds = ceil(100 / 10) = 10: buckets start at T0, T0+10, ...
    data = [
        record(1, time=T0 + 1, path="/a", client_ip="198.51.100.1", action="blocked",
               hits=[Hit("sqli", "query.id", "1"), Hit("xss", "query.q", "2")]),
        record(2, time=T0 + 2, path="/a", client_ip="198.51.100.1", action="monitored", hits=[Hit("sqli", "q", "1")]),
        record(3, time=T0 + 15, path="/b", client_ip="198.51.100.2", action="blocked", hits=[Hit("ptrav", "path", "3")]),
        record(4, time=T0 + 99.5, path="/a", client_ip="198.51.100.3", action="blocked", hits=[]),
        record(5, time=T0 - 1, path="/old", client_ip="198.51.100.9", hits=[Hit("rce", "q", "4")]),  # before
        record(6, time=T0 + 100, path="/late", client_ip="198.51.100.9", hits=[Hit("rce", "q", "4")]),  # until: out
    ]
    for r in data:
        store.add_attack(r)
    await store.flush()
    st = await store.stats(since, T0 + 100, buckets=10)
    assert st.total == 4
    assert st.by_action == {"blocked": 3, "monitored": 1}
    assert st.by_type == {"sqli": 2, "ptrav": 1, "xss": 1}
    assert st.bucket_seconds == 10 and len(st.series) == 10
    assert [b.start for b in st.series] == [T0 + 10 * i for i in range(10)]
    assert st.series[0].by_action == {"blocked": 1, "monitored": 1}
    assert st.series[0].by_type == {"sqli": 2, "xss": 1}
    assert st.series[1].by_type == {"ptrav": 1} and st.series[1].by_action == {"blocked": 1}
    assert st.series[9].by_action == {"blocked": 1} and st.series[9].by_type == {}
    assert all(not b.by_action for b in st.series[2:9])
    assert st.top_paths == [("/a", 3), ("/b", 1)]
    assert st.top_ips == [("198.51.100.1", 2), ("198.51.100.2", 1), ("198.51.100.3", 1)]


async def test_stats_of_an_empty_range_and_bad_arguments(store):
    st = await store.stats(T0, T0 + 3600, buckets=48)
    assert st.total == 0 and st.by_type == {} and st.top_paths == [] and st.top_ips == []
    assert st.bucket_seconds == 120 and st.series[0].start <= T0 < st.series[0].start + 120
    assert len(st.series) == 31 and all(not b.by_action and not b.by_type for b in st.series)
    for args in ((T0, T0), (T0 + 1, T0), (T0, T0 + 1, 0), (T0, T0 + 1, 5000), (float("inf"), T0), (-1e300, T0),
                 (T0, 1e300)):
        with pytest.raises(ValueError):
            await store.stats(*args)


async def test_retention_by_age(store):
    now = time.time()
    for i, age in enumerate((10, 100, 5000, 90_000)):
        store.add_attack(record(i, time=now - age))
    await store.flush()
    assert await store.apply_retention(max_age_seconds=3600, max_count=None) == 2
    left = await all_pages(store, AttackFilter())
    assert sorted(round(now - r.time) for r in left) == [10, 100]
    st = await store.stats(now - 100_000, now + 1)
    assert st.total == 2 and st.by_type == {"sqli": 2}  # the type index was pruned too


async def test_retention_by_count_keeps_the_newest(store):
    for i in range(20):
        store.add_attack(record(i, time=T0 + i // 2))  # pairs share a time: the cut falls inside a tie
    await store.flush()
    assert await store.apply_retention(max_age_seconds=None, max_count=7) == 13
    left = await all_pages(store, AttackFilter())
    assert [r.request_id for r in left] == [f"{i:032x}" for i in range(19, 12, -1)]
    st = await store.stats(T0 - 1, T0 + 100)
    assert st.by_type == {"sqli": 7}
    assert await store.apply_retention(None, 7) == 0
    assert await store.apply_retention(None, None) == 0
    assert await store.apply_retention(None, 0) == 7
    assert (await store.list_attacks(AttackFilter())).total == 0


async def test_ids_are_not_reused_after_retention(store):
    for i in range(3):
        store.add_attack(record(i))
    await store.flush()
    top = (await store.list_attacks(AttackFilter(), limit=1)).items[0].id
    await store.apply_retention(None, 0)
    store.add_attack(record(9))
    await store.flush()
    assert (await store.list_attacks(AttackFilter())).items[0].id > top


async def test_retention_rejects_bad_arguments(store):
    for age, count in ((-1, None), (None, -1), (None, 1.5), ("1d", None)):
        with pytest.raises(ValueError):
            await store.apply_retention(age, count)  # type: ignore[arg-type]


async def test_malformed_records_are_skipped_not_fatal(store):
    store.add_attack(record(1, action="dropped"))  # type: ignore[arg-type]
    store.add_attack(record(2, time=float("nan")))
    store.add_attack(record(3, hits=[object()]))  # type: ignore[list-item]
    store.add_attack(record(4))
    await store.flush()
    page = await store.list_attacks(AttackFilter())
    assert [r.request_id for r in page.items] == [f"{4:032x}"]
    assert store.bad_records == 3
    assert await store.writable()


async def test_a_client_ip_that_is_no_address_is_stored_but_never_matches_an_ip_filter(store):
    store.add_attack(record(1, client_ip="unknown"))
    await store.flush()
    assert (await store.list_attacks(AttackFilter())).items[0].client_ip == "unknown"
    assert (await store.list_attacks(AttackFilter(client_ip="0.0.0.0/0"))).items == []


async def test_ipv4_mapped_client_ip_matches_its_ipv4_filter(store):
    store.add_attack(record(1, client_ip="::ffff:203.0.113.9"))
    await store.flush()
    page = await store.list_attacks(AttackFilter(client_ip="203.0.113.9"))
    assert [r.client_ip for r in page.items] == ["::ffff:203.0.113.9"]


async def test_first_page_total_is_none_when_counting_would_be_slow(stores, monkeypatch):
    s = await stores.open("budget")
    # every count is "too slow" (each backend reads its COUNT_BUDGET at every page)
    monkeypatch.setattr(sys.modules[type(s).__module__], "COUNT_BUDGET", 0.0)
    for i in range(3000):
        s.add_attack(record(i, path=f"/p/{i}"))
    await s.flush()
    page = await s.list_attacks(AttackFilter(path_search="/p/"), limit=5)
    assert len(page.items) == 5 and page.total is None and page.next_cursor
