"""How the structural detectors' cost grows with the value: each one on hostile shapes built
from its own trigger characters, 1 KB to 1 MB, best of --repeat runs (a measurement, not a test).

    PYTHONPATH=. .venv/bin/python scripts/detector_scaling.py [--detectors shell,ptrav] [--repeat 3] [--max-kb 1024]

Prints milliseconds of thread CPU time per size and the growth from 256 KB to the largest
size divided by the growth in size (1.0 = linear, below 1 when the detector stops early; a quadratic detector shows
~4). Smaller sizes are shown but not compared: below the CPU caches' size the cost per byte is
lower. Thread CPU time, best of --repeat: a busy machine's waits for a core do not count. The detectors are
called directly, without the engine's time bound, so the figure is their own cost.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from node.detect.ldapi import detect_ldapi
from node.detect.nosqli import detect_nosqli
from node.detect.ptrav import detect_ptrav
from node.detect.shell import detect_shell
from node.detect.ssrf import detect_ssrf
from node.detect.windows import normalise
from node.detect.xxe import detect_xxe

Detector = Callable[..., str | None]

# detector -> shape name -> a unit repeated to the size (every unit is what the detector looks
# at: separators, globs, dot segments, URLs, operators, filter openings, declarations)
SHAPES: dict[str, tuple[Detector, str, dict[str, str]]] = {
    "shell": (detect_shell, "query", {
        "separators": "a;", "globs": "/b??/x?z ", "braces": "{a,", "assignments": "a=b;$c",
        "carets": "x^y", "quotes": "a'b'c ", "env-substrings": "%a:~1%", "powershell-ish": "get-x -y ",
    }),
    "ptrav": (detect_ptrav, "query", {
        "dotdot": "../", "dot-segments": "/./", "slashes": "a/", "escapes": "%c0%af..", "spaced": "a .. /b ",
        "sensitive-names": "etc/x/",
    }),
    "ssrf": (detect_ssrf, "query", {
        "urls": "http://0x7f.1/ ", "schemes": "a://", "userinfo": "http://a@", "long-host": "http://" + "1" * 64,
    }),
    "nosqli": (detect_nosqli, "query", {
        "operators": "[$ne]", "braces": "{$", "dollars": "$", "breakout": "';",
    }),
    "ldapi": (detect_ldapi, "query", {
        "breakouts": ")(", "composites": "(&(a=1)", "opens": "(", "items": "(a=*)", "nested": "(&(|(!(",
    }),
    "xxe": (detect_xxe, "body", {
        "entities": '<!ENTITY a "b">', "doctypes": "<!DOCTYPE a SYSTEM ", "includes": "<x:include ",
        "schema": "schemaLocation='a b' ",
    }),
}


def timed(detector: Detector, value: str, kind: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        normalise.cache_clear()  # its cache would serve the repeats their normalised text
        start = time.thread_time()
        detector(value, kind)
        best = min(best, time.thread_time() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-kb", type=int, default=1024)
    parser.add_argument("--detectors", default=",".join(SHAPES), help="comma-separated, of: " + ",".join(SHAPES))
    args = parser.parse_args()
    sizes = [kb * 1024 for kb in (1, 8, 64, 256, 1024) if kb <= args.max_kb]
    print(f"{'detector':8} {'shape':16} " + " ".join(f"{s // 1024:>7} KB" for s in sizes) + "   growth/size")
    worst = 0.0
    for name in args.detectors.split(","):
        detector, kind, shapes = SHAPES[name]
        for shape, unit in shapes.items():
            times = [timed(detector, (unit * (size // len(unit) + 1))[:size], kind, args.repeat) for size in sizes]
            base = sizes.index(256 * 1024) if 256 * 1024 in sizes and sizes[-1] > 256 * 1024 else 0
            ratio = (times[-1] / max(times[base], 1e-6)) / (sizes[-1] / sizes[base])
            worst = max(worst, ratio)
            print(f"{name:8} {shape:16} " + " ".join(f"{t * 1000:7.2f} ms" for t in times) + f"   {ratio:8.2f}")
    print(f"worst growth/size ratio: {worst:.2f} (1.0 = linear)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
