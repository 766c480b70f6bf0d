"""The fault matrix's bookkeeping: the connector's counters and log lines over one cell, and the table.

A cell is measured as deltas: the connector's /metrics before and after, the part of mitmdump's
log written meanwhile, and the upstream's per-tag counts for the cell's tag prefix. The numbers
of every cell run go to `docs/reliability.md` via `render_table`.
"""

from __future__ import annotations

import re
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')

# In-line: one line per request forwarded without a verdict, naming its cause (addon/verdicts.py).
FAIL_OPEN_LINE = re.compile(r"\] no verdict for \S+ \S+ \((\w+): .*\): forwarding \(fail-open\)$", re.MULTILINE)
# The breaker_open fail-opens are logged at most once per 5 s, not per request.
BREAKER_FAIL_OPEN_LINE = re.compile(r"node unavailable \(circuit breaker open\): requests are forwarded")
BREAKER_OPENED_LINE = re.compile(r"circuit breaker open for \d+ ms")
# Out-of-band: failed batches (with their size and cause) and answers without a verdict (addon/delivery.py).
MIRROR_FAILED_LINE = re.compile(r"mirror to node failed \((\d+) message\(s\)\): (\w+):")
MIRROR_STATUS_LINE = re.compile(r"mirror: node answered HTTP (\d+)")


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text -> {(name, labels): value}."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[(m.group(1), frozenset(_LABEL.findall(m.group(2) or "")))] = float(m.group(3))
    return out


def fetch_metrics(admin_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(admin_url + "/metrics", timeout=5) as r:  # noqa: S310 - loopback
        return parse_metrics(r.read().decode())


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def counter_delta(before: Samples, after: Samples, name: str) -> int:
    return int(after.get((name, frozenset()), 0) - before.get((name, frozenset()), 0))


def by_label_delta(before: Samples, after: Samples, name: str, label: str) -> Counter[str]:
    """Per-label-value increase of a labelled counter; only the values that grew."""
    out: Counter[str] = Counter()
    for (n, labels), value in after.items():
        if n != name:
            continue
        grown = int(value - before.get((n, labels), 0))
        if grown:
            out[dict(labels)[label]] += grown
    return out


def status_kind(status: int) -> str:
    """The mirror_failed cause a non-verdict status is counted under (addon/verdicts.status_kind)."""
    if 400 <= status < 500:
        return "refusal"
    return "5xx" if status >= 500 else "bad_status"


@dataclass(frozen=True)
class LogCounts:
    fail_open: Counter[str]  # in-line, per cause, one line per request (breaker_open excluded)
    breaker_fail_open_lines: int
    breakers_opened: int
    mirror_failed: Counter[str]  # out-of-band, per cause, messages (breaker_open not logged)


def count_log(text: str) -> LogCounts:
    mirror: Counter[str] = Counter()
    for n, cause in MIRROR_FAILED_LINE.findall(text):
        mirror[cause] += int(n)
    for status in MIRROR_STATUS_LINE.findall(text):
        mirror[status_kind(int(status))] += 1
    return LogCounts(fail_open=Counter(FAIL_OPEN_LINE.findall(text)),
                     breaker_fail_open_lines=len(BREAKER_FAIL_OPEN_LINE.findall(text)),
                     breakers_opened=len(BREAKER_OPENED_LINE.findall(text)), mirror_failed=mirror)


@dataclass
class CellRow:
    """One cell's measured numbers, as they go into the table."""

    cell: str
    mode: str  # "in-line" | "out-of-band"
    seconds: float
    requests: int  # sent by the client
    forwarded: int  # answered by the upstream (hash checked)
    blocked: int
    bad_gateway: int
    closed: int  # connection closed before an answer (mitmproxy could not open the upstream eagerly)
    lost: int  # no answer at all, in any other way
    altered: int
    other: int
    duplicates: int  # tags the upstream saw more than once
    unexpected_upstream: int  # tags the upstream saw without the client getting its answer
    fail_open: Counter[str] = field(default_factory=Counter)
    mirror_failed: Counter[str] = field(default_factory=Counter)
    mirror_sent: int = 0
    breakers_opened: int = 0


def _causes(c: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "0"


def render_table(rows: list[CellRow]) -> str:
    head = ("| cell | mode | requests | forwarded (hash ok) | blocked | 502 | closed | lost | altered | duplicated "
            "| fail-open by cause | mirror failed by cause | breaker opened |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|\n")
    lines = [f"| {r.cell} | {r.mode} | {r.requests} | {r.forwarded} | {r.blocked} | {r.bad_gateway} | {r.closed} | "
             f"{r.lost + r.other} | {r.altered} | {r.duplicates + r.unexpected_upstream} | {_causes(r.fail_open)} | "
             f"{_causes(r.mirror_failed) if r.mode == 'out-of-band' else '-'} | {r.breakers_opened} |"
             for r in rows]
    return head + "\n".join(lines) + "\n"
