#!/usr/bin/env python3
"""The benign tail, anatomised: which requests put the engine's p99 over a bound set against an
earlier tree, what they spend their time on, and what it would take to bring them under.

  python scripts/bench_tail.py [--baseline DIR | --baseline-rev REV] [CORPUS.jsonl.gz ...] [--rounds N]
                               [--bound 1.2] [--ablate NAME[,NAME...] ...] [--json FILE]

The baseline is another tree of this project: DIR, or REV of this repository's history exported
with `git archive` (default: 9f2c419, the tree before issue 14, which bounds the benign median
and p99 at +20% over it). Each tree (and each --ablate configuration) is loaded in a process of
its own and judges the corpus's benign requests (default: ../shared/corpus/blazehttp and mgm)
in corpus order, as bench_detect.py judges them: each request's thread CPU time, the best of
--rounds passes, every cache of the engine emptied before each pass (so a pass is one warm run
through the corpus, as in bench_detect.py, and the best of several damps the machine's noise).
The configurations take turns pass by pass, the order rotated every round, so a drift of the
machine's speed falls on all of them alike.

Reported: median and p99 of both trees; the bound (the baseline's p99 x --bound); how many
requests are over it now and how many may be (1% of them); the requests that cross (under the
bound in the baseline, over it now), with their CPU split by part of the engine (readings,
signature scans, each analyser, the rest: parsing and bookkeeping).

--ablate measures the current tree again with parts of the engine switched off, to say what each
costs at the p99: an analyser by name (`xss`, `sqli`, `shell`, ...), `json-strings` (a JSON
document inside a value read as its raw text only) or `base64-tokens` (no base64 token decoded
inside a text). These are measurements, not configurations: each one is a way around the
node that issue 14 closed. `--ablate xss,sqli,shell` switches the three off in one run.

Use this for the p99's anatomy; side-by-side wall times with ModSecurity stay bench_detect.py's.

A tree whose node/detect is compiled (`make native`) is measured compiled; the configurations
that switch parts off or time them patch the modules' functions, so they run the sources
(WALLARM_DETECT_SOURCES=1: a compiled module calls its functions past any patch), and their
split of the CPU is the sources' split.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEFORE_ISSUE_14 = "9f2c419"
SHARED_CORPUS = ROOT.parent / "shared" / "corpus"
DEFAULT_CORPUS = [SHARED_CORPUS / "blazehttp.jsonl.gz", SHARED_CORPUS / "mgm.jsonl.gz"]
WARM_UP_REQUESTS = 2000


# ---------------------------------------------------------------------------- one tree, in its own process


def _import_tree(tree: Path) -> None:
    sys.path[:0] = [str(tree), str(tree / "scripts")]


def _engine_caches_emptied(engine: object) -> None:
    """Every cache the engine and its modules keep, emptied: the next pass starts cold, as the
    benchmark's single pass does (each request then finds what the ones before it left)."""
    for name in ("_cache", "_unit_cache", "_analysed"):
        cache = getattr(engine, name, None)
        if cache is not None:
            cache.clear()
    hits = getattr(engine, "_window_hits", None)
    if hits is not None:
        hits.cache_clear()
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith("node.") or mod is None:
            continue
        for value in list(vars(mod).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear):
                clear()


def _ablate(names: list[str]) -> None:
    """Switch parts of the engine off (measurement only: see the module docstring)."""
    import node.detect
    from node.detect import engine, readings

    if getattr(node.detect, "COMPILED", False):
        raise SystemExit("bench_tail: ablations patch node/detect's functions: run its sources (WALLARM_DETECT_SOURCES=1)")

    for name in names:
        if name == "json-strings":
            readings._json_strings_of = lambda text, search: None
        elif name == "base64-tokens":
            readings._tokens_decoded = lambda text, tried: []
        elif name in engine._DETECTORS:
            engine._DETECTORS[name] = lambda *args: None
        else:
            known = ", ".join([*engine._DETECTORS, "json-strings", "base64-tokens"])
            raise SystemExit(f"bench_tail: nothing to ablate called {name!r} (known: {known})")


class _Parts:
    """Exclusive thread CPU per part of the engine, for the requests being watched."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = {}
        self._stack: list[int] = []
        self.watching = False

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.watching:
                return fn(*args, **kwargs)
            started = time.thread_time_ns()
            self._stack.append(0)
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time_ns() - started
                inner = self._stack.pop()
                self.ns[name] = self.ns.get(name, 0) + spent - inner
                if self._stack:
                    self._stack[-1] += spent
        return timed


def _watch_parts(parts: _Parts) -> None:
    from node.detect import engine, signatures

    engine.Engine._readings = staticmethod(parts.wrap("readings", engine.Engine._readings))
    signatures.SignatureSet.scan = parts.wrap("signature scans", signatures.SignatureSet.scan)
    for name, fn in list(engine._DETECTORS.items()):
        engine._DETECTORS[name] = parts.wrap(name, fn)


def serve(tree: Path, corpus: list[Path], ablate: list[str], watch: set[str]) -> None:
    """One configuration, kept loaded: writes the benign requests' ids, then for each `pass`
    line read, one pass over them (every cache emptied first) as a JSON line: each request's
    thread CPU time (seconds), and for the ids in `watch`, CPU by part of the engine."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # nothing the engine prints may get into the protocol
    _import_tree(tree)
    from bench_detect import as_sent, load_corpus
    from node.detect.engine import Engine

    if ablate:
        _ablate(ablate)
    parts = _Parts()
    if watch:
        _watch_parts(parts)
    records = [r for r in load_corpus(corpus) if r.label == "benign"]
    messages = [as_sent(r.msg) for r in records]
    watched = [r.id in watch for r in records]
    engine = Engine()
    for msg in messages[:WARM_UP_REQUESTS]:
        engine.analyze_request(msg)
    protocol.write(json.dumps({"ids": [r.id for r in records]}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        if line.strip() != "pass":
            break
        _engine_caches_emptied(engine)
        parts.ns.clear()
        times: list[float] = []
        watched_total = 0.0
        for i, msg in enumerate(messages):
            parts.watching = watched[i]
            started = time.thread_time()
            engine.analyze_request(msg)
            spent = time.thread_time() - started
            if watched[i]:
                watched_total += spent
            times.append(spent)
        parts.watching = False
        protocol.write(json.dumps({"cpu_s": times, "parts_ns": parts.ns, "watched_s": watched_total}) + "\n")
        protocol.flush()


# ---------------------------------------------------------------------------- the report


class Configuration:
    """A tree (with parts switched off, or parts watched) in a process of its own, serving passes."""

    def __init__(self, tree: Path, corpus: list[Path], ablate: list[str] | None = None,
                 watch: set[str] | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        watch_file = Path(self._tmp.name) / "watch.json"
        watch_file.write_text(json.dumps(sorted(watch or ())))
        cmd = [sys.executable, __file__, "--serve", str(tree), "--watch-file", str(watch_file), *map(str, corpus)]
        if ablate:
            cmd += ["--ablate", ",".join(ablate)]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        if ablate or watch:
            env["WALLARM_DETECT_SOURCES"] = "1"  # they patch functions (the module docstring)
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ids: list[str] = []
        self.best: list[float] = []
        self.best_parts: dict[str, int] = {}
        self.best_watched = float("inf")

    def ready(self) -> None:
        self.ids = json.loads(self._read())["ids"]
        self.best = [float("inf")] * len(self.ids)

    def one_pass(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write("pass\n")
        self._proc.stdin.flush()
        result = json.loads(self._read())
        self.best = list(map(min, self.best, result["cpu_s"]))
        if result["parts_ns"] and result["watched_s"] < self.best_watched:
            self.best_watched, self.best_parts = result["watched_s"], result["parts_ns"]

    def _read(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise SystemExit(f"bench_tail: a measuring process ended (exit {self._proc.wait()})")
        return line

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)
        self._tmp.cleanup()


def measured(configs: dict[str, Configuration], rounds: int) -> None:
    """`rounds` passes of each configuration, taking turns (the order rotated every round), so a
    drift of the machine's speed falls on all of them alike."""
    for config in configs.values():
        config.ready()
    names = list(configs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            configs[name].one_pass()


def quantiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99)]


def pct(new: float, old: float) -> str:
    return f"{(new / old - 1) * 100:+.0f}%"


def exported(rev: str, into: Path) -> Path:
    """`rev` of this repository as a tree of files in `into` (git archive | tar)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"bench_tail: cannot export {rev} with git archive: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def report(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        baseline_tree = args.baseline or exported(args.baseline_rev, Path(tmp))
        configs = {"baseline": Configuration(baseline_tree, args.corpus), "current": Configuration(ROOT, args.corpus)}
        for names in args.ablate:
            configs["without " + ",".join(names)] = Configuration(ROOT, args.corpus, ablate=names)
        try:
            measured(configs, args.rounds)
        finally:
            for config in configs.values():
                config.close()
    baseline, current = configs["baseline"], configs["current"]
    baseline_name = str(args.baseline) if args.baseline else f"{args.baseline_rev} (git archive)"
    ids = current.ids
    if baseline.ids != ids:
        raise SystemExit("bench_tail: the two trees read different benign requests from the corpus")
    base_med, base_p99 = quantiles(baseline.best)
    cur_med, cur_p99 = quantiles(current.best)
    bound = base_p99 * args.bound
    allowed = len(ids) - int(len(ids) * 0.99)
    over = [i for i, t in enumerate(current.best) if t > bound]
    crossing = [i for i in over if baseline.best[i] <= bound]
    parts_ns: dict[str, int] = {}
    watched_s = 0.0
    if crossing:
        # where the crossing requests' time goes: the current tree once more, alone, those watched
        watched = Configuration(ROOT, args.corpus, watch={ids[i] for i in crossing})
        try:
            measured({"watched": watched}, args.rounds)
        finally:
            watched.close()
        parts_ns, watched_s = watched.best_parts, watched.best_watched
    out: dict = {
        "requests": len(ids),
        "baseline": {"tree": baseline_name, "median_us": base_med * 1e6, "p99_us": base_p99 * 1e6},
        "current": {"tree": str(ROOT), "median_us": cur_med * 1e6, "p99_us": cur_p99 * 1e6},
        "bound_us": bound * 1e6,
        "over_bound": len(over),
        "allowed_over": allowed,
        "crossing": {
            "requests": len(crossing),
            "cpu_ms": sum(current.best[i] for i in crossing) * 1e3,
            "baseline_cpu_ms": sum(baseline.best[i] for i in crossing) * 1e3,
            "parts_ms": {k: v / 1e6 for k, v in sorted(parts_ns.items(), key=lambda kv: -kv[1])},
            "watched_cpu_ms": watched_s * 1e3,
            "ids": [ids[i] for i in crossing],
        },
        "ablations": [],
    }
    for names in args.ablate:
        ablated = configs["without " + ",".join(names)].best
        med, p99 = quantiles(ablated)
        out["ablations"].append({"without": names, "median_us": med * 1e6, "p99_us": p99 * 1e6,
                                 "over_bound": sum(1 for t in ablated if t > bound)})
    return out


def print_report(r: dict, bound_factor: float) -> None:
    base, cur = r["baseline"], r["current"]
    print(f"benign requests: {r['requests']}, thread CPU per request (best of the passes)")
    print(f"  {'tree':<44} {'median':>10} {'p99':>10}")
    print(f"  {'baseline ' + base['tree']:<44} {base['median_us']:>8.1f} µs {base['p99_us']:>8.0f} µs")
    print(f"  {'current ' + cur['tree']:<44} {cur['median_us']:>8.1f} µs {cur['p99_us']:>8.0f} µs"
          f"   ({pct(cur['median_us'], base['median_us'])} / {pct(cur['p99_us'], base['p99_us'])})")
    excess = r["over_bound"] - r["allowed_over"]
    print(f"bound: baseline p99 x {bound_factor} = {r['bound_us']:.0f} µs; requests over it now: {r['over_bound']}, "
          f"allowed: {r['allowed_over']}" + (f"; {excess} must come under" if excess > 0 else " (met)"))
    c = r["crossing"]
    print(f"crossing (under the bound in the baseline, over it now): {c['requests']} requests, "
          f"{c['cpu_ms']:.1f} ms of CPU (baseline {c['baseline_cpu_ms']:.1f} ms)")
    total = c["watched_cpu_ms"]
    if total:
        rest = total - sum(c["parts_ms"].values())
        for name, ms in [*c["parts_ms"].items(), ("the rest (parsing, bookkeeping)", rest)]:
            print(f"  {name:<34} {ms:6.1f} ms  {ms / total * 100:4.0f}%")
    if r["ablations"]:
        print("without parts of the engine (measurements, not configurations):")
        for a in r["ablations"]:
            print(f"  without {','.join(a['without']):<32} median {a['median_us']:6.1f} µs "
                  f"({pct(a['median_us'], base['median_us'])}), p99 {a['p99_us']:5.0f} µs "
                  f"({pct(a['p99_us'], base['p99_us'])}), over the bound {a['over_bound']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpus", nargs="*", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--baseline", type=Path, help="another tree of this project to compare with")
    p.add_argument("--baseline-rev", default=BEFORE_ISSUE_14,
                   help=f"without --baseline: this revision, exported by git archive (default {BEFORE_ISSUE_14})")
    p.add_argument("--rounds", type=int, default=3, help="passes per tree; each request's best is kept")
    p.add_argument("--bound", type=float, default=1.2, help="the p99 bound, as a factor of the baseline's")
    p.add_argument("--ablate", action="append", default=[], type=lambda s: [n for n in s.split(",") if n],
                   help="parts to switch off for one more run of the current tree (repeatable)")
    p.add_argument("--json", type=Path, help="write the report here as JSON")
    p.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # one configuration, in this process
    p.add_argument("--watch-file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    missing = [str(path) for path in args.corpus if not path.is_file()]
    if missing:
        p.error(f"no corpus file {', '.join(missing)} (the ../shared/corpus files are not in this repository)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve is not None:
        watch = set(json.loads(args.watch_file.read_text())) if args.watch_file else set()
        serve(args.serve, args.corpus, args.ablate[0] if args.ablate else [], watch)
        return 0
    r = report(args)
    print_report(r, args.bound)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
