"""The out-of-band queue: bounded, drained by background workers, drop-and-count when full.

The client's latency never depends on the node: `offer` never waits, and a full queue drops the
message (and counts it) instead of growing without bound. Full means either bound: a count of
messages and a total of bytes (a message may carry up to `max_body_bytes` twice, so a count
alone would let 10,000 large messages hold gigabytes while the node is slow). A worker takes whatever backlog is
waiting (up to `batch`) and hands it over in one go, so under load the node client can pipeline
it in one write instead of paying a round of syscalls per message.

At low rates there is no backlog to batch, and each message would cost a send that wakes the
node, the node's work and the read of its answer, right when the proxy is busy with the next
request. So the worker that finds fewer than `batch` messages waits up to `linger_s` for more
before sending (Kafka's `linger.ms`): mirrored messages reach the node some milliseconds later,
with a fraction of the wake-ups (numbers in docs/decisions.md). Messages stay queued while a
worker lingers, so a stop or a resize loses none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger("wallarm.mirror")

T = TypeVar("T")

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class Mirror(Generic[T]):
    def __init__(self, deliver: Callable[[list[T]], Awaitable[None]], on_drop: Callable[[], None],
                 capacity: int = 10_000, workers: int = 4, batch: int = 32, linger_s: float = 0.0,
                 max_bytes: int = DEFAULT_MAX_BYTES, size_of: Callable[[T], int] = lambda item: 0):
        self._deliver = deliver
        self._on_drop = on_drop
        self._size_of = size_of
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0  # the queued messages' sizes, by `size_of`
        self.worker_count = workers
        self.batch = batch
        self.linger_s = linger_s
        self._collecting = asyncio.Lock()  # one worker gathers a batch at a time
        self._arrived = asyncio.Event()
        self._queue: asyncio.Queue[T] = asyncio.Queue(capacity)
        self._workers: list[asyncio.Task[None]] = []

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def running(self) -> bool:
        return bool(self._workers)

    def offer(self, item: T) -> bool:
        size = self._size_of(item)
        if self.bytes + size > self.max_bytes and self.bytes:  # a lone message always fits
            self._on_drop()
            return False
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._on_drop()
            return False
        self.bytes += size
        self._arrived.set()
        return True

    def _take(self, queue: asyncio.Queue[T]) -> T:
        item = queue.get_nowait()
        if queue is self._queue:
            self.bytes -= self._size_of(item)
        return item

    def start(self) -> None:
        if self._workers:
            return
        self._workers = [asyncio.get_running_loop().create_task(self._work(), name=f"wallarm-mirror-{i}")
                         for i in range(self.worker_count)]

    def resize(self, capacity: int, workers: int, linger_s: float, max_bytes: int | None = None) -> None:
        """Apply a reloaded config's sizes, keeping queued messages that still fit."""
        self.linger_s = linger_s
        if max_bytes is not None:
            self.max_bytes = max_bytes  # applies to the next offers; what is queued stays
        if capacity == self.capacity and workers == self.worker_count:
            return
        was_running = self.running
        self.stop()
        old = self._queue
        self._queue = asyncio.Queue(capacity)
        self.capacity, self.worker_count = capacity, workers
        self.bytes = 0
        while not old.empty():
            self.offer(old.get_nowait())
        if was_running:
            self.start()

    def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        self._workers = []

    async def join(self) -> None:
        """Wait until everything queued so far was handled (tests, orderly shutdown)."""
        await self._queue.join()

    async def _gather(self, queue: asyncio.Queue[T]) -> list[T]:
        """The next batch: what is queued, after lingering for more if that is little."""
        async with self._collecting:
            while queue.empty():
                self._arrived.clear()
                await self._arrived.wait()
            if self.linger_s and queue.qsize() < self.batch:
                await asyncio.sleep(self.linger_s)
            items: list[T] = []
            while len(items) < self.batch and not queue.empty():
                items.append(self._take(queue))
            return items

    async def _work(self) -> None:
        queue = self._queue
        while True:
            items = await self._gather(queue)
            try:
                await self._deliver(items)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad message must never kill the worker
                log.exception("mirror delivery failed")
            finally:
                for _ in items:
                    queue.task_done()
