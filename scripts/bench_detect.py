#!/usr/bin/env python3
"""Detection quality and cost of the node's engine, in-process, one thread; optionally side by
side with ModSecurity v3 + OWASP CRS (the field's yardstick) on the very same requests.

  python scripts/bench_detect.py [CORPUS.jsonl.gz ...] [--peer modsecurity] [--paranoia N]
                                 [--json FILE] [--plot FILE.png] [--limit N] [--benign-only]
                                 [--hostile [--repeat N]] [--no-progress] [--passes N] [--node-from DIR]
                                 [--own [FILE] [--own-per-cell N] [--own-classes CLS,..] [--own-markdown FILE]]

Input: corpus files in the ../shared/corpus format (gzip'd JSON lines {"id", "source",
"label", "class", "method", "uri", "headers", "body_b64"}); with none, the project's own
labelled cases (tests/cases/*.yaml, as tests/test_detect_cases.py places them): source `cases`,
and source `cases-encoded` for the attacks in GoTestWAF's encodings (classed by encoding).
Every request is first shaped the way ../shared/tools/replay.py puts it on the wire (Host
added when missing, Content-Length set, Connection: close), then judged by each engine.

Blocked means: for `node`, what the node answers in mode `block` (`Engine.analyze_request`
finds an attack, or inspected it only in part: node/server.py `_conclude` + node/policy.py
`decide`); for `modsecurity`, a 403 intervention after phase 2 (CRS anomaly scoring at its default threshold 5).

Reports per source and class: attacks blocked (TPR), benign passed (TNR), balanced accuracy
(TPR+TNR)/2 - on a source without benign records TNR is null and the balanced accuracy is
the mean over the classes present, i.e. the TPR (and the other way round) - and each engine's
wall time per request (median, p99, max; all requests and benign only; thread CPU time too).
When both engines run, they take turns on blocks of --block requests (the same requests for
both, alternating which goes first), so machine load drifts over both alike and their time
ratio is meaningful on a shared machine, while each engine runs warm, request after request,
as in its own server (request-by-request turns let each engine evict the other's CPU caches:
on this machine that doubled the node's median).

--passes N judges the corpus N times, each pass with a new engine (and the same peer), and
takes each request's median time over the passes: the p99 of one pass moves by +-10% from run
to run on a shared machine, the median of three much less. Each pass's own figures are kept
(`by_pass`), and the verdicts must agree between passes. --node-from DIR times the engine of
another checkout (a `git worktree add DIR BASE`) with this harness: the issue's "before / after"
comparison, both sides measured the same way.

--own judges the project's own corpus (scripts/owncorpus, issue 14: every attack class's grammar
in GoTestWAF's placements x encodings, and benign look-alikes): FILE as scripts/gen_corpus.py
writes it, or generated on the fly without one; --own-per-cell N keeps at most N attacks of
each class x placement x encoding cell (the same ones every run), --own-classes sqli,xss only
those classes' attacks (and every benign request). Its report, per engine:
attacks blocked per class x placement x encoding ('!' on a cell of >= 20 cases under 98%) and
benign blocked per placement, in the text output and under "own" in --json.

--hostile also times a hostile-input suite (huge nesting, 1 MB values, thousands of
parameters, deep encodings, regex-bomb shapes), --repeat times each, in the node's engine
(issue 4: no request, hostile ones included, over 20 ms). Not in the peer: ModSecurity + CRS
3.3.4 takes over 30 s on each of three of those shapes, 1-7 s on others.
--benign-only (or --max-benign N = --benign-only --limit N) times the corpus's benign requests
alone, issue 4's latency benchmark.
"""

from __future__ import annotations

import argparse
import base64
import gc
import gzip
import hashlib
import json
import os
import platform
import statistics
import sys
import time
import timeit
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

REPO = Path(__file__).resolve().parents[1]
# this tree's code first: the venv holds a copy of the project that `make install` does not keep
# editable, which a script run without PYTHONPATH would otherwise import, stale after any edit
sys.path.insert(0, str(REPO))

from wallarm_wire.protocol import RequestMessage  # noqa: E402
from tests.support.cases import LabelledRequest, labelled_cases  # noqa: E402
from owncorpus.report import format_own, markdown_own, own_report  # noqa: E402

if TYPE_CHECKING:
    from peers.modsecurity import ModSecurityPeer
    from node.detect.engine import Detection, Engine

NODE, MODSECURITY, BASE = "node", "modsecurity", "base"
PEERS = (MODSECURITY,)
# requests the same harness would never measure: they only pay first-call costs (hyperscan
# scratch, ModSecurity's first transactions and PCRE JIT), which a running server paid long ago
WARM_UP_ROUNDS = 20

Judge = Callable[[RequestMessage], bool]


# ---------------------------------------------------------------------------- input


def record_message(rec: dict) -> RequestMessage:
    headers = [(k.encode("latin-1", "replace"), v.encode("utf-8", "surrogateescape")) for k, v in rec["headers"]]
    return RequestMessage(rec["method"], rec["uri"], headers, base64.b64decode(rec.get("body_b64") or ""))


def labelled(rec: dict) -> LabelledRequest:
    return LabelledRequest(rec["id"], rec["source"], rec["label"], rec.get("class") or "", record_message(rec),
                           rec.get("placement") or "", rec.get("encoding") or "")


def load_corpus(paths: Iterable[Path]) -> list[LabelledRequest]:
    out: list[LabelledRequest] = []
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.append(labelled(json.loads(line)))
    return out


OWN = "own"


def load_own(path: str) -> list[LabelledRequest]:
    """The own corpus: from the file scripts/gen_corpus.py wrote, or generated now ("")."""
    if path:
        return load_corpus([Path(path)])
    from owncorpus.render import records as own_records

    return [labelled(rec) for rec in own_records()]


def sample_cells(records: list[LabelledRequest], per_cell: int) -> list[LabelledRequest]:
    """At most `per_cell` attacks of each own-corpus class x placement x encoding cell (the
    same ones every run), every benign one, and every record of other sources."""
    if not per_cell:
        return records
    cells: dict[tuple[str, str, str], list[LabelledRequest]] = defaultdict(list)
    out: list[LabelledRequest] = []
    for r in records:
        if r.source == OWN and r.label == "attack":
            cells[(r.cls, r.placement, r.encoding)].append(r)
        else:
            out.append(r)
    for rs in cells.values():
        out.extend(sorted(rs, key=lambda r: hashlib.sha256(r.id.encode()).digest())[:per_cell])
    return out


_WIRE_DROPPED = (b"connection", b"content-length", b"transfer-encoding")


def as_sent(msg: RequestMessage) -> RequestMessage:
    """The request as replay.py writes it on the wire, i.e. as a proxy or WAF in front receives
    it: framing headers replaced, a Host when the record has none."""
    headers = [(k, v) for k, v in msg.headers if k.lower() not in _WIRE_DROPPED]
    if not any(k.lower() == b"host" for k, _ in headers):
        headers.append((b"Host", b"waf.test"))
    headers.append((b"Connection", b"close"))
    if msg.body or msg.method in ("POST", "PUT", "PATCH"):
        headers.append((b"Content-Length", str(len(msg.body)).encode()))
    return RequestMessage(msg.method, msg.target, headers, msg.body, msg.http_version)


def sample(records: list[LabelledRequest], limit: int) -> list[LabelledRequest]:
    """About `limit` records, the same ones every run: each (source, label) stratum kept in
    proportion but never below 50 records (or all it has), so small strata are not lost."""
    if not limit or limit >= len(records):
        return records
    strata: dict[tuple[str, str], list[LabelledRequest]] = defaultdict(list)
    for r in records:
        strata[(r.source, r.label)].append(r)
    out: list[LabelledRequest] = []
    for rs in strata.values():
        k = min(len(rs), max(50, round(limit * len(rs) / len(records))))
        out.extend(sorted(rs, key=lambda r: hashlib.sha256(r.id.encode()).digest())[:k])
    return out


# ---------------------------------------------------------------------------- engines


def node_blocks(det: Detection) -> bool:
    # node/server.py hands `detection.attacks` on only when `is_attack`; policy.decide blocks
    # in mode `block` on any hit, and on a partial inspection (partial_inspection: block)
    return (det.is_attack and bool(det.attacks)) or bool(det.partial)


def node_judge(engine: Engine) -> Judge:
    return lambda msg: node_blocks(engine.analyze_request(msg))


def engine_origin() -> dict[str, Any]:
    """Where the imported engine came from: its checkout, and whether node/detect ran compiled
    by mypyc (make native) or from its sources."""
    return {"node_tree": str(Path(sys.modules["node"].__file__ or "").resolve().parents[1]),
            "node_compiled": bool(getattr(sys.modules.get("node.detect"), "COMPILED", False))}


def engine_class(tree: Path | None) -> type[Engine]:
    """This checkout's engine, or with `tree` the one of another checkout (a `git worktree` or
    `git archive` of an earlier commit), judged by this very harness: a before/after comparison
    then differs in the engine only, not in how it is timed. A compiled checkout (`make native`
    there) has its mypyc modules in node/detect and their shared library at its root."""
    if tree is not None:
        if not (tree / "node" / "detect" / "engine.py").is_file():
            raise SystemExit(f"bench_detect: --node-from {tree}: no node/detect/engine.py there")
        sys.path.insert(0, str(tree.resolve()))
    from node.detect.engine import Engine

    return Engine


@dataclass(slots=True)
class Timings:
    blocked: list[bool]
    wall_us: list[float]
    cpu_us: list[float]


def timed(judge: Judge, msg: RequestMessage, into: Timings) -> bool:
    c0 = time.thread_time_ns()
    t0 = time.perf_counter_ns()
    blocked = judge(msg)
    into.wall_us.append((time.perf_counter_ns() - t0) / 1000)
    # CPU time of this thread: what the engine costs, without the waits of a shared machine
    into.cpu_us.append((time.thread_time_ns() - c0) / 1000)
    into.blocked.append(blocked)
    return blocked


def warm_up_requests() -> list[RequestMessage]:
    ua = (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/121.0")
    host = (b"Host", b"warm.up.example")
    return [as_sent(m) for m in (
        RequestMessage("GET", "/warm/up?q=shoes&page=2", [host, ua]),
        RequestMessage("GET", "/warm/up?q=%27%20or%201%3D1--&x=%3Cscript%3E", [host, ua]),
        RequestMessage("POST", "/warm/json", [host, ua, (b"Content-Type", b"application/json")], b'{"a": {"b": [1, "c"]}}'),
        RequestMessage("POST", "/warm/form", [host, ua, (b"Content-Type", b"application/x-www-form-urlencoded")], b"a=1&b=two"),
        RequestMessage("POST", "/warm/xml", [host, ua, (b"Content-Type", b"application/xml")], b"<a><b>c</b></a>"),
    )]


def warm_up(judges: dict[str, Judge]) -> None:
    for _ in range(WARM_UP_ROUNDS):
        for msg in warm_up_requests():
            for judge in judges.values():
                judge(msg)


class GcPauses:
    """The collector's pauses while installed: a full collection lands inside whichever
    request triggered it and shows up as that request's max, so the report says how many."""

    def __init__(self) -> None:
        self.pauses_ms: dict[int, list[float]] = defaultdict(list)
        self._started = 0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.pauses_ms[info["generation"]].append((time.perf_counter_ns() - self._started) / 1e6)

    def __enter__(self) -> Self:
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)

    def summary(self) -> dict[str, dict]:
        return {f"gen{g}": {"count": len(p), "max_ms": max(p), "total_ms": sum(p)}
                for g, p in sorted(self.pauses_ms.items())}


# an engine's turn: judge records[start:end] into the Timings, one request after the other
Turn = Callable[[int, int, Timings], None]


def judge_block(judge: Judge, msgs: list[RequestMessage], start: int, end: int, into: Timings) -> None:
    for msg in msgs[start:end]:
        timed(judge, msg, into)


def in_process(judge: Judge, records: list[LabelledRequest]) -> Turn:
    msgs = [r.msg for r in records]
    return lambda start, end, into: judge_block(judge, msgs, start, end, into)


def run(records: list[LabelledRequest], turns: dict[str, Turn], progress: bool, block: int) -> dict[str, Timings]:
    """Every request through every engine: `block` requests through one engine, the same ones
    through the others, then the next block, alternating the order. Blocks a fraction of a
    second long keep the engines under the same machine load; each engine still runs
    consecutive requests, warm, as it would in its own server."""
    from tqdm import tqdm

    out = {name: Timings([], [], []) for name in turns}
    order = list(turns.items())
    with tqdm(total=len(records), desc="requests", unit="req", disable=not progress, file=sys.stderr,
              mininterval=0.5) as bar:
        for k, start in enumerate(range(0, len(records), block)):
            end = min(start + block, len(records))
            for name, turn in (order if k % 2 == 0 else order[::-1]):
                turn(start, end, out[name])
            bar.update(end - start)
    return out


# ---------------------------------------------------------------------------- the base engine
# --base DIR: the engine of another checkout in a child process (two versions of the `node`
# package cannot share one interpreter), taking its turns in the same run. The child times
# each request itself, so the pipe costs nothing of what is measured.


class BaseEngine:
    """The parent's handle on the child that runs --base's engine."""

    def __init__(self, tree: Path, records: list[LabelledRequest]) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no `node` imported yet
        self._conn, child = ctx.Pipe()
        messages = [(r.msg.method, r.msg.target, r.msg.headers, r.msg.body, r.msg.http_version) for r in records]
        self._proc = ctx.Process(target=serve_base, args=(child, str(tree), messages), daemon=True)
        self._proc.start()
        child.close()
        self.meta: dict = self._conn.recv()

    def new_engine(self) -> None:
        """A new engine in the child, warmed as the parent's are."""
        self._conn.send(("new", 0, 0))
        self._conn.recv()

    def turn(self, start: int, end: int, into: Timings) -> None:
        self._conn.send(("judge", start, end))
        blocked, wall_us, cpu_us = self._conn.recv()
        into.blocked += blocked
        into.wall_us += wall_us
        into.cpu_us += cpu_us

    def close(self) -> None:
        if self._proc.is_alive():
            self._conn.send(("end", 0, 0))
        self._proc.join(timeout=10)


def serve_base(conn: Any, tree: str, messages: list[tuple]) -> None:
    """The child: --base's engine (its `node` package first on the path), judging the blocks
    the parent names."""
    engine = engine_class(Path(tree))
    msgs = [RequestMessage(*m) for m in messages]
    conn.send(engine_origin())
    judge: Judge | None = None
    while True:
        cmd, start, end = conn.recv()
        if cmd == "new":
            judge = None
            gc.unfreeze()
            judge = node_judge(engine())
            warm_up({BASE: judge})
            gc.freeze()  # as in the parent: the corpus is the harness's data
            conn.send(True)
        elif cmd == "judge":
            assert judge is not None
            t = Timings([], [], [])
            judge_block(judge, msgs, start, end, t)
            conn.send((t.blocked, t.wall_us, t.cpu_us))
        else:
            return


def changed_verdicts(base: Timings, node: Timings, records: list[LabelledRequest]) -> dict[str, int]:
    """How this tree's verdicts differ from --base's, request by request."""
    out = {"attacks_now_blocked": 0, "attacks_no_longer_blocked": 0, "benign_now_blocked": 0, "benign_no_longer_blocked": 0}
    for rec, before, after in zip(records, base.blocked, node.blocked):
        if before != after:
            kind = "attacks" if rec.label == "attack" else "benign"
            out[f"{kind}_{'now' if after else 'no_longer'}_blocked"] += 1
    return out


def per_request_median(passes: list[Timings]) -> Timings:
    """One Timings of several passes over the same requests: each request's median wall and CPU
    time. A single pass's p99 moves by +-10% here from run to run (an interrupt or the other
    core's load lands on a request at random, and the tail is where it shows); the median of
    three passes keeps a request's time unless two of its three runs were disturbed."""
    first = passes[0]
    return Timings(first.blocked,
                   [statistics.median(ts) for ts in zip(*(p.wall_us for p in passes))],
                   [statistics.median(ts) for ts in zip(*(p.cpu_us for p in passes))])


def verdicts_differing(passes: list[Timings]) -> list[int]:
    """The requests whose verdict was not the same in every pass: the engine's verdicts do not
    depend on chance, so these met a time bound in one pass and not in another."""
    return [i for i, v in enumerate(zip(*(p.blocked for p in passes))) if len(set(v)) > 1]


# ---------------------------------------------------------------------------- scoring


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def balanced(tpr: float | None, tnr: float | None) -> float | None:
    # the mean recall over the labels present: with one label only, that label's recall
    present = [x for x in (tpr, tnr) if x is not None]
    return sum(present) / len(present) if present else None


def tally(labels: list[str], blocked: list[bool]) -> dict:
    attacks = sum(1 for lab in labels if lab == "attack")
    benign = len(labels) - attacks
    attacks_blocked = sum(1 for lab, b in zip(labels, blocked) if lab == "attack" and b)
    benign_blocked = sum(1 for lab, b in zip(labels, blocked) if lab == "benign" and b)
    tpr = rate(attacks_blocked, attacks)
    tnr = rate(benign - benign_blocked, benign)
    return {"tpr": tpr, "tnr": tnr, "balanced_accuracy": balanced(tpr, tnr), "attacks": attacks,
            "attacks_blocked": attacks_blocked, "benign": benign, "benign_blocked": benign_blocked}


def score_sources(records: list[LabelledRequest], blocked: list[bool]) -> dict[str, dict]:
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_source[r.source].append(i)
    out = {}
    for source, idx in by_source.items():
        row = tally([records[i].label for i in idx], [blocked[i] for i in idx])
        if not row["benign"]:
            row["note"] = "no benign records: tnr is null, balanced_accuracy = tpr"
        elif not row["attacks"]:
            row["note"] = "no attack records: tpr is null, balanced_accuracy = tnr"
        by_class: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            by_class[records[i].cls].append(i)
        row["classes"] = {cls: tally([records[i].label for i in ci], [blocked[i] for i in ci])
                          for cls, ci in sorted(by_class.items())}
        out[source] = row
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    # nearest rank: the smallest value with at least q of the values at or below it
    rank = max(1, -(-len(sorted_values) * q // 1))
    return sorted_values[int(rank) - 1]


def time_stats(values: list[float]) -> dict | None:
    if not values:
        return None
    v = sorted(values)
    return {"median": statistics.median(v), "p99": percentile(v, 0.99), "max": v[-1], "n": len(v)}


SLOWEST_SHOWN = 5


def slowest(records: list[LabelledRequest], t: Timings) -> list[dict]:
    """The requests that cost an engine the most wall time, to look into."""
    worst = sorted(range(len(records)), key=lambda i: t.wall_us[i], reverse=True)[:SLOWEST_SHOWN]
    return [{"id": records[i].id, "source": records[i].source, "label": records[i].label,
             "wall_us": t.wall_us[i], "cpu_us": t.cpu_us[i]} for i in worst]


def benign_indexes(records: list[LabelledRequest]) -> list[int]:
    return [i for i, r in enumerate(records) if r.label == "benign"]


def engine_report(records: list[LabelledRequest], t: Timings) -> dict:
    benign = benign_indexes(records)
    own = [i for i, r in enumerate(records) if r.source == OWN]
    out = {
        "sources": score_sources(records, t.blocked),
        "time_us": time_stats(t.wall_us),
        "cpu_us": time_stats(t.cpu_us),
        "benign_time_us": time_stats([t.wall_us[i] for i in benign]),
        "benign_cpu_us": time_stats([t.cpu_us[i] for i in benign]),
        "requests": len(records),
        "slowest": slowest(records, t),
    }
    if own:
        out["own"] = own_report([records[i] for i in own], [t.blocked[i] for i in own])
    return out


def pass_stats(records: list[LabelledRequest], t: Timings) -> dict:
    """One pass's wall times alone, as a single-pass run reports them."""
    return {"time_us": time_stats(t.wall_us), "benign_time_us": time_stats([t.wall_us[i] for i in benign_indexes(records)])}


RATIO_PREFIX = {"time_us": "", "benign_time_us": "benign_", "cpu_us": "cpu_", "benign_cpu_us": "benign_cpu_"}


def ratios(node: dict, peer: dict) -> dict[str, float]:
    """Peer time / node time per statistic (how many times faster the node's engine is):
    `median`, `p99` on wall time over all requests, then benign_, cpu_, benign_cpu_ ones."""
    out = {}
    for key, prefix in RATIO_PREFIX.items():
        if node.get(key) and peer.get(key):
            for stat in ("median", "p99"):
                if node[key][stat]:
                    out[prefix + stat] = peer[key][stat] / node[key][stat]
    return out


# ---------------------------------------------------------------------------- hostile inputs


def _req(target: str = "/", body: bytes = b"", ctype: str | None = None, headers: list | None = None) -> RequestMessage:
    h = [(b"Host", b"api.example"), (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")]
    if ctype:
        h.append((b"Content-Type", ctype.encode()))
    return RequestMessage("POST" if body else "GET", target, h + (headers or []), body)


def hostile_suite() -> dict[str, RequestMessage]:
    mb = 1024 * 1024
    deep = "%25" * 8 + "3Cscript%3E"
    return {
        "json-nesting-100k": _req("/api", b"[" * 100_000 + b"]" * 100_000, "application/json"),
        "json-nesting-objects": _req("/api", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
        "json-1mb-string": _req("/api", json.dumps({"a": "x' or " * (mb // 6)}).encode(), "application/json"),
        "json-10k-keys": _req("/api", json.dumps({f"k{i}": f"v'{i}" for i in range(10_000)}).encode(), "application/json"),
        "query-1mb-value": _req("/s?q=" + "a%27+or+" * (mb // 9)),
        "query-5k-params": _req("/s?" + "&".join(f"p{i}=%27x{i}" for i in range(5000))),
        "form-1mb-dots": _req("/f", b"x=" + b"../" * (mb // 3), "application/x-www-form-urlencoded"),
        "deep-url-encoding": _req("/s?q=" + deep),
        "base64-nesting": _req("/s?q=" + urllib.parse.quote(base64.b64encode(base64.b64encode(base64.b64encode(b"<script>alert(1)</script>" * 50))).decode())),
        "redos-quotes": _req("/s?q=" + urllib.parse.quote("'" * 60_000)),
        "redos-parens": _req("/s?q=" + urllib.parse.quote("(" * 30_000 + ")" * 30_000)),
        "redos-angle": _req("/s?q=" + urllib.parse.quote("<a " * 20_000)),
        "redos-dollar-brace": _req("/s?q=" + urllib.parse.quote("${" * 20_000 + "}" * 20_000)),
        "entity-flood": _req("/s?q=" + urllib.parse.quote("&#x3c;" * 50_000)),
        "xml-billion-laughs": _req("/x", (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">' + b"".join(b'<!ENTITY a%d "&a%d;&a%d;">' % (i, i - 1, i - 1) for i in range(1, 30)) + b']><l>&a29;</l>'), "application/xml"),
        "xml-1mb-tags": _req("/x", b"<a>" * (mb // 3), "application/xml"),
        "multipart-2k-parts": _req("/u", b"".join(b'--B\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\'%d\r\n' % (i, i) for i in range(2000)) + b"--B--\r\n", "multipart/form-data; boundary=B"),
        "gzip-bomb": _req("/g", gzip.compress(b"A" * (50 * mb)), "text/plain", [(b"Content-Encoding", b"gzip")]),
        "200-headers": _req("/", headers=[(f"X-H{i}".encode(), b"a'; ls -la | id " * 20) for i in range(190)]),
        "shell-space-run": _req("/s?q=" + urllib.parse.quote("; cat" + " " * 16_000 + "!")),
        "xml-unclosed-comments": _req("/x", b"<!--" * 60_000, "application/xml"),
        "xml-unclosed-tags": _req("/x", b"<a x=\"" * 40_000, "application/xml"),
        "sql-unclosed-comments": _req("/s?q=" + urllib.parse.quote("'/*" * 5000)),
        "cookie-flood": _req("/", headers=[(b"Cookie", "; ".join(f"c{i}=%27{i}" for i in range(5000)).encode())]),
    }


def run_hostile(judge: Judge, repeat: int, progress: bool) -> dict:
    """Worst wall and CPU time of each hostile shape over `repeat` runs, and the verdict."""
    from tqdm import tqdm

    suite = {name: as_sent(msg) for name, msg in hostile_suite().items()}
    cases = {}
    for case, msg in tqdm(suite.items(), desc="hostile", unit="case", disable=not progress, file=sys.stderr):
        t = Timings([], [], [])
        for _ in range(repeat):
            timed(judge, msg, t)
        cases[case] = {"max_us": max(t.wall_us), "cpu_max_us": max(t.cpu_us), "blocked": t.blocked[-1]}
    return {"cases": cases, "worst_us": max(c["max_us"] for c in cases.values()),
            "worst_cpu_us": max(c["cpu_max_us"] for c in cases.values())}


# ---------------------------------------------------------------------------- output


def pct(x: float | None) -> str:
    return "     -" if x is None else f"{100 * x:6.2f}"


def us(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1000:.2f} ms" if x >= 1000 else f"{x:.1f} us"


def print_report(report: dict) -> None:
    engines = report["engines"]
    names = list(engines)
    head = f"{'source':14} {'class':26} {'attacks':>7} {'benign':>7}"
    for n in names:
        head += f" | {n[:11]:>11} TPR%   TNR%   BAL%"
    print(head)
    first = engines[names[0]]["sources"]
    for source, row in first.items():
        rows = [("*", row)]
        if len(row["classes"]) > 1:
            rows += list(row["classes"].items())
        for cls, r in rows:
            line = f"{source:14} {cls[:26]:26} {r['attacks']:7} {r['benign']:7}"
            for n in names:
                s = engines[n]["sources"][source] if cls == "*" else engines[n]["sources"][source]["classes"][cls]
                line += f" | {'':11} {pct(s['tpr'])} {pct(s['tnr'])} {pct(s['balanced_accuracy'])}"
            print(line)
    print()
    print(f"{'time per request':28} {'median':>10} {'p99':>10} {'max':>10}   (wall; thread CPU median)")
    for n in names:
        for key, label in (("time_us", "all"), ("benign_time_us", "benign")):
            st = engines[n].get(key)
            if st:
                cpu = engines[n].get(key.replace("time", "cpu"))
                print(f"{n + ' (' + label + ')':28} {us(st['median']):>10} {us(st['p99']):>10} {us(st['max']):>10}"
                      f"   n={st['n']}, cpu median {us(cpu['median'])}")
    for n in names:
        by_pass = engines[n].get("by_pass")
        if by_pass:
            print(f"{n}: each request's median over {len(by_pass)} passes; benign p99 by pass "
                  + ", ".join(us(p["benign_time_us"]["p99"]) for p in by_pass if p["benign_time_us"])
                  + f"; verdicts differing between passes: {engines[n]['verdicts_differing_between_passes']}")
    if report.get("node_vs_base"):
        r, v = report["node_vs_base"], report["verdicts_vs_base"]
        print(f"time ratio {NODE}/{BASE} (this tree's engine against {report['meta']['base_tree']}, same run): "
              f"benign median {r['benign_median']:.3f}x, p99 {r['benign_p99']:.3f}x; "
              f"all median {r['median']:.3f}x, p99 {r['p99']:.3f}x; benign CPU p99 {r['benign_cpu_p99']:.3f}x")
        by_pass = report.get("node_vs_base_by_pass")
        if by_pass:
            print("  benign p99 by pass: " + ", ".join(f"{p['benign_p99']:.3f}x" for p in by_pass))
        print("  verdicts against the base: " + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in v.items()))
    if report.get("ratio"):
        r = report["ratio"]
        print(f"time ratio {MODSECURITY}/{NODE}: median {r['median']:.1f}x, p99 {r['p99']:.1f}x"
              + (f"; benign median {r['benign_median']:.1f}x" if "benign_median" in r else "")
              + f"; thread CPU median {r.get('cpu_median', float('nan')):.1f}x")
    for n in names:
        hostile = engines[n].get("hostile")
        if hostile:
            worst = max(hostile["cases"].items(), key=lambda kv: kv[1]["max_us"])
            print(f"{n}: worst hostile request {us(hostile['worst_us'])} wall, {us(hostile['worst_cpu_us'])} CPU "
                  f"({worst[0]}); {len(hostile['cases'])} shapes")
    for n in names:
        if "own" in engines[n]:
            print()
            print(format_own(n, engines[n]["own"]))
    m = report["meta"]
    full = m["gc_pauses"].get("gen2")
    if full:
        print(f"full collections during the run: {full['count']}, longest {full['max_ms']:.1f} ms "
              "(each lands in one request's time)")
    print(f"node engine: {'compiled (mypyc)' if m.get('node_compiled') else 'sources'}")
    print(f"{m['requests']} requests, {m['elapsed_s']:.1f} s; reference loop {m['reference_loop_us']:.1f} us "
          f"(a quiet core: ~8-10 us); load average {m['loadavg_end']:.2f} on {m['machine']['cpus']} CPUs")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = report["engines"]
    names = list(engines)
    sources = list(engines[names[0]]["sources"])
    metrics = ("tpr", "tnr", "balanced_accuracy")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [2.2, 1]})
    groups = [(s, m) for s in sources for m in metrics]
    width = 0.8 / len(names)
    for k, n in enumerate(names):
        vals = [engines[n]["sources"][s][m] for s, m in groups]
        xs = [i + k * width for i in range(len(groups))]
        ax1.bar(xs, [100 * v if v is not None else 0 for v in vals], width, label=n)
        for x, v in zip(xs, vals):
            ax1.text(x, 1, "n/a" if v is None else f"{100 * v:.0f}", ha="center", va="bottom", fontsize=6,
                     rotation=90, color="black" if v is None else "white")
    ax1.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(groups))])
    ax1.set_xticklabels([f"{s}\n{m.replace('balanced_accuracy', 'BA').upper()}" for s, m in groups], fontsize=7)
    ax1.set_ylabel("%")
    ax1.set_ylim(0, 118)
    ax1.set_title("attacks blocked (TPR), benign passed (TNR), balanced accuracy", fontsize=10)
    ax1.legend(loc="upper center", ncol=len(names), fontsize=8)
    stats = ("median", "p99", "max")
    for k, n in enumerate(names):
        st = engines[n]["time_us"]
        ax2.bar([i + k * width for i in range(len(stats))], [st[s] for s in stats], width, label=n)
    ax2.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(stats))])
    ax2.set_xticklabels(stats)
    ax2.set_yscale("log")
    ax2.set_ylabel("us per request (wall, log scale)")
    ratio = report.get("ratio")
    ax2.set_title("time per request" + (f"\n{MODSECURITY}/{NODE}: median {ratio['median']:.1f}x, p99 {ratio['p99']:.1f}x"
                                        if ratio else ""), fontsize=10)
    ax2.legend(loc="upper left", fontsize=8)
    m = report["meta"]
    fig.suptitle(f"bench_detect {m['date'][:16]} UTC, {', '.join(m['corpus'])}, {m['requests']} requests"
                 + (f", CRS {m['crs_version']} PL{m['paranoia']}" if m.get("crs_version") else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- main


def reference_loop_us() -> float:
    # machine speed reference, so runs on a loaded/shared machine can be compared: a quiet
    # modern core does this in ~8-10 us
    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def machine() -> dict:
    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"host": platform.node(), "platform": platform.platform(), "cpu": model or platform.processor(),
            "cpus": os.cpu_count()}


def open_peer(name: str, paranoia: int) -> ModSecurityPeer:
    from peers.modsecurity import ModSecurityPeer, ModSecurityUnavailable

    assert name == MODSECURITY
    try:
        return ModSecurityPeer(paranoia=paranoia)
    except ModSecurityUnavailable as exc:
        raise SystemExit(f"bench_detect: --peer modsecurity: {exc}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", nargs="*", type=Path, help="*.jsonl.gz corpus files (default: the project's own cases)")
    ap.add_argument("--peer", choices=PEERS, help="also run this engine on the same requests")
    ap.add_argument("--paranoia", type=int, default=1, choices=(1, 2, 3, 4), help="CRS paranoia level (default 1)")
    ap.add_argument("--json", type=Path, help="write the report as JSON here")
    ap.add_argument("--plot", type=Path, help="draw the comparison into this PNG")
    ap.add_argument("--limit", type=int, default=0, help="at most N requests (a fixed stratified sample)")
    ap.add_argument("--benign-only", action="store_true", help="only the benign requests (latency on real traffic)")
    ap.add_argument("--max-benign", type=int, default=0, help="same as --benign-only --limit N")
    ap.add_argument("--hostile", action="store_true", help="also time the hostile-input suite")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each hostile case (default 3)")
    ap.add_argument("--block", type=int, default=200,
                    help="requests per engine turn when two engines run (default 200; 1 = request by request)")
    ap.add_argument("--passes", type=int, default=1, metavar="N",
                    help="judge the corpus N times, each time with a new engine; a request's time is "
                         "its median over the passes (default 1; 3 steadies the p99)")
    ap.add_argument("--node-from", type=Path, metavar="DIR",
                    help="time the engine of another checkout (e.g. `git worktree add DIR BASE`) "
                         "with this harness, for before/after comparisons")
    ap.add_argument("--base", type=Path, metavar="DIR",
                    help="also time another checkout's engine (e.g. `git worktree add DIR BASE`) in this "
                         "run, in a child process taking its turns with this tree's: the before/after ratio")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--own", nargs="?", const="", metavar="FILE",
                    help="also judge the own corpus (scripts/gen_corpus.py's FILE, or generated now)")
    ap.add_argument("--own-per-cell", type=int, default=0, metavar="N",
                    help="at most N own-corpus attacks per class x placement x encoding cell")
    ap.add_argument("--own-classes", metavar="CLS,CLS",
                    help="only these own-corpus attack classes (and every benign request), e.g. sqli,xss")
    ap.add_argument("--own-markdown", type=Path, metavar="FILE",
                    help="write the node's own-corpus table as Markdown here (docs/detection.md)")
    args = ap.parse_args(argv)
    if args.passes < 1:
        ap.error("--passes must be at least 1")
    if args.max_benign:
        args.benign_only, args.limit = True, args.max_benign
    return args


def load_records(args: argparse.Namespace) -> list[LabelledRequest]:
    if args.corpus:
        records = load_corpus(args.corpus)
    else:
        records = [] if args.own is not None else labelled_cases()
    if args.own is not None:
        own = load_own(args.own)
        if args.own_classes:
            keep = set(args.own_classes.split(","))
            own = [r for r in own if r.label == "benign" or r.cls in keep]
        records += sample_cells(own, args.own_per_cell)
    if args.benign_only:
        records = [r for r in records if r.label == "benign"]
    records = sample(records, args.limit)
    return [LabelledRequest(r.id, r.source, r.label, r.cls, as_sent(r.msg), r.placement, r.encoding)
            for r in records]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    progress = not args.no_progress and sys.stderr.isatty()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    ref = reference_loop_us()
    records = load_records(args)
    if not records:
        raise SystemExit("bench_detect: no requests to judge")
    # the child loads --base's engine before this process imports its own (spawned: it does
    # not inherit the parent's modules either way)
    base = BaseEngine(args.base, records) if args.base else None
    engine = engine_class(args.node_from)
    peer = open_peer(args.peer, args.paranoia) if args.peer else None
    try:
        passes: list[dict[str, Timings]] = []
        started = time.perf_counter()
        with GcPauses() as gc_pauses:
            for _ in range(args.passes):
                # each pass with new engines, warmed the same way: their caches fill as in the
                # first pass, so every pass times the same work
                judges: dict[str, Judge] = {NODE: node_judge(engine())}
                if peer is not None:
                    judges[MODSECURITY] = lambda msg: peer.judge(msg).blocked
                warm_up(judges)
                turns = {name: in_process(judge, records) for name, judge in judges.items()}
                if base is not None:
                    base.new_engine()
                    turns[BASE] = base.turn
                # the loaded requests are the harness's data, not the engines': keep the
                # collector from walking them (a full collection over the corpus costs ~80 ms,
                # which a node never pays, and would land on whichever request triggered it)
                gc.freeze()
                passes.append(run(records, turns, progress, args.block))
                warm_node = judges.pop(NODE)
                del judges, turns
                gc.unfreeze()
        elapsed = time.perf_counter() - started
        engines = {name: engine_report(records, per_request_median([p[name] for p in passes]))
                   for name in passes[0]}
        if args.passes > 1:
            for name, report_ in engines.items():
                differing = verdicts_differing([p[name] for p in passes])
                report_["verdicts_differing_between_passes"] = len(differing)
                report_["verdicts_differing_ids"] = [records[i].id for i in differing[:SLOWEST_SHOWN]]
                report_["by_pass"] = [pass_stats(records, p[name]) for p in passes]
        if args.hostile:
            # the node's engine only: ModSecurity 3.0.9 + CRS 3.3.4 spends over 30 s on each of
            # three of these shapes (1 MB query value, a `${` run, an entity flood)
            engines[NODE]["hostile"] = run_hostile(warm_node, args.repeat, progress)
        meta = {
            "date": date,
            "machine": machine(),
            "python": platform.python_version(),
            # the node's engine as it ran (its checkout: --node-from), and each request's time
            # as the median of `passes` runs over the corpus (--passes)
            **engine_origin(),
            "passes": args.passes,
            "corpus": ([str(p) for p in args.corpus] or ([] if args.own is not None else ["tests/cases"]))
                      + ([f"own:{args.own or 'generated'}"] if args.own is not None else []),
            "own_per_cell": args.own_per_cell or None,
            "requests": len(records),
            "limit": args.limit or None,
            "benign_only": args.benign_only,
            "elapsed_s": elapsed,
            "reference_loop_us": ref,
            "loadavg_end": os.getloadavg()[0],
            "gc_pauses": gc_pauses.summary(),
        }
        if peer is not None:
            meta.update(paranoia=args.paranoia, crs_version=peer.crs.version, modsecurity_version=peer.version)
            engines[MODSECURITY]["log_messages"] = peer.log_messages
        report: dict[str, Any] = {"meta": meta, "engines": engines}
        if peer is not None:
            report["ratio"] = ratios(engines[NODE], engines[MODSECURITY])
        if base is not None:
            meta.update(base_tree=base.meta["node_tree"], base_compiled=base.meta["node_compiled"])
            # this tree's time / the base's (>1: the change costs), and the verdicts it changed
            report["node_vs_base"] = ratios(engines[BASE], engines[NODE])
            report["verdicts_vs_base"] = changed_verdicts(passes[0][BASE], passes[0][NODE], records)
            if args.passes > 1:
                report["node_vs_base_by_pass"] = [ratios(pass_stats(records, p[BASE]), pass_stats(records, p[NODE]))
                                                  for p in passes]
    finally:
        if peer is not None:
            peer.close()
        if base is not None:
            base.close()
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(report, args.plot)
    if args.own_markdown and "own" in report["engines"][NODE]:
        args.own_markdown.write_text(markdown_own(report["engines"][NODE]["own"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
