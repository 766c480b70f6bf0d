"""The SQL of the console's attack list and overview in PostgreSQL.

The same filters and keyset as the SQLite store (validation and cursors: node/store/filters.py),
answered the PostgreSQL way: its planner has statistics, so one query per page and no plan
choice of our own; a type filter is an array overlap on a GIN index; the first page's count
runs under a statement timeout and is None when it would take longer.
The overview is counted from the attacks in the range (no rollup table): exact, and bounded
by the time index.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import psycopg
from psycopg import sql

from node.store.base import Stats, StatsBucket
from node.store.filters import ParsedFilter
from node.store.sqlite_stats import TOP_N, nice_bucket_seconds

ATTACK_COLUMNS = ("id, time, request_id, client_ip, host, method, path, action, mode, instance, node_instance, "
                  "response_status, request_excerpt, reason, hits")


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only: what SQLite's NOCASE compares, so hosts match the same way."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def conditions(pf: ParsedFilter) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if pf.types:
        where.append("types && %s::text[]")
        params.append(list(pf.types))
    if pf.ip_range:
        lo, hi = pf.ip_range
        if lo == hi:
            where.append("ip_key = %s")
            params.append(lo)
        else:
            where.append("ip_key BETWEEN %s AND %s")  # bytea compares bytewise, as the keys sort
            params.extend([lo, hi])
    if pf.action:
        where.append("action = %s")
        params.append(pf.action)
    if pf.host:
        where.append("host_key = %s")
        params.append(ascii_lower(pf.host))
    if pf.since is not None:
        where.append("time >= %s")
        params.append(pf.since)
    if pf.until is not None:
        where.append("time < %s")
        params.append(pf.until)
    if pf.needle:
        where.append("strpos(path_lc, %s) > 0")  # a substring, not a LIKE pattern: % and _ are data
        params.append(pf.needle)
    return where, params


async def page_rows(conn: psycopg.AsyncConnection, pf: ParsedFilter, cursor: tuple[float, int] | None,
                    limit: int) -> list[tuple]:
    where, params = conditions(pf)
    if cursor is not None:
        where.append("(time, id) < (%s, %s)")  # older than the cursor's row; ties broken by id
        params.extend(cursor)
    query = (f"SELECT {ATTACK_COLUMNS} FROM attacks WHERE {' AND '.join(where) or 'true'} "
             "ORDER BY time DESC, id DESC LIMIT %s")
    cur = await conn.execute(query, [*params, limit])
    return await cur.fetchall()


async def count_within_budget(conn: psycopg.AsyncConnection, pf: ParsedFilter, budget: float) -> int | None:
    """The count, or None when it would take longer than `budget` seconds. Call inside a transaction."""
    if budget <= 0:
        return None
    where, params = conditions(pf)
    query = f"SELECT count(*) FROM attacks WHERE {' AND '.join(where) or 'true'}"
    try:
        async with conn.transaction():  # a savepoint: a cancelled count leaves the page's transaction usable
            await conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(max(1, round(budget * 1000))))
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
    except psycopg.errors.QueryCanceled:
        return None
    return int(row[0]) if row else 0


async def compute_stats(conn: psycopg.AsyncConnection, since: float, until: float, buckets: int) -> Stats:
    """Everything the overview shows for [since, until): the same buckets as the SQLite store
    (node/store/sqlite_stats.py). Call inside one read transaction."""
    bs = nice_bucket_seconds(until - since, buckets)
    start0 = math.floor(since / bs) * bs
    n = max(1, math.ceil((until - start0) / bs))
    series = [StatsBucket(start=float(start0 + i * bs), by_type={}, by_action={}) for i in range(n)]
    bucket = "LEAST(GREATEST(floor((time - %s) / %s)::bigint, 0), %s)"
    rng = "time >= %s AND time < %s"
    by_action: Counter = Counter()
    by_type: Counter = Counter()
    for query, field, totals in (
        (f"SELECT {bucket} b, action, count(*) FROM attacks WHERE {rng} GROUP BY 1, 2", "by_action", by_action),
        (f"SELECT {bucket} b, t, count(*) FROM attacks CROSS JOIN LATERAL unnest(types) t WHERE {rng} "
         "GROUP BY 1, 2", "by_type", by_type),
    ):
        cur = await conn.execute(query, [float(start0), float(bs), n - 1, since, until])
        for b, key, c in await cur.fetchall():
            getattr(series[b], field)[key] = c
            totals[key] += c

    async def top(column: str) -> list[tuple[str, int]]:
        # COLLATE "C": ties ordered by code point, as SQLite and Python order them
        cur = await conn.execute(
            f"SELECT {column}, count(*) c FROM attacks WHERE {rng} GROUP BY 1 "
            f'ORDER BY c DESC, {column} COLLATE "C" LIMIT {TOP_N}', [since, until])
        return [(k, int(c)) for k, c in await cur.fetchall()]

    return Stats(
        total=sum(by_action.values()),
        by_type=dict(sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_action=dict(sorted(by_action.items())),
        series=series, bucket_seconds=bs,
        top_paths=await top("path"), top_ips=await top("client_ip"),
    )
