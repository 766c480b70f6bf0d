#!/usr/bin/env python3
"""How the structural detectors' cost grows with the input: hostile shapes from 1 KB to 1 MB.

  PYTHONPATH=. python scripts/detector_scaling.py [--detectors xss,ssti,sqli,shell,ptrav,...] [--repeat 3]

Each detector is called directly on each shape at each size, with no gate (every window is
read: the engine's pre-filter would skip most of them) and no time bound, the worst case. The
XSS, SSTI and SQL analysers get the shapes that make a naive scanner restart at every position
(unclosed tags, quotes, comments and expressions, openers without closers); the others get
shapes built from their own trigger characters (separators and globs, dot segments, URLs,
`$operators`, filter openings, declarations). The report gives the best of --repeat runs in
milliseconds of thread CPU time (a busy machine's waits for a core do not count; normalise's
cache is cleared before each run, so normalisation is included) and microseconds per KB; a
linear detector keeps us/KB flat from 1 KB to 1 MB (a quadratic one multiplies it by ~1000).
The last column is the ratio of us/KB at 1 MB to us/KB at 8 KB (below 1 KB fixed costs
dominate; below 1 when the detector stops early). A measurement for a person to read, not a
timed test."""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# this tree's code first: the venv holds a copy of the project that `make install` does not keep
# editable, which a script run without PYTHONPATH would otherwise import, stale after any edit
sys.path.insert(0, str(REPO))

from node.detect.ldapi import detect_ldapi  # noqa: E402
from node.detect.nosqli import detect_nosqli  # noqa: E402
from node.detect.ptrav import detect_ptrav  # noqa: E402
from node.detect.shell import detect_shell  # noqa: E402
from node.detect.sqli import detect_sqli  # noqa: E402
from node.detect.ssrf import detect_ssrf  # noqa: E402
from node.detect.ssti import detect_ssti  # noqa: E402
from node.detect.windows import normalise  # noqa: E402
from node.detect.xss import detect_xss  # noqa: E402
from node.detect.xxe import detect_xxe  # noqa: E402

SIZES = (1 << 10, 8 << 10, 64 << 10, 256 << 10, 1 << 20)
Shape = Callable[[int], str]


def _random_html(n: int) -> str:
    rng = random.Random(7)
    parts = []
    size = 0
    while size < n:
        parts.append(rng.choice(["<b>", "</b>", "<a href='/x'>", "text ", "<img src=x alt=\"a>b\">", "'", "\"", " on", "=",
                                 "{{ x }}", "${y}", "/*", "*/", "(", ")", "--", " or ", "1=1 ", "&#x3c;", "javascript"]))
        size += len(parts[-1])
    return "".join(parts)[:n]


def _units(unit: str) -> Shape:
    """`unit` repeated to the size, each copy followed by a random letter: the windows of the
    text all differ, so the detectors' skipping of windows equal to one already judged (which
    makes a strictly periodic flood cheap) does not hide the cost of reading one."""
    def make(n: int) -> str:
        rng = random.Random(n)
        letters = "bcdfghjkmpqvwxz"
        return "".join(unit + rng.choice(letters) for _ in range(n // (len(unit) + 1) + 1))[:n]
    return make


def _repeat(unit: str) -> Shape:
    """`unit` repeated exactly (a flood of '../' must stay one: a letter between would make
    each copy a path segment of its own)."""
    return lambda n: (unit * (n // len(unit) + 1))[:n]


# runs that make a naive scanner restart at every position
COMMON_SHAPES: dict[str, Shape] = {
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

# detector -> (function, field kind, shapes)
DETECTORS: dict[str, tuple[Callable[..., str | None], str, dict[str, Shape]]] = {
    "xss": (detect_xss, "query", COMMON_SHAPES),
    "ssti": (detect_ssti, "query", COMMON_SHAPES),
    "sqli": (detect_sqli, "query", COMMON_SHAPES),
    "shell": (detect_shell, "query", {
        "separators": _repeat("a;"), "globs": _repeat("/b??/x?z "), "braces": _repeat("{a,"),
        "assignments": _repeat("a=b;$c"), "carets": _repeat("x^y"), "quotes": _repeat("a'b'c "),
        "env-substrings": _repeat("%a:~1%"), "powershell-ish": _repeat("get-x -y "), "separators-varied": _units("a;"),
    }),
    "ptrav": (detect_ptrav, "query", {
        "dotdot": _repeat("../"), "dot-segments": _repeat("/./"), "slashes": _repeat("a/"),
        "escapes": _repeat("%c0%af.."), "spaced": _repeat("a .. /b "), "sensitive-names": _repeat("etc/x/"),
    }),
    "ssrf": (detect_ssrf, "query", {
        "urls": _repeat("http://0x7f.1/ "), "schemes": _repeat("a://"), "userinfo": _repeat("http://a@"),
        "long-host": _repeat("http://" + "1" * 64),
    }),
    "nosqli": (detect_nosqli, "query", {
        "operators": _repeat("[$ne]"), "braces": _repeat("{$"), "dollars": _repeat("$"), "breakout": _repeat("';"),
    }),
    "ldapi": (detect_ldapi, "query", {
        "breakouts": _repeat(")("), "composites": _repeat("(&(a=1)"), "opens": _repeat("("),
        "items": _repeat("(a=*)"), "nested": _repeat("(&(|(!("),
    }),
    "xxe": (detect_xxe, "body", {
        "entities": _repeat('<!ENTITY a "b">'), "doctypes": _repeat("<!DOCTYPE a SYSTEM "),
        "includes": _repeat("<x:include "), "schema": _repeat("schemaLocation='a b' "),
    }),
}


def best_time(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        normalise.cache_clear()  # its cache would serve the repeats their normalised text
        t = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated, of: " + ",".join(DETECTORS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kind", default=None, help="the field kind passed to every detector (default: its own)")
    args = ap.parse_args()
    print(f"{'detector':8} {'shape':22}" + "".join(f"{s >> 10:>9} KB" for s in SIZES) + "   us/KB 8K..1M  ratio")
    for name in args.detectors.split(","):
        detect, kind, shapes = DETECTORS[name]
        for shape, make in shapes.items():
            per_kb = []
            cells = []
            for size in SIZES:
                text = make(size)
                seconds = best_time(lambda: detect(text, args.kind or kind), args.repeat)
                cells.append(f"{seconds * 1000:9.2f} ms")
                per_kb.append(seconds * 1e6 / (size / 1024))
            ratio = per_kb[-1] / per_kb[1] if per_kb[1] else float("nan")
            print(f"{name:8} {shape:22}" + "".join(cells) + f"   {per_kb[1]:6.1f}..{per_kb[-1]:6.1f}  {ratio:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
