"""Spray a real node's console with wrong tokens from many loopback addresses and report what
got through, what was refused, and the node's memory.

    python scripts/spray_console.py --addresses 1000 --tries 12

All of 127.0.0.0/8 is loopback on Linux, so each address is a distinct client to the node.
Starts its own node on free ports in a temporary directory; bounded by --addresses x --tries.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.node import start_node  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def address(i: int) -> str:
    return f"127.{1 + (i >> 16) % 254}.{(i >> 8) & 255}.{i & 255}"  # 127.1.0.0 and up: not 127.0.0.1


def spray_from(console_url: str, source: str, tries: int) -> Counter:
    statuses: Counter = Counter()
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=console_url, trust_env=False, timeout=10, transport=transport) as http:
        for t in range(tries):
            r = http.get("/api/v1/mode", headers={"Authorization": f"Bearer wrong-{t}-0123456789"})
            statuses[r.status_code] += 1
    return statuses


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addresses", type=int, default=1000)
    ap.add_argument("--tries", type=int, default=12, help="wrong tokens per address, in a row")
    ap.add_argument("--workers", type=int, default=8)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        node = start_node(Path(tmp), mode="monitoring")
        try:
            pid = node.proc.proc.pid
            before = rss_kib(pid)
            started = time.monotonic()
            total: Counter = Counter()
            with concurrent.futures.ThreadPoolExecutor(a.workers) as pool:
                for statuses in pool.map(lambda i: spray_from(node.console_url, address(i), a.tries),
                                         range(a.addresses)):
                    total.update(statuses)
            elapsed = time.monotonic() - started
            after = rss_kib(pid)
            metrics = httpx.get(node.console_url + "/metrics", trust_env=False).text
            with httpx.Client(trust_env=False, transport=httpx.HTTPTransport(local_address="127.0.0.1")) as http:
                owner = http.get(node.console_url + "/api/v1/mode",
                                 headers={"Authorization": f"Bearer {node.token}"}).status_code
        finally:
            node.stop()
    n = a.addresses * a.tries
    print(f"{a.addresses} addresses x {a.tries} wrong tokens = {n} requests in {elapsed:.1f} s "
          f"({n / elapsed:.0f}/s): " + ", ".join(f"{k}: {v}" for k, v in sorted(total.items())))
    print(f"node RSS {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after; "
          f"owner from another address afterwards: {owner}")
    for line in metrics.splitlines():
        if line.startswith("wallarm_node_console_"):
            print(" ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
