"""Attack store: the interface (`base`) and its backends; `open_store` picks one."""

from __future__ import annotations

import re
from pathlib import Path

from node.store.base import (
    AttackFilter,
    AttackPage,
    AttackRecord,
    Hit,
    IPEntry,
    ModeOverride,
    ModeSettings,
    Stats,
    Store,
    StoreError,
)

__all__ = ["AttackFilter", "AttackPage", "AttackRecord", "Hit", "IPEntry", "ModeOverride",
           "ModeSettings", "Stats", "Store", "StoreError", "open_store"]

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_store(path_or_url: str | Path, **options: object) -> Store:
    """The backend for a `--db` value; the caller awaits `open()` on it.

    A plain path, or `sqlite:///relative/file.db` / `sqlite:////absolute/file.db` (the
    SQLAlchemy spelling: what follows `sqlite:///` is the path), selects SQLite. `options`
    go to the backend (for SQLite: batch_max, flush_interval, queue_max). An unknown scheme or
    an in-memory database (several connections could not share it) raises ValueError.
    """
    from node.store.sqlite import SQLiteStore  # here, so that importing the interface stays light

    if isinstance(path_or_url, Path):
        return SQLiteStore(path_or_url, **options)  # type: ignore[arg-type]
    if not isinstance(path_or_url, str) or not path_or_url.strip():
        raise ValueError("the store location is empty: give a file path or sqlite:///path")
    text = path_or_url.strip()
    match = _URL_SCHEME.match(text)
    if match:
        scheme = match.group(1).lower()
        if scheme != "sqlite":
            raise ValueError(f"unsupported store URL scheme {scheme!r} in {text!r}: use a file path or sqlite:///path")
        if not text[len("sqlite://"):].startswith("/") or len(text) <= len("sqlite:///"):
            raise ValueError(f"bad SQLite URL {text!r}: write sqlite:///relative.db or sqlite:////absolute.db")
        text = text[len("sqlite:///"):]
    if text == ":memory:" or text.startswith("file:"):
        raise ValueError(f"unsupported store location {text!r}: the store needs a file path")
    return SQLiteStore(Path(text), **options)  # type: ignore[arg-type]
