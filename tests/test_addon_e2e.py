"""End to end: real mitmdump + the connector + a real upstream + the real node or the fake node.

Every process is real and listens on a free loopback port. The fake node (a real aiohttp
server) is used only where a fault must be injected.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.metrics import samples, value
from tests.support.procs import MITMDUMP, REPO, ManagedProcess, free_port
from tests.support.proxy import (FakeNodeProc, Proxy, Upstream, start_fake_node, start_proxy, start_upstream,
                                 upstream_body, write_config)

pytestmark = pytest.mark.e2e

SQLI = "/api/items?id=1%27%20OR%20%271%27%3D%271"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = start_upstream()
    yield up
    up.stop()


REAL_NODE_CONSOLE: dict[str, str] = {}


def node_metric(sample: str) -> float:
    """One sample from the real node's Prometheus text (its console listener), 0 if absent."""
    return value(httpx.get(REAL_NODE_CONSOLE["url"] + "/metrics").text, sample)


@pytest.fixture(scope="module")
def real_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("node")
    port, console = free_port(), free_port()
    # a streamed body is not inspected (a partial inspection: blocked in mode block); /upload
    # lets it through recorded, as a deployment that streams uploads would configure it
    config = d / "node.json"
    config.write_text('{"overrides": [{"path_prefix": "/upload", "mode": "block", "partial_inspection": "monitor"}]}')
    proc = ManagedProcess("node", [sys.executable, "-m", "node", "--config", str(config), "--listen", f"127.0.0.1:{port}",
                                   "--console-listen", f"127.0.0.1:{console}", "--db", str(d / "node.db"),
                                   "--mode", "block"])
    try:
        proc.wait_http(f"http://127.0.0.1:{console}/ready", timeout=90)
        REAL_NODE_CONSOLE["url"] = f"http://127.0.0.1:{console}"
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def fake_node() -> Iterator[FakeNodeProc]:
    n = start_fake_node("match")
    yield n
    n.stop()


def get(proxy: Proxy, path: str, **kw: object) -> httpx.Response:
    return httpx.get(proxy.url + path, timeout=10, **kw)  # type: ignore[arg-type]


def assert_upstream_answer(r: httpx.Response, path: str) -> None:
    assert r.status_code == 200, r.text[:300]
    assert r.content == upstream_body(path)  # byte for byte
    assert r.headers["x-upstream"] == "yes" and r.headers["set-cookie"] == "s=1; Path=/"


def metric(proxy: Proxy, sample: str) -> float:
    """The value of one Prometheus sample (`name{labels}`) from the status listener, 0 if absent."""
    return value(httpx.get(proxy.admin + "/metrics").text, sample)


def wait_until(predicate, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# ----------------------------------------------------------------- with the real node
@pytest.fixture(scope="module")
def real_proxy(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, real_node: str) -> Iterator[tuple[Proxy, Path]]:
    cfg = write_config(tmp_path_factory.mktemp("cfg") / "enable-plugin.json", real_node)
    proxy = start_proxy(upstream.url, cfg)
    yield proxy, cfg
    proxy.stop()


def test_real_node_benign_passes_byte_for_byte_and_attacks_get_403(real_proxy, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    proxy, _ = real_proxy
    assert_upstream_answer(get(proxy, "/api/items?page=2"), "/api/items?page=2")
    r = get(proxy, "/etc/passwd")
    assert r.status_code == 403 and "blocked" in r.text
    r = get(proxy, SQLI, headers={"Accept": "application/json"})
    assert r.status_code == 403 and r.json()["status"] == 403
    seen = upstream.seen()
    assert "/api/items?page=2" in seen and "/etc/passwd" not in seen and SQLI not in seen


def test_real_node_a_request_it_cannot_read_never_reaches_the_upstream(real_proxy, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    """Issue 13: 250 header lines (mitmproxy accepts them) made the node answer 400 and the
    connector forwarded the request unjudged. Now the connector answers the refusal itself (or,
    once the node reads such requests, the node blocks the attack)."""
    proxy, _ = real_proxy
    path = "/api/items?many_headers=1&id=1%27%20OR%20%271%27%3D%271"
    headers = {f"X-Pad-{i}": "x" for i in range(250)}
    refused_before = metric(proxy, 'wallarm_connector_node_refusals_total{status="400",delivery="sync"}')
    r = httpx.get(proxy.url + path, headers=headers, timeout=10)
    assert r.status_code in (400, 403), r.text[:300]
    assert path not in upstream.seen()
    if r.status_code == 400:  # the node's refusal, answered by the connector and counted
        assert metric(proxy, 'wallarm_connector_node_refusals_total{status="400",delivery="sync"}') == refused_before + 1
        assert "the node refused GET /api/items?many_headers=1" in proxy.proc.output()


def test_flipping_blocking_in_the_file_switches_mode_without_restart(real_proxy, real_node: str) -> None:  # type: ignore[no-untyped-def]
    proxy, cfg = real_proxy
    try:
        write_config(cfg, real_node, blocking=False)
        assert wait_until(lambda: get(proxy, "/etc/passwd").status_code == 200, timeout=2.5)
        plugins = httpx.get(proxy.admin + "/plugins").json()
        assert plugins["data"][0]["config"]["blocking"] is False
    finally:
        write_config(cfg, real_node, blocking=True)
    assert wait_until(lambda: get(proxy, "/etc/passwd").status_code == 403, timeout=2.5)


def test_real_node_out_of_band_gets_request_and_response_paired(real_proxy, real_node: str) -> None:  # type: ignore[no-untyped-def]
    proxy, cfg = real_proxy
    joined = node_metric("wallarm_node_pairing_joined_total")
    async_requests = node_metric('wallarm_node_messages_total{type="request",delivery="async"}')
    async_responses = node_metric('wallarm_node_messages_total{type="response",delivery="async"}')
    refused_before = node_metric('wallarm_node_parse_errors_total{kind="protocol"}')  # earlier tests' own
    try:
        write_config(cfg, real_node, blocking=False)
        assert wait_until(lambda: get(proxy, "/etc/passwd?oob=real").status_code == 200, timeout=2.5)
        assert wait_until(lambda: node_metric("wallarm_node_pairing_joined_total") > joined, timeout=5)
        assert node_metric('wallarm_node_messages_total{type="request",delivery="async"}') > async_requests
        assert node_metric('wallarm_node_messages_total{type="response",delivery="async"}') > async_responses
    finally:
        write_config(cfg, real_node, blocking=True)
    assert wait_until(lambda: get(proxy, "/etc/passwd").status_code == 403, timeout=2.5)
    text = httpx.get(REAL_NODE_CONSOLE["url"] + "/metrics").text
    assert "# TYPE wallarm_node_parse_errors_total counter" in text
    refused = [(key, v) for key, v in samples(text).items() if key[0] == "wallarm_node_parse_errors_total" and v
               and key[1] != {("kind", "protocol")}]
    assert refused == []  # the node understood every message the connector sent
    assert node_metric('wallarm_node_parse_errors_total{kind="protocol"}') == refused_before


def test_seed_upgrade_check_and_metrics(real_proxy) -> None:  # type: ignore[no-untyped-def]
    proxy, _ = real_proxy
    out = subprocess.run(f"curl -s {proxy.admin}/plugins | grep wallarm-plugin", shell=True,
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "wallarm-plugin" in out.stdout
    assert httpx.get(proxy.admin + "/").json()["version"]
    metrics = httpx.get(proxy.admin + "/metrics").text
    assert "wallarm_connector_requests_inspected_total" in metrics
    assert 'wallarm_connector_node_latency_seconds_bucket{delivery="sync",le="+Inf"}' in metrics


# ----------------------------------------------------------------- faults, with the fake node
@pytest.fixture(scope="module")
def fault_proxy(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream,
                fake_node: FakeNodeProc) -> Iterator[tuple[Proxy, Path]]:
    cfg = write_config(tmp_path_factory.mktemp("cfg") / "enable-plugin.json", fake_node.url, timeout_ms=300,
                       breaker_failures=3, breaker_cooldown_ms=60_000)
    proxy = start_proxy(upstream.url, cfg)
    yield proxy, cfg
    proxy.stop()


@pytest.fixture
def fresh_fault_config(fault_proxy, fake_node: FakeNodeProc) -> Iterator[Proxy]:  # type: ignore[no-untyped-def]
    """Each fault test starts from a new config (new client: closed breaker, empty pool)."""
    proxy, cfg = fault_proxy
    fake_node.set_mode("match")
    write_config(cfg, fake_node.url, timeout_ms=300, breaker_failures=3, breaker_cooldown_ms=60_000,
                 instance_name=f"fault-{time.monotonic_ns()}")
    assert wait_until(lambda: "fault-" in httpx.get(proxy.admin + "/plugins").text, timeout=2.5)
    assert wait_until(lambda: get(proxy, "/etc/passwd").status_code == 403)
    yield proxy
    fake_node.set_mode("match")


@pytest.mark.parametrize("mode", ["down", "500", "garbage", "reset"])
def test_misbehaving_node_fails_open(fresh_fault_config: Proxy, fake_node: FakeNodeProc, mode: str) -> None:
    fake_node.set_mode(mode)
    for i in range(2):
        started = time.monotonic()
        path = f"/etc/passwd?fault={mode}&i={i}"
        assert_upstream_answer(get(fresh_fault_config, path), path)
        assert time.monotonic() - started < 2.0  # never the node's problem: timeout_ms=300 at most
    metrics = httpx.get(fresh_fault_config.admin + "/metrics").text
    assert "wallarm_connector_fail_open_total{cause=" in metrics
    log = fresh_fault_config.proc.output()
    assert f"no verdict for GET /etc/passwd?fault={mode}&i=0" in log


def test_a_node_refusal_is_answered_by_the_proxy_and_never_forwarded(fresh_fault_config: Proxy, upstream: Upstream,
                                                                      fake_node: FakeNodeProc) -> None:
    fake_node.set_mode("refuse")  # 431 {"error": "too many headers"}
    r = get(fresh_fault_config, "/api/items?refused=1", headers={"Accept": "application/json"})
    assert r.status_code == 431 and r.json()["request_id"]
    assert "/api/items?refused=1" not in upstream.seen()
    assert metric(fresh_fault_config, 'wallarm_connector_node_refusals_total{status="431",delivery="sync"}') >= 1
    assert f"[{r.json()['request_id']}] the node refused GET /api/items?refused=1 (HTTP 431" in \
        fresh_fault_config.proc.output()


def test_slow_node_times_out_then_the_breaker_makes_requests_fast(fresh_fault_config: Proxy, fault_proxy,
                                                                  fake_node: FakeNodeProc) -> None:  # type: ignore[no-untyped-def]
    _, cfg = fault_proxy
    write_config(cfg, fake_node.url, timeout_ms=1000, breaker_failures=3, breaker_cooldown_ms=60_000,
                 instance_name="slow")
    assert wait_until(lambda: '"slow"' in httpx.get(fresh_fault_config.admin + "/plugins").text, timeout=2.5)
    fake_node.set_mode("slow", delay_ms=5000)
    fake_node.clear()
    slow = []
    for i in range(3):
        started = time.monotonic()
        assert_upstream_answer(get(fresh_fault_config, f"/api/items?slow={i}"), f"/api/items?slow={i}")
        slow.append(time.monotonic() - started)
    assert all(0.95 <= t < 3.0 for t in slow), slow  # each waited for timeout_ms=1000, not the node's 5 s
    # The third failure starts a liveness check (GET, timeout_ms); the stalled node does not answer it.
    breaker = f'wallarm_connector_node_breaker_open{{node="{fake_node.url}"}}'
    assert wait_until(lambda: metric(fresh_fault_config, breaker) == 1, timeout=5)
    consulted = len(fake_node.received())
    breaker_before = metric(fresh_fault_config, 'wallarm_connector_fail_open_total{cause="breaker_open"}')
    fast = []
    for i in range(5):
        started = time.monotonic()
        assert_upstream_answer(get(fresh_fault_config, f"/api/items?fast={i}"), f"/api/items?fast={i}")
        fast.append(time.monotonic() - started)
    assert sorted(fast)[2] < 0.5, fast  # breaker open: far below the 1 s timeout even on a busy machine
    assert len(fake_node.received()) == consulted  # the dead node was not even asked
    assert metric(fresh_fault_config, 'wallarm_connector_fail_open_total{cause="breaker_open"}') == breaker_before + 5
    assert metric(fresh_fault_config, f'wallarm_connector_node_breaker_open{{node="{fake_node.url}"}}') == 1


def test_out_of_band_mirrors_request_and_response_with_the_same_id(fresh_fault_config: Proxy,
                                                                   fake_node: FakeNodeProc, fault_proxy) -> None:  # type: ignore[no-untyped-def]
    _, cfg = fault_proxy
    write_config(cfg, fake_node.url, blocking=False, instance_name="oob")
    assert wait_until(lambda: '"oob"' in httpx.get(fresh_fault_config.admin + "/plugins").text, timeout=2.5)
    fake_node.clear()
    fake_node.set_mode("slow", delay_ms=2000)  # a slow node must not slow the client down
    started = time.monotonic()
    assert_upstream_answer(get(fresh_fault_config, "/etc/passwd?oob=1"), "/etc/passwd?oob=1")
    assert time.monotonic() - started < 1.5  # the node takes 2 s per message; the client never waits
    assert wait_until(lambda: len(fake_node.received()) >= 2, timeout=5)
    recs = fake_node.received()
    ids = {r["headers"]["X-Wallarm-Request-Id"] for r in recs}
    types = sorted(r["headers"]["Content-Type"] for r in recs)
    assert len(ids) == 1 and types == ["message/http; msgtype=request", "message/http; msgtype=response"]
    assert {r["headers"]["X-Wallarm-Delivery"] for r in recs} == {"async"}


# ----------------------------------------------------------------- startup, bodies, protocols
def test_invalid_config_at_startup_exits_non_zero(tmp_path: Path, upstream: Upstream) -> None:
    bad = tmp_path / "enable-plugin.json"
    bad.write_text('{"name": "wallarm-plugin", "config": {"wallarm_node_address": "https://n.example", "typo": 1}}')
    out = subprocess.run([MITMDUMP, "--mode", f"reverse:{upstream.url}@127.0.0.1:0", "-s",
                          str(REPO / "addon" / "wallarm.py"), "--set", f"wallarm_config={bad}",
                          "--set", "wallarm_admin_listen="], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "config.typo: unknown field" in out.stdout + out.stderr


@pytest.fixture(scope="module")
def body_proxy(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, real_node: str) -> Iterator[Proxy]:
    cfg = write_config(tmp_path_factory.mktemp("cfg") / "enable-plugin.json", real_node)
    proxy = start_proxy(upstream.url, cfg, "--set", "stream_large_bodies=64k", "--set", "body_size_limit=2m")
    yield proxy
    proxy.stop()


def test_streamed_request_body_passes_when_benign(body_proxy: Proxy, upstream: Upstream) -> None:
    r = httpx.post(body_proxy.url + "/upload?benign=1", content=b"a" * 500_000, timeout=10)
    assert r.status_code == 200 and r.json() == {"received": 500_000}


def test_streamed_request_is_killed_when_blocked(body_proxy: Proxy, upstream: Upstream) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.post(body_proxy.url + "/etc/passwd?streamed=1", content=b"a" * 500_000, timeout=10)
    assert "/etc/passwd?streamed=1" not in upstream.seen()
    assert metric(body_proxy, "wallarm_connector_streams_killed_total") == 1


def test_streamed_request_body_is_not_inspected_so_it_is_blocked(body_proxy: Proxy, upstream: Upstream) -> None:
    """Outside /upload (partial_inspection: monitor there) a body the node never saw is a partial
    inspection: in mode block the stream is killed, never forwarded unjudged."""
    with pytest.raises(httpx.TransportError):
        httpx.post(body_proxy.url + "/data?streamed=1", content=b"a" * 500_000, timeout=10)
    assert "/data?streamed=1" not in upstream.seen()


def test_streamed_response_and_body_over_limit(body_proxy: Proxy) -> None:
    r = httpx.get(body_proxy.url + "/big?size=300000", timeout=10)
    assert r.status_code == 200 and r.content == b"x" * 300_000
    try:
        r = httpx.post(body_proxy.url + "/upload?huge=1", content=b"a" * 3_000_000, timeout=10)
        assert r.status_code == 413
    except httpx.TransportError:
        pass  # mitmproxy may close the connection while the client is still sending
    assert_upstream_answer(httpx.get(body_proxy.url + "/api/items?after=1", timeout=10), "/api/items?after=1")


async def test_websocket_through_the_proxy(body_proxy: Proxy) -> None:
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(body_proxy.url + "/ws") as ws:
            await ws.send_str("hello")
            assert (await ws.receive(timeout=5)).data == "echo:hello"
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            async with s.ws_connect(body_proxy.url + "/ws?file=/etc/passwd"):
                pass
        assert e.value.status == 403


@pytest.fixture(scope="module")
def tls_proxy(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, real_node: str,
              certs: Path) -> Iterator[Proxy]:
    cfg = write_config(tmp_path_factory.mktemp("cfg") / "enable-plugin.json", real_node)
    proxy = start_proxy(upstream.url, cfg, "--certs", f"*={certs / 'proxy.pem'}")
    yield proxy
    proxy.stop()


def curl(*args: str) -> tuple[str, bytes]:
    """Run curl; returns ("<http version> <status>", body)."""
    out = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_version} %{http_code}", *args],
                         capture_output=True, timeout=20)
    body, _, meta = out.stdout.rpartition(b"\n")
    return meta.decode(), body


@pytest.mark.parametrize("http_flag", ["--http1.1", "--http2"])
def test_tls_clients_http1_and_http2(tls_proxy: Proxy, certs: Path, http_flag: str) -> None:
    url = f"https://localhost:{tls_proxy.port}"
    version = "2" if http_flag == "--http2" else "1.1"
    ca = ["--cacert", str(certs / "ca.pem"), http_flag]
    assert curl(*ca, url + "/api/items?tls=1") == (f"{version} 200", upstream_body("/api/items?tls=1"))
    assert curl(*ca, url + "/etc/passwd")[0] == f"{version} 403"
    assert curl(*ca, url + SQLI)[0] == f"{version} 403"
    assert curl(*ca, "-X", "POST", "--data-binary", "x" * 1000, url + "/api/items?post=1") == (
        f"{version} 200", b'{"received": 1000}')
