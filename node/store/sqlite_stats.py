"""The overview's numbers from per-minute rollups, so their cost does not grow with a scan.

`attack_rollup(minute, kind, key, n)` counts attacks per minute by action, type, path and client
IP; the writer adds to it in the same transaction as the attacks (one upsert per distinct
(minute, kind, key) of a batch, so a scan of one IP costs a handful of rows per batch).
A stats range is answered from the rollup for its whole minutes and from the attacks
themselves for the partial minutes at both ends, so the result is exact. Buckets have "nice"
lengths aligned to the epoch (1 min, 5 min, 30 min, 1 h, ... 1 day, whole days), the shortest
nice length that needs no more than the buckets asked for; the first bucket starts at or
before `since` (so there may be one bucket more than asked). Buckets shorter than a minute are
counted from the attacks directly.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Iterable
from typing import Any

from node.store.base import Stats, StatsBucket

KIND_ACTION, KIND_TYPE, KIND_PATH, KIND_IP = 0, 1, 2, 3
_KINDS = (KIND_ACTION, KIND_TYPE, KIND_PATH, KIND_IP)  # spelled out so deletes use the primary key
TOP_N = 10
_NICE_SECONDS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400,
                 21600, 43200, 86400)

UPSERT_SQL = ("INSERT INTO attack_rollup (minute, kind, key, n) VALUES (?, ?, ?, ?) "
              "ON CONFLICT (kind, minute, key) DO UPDATE SET n = n + excluded.n")

# The minute of a time, the same in Python and SQL: truncated float division (times are >= 0).
MINUTE_SQL = "CAST(time / 60 AS INTEGER)"


def minute_of(t: float) -> int:
    return int(t / 60)


def rollup_counts(events: Iterable[tuple[float, int, str]]) -> Counter:
    """Rollup increments of a batch from (time, kind, key) events."""
    return Counter((minute_of(t), kind, key) for t, kind, key in events)


def add_rollup(conn: sqlite3.Connection, counts: Counter) -> None:
    if counts:
        conn.executemany(UPSERT_SQL, [(m, kind, key, n) for (m, kind, key), n in counts.items()])


def add_batch(conn: sqlite3.Connection, attack_rows: list[tuple], type_rows: list[tuple]) -> None:
    """Count a batch just inserted: attack rows as in SQLiteStore (id, time, request_id,
    client_ip, ip_key, host, method, path, path_lc, action, ...), type rows (attack_id, type, time)."""
    events: list[tuple[float, int, str]] = []
    for r in attack_rows:
        events += ((r[1], KIND_ACTION, r[9]), (r[1], KIND_PATH, r[7]), (r[1], KIND_IP, r[3]))
    events += ((t, KIND_TYPE, type_) for _, type_, t in type_rows)
    add_rollup(conn, rollup_counts(events))


_REBUILD_SQL = (
    f"INSERT INTO attack_rollup (minute, kind, key, n) "
    f"SELECT {MINUTE_SQL} m, {KIND_ACTION}, action, count(*) FROM attacks WHERE {{where}} GROUP BY m, action "
    f"UNION ALL SELECT {MINUTE_SQL} m, {KIND_PATH}, path, count(*) FROM attacks WHERE {{where}} GROUP BY m, path "
    f"UNION ALL SELECT {MINUTE_SQL} m, {KIND_IP}, client_ip, count(*) FROM attacks WHERE {{where}} "
    f"GROUP BY m, client_ip "
    f"UNION ALL SELECT {MINUTE_SQL} m, {KIND_TYPE}, type, count(*) FROM attack_types WHERE {{where}} "
    f"GROUP BY m, type"
)


def rebuild_all(conn: sqlite3.Connection) -> None:
    """Recount the whole rollup from the attacks (the schema migration that adds it)."""
    conn.execute("DELETE FROM attack_rollup")
    conn.execute(_REBUILD_SQL.format(where="1"))


def rebuild_minute(conn: sqlite3.Connection, minute: int) -> None:
    """Recount one minute from the attacks (retention cut through it)."""
    conn.execute(f"DELETE FROM attack_rollup WHERE kind IN {_KINDS} AND minute = ?", (minute,))
    where = "time >= ? AND time < ?"
    lo, hi = minute * 60 - 1, minute * 60 + 61  # a little wider, then exact on the minute expression
    sql = _REBUILD_SQL.format(where=f"{where} AND {MINUTE_SQL} = ?")
    conn.execute(sql, [lo, hi, minute] * 4)


def prune_before(conn: sqlite3.Connection, cutoff: float) -> None:
    """Retention deleted every attack with time < cutoff (and maybe some at cutoff)."""
    edge = minute_of(cutoff)
    conn.execute(f"DELETE FROM attack_rollup WHERE kind IN {_KINDS} AND minute < ?", (edge,))
    rebuild_minute(conn, edge)


def nice_bucket_seconds(span: float, buckets: int) -> int:
    wanted = span / buckets
    for s in _NICE_SECONDS:
        if s >= wanted:
            return s
    return 86400 * math.ceil(wanted / 86400)


def compute_stats(conn: sqlite3.Connection, since: float, until: float, buckets: int) -> Stats:
    """Everything the overview shows for [since, until); call inside one read transaction."""
    bs = nice_bucket_seconds(until - since, buckets)
    start0 = math.floor(since / bs) * bs
    n = max(1, math.ceil((until - start0) / bs))
    series = [StatsBucket(start=float(start0 + i * bs), by_type={}, by_action={}) for i in range(n)]

    # Whole minutes come from the rollup, when buckets are whole minutes too; the attacks at both
    # ends are read directly. Minute membership is decided by the same expression the rollup
    # used, and the end ranges are a second wider, so no float rounding counts a row twice or never.
    m0, m1 = (math.ceil(since / 60), math.floor(until / 60)) if bs % 60 == 0 else (0, 0)
    if m1 > m0:
        ranges = [(since, min(until, m0 * 60 + 1)), (max(since, m1 * 60 - 1), until)]
        raw_where = (f"({' OR '.join('(time >= ? AND time < ?)' for _ in ranges)}) "
                     f"AND NOT ({MINUTE_SQL} >= ? AND {MINUTE_SQL} < ?)")
        raw_args: list[Any] = [*ranges[0], *ranges[1], m0, m1]
    else:
        m0 = m1 = 0
        raw_where, raw_args = "time >= ? AND time < ?", [since, until]

    by_action: Counter = Counter()
    by_type: Counter = Counter()
    raw_bucket = f"min(max(CAST((time - ?) / ? AS INTEGER), 0), {n - 1})"
    rollup_bucket = f"min(max((minute * 60 - ?) / ?, 0), {n - 1})"
    for kind, table, column, totals, field in ((KIND_ACTION, "attacks", "action", by_action, "by_action"),
                                              (KIND_TYPE, "attack_types", "type", by_type, "by_type")):
        parts = [(f"SELECT {raw_bucket} b, {column} k, count(*) c FROM {table} WHERE {raw_where} GROUP BY b, k",
                  [start0, bs, *raw_args])]
        if m1 > m0:
            parts.append((f"SELECT {rollup_bucket} b, key k, sum(n) c FROM attack_rollup "
                          "WHERE kind = ? AND minute >= ? AND minute < ? GROUP BY b, k", [start0, bs, kind, m0, m1]))
        for sql, args in parts:
            for b, key, c in conn.execute(sql, args):
                bucket: dict[str, int] = getattr(series[b], field)
                bucket[key] = bucket.get(key, 0) + c
                totals[key] += c

    def top(kind: int, column: str) -> list[tuple[str, int]]:
        inner = f"SELECT {column} k, 1 c FROM attacks WHERE {raw_where}"
        args: list[Any] = list(raw_args)
        if m1 > m0:
            inner += " UNION ALL SELECT key, n FROM attack_rollup WHERE kind = ? AND minute >= ? AND minute < ?"
            args += [kind, m0, m1]
        sql = f"SELECT k, sum(c) s FROM ({inner}) GROUP BY k ORDER BY s DESC, k LIMIT {TOP_N}"
        return [(k, s) for k, s in conn.execute(sql, args)]

    return Stats(
        total=sum(by_action.values()),
        by_type=dict(sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_action=dict(sorted(by_action.items())),
        series=series, bucket_seconds=bs,
        top_paths=top(KIND_PATH, "path"), top_ips=top(KIND_IP, "client_ip"),
    )
