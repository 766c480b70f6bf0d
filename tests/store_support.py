"""Helpers shared by the store tests: records with sensible defaults, an open store fixture."""

from __future__ import annotations

from pathlib import Path

from node.store.base import AttackFilter, AttackRecord, Hit
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


async def all_pages(store: SQLiteStore, flt: AttackFilter, limit: int = 7) -> list[AttackRecord]:
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
