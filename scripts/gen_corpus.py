#!/usr/bin/env python3
"""Write the project's own labelled corpus (scripts/owncorpus) as gzip'd JSON lines.

  python scripts/gen_corpus.py [--out build/own-corpus.jsonl.gz] [--seed 14] [--per-class 240]

Records are in the ../shared/corpus format ({"id", "source": "own", "label", "class", "method",
"uri", "headers", "body_b64"}) plus "placement" and "encoding". The same seed writes the same
bytes (the gzip header carries no time stamp)."""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from owncorpus.render import ATTACKS_PER_CLASS, DEFAULT_SEED, records  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "build" / "own-corpus.jsonl.gz"


def write(path: Path, seed: int, per_class: int) -> Counter:
    path.parent.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        for rec in records(seed, per_class):
            gz.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
            counts[rec["label"]] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--per-class", type=int, default=ATTACKS_PER_CLASS, help="distinct attacks per class")
    args = ap.parse_args(argv)
    counts = write(args.out, args.seed, args.per_class)
    print(f"{args.out}: {counts['attack']} attack requests, {counts['benign']} benign requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
