"""Linearity of decoding as a search (node/detect/readings.py): CPU time of readings() and of
the whole engine on one value, for hostile and ordinary shapes from 1 KB to 1 MB.

  PYTHONPATH=. .venv/bin/python scripts/bench_readings.py [--sizes 1,8,64,256,1024] [--repeat 3]

Prints, per shape and size (KB), the best thread-CPU time of `readings(value, kind)` and of
`Engine.analyze_value`, the time per KB, whether a bound cut the search ("cut"), and at the end
the largest ratio of time per KB between the biggest and the second smallest size (linear
work keeps it near 1 or under; quadratic work grows it with the size). Paths stop at the
parser's 64 KiB target bound. A measurement, not a test: the numbers depend on the machine
and its load.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# this tree's code first: the venv holds a copy of the project that `make install` does not keep
# editable, which a script run without PYTHONPATH would otherwise import, stale after any edit
sys.path.insert(0, str(REPO))

from node.detect.engine import Engine  # noqa: E402
from node.detect.readings import readings  # noqa: E402
from node.detect.request import MAX_TARGET  # noqa: E402

KB = 1024


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


# name -> (kind, make(size in bytes) -> value)
SHAPES: dict[str, tuple[str, Callable[[int], str]]] = {
    "base64 tokens": ("query", lambda n: _fill(_b64("a' or 1=1-- x ") + " ", n)),
    "base64 whole": ("query", lambda n: _b64(_fill("<b>x</b> ", n * 3 // 4))),
    "nested base64 x4": ("query", lambda n: _b64(_b64(_b64(_b64(_fill("<i>", n // 3)))))),
    "percent runs": ("query", lambda n: _fill("%25", n)),
    "entity runs": ("query", lambda n: _fill("&amp;lt;", n)),
    "js escapes": ("query", lambda n: _fill("\\u003c\\x3e", n)),
    "json in a value": ("json", lambda n: json.dumps([{"k": "v!", "b": _b64("x<y>")} for _ in range(n // 40)])),
    "json strings": ("json", lambda n: json.dumps(["a!"] * (n // 5))),
    "xml in a value": ("json", lambda n: "<a>" + _fill("<b x='1'>t&amp;</b>", n) + "</a>"),
    "path slashes": ("path", lambda n: "/" + _fill("Ab/", n)),
    "path base64 run": ("path", lambda n: "/api/" + _fill("PHN2Zy9vbmxvYWQ9YWxlcnQoMSk+", n)),
    "path odd segments": ("path", lambda n: _fill("/a b", n)),
    "prose": ("json", lambda n: _fill("The quick brown fox jumps over the lazy dog. ", n)),
}


def best_cpu(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,8,64,256,1024", help="value sizes in KB")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    engine = Engine()
    print(f"{'shape':20} {'KB':>5} {'readings ms':>12} {'us/KB':>7} {'engine ms':>10} {'us/KB':>7}  forms cut")
    worst = (0.0, "")
    for name, (kind, make) in SHAPES.items():
        per_kb: list[float] = []
        for size in sizes:
            if kind == "path" and size * KB > MAX_TARGET:
                continue  # the parser reads at most MAX_TARGET characters of a request target
            value = make(size * KB)
            found = readings(value, kind)
            t_read = best_cpu(lambda: readings(value, kind), args.repeat)
            # each run judged afresh: the engine's verdict cache would answer a repeat
            t_all = best_cpu(lambda: engine._cache.clear() or engine.analyze_value(value, f"{kind}.x", kind), args.repeat)
            kb = len(value) / KB
            per_kb.append(t_all / kb)
            print(f"{name:20} {kb:5.0f} {t_read * 1e3:12.2f} {t_read / kb * 1e6:7.1f} {t_all * 1e3:10.2f} "
                  f"{t_all / kb * 1e6:7.1f}  {len(found.forms):5} {'cut' if found.cut else ''}")
        # from 8 KB on: at 1 KB fixed costs (a call, a scan) dominate the time per KB
        base = per_kb[1] if len(per_kb) > 2 else per_kb[0]
        ratio = per_kb[-1] / base if base else 0.0
        if ratio > worst[0]:
            worst = (ratio, name)
    print(f"largest ratio of engine time per KB, the largest size over the second smallest: "
          f"{worst[0]:.2f} ({worst[1]})")


if __name__ == "__main__":
    main()
