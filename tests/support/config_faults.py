"""The ways a config file goes bad, shared by the connector's and the node's config-fault tests.

Each fault replaces whatever is at the path. Tests run as root in CI, where `chmod 000` does not
stop a read: "unreadable" is made instead by what no reader can use as a file (a directory, a
FIFO, a dangling symlink).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

BIG_BYTES = 50 * 1024 * 1024


def remove(path: Path) -> None:
    """Whatever is at `path` (file, symlink, FIFO, empty directory) is gone."""
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


def sparse(path: Path, size: int = BIG_BYTES) -> None:
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: 50 MB on paper, no disk and no time to write


def faults(good: bytes) -> dict[str, Callable[[Path], None]]:
    """{name: make(path)}: each turns `path` (already removed) into one bad version."""
    return {
        "truncated": lambda p: p.write_bytes(good[: len(good) // 2]),
        "garbage": lambda p: p.write_bytes(os.urandom(500)),
        "nested too deep": lambda p: p.write_bytes(b"[" * 200_000),  # valid start, deeper than any stack
        "YAML nested too deep": lambda p: p.write_bytes(b"a: " + b"[" * 200_000),
        "deleted": lambda p: None,
        "a directory": lambda p: p.mkdir(),
        "a FIFO": lambda p: os.mkfifo(p),  # a plain open() would block until a writer came
        "dangling symlink": lambda p: p.symlink_to(p.with_name(p.name + ".nowhere")),
        "50 MB": sparse,
    }


def apply(path: Path, make: Callable[[Path], None]) -> None:
    remove(path)
    make(path)
