"""Watch the config file (declarative or a single plugin) and hand every new valid version over; keep the last good one.

Polling (about every 0.5 s) instead of inotify: it works the same on every filesystem and for
editors that replace the file (new inode) as well as those that rewrite it in place. Each poll
reads the file (bounded and non-blocking: wallarm_wire/config_file.py, so a FIFO, a directory or
a 50 MB file costs microseconds) and compares the bytes: a half-written version that is later
completed is never missed, whatever the mtime granularity. A changed version is parsed in a
thread (1 MiB of YAML is most of a second of pure-Python parsing) and applied on the loop.

One error per bad version, not one per poll: a version is the file's bytes, or the read error's
identity (missing, not a regular file, too large). A bad version already reported since the
config in force was applied is not reported again, so a file flapping between a good and a bad
version (or a writer swapping it 100 times a second) logs each bad version once; going back to
the bytes in force is no reload at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from addon.config import ConfigError
from addon.declarative import Declarative, load_declarative
from wallarm_wire.config_file import ConfigFileError, read_config_file

log = logging.getLogger("wallarm.config")

POLL_INTERVAL_S = 0.5
MAX_REPORTED = 1024  # bad versions remembered (digests): a bound, not a policy


class ConfigWatcher:
    def __init__(self, path: Path, on_valid: Callable[[Declarative], None],
                 on_invalid: Callable[[str], None], interval_s: float = POLL_INTERVAL_S):
        self.path = path
        self._on_valid = on_valid
        self._on_invalid = on_invalid
        self.interval_s = interval_s
        self._seen: object = None  # what the last poll found: the bytes, or the read error's identity
        self._in_force: bytes | None = None  # the bytes of the config in force
        self._reported: set[object] = set()  # bad versions reported since it was applied
        self._task: asyncio.Task[None] | None = None

    @property
    def seen(self) -> bytes | None:
        """The bytes of the version last read (the one `on_valid` is being given), None after a read error."""
        return self._seen if isinstance(self._seen, bytes) else None

    def prime(self, raw: bytes) -> None:
        """Mark a version applied elsewhere (at startup, by the Admin API) as the one in force."""
        self._seen = self._in_force = raw
        self._reported.clear()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="wallarm-config-watch")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def check(self) -> None:
        """One poll, all on the caller's thread: read the file; if it changed, validate it and
        report the outcome once (tests; the running watcher parses off the loop, `_poll`)."""
        raw = self._read()
        if raw is not None:
            self._settle(raw, self._parse(raw))

    async def _poll(self) -> None:
        """One poll of the running watcher: the read here (bounded, non-blocking), the parse in a
        thread. Parsing 1 MiB of YAML takes PyYAML's pure-Python loader most of a second, which
        would stall every flow on the proxy's loop."""
        raw = self._read()
        if raw is None:
            return
        outcome = await asyncio.to_thread(self._parse, raw)
        if self._seen is raw:  # not superseded meanwhile (the Admin API primed a newer version)
            self._settle(raw, outcome)

    def _read(self) -> bytes | None:
        """The file's bytes when they are a version to parse; None when there is nothing to do
        (unchanged, back to the version in force, or a read error, reported here once)."""
        try:
            raw = read_config_file(self.path)
        except ConfigFileError as e:
            if e.identity != self._seen:
                self._seen = e.identity
                self._reject(e.identity, f"{self.path}: {e}; keeping the last good config")
            return None
        if raw == self._seen:
            return None
        self._seen = raw
        if raw == self._in_force:
            return None  # back to the version in force: nothing to apply
        return raw

    def _parse(self, raw: bytes) -> Declarative | ConfigError:
        try:
            return load_declarative(raw, base_dir=self.path.resolve().parent, source=str(self.path))
        except ConfigError as e:
            return e

    def _settle(self, raw: bytes, outcome: Declarative | ConfigError) -> None:
        version = hashlib.sha256(raw).digest()
        if isinstance(outcome, ConfigError):
            self._reject(version, f"{outcome}; keeping the last good config")
            return
        try:
            self._on_valid(outcome)
        except Exception as e:  # valid, but cannot be built (e.g. the CA file changed meanwhile)
            log.debug("applying %s failed", self.path, exc_info=True)
            self._reject(version, f"{self.path}: cannot apply: {e}; keeping the last good config")
            return
        self._in_force = raw
        self._reported.clear()

    def _reject(self, version: object, message: str) -> None:
        if version in self._reported:
            return
        if len(self._reported) >= MAX_REPORTED:
            self._reported.clear()
        self._reported.add(version)
        self._on_invalid(message)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("config watcher failed; will retry")
