#!/usr/bin/env python3
"""Score the detection engine in-process on the labelled corpus (no proxy, no node).

The corpus is split by a hash of each record's id into a *dev* half (look at its misses)
and a *check* half (only score it), so over-fitting to records shows as a gap between them.

  python scripts/replay_corpus.py [--corpus-dir ../shared/corpus] [--half dev|check|both]
                                  [--show-misses N] [--show-fp N] [--limit N]
"""

from __future__ import annotations

import argparse
import base64
import collections
import gzip
import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# this tree's code first: the venv holds a copy of the project that `make install` does not keep
# editable, which a script run without PYTHONPATH would otherwise import, stale after any edit
sys.path.insert(0, str(REPO))

from wallarm_wire.protocol import RequestMessage  # noqa: E402
from node.detect.engine import Engine  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def half_of(record_id: str) -> str:
    # salted: the corpus itself is a hash-selected half, so an unsalted hash would not split it
    return "dev" if hashlib.sha256(b"detect-split/" + record_id.encode()).digest()[0] % 2 == 0 else "check"


def to_message(rec: dict) -> RequestMessage:
    headers = [(k.encode("latin-1", "replace"), v.encode("utf-8", "surrogateescape")) for k, v in rec["headers"]]
    body = base64.b64decode(rec.get("body_b64") or "")
    return RequestMessage(rec["method"], rec["uri"], headers, body)


def load(corpus_dir: Path) -> list[dict]:
    recs: list[dict] = []
    for p in sorted(corpus_dir.glob("*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            recs.extend(json.loads(line) for line in f if line.strip())
    return recs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--half", choices=("dev", "check", "both"), default="both")
    ap.add_argument("--show-misses", type=int, default=0, help="print N missed attacks (dev half only)")
    ap.add_argument("--show-fp", type=int, default=0, help="print N blocked benign requests (dev half only)")
    ap.add_argument("--class", dest="only_class", default=None)
    ap.add_argument("--limit", type=int, default=0, help="score at most N records per half")
    args = ap.parse_args()

    engine = Engine()
    recs = load(args.corpus_dir)
    halves = ("dev", "check") if args.half == "both" else (args.half,)
    for half in halves:
        rows = [r for r in recs if half_of(r["id"]) == half]
        if args.only_class:
            rows = [r for r in rows if r["class"] == args.only_class]
        if args.limit:
            rows = rows[: args.limit]
        # per (source, label, class): blocked, total, of the blocked only partly inspected
        stats: dict[tuple[str, str, str], list[int]] = collections.defaultdict(lambda: [0, 0, 0])
        misses, fps = [], []
        t0 = time.perf_counter()
        for r in rows:
            det = engine.analyze_request(to_message(r))
            key = (r["source"], r["label"], r["class"])
            # what the node answers in mode block (partial_inspection: block, the default there)
            blocked = det.is_attack or bool(det.partial)
            stats[key][0] += blocked
            stats[key][1] += 1
            stats[key][2] += blocked and not det.is_attack
            if r["label"] == "attack" and not blocked:
                misses.append(r)
            elif r["label"] == "benign" and blocked:
                fps.append((r, det))
        elapsed = time.perf_counter() - t0
        print(f"\n== {half} half: {len(rows)} records in {elapsed:.1f} s")
        print(f"{'source':10} {'label':7} {'class':11} {'blocked':>8} {'total':>7} {'rate':>7} {'partial':>8}")
        agg: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0, 0])
        for (src, lab, cls), (b, n, p) in sorted(stats.items()):
            print(f"{src:10} {lab:7} {cls:11} {b:8d} {n:7d} {100 * b / n:6.1f}% {p:8d}")
            agg[(src, lab)][0] += b
            agg[(src, lab)][1] += n
            agg[(src, lab)][2] += p
        for (src, lab), (b, n, p) in sorted(agg.items()):
            print(f"{src:10} {lab:7} {'ALL':11} {b:8d} {n:7d} {100 * b / n:6.1f}% {p:8d}")
        if half == "dev":
            import random
            random.Random(7).shuffle(misses)
            random.Random(7).shuffle(fps)
            for r in misses[: args.show_misses]:
                body = base64.b64decode(r.get("body_b64") or "")[:300]
                print("MISS", r["class"], r["uri"][:300], body)
            for r, det in fps[: args.show_fp]:
                print("FP", r["uri"][:200], det.partial, [(a.type, a.location, a.rule_id, a.excerpt) for a in det.attacks])
    return 0


if __name__ == "__main__":
    sys.exit(main())
