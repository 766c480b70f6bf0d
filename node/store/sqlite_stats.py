"""The SQLite store's overview numbers: the rollup (node/store/stats_plan.py) kept in SQLite.

The rollup is filled in the writer's transaction (`add_batch`), recounted around a retention
cut (`prune_before`) and read by `compute_stats`; the queries themselves are stats_plan's.
"""

from __future__ import annotations

import sqlite3

from node.store.base import Stats
from node.store.stats_plan import Dialect, StatsPlan, batch_counts, prune_statements, rebuild_sql, upsert_rows

__all__ = ["DIALECT", "add_batch", "compute_stats", "prune_before", "rebuild_all"]

DIALECT = Dialect(
    param="?",
    truncate="CAST({} AS INTEGER)",  # truncates, as int() does
    minute="CAST(time / 60 AS INTEGER)",
    least="min", greatest="max",  # SQLite's two-argument min/max are scalar
    type_source="attack_types",
    key_order="k",  # BINARY collation: code point order
)

UPSERT_SQL = ("INSERT INTO attack_rollup (minute, kind, key, n) VALUES (?, ?, ?, ?) "
              "ON CONFLICT (kind, minute, key) DO UPDATE SET n = n + excluded.n")


def add_batch(conn: sqlite3.Connection, attack_rows: list[tuple], type_rows: list[tuple]) -> None:
    """Count a batch just inserted: attack rows as in SQLiteStore (id, time, request_id,
    client_ip, ip_key, host, method, path, path_lc, action, ...), type rows (attack_id, type, time)."""
    counts = batch_counts(((r[1], r[9], r[7], r[3]) for r in attack_rows), ((t, type_) for _, type_, t in type_rows))
    if counts:
        conn.executemany(UPSERT_SQL, upsert_rows(counts))


def rebuild_all(conn: sqlite3.Connection) -> None:
    """Recount the whole rollup from the attacks (the schema migration that adds it)."""
    conn.execute("DELETE FROM attack_rollup")
    conn.execute(rebuild_sql(DIALECT, "1"))


def prune_before(conn: sqlite3.Connection, cutoff: float) -> None:
    """Retention deleted every attack with time < cutoff (and maybe some at cutoff)."""
    for sql, args in prune_statements(DIALECT, cutoff):
        conn.execute(sql, args)


def compute_stats(conn: sqlite3.Connection, since: float, until: float, buckets: int) -> Stats:
    """Everything the overview shows for [since, until); call inside one read transaction."""
    plan = StatsPlan(DIALECT, since, until, buckets)
    for field, sql, args in plan.counts():
        plan.add(field, conn.execute(sql, args))
    return plan.result({field: conn.execute(sql, args).fetchall() for field, sql, args in plan.tops()})
