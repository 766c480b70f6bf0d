#!/usr/bin/env python3
"""Write the project's own labelled corpus (scripts/owncorpus) as gzip'd JSON lines.

  python scripts/gen_corpus.py [--out build/own-corpus.jsonl.gz] [--seed 14] [--per-class 240]
  python scripts/gen_corpus.py --show ID [ID ...]   # print those records as HTTP requests

Records are in the ../shared/corpus format ({"id", "source": "own", "label", "class", "method",
"uri", "headers", "body_b64"}) plus "placement" and "encoding". The same seed writes the same
bytes (the gzip header carries no time stamp). --show prints the requests of the given record
ids (bench_detect --own lists missed ones per cell in its --json) as they go on the wire."""

from __future__ import annotations

import argparse
import base64
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


def as_http(rec: dict) -> str:
    head = f"{rec['method']} {rec['uri']} HTTP/1.1\n" + "".join(f"{k}: {v}\n" for k, v in rec["headers"])
    return head + "\n" + base64.b64decode(rec["body_b64"]).decode("utf-8", "backslashreplace")


def show(ids: list[str], seed: int, per_class: int) -> int:
    wanted = set(ids)
    for rec in records(seed, per_class):
        if rec["id"] in wanted:
            wanted.discard(rec["id"])
            print(f"# {rec['id']}\n{as_http(rec)}\n")
    for rid in sorted(wanted):
        print(f"# {rid}: no such record", file=sys.stderr)
    return 1 if wanted else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--per-class", type=int, default=ATTACKS_PER_CLASS, help="distinct attacks per class")
    ap.add_argument("--show", nargs="+", metavar="ID", help="print these records as HTTP requests, write nothing")
    args = ap.parse_args(argv)
    if args.show:
        return show(args.show, args.seed, args.per_class)
    counts = write(args.out, args.seed, args.per_class)
    print(f"{args.out}: {counts['attack']} attack requests, {counts['benign']} benign requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
