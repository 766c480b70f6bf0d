"""Start, stop, restart, retention, TLS, the shared secret and config errors of the node process."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest

from node.store.base import AttackRecord, Hit
from node.store.sqlite import SQLiteStore
from tests.support.node import NodeClient, start_node, stored_attacks
from tests.support.procs import REPO, child_env, free_port
from tests.test_node_endpoint import ATTACK, BENIGN, by_id, console_api, wait_for
from tests.support.metrics import samples

pytestmark = pytest.mark.e2e


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env(), cwd=REPO)


async def test_restart_keeps_stored_attacks(tmp_path):
    node = start_node(tmp_path)
    with NodeClient(node) as c:
        _, verdict = c.request("GET", ATTACK)
    await wait_for(node.db_path, lambda rs: by_id(rs, verdict["request_id"]))
    assert node.stop() == 0
    node = start_node(tmp_path)  # same tmp_path: same database, new ports
    try:
        status, page = console_api(node, "GET", "/api/v1/attacks")
        assert status == 200
        assert verdict["request_id"] in {a["request_id"] for a in page["items"]}
    finally:
        node.stop()


async def test_sigterm_flushes_every_queued_record(tmp_path):
    node = start_node(tmp_path)
    sent = []
    with NodeClient(node) as c:
        for i in range(300):
            _, v = c.request("GET", f"{ATTACK}?n={i}", delivery="async")
            sent.append(v["request_id"])
    assert node.stop(signal.SIGTERM) == 0  # right after the last answer: records still queued
    assert "attack store flushed and closed" in node.output()
    stored = {r.request_id for r in await stored_attacks(node.db_path, limit=1000)}
    assert set(sent) <= stored


async def test_sigterm_lets_in_flight_messages_finish(tmp_path):
    node = start_node(tmp_path)
    body = b"POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 200_000
    from wallarm_wire import protocol as p

    c = NodeClient(node)
    try:
        # Send the headers and half the body, signal the node, then finish sending.
        def slow_body():
            yield body[:100_000]
            node.proc.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            yield body[100_000:]
        r = c.http.post(c.url, content=slow_body(), headers={
            p.H_REQUEST_ID: p.new_request_id(), "Content-Type": p.CONTENT_TYPE_REQUEST,
            p.H_FORWARDED_FOR: "192.0.2.1"})
        assert r.status_code == 200 and r.json()["action"] == "pass"
    finally:
        c.close()
    assert node.proc.proc.wait(15) == 0


async def test_retention_by_age_and_count(tmp_path):
    # Seed the store with old and recent records before the node starts.
    db = tmp_path / "node.db"
    store = SQLiteStore(db)
    await store.open()
    now = time.time()
    for i in range(3):
        store.add_attack(AttackRecord(now - 40 * 86400, f"{i:032x}", "192.0.2.1", "old.test", "GET", "/old",
                                      [Hit("ptrav", "path", "r1", "/etc/passwd")], "blocked", "block"))
    for i in range(6):
        store.add_attack(AttackRecord(now - 60 + i, f"{100 + i:032x}", "192.0.2.1", "new.test", "GET", "/new",
                                      [Hit("ptrav", "path", "r1", "/etc/passwd")], "blocked", "block"))
    await store.close()
    node = start_node(tmp_path, extra={"retention": {"max_age_days": 30, "max_count": 4, "interval_seconds": 1}})
    try:
        records = await wait_for(db, lambda rs: len(rs) == 4)
        assert {r.host for r in records} == {"new.test"}
        assert sorted(r.request_id for r in records) == [f"{100 + i:032x}" for i in range(2, 6)]
        with NodeClient(node) as c:  # the periodic pass keeps trimming while the node runs
            for _ in range(3):
                c.request("GET", ATTACK)
        await asyncio.sleep(1.5)
        records = await wait_for(db, lambda rs: len(rs) == 4 and sum(r.host == "api.test" for r in rs) == 3)
    finally:
        node.stop()


async def test_mode_set_in_console_survives_restart_and_cli_mode_wins(tmp_path):
    node = start_node(tmp_path, mode="block")
    status, body = console_api(node, "PUT", "/api/v1/mode", {"default": "monitoring", "overrides": []})
    assert status == 200, body
    with NodeClient(node) as c:
        assert c.request("GET", ATTACK)[0] == 200  # next request already sees it
    node.stop()
    node = start_node(tmp_path, mode="block")  # config still says block: the console's choice wins
    try:
        with NodeClient(node) as c:
            status, verdict = c.request("GET", ATTACK)
        assert status == 200 and verdict["mode"] == "monitoring"
        assert "saved by the console" in node.output()
    finally:
        node.stop()


async def test_health_and_metrics_are_open(tmp_path):
    node = start_node(tmp_path)
    try:
        with NodeClient(node) as c:
            c.request("GET", ATTACK)
            c.request("GET", BENIGN)
        for path in ("/live", "/ready"):
            with urllib.request.urlopen(node.console_url + path, timeout=5) as r:  # noqa: S310
                assert r.status == 200
        with urllib.request.urlopen(node.console_url + "/metrics", timeout=5) as r:  # noqa: S310
            text = r.read().decode()
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        got = samples(text)
        assert got['wallarm_node_messages_total{type="request",delivery="sync"}'] == 2
        assert got['wallarm_node_verdicts_total{action="block",reason="attack"}'] == 1
        assert got['wallarm_node_verdicts_total{action="pass",reason="benign"}'] == 1
        assert got['wallarm_node_attacks_total{type="ptrav"}'] >= 1
        assert got["wallarm_node_analysis_seconds_count"] == 2
        with pytest.raises(urllib.error.HTTPError) as err:  # the console itself needs the token
            urllib.request.urlopen(node.console_url + "/api/v1/attacks", timeout=5)  # noqa: S310
        assert err.value.code == 401
    finally:
        node.stop()


async def test_shared_secret_refuses_foreign_connectors(tmp_path):
    node = start_node(tmp_path, extra={"shared_secret": "s3cret-between-us"})
    try:
        with NodeClient(node) as c:
            r = c.http.post(c.url, content=b"GET / HTTP/1.1\r\n\r\n", headers={"X-Wallarm-Request-Id": "a" * 32,
                            "Content-Type": "message/http"})
            assert r.status_code == 401 and "X-Wallarm-Secret" in r.json()["error"]
        with NodeClient(node, secret="wrong") as c:
            assert c.raw(b"GET / HTTP/1.1\r\n\r\n", {"X-Wallarm-Request-Id": "a" * 32, "X-Wallarm-Secret": "wrong",
                                                      "Content-Type": "message/http"}).status_code == 401
        with NodeClient(node, secret="s3cret-between-us") as c:
            assert c.request("GET", ATTACK)[0] == 403
    finally:
        node.stop()


async def test_tls_endpoint(tmp_path, certs):
    node = start_node(tmp_path, tls=(certs / "node.pem", certs / "node-key.pem"))
    try:
        assert node.endpoint_url.startswith("https://")
        with NodeClient(node, verify=ssl.create_default_context(cafile=str(certs / "ca.pem"))) as c:
            assert c.request("GET", ATTACK)[0] == 403
            assert c.request("GET", BENIGN)[0] == 200
        with NodeClient(node) as c:  # the system store does not know our CA
            with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
                c.request("GET", BENIGN)
    finally:
        node.stop()


def test_plain_http_refused_off_loopback():
    r = run_cli("--listen", f"0.0.0.0:{free_port()}", "--console-listen", f"127.0.0.1:{free_port()}")
    assert r.returncode == 2 and "plain HTTP is allowed only on loopback" in r.stderr


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "node.yaml"
    bad.write_text("mode: blocking\nlisten: 127.0.0.1:5050\nunknown_key: 1\n")
    r = run_cli("--config", str(bad))
    assert r.returncode == 2
    assert "mode:" in r.stderr and "unknown_key: unknown field" in r.stderr and str(bad) in r.stderr
    broken = tmp_path / "node.json"
    broken.write_text("{not json")
    r = run_cli("--config", str(broken))
    assert r.returncode == 2 and "not valid JSON" in r.stderr
    r = run_cli("--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "cannot read: No such file" in r.stderr and "missing.yaml" in r.stderr
    r = run_cli("--mode", "paranoid")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_busy_port_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("--listen", f"127.0.0.1:{port}", "--console-listen", f"127.0.0.1:{free_port()}",
                    "--db", str(tmp_path / "n.db"))
    assert r.returncode == 2 and "cannot listen" in r.stderr
