"""Hostile inputs through a running node's endpoint: shape x size -> milliseconds to a verdict.

    python scripts/bench_hostile.py [--sizes 1024,65536,1048576] [--shapes run:word,deep:xml]
                                    [--repeat 3] [--budget-ms 50] [--json out.json]

Starts a real node (`python -m node`, block mode, like tests/support/node.py) on free loopback
ports, sends every shape of scripts/hostile_shapes.py at every size over one keep-alive
connection (the best of --repeat tries counts: the machine is shared), prints the table and the
slowest, and then the latency of small messages while a 1 MiB message is being judged.
Bounded: at most len(shapes) x len(sizes) x repeat messages, each with a 30 s timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from hostile_shapes import SHAPES, SIZES, build  # noqa: E402
from tests.support.node import NodeClient, start_node  # noqa: E402
from wallarm_wire import protocol as p  # noqa: E402


def send(client: NodeClient, msg: p.RequestMessage) -> tuple[int, float]:
    """(HTTP status, seconds) for one message, as the connector sends it."""
    data = p.encode_request(msg)
    headers = client._headers(p.new_request_id(), "request", "192.0.2.10", "shop.test", "sync")
    started = time.perf_counter()
    r = client.http.post(client.url, content=data, headers=headers)
    return r.status_code, time.perf_counter() - started


def measure(client: NodeClient, shapes: list[str], sizes: list[int], repeat: int) -> list[dict]:
    rows = []
    for shape in shapes:
        for size in sizes:
            msg = build(shape, size)
            best, status = float("inf"), 0
            for _ in range(repeat):
                status, seconds = send(client, msg)
                best = min(best, seconds)
            rows.append({"shape": shape, "size": size, "ms": round(best * 1000, 2), "status": status})
    return rows


def small_latency_during_large(client_url: str, large: p.RequestMessage, small: p.RequestMessage,
                               tries: int = 5) -> dict:
    """Small-message round trips on a second connection while a 1 MiB message is judged."""
    big = NodeClient(client_url)
    small_client = NodeClient(client_url)
    idle = [send(small_client, small)[1] for _ in range(20)]
    during: list[float] = []
    large_s: list[float] = []
    try:
        for _ in range(tries):
            done = threading.Event()

            def judge_large() -> None:
                large_s.append(send(big, large)[1])
                done.set()

            t = threading.Thread(target=judge_large)
            t.start()
            while not done.is_set():
                during.append(send(small_client, small)[1])
            t.join()
    finally:
        big.close()
        small_client.close()
    during.sort()
    idle.sort()
    return {"large_ms": round(max(large_s) * 1000, 1), "small_idle_p50_ms": round(idle[len(idle) // 2] * 1000, 2),
            "small_during_p50_ms": round(during[len(during) // 2] * 1000, 2),
            "small_during_max_ms": round(during[-1] * 1000, 2), "small_during_count": len(during)}


def table(rows: list[dict], sizes: list[int]) -> str:
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    by = {(r["shape"], r["size"]): r for r in rows}
    head = f"{'shape':24}" + "".join(f"{_kb(s):>11}" for s in sizes)
    lines = [head, "-" * len(head)]
    for shape in shapes:
        cells = []
        for s in sizes:
            r = by[(shape, s)]
            cells.append(f"{r['ms']:>8.1f}{'' if r['status'] in (200, 403) else '!' + str(r['status']):>3}")
        lines.append(f"{shape:24}" + "".join(cells))
    return "\n".join(lines)


def _kb(size: int) -> str:
    return f"{size // 1024} KB" if size < 1024 * 1024 else f"{size // (1024 * 1024)} MB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--budget-ms", type=float, default=50.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes = args.shapes.split(",")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shapes: {unknown}")
    with tempfile.TemporaryDirectory() as tmp:
        node = start_node(Path(tmp), mode="block", extra={"max_body_bytes": 8 * 1024 * 1024})
        try:
            with NodeClient(node) as client:
                send(client, build("run:word", 1024))  # warm connection
                rows = measure(client, shapes, sizes, args.repeat)
            lane = small_latency_during_large(node.endpoint_url, build("padded:json", 1024 * 1024),
                                              build("padded:query", 64))
        finally:
            node.stop()
    print(table(rows, sizes))
    slowest = max(rows, key=lambda r: r["ms"])
    over = [r for r in rows if r["ms"] > args.budget_ms or r["status"] not in (200, 403)]
    print(f"\nslowest: {slowest['shape']} at {_kb(slowest['size'])}: {slowest['ms']} ms (HTTP {slowest['status']})")
    print(f"over {args.budget_ms:.0f} ms or not a verdict: {len(over)} of {len(rows)}"
          + "".join(f"\n  {r['shape']} {_kb(r['size'])}: {r['ms']} ms HTTP {r['status']}" for r in over))
    print(f"small messages while a 1 MB one is judged: {lane}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "slowest": slowest, "over_budget": over,
                                         "budget_ms": args.budget_ms, "lane": lane}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
