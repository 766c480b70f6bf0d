"""Read a config file without ever blocking or reading without bound.

Both sides read their config while serving (the connector polls its plugin file on the proxy's
event loop; the node reads its YAML on SIGHUP), so a path that names something odd must cost
microseconds and end in a clear error, never a stall:

* a FIFO would block `open()` until a writer appears: opened with O_NONBLOCK, then refused;
* a directory, a device or a socket: refused by `fstat` before any read;
* a 50 MB file: refused by its size before any read, and a file that grows while read is
  cut at the limit and refused too;
* a dangling symlink or a missing file: the OS error, named.

Each error carries an `identity`: the same fault seen again (same error, same file) has the same
identity, so a poller reports it once, not once per poll.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_CONFIG_BYTES = 1024 * 1024  # a plugin or node config is a few KiB; a MiB is already absurd
_READ_CHUNK = 64 * 1024


class ConfigFileError(OSError):
    """The file cannot be used as a config; `str()` says why (without the path)."""

    def __init__(self, message: str, identity: tuple[object, ...]):
        super().__init__(message)
        self.message = message
        self.identity = identity

    def __str__(self) -> str:
        return self.message


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_config_file(path: Path, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed), at most `limit` of them."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigFileError(f"cannot read: {e.strerror or e}", ("open", e.errno)) from None
    try:
        st = os.fstat(fd)
        version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigFileError(f"cannot read: {_kind(st.st_mode)}, not a regular file", ("kind",) + version)
        if st.st_size > limit:
            raise ConfigFileError(f"refused: {st.st_size} bytes, over the {limit}-byte limit for a config file",
                                  ("size",) + version)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            try:
                chunk = os.read(fd, min(_READ_CHUNK, limit + 1 - total))
            except OSError as e:
                raise ConfigFileError(f"cannot read: {e.strerror or e}", ("read", e.errno) + version) from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # grew while read
            raise ConfigFileError(f"refused: more than {limit} bytes (the file grew while read)", ("size",) + version)
        return b"".join(chunks)
    finally:
        os.close(fd)
