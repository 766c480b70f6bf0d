"""Watch the config file (declarative or a single plugin) and hand every new valid version over; keep the last good one.

Polling (about every 0.5 s) instead of inotify: it works the same on every filesystem and for
editors that replace the file (new inode) as well as those that rewrite it in place. The file
is small, so each poll simply reads it and compares the bytes: a half-written version that is
later completed is never missed, whatever the mtime granularity.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from addon.config import ConfigError
from addon.declarative import Declarative, load_declarative

log = logging.getLogger("wallarm.config")

POLL_INTERVAL_S = 0.5
_MISSING = b"\0missing"


class ConfigWatcher:
    def __init__(self, path: Path, on_valid: Callable[[Declarative], None],
                 on_invalid: Callable[[str], None], interval_s: float = POLL_INTERVAL_S):
        self.path = path
        self._on_valid = on_valid
        self._on_invalid = on_invalid
        self.interval_s = interval_s
        self._seen: bytes | None = None  # bytes of the version last handled (valid or not)
        self._task: asyncio.Task[None] | None = None

    @property
    def seen(self) -> bytes | None:
        """The bytes of the version last handled (the one `on_valid` was just given)."""
        return self._seen

    def prime(self, raw: bytes) -> None:
        """Mark the version loaded at startup as already handled."""
        self._seen = raw

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="wallarm-config-watch")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def check(self) -> None:
        """One poll: read the file; if it changed, validate it and report the outcome once."""
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            if self._seen != _MISSING:
                self._seen = _MISSING
                self._on_invalid(f"{self.path}: cannot read: {e.strerror or e}; keeping the last good config")
            return
        if raw == self._seen:
            return
        self._seen = raw
        try:
            config = load_declarative(raw, base_dir=self.path.resolve().parent, source=str(self.path))
        except ConfigError as e:
            self._on_invalid(f"{e}; keeping the last good config")
            return
        self._on_valid(config)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.check()  # a small local file: reading it inline costs microseconds
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("config watcher failed; will retry")
