"""Config faults, in process: the bounded reader and the watcher's one-error-per-bad-version rule.

The end-to-end run (real mitmdump, node and upstream under traffic) is in
tests/test_config_faults_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from addon.config import ConfigError, load_config
from addon.declarative import Declarative
from addon.watch import ConfigWatcher
from wallarm_wire.config_file import MAX_CONFIG_BYTES, ConfigFileError, read_config_file
from tests.support import config_faults
from tests.support.proxy import write_config

GOOD_URL = "http://127.0.0.1:9/"


def test_reader_refuses_what_is_not_a_small_regular_file(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.json", GOOD_URL)
    assert read_config_file(good) == good.read_bytes()
    cases: dict[str, Path] = {}
    (tmp_path / "dir").mkdir()
    cases["a directory"] = tmp_path / "dir"
    os.mkfifo(tmp_path / "fifo")  # would block a plain open() until a writer came
    cases["a FIFO"] = tmp_path / "fifo"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    cases["No such file"] = tmp_path / "dangling"
    big = tmp_path / "big.json"
    config_faults.sparse(big)  # 50 MB: the size alone must refuse it
    cases[f"over the {MAX_CONFIG_BYTES}-byte limit"] = big
    for expected, path in cases.items():
        started = time.perf_counter()
        with pytest.raises(ConfigFileError, match=expected):
            read_config_file(path)
        assert time.perf_counter() - started < 0.05, path  # never a stall


def test_reader_cuts_a_file_at_the_limit(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_bytes(b"x" * 1001)
    assert read_config_file(p, limit=1001) == b"x" * 1001
    with pytest.raises(ConfigFileError, match="over the 1000-byte limit"):
        read_config_file(p, limit=1000)


class Recorder:
    def __init__(self, path: Path):
        self.valid: list[Declarative] = []
        self.errors: list[str] = []
        self.watcher = ConfigWatcher(path, self.valid.append, self.errors.append)
        self.watcher.prime(path.read_bytes())


def test_each_fault_is_reported_once_and_the_good_version_is_not_reapplied(tmp_path: Path) -> None:
    path = write_config(tmp_path / "enable-plugin.json", GOOD_URL)
    good = path.read_bytes()
    r = Recorder(path)
    messages = {"truncated": "invalid JSON", "garbage": "invalid JSON", "nested too deep": "invalid JSON",
                "YAML nested too deep": "invalid YAML",
                "deleted": "No such file",
                "a directory": "a directory", "a FIFO": "a FIFO", "dangling symlink": "No such file",
                "50 MB": "byte limit"}
    bad = config_faults.faults(good)
    for name, make in bad.items():
        config_faults.apply(path, make)
        before = len(r.errors)
        for _ in range(5):  # polls: the same bad version is reported once
            r.watcher.check()
        # a dangling symlink reads as a missing file: the same fault, already reported
        assert len(r.errors) == before + (name != "dangling symlink"), (name, r.errors[before:])
        assert any(messages[name] in e and "keeping the last good config" in e for e in r.errors), name
    assert r.valid == []
    # back to the version in force: nothing to apply, nothing to report
    config_faults.remove(path)
    path.write_bytes(good)
    r.watcher.check()
    assert r.valid == [] and len(r.errors) == len(bad) - 1


def test_flapping_between_good_and_bad_reports_each_bad_version_once(tmp_path: Path) -> None:
    path = write_config(tmp_path / "enable-plugin.json", GOOD_URL)
    good = path.read_bytes()
    bad = [b"{", good[:-5], b"\x00" * 40]
    r = Recorder(path)
    for i in range(300):  # a writer swapping the file as fast as polls come
        path.write_bytes(good if i % 2 == 0 else bad[i % 3])
        r.watcher.check()
    assert r.valid == [] and len(r.errors) == 3
    # a new good version is applied once; after it, an old bad version is news again
    write_config(path, GOOD_URL, timeout_ms=700)
    r.watcher.check()
    r.watcher.check()
    assert [d.global_plugin.config.timeout_ms for d in r.valid] == [700]  # type: ignore[union-attr]
    path.write_bytes(bad[0])
    r.watcher.check()
    assert len(r.errors) == 4


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file: the directory, FIFO and dangling "
                                               "symlink cases make a file unreadable for root instead")
def test_chmod_000_is_refused_once(tmp_path: Path) -> None:
    path = write_config(tmp_path / "enable-plugin.json", GOOD_URL)
    r = Recorder(path)
    path.chmod(0)
    for _ in range(3):
        r.watcher.check()
    assert len(r.errors) == 1 and "Permission denied" in r.errors[0]


def test_a_huge_ca_file_is_refused_without_loading_it(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    config_faults.sparse(ca)
    path = write_config(tmp_path / "enable-plugin.json", "https://node.example:5050", node_ca_file=str(ca))
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="node_ca_file: .* is over 4194304 bytes: not a CA bundle"):
        load_config(path)
    assert time.perf_counter() - started < 0.05


def test_a_version_that_cannot_be_applied_is_reported_once(tmp_path: Path) -> None:
    path = write_config(tmp_path / "enable-plugin.json", GOOD_URL)
    applied: list[int] = []
    errors: list[str] = []

    def apply(decl: Declarative) -> None:
        timeout_ms = decl.global_plugin.config.timeout_ms  # type: ignore[union-attr]
        if timeout_ms == 999:
            raise ssl_error  # what building the node client's TLS context may raise
        applied.append(timeout_ms)

    ssl_error = OSError("the CA file changed meanwhile")
    watcher = ConfigWatcher(path, apply, errors.append)
    watcher.prime(path.read_bytes())
    write_config(path, GOOD_URL, timeout_ms=999)
    for _ in range(3):
        watcher.check()
    assert applied == [] and len(errors) == 1 and "cannot apply: the CA file changed meanwhile" in errors[0]
    write_config(path, GOOD_URL, timeout_ms=700)
    watcher.check()
    assert applied == [700] and len(errors) == 1


async def test_the_running_watcher_parses_off_the_event_loop(tmp_path: Path) -> None:
    """A 1 MiB YAML version costs PyYAML's pure-Python loader most of a second: the running watcher
    parses it in a thread, so the proxy's loop keeps turning meanwhile."""
    path = write_config(tmp_path / "enable-plugin.json", GOOD_URL)
    errors: list[str] = []
    watcher = ConfigWatcher(path, lambda d: None, errors.append, interval_s=0.02)
    watcher.prime(path.read_bytes())
    path.write_bytes(b"a: " + b"x" * (MAX_CONFIG_BYTES - 10))  # valid YAML, not a config
    started = time.perf_counter()
    watcher.start()
    worst_gap, last = 0.0, time.perf_counter()
    try:
        while not errors and time.perf_counter() - started < 20:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            worst_gap, last = max(worst_gap, now - last), now
    finally:
        watcher.stop()
    assert len(errors) == 1 and "keeping the last good config" in errors[0]
    assert worst_gap < 0.15, f"the loop stalled {worst_gap * 1000:.0f} ms"
