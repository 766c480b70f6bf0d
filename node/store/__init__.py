"""Attack store: the interface (`base`) and its backends; `open_store` picks one."""

from __future__ import annotations

from pathlib import Path

from node.store.base import (
    AttackFilter,
    AttackPage,
    AttackRecord,
    Hit,
    IPEntry,
    ModeOverride,
    ModeSettings,
    SessionRecord,
    Stats,
    Store,
    StoreError,
    StoreGauges,
)
from node.store.location import db_file

__all__ = ["AttackFilter", "AttackPage", "AttackRecord", "Hit", "IPEntry", "ModeOverride",
           "ModeSettings", "SessionRecord", "Stats", "Store", "StoreError", "StoreGauges", "open_store"]


def open_store(location: str | Path, **options: object) -> Store:
    """The backend for a `db` value (see `node.store.location`); the caller awaits `open()` on it.

    `options` go to the backend (for SQLite: batch_max, flush_interval, queue_max). Raises
    ValueError for a location no backend can serve.
    """
    from node.store.sqlite import SQLiteStore  # here, so that importing the interface stays light

    return SQLiteStore(db_file(location), **options)  # type: ignore[arg-type]
