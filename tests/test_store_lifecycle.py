"""Both stores (SQLite, PostgreSQL unless a test says SQLite): open/flush/close, restart, batching,
response statuses, failures, the factory."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

import node.store.pending as pending_mod
import node.store.sqlite as sqlite_mod
from node.store import StoreError, open_store
from node.store.base import AttackFilter
from node.store.sqlite import SQLiteStore
from node.store.sqlite_schema import SCHEMA_VERSION
from node.store.postgres import PostgresStore
from store_support import T0, all_pages, opened, record


async def test_attacks_survive_close_and_reopen(stores):
    s = await stores.open("restart")
    for i in range(25):
        s.add_attack(record(i))
    await s.close()  # no explicit flush: close must flush
    s = await stores.open("restart")
    try:
        got = await all_pages(s, AttackFilter(), limit=10)
        assert sorted(r.request_id for r in got) == sorted(record(i).request_id for i in range(25))
        s.add_attack(record(99))  # and the reopened store keeps writing
        await s.flush()
        assert (await s.list_attacks(AttackFilter(), limit=1)).items[0].request_id == record(99).request_id
    finally:
        await s.close()


async def test_file_is_wal_and_versioned(tmp_path):
    path = tmp_path / "wal.db"
    s = await opened(path)
    await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1


async def test_a_file_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer version"):
        await opened(path)


async def test_a_file_that_is_no_database_is_refused_clearly(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the attack store"):
        await opened(path)


async def test_missing_parent_directories_are_created(tmp_path):
    s = await opened(tmp_path / "var" / "lib" / "node.db")
    await s.close()
    assert (tmp_path / "var" / "lib" / "node.db").exists()


async def test_flush_does_not_wait_for_the_batch_interval(stores):
    s = await stores.open("flush", flush_interval=30.0, batch_max=10_000)
    try:
        s.add_attack(record(1))
        await asyncio.wait_for(s.flush(), 5)  # far less than flush_interval
        assert (await s.list_attacks(AttackFilter())).total == 1
    finally:
        await asyncio.wait_for(s.close(), 5)


async def test_writes_land_without_flush_after_the_interval(stores):
    s = await stores.open("interval", flush_interval=0.02)
    try:
        s.add_attack(record(1))
        for _ in range(200):
            if (await s.list_attacks(AttackFilter())).total == 1:
                break
            await asyncio.sleep(0.02)
        assert (await s.list_attacks(AttackFilter())).total == 1
    finally:
        await s.close()


async def test_batches_are_bounded_by_batch_max(stores):
    s = await stores.open("batches", batch_max=7, flush_interval=0.5)
    try:
        for i in range(50):
            s.add_attack(record(i))
        await s.flush()
        assert s.attacks_written == 50
        assert (await s.list_attacks(AttackFilter())).total == 50
    finally:
        await s.close()


async def test_a_closed_store_drops_writes_and_refuses_reads(stores):
    s = await stores.open("closed")
    assert await s.writable() is True
    await s.close()
    await s.close()  # idempotent
    s.add_attack(record(1))
    s.set_response_status(record(1).request_id, 200)
    assert s.dropped == 2
    assert await s.writable() is False
    await s.flush()  # a no-op, not a hang
    with pytest.raises(StoreError, match="closed"):
        await s.list_attacks(AttackFilter())


# -- response status pairing


async def test_status_after_the_attack_is_stored(stores):
    s = await stores.open("status")
    try:
        s.add_attack(record(1))
        await s.flush()
        s.set_response_status(record(1).request_id, 502)
        await s.flush()
        assert (await s.list_attacks(AttackFilter())).items[0].response_status == 502
    finally:
        await s.close()


async def test_status_before_the_attack_in_an_earlier_batch(stores):
    s = await stores.open("status")
    try:
        s.set_response_status(record(1).request_id, 403)
        await s.flush()  # committed alone: nothing to update yet, so it waits
        s.add_attack(record(2))
        await s.flush()
        s.add_attack(record(1))
        await s.flush()
        items = {r.request_id: r.response_status for r in (await s.list_attacks(AttackFilter())).items}
        assert items == {record(1).request_id: 403, record(2).request_id: None}
    finally:
        await s.close()


@pytest.mark.parametrize("status_first", [True, False])
async def test_status_and_attack_in_the_same_batch_either_order(stores, status_first):
    s = await stores.open("status", flush_interval=5.0)
    try:
        rid = record(1).request_id
        if status_first:
            s.set_response_status(rid, 201)
            s.add_attack(record(1))
        else:
            s.add_attack(record(1))
            s.set_response_status(rid, 201)
        await s.flush()
        assert (await s.list_attacks(AttackFilter())).items[0].response_status == 201
    finally:
        await s.close()


async def test_a_status_in_the_record_wins_over_a_pending_one(stores):
    s = await stores.open("status")
    try:
        s.set_response_status(record(1).request_id, 500)
        s.add_attack(record(1, response_status=403))
        await s.flush()
        assert (await s.list_attacks(AttackFilter())).items[0].response_status == 403
    finally:
        await s.close()


async def test_pending_statuses_are_bounded_by_count(stores, monkeypatch):
    monkeypatch.setattr(pending_mod, "PENDING_MAX", 2)
    s = await stores.open("status")
    try:
        for i in (1, 2, 3):
            s.set_response_status(record(i).request_id, 200 + i)
        for i in (1, 2, 3):
            s.add_attack(record(i))
        await s.flush()
        got = {r.request_id: r.response_status for r in (await s.list_attacks(AttackFilter())).items}
        assert got == {record(1).request_id: None, record(2).request_id: 202, record(3).request_id: 203}
        assert s.pending_evicted == 1
    finally:
        await s.close()


async def test_pending_statuses_expire(stores, monkeypatch):
    monkeypatch.setattr(pending_mod, "PENDING_TTL", 0.05)
    s = await stores.open("status")
    try:
        s.set_response_status(record(1).request_id, 204)
        await s.flush()
        await asyncio.sleep(0.2)
        s.add_attack(record(1))
        await s.flush()
        assert (await s.list_attacks(AttackFilter())).items[0].response_status is None
    finally:
        await s.close()


async def test_malformed_status_is_skipped(stores):
    s = await stores.open("status")
    try:
        s.add_attack(record(1))
        s.set_response_status(record(1).request_id, "teapot")  # type: ignore[arg-type]
        await s.flush()
        assert (await s.list_attacks(AttackFilter())).items[0].response_status is None
        assert s.bad_records == 1 and await s.writable()
    finally:
        await s.close()


# -- concurrency and failures


async def test_reads_proceed_while_writing(stores):
    s = await stores.open("concurrent", batch_max=50, flush_interval=0.001)
    stop = asyncio.Event()
    totals: dict[int, list[int]] = {1: [], 2: []}
    reads = 0

    async def writer() -> None:
        for i in range(2000):
            s.add_attack(record(i))
            if i % 50 == 49:
                await asyncio.sleep(0.001)
        await s.flush()
        stop.set()

    async def reader(n: int) -> None:
        nonlocal reads
        while not stop.is_set():
            reads += 1
            page = await s.list_attacks(AttackFilter(types=["sqli"]), limit=20)
            if page.total is not None:  # None = counting took too long (a loaded machine): fine here
                assert len(page.items) == min(20, page.total)
                totals[n].append(page.total)
            await s.stats(T0 - 1, T0 + 5000)

    try:
        await asyncio.wait_for(asyncio.gather(writer(), reader(1), reader(2)), 60)
        assert reads >= 2
        for seen in totals.values():
            assert seen == sorted(seen), "a reader saw the store shrink"
        assert (await s.list_attacks(AttackFilter())).total == 2000
    finally:
        await s.close()


async def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    path = tmp_path / "full.db"
    s = await opened(path, queue_max=5, batch_max=1)
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock: the writer waits
        for i in range(20):
            s.add_attack(record(i))  # never blocks the loop
        assert s.dropped >= 14
        lock.execute("ROLLBACK")
        await s.flush()
        assert (await s.list_attacks(AttackFilter())).total + s.dropped == 20
    finally:
        lock.close()
        await s.close()


async def test_a_failed_batch_is_counted_and_the_writer_carries_on(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_mod, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "busy.db"
    s = await opened(path)
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        s.add_attack(record(1))
        await s.flush()  # the batch could not get the lock in time: lost, counted, flush returns
        assert s.write_errors >= 1
        assert await s.writable() is False
        lock.execute("ROLLBACK")
        s.add_attack(record(2))
        await s.flush()
        assert [r.request_id for r in (await s.list_attacks(AttackFilter())).items] == [record(2).request_id]
        assert await s.writable() is True
    finally:
        lock.close()
        await s.close()


async def test_readers_do_not_block_the_event_loop(stores):
    s = await stores.open("loop")
    try:
        for i in range(3000):
            s.add_attack(record(i, path=f"/p/{i}"))
        await s.flush()
        ticks = 0
        done = threading.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        for _ in range(5):
            await s.stats(T0 - 1, T0 + 5000)
            await s.list_attacks(AttackFilter(path_search="zzz"))  # a full scan
        done.set()
        await task
        assert ticks > 5  # the loop kept running other tasks while the queries ran
    finally:
        await s.close()


# -- the factory


@pytest.mark.parametrize("spec,expected", [
    ("node.db", "node.db"),
    ("sqlite:///node.db", "node.db"),
    ("sqlite:///var/node.db", "var/node.db"),
    ("sqlite:////abs/node.db", "/abs/node.db"),
    ("SQLITE:///x.db", "x.db"),
    (Path("/tmp/p.db"), "/tmp/p.db"),
])
def test_open_store_picks_sqlite(spec, expected):
    store = open_store(spec)
    assert isinstance(store, SQLiteStore) and store.path == Path(expected)


@pytest.mark.parametrize("spec,message", [
    ("", "empty"),
    ("   ", "empty"),
    ("mysql://db/attacks", "unsupported store URL scheme"),
    ("postgresql://", "bad PostgreSQL URL"),
    ("sqlite://", "bad SQLite URL"),
    ("sqlite:///", "bad SQLite URL"),
    ("sqlite://host/x.db", "bad SQLite URL"),
    (":memory:", "needs a file path"),
    ("sqlite:///:memory:", "needs a file path"),
])
def test_open_store_rejects_what_it_cannot_serve(spec, message):
    with pytest.raises(ValueError, match=message):
        open_store(spec)


@pytest.mark.parametrize("spec", ["postgresql://node:secret@db:5432/wallarm", "postgres://db/attacks",
                                  " POSTGRESQL://localhost/x?sslmode=require "])
def test_open_store_picks_postgresql(spec):
    store = open_store(spec)
    assert isinstance(store, PostgresStore) and store.dsn == spec.strip()
    assert "secret" not in repr(store)


async def test_open_store_options_reach_the_backend(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/opts.db", batch_max=3, flush_interval=0.5)
    assert isinstance(store, SQLiteStore) and (store.batch_max, store.flush_interval) == (3, 0.5)
    assert store.path == tmp_path / "opts.db"
