#!/usr/bin/env python3
"""Judge the same corpus records in-process and through the running system; report where they differ.

The system must give the engine's verdicts: a record the engine calls an attack is answered 403 by
mitmdump + the connector + a node in `block` mode, a clean one reaches the upstream. A difference
means the system judged something else than the engine would (a node refusal, a cut body, a
connector that forwarded without a verdict...). Per record: in-process verdict, system status.
Totals: agreements, disagreements both ways, transport errors, and the connector's fail-open
counters by cause (`timeout` among them), read from its /metrics.

Records: the dev half of ../shared/corpus/*.jsonl.gz (split as scripts/replay_corpus.py splits it),
in a deterministic order mixing sources (by a hash of the id), at most --limit of them.
Fail-opens are attributed to records from the connector's log ("no verdict for METHOD PATH");
breaker-open ones are logged once per interval, so they show in the totals only.

  python scripts/replay_compare.py [--shared ../shared] [--limit 2000] [--concurrency 4]
        [--timeout-ms 2000] [--show 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import hashlib
import importlib.util
import json
import logging
import re
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(SCRIPTS))

from replay_corpus import half_of, to_message  # noqa: E402
from replay_system import start_node, start_proxy, stop_all, write_plugin_config  # noqa: E402
from tests.support.procs import ManagedProcess, free_port  # noqa: E402

# the shared tree sits beside the main checkout (../shared) or beside the worktrees' parent
SHARED_CANDIDATES = [REPO.parent / "shared", REPO.parents[1] / "shared"]
log = logging.getLogger("replay_compare")
NO_VERDICT_RE = re.compile(r"\] no verdict for (\S+) (.*?) \((.*)\): ")


def shared_dir() -> Path:
    return next((p for p in SHARED_CANDIDATES if p.is_dir()), SHARED_CANDIDATES[0])


def load_replay_tool(shared: Path) -> ModuleType:
    """../shared/tools/replay.py: its raw request writer, sender and trivial upstream."""
    path = shared / "tools" / "replay.py"
    spec = importlib.util.spec_from_file_location("shared_replay", path)
    if not path.is_file() or spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not found (give --shared)")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def dev_records(corpus_dir: Path, limit: int) -> list[dict]:
    recs: list[dict] = []
    for p in sorted(corpus_dir.glob("*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            recs.extend(r for r in map(json.loads, filter(str.strip, f)) if half_of(r["id"]) == "dev")
    recs.sort(key=lambda r: hashlib.sha256(r["id"].encode()).digest())
    return recs[:limit] if limit else recs


@dataclass
class Outcome:
    record: dict
    engine_blocks: bool
    rules: list[str]
    status: int | None  # None: no answer (transport error)
    seconds: float

    @property
    def system(self) -> str:
        return "error" if self.status is None else "blocked" if self.status == 403 else "passed"

    @property
    def agrees(self) -> bool:
        return self.system == ("blocked" if self.engine_blocks else "passed")


def judge_in_process(recs: list[dict]) -> list[tuple[bool, list[str]]]:
    from node.detect.engine import Engine
    from node.policy import Policy
    from node.settings import NodeSettings

    # what the node in `block` mode with its default settings answers an in-line request:
    # the engine under the node's body limit, then the policy (a partial inspection blocks too)
    engine = Engine(max_body=NodeSettings().max_body_bytes)
    out = []
    for r in recs:
        det = engine.analyze_request(to_message(r))
        decision = Policy.decide("block", frozenset(), det.is_attack, True, bool(det.partial))
        out.append((decision.block, sorted({a.rule_id for a in det.attacks} | {f"partial.{p}" for p in det.partial})))
    return out


async def judge_through_system(tool: ModuleType, recs: list[dict], proxy_port: int, upstream_port: int,
                               concurrency: int, timeout_s: float) -> list[tuple[int | None, float]]:
    server = await asyncio.start_server(tool.upstream_handler, "127.0.0.1", upstream_port)
    sem = asyncio.Semaphore(concurrency)

    async def one(r: dict) -> tuple[int | None, float]:
        async with sem:
            started = time.monotonic()
            try:
                status = await tool.send("127.0.0.1", proxy_port, tool.raw_request(r), timeout_s)
            except Exception:  # noqa: BLE001 - no answer is its own outcome
                status = None
            return status, time.monotonic() - started

    try:
        return await asyncio.gather(*(one(r) for r in recs))
    finally:
        server.close()


def metric_samples(admin_url: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric family from the connector's /metrics."""
    with urllib.request.urlopen(admin_url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, value = line.rsplit(" ", 1)
            out[key[len(name):] or "{}"] = float(value)
    return out


def unjudged_from_log(proxy_log: str) -> collections.Counter[tuple[str, str]]:
    """(method, path) of each request the connector forwarded without a verdict, with its count."""
    return collections.Counter((m.group(1), m.group(2)) for m in NO_VERDICT_RE.finditer(proxy_log))


def report(outcomes: list[Outcome], unjudged: collections.Counter[tuple[str, str]],
           fail_open: dict[str, float], seconds: float, show: int) -> dict:
    kinds = collections.Counter()
    for o in outcomes:
        if o.agrees:
            kinds["agree"] += 1
        elif o.system == "error":
            kinds["no answer"] += 1
        elif o.engine_blocks:
            kinds["engine blocks, system passed"] += 1
        else:
            kinds["engine passes, system blocked"] += 1
    slow = sorted(outcomes, key=lambda o: o.seconds, reverse=True)
    print(f"\n{len(outcomes)} records through the system in {seconds:.1f} s")
    for k in ("agree", "engine blocks, system passed", "engine passes, system blocked", "no answer"):
        print(f"  {k:32} {kinds[k]:7d}")
    total_fail_open = sum(fail_open.values())
    print(f"  connector fail-open total        {total_fail_open:7.0f}  {dict(fail_open) or ''}")
    print(f"  of which timeouts                {sum(v for k, v in fail_open.items() if 'timeout' in k):7.0f}")
    print(f"  slowest: " + ", ".join(f"{o.seconds:.2f} s" for o in slow[:5]))
    shown = 0
    for o in outcomes:
        if o.agrees or shown >= show:
            continue
        shown += 1
        r = o.record
        forwarded = unjudged.get((r["method"], r["uri"][:200]), 0)
        print(f"  DIFF {r['id']} [{r['source']}/{r['label']}/{r['class']}] engine="
              f"{'block' if o.engine_blocks else 'pass'} {o.rules[:3]} system={o.system}"
              f"{' (fail-open)' if forwarded else ''} {o.seconds:.2f} s: {r['method']} {r['uri'][:120]}")
    return {"records": len(outcomes), "seconds": seconds, "outcomes": dict(kinds),
            "fail_open": fail_open, "fail_open_total": total_fail_open,
            "disagreements": [{"id": o.record["id"], "engine_blocks": o.engine_blocks, "rules": o.rules,
                               "system": o.system, "status": o.status, "seconds": round(o.seconds, 3),
                               "fail_open": bool(unjudged.get((o.record["method"], o.record["uri"][:200])))}
                              for o in outcomes if not o.agrees]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=shared_dir(), help="the shared tree (corpus/, tools/replay.py)")
    ap.add_argument("--corpus-dir", type=Path, help="default: SHARED/corpus")
    ap.add_argument("--limit", type=int, default=2000, help="at most N dev-half records (0: all)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--timeout-ms", type=int, default=2000, help="the connector's timeout_ms")
    ap.add_argument("--client-timeout", type=float, default=15.0, help="seconds the replay waits for an answer")
    ap.add_argument("--show", type=int, default=20, help="print N disagreements")
    ap.add_argument("--json", type=Path, help="write the totals and every disagreement here")
    ap.add_argument("--keep-logs", type=Path, help="copy the node and proxy logs here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    tool = load_replay_tool(args.shared)
    corpus_dir = args.corpus_dir or args.shared / "corpus"
    recs = dev_records(corpus_dir, args.limit)
    if not recs:
        log.error("%s: no records", corpus_dir)
        return 2
    t0 = time.monotonic()
    verdicts = judge_in_process(recs)
    log.info("in-process: %d records in %.1f s, %d attacks", len(recs), time.monotonic() - t0,
             sum(v for v, _ in verdicts))

    work = Path(tempfile.mkdtemp(prefix="replay-compare-"))
    procs: list[ManagedProcess] = []
    try:
        node, node_url, _ = start_node(work)
        procs.append(node)
        config = work / "enable-plugin.json"
        write_plugin_config(config, node_url, args.timeout_ms)
        upstream_port, admin_port = free_port(), free_port()
        proxy, proxy_port = start_proxy(config, upstream_port, admin_port)
        procs.append(proxy)
        admin = f"http://127.0.0.1:{admin_port}"
        proxy.wait_http(admin + "/plugins", timeout=30)
        t1 = time.monotonic()
        answers = asyncio.run(judge_through_system(tool, recs, proxy_port, upstream_port, args.concurrency,
                                                   args.client_timeout))
        seconds = time.monotonic() - t1
        fail_open = metric_samples(admin, "wallarm_connector_fail_open_total")
        outcomes = [Outcome(r, blocks, rules, status, took)
                    for r, (blocks, rules), (status, took) in zip(recs, verdicts, answers)]
        summary = report(outcomes, unjudged_from_log(proxy.output()), fail_open, seconds, args.show)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1), "utf-8")
        clean = summary["outcomes"].get("agree", 0) == len(outcomes) and not summary["fail_open_total"]
        return 0 if clean else 1
    finally:
        stop_all(procs, args.keep_logs, work)


if __name__ == "__main__":
    sys.exit(main())
