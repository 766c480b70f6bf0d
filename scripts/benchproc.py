"""Processes for the proxy benchmarks: demo upstream, node and mitmdump on loopback.

Shared by scripts/bench_proxy.py (side-by-side proxy throughput and latency) and
scripts/bench_connector.py (HTTP client candidates, connector CPU in-process). Every process is
a `tests.support.procs.ManagedProcess` (own session, log file) so that `stop_all` can always
take it down with its children.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.procs import MITMDUMP, ManagedProcess, free_port

BENIGN_PATH = "/api/v1/users?limit=5"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_plugin_config(path: Path, node_url: str, blocking: bool, **settings: object) -> Path:
    """An enable-plugin.json for the connector; everything but the mode, the address, the
    timeout and `settings` at its default. The timeout is 2 s, not the seed's 500 ms: on a
    saturated machine a slow verdict would otherwise fail open, and in-line mode would be
    measured not waiting."""
    path.write_text(json.dumps({
        "name": "wallarm-plugin", "instance_name": "bench", "protocols": ["http", "https"], "enabled": True,
        "config": {"blocking": blocking, "wallarm_node_address": node_url, "timeout_ms": 2000, **settings},
    }))
    return path


ROUTED_SERVICES = 6  # the declarative benchmark config: services x routes each, of every kind


def write_declarative_config(path: Path, node_url: str, upstream_url: str) -> Path:
    """A declarative config (Kong's DB-less format) with several services and routes of every
    kind (hosts, paths, methods) in front of the benchmark's in-line plugin, the same as
    `write_plugin_config(blocking=True)`'s: the benign GET is routed past host, host+path and
    longer-prefix routes to a `/api` route of the upstream's service (strip_path: false, so the
    upstream gets the same path as without routing); the other services are never reached."""
    plugin = json.loads(write_plugin_config(path, node_url, blocking=True).read_text())
    services = []
    for i in range(ROUTED_SERVICES - 1):
        services.append({"name": f"svc{i}", "url": f"http://127.0.0.1:9/s{i}", "routes": [
            {"name": f"svc{i}-host", "hosts": [f"svc{i}.example", f"*.svc{i}.example"]},
            {"name": f"svc{i}-host-path", "hosts": [f"api{i}.example"], "paths": ["/api"]},
            {"name": f"svc{i}-path", "paths": [f"/api/v{i + 2}", f"/svc{i}"], "methods": ["GET", "POST"]},
        ]})
    services.append({"name": "demo", "url": upstream_url, "routes": [
        {"name": "demo-api", "paths": ["/api"], "strip_path": False},
        {"name": "demo-root", "paths": ["/"], "strip_path": False},
        {"name": "demo-admin", "paths": ["/admin"], "methods": ["DELETE"]},
    ]})
    path.write_text(json.dumps({"_format_version": "3.0", "services": services, "plugins": [plugin]}))
    return path


def ready_or_stopped(proc: ManagedProcess, url: str, timeout: float) -> ManagedProcess:
    """Wait until `url` answers 200; a process that never gets ready is stopped, not leaked."""
    try:
        proc.wait_http(url, timeout=timeout)
    except BaseException:
        proc.stop()
        raise
    return proc


def start_upstream() -> tuple[ManagedProcess, str]:
    """scripts/demo_upstream.py on a free port; returns the process and its base URL."""
    port = free_port()
    proc = ManagedProcess("upstream", [sys.executable, str(REPO / "scripts" / "demo_upstream.py"),
                                       "--listen", f"127.0.0.1:{port}"])
    return ready_or_stopped(proc, f"http://127.0.0.1:{port}/health", 30), f"http://127.0.0.1:{port}"


def start_node(tmp: Path, fake: bool = False) -> tuple[ManagedProcess, str]:
    """The real node (`python -m node`, mode block, SQLite store in `tmp`) or the test fake node."""
    port, console = free_port(), free_port()
    if fake:
        proc = ManagedProcess("fake-node", [sys.executable, "-m", "tests.support.fake_node", "--listen",
                                            f"127.0.0.1:{port}", "--control", f"127.0.0.1:{console}",
                                            "--mode", "match"])
    else:
        proc = ManagedProcess("node", [sys.executable, "-m", "node", "--listen", f"127.0.0.1:{port}",
                                       "--console-listen", f"127.0.0.1:{console}", "--db", str(tmp / "node.db"),
                                       "--mode", "block"])
    return ready_or_stopped(proc, f"http://127.0.0.1:{console}/ready", 120), f"http://127.0.0.1:{port}/"


@dataclass
class Proxy:
    """A mitmdump reverse proxy; `admin_port` is the connector's status listener (None: no addon)."""

    name: str
    proc: ManagedProcess
    port: int
    admin_port: int | None

    def url(self, path: str = BENIGN_PATH) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def metrics(self) -> dict[str, float]:
        if self.admin_port is None:
            return {}
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as r:
            return parse_prometheus(r.read().decode())


def start_proxy(name: str, upstream: str, config: Path | None) -> Proxy:
    """mitmdump in reverse mode in front of `upstream`, with the connector when `config` is given.

    Not waited for: start several, then `wait_ready` each, so their start-ups overlap.
    """
    port = free_port()
    admin_port = free_port() if config is not None else None
    cmd = [MITMDUMP, "-q", "--mode", f"reverse:{upstream}@127.0.0.1:{port}"]
    if config is not None:
        cmd += ["-s", str(REPO / "addon" / "wallarm.py"), "--set", f"wallarm_config={config}",
                "--set", f"wallarm_admin_listen=127.0.0.1:{admin_port}"]
    return Proxy(name, ManagedProcess(f"mitmdump-{name}", cmd), port, admin_port)


def wait_ready(proxy: Proxy, timeout: float = 60.0) -> None:
    proxy.proc.wait_http(proxy.url("/health"), timeout=timeout)
    if proxy.admin_port is not None:
        proxy.proc.wait_http(f"http://127.0.0.1:{proxy.admin_port}/metrics", timeout=timeout)


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)$")


def parse_prometheus(text: str) -> dict[str, float]:
    """`name{labels}` -> value for every sample line of a Prometheus text page."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP (a closed terminal) unwind like Ctrl-C, through the `finally` that stops
    every process; the children lead their own sessions and would not get the signal themselves."""
    def leave(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGHUP, leave)


def ignore_signals() -> None:
    """For a script's final clean-up: it is bounded (see stop_all) and a second Ctrl-C, SIGTERM or
    SIGHUP must not cut it short and leave processes behind."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def managed_processes() -> Iterator[list[ManagedProcess]]:
    """A list for the processes a script starts; all of them are stopped on the way out, after
    success, an error, Ctrl-C, SIGTERM or SIGHUP. Logs are kept (and named) only after an error."""
    exit_on_signals()
    procs: list[ManagedProcess] = []
    failed = False
    try:
        yield procs
    except Exception:
        failed = True
        raise
    finally:
        ignore_signals()
        stop_all(procs, keep_logs=failed)


def stop_all(procs: list[ManagedProcess], keep_logs: bool = False) -> None:
    """Stop every process; one failing stop must not leave the others running.

    All get SIGTERM at once (their shutdowns overlap), then each is waited for and killed if it
    lingers. Their log files are removed, or kept and named on stderr when `keep_logs`.
    """
    for proc in procs:
        if proc.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.proc.pid, signal.SIGTERM)
    errors: list[BaseException] = []
    for proc in reversed(procs):
        try:
            proc.stop()
        except BaseException as e:  # noqa: BLE001 - keep stopping the rest
            errors.append(e)
    for proc in procs:
        if keep_logs:
            print(f"log of {proc.name}: {proc.log_path}", file=sys.stderr)
        else:
            proc.log_path.unlink(missing_ok=True)
    if errors:
        raise errors[0]
