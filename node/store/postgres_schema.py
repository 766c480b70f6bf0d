"""The PostgreSQL store's schema and its migrations, versioned in a `schema_version` table.

Every node migrates at start. Two nodes starting at once must not both run a step: the whole
migration runs under a transaction-level advisory lock, so the second node waits for the first,
then finds the schema current. A new version appends one function to `MIGRATIONS`; a database
written by a newer version than this code knows is refused rather than guessed at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key: "wallarm" in ASCII, so another application's lock is unlikely to collide.
MIGRATION_LOCK = 0x77616C6C61726D
# The channel every node LISTENs on; the payload names what changed (node/store/postgres_notify.py).
CHANGES_CHANNEL = "wallarm_node_changes"


def _v1(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE attacks (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- a sequence: never reused
            time DOUBLE PRECISION NOT NULL,
            request_id TEXT NOT NULL,
            client_ip TEXT NOT NULL,
            ip_key BYTEA,                         -- 16-byte sortable address, NULL if not an IP
            host TEXT NOT NULL,
            host_key TEXT NOT NULL,               -- host with ASCII letters lowered (SQLite's NOCASE)
            method TEXT NOT NULL,
            path TEXT NOT NULL,
            path_lc TEXT NOT NULL,                -- str.lower() of path, for substring search
            action TEXT NOT NULL,
            mode TEXT NOT NULL,
            instance TEXT NOT NULL DEFAULT '',
            node_instance TEXT NOT NULL DEFAULT '',  -- the node that judged it
            response_status INTEGER,
            request_excerpt TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT 'attack',
            types TEXT[] NOT NULL DEFAULT '{}',   -- the distinct hit types
            hits TEXT NOT NULL DEFAULT '[]'       -- JSON list of {type, location, rule_id, excerpt, score}
        );
        -- (time, id) is the keyset of every page, newest first.
        CREATE INDEX attacks_time ON attacks (time DESC, id DESC);
        CREATE INDEX attacks_ip_time ON attacks (ip_key, time);
        CREATE INDEX attacks_host_time ON attacks (host_key, time);
        CREATE INDEX attacks_action_time ON attacks (action, time);
        CREATE INDEX attacks_request_id ON attacks (request_id);
        CREATE INDEX attacks_types ON attacks USING gin (types);

        CREATE TABLE ip_entries (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            list TEXT NOT NULL CHECK (list IN ('allow', 'deny', 'gray')),
            network TEXT NOT NULL,
            expires_at DOUBLE PRECISION,
            comment TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL,
            UNIQUE (list, network)
        );

        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );

        -- Console sessions: only the SHA-256 of a session id, so a dump hands out no live session.
        CREATE TABLE console_sessions (
            id_hash BYTEA PRIMARY KEY,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
        CREATE INDEX console_sessions_created ON console_sessions (created_at);
        """
    )


def _v2(conn: psycopg.Connection) -> None:
    # Exceptions ("not an attack here", node/rules/exceptions.py). NULL = any host / path /
    # location; what and where is unique (the index spells NULL as '' since NULLs never clash).
    # Excepted findings of a recorded attack live in its hits JSON (marked "excepted": id).
    conn.execute(
        """
        CREATE TABLE exceptions (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never reused: a record's excepted finding names it
            rule_id TEXT,
            attack_type TEXT,
            host TEXT,
            path_prefix TEXT,
            location TEXT,
            comment TEXT NOT NULL DEFAULT '',
            created_by TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            excepted_requests BIGINT NOT NULL DEFAULT 0,
            last_excepted_at DOUBLE PRECISION,
            CHECK ((rule_id IS NULL) <> (attack_type IS NULL))
        );
        CREATE UNIQUE INDEX exceptions_key ON exceptions (
            coalesce(rule_id, ''), coalesce(attack_type, ''), coalesce(host, ''), coalesce(path_prefix, ''),
            coalesce(location, ''));
        """
    )


def _v3(conn: psycopg.Connection) -> None:
    # Per-minute counts for the overview (node/store/stats_plan.py), filled from what is stored.
    from node.store.postgres_query import DIALECT
    from node.store.stats_plan import rebuild_sql

    conn.execute(
        """
        CREATE TABLE attack_rollup (
            minute BIGINT NOT NULL,               -- trunc(time / 60)
            kind SMALLINT NOT NULL,               -- 0 action, 1 type, 2 path, 3 client IP
            key TEXT NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (kind, minute, key)       -- a stats query reads one contiguous range per kind
        )
        """
    )
    conn.execute(rebuild_sql(DIALECT, "true"))


# MIGRATIONS[i] upgrades a database from version i to i + 1.
MIGRATIONS: list[Callable[[psycopg.Connection], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: psycopg.Connection) -> int:
    """Bring the database to SCHEMA_VERSION in one transaction under the migration lock.
    Returns the version found. `conn` must not be in a transaction."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        found = current_version(conn)
        if found > SCHEMA_VERSION:
            raise RuntimeError(
                f"the attack store was written by a newer version (schema {found}, this code knows "
                f"up to {SCHEMA_VERSION}); upgrade the node or point db at another database"
            )
        for version in range(found, SCHEMA_VERSION):
            MIGRATIONS[version](conn)
            log.info("attack store schema migrated to version %d", version + 1)
        if found < SCHEMA_VERSION:
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
    return found
