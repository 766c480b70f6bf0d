"""The PostgreSQL attack store: one database that several nodes share (`db: postgresql://...`).

Like the SQLite store, nothing here blocks the event loop and the hot path never waits:
`add_attack` and `set_response_status` only put an item on a bounded queue (full = the write is
dropped and counted). One writer task takes items in batches (up to `batch_max`, or what
arrived within `flush_interval` of the first) and writes each batch in one transaction. A batch
that fails because the server cannot be reached is tried again a few times, then counted as a
write error and lost (the queue behind it stays bounded). Reads and the awaited writes (IP
entries, settings, sessions, retention) use a small psycopg connection pool.

Several nodes: ids come from one sequence, so pages and cursors are the same on every node; a
change to the shared rules (IP lists, mode settings) notifies every node in its transaction
(node/store/postgres_notify.py); retention runs on one node at a time (an advisory lock).
Response statuses that overtake their attack wait as in the SQLite store (node/store/pending.py);
a node sees only its own pending statuses, which is what it needs: the connector sends a
request and its response to the same node.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from node.rules.ip_lists import parse_list_name
from node.store import filters, postgres_query
from node.store.base import (
    CHANGE_EXCEPTIONS,
    CHANGE_IP_LISTS,
    CHANGE_MODES,
    AttackFilter,
    AttackPage,
    AttackRecord,
    ExceptionRule,
    IPEntry,
    ListName,
    ModeSettings,
    OnChange,
    SessionRecord,
    Stats,
    Store,
    StoreError,
    StoreGauges,
)
from node.store.filters import decode_cursor, encode_cursor
from node.store.location import describe
from node.store.pending import PendingStatuses
from node.store.postgres_notify import ChangeListener, notify
from node.store.postgres_schema import migrate
from node.store.records import (
    EXCEPTION_COLUMNS,
    attack_values,
    check_id,
    exception_from_row,
    exception_values,
    mode_settings_from_json,
    mode_settings_to_json,
    record_from_values,
    storable,
    with_id,
)
from node.store.stats_plan import batch_counts, prune_statements, upsert_rows

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

QUEUE_MAX = 100_000  # queued writes; beyond it add_attack drops and counts
MAX_PAGE = 1000  # largest list_attacks limit
MAX_BUCKETS = 1000
MAX_TIME = 1e11  # unix seconds, as the SQLite store bounds it
COUNT_BUDGET = 0.03  # seconds a page may spend counting its total; beyond it total is None
PROBE_TIMEOUT = 2.0  # seconds writable() waits
POOL_MAX = 4  # connections for reads and awaited writes (the writer and the listener have their own)
POOL_TIMEOUT = 5.0  # seconds a read waits for a pooled connection before it fails
CONNECT_TIMEOUT = 5  # seconds, libpq's connect_timeout
STARTUP_WAIT = 30.0  # seconds open() waits for a server that refuses connections or is starting up
# What libpq says while a server is not up yet (a refusal, a starting or recovering server); a
# wrong password or database name is no reason to wait.
_NOT_UP_YET = re.compile(r"Connection refused|starting up|in recovery mode|shutting down|No such file or directory",
                         re.IGNORECASE)
BATCH_RETRIES = 3  # tries of a batch whose connection failed, before it is lost
BATCH_RETRY_DELAY = 0.5  # seconds between them
# pg_try_advisory_xact_lock key for retention: one node deletes, the others skip the round.
RETENTION_LOCK = 0x77616C6C61726E
MODE_SETTINGS_KEY = "mode_settings"
_INSERT_COLUMNS = ("time", "request_id", "client_ip", "ip_key", "host", "host_key", "method", "path", "path_lc",
                   "action", "mode", "instance", "node_instance", "response_status", "request_excerpt", "reason",
                   "types", "hits")
_INSERT_ATTACK = (f"INSERT INTO attacks ({', '.join(_INSERT_COLUMNS)}) "
                  f"VALUES ({', '.join(['%s'] * len(_INSERT_COLUMNS))})")
STATUS_COLUMN = _INSERT_COLUMNS.index("response_status")
_ACTION, _PATH, _CLIENT_IP, _TYPES = (_INSERT_COLUMNS.index(c) for c in ("action", "path", "client_ip", "types"))
_UPSERT_ROLLUP = ("INSERT INTO attack_rollup (minute, kind, key, n) VALUES (%s, %s, %s, %s) "
                  "ON CONFLICT (kind, minute, key) DO UPDATE SET n = attack_rollup.n + excluded.n")


@dataclass(slots=True)
class _AddAttack:
    record: AttackRecord


@dataclass(slots=True)
class _SetStatus:
    request_id: str
    status: int


@dataclass(slots=True)
class _Flush:
    future: asyncio.Future[None]


_STOP = object()


_BIGINT_MIN, _BIGINT_MAX = -2**63, 2**63 - 1  # an id outside names no row (and must not reach the server)
_EXCEPTION_KEY_SQL = ("coalesce(rule_id, '') = %s AND coalesce(attack_type, '') = %s AND coalesce(host, '') = %s "
                      "AND coalesce(path_prefix, '') = %s AND coalesce(location, '') = %s")


async def _exception_id_by_key(conn: psycopg.AsyncConnection, rule: ExceptionRule) -> int | None:
    cur = await conn.execute(f"SELECT id FROM exceptions WHERE {_EXCEPTION_KEY_SQL}",
                             tuple(_text(v or "") for v in rule.key))
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def _insert_exception(conn: psycopg.AsyncConnection, rule: ExceptionRule) -> ExceptionRule:
    cur = await conn.execute(
        "INSERT INTO exceptions (rule_id, attack_type, host, path_prefix, location, comment, created_by, created_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id", tuple(_text(v) for v in exception_values(rule)))
    row = await cur.fetchone()
    assert row is not None
    return with_id(rule, int(row[0]))


async def _prune_rollup(conn: psycopg.AsyncConnection, cutoff: float) -> None:
    for statement, args in prune_statements(postgres_query.DIALECT, cutoff):
        await conn.execute(statement, args)


def _text(value: Any) -> Any:
    """PostgreSQL's text cannot hold NUL, which a request may carry (a path, an excerpt): it is
    stored as the visible escape `\\x00` rather than failing the whole batch."""
    return value.replace("\x00", "\\x00") if isinstance(value, str) and "\x00" in value else value


def _attack_params(record: AttackRecord) -> tuple:
    """INSERT parameters in _INSERT_ATTACK's order; ValueError/TypeError for a malformed record."""
    v = attack_values(record)
    types = sorted({_text(str(h.type)) for h in record.hits})
    (t, request_id, client_ip, ip_key, host, method, path, path_lc, action, mode, instance, node_instance,
     response_status, excerpt, reason, hits) = (_text(x) for x in v)
    return (t, request_id, client_ip, ip_key, host, postgres_query.ascii_lower(host), method, path, path_lc, action,
            mode, instance, node_instance, response_status, excerpt, reason, types, hits)


class PostgresStore(Store):
    shared = True

    def __init__(self, dsn: str, *, batch_max: int = 500, flush_interval: float = 0.05,
                 queue_max: int = QUEUE_MAX, pool_max: int = POOL_MAX) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be >= 1")
        if flush_interval < 0:
            raise ValueError("flush_interval must be >= 0")
        self.dsn = dsn
        self.batch_max = batch_max
        self.flush_interval = flush_interval
        self.queue_max = queue_max
        self.pool_max = pool_max
        self._queue: asyncio.Queue[object] | None = None
        self._pool: AsyncConnectionPool | None = None
        self._writer: asyncio.Task[None] | None = None
        self._listeners: list[ChangeListener] = []
        self._pending = PendingStatuses()  # the writer task only
        self._open = False
        self._closing = False
        # Counters for metrics and tests.
        self.dropped = 0  # writes refused because the queue was full or the store closed
        self.write_errors = 0  # batches that failed to commit
        self.lost_writes = 0  # queued writes in those batches
        self.bad_records = 0  # malformed records skipped
        self.attacks_written = 0

    def __repr__(self) -> str:
        return f"PostgresStore({describe(self.dsn)!r})"

    @property
    def pending_evicted(self) -> int:
        return self._pending.evicted

    # -- lifecycle

    async def open(self) -> None:
        if self._open:
            return
        where = describe(self.dsn)
        found = await self._migrate_when_up(where)
        # check: a pooled connection the server ended (a restart, a failover) is replaced before
        # use, so the first console read after a restart does not fail.
        pool = AsyncConnectionPool(self.dsn, min_size=1, max_size=self.pool_max, open=False, timeout=POOL_TIMEOUT,
                                   kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
                                   check=AsyncConnectionPool.check_connection, name="wallarm-store")
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
        except (psycopg.Error, PoolTimeout) as err:
            await pool.close()
            raise StoreError(f"cannot open the attack store {where}: {err}") from err
        self._pool = pool
        self._queue = asyncio.Queue(maxsize=self.queue_max)
        self._writer = asyncio.create_task(self._writer_main(), name="store-writer")
        self._open = True
        self._closing = False
        log.info("attack store: PostgreSQL %s (schema found at version %d)", where, found)

    async def _migrate_when_up(self, where: str) -> int:
        """Migrate, waiting up to STARTUP_WAIT for a server that is not up yet (started beside
        the node, e.g. by compose); any other failure is reported at once."""
        deadline = time.monotonic() + STARTUP_WAIT
        delay = 0.25
        while True:
            try:
                return await asyncio.to_thread(self._migrate)
            except psycopg.OperationalError as err:
                if not _NOT_UP_YET.search(str(err)) or time.monotonic() + delay > deadline:
                    raise StoreError(f"cannot open the attack store {where}: {err}") from err
                log.warning("attack store %s is not up yet (%s); trying again in %.1fs", where,
                            " ".join(str(err).split())[:200], delay)
            except (psycopg.Error, RuntimeError) as err:
                raise StoreError(f"cannot open the attack store {where}: {err}") from err
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    def _migrate(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            return migrate(conn)

    async def close(self) -> None:
        if not self._open or self._closing:
            return
        self._closing = True
        for listener in self._listeners:
            await listener.stop()
        self._listeners.clear()
        await self.flush()
        assert self._queue is not None
        await self._queue.put(_STOP)
        if self._writer is not None:
            await self._writer
        if self._pool is not None:
            await self._pool.close()
        self._open = False

    async def flush(self) -> None:
        if not self._open or self._queue is None or self._writer is None or self._writer.done():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Flush(fut))
        await fut

    async def writable(self) -> bool:
        if not self._open or self._closing or self._writer is None or self._writer.done():
            return False
        try:
            await asyncio.wait_for(self._write(lambda conn: conn.execute(
                "INSERT INTO settings (key, value) VALUES ('_probe', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (repr(time.time()),))), PROBE_TIMEOUT)
            return True
        except Exception as err:  # noqa: BLE001 - the server is down, read-only, out of disk
            log.warning("attack store not writable: %s", err)
            return False

    def gauges(self) -> StoreGauges:
        return StoreGauges(queue_depth=self._queue.qsize() if self._queue is not None else 0,
                           dropped_writes=self.dropped, write_errors=self.write_errors,
                           lost_writes=self.lost_writes, bad_records=self.bad_records)

    def watch_changes(self, on_change: OnChange) -> None:
        if not self._open:
            raise StoreError("the attack store is closed")
        listener = ChangeListener(self.dsn, on_change)
        self._listeners.append(listener)
        listener.start()

    # -- attacks: writes

    def add_attack(self, record: AttackRecord) -> None:
        self._enqueue(_AddAttack(record))

    def set_response_status(self, request_id: str, status: int) -> None:
        self._enqueue(_SetStatus(request_id, status))

    def _enqueue(self, item: object) -> None:
        if not self._open or self._closing or self._queue is None:
            self._drop("attack store is closed")
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._drop(f"attack store queue full ({self.queue_max})")

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if self.dropped % 1000 == 1:
            log.warning("%s: %d writes dropped so far", why, self.dropped)

    # -- attacks: reads

    async def list_attacks(self, flt: AttackFilter, cursor: str | None = None, limit: int = 50) -> AttackPage:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE}")
        pf = filters.parse_filter(flt)
        after = None if cursor is None else decode_cursor(cursor)

        async def query(conn: psycopg.AsyncConnection) -> AttackPage:
            rows = await postgres_query.page_rows(conn, pf, after, limit + 1)
            total = None
            if after is None:  # the first page says how many there are, when that is cheap
                total = await postgres_query.count_within_budget(conn, pf, COUNT_BUDGET)
            items = [record_from_values(r[0], tuple(r[1:])) for r in rows[:limit]]
            more = len(rows) > limit
            next_cursor = encode_cursor(items[-1].time, items[-1].id) if more else None  # type: ignore[arg-type]
            return AttackPage(items=items, next_cursor=next_cursor, total=total)

        return await self._read(query, snapshot=True)

    async def get_attack(self, attack_id: int) -> AttackRecord | None:
        check_id(attack_id, "attack id")
        if not _BIGINT_MIN <= attack_id <= _BIGINT_MAX:
            return None

        async def query(conn: psycopg.AsyncConnection) -> AttackRecord | None:
            cur = await conn.execute(f"SELECT {postgres_query.ATTACK_COLUMNS} FROM attacks WHERE id = %s",
                                     (attack_id,))
            row = await cur.fetchone()
            return None if row is None else record_from_values(row[0], tuple(row[1:]))

        return await self._read(query)

    async def stats(self, since: float, until: float, buckets: int = 48) -> Stats:
        for name, value in (("since", since), ("until", until)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite unix time in seconds, not {value!r}")
        if until <= since:
            raise ValueError("until must be later than since")
        if since < 0 or until > MAX_TIME:
            raise ValueError(f"since and until must lie between 0 and {MAX_TIME:.0f} (unix seconds)")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= MAX_BUCKETS:
            raise ValueError(f"buckets must be an integer from 1 to {MAX_BUCKETS}")
        return await self._read(lambda conn: postgres_query.compute_stats(conn, float(since), float(until), buckets),
                                snapshot=True)

    async def apply_retention(self, max_age_seconds: float | None, max_count: int | None) -> int:
        if max_age_seconds is not None and (not isinstance(max_age_seconds, int | float)
                                            or not max_age_seconds >= 0):
            raise ValueError("max_age_seconds must be a number >= 0 or None")
        if max_count is not None and (isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 0):
            raise ValueError("max_count must be an integer >= 0 or None")
        cutoff = None if max_age_seconds is None else time.time() - max_age_seconds

        async def delete(conn: psycopg.AsyncConnection) -> int:
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (RETENTION_LOCK,))
            row = await cur.fetchone()
            if not row or not row[0]:
                log.debug("retention: another node is applying it")
                return 0
            deleted = 0
            if cutoff is not None:
                deleted += (await conn.execute("DELETE FROM attacks WHERE time < %s", (cutoff,))).rowcount
                await _prune_rollup(conn, cutoff)
            if max_count == 0:
                deleted += (await conn.execute("DELETE FROM attacks")).rowcount
                await conn.execute("DELETE FROM attack_rollup")
            elif max_count is not None:
                cur = await conn.execute("SELECT time, id FROM attacks ORDER BY time DESC, id DESC LIMIT 1 OFFSET %s",
                                         (max_count - 1,))
                edge = await cur.fetchone()
                if edge is not None:  # (time, id) of the oldest row to keep
                    deleted += (await conn.execute("DELETE FROM attacks WHERE (time, id) < (%s, %s)",
                                                   tuple(edge))).rowcount
                    await _prune_rollup(conn, edge[0])
            return deleted

        deleted = await self._write(delete)
        if deleted:
            log.info("attack store retention deleted %d attacks", deleted)
        return deleted

    # -- IP lists

    async def list_ip_entries(self, list_name: ListName | None = None, include_expired: bool = False) -> list[IPEntry]:
        if list_name is not None:
            parse_list_name(list_name)
        where: list[str] = []
        params: list[Any] = []
        if list_name is not None:
            where.append("list = %s")
            params.append(list_name)
        if not include_expired:
            where.append("(expires_at IS NULL OR expires_at > %s)")
            params.append(time.time())
        query = ("SELECT id, list, network, expires_at, comment, created_at FROM ip_entries WHERE "
                 + (" AND ".join(where) or "true") + " ORDER BY list, id")

        async def read(conn: psycopg.AsyncConnection) -> list[IPEntry]:
            cur = await conn.execute(query, params)
            return [IPEntry(id=i, list=lst, network=net, expires_at=exp, comment=com, created_at=cre)
                    for i, lst, net, exp, com, cre in await cur.fetchall()]

        return await self._read(read)

    async def add_ip_entry(self, entry: IPEntry) -> IPEntry:
        """Adds the entry, or updates expiry and comment if the network is already on that list."""
        if not isinstance(entry, IPEntry):
            raise ValueError(f"not an IPEntry: {type(entry).__name__}")
        # An IPEntry validated and normalised itself when it was built (node/rules/ip_lists.py).
        list_name, network, expires, comment, created = (entry.list, entry.network, entry.expires_at,
                                                         _text(entry.comment), entry.created_at)

        async def upsert(conn: psycopg.AsyncConnection) -> IPEntry:
            cur = await conn.execute(
                "INSERT INTO ip_entries (list, network, expires_at, comment, created_at) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (list, network) DO UPDATE SET expires_at = excluded.expires_at, "
                "comment = excluded.comment RETURNING id, created_at",
                (list_name, network, expires, comment, created))
            row = await cur.fetchone()
            assert row is not None
            await notify(conn, CHANGE_IP_LISTS)
            return IPEntry(list=list_name, network=network, expires_at=expires, comment=entry.comment,
                           created_at=row[1], id=row[0])

        return await self._write(upsert)

    async def delete_ip_entry(self, entry_id: int) -> bool:
        check_id(entry_id, "entry id")
        if not _BIGINT_MIN <= entry_id <= _BIGINT_MAX:
            return False

        async def delete(conn: psycopg.AsyncConnection) -> bool:
            gone = (await conn.execute("DELETE FROM ip_entries WHERE id = %s", (entry_id,))).rowcount > 0
            if gone:
                await notify(conn, CHANGE_IP_LISTS)
            return gone

        return await self._write(delete)

    # -- exceptions

    async def list_exceptions(self) -> list[ExceptionRule]:
        async def read(conn: psycopg.AsyncConnection) -> list[ExceptionRule]:
            cur = await conn.execute(f"SELECT {EXCEPTION_COLUMNS} FROM exceptions ORDER BY id")
            return [exception_from_row(r) for r in await cur.fetchall()]

        return await self._read(read)

    async def exceptions_version(self) -> object:
        # Identity ids are never reused: an exception added since keeps the highest id above the
        # old one; without one, a deletion lowers the count.
        async def read(conn: psycopg.AsyncConnection) -> object:
            cur = await conn.execute("SELECT count(*), max(id) FROM exceptions")
            return tuple(await cur.fetchone())  # type: ignore[arg-type]

        return await self._read(read)

    async def get_exception(self, exception_id: int) -> ExceptionRule | None:
        check_id(exception_id, "exception id")
        if not _BIGINT_MIN <= exception_id <= _BIGINT_MAX:
            return None

        async def read(conn: psycopg.AsyncConnection) -> ExceptionRule | None:
            cur = await conn.execute(f"SELECT {EXCEPTION_COLUMNS} FROM exceptions WHERE id = %s", (exception_id,))
            row = await cur.fetchone()
            return None if row is None else exception_from_row(row)

        return await self._read(read)

    async def add_exception(self, rule: ExceptionRule) -> ExceptionRule:
        if not isinstance(rule, ExceptionRule):
            raise ValueError(f"not an ExceptionRule: {type(rule).__name__}")

        async def insert(conn: psycopg.AsyncConnection) -> ExceptionRule:
            existing = await _exception_id_by_key(conn, rule)
            if existing is not None:
                raise ValueError(f"exception {existing} already excepts {rule.describe()}")
            try:
                stored = await _insert_exception(conn, rule)
            except psycopg.errors.UniqueViolation:  # another node added the same one just now
                raise ValueError(f"an exception already excepts {rule.describe()}") from None
            await notify(conn, CHANGE_EXCEPTIONS)
            return stored

        return await self._write(insert)

    async def delete_exception(self, exception_id: int) -> bool:
        check_id(exception_id, "exception id")
        if not _BIGINT_MIN <= exception_id <= _BIGINT_MAX:
            return False

        async def delete(conn: psycopg.AsyncConnection) -> bool:
            gone = (await conn.execute("DELETE FROM exceptions WHERE id = %s", (exception_id,))).rowcount > 0
            if gone:
                await notify(conn, CHANGE_EXCEPTIONS)
            return gone

        return await self._write(delete)

    async def import_exceptions(self, rules: list[ExceptionRule], replace: bool) -> tuple[int, int]:
        for rule in rules:
            if not isinstance(rule, ExceptionRule):
                raise ValueError(f"not an ExceptionRule: {type(rule).__name__}")

        async def apply(conn: psycopg.AsyncConnection) -> tuple[int, int]:
            # Two nodes importing at once must not both add the same key: one import at a time.
            await conn.execute("LOCK TABLE exceptions IN SHARE ROW EXCLUSIVE MODE")
            keep: set[int] = set()
            added = 0
            for rule in rules:
                existing = await _exception_id_by_key(conn, rule)
                if existing is None:
                    existing = (await _insert_exception(conn, rule)).id
                    added += 1
                keep.add(existing)  # type: ignore[arg-type]
            deleted = 0
            if replace:
                cur = await conn.execute("DELETE FROM exceptions WHERE NOT (id = ANY(%s))", (list(keep),))
                deleted = cur.rowcount
            if added or deleted:
                await notify(conn, CHANGE_EXCEPTIONS)
            return added, deleted

        return await self._write(apply)  # one transaction: all or nothing

    async def add_excepted_requests(self, counts: dict[int, int], at: float) -> None:
        rows = [(int(n), float(at), int(i)) for i, n in counts.items() if n > 0 and _BIGINT_MIN <= i <= _BIGINT_MAX]
        if not rows:
            return

        async def update(conn: psycopg.AsyncConnection) -> None:
            async with conn.cursor() as cur:
                await cur.executemany("UPDATE exceptions SET excepted_requests = excepted_requests + %s, "
                                      "last_excepted_at = %s WHERE id = %s", rows)

        await self._write(update)

    # -- node settings

    async def load_mode_settings(self) -> ModeSettings | None:
        async def read(conn: psycopg.AsyncConnection) -> str | None:
            cur = await conn.execute("SELECT value FROM settings WHERE key = %s", (MODE_SETTINGS_KEY,))
            row = await cur.fetchone()
            return None if row is None else row[0]

        text = await self._read(read)
        if text is None:
            return None
        try:
            return mode_settings_from_json(text)
        except (ValueError, TypeError, KeyError) as err:
            log.error("attack store: ignoring unreadable saved mode settings (%s): %.200r", err, text)
            return None

    async def save_mode_settings(self, settings: ModeSettings) -> None:
        text = _text(mode_settings_to_json(settings))

        async def save(conn: psycopg.AsyncConnection) -> None:
            await conn.execute("INSERT INTO settings (key, value) VALUES (%s, %s) "
                               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (MODE_SETTINGS_KEY, text))
            await notify(conn, CHANGE_MODES)

        await self._write(save)

    # -- console sessions

    async def add_session(self, record: SessionRecord, max_sessions: int) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        now = time.time()

        async def insert(conn: psycopg.AsyncConnection) -> None:
            await conn.execute("DELETE FROM console_sessions WHERE expires_at <= %s", (now,))
            row = await (await conn.execute("SELECT count(*) FROM console_sessions")).fetchone()
            count = int(row[0]) if row else 0
            if count >= max_sessions:  # bounded: the oldest sessions make room
                await conn.execute("DELETE FROM console_sessions WHERE id_hash IN (SELECT id_hash FROM "
                                   "console_sessions ORDER BY created_at LIMIT %s)", (count - max_sessions + 1,))
            await conn.execute(
                "INSERT INTO console_sessions (id_hash, created_at, expires_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (id_hash) DO UPDATE SET created_at = excluded.created_at, expires_at = excluded.expires_at",
                (record.id_hash, record.created_at, record.expires_at))

        await self._write(insert)

    async def get_session(self, id_hash: bytes, now: float) -> SessionRecord | None:
        async def read(conn: psycopg.AsyncConnection) -> SessionRecord | None:
            cur = await conn.execute("SELECT created_at, expires_at FROM console_sessions "
                                     "WHERE id_hash = %s AND expires_at > %s", (id_hash, now))
            row = await cur.fetchone()
            return None if row is None else SessionRecord(id_hash, row[0], row[1])

        return await self._read(read)

    async def renew_session(self, id_hash: bytes, expires_at: float) -> None:
        await self._write(lambda conn: conn.execute(
            "UPDATE console_sessions SET expires_at = %s WHERE id_hash = %s", (expires_at, id_hash)))

    async def delete_session(self, id_hash: bytes) -> bool:
        async def delete(conn: psycopg.AsyncConnection) -> bool:
            return (await conn.execute("DELETE FROM console_sessions WHERE id_hash = %s", (id_hash,))).rowcount > 0

        return await self._write(delete)

    async def sweep_sessions(self, now: float) -> int:
        async def sweep(conn: psycopg.AsyncConnection) -> int:
            return (await conn.execute("DELETE FROM console_sessions WHERE expires_at <= %s", (now,))).rowcount

        return await self._write(sweep)

    # -- plumbing: reads and awaited writes on the pool

    async def _read(self, fn: Callable[[psycopg.AsyncConnection], Awaitable[T]], snapshot: bool = False) -> T:
        """`fn` in a read-only transaction; `snapshot`: one consistent view for all its queries."""
        pool = self._usable_pool()
        try:
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY" if snapshot
                                   else "SET TRANSACTION READ ONLY")
                return await fn(conn)
        except (psycopg.Error, PoolTimeout) as err:
            raise StoreError(f"attack store read failed: {err}") from err

    async def _write(self, fn: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """`fn` in its own transaction (committed when it returns, rolled back when it raises)."""
        pool = self._usable_pool()
        try:
            async with pool.connection() as conn, conn.transaction():
                return await fn(conn)
        except (psycopg.Error, PoolTimeout) as err:
            raise StoreError(f"attack store write failed: {err}") from err

    def _usable_pool(self) -> AsyncConnectionPool:
        if not self._open or self._closing or self._pool is None:
            raise StoreError("the attack store is closed")
        return self._pool

    # -- the writer task

    async def _writer_main(self) -> None:
        conn: psycopg.AsyncConnection | None = None
        try:
            while True:
                batch = await self._next_batch()
                writes = [item for item in batch if isinstance(item, _AddAttack | _SetStatus)]
                if writes:
                    conn = await self._write_batch(conn, writes)
                for item in batch:
                    if isinstance(item, _Flush) and not item.future.done():
                        item.future.set_result(None)
                if batch[-1] is _STOP:
                    return
        finally:
            if conn is not None:
                await conn.close()

    async def _next_batch(self) -> list[object]:
        """Wait for one item, then gather more until batch_max, flush_interval, or an item
        somebody awaits (answer it at once)."""
        assert self._queue is not None
        first = await self._queue.get()
        batch = [first]
        if not isinstance(first, _AddAttack | _SetStatus):
            return batch
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_max:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(item)
            if not isinstance(item, _AddAttack | _SetStatus):
                break
        return batch

    async def _write_batch(self, conn: psycopg.AsyncConnection | None,
                           writes: list[_AddAttack | _SetStatus]) -> psycopg.AsyncConnection | None:
        """Write one batch in one transaction; returns the connection to use next time."""
        steps = self._prepare(writes)
        for attempt in range(1, BATCH_RETRIES + 1):
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True,
                                                                 connect_timeout=CONNECT_TIMEOUT)
                written = await self._run_steps(conn, steps)
                self.attacks_written += written
                return conn
            except psycopg.OperationalError as err:  # the server went away or refused: try again
                log.warning("attack store: a batch of %d writes failed (try %d of %d): %s", len(writes), attempt,
                            BATCH_RETRIES, err)
                if conn is not None:
                    await conn.close()
                conn = None
                if attempt < BATCH_RETRIES:
                    await asyncio.sleep(BATCH_RETRY_DELAY)
            except Exception as err:  # noqa: BLE001 - the data itself: trying again would fail the same way,
                # and the writer must live on
                log.error("attack store: a batch of %d writes failed: %s", len(writes), err)
                break
        self.write_errors += 1
        self.lost_writes += len(writes)
        log.error("attack store: a batch of %d writes was lost", len(writes))
        return conn

    def _prepare(self, writes: list[_AddAttack | _SetStatus]) -> list[tuple[str, Any, str]]:
        """The batch validated once (a retry does not count twice): ("attack", params, request id)
        and ("status", status, request id) in order. Malformed items are counted and skipped."""
        steps: list[tuple[str, Any, str]] = []
        for item in writes:
            try:
                if isinstance(item, _AddAttack):
                    params = _attack_params(item.record)
                    steps.append(("attack", params, params[1]))
                else:
                    steps.append(("status", int(item.status), _text(storable(item.request_id))))
            except (ValueError, TypeError, AttributeError) as err:
                self.bad_records += 1
                log.warning("attack store: skipping a malformed %s: %s",
                            "attack record" if isinstance(item, _AddAttack) else "response status", err)
        return steps

    async def _run_steps(self, conn: psycopg.AsyncConnection, steps: list[tuple[str, Any, str]]) -> int:
        """One transaction, in queue order, as the SQLite writer does it: a status updates the
        attacks stored so far, or waits (pending) for its attack, which takes it when written."""
        written = 0
        rows: list[tuple] = []
        inserted: list[tuple] = []
        async with conn.transaction(), conn.cursor() as cur:
            for kind, value, rid in steps:
                if kind == "attack":
                    if value[STATUS_COLUMN] is None:
                        pending = self._pending.take(rid)
                        if pending is not None:
                            value = value[:STATUS_COLUMN] + (pending,) + value[STATUS_COLUMN + 1:]
                    rows.append(value)
                    continue
                if rows:  # the attacks before this status first: it may be for one of them
                    await cur.executemany(_INSERT_ATTACK, rows)
                    written += len(rows)
                    inserted += rows
                    rows = []
                await cur.execute("UPDATE attacks SET response_status = %s WHERE request_id = %s", (value, rid))
                if cur.rowcount == 0:
                    self._pending.put(rid, value)
            if rows:
                await cur.executemany(_INSERT_ATTACK, rows)
                written += len(rows)
                inserted += rows
            counts = batch_counts(((r[0], r[_ACTION], r[_PATH], r[_CLIENT_IP]) for r in inserted),
                                  ((r[0], t) for r in inserted for t in r[_TYPES]))
            if counts:  # last, so the rollup rows other nodes also update are locked only briefly
                await cur.executemany(_UPSERT_ROLLUP, upsert_rows(counts))
        return written
