"""Config faults end to end: real mitmdump + the connector + the real node + an upstream, under
light continuous traffic. The plugin file is truncated, garbage, nested too deep (JSON and YAML),
deleted, a directory, a FIFO, a dangling symlink, 50 MB, then swapped 100 times a second; every request is answered correctly
throughout (benign: the upstream's exact body; attack: the block), the last good config keeps
serving, each bad version is one ERROR line and one count, and the proxy's loop never stalls.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support import config_faults
from tests.support.node import start_node
from tests.support.procs import REPO
from tests.support.proxy import start_proxy, start_upstream, upstream_body, write_config

sys.path.insert(0, str(REPO / "scripts"))
from benchproc import parse_prometheus  # noqa: E402

pytestmark = pytest.mark.e2e

ATTACK = "/api/items?id=1%27%20OR%20%271%27%3D%271"
POLL_S = 0.5  # addon/watch.py POLL_INTERVAL_S
SETTLE_S = 3 * POLL_S  # each fault stays for several polls


class Traffic(threading.Thread):
    """About 25 requests/s on one keep-alive connection, every answer checked as it comes."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base, timeout=10.0, trust_env=False)
        self.stop_flag = threading.Event()
        self.sent = 0
        self.wrong: list[str] = []
        self.latencies: list[float] = []

    def run(self) -> None:
        while not self.stop_flag.is_set():
            n = self.sent
            path = ATTACK if n % 5 == 4 else f"/api/items?n={n}"
            started = time.perf_counter()
            try:
                r = self.client.get(path)
            except httpx.HTTPError as e:
                self.wrong.append(f"{path}: {e!r}")
            else:
                self.latencies.append(time.perf_counter() - started)
                if path == ATTACK:
                    if r.status_code != 403:
                        self.wrong.append(f"{path}: attack answered {r.status_code}")
                elif r.status_code != 200 or r.content != upstream_body(path):
                    self.wrong.append(f"{path}: {r.status_code} {r.content[:80]!r}")
            self.sent += 1
            time.sleep(0.04)

    def finish(self) -> None:
        self.stop_flag.set()
        self.join(15)
        self.client.close()


def swap_fast(path: Path, versions: list[bytes], seconds: float, per_second: int = 100) -> int:
    """Replace the file atomically `per_second` times a second, cycling through `versions`."""
    tmp = path.with_name(path.name + ".swap")
    swaps = 0
    started = time.monotonic()
    while (now := time.monotonic()) < started + seconds:
        tmp.write_bytes(versions[swaps % len(versions)])
        os.replace(tmp, path)
        swaps += 1
        time.sleep(max(0.0, started + swaps / per_second - now))  # on a schedule, not after the work
    return swaps


def test_plugin_file_faults_under_traffic(tmp_path: Path) -> None:
    node = start_node(tmp_path / "node", mode="block")
    upstream = start_upstream()
    path = write_config(tmp_path / "enable-plugin.json", node.endpoint_url, timeout_ms=2000)
    good = path.read_bytes()
    proxy = start_proxy(upstream.url, path)
    traffic = Traffic(proxy.url)
    try:
        def metrics() -> dict[str, float]:
            return parse_prometheus(httpx.get(proxy.admin + "/metrics", trust_env=False).text)

        traffic.start()
        time.sleep(SETTLE_S)
        faults = config_faults.faults(good)
        for make in faults.values():
            config_faults.apply(path, make)
            time.sleep(SETTLE_S)
        config_faults.apply(path, lambda p: p.write_bytes(good))
        time.sleep(SETTLE_S)
        after_faults = metrics()
        # A dangling symlink reads as the missing file it is: the same fault, reported once.
        assert after_faults["wallarm_connector_config_errors_total"] == len(faults) - 1
        # swapped 100 times a second between the good version and three new bad ones
        swaps = swap_fast(path, [good, b"{", good[:-7], good.replace(b"wallarm-plugin", b"other")], 3.0)
        assert swaps >= 200  # ~100 a second, kept on schedule
        path.write_bytes(good)
        time.sleep(SETTLE_S)
        after_swaps = metrics()
        seen = after_swaps["wallarm_connector_config_errors_total"] - after_faults["wallarm_connector_config_errors_total"]
        assert 1 <= seen <= 3, seen  # at most one error per bad version, however many polls saw it
        assert after_swaps["wallarm_connector_config_reloads_total"] == 0  # the good version never re-applied
        assert after_swaps["wallarm_connector_config_active"] == 1
        # a new good version is still picked up
        write_config(path, node.endpoint_url, timeout_ms=1500)
        deadline = time.monotonic() + 5
        while metrics()["wallarm_connector_config_reloads_total"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metrics()["wallarm_connector_config_reloads_total"] == 1
        time.sleep(SETTLE_S)
    finally:
        traffic.finish()
        proxy.stop()
        upstream.stop()
        node.stop()
    errors = [line for line in proxy.proc.output().splitlines() if "keeping the last good config" in line]
    assert len(errors) == after_swaps["wallarm_connector_config_errors_total"], errors
    assert traffic.wrong == [] and traffic.sent > 200, (traffic.sent, traffic.wrong[:10])
    worst = max(traffic.latencies)
    # a FIFO would hang the loop, a 50 MB read or a YAML parse on it would stall it for a second
    assert worst < 0.5, f"the proxy stalled: slowest answer {worst:.3f} s"
    print(f"config faults: {traffic.sent} requests, 0 wrong, slowest {worst * 1000:.0f} ms, {swaps} swaps, "
          f"{int(after_swaps['wallarm_connector_config_errors_total'])} errors")
