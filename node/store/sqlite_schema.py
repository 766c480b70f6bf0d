"""The SQLite store's schema and its migrations, versioned by `PRAGMA user_version`.

A new version appends one function to `MIGRATIONS`; a file written by a newer version than this
code knows is refused rather than guessed at.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

log = logging.getLogger(__name__)


def _run_statements(conn: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits any open transaction first, and each step must be atomic.
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def _v1(conn: sqlite3.Connection) -> None:
    _run_statements(
        conn,
        """
        CREATE TABLE attacks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after retention
            time REAL NOT NULL,
            request_id TEXT NOT NULL,
            client_ip TEXT NOT NULL,
            ip_key BLOB,                          -- 16-byte sortable address, NULL if not an IP
            host TEXT NOT NULL COLLATE NOCASE,
            method TEXT NOT NULL,
            path TEXT NOT NULL,
            path_lc TEXT NOT NULL,                -- str.lower() of path, for substring search
            action TEXT NOT NULL,
            mode TEXT NOT NULL,
            instance TEXT NOT NULL DEFAULT '',
            node_instance TEXT NOT NULL DEFAULT '',
            response_status INTEGER,
            request_excerpt TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT 'attack',
            hits TEXT NOT NULL DEFAULT '[]'       -- JSON list of {type, location, rule_id, excerpt, score}
        );
        -- time is indexed together with the rowid, i.e. (time, id): the keyset of every page.
        CREATE INDEX attacks_time ON attacks(time);
        CREATE INDEX attacks_ip_time ON attacks(ip_key, time);
        CREATE INDEX attacks_host_time ON attacks(host, time);
        CREATE INDEX attacks_action_time ON attacks(action, time);
        CREATE INDEX attacks_request_id ON attacks(request_id);
        -- Covers every stats query, so the overview never touches the wide rows.
        CREATE INDEX attacks_stats ON attacks(time, action, client_ip, path);

        -- One row per (attack, type): "any of these types" filters and per-type stats.
        -- time is copied from the attack so stats and retention need no join.
        CREATE TABLE attack_types (
            attack_id INTEGER NOT NULL,
            type TEXT NOT NULL,
            time REAL NOT NULL,
            PRIMARY KEY (attack_id, type)
        ) WITHOUT ROWID;
        CREATE INDEX attack_types_type_time ON attack_types(type, time);
        CREATE INDEX attack_types_time ON attack_types(time);

        CREATE TABLE ip_entries (
            id INTEGER PRIMARY KEY,
            list TEXT NOT NULL CHECK (list IN ('allow', 'deny', 'gray')),
            network TEXT NOT NULL,
            expires_at REAL,
            comment TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            UNIQUE (list, network)
        );

        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """
    )


def _v2(conn: sqlite3.Connection) -> None:
    # Per-minute counts for the overview (node/store/sqlite_stats.py), filled from what is stored.
    from node.store.sqlite_stats import rebuild_all

    _run_statements(
        conn,
        """
        CREATE TABLE attack_rollup (
            minute INTEGER NOT NULL,              -- CAST(time / 60 AS INTEGER)
            kind INTEGER NOT NULL,                -- 0 action, 1 type, 2 path, 3 client IP
            key TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (kind, minute, key)       -- a stats query reads one contiguous range per kind
        ) WITHOUT ROWID;
        """,
    )
    rebuild_all(conn)


def _v3(conn: sqlite3.Connection) -> None:
    # Console sessions, so that a node restart does not log browsers out. Only the SHA-256 of
    # the session id is kept: a copy of the file does not hand out live sessions.
    _run_statements(
        conn,
        """
        CREATE TABLE console_sessions (
            id_hash BLOB PRIMARY KEY,             -- sha256(session id)
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL              -- min(created + max age, last use + idle time)
        ) WITHOUT ROWID;
        CREATE INDEX console_sessions_expires ON console_sessions(expires_at);
        CREATE INDEX console_sessions_created ON console_sessions(created_at);
        """,
    )


def _v4(conn: sqlite3.Connection) -> None:
    # Exceptions ("not an attack here", node/rules/exceptions.py). NULL = any host / path /
    # location; what and where is unique (the index spells NULL as '' since NULLs never clash).
    # Excepted findings of a recorded attack live in its hits JSON (marked "excepted": id).
    _run_statements(
        conn,
        """
        CREATE TABLE exceptions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a record's excepted finding names it
            rule_id TEXT,
            attack_type TEXT,
            host TEXT,
            path_prefix TEXT,
            location TEXT,
            comment TEXT NOT NULL DEFAULT '',
            created_by TEXT NOT NULL,
            created_at REAL NOT NULL,
            excepted_requests INTEGER NOT NULL DEFAULT 0,
            last_excepted_at REAL,
            CHECK ((rule_id IS NULL) <> (attack_type IS NULL))
        );
        CREATE UNIQUE INDEX exceptions_key ON exceptions(
            ifnull(rule_id, ''), ifnull(attack_type, ''), ifnull(host, ''), ifnull(path_prefix, ''),
            ifnull(location, ''));
        """,
    )


# MIGRATIONS[i] upgrades a file from user_version i to i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3, _v4]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file to SCHEMA_VERSION, one transaction per step. Returns the old version.

    `conn` must be in autocommit mode (isolation_level=None)."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"the attack store was written by a newer version (schema {current}, this code knows "
            f"up to {SCHEMA_VERSION}); upgrade the node or point --db at another file"
        )
    for version in range(current, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("attack store schema migrated to version %d", version + 1)
    return current
