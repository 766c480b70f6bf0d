"""Join a request and its response by request id, whichever arrives first.

Memory is bounded twice: an entry waits at most `ttl` seconds, and at most `cap` entries wait.
Both kinds of eviction are counted by side. A request whose response never comes is normal
when the connector does not inspect responses; a response whose request never comes means the
request was lost (dropped by the connector's mirror queue, or sent to another node).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from node.store.base import Hit, NodeMode


@dataclass(slots=True)
class RequestSeen:
    """What a later response needs to know about its request."""

    time: float
    client_ip: str
    host: str
    method: str
    path: str
    mode: NodeMode
    instance: str
    recorded: bool  # an attack record with this request id was queued to the store


@dataclass(slots=True)
class ResponseSeen:
    status: int
    hits: list[Hit] = field(default_factory=list)


@dataclass(slots=True)
class _Entry:
    created: float
    value: RequestSeen | ResponseSeen


class Pairing:
    def __init__(self, ttl_seconds: float = 60.0, max_entries: int = 100_000,
                 on_evict: Callable[[str, str], None] | None = None):
        self.ttl = ttl_seconds
        self._on_evict = on_evict
        self.cap = max_entries
        self._pending: OrderedDict[str, _Entry] = OrderedDict()  # oldest first
        # (reason, side) -> count; reason is "expired" or "capacity", side "request"/"response"
        self.evictions: dict[tuple[str, str], int] = {}
        self.joined = 0

    def __len__(self) -> int:
        return len(self._pending)

    def request_seen(self, request_id: str, seen: RequestSeen, now: float | None = None) -> ResponseSeen | None:
        """Returns the response if it came first (the pair is complete and forgotten)."""
        waiting = self._take(request_id, ResponseSeen)
        if waiting is not None:
            return waiting  # type: ignore[return-value]
        self._put(request_id, seen, now)
        return None

    def response_seen(self, request_id: str, seen: ResponseSeen, now: float | None = None) -> RequestSeen | None:
        """Returns the request if it came first (the pair is complete and forgotten)."""
        waiting = self._take(request_id, RequestSeen)
        if waiting is not None:
            return waiting  # type: ignore[return-value]
        self._put(request_id, seen, now)
        return None

    def sweep(self, now: float | None = None) -> None:
        """Drop what waited longer than the TTL (called on every insert and periodically)."""
        now = time.monotonic() if now is None else now
        deadline = now - self.ttl
        pending = self._pending
        while pending:
            rid, entry = next(iter(pending.items()))
            if entry.created > deadline:
                break
            del pending[rid]
            self._count("expired", entry)

    # -- internals
    def _take(self, request_id: str, kind: type) -> RequestSeen | ResponseSeen | None:
        entry = self._pending.get(request_id)
        if entry is None or not isinstance(entry.value, kind):
            return None  # nothing waiting, or the same side again (a retry): the newer one replaces it
        del self._pending[request_id]
        self.joined += 1
        return entry.value

    def _put(self, request_id: str, value: RequestSeen | ResponseSeen, now: float | None) -> None:
        now = time.monotonic() if now is None else now
        pending = self._pending
        if request_id in pending:
            del pending[request_id]  # re-insert at the young end
        pending[request_id] = _Entry(now, value)
        self.sweep(now)
        while len(pending) > self.cap:
            _, oldest = pending.popitem(last=False)
            self._count("capacity", oldest)

    def _count(self, reason: str, entry: _Entry) -> None:
        side = "request" if isinstance(entry.value, RequestSeen) else "response"
        key = (reason, side)
        self.evictions[key] = self.evictions.get(key, 0) + 1
        if self._on_evict is not None:
            self._on_evict(reason, side)
