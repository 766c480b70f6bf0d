"""Delivering the mirror queue's batches (addon/mirror.py) to the node, and what their answers mean.

Consecutive messages of the same config share one pipelined write. Out-of-band nothing can be
blocked: a node refusal (4xx other than 403) means a request went upstream and was never
inspected, so it is counted (`node_refusals_total{delivery="async"}`) and logged at ERROR.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from addon.active import ActiveConfig
from addon.http1 import Answer
from addon.metrics import Metrics
from addon.node_client import NodeCallError
from addon.verdicts import REFUSAL, VERDICT, refusal_reason, status_kind
from wallarm_wire import protocol

log = logging.getLogger("wallarm.mirror")

DROP_LOG_INTERVAL_S = 10.0  # drops come in floods: one line per interval, the count in the metric


@dataclass(slots=True)
class MirrorItem:
    active: ActiveConfig
    head: bytes
    body: bytes
    request_id: str
    msgtype: str  # protocol.MSGTYPE_REQUEST or MSGTYPE_RESPONSE

    def size(self) -> int:
        """What the item holds in memory, for the mirror queue's byte bound."""
        return len(self.head) + len(self.body)


class MirrorDelivery:
    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self._last_drop_log = float("-inf")

    def count_drop(self) -> None:
        """A message the full queue refused: counted always, logged at most every DROP_LOG_INTERVAL_S."""
        self.metrics.mirror_dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            self._last_drop_log = now
            log.warning("mirror queue full (the node takes messages slower than they come): dropping; "
                        "%d dropped so far (wallarm_connector_mirror_dropped_total)", self.metrics.mirror_dropped)

    async def deliver(self, items: list[MirrorItem]) -> None:
        """Send a backlog; consecutive messages of the same config share one pipelined write."""
        start = 0
        while start < len(items):
            active = items[start].active
            end = start + 1
            while end < len(items) and items[end].active is active:
                end += 1
            await self._deliver_group(active, items[start:end])
            start = end

    async def _deliver_group(self, active: ActiveConfig, items: list[MirrorItem]) -> None:
        # Pipelined messages are answered one after the other: each gets its own allowance.
        timeout_s = active.timeouts.mirror_s * len(items)
        started = time.perf_counter()
        try:
            if len(items) == 1:
                outcomes: list[Answer | NodeCallError] = [await active.client.send(items[0].head, items[0].body,
                                                                                   timeout_s)]
            else:
                outcomes = await active.client.send_many([(i.head, i.body) for i in items], timeout_s)
        except NodeCallError as e:
            outcomes = [e] * len(items)
        finally:
            self.metrics.node_latency["async"].observe(time.perf_counter() - started)
        failed: NodeCallError | None = None
        for item, outcome in zip(items, outcomes):
            if isinstance(outcome, NodeCallError):
                self.metrics.mirror_failed[outcome.cause] += 1
                failed = failed or outcome
                continue
            kind = status_kind(outcome.status)
            if kind == VERDICT:
                self.metrics.mirror_sent += 1
                continue
            self.metrics.mirror_failed[kind] += 1
            if kind != REFUSAL:
                log.warning("[%s] mirror: node answered HTTP %d", item.request_id, outcome.status)
                continue
            self.metrics.node_refusals[(str(outcome.status), protocol.DELIVERY_ASYNC)] += 1
            if item.msgtype == protocol.MSGTYPE_REQUEST:
                log.error("[%s] the node refused a mirrored request (HTTP %d: %s): it went upstream and was "
                          "NOT inspected", item.request_id, outcome.status, refusal_reason(outcome))
            else:
                log.warning("[%s] the node refused a mirrored response (HTTP %d: %s)", item.request_id,
                            outcome.status, refusal_reason(outcome))
        if failed is not None and failed.cause != "breaker_open":
            unsent = sum(isinstance(o, NodeCallError) for o in outcomes)
            log.warning("[%s] mirror to node failed (%d message(s)): %s", items[0].request_id, unsent, failed)
