"""Response statuses that arrived before their attack was stored, for every backend.

The response may overtake the attack (the node records an attack later, when its request pair
completes); such a status waits here, at most `max_count` entries for `ttl` seconds each, and is
applied when an attack with that request id is written. Used from the store's one writer only.
"""

from __future__ import annotations

import time
from collections import OrderedDict

PENDING_MAX = 10_000  # response statuses waiting for their attack
PENDING_TTL = 300.0  # seconds a pending status waits


class PendingStatuses:
    def __init__(self, max_count: int | None = None, ttl: float | None = None) -> None:
        # The module's values as they are when the store is made (tests lower them).
        self.max_count = PENDING_MAX if max_count is None else max_count
        self.ttl = PENDING_TTL if ttl is None else ttl
        self._items: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.evicted = 0  # statuses that never met their attack

    def put(self, request_id: str, status: int) -> None:
        now = time.monotonic()
        self._items[request_id] = (status, now)
        self._items.move_to_end(request_id)
        while self._items:
            oldest_rid, (_, queued_at) = next(iter(self._items.items()))
            if len(self._items) <= self.max_count and now - queued_at <= self.ttl:
                break
            del self._items[oldest_rid]
            self.evicted += 1

    def take(self, request_id: str) -> int | None:
        """The status waiting for `request_id` (and forget it), None if none or too old."""
        item = self._items.pop(request_id, None)
        if item is None or time.monotonic() - item[1] > self.ttl:
            return None
        return item[0]
