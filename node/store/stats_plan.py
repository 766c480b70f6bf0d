"""The overview's numbers from per-minute rollups, so their cost does not grow with a scan; the
queries for both backends (each runs them its own way: sqlite_stats.py, postgres_query.py).

`attack_rollup(minute, kind, key, n)` counts attacks per minute by action, type, path and client
IP; a store's writer adds to it in the same transaction as the attacks (one upsert per distinct
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
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from node.store.base import Stats, StatsBucket

KIND_ACTION, KIND_TYPE, KIND_PATH, KIND_IP = 0, 1, 2, 3
KINDS = (KIND_ACTION, KIND_TYPE, KIND_PATH, KIND_IP)  # spelled out so deletes use the primary key
TOP_N = 10
_NICE_SECONDS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400,
                 21600, 43200, 86400)


@dataclass(frozen=True, slots=True)
class Dialect:
    """How a backend spells what the queries need."""

    param: str  # "?" or "%s"
    truncate: str  # the integer part of a number >= 0, "{}" standing for it
    minute: str  # the minute of `time`, equal to minute_of() for times >= 0
    least: str  # the two-argument scalar minimum ("min" / "LEAST")
    greatest: str
    type_source: str  # a FROM clause with columns `type` and `time`, one row per (attack, type)
    key_order: str  # the ORDER BY of keys, in code point order as Python sorts them


def minute_of(t: float) -> int:
    return int(t / 60)


def rollup_counts(events: Iterable[tuple[float, int, str]]) -> Counter:
    """Rollup increments of a batch from (time, kind, key) events."""
    return Counter((minute_of(t), kind, key) for t, kind, key in events)


def batch_counts(attacks: Iterable[tuple[float, str, str, str]], types: Iterable[tuple[float, str]]) -> Counter:
    """Rollup increments of a batch: attacks as (time, action, path, client_ip), types as (time, type)."""
    events: list[tuple[float, int, str]] = []
    for t, action, path, client_ip in attacks:
        events += ((t, KIND_ACTION, action), (t, KIND_PATH, path), (t, KIND_IP, client_ip))
    events += ((t, KIND_TYPE, type_) for t, type_ in types)
    return rollup_counts(events)


def upsert_rows(counts: Counter) -> list[tuple[int, int, str, int]]:
    """(minute, kind, key, n) in primary-key order: writers that share a store take the rows'
    locks in the same order, so two batches never deadlock on them."""
    return [(m, kind, key, n) for (m, kind, key), n in sorted(counts.items(), key=lambda kv: (kv[0][1], kv[0][0],
                                                                                                kv[0][2]))]


def rebuild_sql(d: Dialect, where: str) -> str:
    """INSERT the rollup of the attacks that match `where` (its parameters once per kind)."""
    return (
        f"INSERT INTO attack_rollup (minute, kind, key, n) "
        f"SELECT {d.minute} m, {KIND_ACTION}, action, count(*) FROM attacks WHERE {where} GROUP BY m, action "
        f"UNION ALL SELECT {d.minute} m, {KIND_PATH}, path, count(*) FROM attacks WHERE {where} GROUP BY m, path "
        f"UNION ALL SELECT {d.minute} m, {KIND_IP}, client_ip, count(*) FROM attacks WHERE {where} "
        f"GROUP BY m, client_ip "
        f"UNION ALL SELECT {d.minute} m, {KIND_TYPE}, type, count(*) FROM {d.type_source} WHERE {where} "
        f"GROUP BY m, type"
    )


def prune_statements(d: Dialect, cutoff: float) -> list[tuple[str, list[Any]]]:
    """Retention deleted every attack with time < cutoff (and maybe some at cutoff): drop the
    rollup before the cutoff's minute and recount that minute from the attacks left."""
    edge = minute_of(cutoff)
    p = d.param
    kinds = f"({', '.join(map(str, KINDS))})"
    lo, hi = edge * 60 - 1, edge * 60 + 61  # a little wider, then exact on the minute expression
    where = f"time >= {p} AND time < {p} AND {d.minute} = {p}"
    return [
        (f"DELETE FROM attack_rollup WHERE kind IN {kinds} AND minute < {p}", [edge]),
        (f"DELETE FROM attack_rollup WHERE kind IN {kinds} AND minute = {p}", [edge]),
        (rebuild_sql(d, where), [lo, hi, edge] * 4),
    ]


def nice_bucket_seconds(span: float, buckets: int) -> int:
    wanted = span / buckets
    for s in _NICE_SECONDS:
        if s >= wanted:
            return s
    return 86400 * math.ceil(wanted / 86400)


class StatsPlan:
    """The queries for [since, until) and the Stats made of their rows; run every query inside
    one read transaction: `counts` first (feed each one's rows to `add`), then `tops`."""

    def __init__(self, d: Dialect, since: float, until: float, buckets: int) -> None:
        self.d = d
        self.bs = bs = nice_bucket_seconds(until - since, buckets)
        self.start0 = start0 = math.floor(since / bs) * bs
        self.n = n = max(1, math.ceil((until - start0) / bs))
        self.series = [StatsBucket(start=float(start0 + i * bs), by_type={}, by_action={}) for i in range(n)]
        self.by_action: Counter = Counter()
        self.by_type: Counter = Counter()
        p = d.param
        # Whole minutes come from the rollup, when buckets are whole minutes too; the attacks at
        # both ends are read directly. Minute membership is decided by the same expression the
        # rollup used, and the end ranges are a second wider, so no float rounding counts a row
        # twice or never.
        m0, m1 = (math.ceil(since / 60), math.floor(until / 60)) if bs % 60 == 0 else (0, 0)
        if m1 > m0:
            ranges = [(since, min(until, m0 * 60 + 1)), (max(since, m1 * 60 - 1), until)]
            self.raw_where = (f"({' OR '.join(f'(time >= {p} AND time < {p})' for _ in ranges)}) "
                              f"AND NOT ({d.minute} >= {p} AND {d.minute} < {p})")
            self.raw_args: list[Any] = [*ranges[0], *ranges[1], m0, m1]
        else:
            m0 = m1 = 0
            self.raw_where, self.raw_args = f"time >= {p} AND time < {p}", [since, until]
        self.m0, self.m1 = m0, m1

    def counts(self) -> list[tuple[str, str, list[Any]]]:
        """(field, sql, args): rows of (bucket, key, count) for by_action and by_type."""
        d, p, n = self.d, self.d.param, self.n
        raw_bucket = f"{d.least}({d.greatest}({d.truncate.format(f'(time - {p}) / {p}')}, 0), {n - 1})"
        rollup_bucket = f"{d.least}({d.greatest}({d.truncate.format(f'(minute * 60 - {p}) / {p}')}, 0), {n - 1})"
        out = []
        for kind, source, column, field in ((KIND_ACTION, "attacks", "action", "by_action"),
                                            (KIND_TYPE, d.type_source, "type", "by_type")):
            out.append((field, f"SELECT {raw_bucket} b, {column} k, count(*) c FROM {source} WHERE {self.raw_where} "
                               "GROUP BY b, k", [self.start0, self.bs, *self.raw_args]))
            if self.m1 > self.m0:
                out.append((field, f"SELECT {rollup_bucket} b, key k, sum(n) c FROM attack_rollup "
                                   f"WHERE kind = {p} AND minute >= {p} AND minute < {p} GROUP BY b, k",
                            [self.start0, self.bs, kind, self.m0, self.m1]))
        return out

    def add(self, field: str, rows: Iterable[tuple[int, str, int]]) -> None:
        totals = self.by_action if field == "by_action" else self.by_type
        for b, key, c in rows:
            bucket: dict[str, int] = getattr(self.series[b], field)
            bucket[key] = bucket.get(key, 0) + int(c)
            totals[key] += int(c)

    def tops(self) -> list[tuple[str, str, list[Any]]]:
        """(field, sql, args): rows of (key, count), the top paths and the top client IPs."""
        p = self.d.param
        out = []
        for kind, column, field in ((KIND_PATH, "path", "top_paths"), (KIND_IP, "client_ip", "top_ips")):
            inner = f"SELECT {column} k, 1 c FROM attacks WHERE {self.raw_where}"
            args: list[Any] = list(self.raw_args)
            if self.m1 > self.m0:
                inner += f" UNION ALL SELECT key, n FROM attack_rollup WHERE kind = {p} AND minute >= {p} AND minute < {p}"
                args += [kind, self.m0, self.m1]
            out.append((field, f"SELECT k, sum(c) s FROM ({inner}) u GROUP BY k ORDER BY s DESC, {self.d.key_order} "
                               f"LIMIT {TOP_N}", args))
        return out

    def result(self, tops: dict[str, Iterable[tuple[str, int]]]) -> Stats:
        return Stats(
            total=sum(self.by_action.values()),
            by_type=dict(sorted(self.by_type.items(), key=lambda kv: (-kv[1], kv[0]))),
            by_action=dict(sorted(self.by_action.items())),
            series=self.series, bucket_seconds=self.bs,
            top_paths=[(k, int(s)) for k, s in tops["top_paths"]], top_ips=[(k, int(s)) for k, s in tops["top_ips"]],
        )
