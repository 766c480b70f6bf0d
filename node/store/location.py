"""Where the attack store lives: a file path or `sqlite:///path`, read in this one place.

The URL is the SQLAlchemy spelling: what follows `sqlite:///` is the path, so
`sqlite:///relative.db` is relative and `sqlite:////absolute.db` absolute.
"""

from __future__ import annotations

import re
from pathlib import Path

SQLITE_URL = "sqlite:///"
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def db_file(location: str | Path) -> Path:
    """The SQLite file a `db` value names. ValueError for an empty value, another scheme, a
    malformed SQLite URL or an in-memory database (several connections could not share it)."""
    if isinstance(location, Path):
        return location
    if not isinstance(location, str) or not location.strip():
        raise ValueError("the store location is empty: give a file path or sqlite:///path")
    text = location.strip()
    match = _URL_SCHEME.match(text)
    if match:
        scheme = match.group(1).lower()
        if scheme != "sqlite":
            raise ValueError(f"unsupported store URL scheme {scheme!r} in {text!r}: use a file path or sqlite:///path")
        if not text[len("sqlite://"):].startswith("/") or len(text) <= len(SQLITE_URL):
            raise ValueError(f"bad SQLite URL {text!r}: write sqlite:///relative.db or sqlite:////absolute.db")
        text = text[len(SQLITE_URL):]
    if text == ":memory:" or text.startswith("file:"):
        raise ValueError(f"unsupported store location {text!r}: the store needs a file path")
    return Path(text)


def resolve_location(location: str, base: Path) -> str:
    """`location` with a relative file path made absolute against `base`, in the same spelling
    (a plain path stays a path, `sqlite:///rel.db` becomes `sqlite:////base/rel.db`)."""
    text = location.strip()
    match = _URL_SCHEME.match(text)
    if match is None:
        return text if Path(text).is_absolute() else str(base / text)
    if match.group(1).lower() != "sqlite" or not text[len(SQLITE_URL):] or text[len(SQLITE_URL):].startswith("/"):
        return text  # absolute already, or not ours to resolve (db_file will say what is wrong)
    return SQLITE_URL + str(base / text[len(SQLITE_URL):])
