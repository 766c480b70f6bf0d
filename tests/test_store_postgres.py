"""What only the PostgreSQL store does: migrations that two nodes run at once (and an upgrade),
change notifications between stores, a server that goes away, text PostgreSQL cannot hold."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from node.store import StoreError, open_store
from node.store.base import CHANGE_ALL, CHANGE_EXCEPTIONS, CHANGE_IP_LISTS, CHANGE_MODES, AttackFilter, ExceptionRule
from node.store.base import Hit, IPEntry, ModeSettings
from node.store.postgres import PostgresStore
from node.store.postgres_schema import SCHEMA_VERSION
from store_support import T0, Stores, record


@pytest.fixture
async def pg(pg_cluster, tmp_path):  # noqa: ANN001, ANN201
    stores = Stores("postgresql", tmp_path, pg_cluster)
    try:
        yield stores
    finally:
        await stores.close_all()


def _sql(dsn: str, statement: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


async def test_two_nodes_starting_at_once_migrate_once(pg) -> None:  # noqa: ANN001
    dsn = pg.location("fresh")
    stores = [open_store(dsn) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))  # each would create the tables
        assert _sql(dsn, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        stores[0].add_attack(record(1))
        await stores[0].flush()
        assert (await stores[3].list_attacks(AttackFilter())).total == 1
    finally:
        for s in stores:
            await s.close()


async def test_a_database_from_a_newer_version_is_refused(pg) -> None:  # noqa: ANN001
    s = await pg.open("future")
    await s.close()
    _sql(pg.location("future"), f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer version"):
        await pg.open("future")


async def test_a_server_that_is_not_up_is_waited_for_then_refused_clearly(monkeypatch, caplog) -> None:  # noqa: ANN001
    import node.store.postgres as pg_mod
    from tests.support.procs import free_port

    monkeypatch.setattr(pg_mod, "STARTUP_WAIT", 1.0)
    store = open_store(f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2")
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot open the attack store .*refused"):
        await store.open()
    assert 0.5 < time.monotonic() - started < 5 and "is not up yet" in caplog.text


async def test_a_wrong_database_is_refused_at_once(pg) -> None:  # noqa: ANN001
    dsn = pg.location("exists").rsplit("/", 1)[0] + "/no_such_database"
    started = time.monotonic()
    with pytest.raises(StoreError, match="no_such_database"):
        await open_store(dsn).open()
    assert time.monotonic() - started < 2  # no reason to wait: it will not appear by itself


async def test_rule_changes_reach_the_other_stores_listeners(pg) -> None:  # noqa: ANN001
    a = await pg.open("shared")
    b = await pg.open("shared")  # another node on the same database
    heard: asyncio.Queue[str] = asyncio.Queue()

    async def on_change(topic: str) -> None:
        await heard.put(topic)

    b.watch_changes(on_change)
    assert await asyncio.wait_for(heard.get(), 10) == CHANGE_ALL  # listening: reload what was missed

    async def next_topic() -> str:
        return await asyncio.wait_for(heard.get(), 2)

    entry = await a.add_ip_entry(IPEntry(list="deny", network="198.51.100.9"))
    assert await next_topic() == CHANGE_IP_LISTS
    assert await a.delete_ip_entry(entry.id) and await next_topic() == CHANGE_IP_LISTS
    await a.save_mode_settings(ModeSettings(default="monitoring"))
    assert await next_topic() == CHANGE_MODES
    rule = await a.add_exception(ExceptionRule(attack_type="sqli"))
    assert await next_topic() == CHANGE_EXCEPTIONS
    assert await a.delete_exception(rule.id) and await next_topic() == CHANGE_EXCEPTIONS
    assert await a.import_exceptions([ExceptionRule(rule_id="r1")], replace=False) == (1, 0)
    assert await next_topic() == CHANGE_EXCEPTIONS
    # A change that changed nothing, and attacks, are not announced.
    assert not await a.delete_ip_entry(123456)
    a.add_attack(record(1))
    await a.flush()
    await asyncio.sleep(0.3)
    assert heard.empty()


async def test_a_listener_that_lost_its_connection_reconnects_and_reloads_everything(pg) -> None:  # noqa: ANN001
    a = await pg.open("reconnect")
    heard: list[str] = []

    async def on_change(topic: str) -> None:
        heard.append(topic)

    a.watch_changes(on_change)
    for _ in range(200):
        if heard:
            break
        await asyncio.sleep(0.05)
    assert heard == [CHANGE_ALL]
    # The server ends the listening connection (a restart, a failover, a network cut).
    _sql(pg.location("reconnect"), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
    for _ in range(200):
        if len(heard) >= 2:
            break
        await asyncio.sleep(0.05)
    assert heard == [CHANGE_ALL, CHANGE_ALL]
    await a.add_ip_entry(IPEntry(list="gray", network="203.0.113.0/24"))
    for _ in range(100):
        if len(heard) >= 3:
            break
        await asyncio.sleep(0.02)
    assert heard[2:] == [CHANGE_IP_LISTS]


async def test_a_batch_the_server_refuses_is_counted_lost_and_the_writer_carries_on(pg, monkeypatch) -> None:  # noqa: ANN001
    import node.store.postgres as pg_mod

    monkeypatch.setattr(pg_mod, "BATCH_RETRY_DELAY", 0.05)
    s = await pg.open("refusing")
    assert isinstance(s, PostgresStore)
    dsn = pg.location("refusing")
    name = dsn.rsplit("/", 1)[1]
    admin = dsn.rsplit("/", 1)[0] + "/postgres"
    s.add_attack(record(1))
    await s.flush()  # the writer holds a connection now
    # The database stops taking connections and drops the ones it has: every try fails.
    _sql(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    _sql(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                             f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
    try:
        s.add_attack(record(2))
        s.set_response_status(record(2).request_id, 500)
        await asyncio.wait_for(s.flush(), 30)
        gauges = s.gauges()
        assert (gauges.write_errors, gauges.lost_writes) == (1, 2)
        assert await s.writable() is False
    finally:
        _sql(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    s.add_attack(record(3))
    await s.flush()
    assert [r.request_id for r in (await s.list_attacks(AttackFilter())).items] == [record(3).request_id,
                                                                                    record(1).request_id]
    assert await s.writable() is True


async def test_text_postgresql_cannot_hold_is_stored_visibly(pg) -> None:  # noqa: ANN001
    s = await pg.open("nul")
    s.add_attack(record(1, path="/a\x00b", request_excerpt="GET /a\x00b HTTP/1.1", host="bad\udcffhost"))
    await s.flush()
    (stored,) = (await s.list_attacks(AttackFilter())).items
    assert stored.path == "/a\\x00b" and stored.request_excerpt == "GET /a\\x00b HTTP/1.1"
    assert stored.host == "bad\\udcffhost"
    assert s.gauges().write_errors == 0 and s.gauges().bad_records == 0


async def test_two_nodes_adding_the_same_exception_at_once_store_it_once(pg) -> None:  # noqa: ANN001
    nodes = [await pg.open("race") for _ in range(4)]
    results = await asyncio.gather(*(n.add_exception(ExceptionRule(attack_type="xss", host="a.example"))
                                     for n in nodes), return_exceptions=True)
    stored = [r for r in results if isinstance(r, ExceptionRule)]
    refused = [r for r in results if isinstance(r, ValueError)]
    assert len(stored) == 1 and len(refused) == 3, results  # refused as a duplicate, never a store failure
    assert [e.id for e in await nodes[0].list_exceptions()] == [stored[0].id]


async def test_a_burst_of_changes_costs_a_few_reloads_not_one_each(pg) -> None:  # noqa: ANN001
    a = await pg.open("burst")
    b = await pg.open("burst")
    reloads: list[int] = []

    async def on_change(topic: str) -> None:  # a reload that takes a while, as a big list does
        reloads.append(len(await b.list_ip_entries()))
        await asyncio.sleep(0.05)

    b.watch_changes(on_change)
    for _ in range(200):
        if reloads:
            break
        await asyncio.sleep(0.05)
    reloads.clear()
    for i in range(100):  # each its own transaction, each notified
        await a.add_ip_entry(IPEntry(list="deny", network=f"203.0.113.{i}"))
    for _ in range(200):
        if reloads and reloads[-1] == 100:
            break
        await asyncio.sleep(0.05)
    assert reloads[-1] == 100, "the last change was reloaded"
    assert len(reloads) < 50, f"{len(reloads)} reloads for 100 changes"


@pytest.mark.parametrize("ci,outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_without_postgresql_the_tests_fail_in_ci_and_skip_elsewhere(monkeypatch, ci, outcome) -> None:  # noqa: ANN001
    import tests.support.postgres as support

    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv(support.ENV_DSN, raising=False)
    monkeypatch.setattr(support, "find_bin_dir", lambda: None)  # as on a machine without the package
    with pytest.raises(outcome, match="initdb/pg_ctl not found"):
        with support.throwaway_cluster():
            pass


async def test_upgrading_a_version_2_database_builds_the_rollup(pg) -> None:  # noqa: ANN001
    s = await pg.open("v2")
    for i in range(300):
        s.add_attack(record(i, time=T0 + i * 7.3, path=f"/p/{i % 7}", hits=[Hit("sqli", "q", "1"), Hit("xss", "q", "2")]
                            if i % 3 else []))
    await s.flush()
    before = await s.stats(T0 - 100, T0 + 3000, 12)
    await s.close()
    dsn = pg.location("v2")
    _sql(dsn, "DROP TABLE attack_rollup")  # as written before the rollup existed
    _sql(dsn, "UPDATE schema_version SET version = 2")
    s = await pg.open("v2")
    assert _sql(dsn, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    after = await s.stats(T0 - 100, T0 + 3000, 12)
    assert after == before and after.total == 300 and after.by_type == {"sqli": 200, "xss": 200}
