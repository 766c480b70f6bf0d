"""The fault matrix: every node/upstream fault, in-line and out-of-band, under c=50 load, counted exactly.

Real processes only: the test upstream (counts each request's `X-Test-Seq` tag, answers a
deterministic body), mitmdump with the connector, the real node (TLS, its SQLite on a small
tmpfs) and, for the faults a real node cannot be made to produce on demand (500, garbage, a
reset mid-answer), the fault node (tests/support/fake_node.py). One set of processes serves
every cell: each cell writes its own plugin config (fresh node client, fresh breakers) and is
measured as deltas.

Per cell and mode, exactly: every client request got the upstream's answer (body hash checked),
the block answer or, upstream down, mitmproxy's 502; nothing lost, nothing altered; the upstream
saw each forwarded tag once and nothing else; the client's counts, the upstream's and the
connector's /metrics agree; every fail-open is counted by cause and logged with that cause.

    FAULT_MATRIX_SECONDS=4 FAULT_MATRIX_REPORT=/tmp/matrix.md \\
        python -m pytest -q -p no:cacheprovider tests/test_fault_matrix.py

The table in docs/reliability.md is that report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fault_matrix import (CellRow, LogCounts, Samples, by_label_delta, count_log, counter_delta,
                                        fetch_metrics, render_table)
from tests.support.node import NodeHandle, start_node
from tests.support.procs import REPO, child_env
from tests.support.proxy import (FakeNodeProc, Proxy, Upstream, start_fake_node, start_proxy, start_upstream,
                                 write_config)
from tests.support.tagged_load import LoadTally, run_tagged_load

pytestmark = pytest.mark.e2e

CONNECTIONS = 50
LOAD_S = float(os.environ.get("FAULT_MATRIX_SECONDS", "4"))
FAULT_AT_S = LOAD_S * 0.25  # healthy traffic first, then the fault ...
RECOVER_AT_S = LOAD_S * 0.65  # ... and healthy again before the end (where the fault allows)
TIMEOUT_MS = 500
UNRESOLVABLE = "https://nonexistent.invalid:5050"
TMPFS_SIZE = "32m"  # room for every cell's attacks; the disk-full cell fills what is left
INLINE, OUT_OF_BAND = "in-line", "out-of-band"

ROWS: list[CellRow] = []


# ---------------------------------------------------------------------------------- the processes
class RealNode:
    """The real node, restartable in place (same ports, same database)."""

    def __init__(self, home: Path, tls: tuple[Path, Path]):
        self.home, self.tls = home, tls
        self.handle: NodeHandle | None = None
        self.log = ""  # output of the previous incarnations

    def start(self) -> None:
        prev = self.handle
        self.handle = start_node(self.home, mode="block", tls=self.tls, port=prev.port if prev else None,
                                 console_port=prev.console_port if prev else None)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.handle is not None:
            self.handle.stop(sig)
            self.log += self.handle.output()

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    @property
    def url(self) -> str:
        assert self.handle is not None
        return self.handle.endpoint_url

    @property
    def pid(self) -> int:
        assert self.handle is not None
        return self.handle.proc.proc.pid

    def output(self) -> str:
        return self.log + (self.handle.output() if self.handle else "")


@dataclass
class Rig:
    node: RealNode
    fake: FakeNodeProc
    upstream: Upstream
    proxy: Proxy
    config: Path
    trusted_ca: Path
    foreign_ca: Path
    disk: Path
    disk_limited: str  # "" when the node's disk is a size-limited tmpfs, else why not


def _gen_certs(out: Path) -> Path:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_certs.py"), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, env=child_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def _mount_tmpfs(path: Path) -> str:
    """Mount a small tmpfs on `path`; "" on success, else the reason it could not be done."""
    if os.geteuid() != 0:
        return "not root: cannot mount a size-limited tmpfs"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(path)],
                       capture_output=True, text=True, timeout=30)
    return "" if r.returncode == 0 else f"mount -t tmpfs not permitted: {r.stderr.strip()}"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    base = tmp_path_factory.mktemp("faults")
    trusted, foreign = _gen_certs(base / "trusted"), _gen_certs(base / "foreign")
    disk = base / "node"
    disk.mkdir()
    disk_limited = _mount_tmpfs(disk)
    with contextlib.ExitStack() as stack:
        if not disk_limited:
            stack.callback(subprocess.run, ["umount", "-l", str(disk)], check=False, timeout=30)
        node = RealNode(disk, (trusted / "node.pem", trusted / "node-key.pem"))
        node.start()
        stack.callback(node.stop)
        fake = start_fake_node("match")
        stack.callback(fake.stop)
        upstream = start_upstream()
        stack.callback(lambda: r.upstream.stop())  # the upstream-down cell replaces r.upstream
        config = write_config(base / "enable-plugin.json", node.url, node_ca_file=str(trusted / "ca.pem"),
                              timeout_ms=TIMEOUT_MS, inspect_response=False, instance_name="fm-start")
        proxy = start_proxy(upstream.url, config)
        stack.callback(proxy.stop)
        warm_up(proxy)
        r = Rig(node, fake, upstream, proxy, config, trusted / "ca.pem", foreign / "ca.pem", disk, disk_limited)
        yield r
    report = os.environ.get("FAULT_MATRIX_REPORT")
    if report and ROWS:
        Path(report).write_text(render_table(ROWS))


def warm_up(proxy: Proxy) -> None:
    """A second of load before a fresh proxy is measured: its first 50 concurrent requests open 50
    TLS connections to the node at once, and on a busy 2-core machine some of those take longer
    than timeout_ms (fail-open `timeout`, a cold-start cost measured in docs/reliability.md)."""
    asyncio.run(run_tagged_load("127.0.0.1", proxy.port, "warm", CONNECTIONS, 1.0))


# ---------------------------------------------------------------------------------- the cells
FaultScript = Callable[[Rig], Awaitable[None]]


async def no_fault(rig: Rig) -> None:
    return None


async def kill_node(rig: Rig) -> None:
    await asyncio.sleep(FAULT_AT_S)
    os.kill(rig.node.pid, signal.SIGKILL)
    await asyncio.sleep(RECOVER_AT_S - FAULT_AT_S)
    await asyncio.to_thread(rig.node.restart, signal.SIGKILL)  # reap the killed one, start anew


async def pause_node(rig: Rig) -> None:
    await asyncio.sleep(FAULT_AT_S)
    os.kill(rig.node.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(max(RECOVER_AT_S - FAULT_AT_S, 3 * TIMEOUT_MS / 1000))  # well past timeout_ms
    finally:
        os.kill(rig.node.pid, signal.SIGCONT)


async def restart_node(rig: Rig) -> None:
    await asyncio.sleep(FAULT_AT_S)
    await asyncio.to_thread(rig.node.restart, signal.SIGTERM)


def fake_mode(mode: str) -> FaultScript:
    async def script(rig: Rig) -> None:
        await asyncio.sleep(FAULT_AT_S)
        await asyncio.to_thread(rig.fake.set_mode, mode)
        await asyncio.sleep(RECOVER_AT_S - FAULT_AT_S)
        await asyncio.to_thread(rig.fake.set_mode, "match")
    return script


@dataclass(frozen=True)
class Cell:
    name: str
    node: str  # "real", "fake" or "unresolvable": where the connector's config points
    fault: FaultScript
    allowed: frozenset[str] = frozenset()  # fail-open / mirror-failure causes this fault may produce
    required: frozenset[str] = frozenset()  # in-line: at least one of these must be seen (the fault bit)
    foreign_ca: bool = False
    upstream_down: bool = False
    proxy_args: tuple[str, ...] = ()  # mitmproxy options of a proxy started for this cell alone
    disk_full: bool = False
    new_node_pid: bool = False


def _causes(*names: str) -> frozenset[str]:
    return frozenset(names)


CELLS = [
    Cell("no fault (control)", "real", no_fault),
    Cell("node disk full (SQLite on a full tmpfs)", "real", no_fault, disk_full=True),
    Cell("node killed (SIGKILL), restarted", "real", kill_node,
         _causes("connect", "connect_timeout", "reset", "timeout", "breaker_open"),
         _causes("connect", "connect_timeout", "reset", "breaker_open"), new_node_pid=True),
    Cell("node paused (SIGSTOP) > timeout_ms", "real", pause_node,
         _causes("timeout", "connect_timeout", "breaker_open"), _causes("timeout")),
    Cell("node restarted (SIGTERM + start)", "real", restart_node,
         _causes("connect", "connect_timeout", "reset", "timeout", "breaker_open"), new_node_pid=True),
    Cell("node answers 500", "fake", fake_mode("500"), _causes("5xx", "breaker_open"), _causes("5xx")),
    Cell("node answers garbage", "fake", fake_mode("garbage"), _causes("protocol", "reset", "breaker_open"),
         _causes("protocol")),
    Cell("connection reset mid-answer", "fake", fake_mode("cut"), _causes("reset", "breaker_open"), _causes("reset")),
    # timeouts: a fresh pool's 50 handshakes at once may outlast timeout_ms on a busy machine
    Cell("node TLS certificate not trusted", "real", no_fault,
         _causes("tls", "timeout", "connect_timeout", "breaker_open"), _causes("tls"), foreign_ca=True),
    Cell("node address not resolvable", "unresolvable", no_fault,
         # timeout: under load the lookups queue for the resolver threads past the call's budget
         _causes("connect", "connect_timeout", "timeout", "breaker_open"),
         _causes("connect", "connect_timeout", "timeout")),
    # mitmproxy's default (eager) opens the upstream connection when the client connects: with the
    # upstream down it closes the client's connection before reading a request, so the connector
    # never sees one. With connection_strategy=lazy it reads the request (the connector judges it)
    # and answers 502.
    Cell("upstream down, connection_strategy=eager (mitmproxy's default)", "real", no_fault, upstream_down=True),
    Cell("upstream down, connection_strategy=lazy", "real", no_fault, upstream_down=True,
         proxy_args=("--set", "connection_strategy=lazy")),
]
PARAMS = [pytest.param(cell, mode, id=f"{i:02d}-{mode}-{cell.name.split(' (')[0].split(',')[0].replace(' ', '_')}")
          for i, cell in enumerate(CELLS) for mode in (INLINE, OUT_OF_BAND)]


# ---------------------------------------------------------------------------------- running a cell
def _apply_config(rig: Rig, cell: Cell, mode: str, prefix: str) -> None:
    node_url = {"real": rig.node.url, "fake": rig.fake.url, "unresolvable": UNRESOLVABLE}[cell.node]
    before = fetch_metrics(rig.proxy.admin)
    write_config(rig.config, node_url, blocking=mode == INLINE, timeout_ms=TIMEOUT_MS, inspect_response=False,
                 node_ca_file=str(rig.foreign_ca if cell.foreign_ca else rig.trusted_ca),
                 instance_name=f"fm-{prefix}")  # unique per cell: the file always changes, a reload always happens
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        after = fetch_metrics(rig.proxy.admin)
        if counter_delta(before, after, "wallarm_connector_config_reloads_total") >= 1:
            assert counter_delta(before, after, "wallarm_connector_config_errors_total") == 0
            return
        time.sleep(0.1)
    raise AssertionError(f"the connector did not reload the config:\n{rig.proxy.proc.output()[-3000:]}")


def _fill_disk(path: Path) -> Path:
    """Take every free byte of the node's filesystem; the filler file is returned for removal.

    Unbuffered writes, smaller and smaller: nothing is left in a buffer to fail on close."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):  # ENOSPC: full at this size, try a smaller one
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def _mirror_settled(before: Samples, after: Samples) -> bool:
    done = (counter_delta(before, after, "wallarm_connector_mirror_sent_total")
            + sum(by_label_delta(before, after, "wallarm_connector_mirror_failed_total", "cause").values())
            + counter_delta(before, after, "wallarm_connector_mirror_dropped_total"))
    return done == counter_delta(before, after, "wallarm_connector_requests_inspected_total")


def _settled_metrics(proxy: Proxy, before: Samples, mode: str) -> Samples:
    """The metrics once the out-of-band queue has delivered (or failed) everything queued in the cell."""
    after = fetch_metrics(proxy.admin)
    deadline = time.monotonic() + 60
    while mode == OUT_OF_BAND and not _mirror_settled(before, after) and time.monotonic() < deadline:
        time.sleep(0.2)
        after = fetch_metrics(proxy.admin)
    return after


async def _load_with_fault(rig: Rig, proxy: Proxy, cell: Cell, prefix: str) -> LoadTally:
    fault = asyncio.create_task(cell.fault(rig))
    try:
        tally = await run_tagged_load("127.0.0.1", proxy.port, prefix, CONNECTIONS, LOAD_S)
    finally:
        await fault  # recovery (restart, SIGCONT, mode back) completes even if the load failed
    return tally


@dataclass
class Measured:
    """What one cell produced: the client's tally, the connector's metrics and log, the upstream's tags."""

    tally: LoadTally
    before: Samples
    after: Samples
    log: LogCounts
    seen: dict[str, int]  # the upstream's count per tag of this cell
    node_log: str  # what the node wrote during the cell
    node_restarted: bool

    def delta(self, name: str) -> int:
        return counter_delta(self.before, self.after, name)

    def by_cause(self, name: str, label: str = "cause") -> Counter[str]:
        return by_label_delta(self.before, self.after, name, label)


def _cell_proxy(rig: Rig, cell: Cell) -> Proxy:
    """The shared proxy, or a warmed one of the cell's own for cells with their own mitmproxy options
    (it loads the config just written)."""
    if not cell.proxy_args:
        return rig.proxy
    proxy = start_proxy(rig.upstream.url, rig.config, *cell.proxy_args)
    try:
        warm_up(proxy)
    except BaseException:
        proxy.stop()
        raise
    return proxy


def _measure(rig: Rig, cell: Cell, mode: str) -> Measured:
    prefix = f"{CELLS.index(cell):02d}{'i' if mode == INLINE else 'o'}{int(time.time() * 1000) % 100000}"
    _apply_config(rig, cell, mode, prefix)
    proxy = _cell_proxy(rig, cell)
    node_pid, node_log_at = rig.node.pid, len(rig.node.output())
    upstream_port = rig.upstream.port
    filler: Path | None = None
    try:
        filler = _fill_disk(rig.disk) if cell.disk_full else None
        if cell.upstream_down:
            rig.upstream.stop()
        log_at = len(proxy.proc.output())
        before = fetch_metrics(proxy.admin)
        tally = asyncio.run(_load_with_fault(rig, proxy, cell, prefix))
        after = _settled_metrics(proxy, before, mode)
        log = count_log(proxy.proc.output()[log_at:])
    finally:
        if filler is not None:
            filler.unlink()
        if cell.upstream_down:
            rig.upstream = start_upstream(upstream_port)
        if proxy is not rig.proxy:
            proxy.stop()
    seen = {tag: n for tag, n in rig.upstream.tag_counts().items() if tag.startswith(prefix + "-")}
    return Measured(tally, before, after, log, seen, rig.node.output()[node_log_at:], rig.node.pid != node_pid)


def _row(cell: Cell, mode: str, m: Measured) -> CellRow:
    t = m.tally
    return CellRow(
        cell.name, mode, round(t.seconds, 1), t.total, t.outcomes["upstream"], t.outcomes["blocked"],
        t.outcomes["bad_gateway"], t.outcomes["closed"], t.outcomes["error"], t.outcomes["altered"],
        t.outcomes["other"], duplicates=sum(1 for n in m.seen.values() if n > 1),
        unexpected_upstream=len(set(m.seen) - t.upstream_tags),
        fail_open=m.by_cause("wallarm_connector_fail_open_total"),
        mirror_failed=m.by_cause("wallarm_connector_mirror_failed_total"),
        mirror_sent=m.delta("wallarm_connector_mirror_sent_total"), breakers_opened=m.log.breakers_opened)


class Problems(list[str]):
    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.append(what)


def _eager_closed(cell: Cell) -> bool:
    """Upstream down under mitmproxy's eager strategy: every connection closed before a request is read."""
    return cell.upstream_down and not cell.proxy_args


def _client_upstream_connector(cell: Cell, m: Measured, p: Problems) -> None:
    """Every request answered by the upstream (hash checked), the block answer or the 502, the
    upstream saw exactly those tags once each, and the connector's counters agree."""
    t = m.tally
    p.check(t.total > CONNECTIONS, f"too little load to judge: {t.total} requests")
    p.check(t.proxy_connect_errors == 0, f"{t.proxy_connect_errors} connects to the proxy failed")
    for bad in ("error", "altered", "other") + (() if _eager_closed(cell) else ("closed",)):
        p.check(t.outcomes[bad] == 0, f"{t.outcomes[bad]} request(s) {bad}: {t.problems[:5]}")
    if _eager_closed(cell):
        p.check(t.outcomes["closed"] == t.total, "upstream down (eager): a connection was answered")
    elif cell.upstream_down:
        p.check(t.outcomes["upstream"] == 0 and t.outcomes["bad_gateway"] > 0, "upstream down, yet answers")
    else:
        p.check(t.outcomes["bad_gateway"] == 0, f"{t.outcomes['bad_gateway']} 502s with the upstream up")
    duplicates = [tag for tag, n in m.seen.items() if n > 1]
    p.check(not duplicates, f"{len(duplicates)} tag(s) reached the upstream more than once: {duplicates[:5]}")
    p.check(set(m.seen) == t.upstream_tags,
            f"upstream saw {len(m.seen)} tags, client got {len(t.upstream_tags)} upstream answers "
            f"({len(set(m.seen) - t.upstream_tags)} unanswered, {len(t.upstream_tags - set(m.seen))} unseen)")
    inspected = m.delta("wallarm_connector_requests_inspected_total")
    p.check(inspected == t.total - t.outcomes["closed"], f"inspected {inspected} != {t.total} requests read")
    p.check(not m.by_cause("wallarm_connector_fail_closed_total"), "fail-closed answers")
    p.check(not m.by_cause("wallarm_connector_node_refusals_total", "status"), "node refusals")
    p.check(m.delta("wallarm_connector_mirror_dropped_total") == 0, "mirror drops")


def _in_line(cell: Cell, m: Measured, p: Problems) -> None:
    """Passed + fail-open = forwarded, blocked = block answers; every fail-open logged with its cause."""
    t, fail_open, log = m.tally, m.by_cause("wallarm_connector_fail_open_total"), m.log
    forwarded = t.outcomes["upstream"] + t.outcomes["bad_gateway"]
    passed, blocked = m.delta("wallarm_connector_requests_passed_total"), m.delta("wallarm_connector_requests_blocked_total")
    p.check(passed + sum(fail_open.values()) == forwarded,
            f"passed {passed} + fail-open {sum(fail_open.values())} != {forwarded} forwarded")
    p.check(blocked == t.outcomes["blocked"], f"blocked metric {blocked} != {t.outcomes['blocked']} block answers")
    p.check(set(fail_open) <= cell.allowed, f"fail-open causes {dict(fail_open)} outside {set(cell.allowed)}")
    p.check(not cell.required or bool(set(fail_open) & cell.required),
            f"the fault never showed: fail-open {dict(fail_open)}, expected one of {set(cell.required)}")
    if not cell.allowed and not _eager_closed(cell):
        p.check(t.outcomes["blocked"] > 0, "a healthy node blocked none of the attacks")
    # One line per request and cause; breaker_open ones at most once per 5 s, but at least once.
    per_request = Counter({c: n for c, n in fail_open.items() if c != "breaker_open"})
    p.check(log.fail_open == per_request, f"fail-open log lines {dict(log.fail_open)} != metric {dict(per_request)}")
    p.check((log.breaker_fail_open_lines > 0) == (fail_open["breaker_open"] > 0),
            f"breaker_open fail-opens {fail_open['breaker_open']}, log lines {log.breaker_fail_open_lines}")


def _out_of_band(cell: Cell, m: Measured, p: Problems) -> None:
    """Everything forwarded, nothing judged in-line; every mirrored message delivered or counted as
    failed, and every failure logged with its cause."""
    t, mirror_failed = m.tally, m.by_cause("wallarm_connector_mirror_failed_total")
    p.check(t.outcomes["blocked"] == 0, "out-of-band mode blocked a request")
    p.check(t.outcomes["upstream"] + t.outcomes["bad_gateway"] == t.total - t.outcomes["closed"],
            "out-of-band: a request did not go upstream")
    for name in ("passed", "blocked"):
        p.check(m.delta(f"wallarm_connector_requests_{name}_total") == 0, f"out-of-band counted {name}")
    p.check(not m.by_cause("wallarm_connector_fail_open_total"), "out-of-band counted fail-opens")
    p.check(_mirror_settled(m.before, m.after), "mirrored messages neither delivered nor counted as failed")
    p.check(set(mirror_failed) <= cell.allowed, f"mirror failures {dict(mirror_failed)} outside {set(cell.allowed)}")
    logged = Counter({c: n for c, n in mirror_failed.items() if c != "breaker_open"})
    p.check(m.log.mirror_failed == logged, f"mirror failure log {dict(m.log.mirror_failed)} != metric {dict(logged)}")


def _fault_happened(cell: Cell, m: Measured, p: Problems) -> None:
    if cell.disk_full:
        p.check("attack store: a batch of" in m.node_log or "attack store not writable" in m.node_log,
                f"the node's store never hit the full disk:\n{m.node_log[-2000:]}")
    if cell.new_node_pid:
        p.check(m.node_restarted, "the node was not restarted")


@pytest.mark.parametrize(("cell", "mode"), PARAMS)
def test_fault_cell(rig: Rig, cell: Cell, mode: str) -> None:
    if cell.disk_full and rig.disk_limited:
        pytest.skip(rig.disk_limited)
    m = _measure(rig, cell, mode)
    row = _row(cell, mode, m)
    ROWS.append(row)
    print(f"\n{row}")
    problems = Problems()
    _client_upstream_connector(cell, m, problems)
    (_in_line if mode == INLINE else _out_of_band)(cell, m, problems)
    _fault_happened(cell, m, problems)
    assert not problems, f"{cell.name} / {mode}: {row}\n" + "\n".join(problems)
