"""`make run WORKERS=2` for real: scripts/run_system.py --workers 2 on free loopback ports brings
up the node, an upstream, two mitmdump workers and HAProxy in front of them.

* the seed's walkthrough (scripts/smoke_walkthrough.py) passes through HAProxy;
* an Admin API write through HAProxy's :8001 is applied by both workers (one shared file);
* one worker killed (SIGKILL) under a steady client load: no client-visible failure once HAProxy's
  health check has marked it down (the failures before, if any, are counted and printed), no
  attack reaches the upstream, and the worker run_system restarts takes traffic again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import haproxy_config  # noqa: E402
from haproxy_config import server_states  # noqa: E402
from run_system import find_haproxy  # noqa: E402

from tests.support.procs import REPO, ManagedProcess, child_env, free_port
from tests.support.proxy import Upstream, start_upstream
from tests.support.tagged_load import run_tagged_load

pytestmark = pytest.mark.e2e

START_TIMEOUT = 120
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
KILL_AFTER_S = 3.0
LOAD_S = 12.0
CONNECTIONS = 8
ATTACK_EVERY = 5


@dataclass
class Workers:
    proc: ManagedProcess
    upstream: Upstream
    ports: dict[str, int]
    workers: dict[str, tuple[int, int]]  # name -> (proxy port, status port)
    var_dir: Path

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def status_url(self, worker: str) -> str:
        return f"http://127.0.0.1:{self.workers[worker][1]}"

    def worker_pid(self, worker: str) -> int:
        """The mitmdump process run_system started for `worker` (found by its listen address)."""
        pid = self.proc.proc.pid
        mark = f"@127.0.0.1:{self.workers[worker][0]}"
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "mitmdump" in cmd and mark in cmd:
                return int(child)
        raise LookupError(worker)

    def server_status(self, backend: str, server: str) -> str:
        return server_states(self.url("stats"), backend)[server]


def get_json(url: str | urllib.request.Request) -> tuple[int, dict]:
    try:
        with OPENER.open(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metric(url: str, name: str) -> float:
    """A metric from a /metrics page, summed over its label sets."""
    total = 0.0
    with OPENER.open(url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith((name + " ", name + "{")):
                total += float(line.rsplit(" ", 1)[1])
    return total


def status_of_get(url: str) -> int:
    try:
        with OPENER.open(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    tmp = tmp_path_factory.mktemp("workers")
    ports = {k: free_port() for k in ("listen", "admin", "node", "console", "demo", "stats")}
    certs, var = tmp / "certs", tmp / "var"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_certs.py"), "--out", str(certs)],
                       capture_output=True, text=True, env=child_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    plugin = json.loads((REPO / "enable-plugin.json").read_text())
    plugin["config"].update(wallarm_node_address=f"https://127.0.0.1:{ports['node']}",
                            node_ca_file=str(certs / "ca.pem"))  # the seed's: trusts no proxy
    (tmp / "enable-plugin.json").write_text(json.dumps(plugin))
    upstream = start_upstream()  # counts every tagged request it gets (tests/support/tagged_load.py)
    cmd = [sys.executable, str(REPO / "scripts" / "run_system.py"), "--workers", "2", "--worker-base", "0",
           "--upstream", upstream.url,
           "--listen", f"127.0.0.1:{ports['listen']}", "--admin-listen", f"127.0.0.1:{ports['admin']}",
           "--node-listen", f"127.0.0.1:{ports['node']}", "--console-listen", f"127.0.0.1:{ports['console']}",
           "--lb-stats-listen", f"127.0.0.1:{ports['stats']}", "--var-dir", str(var), "--certs-dir", str(certs),
           "--plugin-config", str(tmp / "enable-plugin.json"), "--ready-timeout", str(START_TIMEOUT)]
    proc = ManagedProcess("run_system", cmd)
    try:
        proc.wait_for_log(r"Wallarm mitmproxy system is up", timeout=START_TIMEOUT * 3)
        workers = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in re.finditer(
            r"(worker\d)\s+http://127\.0\.0\.1:(\d+)\s+status http://127\.0\.0\.1:(\d+)/status", proc.output())}
        assert set(workers) == {"worker1", "worker2"}, proc.output()[-3000:]
        yield Workers(proc, upstream, ports, workers, var)
    finally:
        proc.stop()
        upstream.stop()
        proc.log_path.unlink(missing_ok=True)


def test_walkthrough_passes_through_haproxy(system: Workers) -> None:
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "smoke_walkthrough.py"), "--proxy", system.url("listen"),
         "--admin", system.url("admin"), "--console", system.url("console"), "--var-dir", str(system.var_dir),
         "--wait", "15"], capture_output=True, text=True, env=child_env(), timeout=60)
    assert r.returncode == 0 and r.stdout.count("[PASS]") == 4, r.stdout + system.proc.output()[-3000:]
    # HAProxy balances: both workers inspected requests
    for _ in range(6):
        with OPENER.open(system.url("listen") + "/api/v1/users", timeout=5) as resp:
            assert resp.status == 200
    assert all(metric(system.status_url(w), "wallarm_connector_requests_inspected_total") > 0
               for w in system.workers)


def test_the_node_sees_the_clients_address_not_haproxys(system: Workers) -> None:
    """run_system sets each worker's wallarm_front_proxies to HAProxy's address: the client's
    X-Forwarded-For hop (HAProxy appends it) is what the node records, with the seed's config."""
    req = urllib.request.Request(system.url("listen") + "/etc/passwd?front=1",
                                 headers={"X-Forwarded-For": "198.51.100.23"})
    try:
        OPENER.open(req, timeout=10)
        raise AssertionError("the attack was not blocked")
    except urllib.error.HTTPError as e:
        assert e.code == 403
        rid = e.headers["x-wallarm-request-id"]
    token = (system.var_dir / "node.db.console-token").read_text().strip()
    deadline = time.monotonic() + 10
    while True:
        req = urllib.request.Request(system.url("console") + "/api/v1/attacks?q=%2Fetc%2Fpasswd&limit=50",
                                     headers={"Authorization": f"Bearer {token}"})
        items = [i for i in get_json(req)[1]["items"] if i["request_id"] == rid]
        if items:
            assert items[0]["client_ip"] == "198.51.100.23"
            return
        assert time.monotonic() < deadline, "the attack never reached the console"
        time.sleep(0.2)


def test_an_admin_write_through_haproxy_reaches_both_workers(system: Workers) -> None:
    req = urllib.request.Request(system.url("admin") + "/services", method="POST",
                                 data=b"name=shared-svc&url=http%3A%2F%2F127.0.0.1%3A9",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with OPENER.open(req, timeout=10) as r:
        assert r.status == 201
    deadline = time.monotonic() + 5  # the other worker's watcher polls the file every 0.5 s
    while True:
        seen = {w: {s["name"] for s in get_json(system.status_url(w) + "/services")[1]["data"]}
                for w in system.workers}
        hashes = {get_json(system.status_url(w) + "/status")[1]["configuration_hash"] for w in system.workers}
        if all("shared-svc" in names for names in seen.values()) and len(hashes) == 1:
            break
        assert time.monotonic() < deadline, (seen, hashes)
        time.sleep(0.1)
    req = urllib.request.Request(system.url("admin") + "/services/shared-svc", method="DELETE")
    with OPENER.open(req, timeout=10) as r:
        assert r.status == 204


def test_killing_a_worker_under_load_loses_no_request_once_it_is_marked_down(system: Workers) -> None:
    assert system.server_status("workers", "worker1").startswith("UP")
    killed_pid = system.worker_pid("worker1")
    marked: dict[str, float] = {}

    async def kill_and_watch() -> None:
        await asyncio.sleep(KILL_AFTER_S)
        marked["killed"] = time.monotonic()
        os.kill(killed_pid, signal.SIGKILL)
        while time.monotonic() - marked["killed"] < LOAD_S:
            status = await asyncio.to_thread(system.server_status, "workers", "worker1")
            if not status.startswith("UP"):
                marked["down"] = time.monotonic()
                return
            await asyncio.sleep(0.02)

    async def main():  # type: ignore[no-untyped-def]
        tally, _ = await asyncio.gather(
            run_tagged_load("127.0.0.1", system.ports["listen"], "kill", CONNECTIONS, LOAD_S, ATTACK_EVERY),
            kill_and_watch())
        return tally

    tally = asyncio.run(main())
    assert "down" in marked, "HAProxy never marked the killed worker down"
    before = [o for t, o in tally.failed_at if t < marked["down"]]
    after = [o for t, o in tally.failed_at if t >= marked["down"]]
    print(f"\n{tally.total} requests in {tally.seconds:.1f} s: {dict(tally.outcomes)}; worker1 marked down "
          f"{(marked['down'] - marked['killed']) * 1000:.0f} ms after SIGKILL; failures before the mark-down: "
          f"{len(before)} {before}, after: {len(after)}")
    assert after == [], tally.problems
    assert tally.outcomes["upstream"] > 100 and tally.outcomes["blocked"] > 0
    counts = system.upstream.tag_counts()
    attacks_seen = [tag for tag in counts if int(tag.rsplit("-", 1)[1]) % ATTACK_EVERY == 0]
    assert attacks_seen == [], f"attacks reached the upstream: {attacks_seen[:5]}"
    assert all(counts.get(tag, 0) >= 1 for tag in tally.upstream_tags)

    # run_system restarts the worker; HAProxy's check brings it back and it takes traffic again
    deadline = time.monotonic() + 60
    while not system.server_status("workers", "worker1").startswith("UP"):
        assert time.monotonic() < deadline, system.proc.output()[-3000:]
        time.sleep(0.2)
    assert system.worker_pid("worker1") != killed_pid
    assert "worker1 exited (code -9); restarting it" in system.proc.output()
    before_count = metric(system.status_url("worker1"), "wallarm_connector_requests_inspected_total")
    for _ in range(10):
        with OPENER.open(system.url("listen") + "/api/v1/users", timeout=5) as resp:
            assert resp.status == 200
    assert metric(system.status_url("worker1"), "wallarm_connector_requests_inspected_total") > before_count


def test_a_worker_whose_node_breaker_is_open_is_taken_out_and_comes_back(tmp_path: Path) -> None:
    """The health check reads the breaker: two workers behind HAProxy, one of them unable to
    reach its node (a partition, here: a node address nothing listens on). Once its breaker opens
    its /status answers 503 and HAProxy sends everything to the other worker, where every attack
    is judged and blocked. When the other worker's node goes too, every worker is unhealthy:
    requests still pass as fail_open says instead of HAProxy answering 503. When a node appears at
    the first worker's address, its own /status probe closes the breaker and HAProxy puts it back,
    with no request needed to get there."""
    from tests.support.node import start_node
    from tests.support.proxy import start_proxy, write_config

    node = start_node(tmp_path / "node", mode="block")
    upstream = start_upstream()
    lost_port = free_port()
    started: list = []
    try:
        good = start_proxy(upstream.url, write_config(tmp_path / "good.json", node.endpoint_url), name="good")
        started.append(good)
        cut = start_proxy(upstream.url, write_config(tmp_path / "cut.json", f"http://127.0.0.1:{lost_port}/",
                                                     breaker_failures=1, breaker_cooldown_ms=500), name="cut")
        started.append(cut)
        front, admin, stats = free_port(), free_port(), free_port()
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(haproxy_config.render(
            f"127.0.0.1:{front}", f"127.0.0.1:{admin}", f"127.0.0.1:{stats}",
            [haproxy_config.Worker("good", "127.0.0.1", good.port, good.admin_port),
             haproxy_config.Worker("cut", "127.0.0.1", cut.port, cut.admin_port)], token_required=False))
        lb = ManagedProcess("haproxy", [find_haproxy(), "-db", "-f", str(cfg)])
        started.append(lb)
        stats_url = f"http://127.0.0.1:{stats}"

        def state(server: str) -> str:
            try:
                return server_states(stats_url, "workers")[server]
            except OSError:
                return "?"

        wait_for(lambda: state("good").startswith("UP") and state("cut").startswith("UP"), 30, lb)
        # traffic opens the cut worker's breaker (its requests fail open meanwhile), then /status 503
        deadline = time.monotonic() + 20
        while not state("cut").startswith("DOWN"):
            assert time.monotonic() < deadline, (state("cut"), cut.proc.output()[-2000:])
            with OPENER.open(f"http://127.0.0.1:{front}/api/v1/users", timeout=5):
                pass
            time.sleep(0.05)
        code, body = get_json(f"http://127.0.0.1:{cut.admin_port}/status")
        assert code == 503 and body["wallarm"]["nodes_down"] == [[f"http://127.0.0.1:{lost_port}/"]]
        blocked = 0
        for i in range(30):  # all through the good worker now: every attack judged and blocked
            try:
                OPENER.open(f"http://127.0.0.1:{front}/?id=1%27%20OR%20%271%27%3D%27{i}", timeout=5)
            except urllib.error.HTTPError as e:
                blocked += e.code == 403
        assert blocked == 30
        # the good worker's node goes too: no worker can inspect. HAProxy does not answer 503 for
        # want of a healthy worker: it sends the traffic to the workers that are alive, which
        # apply their plugin's fail_open (here: forward), as one mitmdump would.
        node.stop()
        deadline = time.monotonic() + 20
        while not state("good").startswith("DOWN"):
            assert time.monotonic() < deadline, (state("good"), good.proc.output()[-2000:])
            status_of_get(f"http://127.0.0.1:{front}/api/v1/users")
            time.sleep(0.05)
        failed_open = metric(good.admin, "wallarm_connector_fail_open_total") + \
            metric(cut.admin, "wallarm_connector_fail_open_total")
        assert [status_of_get(f"http://127.0.0.1:{front}/api/v1/users") for _ in range(10)] == [200] * 10
        assert metric(good.admin, "wallarm_connector_fail_open_total") + \
            metric(cut.admin, "wallarm_connector_fail_open_total") == failed_open + 10
        cut_judged = metric(cut.admin, "wallarm_connector_requests_inspected_total")
        # a node appears at the cut worker's address: the health check's probe brings it back
        started.append(start_node(tmp_path / "late", mode="block", port=lost_port))
        wait_for(lambda: state("cut").startswith("UP"), 30, lb)
        assert [status_of_get(f"http://127.0.0.1:{front}/?id=1%27%20OR%20%271%27%3D%271") for _ in range(5)] \
            == [403] * 5  # judged again, by the worker that came back
        assert metric(cut.admin, "wallarm_connector_requests_inspected_total") > cut_judged
        assert get_json(cut.admin + "/status")[0] == 200
    finally:
        for p in reversed(started):
            p.stop()
        upstream.stop()
        node.stop()


def wait_for(check, timeout: float, proc: ManagedProcess) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline and proc.proc.poll() is None, proc.output()[-2000:]
        time.sleep(0.1)
