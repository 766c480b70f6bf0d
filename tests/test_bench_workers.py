"""The scaling benchmark's parts: HAProxy's rendered config, the nginx + ModSecurity peer, and a
short run of `scripts/bench_proxy.py --workers 2` (scripts/bench_workers.py) end to end.

The numbers are not judged (a 1 s run on a shared machine is noise); what is checked is that
every setup serves the benign request without errors, the table lands in the doc section, and
no process is left behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.procs import REPO, ManagedProcess, child_env, free_port, group_alive
from tests.support.proxy import start_upstream

sys.path.insert(0, str(REPO / "scripts"))

import haproxy_config  # noqa: E402
from bench_workers import DOC_BEGIN, DOC_END  # noqa: E402

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"  # run_system.find_haproxy exits when missing: skip instead
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
needs_haproxy = pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy not installed (apt-get install haproxy)")


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with OPENER.open(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0  # not listening (yet)


@needs_haproxy
@pytest.mark.parametrize("token_required", [False, True])
def test_rendered_configs_are_valid_haproxy_configs(tmp_path: Path, token_required: bool) -> None:
    workers = [haproxy_config.Worker(f"worker{i}", "127.0.0.1", 20000 + 2 * i, 20001 + 2 * i) for i in (1, 2, 3)]
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_config.render("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", workers, token_required))
    r = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    text = cfg.read_text()
    assert text.count("check port 20003") == 2  # worker1's status port: health of both proxy backends
    assert "server worker3 127.0.0.1:20007 check" in text  # the Admin API backend: status ports
    assert ("token_given" in text) is token_required


@needs_haproxy
def test_compose_config_is_the_rendered_template(tmp_path: Path) -> None:
    assert (REPO / "docker" / "haproxy.cfg").read_text() == haproxy_config.render_compose(), \
        "docker/haproxy.cfg is stale: python scripts/haproxy_config.py --compose > docker/haproxy.cfg"
    r = subprocess.run([HAPROXY, "-c", "-f", str(REPO / "docker" / "haproxy.cfg")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_haproxy
@pytest.mark.parametrize("token", ["s3cret-token", ""])
def test_admin_frontend_off_loopback_wants_the_token(tmp_path: Path, token: str) -> None:
    """token_required: HAProxy itself answers 401 unless the request carries the token from its
    environment (never written to the file); /status and /metrics stay open. With no token
    configured, nothing but those (an empty header must not match an empty token)."""
    backend = start_upstream()  # stands in for a worker's status listener: 200 to everything
    admin, proxy, stats = free_port(), free_port(), free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_config.render(f"127.0.0.1:{proxy}", f"127.0.0.1:{admin}", f"127.0.0.1:{stats}",
                                         [haproxy_config.Worker("worker1", "127.0.0.1", backend.port, backend.port)],
                                         token_required=True))
    assert token == "" or token not in cfg.read_text()
    lb = ManagedProcess("haproxy", [HAPROXY, "-db", "-f", str(cfg)], env={haproxy_config.TOKEN_ENV: token})
    try:
        deadline = time.monotonic() + 20
        while status_of(f"http://127.0.0.1:{admin}/status") != 200:
            assert time.monotonic() < deadline, lb.output()
            time.sleep(0.1)
        base = f"http://127.0.0.1:{admin}"
        assert status_of(base + "/metrics") == 200
        assert status_of(base + "/plugins") == 401
        assert status_of(base + "/plugins", {"Kong-Admin-Token": "wrong"}) == 401
        assert status_of(base + "/plugins", {"Kong-Admin-Token": ""}) == 401
        assert status_of(base + "/plugins", {"Kong-Admin-Token": token}) == (200 if token else 401)
    finally:
        lb.stop()
        backend.stop()


@pytest.mark.skipif(not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists(), reason="nginx not installed")
def test_nginx_modsecurity_peer_blocks_an_attack_and_passes_a_benign_request() -> None:
    from peers.nginx_modsecurity import NginxModSecurity

    backend = start_upstream()
    try:
        with NginxModSecurity(backend.port, workers=2) as peer:
            pids = peer.pids()
            assert len(pids) == 3  # master + 2 workers
            assert status_of(peer.url + "/api/v1/users?limit=5") == 200
            assert status_of(peer.url + "/?id=1%27%20OR%20%271%27%3D%271") == 403  # CRS 942100 (libinjection)
        seen = backend.seen()
        assert "/api/v1/users?limit=5" in seen and not any("id=" in path for path in seen)
    finally:
        backend.stop()
    assert not group_alive(pids[0])


@needs_haproxy
@pytest.mark.e2e
def test_short_scaling_run_fills_the_table_and_stops_everything(tmp_path: Path) -> None:
    out, png, doc = tmp_path / "w.json", tmp_path / "w.png", tmp_path / "bench.md"
    doc.write_text(f"# Benchmarks\n\nbefore\n{DOC_BEGIN}\nold table\n{DOC_END}\nafter\n")
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_proxy.py"), "--workers", "2", "--duration", "1",
         "--warmup", "0.5", "--connections", "8", "--loadgen", "builtin", "--json", str(out), "--plot", str(png),
         "--doc", str(doc)], capture_output=True, text=True, timeout=300, env=child_env(), cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    setups = [r["setup"] for r in report["rows"]]
    assert setups == ["upstream", "haproxy+1 worker", "haproxy+2 workers", "nginx+modsec 1", "nginx+modsec 2"]
    for row in report["rows"]:
        assert row["rps"] > 0 and row["load"]["non_2xx"] == 0 and row["load"]["socket_errors"] == 0, row
        assert row["proxy_cpu_us"] > 0, row
    for r in report["rows"]:  # the node judged the HAProxy setups' requests in-line; HAProxy's CPU is its own part
        assert r["node_cpu_us"] > 0 or r["kind"] != "haproxy", r
        assert (0 < r["balancer_cpu_us"] < r["proxy_cpu_us"]) if r["kind"] == "haproxy" else r["balancer_cpu_us"] == 0, r
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nbefore\n") and text.endswith(f"{DOC_END}\nafter\n")
    assert "old table" not in text and "| haproxy+2 workers | 2 |" in text and "![scaling](w.png)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    procs = report["meta"]["processes"]
    assert {"upstream", "node", "haproxy-1", "haproxy-2", "mitmdump-w2-1", "mitmdump-w2-2", "nginx-modsec-w2"} <= set(procs)
    leaked = [name for name, pid in procs.items() if group_alive(pid)]
    assert not leaked, leaked
