"""The attack event stream for SIEMs: one NDJSON line per recorded attack.

Sinks (settings `events:`): a file or stdout (`file: "-"`), and a webhook that receives
batches of lines (`Content-Type: application/x-ndjson`) with retries. The hot path only
puts the event on a bounded queue per sink: a slow disk or a SIEM that is down never slows a
verdict. A full queue drops the event and counts it (`wallarm_node_events_total{result=
"dropped"}`); a batch the webhook still refuses after its retries counts as `failed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from node.store.base import AttackRecord

log = logging.getLogger("node.events")

Count = Callable[[str, str], None]  # (sink, result)


class EventsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str | None = None  # a path (appended to), or "-" for stdout
    webhook_url: str | None = None  # http(s)://; batches POSTed as NDJSON
    webhook_headers: dict[str, str] = {}  # e.g. Authorization for the SIEM's collector
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_retries: int = Field(default=5, ge=0)  # attempts after the first, backing off 0.5 s .. 30 s
    batch_max: int = Field(default=100, gt=0)  # events per write / POST
    queue_max: int = Field(default=10_000, gt=0)  # per sink; beyond it events are dropped and counted

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("webhook_url must start with http:// or https://")
        return v


def event_line(record: AttackRecord, node: str) -> str:
    """The record as one JSON line (the console's fields; the excerpt is already masked)."""
    return json.dumps({
        "type": "attack",
        "time": datetime.fromtimestamp(record.time, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "node": record.node_instance or node,
        "connector": record.instance,
        "request_id": record.request_id,
        "client_ip": record.client_ip,
        "host": record.host,
        "method": record.method,
        "path": record.path,
        "action": record.action,
        "mode": record.mode,
        "reason": record.reason,
        "types": record.types,
        "score": max((h.score for h in record.hits), default=0),
        "attacks": [{"type": h.type, "location": h.location, "rule": h.rule_id, "excerpt": h.excerpt}
                    for h in record.hits],
        "response_status": record.response_status,
    }, ensure_ascii=False, separators=(",", ":"))


class _Sink:
    """One bounded queue and the task that drains it in batches."""

    name = ""

    def __init__(self, config: EventsConfig, count: Count) -> None:
        self.config = config
        self.count = count
        self.queue: asyncio.Queue[str] = asyncio.Queue(config.queue_max)
        self.task: asyncio.Task[None] | None = None

    def offer(self, line: str) -> None:
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self.count(self.name, "dropped")

    def start(self) -> None:
        self.task = asyncio.create_task(self._drain(), name=f"events-{self.name}")

    async def _drain(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.config.batch_max and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await self.write(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one failed batch must not end the stream
                log.exception("event sink %s: a batch of %d event(s) was lost", self.name, len(batch))
                self.count(self.name, "failed")

    async def write(self, batch: list[str]) -> None:
        raise NotImplementedError

    async def stop(self, grace: float) -> None:
        """Deliver what is queued (up to `grace` seconds), then stop."""
        if self.task is None:
            return
        deadline = asyncio.get_running_loop().time() + grace
        while not self.queue.empty() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.close()

    async def close(self) -> None:
        pass


class FileSink(_Sink):
    name = "file"

    def __init__(self, config: EventsConfig, count: Count) -> None:
        super().__init__(config, count)
        assert config.file is not None
        self._out: IO[str] = sys.stdout if config.file == "-" else Path(config.file).open("a", encoding="utf-8")

    async def write(self, batch: list[str]) -> None:
        text = "".join(line + "\n" for line in batch)
        await asyncio.to_thread(self._write, text)  # disk I/O off the loop
        for _ in batch:
            self.count(self.name, "sent")

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    async def close(self) -> None:
        if self._out is not sys.stdout:
            self._out.close()


class WebhookSink(_Sink):
    name = "webhook"
    MAX_BACKOFF = 30.0

    def __init__(self, config: EventsConfig, count: Count) -> None:
        super().__init__(config, count)
        self._session: aiohttp.ClientSession | None = None

    async def write(self, batch: list[str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.webhook_timeout_seconds))
        body = "".join(line + "\n" for line in batch).encode()
        headers = {"Content-Type": "application/x-ndjson", **self.config.webhook_headers}
        delay = 0.5
        for attempt in range(self.config.webhook_retries + 1):
            problem = await self._post(body, headers)
            if problem is None:
                for _ in batch:
                    self.count(self.name, "sent")
                return
            if problem.startswith("refused"):  # 4xx other than 408/429: sending it again will not help
                break
            if attempt < self.config.webhook_retries:
                log.warning("event webhook: %s; retrying in %.1fs", problem, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.MAX_BACKOFF)
        log.error("event webhook: %s; %d event(s) lost", problem, len(batch))
        for _ in batch:
            self.count(self.name, "failed")

    async def _post(self, body: bytes, headers: dict[str, str]) -> str | None:
        """None when delivered, else what went wrong ("refused ..." when retrying is useless)."""
        assert self._session is not None and self.config.webhook_url is not None
        try:
            async with self._session.post(self.config.webhook_url, data=body, headers=headers) as r:
                await r.read()
                if r.status < 300:
                    return None
                if 400 <= r.status < 500 and r.status not in (408, 429):
                    return f"refused with HTTP {r.status}"
                return f"HTTP {r.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            return f"{type(e).__name__}: {e}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class EventStream:
    """What the endpoint calls for each recorded attack; nothing when no sink is configured."""

    def __init__(self, config: EventsConfig, node: str, count: Count) -> None:
        self._node = node
        self.sinks: list[_Sink] = []
        if config.file:
            self.sinks.append(FileSink(config, count))
        if config.webhook_url:
            self.sinks.append(WebhookSink(config, count))

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def publish(self, record: AttackRecord) -> None:
        if not self.sinks:
            return
        line = event_line(record, self._node)
        for sink in self.sinks:
            sink.offer(line)

    async def stop(self, grace: float = 5.0) -> None:
        await asyncio.gather(*(sink.stop(grace) for sink in self.sinks))
