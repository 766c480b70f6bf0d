"""Changes one node makes to the shared rules reach every node: PostgreSQL LISTEN/NOTIFY.

A write that changes shared rules (IP lists, mode settings, exceptions) sends `pg_notify` in its
own transaction, so the notification goes out exactly when the change is committed. Each node
keeps one connection LISTENing and hands each payload (a topic) to the node, which reloads that
part from the store. Notifications sent while a node was disconnected are lost, so after every
(re)connect the node is told "all" and reloads everything. Topics that arrive while a reload
runs are gathered and handed over once when it ends: a burst of changes (a seeded list of
thousands of entries, each its own transaction) costs a few reloads, not one per change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import sql

from node.store.base import CHANGE_ALL, CHANGE_TOPICS
from node.store.postgres_schema import CHANGES_CHANNEL

log = logging.getLogger(__name__)

OnChange = Callable[[str], Awaitable[None]]
RETRY_MIN = 0.2  # seconds before reconnecting after the listener lost its connection
RETRY_MAX = 5.0
CONNECT_TIMEOUT = 5


async def notify(conn: psycopg.AsyncConnection, topic: str) -> None:
    """Announce a change to every node; call inside the transaction that makes the change."""
    assert topic in CHANGE_TOPICS, topic
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, topic))


class ChangeListener:
    """One LISTEN connection, kept up (reconnecting with backoff) until `stop`."""

    def __init__(self, dsn: str, on_change: OnChange) -> None:
        self._dsn = dsn
        self._on_change = on_change
        self._tasks: list[asyncio.Task[None]] = []
        self._topics: set[str] = set()  # heard, not handed over yet
        self._heard = asyncio.Event()
        self.connected = asyncio.Event()
        self.reconnects = 0  # connections after the first: each one reloads everything

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(), name="store-change-listener"),
                           asyncio.create_task(self._hand_over(), name="store-change-reloads")]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        delay = RETRY_MIN
        first = True
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True,
                                                             connect_timeout=CONNECT_TIMEOUT)
            except psycopg.Error as err:
                log.warning("store change listener: cannot connect (%s); retrying in %.1fs", err, delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
                continue
            try:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANGES_CHANNEL)))
                self.connected.set()
                if not first:
                    self.reconnects += 1
                    log.info("store change listener reconnected: reloading every shared rule")
                first = False
                delay = RETRY_MIN
                # Changes made before LISTEN took effect were not heard: reload everything once.
                self._hear(CHANGE_ALL)
                async for note in conn.notifies():
                    self._hear(note.payload)
            except psycopg.Error as err:
                log.warning("store change listener lost its connection (%s); reconnecting", err)
            finally:
                self.connected.clear()
                await conn.close()
            await asyncio.sleep(delay)

    def _hear(self, topic: str) -> None:
        if topic not in CHANGE_TOPICS:
            log.warning("store change listener: ignoring unknown topic %.40r", topic)
            return
        self._topics.add(topic)
        self._heard.set()

    async def _hand_over(self) -> None:
        while True:
            await self._heard.wait()
            self._heard.clear()
            topics, self._topics = self._topics, set()
            for topic in [CHANGE_ALL] if CHANGE_ALL in topics else sorted(topics):
                await self._deliver(topic)

    async def _deliver(self, topic: str) -> None:
        try:
            await self._on_change(topic)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one failed reload must not end the listener
            log.exception("reloading %s after a change from another node failed", topic)
