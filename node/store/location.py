"""Where the attack store lives: a file path, `sqlite:///path` or a `postgresql://` DSN, read
in this one place.

The SQLite URL is the SQLAlchemy spelling: what follows `sqlite:///` is the path, so
`sqlite:///relative.db` is relative and `sqlite:////absolute.db` absolute. A `postgresql://`
(or `postgres://`) URL is libpq's connection URI, handed to psycopg as it is.
"""

from __future__ import annotations

import re
from pathlib import Path

SQLITE_URL = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def postgres_dsn(location: str | Path) -> str | None:
    """The DSN when `location` names a PostgreSQL server, else None (a SQLite location)."""
    if not isinstance(location, str):
        return None
    text = location.strip()
    match = _URL_SCHEME.match(text)
    if match is None or match.group(1).lower() not in POSTGRES_SCHEMES:
        return None
    if len(text) <= len(match.group(0)):
        raise ValueError("bad PostgreSQL URL: write postgresql://user:password@host:5432/database")
    return text


def describe(location: str) -> str:
    """`location` fit for a log line: a DSN's password is not shown."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", location.strip())


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
            raise ValueError(f"unsupported store URL scheme {scheme!r} in {describe(text)!r}: use a file path, "
                             "sqlite:///path or postgresql://...")
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
