"""The SQLite attack store: one WAL file, one writer thread that batches, a small reader pool.

Nothing here blocks the event loop. `add_attack` and `set_response_status` only put an item on
a bounded queue (full queue = the record is dropped and counted, never a stall of the hot path).
The writer thread takes items in batches (up to `batch_max`, or what arrived within
`flush_interval` of the first one) and writes each batch in one transaction. Awaited writes
(IP entries, settings, retention, the readiness probe) go through the same thread, in order,
so there is exactly one writer and no "database is locked". Reads run on read-only connections
in a two-thread pool; WAL lets them proceed while the writer writes.

Response statuses: `set_response_status(rid, status)` updates every stored attack with that
request id. If none is stored yet (the response overtook the attack, which the node may record
later), the status is kept pending (node/store/pending.py) and applied when an attack with that
request id is written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from node.rules.exceptions import ExceptionRule
from node.rules.ip_lists import parse_list_name
from node.store import filters, sqlite_query, sqlite_stats
from node.store.base import (
    AttackFilter,
    AttackPage,
    AttackRecord,
    IPEntry,
    ListName,
    ModeSettings,
    SessionRecord,
    Stats,
    Store,
    StoreError,
    StoreGauges,
)
from node.store.filters import decode_cursor, encode_cursor
from node.store.pending import PendingStatuses
from node.store.records import (
    EXCEPTION_COLUMNS,
    STATUS_INDEX,
    attack_values,
    check_id,
    exception_from_row,
    exception_values,
    mode_settings_from_json,
    mode_settings_to_json,
    record_from_values,
    with_id,
)
from node.store.sqlite_schema import migrate

__all__ = ["SQLiteStore", "decode_cursor", "encode_cursor"]

log = logging.getLogger(__name__)

T = TypeVar("T")

QUEUE_MAX = 100_000  # queued writes; beyond it add_attack drops and counts
MAX_PAGE = 1000  # largest list_attacks limit
MAX_BUCKETS = 1000
MAX_TIME = 1e11  # unix seconds, year 5138: keeps bucket arithmetic in 64-bit integers
COUNT_BUDGET = 0.03  # seconds a page may spend counting its total; beyond it total is None
CACHE_KIB = 16384  # page cache per connection: the hot part of a 100k store's indexes fits
PROBE_TIMEOUT = 2.0  # seconds writable() waits for the writer
BUSY_TIMEOUT_MS = 5000  # another process holding the file (a backup, sqlite3 CLI)
MODE_SETTINGS_KEY = "mode_settings"
_ATTACK_COLUMNS = (
    "id, time, request_id, client_ip, host, method, path, action, mode, instance, node_instance, "
    "response_status, request_excerpt, reason, hits"
)


# ---------------------------------------------------------------------------- queue items

@dataclass(slots=True)
class _AddAttack:
    record: AttackRecord


@dataclass(slots=True)
class _SetStatus:
    request_id: str
    status: int


@dataclass(slots=True)
class _Call:
    """Run `fn(conn)` inside the writer's transaction; its result resolves `future`."""

    fn: Callable[[sqlite3.Connection], Any]
    future: concurrent.futures.Future


@dataclass(slots=True)
class _Flush:
    future: concurrent.futures.Future


_STOP = object()


# ---------------------------------------------------------------------------- row mapping

def _record_from_row(row: sqlite3.Row | tuple) -> AttackRecord:
    return record_from_values(row[0], tuple(row[1:]))


_EXCEPTION_KEY_SQL = ("ifnull(rule_id, '') = ? AND ifnull(attack_type, '') = ? AND ifnull(host, '') = ? "
                      "AND ifnull(path_prefix, '') = ? AND ifnull(location, '') = ?")


def _exception_id_by_key(conn: sqlite3.Connection, rule: ExceptionRule) -> int | None:
    row = conn.execute(f"SELECT id FROM exceptions WHERE {_EXCEPTION_KEY_SQL}",
                       tuple(v or "" for v in rule.key)).fetchone()
    return None if row is None else row[0]


def _insert_exception(conn: sqlite3.Connection, rule: ExceptionRule) -> ExceptionRule:
    # An ExceptionRule validated and normalised itself when it was built (node/rules/exceptions.py).
    row = conn.execute(
        "INSERT INTO exceptions (rule_id, attack_type, host, path_prefix, location, comment, created_by, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        exception_values(rule)).fetchone()
    return with_id(rule, row[0])


# ---------------------------------------------------------------------------- the store

class SQLiteStore(Store):
    def __init__(self, path: str | Path, *, batch_max: int = 500, flush_interval: float = 0.05,
                 queue_max: int = QUEUE_MAX) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be >= 1")
        if flush_interval < 0:
            raise ValueError("flush_interval must be >= 0")
        self.path = Path(path)
        self.batch_max = batch_max
        self.flush_interval = flush_interval
        self._queue: queue.Queue = queue.Queue(maxsize=queue_max)
        self._writer: threading.Thread | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._pending = PendingStatuses()  # writer thread only
        self._open = False
        self._closing = False
        # Counters for metrics and tests (written by one thread each, read anywhere).
        self.dropped = 0  # records refused because the queue was full or the store closed
        self.write_errors = 0  # batches that failed to commit
        self.lost_writes = 0  # queued attack and status writes in those batches
        self.bad_records = 0  # malformed records skipped
        self.attacks_written = 0

    # -- lifecycle

    async def open(self) -> None:
        if self._open:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the directory of the attack store {self.path}: {err}") from err
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._writer = threading.Thread(target=self._writer_main, args=(ready,), name="store-writer", daemon=True)
        self._writer.start()
        try:
            await asyncio.wrap_future(ready)
        except Exception as err:
            await asyncio.to_thread(self._writer.join)
            raise StoreError(f"cannot open the attack store {self.path}: {err}") from err
        self._readers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-reader")
        self._open = True
        self._closing = False

    async def close(self) -> None:
        if not self._open or self._closing:
            return
        self._closing = True
        await self.flush()
        await self._put(_STOP)
        writer = self._writer
        if writer is not None:
            await asyncio.to_thread(writer.join)
        readers = self._readers
        if readers is not None:
            await asyncio.to_thread(readers.shutdown, True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._open = False

    async def flush(self) -> None:
        if not self._open or self._writer is None or not self._writer.is_alive():
            return
        fut: concurrent.futures.Future = concurrent.futures.Future()
        await self._put(_Flush(fut))
        await asyncio.wrap_future(fut)

    async def writable(self) -> bool:
        if not self._open or self._closing or self._writer is None or not self._writer.is_alive():
            return False
        try:
            await asyncio.wait_for(self._write(_probe), PROBE_TIMEOUT)
            return True
        except Exception as err:  # a full disk, a read-only file, a stuck writer
            log.warning("attack store not writable: %s", err)
            return False

    @property
    def pending_evicted(self) -> int:
        """Pending statuses that never met their attack."""
        return self._pending.evicted

    def gauges(self) -> StoreGauges:
        return StoreGauges(queue_depth=self._queue.qsize(), dropped_writes=self.dropped,
                           write_errors=self.write_errors, lost_writes=self.lost_writes,
                           bad_records=self.bad_records)

    # -- attacks: writes

    def add_attack(self, record: AttackRecord) -> None:
        self._enqueue(_AddAttack(record))

    def set_response_status(self, request_id: str, status: int) -> None:
        self._enqueue(_SetStatus(request_id, status))

    def _enqueue(self, item: object) -> None:
        if not self._open or self._closing:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("attack store is closed: %d writes dropped so far", self.dropped)
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("attack store queue full (%d): %d writes dropped so far", self._queue.maxsize, self.dropped)

    # -- attacks: reads

    async def list_attacks(self, flt: AttackFilter, cursor: str | None = None, limit: int = 50) -> AttackPage:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE}")
        pf = filters.parse_filter(flt)
        after = None if cursor is None else decode_cursor(cursor)

        def query(conn: sqlite3.Connection) -> AttackPage:
            conn.execute("BEGIN")  # one snapshot for the page and its count
            try:
                rows = sqlite_query.page_query(conn, pf, _ATTACK_COLUMNS, after, limit + 1)
                total = None
                if after is None:  # the first page says how many there are, when that is cheap
                    total = sqlite_query.count_within_budget(conn, *sqlite_query.count_query(pf), COUNT_BUDGET)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
            items = [_record_from_row(r) for r in rows[:limit]]
            more = len(rows) > limit
            next_cursor = encode_cursor(items[-1].time, items[-1].id) if more else None  # type: ignore[arg-type]
            return AttackPage(items=items, next_cursor=next_cursor, total=total)

        return await self._read(query)

    async def get_attack(self, attack_id: int) -> AttackRecord | None:
        check_id(attack_id, "attack id")

        def query(conn: sqlite3.Connection) -> AttackRecord | None:
            row = conn.execute(f"SELECT {_ATTACK_COLUMNS} FROM attacks WHERE id = ?", (attack_id,)).fetchone()
            return None if row is None else _record_from_row(row)

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

        def query(conn: sqlite3.Connection) -> Stats:
            conn.execute("BEGIN")  # one consistent snapshot for every number
            try:
                return sqlite_stats.compute_stats(conn, float(since), float(until), buckets)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

        return await self._read(query)

    async def apply_retention(self, max_age_seconds: float | None, max_count: int | None) -> int:
        if max_age_seconds is not None and (not isinstance(max_age_seconds, int | float)
                                            or not max_age_seconds >= 0):
            raise ValueError("max_age_seconds must be a number >= 0 or None")
        if max_count is not None and (isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 0):
            raise ValueError("max_count must be an integer >= 0 or None")
        cutoff = None if max_age_seconds is None else time.time() - max_age_seconds

        def delete(conn: sqlite3.Connection) -> int:
            deleted = 0
            if cutoff is not None:
                conn.execute("DELETE FROM attack_types WHERE time < ?", (cutoff,))
                deleted += conn.execute("DELETE FROM attacks WHERE time < ?", (cutoff,)).rowcount
                sqlite_stats.prune_before(conn, cutoff)
            if max_count is not None:
                if max_count == 0:
                    conn.execute("DELETE FROM attack_types")
                    conn.execute("DELETE FROM attack_rollup")
                    deleted += conn.execute("DELETE FROM attacks").rowcount
                else:
                    edge = conn.execute("SELECT time, id FROM attacks ORDER BY time DESC, id DESC LIMIT 1 OFFSET ?",
                                        (max_count - 1,)).fetchone()
                    if edge is not None:  # (time, id) of the oldest row to keep
                        t, attack_id = edge
                        conn.execute("DELETE FROM attack_types WHERE time < ? OR (time = ? AND attack_id < ?)",
                                     (t, t, attack_id))
                        deleted += conn.execute("DELETE FROM attacks WHERE time < ? OR (time = ? AND id < ?)",
                                                (t, t, attack_id)).rowcount
                        sqlite_stats.prune_before(conn, t)
            return deleted

        deleted = await self._write(delete)
        if deleted:
            log.info("attack store retention deleted %d attacks", deleted)
        return deleted

    # -- IP lists

    async def list_ip_entries(self, list_name: ListName | None = None, include_expired: bool = False) -> list[IPEntry]:
        if list_name is not None:
            parse_list_name(list_name)
        where, params = [], []
        if list_name is not None:
            where.append("list = ?")
            params.append(list_name)
        if not include_expired:
            where.append("(expires_at IS NULL OR expires_at > ?)")
            params.append(time.time())
        sql = ("SELECT id, list, network, expires_at, comment, created_at FROM ip_entries WHERE "
               + (" AND ".join(where) or "1") + " ORDER BY list, id")

        def query(conn: sqlite3.Connection) -> list[IPEntry]:
            return [IPEntry(id=i, list=lst, network=net, expires_at=exp, comment=com, created_at=cre)
                    for i, lst, net, exp, com, cre in conn.execute(sql, params)]

        return await self._read(query)

    async def add_ip_entry(self, entry: IPEntry) -> IPEntry:
        """Adds the entry, or updates expiry and comment if the network is already on that list."""
        if not isinstance(entry, IPEntry):
            raise ValueError(f"not an IPEntry: {type(entry).__name__}")
        # An IPEntry validated and normalised itself when it was built (node/rules/ip_lists.py).
        list_name, network, expires, comment, created = (entry.list, entry.network, entry.expires_at,
                                                         entry.comment, entry.created_at)

        def upsert(conn: sqlite3.Connection) -> IPEntry:
            row = conn.execute(
                "INSERT INTO ip_entries (list, network, expires_at, comment, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (list, network) DO UPDATE SET expires_at = excluded.expires_at, "
                "comment = excluded.comment RETURNING id, created_at",
                (list_name, network, expires, comment, created)).fetchone()
            return IPEntry(list=list_name, network=network, expires_at=expires, comment=comment,  # type: ignore[arg-type]
                           created_at=row[1], id=row[0])

        return await self._write(upsert)

    async def delete_ip_entry(self, entry_id: int) -> bool:
        check_id(entry_id, "entry id")
        return await self._write(lambda conn: conn.execute("DELETE FROM ip_entries WHERE id = ?",
                                                           (entry_id,)).rowcount > 0)

    # -- exceptions

    async def list_exceptions(self) -> list[ExceptionRule]:
        return await self._read(lambda conn: [exception_from_row(r) for r in conn.execute(
            f"SELECT {EXCEPTION_COLUMNS} FROM exceptions ORDER BY id")])

    async def exceptions_version(self) -> object:
        # Ids are never reused (AUTOINCREMENT): an exception added since keeps the highest id
        # above the old one; without one, a deletion lowers the count.
        return await self._read(lambda conn: tuple(conn.execute("SELECT count(*), max(id) FROM exceptions").fetchone()))

    async def get_exception(self, exception_id: int) -> ExceptionRule | None:
        check_id(exception_id, "exception id")

        def query(conn: sqlite3.Connection) -> ExceptionRule | None:
            row = conn.execute(f"SELECT {EXCEPTION_COLUMNS} FROM exceptions WHERE id = ?", (exception_id,)).fetchone()
            return None if row is None else exception_from_row(row)

        return await self._read(query)

    async def add_exception(self, rule: ExceptionRule) -> ExceptionRule:
        if not isinstance(rule, ExceptionRule):
            raise ValueError(f"not an ExceptionRule: {type(rule).__name__}")

        def insert(conn: sqlite3.Connection) -> ExceptionRule:
            existing = _exception_id_by_key(conn, rule)
            if existing is not None:
                raise ValueError(f"exception {existing} already excepts {rule.describe()}")
            return _insert_exception(conn, rule)

        return await self._write(insert)

    async def delete_exception(self, exception_id: int) -> bool:
        check_id(exception_id, "exception id")
        return await self._write(lambda conn: conn.execute("DELETE FROM exceptions WHERE id = ?",
                                                           (exception_id,)).rowcount > 0)

    async def import_exceptions(self, rules: list[ExceptionRule], replace: bool) -> tuple[int, int]:
        for rule in rules:
            if not isinstance(rule, ExceptionRule):
                raise ValueError(f"not an ExceptionRule: {type(rule).__name__}")

        def apply(conn: sqlite3.Connection) -> tuple[int, int]:
            keep: set[int] = set()
            added = 0
            for rule in rules:
                existing = _exception_id_by_key(conn, rule)
                if existing is None:
                    existing = _insert_exception(conn, rule).id
                    added += 1
                keep.add(existing)  # type: ignore[arg-type]
            deleted = 0
            if replace:
                stale = [i for (i,) in conn.execute("SELECT id FROM exceptions") if i not in keep]
                conn.executemany("DELETE FROM exceptions WHERE id = ?", [(i,) for i in stale])
                deleted = len(stale)
            return added, deleted

        return await self._write(apply)  # one savepoint: all or nothing

    async def add_excepted_requests(self, counts: dict[int, int], at: float) -> None:
        rows = [(int(n), float(at), int(i)) for i, n in counts.items() if n > 0]
        if rows:
            await self._write(lambda conn: conn.executemany(
                "UPDATE exceptions SET excepted_requests = excepted_requests + ?, last_excepted_at = ? WHERE id = ?",
                rows))

    # -- node settings

    async def load_mode_settings(self) -> ModeSettings | None:
        def query(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (MODE_SETTINGS_KEY,)).fetchone()
            return None if row is None else row[0]

        text = await self._read(query)
        if text is None:
            return None
        try:
            return mode_settings_from_json(text)
        except (ValueError, TypeError, KeyError) as err:
            log.error("attack store: ignoring unreadable saved mode settings (%s): %.200r", err, text)
            return None

    async def save_mode_settings(self, settings: ModeSettings) -> None:
        text = mode_settings_to_json(settings)
        await self._write(lambda conn: conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (MODE_SETTINGS_KEY, text)))

    # -- console sessions

    async def add_session(self, record: SessionRecord, max_sessions: int) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        now = time.time()

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
            count = conn.execute("SELECT count(*) FROM console_sessions").fetchone()[0]
            if count >= max_sessions:  # bounded: the oldest sessions make room
                conn.execute("DELETE FROM console_sessions WHERE id_hash IN (SELECT id_hash FROM console_sessions "
                             "ORDER BY created_at LIMIT ?)", (count - max_sessions + 1,))
            conn.execute("INSERT OR REPLACE INTO console_sessions (id_hash, created_at, expires_at) VALUES (?, ?, ?)",
                         (record.id_hash, record.created_at, record.expires_at))

        await self._write(insert)

    async def get_session(self, id_hash: bytes, now: float) -> SessionRecord | None:
        def query(conn: sqlite3.Connection) -> SessionRecord | None:
            row = conn.execute("SELECT created_at, expires_at FROM console_sessions WHERE id_hash = ? AND expires_at > ?",
                               (id_hash, now)).fetchone()
            return None if row is None else SessionRecord(id_hash, row[0], row[1])

        return await self._read(query)

    async def renew_session(self, id_hash: bytes, expires_at: float) -> None:
        await self._write(lambda conn: conn.execute(
            "UPDATE console_sessions SET expires_at = ? WHERE id_hash = ?", (expires_at, id_hash)))

    async def delete_session(self, id_hash: bytes) -> bool:
        return await self._write(lambda conn: conn.execute(
            "DELETE FROM console_sessions WHERE id_hash = ?", (id_hash,)).rowcount > 0)

    async def sweep_sessions(self, now: float) -> int:
        return await self._write(lambda conn: conn.execute(
            "DELETE FROM console_sessions WHERE expires_at <= ?", (now,)).rowcount)

    # -- plumbing: awaited writes and reads

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._open or self._closing:
            raise StoreError("the attack store is closed")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        await self._put(_Call(fn, fut))
        return await asyncio.wrap_future(fut)

    async def _put(self, item: object) -> None:
        """Queue an awaited item; with a full queue, wait for room in a thread, not on the loop."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            await asyncio.to_thread(self._queue.put, item)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._open or self._readers is None:
            raise StoreError("the attack store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = getattr(self._reader_local, "conn", None)
        if conn is None:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._reader_local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        try:
            return fn(conn)
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"attack store read failed: {err}") from err

    # -- the writer thread

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"cannot switch {self.path} to WAL mode (got {mode})")
            # WAL + NORMAL: a commit survives a crash of the process; only an OS crash may
            # lose the last transactions, never corrupt the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _writer_main(self, ready: concurrent.futures.Future) -> None:
        try:
            conn = self._connect_writer()
        except BaseException as err:  # reported to open()
            ready.set_exception(err)
            return
        ready.set_result(None)
        try:
            while True:
                batch = self._next_batch()
                self._write_batch(conn, [item for item in batch if item is not _STOP])
                if batch[-1] is _STOP:
                    return
        finally:
            conn.close()

    def _next_batch(self) -> list[object]:
        """Wait for one item, then gather more until batch_max, flush_interval, or an item
        somebody awaits (commit those at once)."""
        first = self._queue.get()
        batch = [first]
        if not isinstance(first, _AddAttack | _SetStatus):
            return batch
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_max:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            batch.append(item)
            if not isinstance(item, _AddAttack | _SetStatus):
                break
        return batch

    def _write_batch(self, conn: sqlite3.Connection, batch: list[object]) -> None:
        results: list[tuple[concurrent.futures.Future, Any, BaseException | None]] = []
        attack_rows: list[tuple] = []
        type_rows: list[tuple[int, str, float]] = []
        written = 0
        try:
            conn.execute("BEGIN IMMEDIATE")  # the write lock: the id high-water mark is ours now
            next_id = self._next_attack_id(conn)
            for item in batch:
                if isinstance(item, _AddAttack):
                    if self._prepare_attack(item.record, next_id, attack_rows, type_rows):
                        next_id += 1
                    continue
                # Anything else may read or update attacks: write the buffered ones first.
                written += self._insert_rows(conn, attack_rows, type_rows)
                if isinstance(item, _SetStatus):
                    self._apply_status(conn, item.request_id, item.status)
                elif isinstance(item, _Call):
                    results.append(self._run_call(conn, item))
                elif isinstance(item, _Flush):
                    results.append((item.future, None, None))
            written += self._insert_rows(conn, attack_rows, type_rows)
            conn.execute("COMMIT")
            self.attacks_written += written
        except Exception as err:  # a full disk, an I/O error; the thread must live on
            self.write_errors += 1
            self.lost_writes += sum(1 for item in batch if isinstance(item, _AddAttack | _SetStatus))
            log.error("attack store: a batch of %d writes failed and was lost: %s", len(batch), err)
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error as rollback_err:
                log.error("attack store: rollback failed too: %s", rollback_err)
            # Awaited writes fail; flushes complete (nothing queued before them is left).
            failure = StoreError(f"attack store write failed: {err}")
            results = [(item.future, None, failure) if isinstance(item, _Call) else (item.future, None, None)
                       for item in batch if isinstance(item, _Call | _Flush)]
        for fut, value, error in results:
            if fut.set_running_or_notify_cancel():
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(value)

    @staticmethod
    def _next_attack_id(conn: sqlite3.Connection) -> int:
        # Ids are assigned here so that a batch goes in with two executemany calls; the
        # AUTOINCREMENT sequence keeps them from being reused after retention deleted the newest.
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'attacks'").fetchone()
        top = conn.execute("SELECT max(id) FROM attacks").fetchone()[0]
        return max(seq[0] if seq else 0, top or 0) + 1

    def _run_call(self, conn: sqlite3.Connection, item: _Call) -> tuple[concurrent.futures.Future, Any, BaseException | None]:
        # A savepoint, so a failing call undoes only its own changes, not the batch around it.
        conn.execute("SAVEPOINT call")
        try:
            value = item.fn(conn)
        except Exception as err:
            conn.execute("ROLLBACK TO call")
            conn.execute("RELEASE call")
            return item.future, None, (StoreError(f"attack store write failed: {err}")
                                       if isinstance(err, sqlite3.Error) else err)
        conn.execute("RELEASE call")
        return item.future, value, None

    def _prepare_attack(self, record: AttackRecord, attack_id: int, attack_rows: list[tuple],
                        type_rows: list[tuple[int, str, float]]) -> bool:
        """Append the rows of one record; False (and counted) for a malformed record."""
        try:
            row = attack_values(record)
            types = sorted({str(h.type) for h in record.hits})
        except (ValueError, TypeError, AttributeError) as err:
            self.bad_records += 1
            log.warning("attack store: skipping a malformed attack record: %s", err)
            return False
        if row[STATUS_INDEX] is None:  # no response status yet: one may be waiting
            pending = self._pending.take(row[1])
            if pending is not None:
                row = row[:STATUS_INDEX] + (pending,) + row[STATUS_INDEX + 1:]
        attack_rows.append((attack_id, *row))
        type_rows.extend((attack_id, t, row[0]) for t in types)
        return True

    @staticmethod
    def _insert_rows(conn: sqlite3.Connection, attack_rows: list[tuple], type_rows: list[tuple]) -> int:
        if not attack_rows:
            return 0
        conn.executemany(
            "INSERT INTO attacks (id, time, request_id, client_ip, ip_key, host, method, path, path_lc, action, "
            "mode, instance, node_instance, response_status, request_excerpt, reason, hits) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", attack_rows)
        conn.executemany("INSERT INTO attack_types (attack_id, type, time) VALUES (?, ?, ?)", type_rows)
        sqlite_stats.add_batch(conn, attack_rows, type_rows)
        count = len(attack_rows)
        attack_rows.clear()
        type_rows.clear()
        return count

    def _apply_status(self, conn: sqlite3.Connection, request_id: Any, status: Any) -> None:
        try:
            status = int(status)
            request_id = str(request_id)
        except (ValueError, TypeError):
            self.bad_records += 1
            log.warning("attack store: skipping a malformed response status %r for %r", status, request_id)
            return
        updated = conn.execute("UPDATE attacks SET response_status = ? WHERE request_id = ?",
                               (status, request_id)).rowcount
        if updated:
            return
        self._pending.put(request_id, status)


def _probe(conn: sqlite3.Connection) -> None:
    # A real write (and commit) of one tiny row: proves the file and the disk accept writes.
    conn.execute("INSERT INTO settings (key, value) VALUES ('_probe', ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (repr(time.time()),))
