"""The attack store interface: what the node writes and the console reads.

One backend ships (SQLite, `node/store/sqlite.py`); another (Postgres, ClickHouse...) only has
to implement `Store`. Writes (`add_attack`, `set_response_status`) are fire-and-forget from the
event loop: the backend batches them off the loop. Reads are coroutines.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Literal

from wallarm_wire.protocol import AttackInfo

ListName = Literal["allow", "deny", "gray"]
LIST_NAMES: tuple[ListName, ...] = ("allow", "deny", "gray")
StoredAction = Literal["blocked", "monitored"]
NodeMode = Literal["off", "monitoring", "safe_blocking", "block"]
NODE_MODES: tuple[NodeMode, ...] = ("off", "monitoring", "safe_blocking", "block")
# What a partially inspected request counts as (docs/node.md, "Partial inspection"): an attack
# (the mode then decides: block, safe_blocking, monitoring), or a finding that is only recorded.
PartialAction = Literal["block", "monitor"]
PARTIAL_ACTIONS: tuple[PartialAction, ...] = ("block", "monitor")
# The attack type a partially inspected request is recorded under (one hit per reason).
PARTIAL_TYPE = "partial_inspection"


# One finding inside a request (type, location, rule id, masked excerpt, score): the same
# shape the wire protocol's verdict carries, so it is the same class.
Hit = AttackInfo


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
class IPEntry:
    list: ListName
    network: str  # normalised CIDR: "203.0.113.7/32", "2001:db8::/32"
    expires_at: float | None = None  # unix seconds; None = never
    comment: str = ""
    created_at: float = 0.0
    id: int | None = None


@dataclass(slots=True)
class ModeOverride:
    """A node mode for a host and/or a path prefix; the most specific match wins."""

    mode: NodeMode
    host: str | None = None  # exact host, case-insensitive; None = any
    path_prefix: str | None = None  # e.g. "/api/admin"; None = any
    partial_inspection: PartialAction | None = None  # None: the default's
    max_body_bytes: int | None = None  # body bytes inspected; None: the node's max_body_bytes


@dataclass(slots=True)
class ModeSettings:
    default: NodeMode
    overrides: list[ModeOverride] = field(default_factory=list)
    partial_inspection: PartialAction = "block"


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


class StoreError(RuntimeError):
    """The store cannot do what was asked (file unreadable, disk full, closed); the message says why."""


class Store(abc.ABC):
    """Attack store, IP lists and persisted node settings."""

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

    # -- node settings that survive a restart (mode and overrides)
    @abc.abstractmethod
    async def load_mode_settings(self) -> ModeSettings | None: ...

    @abc.abstractmethod
    async def save_mode_settings(self, settings: ModeSettings) -> None: ...
