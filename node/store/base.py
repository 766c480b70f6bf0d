"""The attack store interface: what the node writes and the console reads.

Two backends ship: SQLite (`node/store/sqlite.py`, one node, the default) and PostgreSQL
(`node/store/postgres.py`, shared by several nodes); another only has to implement `Store`. Writes (`add_attack`, `set_response_status`) are fire-and-forget from the
event loop: the backend batches them off the loop. Reads are coroutines.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from node.rules.exceptions import ExceptionRule
from node.rules.ip_lists import LIST_NAMES, IPEntry, ListName
from node.rules.modes import NODE_MODES, ModeOverride, ModeSettings, NodeMode
from wallarm_wire.protocol import AttackInfo

# The domain types the store keeps live with their rules (node/rules/); they are named here
# too because they are part of the store's interface.
__all__ = ["CHANGE_ALL", "CHANGE_EXCEPTIONS", "CHANGE_IP_LISTS", "CHANGE_MODES", "CHANGE_TOPICS", "LIST_NAMES",
           "NODE_MODES", "AttackFilter", "AttackPage", "AttackRecord", "ExceptedHit", "ExceptionRule",
           "Hit", "IPEntry",
           "ListName", "ModeOverride", "ModeSettings", "NodeMode", "PARTIAL_TYPE", "SessionRecord", "Stats",
           "StatsBucket", "Store",
           "StoreError", "StoreGauges", "StoredAction"]

StoredAction = Literal["blocked", "monitored"]

# What a node is told when another node changed shared rules (Store.watch_changes): it reloads that part.
CHANGE_IP_LISTS = "ip_lists"
CHANGE_MODES = "modes"
CHANGE_EXCEPTIONS = "exceptions"
CHANGE_ALL = "all"  # the store may have missed changes (a reconnect): reload everything
CHANGE_TOPICS = frozenset({CHANGE_IP_LISTS, CHANGE_MODES, CHANGE_EXCEPTIONS, CHANGE_ALL})
# The attack type a partially inspected request is recorded under (one hit per reason,
# docs/node.md "Partial inspection").
PARTIAL_TYPE = "partial_inspection"


# One finding inside a request (type, location, rule id, masked excerpt, score): the same
# shape the wire protocol's verdict carries, so it is the same class.
Hit = AttackInfo


@dataclass(frozen=True, slots=True)
class ExceptedHit:
    """A finding an exception excused ("not an attack here"): kept with a record for the
    record's reader, never counted as an attack (not in the record's types or the stats)."""

    hit: Hit
    exception_id: int


@dataclass(slots=True)
class AttackRecord:
    time: float  # unix seconds
    request_id: str
    client_ip: str
    host: str
    method: str
    path: str
    hits: list[Hit]
    action: StoredAction
    mode: NodeMode
    instance: str = ""  # connector instance (X-Wallarm-Instance)
    node_instance: str = ""  # which node recorded it
    response_status: int | None = None
    request_excerpt: str = ""  # masked start line + headers + body excerpt
    reason: str = "attack"  # "attack", "partial" (partially inspected, no attack found) or "denylist"
    id: int | None = None  # assigned by the store
    # findings an exception excused in a request recorded for another reason (another finding,
    # a partial inspection, an IP list); a backend keeps them beside `hits`
    excepted: list[ExceptedHit] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return sorted({h.type for h in self.hits})


@dataclass(slots=True)
class AttackFilter:
    types: list[str] = field(default_factory=list)
    client_ip: str | None = None
    action: StoredAction | None = None
    host: str | None = None
    since: float | None = None
    until: float | None = None
    path_search: str | None = None  # substring of path, case-insensitive


@dataclass(slots=True)
class AttackPage:
    items: list[AttackRecord]
    next_cursor: str | None  # opaque; pass back to get the next (older) page
    total: int | None = None  # count matching the filter, when cheap to know


@dataclass(slots=True)
class StatsBucket:
    start: float
    by_type: dict[str, int]
    by_action: dict[str, int]


@dataclass(slots=True)
class Stats:
    total: int
    by_type: dict[str, int]
    by_action: dict[str, int]
    series: list[StatsBucket]
    bucket_seconds: int
    top_paths: list[tuple[str, int]]
    top_ips: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class StoreGauges:
    """What the store reports to /metrics: its write queue, the writes it had to refuse and those
    that failed. The counts only grow (Prometheus counters)."""

    queue_depth: int  # writes waiting for the store's writer
    dropped_writes: int  # writes refused since start (queue full or store closed)
    write_errors: int = 0  # batches of writes that failed to commit (their records are lost)
    lost_writes: int = 0  # queued writes lost in those failed batches
    bad_records: int = 0  # malformed records skipped


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A console session as stored: the hash of its id, never the id itself."""

    id_hash: bytes  # sha256(session id)
    created_at: float  # unix seconds
    expires_at: float  # unix seconds; the console moves it forward while the session is used


class StoreError(RuntimeError):
    """The store cannot do what was asked (file unreadable, disk full, closed); the message says why."""


OnChange = Callable[[str], Awaitable[None]]


class Store(abc.ABC):
    """Attack store, IP lists and persisted node settings."""

    # Whether several nodes may use this store at once (they then share attacks, IP lists,
    # mode settings and console sessions, and hear each other's changes through watch_changes).
    shared: bool = False

    def watch_changes(self, on_change: OnChange) -> None:
        """Have `on_change(topic)` awaited whenever shared rules may have changed through another
        node (a CHANGE_* topic). A store only one node uses has nobody to hear: it never calls it."""

    # -- lifecycle
    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending writes and release resources (graceful shutdown)."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Wait until every write queued so far is durable."""

    @abc.abstractmethod
    async def writable(self) -> bool:
        """Readiness probe: can the store accept writes right now?"""

    @abc.abstractmethod
    def gauges(self) -> StoreGauges:
        """Cheap, non-blocking: read at every /metrics scrape."""

    # -- attacks (writes are queued, never awaited on the hot path)
    @abc.abstractmethod
    def add_attack(self, record: AttackRecord) -> None: ...

    @abc.abstractmethod
    def set_response_status(self, request_id: str, status: int) -> None: ...

    @abc.abstractmethod
    async def list_attacks(self, flt: AttackFilter, cursor: str | None = None, limit: int = 50) -> AttackPage:
        """Newest first. Raises ValueError for a bad cursor."""

    @abc.abstractmethod
    async def get_attack(self, attack_id: int) -> AttackRecord | None: ...

    @abc.abstractmethod
    async def stats(self, since: float, until: float, buckets: int = 48) -> Stats: ...

    @abc.abstractmethod
    async def apply_retention(self, max_age_seconds: float | None, max_count: int | None) -> int:
        """Delete what is too old or beyond the newest max_count; returns rows deleted."""

    # -- IP lists
    @abc.abstractmethod
    async def list_ip_entries(self, list_name: ListName | None = None, include_expired: bool = False) -> list[IPEntry]: ...

    @abc.abstractmethod
    async def add_ip_entry(self, entry: IPEntry) -> IPEntry: ...

    @abc.abstractmethod
    async def delete_ip_entry(self, entry_id: int) -> bool: ...

    # -- exceptions ("not an attack here"; node/rules/exceptions.py). An ExceptionRule validated
    # itself when built; its `key` (what and where) is unique in the store.
    @abc.abstractmethod
    async def list_exceptions(self) -> list[ExceptionRule]:
        """All of them, oldest first, with their counts (excepted_requests, last_excepted_at)."""

    @abc.abstractmethod
    async def exceptions_version(self) -> object:
        """Cheap (read every second by the node): a value that differs whenever the set of
        exceptions has changed (not their counts). SQLite: (count, highest id), exact because
        ids are never reused."""

    @abc.abstractmethod
    async def get_exception(self, exception_id: int) -> ExceptionRule | None: ...

    @abc.abstractmethod
    async def add_exception(self, rule: ExceptionRule) -> ExceptionRule:
        """Store it; returns it with its id. ValueError (nothing stored) when one with the same
        key exists."""

    @abc.abstractmethod
    async def delete_exception(self, exception_id: int) -> bool: ...

    @abc.abstractmethod
    async def import_exceptions(self, rules: list[ExceptionRule], replace: bool) -> tuple[int, int]:
        """In one transaction: add those whose key is not stored yet (the stored one is kept
        as it is) and, with `replace`, delete the stored ones whose key is not in `rules`.
        Returns (added, deleted)."""

    @abc.abstractmethod
    async def add_excepted_requests(self, counts: dict[int, int], at: float) -> None:
        """Add `counts[id]` requests let through to each exception's excepted_requests and set
        its last_excepted_at to `at` (ids no longer stored are ignored)."""

    # -- node settings that survive a restart (mode and overrides)
    @abc.abstractmethod
    async def load_mode_settings(self) -> ModeSettings | None: ...

    @abc.abstractmethod
    async def save_mode_settings(self, settings: ModeSettings) -> None: ...

    # -- console sessions (kept so that a restart does not log browsers out)
    @abc.abstractmethod
    async def add_session(self, record: SessionRecord, max_sessions: int) -> None:
        """Store a new session; first drop the expired ones, then the oldest beyond `max_sessions`."""

    @abc.abstractmethod
    async def get_session(self, id_hash: bytes, now: float) -> SessionRecord | None:
        """The session with this id hash, if it has not expired at `now`."""

    @abc.abstractmethod
    async def renew_session(self, id_hash: bytes, expires_at: float) -> None: ...

    @abc.abstractmethod
    async def delete_session(self, id_hash: bytes) -> bool: ...

    @abc.abstractmethod
    async def sweep_sessions(self, now: float) -> int:
        """Delete the sessions expired at `now`; returns how many."""
