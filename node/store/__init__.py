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
from node.store.location import db_file, postgres_dsn

__all__ = ["AttackFilter", "AttackPage", "AttackRecord", "Hit", "IPEntry", "ModeOverride",
           "ModeSettings", "SessionRecord", "Stats", "Store", "StoreError", "StoreGauges", "open_store"]


def open_store(location: str | Path, **options: object) -> Store:
    """The backend for a `db` value (see `node.store.location`): PostgreSQL for a postgresql://
    DSN, else SQLite; the caller awaits `open()` on it.

    `options` go to the backend (both take batch_max, flush_interval, queue_max). Raises
    ValueError for a location no backend can serve.
    """
    # Imported here, so that importing the interface stays light (and psycopg is loaded only when used).
    dsn = postgres_dsn(location)
    if dsn is not None:
        from node.store.postgres import PostgresStore

        return PostgresStore(dsn, **options)  # type: ignore[arg-type]
    from node.store.sqlite import SQLiteStore

    return SQLiteStore(db_file(location), **options)  # type: ignore[arg-type]
