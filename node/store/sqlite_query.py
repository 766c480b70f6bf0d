"""The SQL of the console's attack list in SQLite: query plans, counts (filters: node/store/filters.py).

SQLite's planner cannot know whether "type = log4j" or "client IP in 10.0.0.0/8" matches five
rows or most of them, and the right plan differs by orders of magnitude (measured on 100k rows:
a rare type through the newest-first scan took 640 ms, through the type index 0.2 ms; a common
one the other way round, 0.5 ms against 350 ms). So before a page, a capped count on the
relevant index (at most PLAN_CAP index entries) decides: few matches -> drive the query from
that index and sort them; many -> walk attacks newest first and stop after one page.
Where the line lies depends on the page size and the store size (`plan_cap`).
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any

from node.store.filters import ParsedFilter

PLAN_CAP = 5000  # at most this many index entries are counted to choose a plan (see plan_cap)


# ---------------------------------------------------------------------------- SQL

def _types_subquery(pf: ParsedFilter) -> tuple[str, list[Any]]:
    sql = f"SELECT attack_id FROM attack_types WHERE type IN ({','.join('?' * len(pf.types))})"
    args: list[Any] = list(pf.types)
    if pf.since is not None:
        sql += " AND time >= ?"
        args.append(pf.since)
    if pf.until is not None:
        sql += " AND time < ?"
        args.append(pf.until)
    return sql, args


def conditions(pf: ParsedFilter, *, types_driven: bool, ip_indexed: bool) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if pf.types:
        if types_driven:
            sub, args = _types_subquery(pf)
            where.append(f"a.id IN ({sub})")
            params.extend(args)
        else:
            where.append("EXISTS (SELECT 1 FROM attack_types t WHERE t.attack_id = a.id AND t.type IN (%s))"
                         % ",".join("?" * len(pf.types)))
            params.extend(pf.types)
    if pf.ip_range:
        lo, hi = pf.ip_range
        if lo == hi:
            where.append("a.ip_key = ?")  # (ip_key, time) index: already newest first, no sort
            params.append(lo)
        else:
            # A unary + keeps SQLite off the ip index when the range matches too much.
            where.append(("a.ip_key" if ip_indexed else "+a.ip_key") + " BETWEEN ? AND ?")
            params.extend([lo, hi])
    if pf.action:
        where.append("a.action = ?")
        params.append(pf.action)
    if pf.host:
        where.append("a.host = ?")  # the column is COLLATE NOCASE
        params.append(pf.host)
    if pf.since is not None:
        where.append("a.time >= ?")
        params.append(pf.since)
    if pf.until is not None:
        where.append("a.time < ?")
        params.append(pf.until)
    if pf.needle:
        where.append("instr(a.path_lc, ?) > 0")  # path_lc = str.lower(path): Unicode-aware
        params.append(pf.needle)
    return where, params


def _capped_count(conn: sqlite3.Connection, inner: str, args: list[Any], cap: int) -> int:
    return conn.execute(f"SELECT count(*) FROM ({inner} LIMIT {int(cap)})", args).fetchone()[0]


def plan_cap(conn: sqlite3.Connection, limit: int) -> int:
    """How many matches an index may yield and still beat walking attacks newest first.

    Walking visits about limit * rows / matches rows; driving from the index visits every
    match once and sorts them: the break-even is near sqrt(limit * rows), with a margin
    because an index-driven visit is the cheaper of the two."""
    # Two subqueries: SQLite answers a lone min() or max() from the b-tree edge, both at once by a scan.
    lo, hi = conn.execute("SELECT (SELECT min(id) FROM attacks), (SELECT max(id) FROM attacks)").fetchone()
    rows = 0 if lo is None else hi - lo + 1
    return min(PLAN_CAP, max(100, int(4 * math.sqrt(limit * rows))))


def choose_plan(conn: sqlite3.Connection, pf: ParsedFilter, limit: int) -> tuple[bool, bool]:
    """(types_driven, ip_indexed): which index should drive the page query."""
    if not pf.types and not (pf.ip_range and pf.ip_range[0] != pf.ip_range[1]):
        return False, True
    cap = plan_cap(conn, limit)
    types_driven = False
    if pf.types:
        sub, args = _types_subquery(pf)
        types_driven = _capped_count(conn, sub, args, cap) < cap
    ip_indexed = True
    if pf.ip_range and pf.ip_range[0] != pf.ip_range[1]:
        ip_indexed = _capped_count(conn, "SELECT 1 FROM attacks WHERE ip_key BETWEEN ? AND ?",
                                   list(pf.ip_range), cap) < cap
    return types_driven, ip_indexed


def page_query(conn: sqlite3.Connection, pf: ParsedFilter, columns: str, cursor: tuple[float, int] | None,
               limit: int) -> list[tuple]:
    types_driven, ip_indexed = choose_plan(conn, pf, limit)
    where, params = conditions(pf, types_driven=types_driven, ip_indexed=ip_indexed)
    if cursor is not None:
        t, attack_id = cursor
        # The first term bounds the time index scan; the second breaks ties by id.
        where.append("a.time <= ? AND (a.time < ? OR a.id < ?)")
        params.extend([t, t, attack_id])
    # Two steps: find and sort the page's ids (narrow), then read the page's (wide) rows.
    ids = (f"SELECT a.id FROM attacks a WHERE {' AND '.join(where) or '1'} "
           "ORDER BY a.time DESC, a.id DESC LIMIT ?")
    sql = f"SELECT {columns} FROM attacks WHERE id IN ({ids}) ORDER BY time DESC, id DESC"
    return conn.execute(sql, [*params, limit]).fetchall()


def count_query(pf: ParsedFilter) -> tuple[str, list[Any]]:
    if pf.types_only:  # the type index answers without touching attacks
        sub, args = _types_subquery(pf)
        return sub.replace("SELECT attack_id", "SELECT count(DISTINCT attack_id)", 1), args
    where, params = conditions(pf, types_driven=True, ip_indexed=True)
    return f"SELECT count(*) FROM attacks a WHERE {' AND '.join(where) or '1'}", params


def count_within_budget(conn: sqlite3.Connection, sql: str, params: list[Any], budget: float) -> int | None:
    """The count, or None when it would take longer than `budget` seconds (a scan of a big store)."""
    deadline = time.perf_counter() + budget
    conn.set_progress_handler(lambda: time.perf_counter() > deadline, 2000)
    try:
        return conn.execute(sql, params).fetchone()[0]
    except sqlite3.OperationalError as err:
        if "interrupt" not in str(err):
            raise
        return None
    finally:
        conn.set_progress_handler(None, 0)
