"""Helpers shared by the store tests: records with sensible defaults, stores of either backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.store import open_store
from node.store.base import AttackFilter, AttackRecord, Hit, Store
from node.store.sqlite import SQLiteStore

T0 = 1_700_000_000.0  # a fixed "now" for data that retention does not look at


def record(i: int = 0, **fields) -> AttackRecord:
    values = dict(
        time=T0 + i, request_id=f"{i:032x}", client_ip="203.0.113.7", host="api.example.com", method="GET",
        path=f"/api/items/{i}", hits=[Hit(type="sqli", location="query.id", rule_id="942100", excerpt="' OR 1=1")],
        action="blocked", mode="block",
    )
    values.update(fields)
    return AttackRecord(**values)


async def all_pages(store: Store, flt: AttackFilter, limit: int = 7) -> list[AttackRecord]:
    """Every matching record, walking the cursor; fails on a repeated cursor (a loop)."""
    items: list[AttackRecord] = []
    cursor = None
    seen_cursors: set[str] = set()
    while True:
        page = await store.list_attacks(flt, cursor=cursor, limit=limit)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        assert page.next_cursor not in seen_cursors, "paging loops"
        seen_cursors.add(page.next_cursor)
        cursor = page.next_cursor


async def opened(path: Path, **options) -> SQLiteStore:
    store = SQLiteStore(path, **options)
    await store.open()
    return store


class Stores:
    """Open stores of one backend by name: the same name is the same file (SQLite) or database
    (PostgreSQL), so a test can close a store and open it again. Closes what it opened."""

    def __init__(self, backend: str, tmp_path: Path, cluster: Any = None) -> None:
        self.backend = backend
        self._tmp = tmp_path
        self._cluster = cluster
        self._locations: dict[str, str] = {}
        self._opened: list[Store] = []

    def location(self, name: str) -> str:
        if name not in self._locations:
            if self.backend == "sqlite":
                self._locations[name] = str(self._tmp / f"{name}.db")
            else:
                self._locations[name] = self._cluster.create_database()
        return self._locations[name]

    async def open(self, name: str = "store", **options: Any) -> Store:
        store = open_store(self.location(name), **options)
        await store.open()
        self._opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self._opened:
            await store.close()
        if self._cluster is not None:
            for dsn in self._locations.values():
                self._cluster.drop_database(dsn)
