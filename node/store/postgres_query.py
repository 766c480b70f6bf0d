"""The SQL of the console's attack list and overview in PostgreSQL.

The same filters and keyset as the SQLite store (validation and cursors: node/store/filters.py),
answered the PostgreSQL way: its planner has statistics, so one query per page and no plan
choice of our own; a type filter is an array overlap on a GIN index; the first page's count
runs under a statement timeout and is None when it would take longer.
The overview comes from the per-minute rollup, as in SQLite (node/store/stats_plan.py).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from node.store.base import Stats
from node.store.filters import ParsedFilter
from node.store.stats_plan import Dialect, StatsPlan

DIALECT = Dialect(
    param="%s",
    truncate="CAST(trunc({}) AS bigint)",  # a plain CAST would round
    minute="CAST(trunc(time / 60) AS bigint)",
    least="LEAST", greatest="GREATEST",
    type_source="attacks CROSS JOIN LATERAL unnest(types) AS t(type)",
    key_order='k COLLATE "C"',  # code point order, whatever the database's collation
)

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
    """Everything the overview shows for [since, until), from the rollup and the raw edges as
    the SQLite store does it (node/store/stats_plan.py). Call inside one read transaction."""
    plan = StatsPlan(DIALECT, since, until, buckets)
    for field, query, args in plan.counts():
        plan.add(field, await (await conn.execute(query, args)).fetchall())
    tops = {field: await (await conn.execute(query, args)).fetchall() for field, query, args in plan.tops()}
    return plan.result(tops)
