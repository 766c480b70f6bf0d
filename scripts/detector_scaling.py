#!/usr/bin/env python3
"""How the structural detectors' cost grows with the input: hostile shapes from 1 KB to 1 MB.

  PYTHONPATH=. python scripts/detector_scaling.py [--detectors xss,ssti,sqli] [--repeat 3]

Each detector is called directly on each shape at each size, with no gate (every window is
read: the engine's pre-filter would skip most of them) and no time bound, the worst case. The
report gives the best of --repeat runs in milliseconds and microseconds per KB; a linear
detector keeps us/KB flat from 1 KB to 1 MB (a quadratic one multiplies it by ~1000). The last
column is the ratio of us/KB at 1 MB to us/KB at 8 KB (below 1 KB fixed costs dominate).
This is a measurement for a person to read, not a timed test."""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from node.detect.sqli import detect_sqli
from node.detect.ssti import detect_ssti
from node.detect.xss import detect_xss

SIZES = (1 << 10, 8 << 10, 64 << 10, 256 << 10, 1 << 20)
DETECTORS: dict[str, Callable[..., str | None]] = {"xss": detect_xss, "ssti": detect_ssti, "sqli": detect_sqli}


def _random_html(n: int) -> str:
    rng = random.Random(7)
    parts = []
    size = 0
    while size < n:
        parts.append(rng.choice(["<b>", "</b>", "<a href='/x'>", "text ", "<img src=x alt=\"a>b\">", "'", "\"", " on", "=",
                                 "{{ x }}", "${y}", "/*", "*/", "(", ")", "--", " or ", "1=1 ", "&#x3c;", "javascript"]))
        size += len(parts[-1])
    return "".join(parts)[:n]


def _units(unit: str) -> Callable[[int], str]:
    """`unit` repeated to the size, each copy followed by a random letter: the windows of the
    text all differ, so the detectors' skipping of windows equal to one already judged (which
    makes a strictly periodic flood cheap) does not hide the cost of reading one."""
    def make(n: int) -> str:
        rng = random.Random(n)
        letters = "bcdfghjkmpqvwxz"
        return "".join(unit + rng.choice(letters) for _ in range(n // (len(unit) + 1) + 1))[:n]
    return make


# each shape: runs that make a naive scanner restart at every position (unclosed tags, quotes,
# comments and expressions, openers without closers, separators)
SHAPES: dict[str, Callable[[int], str]] = {
    "unclosed-tags": _units("<a "),
    "unclosed-quote-attrs": _units('<a x="'),
    "quotes": _units("'\""),
    "handlers": _units(" onload="),
    "openers": _units("{{${#{<%"),
    "unclosed-comments": _units("/*"),
    "expression-chain": lambda n: "{{" + _units("a.")(n),
    "dunder-run": lambda n: "{{" + _units("__")(n),
    "parens": _units("@("),
    "scheme-hints": _units("script:"),
    "slashes-digits": _units("/1"),
    "slashes-sql": _units("/1 or"),
    "breakout-ops": _units("'-"),
    "random-html": _random_html,
}


def best_time(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detectors", default="xss,ssti,sqli")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kind", default="query")
    args = ap.parse_args()
    print(f"{'detector':8} {'shape':22}" + "".join(f"{s >> 10:>9} KB" for s in SIZES) + "   us/KB 8K..1M  ratio")
    for name in args.detectors.split(","):
        detect = DETECTORS[name]
        for shape, make in SHAPES.items():
            per_kb = []
            cells = []
            for size in SIZES:
                text = make(size)
                # normalise() keeps an lru_cache of recent texts: a fresh copy per call
                seconds = best_time(lambda: detect(text + " "[: len(text) % 1], args.kind), args.repeat)
                cells.append(f"{seconds * 1000:9.2f} ms")
                per_kb.append(seconds * 1e6 / (size / 1024))
            ratio = per_kb[-1] / per_kb[1] if per_kb[1] else float("nan")
            print(f"{name:8} {shape:22}" + "".join(cells) + f"   {per_kb[1]:6.1f}..{per_kb[-1]:6.1f}  {ratio:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
