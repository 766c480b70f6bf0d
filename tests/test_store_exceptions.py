"""The store's exceptions (Store.*_exception*, written against the interface) and the excepted
findings kept with an attack record, on both stores (SQLite, PostgreSQL)."""

from __future__ import annotations

import sqlite3

import pytest
from store_support import opened, record

from node.store.base import AttackFilter, ExceptedHit, ExceptionRule, Hit
from node.store.sqlite_schema import SCHEMA_VERSION


@pytest.fixture
async def store(stores):  # noqa: ANN001, ANN201
    return await stores.open("x")


async def test_add_get_list_delete(store) -> None:  # noqa: ANN001
    a = await store.add_exception(ExceptionRule(attack_type="sqli", host="shop.example", path_prefix="/search",
                                                location="query.q", comment="box", created_by="session from ::1",
                                                created_at=1_700_000_000.0))
    b = await store.add_exception(ExceptionRule(rule_id="xss.js-sink"))
    assert a.id is not None and b.id is not None and b.id > a.id
    got = await store.get_exception(a.id)
    assert got is not None
    assert (got.key, got.comment, got.created_by, got.created_at) == (a.key, "box", "session from ::1", 1_700_000_000.0)
    assert (got.excepted_requests, got.last_excepted_at) == (0, None)
    assert [e.id for e in await store.list_exceptions()] == [a.id, b.id]
    assert await store.delete_exception(a.id) is True
    assert await store.delete_exception(a.id) is False
    assert await store.get_exception(a.id) is None
    with pytest.raises(ValueError):
        await store.get_exception("1")  # type: ignore[arg-type]


async def test_the_version_changes_with_the_set_and_not_with_the_counts(store) -> None:  # noqa: ANN001
    versions = [await store.exceptions_version()]
    a = await store.add_exception(ExceptionRule(rule_id="a"))
    versions.append(await store.exceptions_version())
    b = await store.add_exception(ExceptionRule(rule_id="b"))
    versions.append(await store.exceptions_version())
    await store.add_excepted_requests({a.id: 1}, 1_700_000_000.0)
    assert await store.exceptions_version() == versions[-1]
    await store.delete_exception(b.id)  # back to {a}: the set of versions[1], and it may say so
    assert await store.exceptions_version() == versions[1]
    await store.delete_exception(a.id)
    await store.add_exception(ExceptionRule(rule_id="c"))  # {c}: as many as {a}, not the same
    versions.append(await store.exceptions_version())
    assert len(set(map(repr, versions))) == len(versions)


async def test_the_same_what_and_where_is_refused(store) -> None:  # noqa: ANN001
    first = await store.add_exception(ExceptionRule(attack_type="sqli", host="A.example:80"))
    with pytest.raises(ValueError, match=f"exception {first.id} already excepts"):
        await store.add_exception(ExceptionRule(attack_type="SQLI", host="a.example"))
    # any host is another place than one host; a rule is another thing than its type
    await store.add_exception(ExceptionRule(attack_type="sqli"))
    await store.add_exception(ExceptionRule(rule_id="sqli", host="a.example"))
    assert len(await store.list_exceptions()) == 3


async def test_import_adds_the_new_and_replace_deletes_the_rest(store) -> None:  # noqa: ANN001
    kept = await store.add_exception(ExceptionRule(rule_id="keep", comment="original"))
    await store.add_exception(ExceptionRule(rule_id="drop"))
    rules = [ExceptionRule(rule_id="keep", comment="from the file"), ExceptionRule(attack_type="xss", path_prefix="/cms")]
    assert await store.import_exceptions(rules, replace=False) == (1, 0)
    assert await store.import_exceptions(rules, replace=False) == (0, 0)
    assert await store.import_exceptions(rules, replace=True) == (0, 1)
    stored = await store.list_exceptions()
    assert [e.rule_id or e.attack_type for e in stored] == ["keep", "xss"]
    assert stored[0].id == kept.id and stored[0].comment == "original"  # an existing one is kept as it is


async def test_counts_add_up_and_ignore_deleted_ids(store) -> None:  # noqa: ANN001
    e = await store.add_exception(ExceptionRule(attack_type="sqli"))
    await store.add_excepted_requests({e.id: 3, 999: 5}, 1_700_000_100.0)
    await store.add_excepted_requests({e.id: 2}, 1_700_000_200.0)
    got = await store.get_exception(e.id)
    assert (got.excepted_requests, got.last_excepted_at) == (5, 1_700_000_200.0)


async def test_excepted_findings_are_kept_beside_the_attack_but_not_counted_as_its_types(store) -> None:  # noqa: ANN001
    xss = Hit("xss", "query.x", "xss.script-tag", "<script>", 10)
    sqli = Hit("sqli", "query.q", "sqli.tautology", "' OR 1=1", 10)
    store.add_attack(record(1, hits=[xss], excepted=[ExceptedHit(sqli, 7)]))
    await store.flush()
    page = await store.list_attacks(AttackFilter(), limit=10)
    (r,) = page.items
    assert r.hits == [xss] and r.excepted == [ExceptedHit(sqli, 7)] and r.types == ["xss"]
    assert (await store.list_attacks(AttackFilter(types=["sqli"]), limit=10)).items == []
    stats = await store.stats(r.time - 60, r.time + 60)
    assert stats.by_type == {"xss": 1}


async def test_a_version_3_file_gains_the_table(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "v3.db"
    s = await opened(path)
    s.add_attack(record(1))
    await s.close()
    with sqlite3.connect(path) as conn:  # as written before exceptions existed
        conn.execute("DROP TABLE exceptions")
        conn.execute("PRAGMA user_version = 3")
    s = await opened(path)
    try:
        assert await s.list_exceptions() == []
        await s.add_exception(ExceptionRule(rule_id="r"))
        assert len((await s.list_attacks(AttackFilter(), limit=10)).items) == 1
    finally:
        await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
