"""`make run`'s orchestrator end to end: scripts/run_system.py starts the real node (TLS), the demo
upstream and mitmdump with the addon on free loopback ports; scripts/smoke_walkthrough.py (the
seed's walkthrough) passes against it; SIGTERM stops every child; a dead child stops the rest."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.procs import REPO, ManagedProcess, child_env, free_port

pytestmark = pytest.mark.e2e

START_TIMEOUT = 120  # a cold start on a busy 2-core CI machine: imports, hyperscan compile, TLS
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class RunningSystem:
    proc: ManagedProcess
    ports: dict[str, int]
    var_dir: Path

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def token(self) -> str:
        return (self.var_dir / "node.db.console-token").read_text().strip()

    def smoke(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(REPO / "scripts" / "smoke_walkthrough.py"), "--proxy", self.url("listen"),
             "--admin", self.url("admin"), "--console", self.url("console"), "--var-dir", str(self.var_dir),
             "--wait", "15", *extra],  # a loaded CI machine may take longer to flush the store
            capture_output=True, text=True, env=child_env(), timeout=60)

    def api(self, method: str, path: str, body: object | None = None) -> object:
        req = urllib.request.Request(self.url("console") + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {self.token()}",
                                              "Content-Type": "application/json"})
        with OPENER.open(req, timeout=10) as r:
            return json.loads(r.read())

    def children(self) -> dict[str, int]:
        """run_system's direct children by role (their own sessions, so not in our process group)."""
        pid = self.proc.proc.pid
        out: dict[str, int] = {}
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            role = "node" if " -m node " in cmd else "upstream" if "demo_upstream" in cmd else \
                "proxy" if "mitmdump" in cmd else cmd
            out[role] = int(child)
        return out


def _dispose(proc: ManagedProcess) -> None:
    """Stop the process and remove its temp log (kept only while the test may print it)."""
    proc.stop()
    proc.log_path.unlink(missing_ok=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _make_certs(out: Path) -> None:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_certs.py"), "--out", str(out)],
                       capture_output=True, text=True, env=child_env(), timeout=60)
    assert r.returncode == 0, r.stderr


def _start(tmp: Path, env: dict[str, str] | None = None) -> RunningSystem:
    """run_system.py with every port free and every file in tmp; the plugin config is the repo's
    enable-plugin.json with only the node address and CA path moved to this test's node."""
    ports = {k: free_port() for k in ("listen", "admin", "node", "console", "demo")}
    certs, var = tmp / "certs", tmp / "var"
    _make_certs(certs)
    plugin = json.loads((REPO / "enable-plugin.json").read_text())
    plugin["config"]["wallarm_node_address"] = f"https://127.0.0.1:{ports['node']}"
    plugin["config"]["node_ca_file"] = str(certs / "ca.pem")
    (tmp / "enable-plugin.json").write_text(json.dumps(plugin))
    cmd = [sys.executable, str(REPO / "scripts" / "run_system.py"),
           "--listen", f"127.0.0.1:{ports['listen']}", "--admin-listen", f"127.0.0.1:{ports['admin']}",
           "--node-listen", f"127.0.0.1:{ports['node']}", "--console-listen", f"127.0.0.1:{ports['console']}",
           "--demo-listen", f"127.0.0.1:{ports['demo']}", "--var-dir", str(var), "--certs-dir", str(certs),
           "--plugin-config", str(tmp / "enable-plugin.json"), "--ready-timeout", str(START_TIMEOUT)]
    proc = ManagedProcess("run_system", cmd, env=env)
    system = RunningSystem(proc, ports, var)
    try:
        proc.wait_for_log(r"Wallarm mitmproxy system is up", timeout=START_TIMEOUT * 3)
    except RuntimeError:
        _dispose(proc)
        raise
    return system


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    s = _start(tmp_path_factory.mktemp("system"))
    yield s
    _dispose(s.proc)


def test_prints_where_everything_is(system: RunningSystem) -> None:
    out = system.proc.output()
    assert f"http://127.0.0.1:{system.ports['listen']}" in out
    assert f"http://127.0.0.1:{system.ports['console']}" in out
    assert f"console token      {system.token()}" in out
    assert set(system.children()) == {"node", "upstream", "proxy"}


def test_smoke_walkthrough_passes(system: RunningSystem) -> None:
    r = system.smoke()
    assert r.returncode == 0, r.stdout + r.stderr + system.proc.output()[-3000:]
    assert r.stdout.count("[PASS]") == 4


def test_smoke_walkthrough_fails_when_the_node_only_monitors(system: RunningSystem) -> None:
    """The seed: blocked in blocking mode. In monitoring mode the attack passes, and the smoke
    test must notice (a smoke test that cannot fail proves nothing)."""
    system.api("PUT", "/api/v1/mode", {"default": "monitoring"})
    try:
        r = system.smoke()
        assert r.returncode == 1, r.stdout
        assert "[FAIL] GET /etc/passwd is blocked" in r.stdout
        assert "[PASS] benign request reaches the upstream" in r.stdout
        deadline = time.monotonic() + 10  # and it is recorded as monitored (the store batches writes)
        while True:
            items = system.api("GET", "/api/v1/attacks?q=/etc/passwd&limit=50")["items"]  # type: ignore[index]
            if any(i["action"] == "monitored" for i in items) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert any(i["action"] == "monitored" and i["path"] == "/etc/passwd" for i in items), items
    finally:
        system.api("PUT", "/api/v1/mode", {"default": "block"})
    assert system.smoke().returncode == 0


def test_smoke_walkthrough_fails_without_a_system(tmp_path: Path) -> None:
    dead = free_port()
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "smoke_walkthrough.py"), "--proxy",
                        f"http://127.0.0.1:{dead}", "--admin", f"http://127.0.0.1:{dead}", "--console",
                        f"http://127.0.0.1:{dead}", "--var-dir", str(tmp_path), "--wait", "0"],
                       capture_output=True, text=True, env=child_env(), timeout=60)
    assert r.returncode == 1
    assert "FAILED" in r.stdout and "Traceback" not in r.stderr


def test_upstream_variable_replaces_the_demo_api_and_a_dead_child_stops_all(tmp_path: Path) -> None:
    """The user's own API, here over TLS with a private CA (UPSTREAM + UPSTREAM_CA)."""
    up_certs = tmp_path / "upstream-certs"
    _make_certs(up_certs)
    own = ManagedProcess("own-upstream", [sys.executable, str(REPO / "scripts" / "demo_upstream.py"),
                                          "--listen", f"127.0.0.1:{free_port()}", "--tls-cert",
                                          str(up_certs / "node.pem"), "--tls-key", str(up_certs / "node-key.pem")])
    try:
        port = int(own.wait_for_log(r"listening at https://127\.0\.0\.1:(\d+)").group(1))
        s = _start(tmp_path, env={"UPSTREAM": f"https://127.0.0.1:{port}", "UPSTREAM_CA": str(up_certs / "ca.pem")})
        try:
            assert set(s.children()) == {"node", "proxy"}  # no demo upstream of its own
            assert not _listening(s.ports["demo"])
            with OPENER.open(s.url("listen") + "/api/v1/orders/1001", timeout=10) as r:
                assert json.loads(r.read())["id"] == 1001
            assert s.smoke().returncode == 0
            # the node dies: run_system notices, stops the proxy and exits non-zero
            node_pid = s.children()["node"]
            os.kill(node_pid, signal.SIGKILL)
            s.proc.proc.wait(30)
            assert s.proc.proc.returncode == 1
            assert "node exited unexpectedly" in s.proc.output()
            deadline = time.monotonic() + 10
            while _listening(s.ports["listen"]) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _listening(s.ports["listen"])
        finally:
            _dispose(s.proc)
    finally:
        _dispose(own)


def test_sigterm_stops_every_child_cleanly(tmp_path: Path) -> None:
    s = _start(tmp_path)
    kids = s.children()
    assert set(kids) == {"node", "upstream", "proxy"}
    s.proc.proc.send_signal(signal.SIGTERM)  # only run_system: children live in their own sessions
    assert s.proc.proc.wait(60) == 0
    out = s.proc.output()
    assert "received SIGTERM, stopping" in out and "stopped" in out
    for role, pid in kids.items():
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), role
    for name in ("listen", "admin", "node", "console", "demo"):
        assert not _listening(s.ports[name]), name
    assert "did not stop within" not in out  # every child stopped on SIGTERM, none was killed
    _dispose(s.proc)


def test_busy_port_and_missing_certs_are_clear_errors(tmp_path: Path) -> None:
    base = [sys.executable, str(REPO / "scripts" / "run_system.py"), "--var-dir", str(tmp_path / "var"),
            "--plugin-config", str(REPO / "enable-plugin.json")]
    r = subprocess.run(base + ["--certs-dir", str(tmp_path / "nocerts")], capture_output=True, text=True,
                       env=child_env(), timeout=60)
    assert r.returncode != 0 and "make certs" in r.stderr and "Traceback" not in r.stderr
    _make_certs(tmp_path / "certs")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run(base + ["--certs-dir", str(tmp_path / "certs"), "--listen", f"127.0.0.1:{port}",
                                   "--node-listen", f"127.0.0.1:{free_port()}"],
                           capture_output=True, text=True, env=child_env(), timeout=60)
    assert r.returncode != 0 and f"already in use: 127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(base + ["--certs-dir", str(tmp_path / "certs"), "--upstream", "api.example"],
                       capture_output=True, text=True, env=child_env(), timeout=60)
    assert r.returncode != 0 and "UPSTREAM must be an http:// or https:// URL" in r.stderr
