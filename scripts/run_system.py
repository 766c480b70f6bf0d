#!/usr/bin/env python3
"""Run the whole protecting system on this machine: what `make run` executes.

Starts, in order, and waits for each to be ready:
  1. the node (`python -m node`): connector endpoint on TLS with certs/node.pem, SQLite store
     and console token in var/, console on 127.0.0.1:8090;
  2. the demo upstream API (scripts/demo_upstream.py) on 127.0.0.1:9000, unless UPSTREAM is set;
  3. mitmdump in reverse mode on 127.0.0.1:8000 with the addon and enable-plugin.json;
     or, with WORKERS=N (N >= 2), N mitmdump workers, each on its own loopback proxy and status
     ports (WORKER_BASE, WORKER_BASE+1 for the first, +2 and +3 for the second, ...), all on the
     one config file, and HAProxy on LISTEN and ADMIN_LISTEN in front of them, health-checking
     each worker's /status (var/haproxy.cfg, rendered from docker/haproxy.cfg.template).
Then prints where everything is. Ctrl-C or SIGTERM stops the children (proxy first, node last so
that it flushes its store) and exits; if any child dies on its own, the rest are stopped too,
except a worker behind HAProxy, which is restarted (HAProxy sends its share to the others).

Every setting has an environment variable (used by `make run`) and a flag (used by the tests):
  UPSTREAM=https://api.example     your API instead of the demo one
  LISTEN=127.0.0.1:8000            the proxy's listener
  ADMIN_LISTEN=127.0.0.1:8001      the connector's status listener (/ , /plugins, /metrics)
  NODE_LISTEN=127.0.0.1:5050       the node's connector endpoint (TLS)
  CONSOLE_LISTEN=127.0.0.1:8090    the node's console, API, /live, /ready, /metrics
  DEMO_LISTEN=127.0.0.1:9000       the demo upstream
  PLUGIN_CONFIG=enable-plugin.json the connector's config (its wallarm_node_address must point
                                   at NODE_LISTEN); a bare plugin file is copied once to
                                   VAR_DIR/kong.json, the declarative file the Admin API writes
  NODE_CONFIG=                     optional node config file (YAML/JSON), passed as --config
  NODE_MODE=                       optional node mode override (off|monitoring|safe_blocking|block)
  UPSTREAM_CA=                     CA bundle to verify an https UPSTREAM with a private CA
  MITMDUMP_ARGS=                   extra mitmdump arguments, e.g. "--set block_global=false"
  WORKERS=1                        mitmdump workers; 2 or more puts HAProxy in front of them
  WORKER_BASE=18000                the first worker's proxy port (0: any free ports)
  LB_STATS_LISTEN=127.0.0.1:8404   HAProxy's stats page (/) and Prometheus metrics (/metrics)
  VAR_DIR=var  CERTS_DIR=certs
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import shutil
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from haproxy_config import Worker, haproxy_up  # noqa: E402
from haproxy_config import render as render_haproxy_config  # noqa: E402
from wallarm_wire import addresses  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("run_system")


# ---------------------------------------------------------------- settings

def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def parse_hostport(value: str) -> tuple[str, int]:
    try:
        host, port = addresses.parse_hostport(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if port == 0:
        raise argparse.ArgumentTypeError(f"port 0 is not allowed here: {value!r}")
    return host, port


def fmt_hostport(hp: tuple[str, int]) -> str:
    return addresses.format_hostport(*hp)


connect_host = addresses.connect_host


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Run node + demo upstream + mitmdump with the Wallarm addon.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    hp = parse_hostport
    ap.add_argument("--upstream", default=_env("UPSTREAM", ""),
                    help="upstream URL (default: start the demo API)")
    ap.add_argument("--listen", type=hp, default=_env("LISTEN", "127.0.0.1:8000"))
    ap.add_argument("--admin-listen", type=hp, default=_env("ADMIN_LISTEN", "127.0.0.1:8001"))
    ap.add_argument("--node-listen", type=hp, default=_env("NODE_LISTEN", "127.0.0.1:5050"))
    ap.add_argument("--console-listen", type=hp, default=_env("CONSOLE_LISTEN", "127.0.0.1:8090"))
    ap.add_argument("--demo-listen", type=hp, default=_env("DEMO_LISTEN", "127.0.0.1:9000"))
    ap.add_argument("--plugin-config", type=Path, default=Path(_env("PLUGIN_CONFIG", str(REPO / "enable-plugin.json"))))
    ap.add_argument("--node-config", type=Path, default=Path(os.environ["NODE_CONFIG"]) if os.environ.get("NODE_CONFIG") else None)
    ap.add_argument("--node-mode", choices=["off", "monitoring", "safe_blocking", "block"],
                    default=os.environ.get("NODE_MODE") or None)
    ap.add_argument("--upstream-ca", type=Path, default=Path(os.environ["UPSTREAM_CA"]) if os.environ.get("UPSTREAM_CA") else None,
                    help="CA bundle for an https upstream with a private CA")
    ap.add_argument("--mitmdump-args", type=shlex.split, default=shlex.split(os.environ.get("MITMDUMP_ARGS", "")),
                    help="extra mitmdump arguments (one shell-quoted string)")
    ap.add_argument("--workers", type=int, default=int(_env("WORKERS", "1")),
                    help="mitmdump workers; 2 or more run behind HAProxy (default 1: no HAProxy)")
    ap.add_argument("--haproxy", action="store_true", help="HAProxy in front even of a single worker")
    ap.add_argument("--worker-base", type=int, default=int(_env("WORKER_BASE", "18000")),
                    help="first worker's proxy port; its status port is the next one, and so on (0: free ports)")
    ap.add_argument("--lb-stats-listen", type=hp, default=_env("LB_STATS_LISTEN", "127.0.0.1:8404"))
    ap.add_argument("--var-dir", type=Path, default=Path(_env("VAR_DIR", str(REPO / "var"))))
    ap.add_argument("--certs-dir", type=Path, default=Path(_env("CERTS_DIR", str(REPO / "certs"))))
    ap.add_argument("--ready-timeout", type=float, default=float(_env("READY_TIMEOUT", "60")),
                    help="seconds to wait for each part to become ready")
    ap.add_argument("--quiet", action="store_true", help="do not copy the children's logs to stdout")
    return ap


# ---------------------------------------------------------------- children

@dataclass
class Child:
    """A child process in its own session; its output goes to a log file and, prefixed, to stdout."""

    name: str
    cmd: list[str]
    log_path: Path
    echo: bool
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _pump: threading.Thread | None = None

    def start(self) -> None:
        log.debug("starting %s: %s", self.name, " ".join(self.cmd))
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=REPO,
                                     start_new_session=True)  # Ctrl-C reaches only us; we stop them in order
        self._pump = threading.Thread(target=self._copy_output, name=f"pump-{self.name}", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.proc and self.proc.stdout
        with open(self.log_path, "ab") as f:
            for line in iter(self.proc.stdout.readline, b""):
                f.write(line)
                f.flush()
                if self.echo:
                    sys.stdout.write(f"[{self.name}] {line.decode('utf-8', 'replace')}")
                    sys.stdout.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.proc
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs, killing it", self.name, timeout)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        if self._pump:
            self._pump.join(2)


def child_env() -> dict[str, str]:
    """Children run the tree's code (even over a stale non-editable install) and talk to loopback
    directly, never through a proxy from the user's environment."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(k, None)
    return env


def find_haproxy() -> str:
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy")
                                              if Path(p).exists()), None)
    if not found:
        raise SystemExit("run_system: WORKERS >= 2 needs HAProxy (Debian: apt-get install haproxy)")
    return found


def find_mitmdump() -> str:
    here = Path(sys.executable).parent / "mitmdump"
    if here.exists():
        return str(here)
    found = shutil.which("mitmdump")
    if not found:
        raise SystemExit("run_system: mitmdump not found; run `make install` first")
    return found


# ---------------------------------------------------------------- readiness

class Interrupted(Exception):
    """A stop signal arrived while the system was starting."""


STOP = threading.Event()  # set by the signal handler


def wait_until(what: str, check: Callable[[], bool], child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if STOP.is_set():
            raise Interrupted
        if not child.alive():
            raise RuntimeError(f"{child.name} exited (code {child.proc.returncode if child.proc else '?'}) "
                               f"before {what}; last log lines:\n{child.tail()}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{child.name}: {what} not reached within {timeout:.0f}s; last log lines:\n{child.tail()}")


def http_ok(url: str, statuses: tuple[int, ...] = (200,)) -> Callable[[], bool]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def check() -> bool:
        try:
            with opener.open(url, timeout=2) as r:
                return r.status in statuses
        except urllib.error.HTTPError as e:
            return e.code in statuses
        except (urllib.error.URLError, OSError, ValueError):
            return False
    return check


def tls_ok(host: str, port: int, ca_file: Path) -> Callable[[], bool]:
    """The node's endpoint completes a TLS handshake verified against our CA."""
    def check() -> bool:
        ctx = ssl.create_default_context(cafile=str(ca_file))
        with socket.create_connection((host, port), timeout=2) as raw:
            with ctx.wrap_socket(raw, server_hostname=host):
                return True
    return check


def tcp_ok(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection((host, port), timeout=2):
            return True
    return check


def url_of(hp: tuple[str, int]) -> str:
    return f"http://{fmt_hostport((connect_host(hp[0]), hp[1]))}"


def is_loopback_host(host: str) -> bool:
    from addon.admin_api import is_loopback
    return is_loopback(host)


def port_free(hp: tuple[str, int]) -> bool:
    family = socket.AF_INET6 if ":" in hp[0] else socket.AF_INET
    with socket.socket(family) as s:
        try:
            s.bind(hp)
        except OSError:
            return False
    return True


# ---------------------------------------------------------------- the system

def check_plugin_config(path: Path, node_listen: tuple[str, int]) -> None:
    """Catch the common mistake early: the connector pointing at another node than ours. The file
    is a bare plugin (enable-plugin.json) or a declarative file; each plugin in it is checked
    (mitmdump validates the rest when it starts)."""
    from addon.config import ConfigError, parse_node_address
    from addon.declarative import _decode, _each_plugin_dict

    try:
        plugins = _each_plugin_dict(_decode(path.read_bytes(), str(path)))
    except (OSError, ConfigError) as e:
        raise SystemExit(f"run_system: cannot read {path}: {e}") from None
    want = (connect_host(node_listen[0]), node_listen[1])
    for plugin in plugins:
        try:
            raw = str(plugin["config"]["wallarm_node_address"])  # type: ignore[index]
            first = parse_node_address(raw.split(",")[0])
        except (KeyError, TypeError, ValueError):
            continue  # mitmdump names the problem when it loads the file
        if (first.host, first.port) != want and not (first.host == "localhost" and want[0] in ("127.0.0.1", "::1")
                                                     and first.port == want[1]):
            log.warning("%s points the connector at %s, but this node listens on %s: the proxy will "
                        "fail open (requests pass unchecked). Set NODE_LISTEN or edit the file.",
                        path, first.url, fmt_hostport(node_listen))


def connector_config(plugin_config: Path, var_dir: Path) -> Path:
    """The declarative file the connector runs on, which its Admin API (:8001) writes. A declarative
    PLUGIN_CONFIG is used as it is. A bare plugin (the seed's enable-plugin.json) is never written:
    the first start copies it, as the one global plugin, to VAR_DIR/kong.json (a relative
    node_ca_file made absolute, since the copy lives elsewhere), and later starts keep that file
    with whatever was changed through the Admin API (`make clean` starts over)."""
    from addon.atomic_file import write_atomically
    from addon.config import ConfigError
    from addon.declarative import FORMAT_VERSIONS, _decode, _resolve_ca_paths, is_declarative

    try:
        data = _decode(plugin_config.read_bytes(), str(plugin_config))
    except (OSError, ConfigError) as e:
        raise SystemExit(f"run_system: cannot read {plugin_config}: {e}") from None
    if is_declarative(data):
        return plugin_config
    target = var_dir / "kong.json"
    if target.exists():
        if plugin_config.stat().st_mtime > target.stat().st_mtime:
            log.warning("%s changed after %s was made from it; the connector runs on %s (remove it to start "
                        "from %s again)", plugin_config, target, target, plugin_config)
        return target
    _resolve_ca_paths(data, plugin_config.resolve().parent)
    doc = {"_format_version": FORMAT_VERSIONS[-1], "plugins": [data]}
    write_atomically(target, (json.dumps(doc, indent=2) + "\n").encode())
    return target


def read_console_token(db: Path) -> tuple[str, str]:
    """The console token and where it comes from (env, or the file the node wrote next to its DB)."""
    if os.environ.get("WALLARM_CONSOLE_TOKEN"):
        return os.environ["WALLARM_CONSOLE_TOKEN"], "the WALLARM_CONSOLE_TOKEN environment variable"
    path = db.with_name(db.name + ".console-token")
    try:
        return path.read_text("utf-8").strip(), str(path)
    except OSError:
        return "", f"{path} (not found: see the node's log, or set console_token in its config)"


WORKER_RESTARTS = 5  # per worker and minute; a worker that keeps dying stops the system


def worker_layout(a: argparse.Namespace) -> list[Worker]:
    """Worker i (from 1) proxies on WORKER_BASE + 2(i-1) and has its status listener on the next
    port, on loopback: only HAProxy talks to them. WORKER_BASE 0: free ports (tests)."""
    out = []
    for i in range(a.workers):
        if a.worker_base:
            proxy, status = a.worker_base + 2 * i, a.worker_base + 2 * i + 1
        else:
            proxy, status = free_port(), free_port()
        out.append(Worker(f"worker{i + 1}", "127.0.0.1", proxy, status))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class System:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.children: list[Child] = []
        self.stopping = STOP
        self.logs = args.var_dir / "logs"
        if args.workers < 1:
            raise SystemExit("run_system: WORKERS must be at least 1")
        self.workers = worker_layout(args) if self.balanced else []
        self.worker_cmds: dict[str, list[str]] = {}
        self.restarts: dict[str, list[float]] = {}  # when each worker was restarted (bounded, see watch)

    def _child(self, name: str, cmd: list[str]) -> Child:
        c = Child(name, cmd, self.logs / f"{name}.log", echo=not self.a.quiet, env=child_env())
        self.children.append(c)
        c.start()
        return c

    def start(self) -> None:
        a = self.a
        a.var_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        node_cert, node_key, ca = a.certs_dir / "node.pem", a.certs_dir / "node-key.pem", a.certs_dir / "ca.pem"
        proxy_pem = a.certs_dir / "proxy.pem"
        for f in (node_cert, node_key, ca, proxy_pem):
            if not f.exists():
                raise SystemExit(f"run_system: {f} is missing; run `make certs` (scripts/gen_certs.py)")
        check_plugin_config(a.plugin_config, a.node_listen)
        if a.upstream and (urlsplit(a.upstream).scheme not in ("http", "https") or not urlsplit(a.upstream).hostname):
            raise SystemExit(f"run_system: UPSTREAM must be an http:// or https:// URL, got {a.upstream!r}")
        extra: tuple[tuple[str, int], ...] = () if a.upstream else (a.demo_listen,)
        if self.balanced:
            extra += (a.lb_stats_listen,) + tuple(hp for w in self.workers
                                                 for hp in ((w.host, w.proxy_port), (w.host, w.status_port)))
        busy = [fmt_hostport(hp) for hp in (a.listen, a.admin_listen, a.node_listen, a.console_listen) + extra
                if not port_free(hp)]
        if busy:
            raise SystemExit(f"run_system: already in use: {', '.join(busy)} (another `make run`? "
                             "stop it, or choose other ports with LISTEN, NODE_LISTEN, ...)")
        py = sys.executable
        db = a.var_dir / "node.db"

        node_cmd = [py, "-m", "node", "--listen", fmt_hostport(a.node_listen),
                    "--tls-cert", str(node_cert), "--tls-key", str(node_key), "--db", str(db),
                    "--console-listen", fmt_hostport(a.console_listen)]
        if a.node_config:
            node_cmd[3:3] = ["--config", str(a.node_config)]
        if a.node_mode:
            node_cmd += ["--mode", a.node_mode]
        node = self._child("node", node_cmd)
        ch, cp = connect_host(a.console_listen[0]), a.console_listen[1]
        console_url = f"http://{fmt_hostport((ch, cp))}"
        wait_until("ready", http_ok(console_url + "/ready"), node, a.ready_timeout)
        wait_until("TLS endpoint", tls_ok(connect_host(a.node_listen[0]), a.node_listen[1], ca), node, a.ready_timeout)

        upstream = a.upstream
        if not upstream:
            demo = self._child("upstream", [py, str(REPO / "scripts" / "demo_upstream.py"),
                                            "--listen", fmt_hostport(a.demo_listen)])
            upstream = f"http://{fmt_hostport((connect_host(a.demo_listen[0]), a.demo_listen[1]))}"
            wait_until("ready", http_ok(upstream + "/health"), demo, a.ready_timeout)

        config = connector_config(a.plugin_config, a.var_dir)
        if self.balanced:
            self._start_workers(upstream, config, proxy_pem)
            listeners = self._start_haproxy()
        else:
            proxy = self._child("proxy", self._mitmdump_cmd(upstream, config, proxy_pem, a.listen, a.admin_listen))
            wait_until("listening", tcp_ok(connect_host(a.listen[0]), a.listen[1]), proxy, a.ready_timeout)
            wait_until("status listener", http_ok(url_of(a.admin_listen) + "/plugins"), proxy, a.ready_timeout)
            listeners = ""
        admin = url_of(a.admin_listen)

        token, token_src = read_console_token(db)
        pl = f"{fmt_hostport((connect_host(a.listen[0]), a.listen[1]))}"
        print(f"""
================ Wallarm mitmproxy system is up ================
  proxy (connector)  http://{pl}  ->  {upstream}
  connector status   {admin}/plugins  (Kong's Admin API: /services, /routes, /plugins)
  connector config   {config}  (the Admin API writes here)
{listeners}  node endpoint      https://{fmt_hostport(a.node_listen)}  (TLS, {node_cert})
  console            {console_url}
  console token      {token or '?'}
                     (from {token_src})
  logs, database     {self.logs}/ , {db}
  try:  curl http://{pl}/api/v1/users
        curl -i http://{pl}/etc/passwd          # 403 in block mode
  Ctrl-C stops everything.
================================================================
""", flush=True)

    @property
    def balanced(self) -> bool:
        """HAProxy in front of the mitmdump workers (WORKERS >= 2, or --haproxy)."""
        return self.a.workers >= 2 or self.a.haproxy

    def _mitmdump_cmd(self, upstream: str, config: Path, proxy_pem: Path, listen: tuple[str, int],
                      admin_listen: tuple[str, int], options: list[str] | None = None) -> list[str]:
        """`options`: ours, before the user's MITMDUMP_ARGS (the last --set of an option wins)."""
        cmd = [find_mitmdump(), "--mode", f"reverse:{upstream}@{fmt_hostport(listen)}",
               "-s", str(REPO / "addon" / "wallarm.py"),
               "--set", f"wallarm_config={config}",
               "--set", f"wallarm_admin_listen={fmt_hostport(admin_listen)}",
               "--certs", f"*={proxy_pem}"]
        if self.a.upstream_ca:
            cmd += ["--set", f"ssl_verify_upstream_trusted_ca={self.a.upstream_ca}"]
        return cmd + (options or []) + self.a.mitmdump_args

    def _start_workers(self, upstream: str, config: Path, proxy_pem: Path) -> None:
        """Every worker on the one config file (an Admin API write through any reaches all)."""
        for w in self.workers:
            # HAProxy (on this machine) connects from the worker's own address and appends the client's
            # to X-Forwarded-For: trusted, the node sees each client's address, not HAProxy's
            cmd = self._mitmdump_cmd(upstream, config, proxy_pem, (w.host, w.proxy_port), (w.host, w.status_port),
                                     ["--set", f"wallarm_front_proxies={ipaddress.ip_network(w.host)}"])
            self.worker_cmds[w.name] = cmd
            self._child(w.name, cmd)
        for w, child in zip(self.workers, self.children[-len(self.workers):]):
            wait_until("listening", tcp_ok(w.host, w.proxy_port), child, self.a.ready_timeout)
            wait_until("status listener", http_ok(f"http://{fmt_hostport((w.host, w.status_port))}/plugins"),
                       child, self.a.ready_timeout)

    def _start_haproxy(self) -> str:
        """HAProxy on the public proxy and Admin API listeners; returns the lines for the banner."""
        a = self.a
        cfg = a.var_dir / "haproxy.cfg"
        cfg.write_text(render_haproxy_config(fmt_hostport(a.listen), fmt_hostport(a.admin_listen),
                                             fmt_hostport(a.lb_stats_listen), self.workers,
                                             token_required=not is_loopback_host(a.admin_listen[0])))
        haproxy = self._child("haproxy", [find_haproxy(), "-db", "-f", str(cfg)])
        stats = url_of(a.lb_stats_listen)
        wait_until("all workers up", lambda: haproxy_up(stats, "workers") == len(self.workers), haproxy,
                   a.ready_timeout)
        wait_until("Admin API", http_ok(url_of(a.admin_listen) + "/plugins"), haproxy, a.ready_timeout)
        lines = [f"  haproxy            {stats}/  (stats; /metrics for Prometheus; config {cfg})"]
        for w in self.workers:
            lines.append(f"  {w.name:<18} http://{fmt_hostport((w.host, w.proxy_port))}  status "
                         f"http://{fmt_hostport((w.host, w.status_port))}/status")
        return "\n".join(lines) + "\n"

    def watch(self) -> int:
        """Block until a signal or until a child dies; return the exit code for the script. A dead
        worker is restarted (HAProxy sends its share to the others meanwhile), at most
        WORKER_RESTARTS times a minute; any other dead child stops everything."""
        while not self.stopping.wait(0.5):
            for i, c in enumerate(self.children):
                if not c.alive() and c.name in self.worker_cmds and self._may_restart(c.name):
                    log.warning("%s exited (code %s); restarting it", c.name, c.proc.returncode if c.proc else "?")
                    self.children[i] = self._restart(c)
                    continue
                if not c.alive():
                    log.error("%s exited unexpectedly (code %s); stopping the rest. Last log lines:\n%s",
                              c.name, c.proc.returncode if c.proc else "?", c.tail())
                    return 1
        return 0

    def _may_restart(self, name: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self.restarts.get(name, []) if now - t < 60]
        self.restarts[name] = recent + [now]
        return len(recent) < WORKER_RESTARTS

    def _restart(self, dead: Child) -> Child:
        if dead._pump:
            dead._pump.join(2)
        child = Child(dead.name, self.worker_cmds[dead.name], dead.log_path, dead.echo, dead.env)
        child.start()
        return child

    def stop(self) -> None:
        for c in reversed(self.children):  # proxy, then upstream, then node (flushes its store)
            c.stop()
        self.children.clear()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="run_system: %(levelname)s %(message)s")
    system = System(args)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        system.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        system.start()
        if not system.stopping.is_set():
            code = system.watch()
    except Interrupted:
        pass
    except RuntimeError as e:
        log.error("%s", e)
        code = 1
    finally:
        system.stop()
    log.info("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
