"""The addon with mitmproxy's own test helpers (tflow/taddons) against an in-process fake node.

The fake node is a real aiohttp server on a free loopback port (tests/support/fake_node.py);
the addon talks to it over real sockets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions, flow
from mitmproxy.test import taddons, tflow

from wallarm_wire import protocol
from addon.config import Timeouts, parse_config
from addon.connector import ACTIVE, RID, WallarmConnector
from addon.encode import client_ip
from addon.mirror import Mirror
from addon.admin_entities import view
from tests.support.fake_node import FakeNode
from tests.support.metrics import samples, value
from tests.support.procs import free_port
from tests.support.proxy import write_config


@pytest.fixture
async def node() -> AsyncIterator[FakeNode]:
    n = FakeNode("127.0.0.1", free_port(), mode="match")
    await n.start_node()
    yield n
    await n.stop_node()


class Harness:
    def __init__(self, tctx: taddons.context, addon: WallarmConnector, path: Path):
        self.tctx, self.addon, self.path = tctx, addon, path

    async def run(self, flow) -> None:  # type: ignore[no-untyped-def]
        await self.tctx.cycle(self.addon, flow)


@pytest.fixture
async def harness(tmp_path: Path, node: FakeNode) -> AsyncIterator[Harness]:
    path = write_config(tmp_path / "enable-plugin.json", f"http://127.0.0.1:{node.port}/")
    addon = WallarmConnector()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, wallarm_config=str(path), wallarm_admin_listen="")
        addon.running()
        yield Harness(tctx, addon, path)
        addon.done()


def http_flow(path: str = "/api/items", method: str = "GET", body: bytes = b"", **headers: str):  # type: ignore[no-untyped-def]
    f = tflow.tflow(resp=False)
    f.client_conn.timestamp_tls_setup = None  # a plain-HTTP client
    f.client_conn.sni = None
    f.request.method = method
    f.request.path = path
    f.request.content = body
    for k, v in headers.items():
        f.request.headers[k.replace("_", "-")] = v
    return f


def reconfigure(h: Harness, **settings: object) -> None:
    url = f"http://127.0.0.1:{h.addon.active.client.endpoints[0].address.port}/"  # type: ignore[union-attr]
    write_config(h.path, settings.pop("node", url), **settings)
    assert h.addon.watcher is not None
    h.addon.watcher.check()


def embedded(record: dict) -> bytes:
    return base64.b64decode(record["body_b64"])


async def test_benign_request_passes_and_is_sent_with_protocol_headers(harness: Harness, node: FakeNode) -> None:
    f = http_flow("/api/items?id=5", User_Agent="pytest")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert f.response is None and not f.error
    [rec] = node.received
    h = rec["headers"]
    rid = f.metadata[RID]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert h[protocol.H_REQUEST_ID] == rid
    assert h["Content-Type"] == protocol.CONTENT_TYPE_REQUEST
    assert h[protocol.H_CONNECTOR_TYPE] == "mitmproxy" and h[protocol.H_DELIVERY] == "sync"
    assert h[protocol.H_INSTANCE] == "wallarm-protection"
    assert h[protocol.H_FORWARDED_FOR] == "127.0.0.1" and h[protocol.H_FORWARDED_PROTO] == "http"
    assert protocol.H_BODY_TRUNCATED not in h
    msg = protocol.decode_request(embedded(rec))
    assert (msg.method, msg.target) == ("GET", "/api/items?id=5") and msg.header("user-agent") == "pytest"
    assert harness.addon.metrics.passed == 1


async def test_attack_is_blocked_with_html_page(harness: Harness, node: FakeNode) -> None:
    f = http_flow("/etc/passwd", Accept="text/html,application/xhtml+xml")
    await harness.run(f)
    assert f.response is not None and f.response.status_code == 403
    assert f.response.headers["content-type"].startswith("text/html")
    assert f.metadata[RID].encode() in f.response.content
    assert harness.addon.metrics.blocked == 1


async def test_block_answer_is_mirrored_so_the_node_records_the_status(harness: Harness, node: FakeNode) -> None:
    f = http_flow("/etc/passwd")
    await harness.run(f)  # cycles every hook: mitmproxy fires `response` for the block answer too
    assert f.response is not None and f.response.status_code == 403
    await asyncio.wait_for(harness.addon.mirror.join(), 5)
    request, response = node.received
    assert response["headers"]["Content-Type"] == protocol.CONTENT_TYPE_RESPONSE
    assert response["headers"][protocol.H_REQUEST_ID] == request["headers"][protocol.H_REQUEST_ID] == f.metadata[RID]
    assert protocol.decode_response(base64.b64decode(response["body_b64"])).status == 403


async def test_block_answer_is_json_for_api_clients(harness: Harness) -> None:
    f = http_flow("/etc/passwd", Accept="application/json")
    await harness.run(f)
    assert f.response is not None and f.response.status_code == 403
    data = json.loads(f.response.content)
    assert data["request_id"] == f.metadata[RID] and data["status"] == 403


async def test_block_status_and_page_are_configurable(harness: Harness) -> None:
    reconfigure(harness, block_status=451, block_page="<h1>nope {status}</h1> id={request_id}")
    f = http_flow("/etc/passwd")
    await harness.run(f)
    assert f.response is not None and f.response.status_code == 451
    assert f.response.content == f"<h1>nope 451</h1> id={f.metadata[RID]}".encode()


async def test_protocols_filter_skips_other_client_protocols(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, protocols=["https"])
    f = http_flow("/etc/passwd")
    await harness.run(f)
    assert f.response is None and node.received == []
    tls_flow = tflow.tflow(resp=False)  # tflow's client connection has TLS set up
    tls_flow.request.path = "/etc/passwd"
    await harness.run(tls_flow)
    assert tls_flow.response is not None and tls_flow.response.status_code == 403
    assert node.received[0]["headers"][protocol.H_FORWARDED_PROTO] == "https"


async def test_enabled_false_does_nothing(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, enabled=False)
    f = http_flow("/etc/passwd")
    await harness.run(f)
    assert f.response is None and node.received == []


async def test_fail_open_forwards_when_node_is_down(harness: Harness, node: FakeNode,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    await node.stop_node()
    f = http_flow("/etc/passwd")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert f.response is None and not f.error
    assert harness.addon.metrics.fail_open["connect"] == 1
    [line] = [r.getMessage() for r in caplog.records if "no verdict" in r.getMessage()]
    assert line.startswith(f"[{f.metadata[RID]}] no verdict for GET /etc/passwd") and "fail-open" in line


async def test_fail_open_false_answers_503(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, fail_open=False)
    await node.stop_node()
    f = http_flow("/api/items", Accept="application/json")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert f.response is not None and f.response.status_code == 503
    assert harness.addon.metrics.fail_closed["connect"] == 1
    harness.addon.response(f)  # the refusal is not mirrored: the node never judged this request
    assert harness.addon.mirror.depth == 0


async def test_node_error_status_fails_open(harness: Harness, node: FakeNode) -> None:
    node.mode = "500"
    f = http_flow("/etc/passwd")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert f.response is None
    assert harness.addon.metrics.fail_open["5xx"] == 1


async def test_body_over_limit_is_truncated_and_flagged(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, max_body_bytes=10)
    f = http_flow("/api/items", "POST", b"a" * 100)
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    [rec] = node.received
    assert rec["headers"][protocol.H_BODY_TRUNCATED] == "100"
    assert protocol.decode_request(embedded(rec)).body == b"a" * 10
    assert f.request.content == b"a" * 100  # the upstream still gets the whole body


def test_client_ip_trusts_xff_only_from_trusted_proxies() -> None:
    import ipaddress
    trusted = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"))
    f = http_flow(X_Forwarded_For="6.6.6.6, 1.2.3.4, 10.0.0.7")
    assert client_ip(f, trusted) == "1.2.3.4"  # rightmost untrusted hop; 6.6.6.6 could be forged
    assert client_ip(f, ()) == "127.0.0.1"  # no trusted proxies: the peer
    f.client_conn.peername = ("203.0.113.9", 4000)
    assert client_ip(f, trusted) == "203.0.113.9"  # an untrusted peer's XFF is ignored
    f2 = http_flow(X_Forwarded_For="not-an-ip, 10.0.0.7")
    assert client_ip(f2, trusted) == "10.0.0.7"
    f3 = http_flow()
    assert client_ip(f3, trusted) == "127.0.0.1"


async def test_xff_is_sent_as_forwarded_for(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, trusted_proxies=["127.0.0.1/32"])
    f = http_flow("/api/items", X_Forwarded_For="198.51.100.4")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert node.received[-1]["headers"][protocol.H_FORWARDED_FOR] == "198.51.100.4"


async def test_front_proxies_are_trusted_by_every_plugin_and_checked(harness: Harness, node: FakeNode) -> None:
    f = http_flow("/api/items", X_Forwarded_For="198.51.100.4")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert node.received[-1]["headers"][protocol.H_FORWARDED_FOR] == "127.0.0.1"  # the plugin trusts nobody
    # a worker behind HAProxy on loopback: the running config is rebuilt with it, no file change
    harness.tctx.configure(harness.addon, wallarm_front_proxies="127.0.0.1/32, ::1")
    f = http_flow("/api/items", X_Forwarded_For="6.6.6.6, 198.51.100.4")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert node.received[-1]["headers"][protocol.H_FORWARDED_FOR] == "198.51.100.4"  # rightmost untrusted hop
    reconfigure(harness, trusted_proxies=["10.0.0.0/8"])  # a reload keeps the front proxies
    f = http_flow("/api/items", X_Forwarded_For="198.51.100.5, 10.1.2.3")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert node.received[-1]["headers"][protocol.H_FORWARDED_FOR] == "198.51.100.5"
    with pytest.raises(exceptions.OptionsError, match="wallarm_front_proxies: 'haproxy' is not a CIDR"):
        harness.tctx.configure(harness.addon, wallarm_front_proxies="127.0.0.1/32,haproxy")


async def test_out_of_band_mirrors_request_and_response_with_one_id(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, blocking=False)
    f = http_flow("/etc/passwd")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert f.response is None  # never blocked in out-of-band mode
    f.response = tflow.tresp()
    harness.addon.response(f)
    await asyncio.wait_for(harness.addon.mirror.join(), 5)
    kinds = {r["headers"]["Content-Type"]: r for r in node.received}
    req, resp = kinds[protocol.CONTENT_TYPE_REQUEST], kinds[protocol.CONTENT_TYPE_RESPONSE]
    assert req["headers"][protocol.H_REQUEST_ID] == resp["headers"][protocol.H_REQUEST_ID] == f.metadata[RID]
    assert req["headers"][protocol.H_DELIVERY] == "async"
    assert protocol.decode_response(embedded(resp)).status == 200
    assert harness.addon.metrics.mirror_sent == 2


async def test_in_line_mode_mirrors_the_response(harness: Harness, node: FakeNode) -> None:
    f = http_flow("/api/items")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    f.response = tflow.tresp()
    harness.addon.response(f)
    await asyncio.wait_for(harness.addon.mirror.join(), 5)
    assert [r["headers"]["Content-Type"] for r in node.received] == [protocol.CONTENT_TYPE_REQUEST,
                                                                      protocol.CONTENT_TYPE_RESPONSE]


async def test_inspect_response_false_sends_no_response(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, inspect_response=False)
    f = http_flow("/api/items")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    f.response = tflow.tresp()
    harness.addon.response(f)
    await asyncio.wait_for(harness.addon.mirror.join(), 5)
    assert len(node.received) == 1


async def test_full_mirror_queue_drops_and_counts(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, blocking=False, mirror_queue_size=2)
    harness.addon.mirror.stop()  # nobody drains: the queue fills
    for _ in range(5):
        f = http_flow("/api/items")
        await harness.addon.requestheaders(f)
        await harness.addon.request(f)
    assert harness.addon.mirror.depth == 2 and harness.addon.metrics.mirror_dropped == 3


async def test_streamed_request_is_judged_on_headers_and_killed(harness: Harness, node: FakeNode) -> None:
    f = http_flow("/etc/passwd", "POST", b"", Content_Length="5000000")
    f.request.stream = True
    await harness.addon.requestheaders(f)
    assert f.error is not None  # killed: mitmproxy cannot answer a request already streaming
    assert f.response is None
    [rec] = node.received
    assert rec["headers"][protocol.H_BODY_TRUNCATED] == "5000000"
    await harness.addon.request(f)  # the later hook does not judge it again
    assert len(node.received) == 1


async def test_killed_or_answered_flows_are_left_alone(harness: Harness, node: FakeNode) -> None:
    f = http_flow("/etc/passwd")
    f.kill()
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert node.received == []


async def test_hot_reload_good_bad_missing(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    addon = harness.addon
    first = addon.active
    assert first is not None and first.delivery == "sync"
    reconfigure(harness, blocking=False)
    second = addon.active
    assert second is not first and second is not None and second.delivery == "async"
    assert addon.metrics.config_reloads == 1
    # invalid versions keep the last good config and log one error per version
    harness.path.write_text('{"name": "wallarm-plugin", "config": {"wallarm_node_address": "x", "nope": 1}}')
    for _ in range(3):
        addon.watcher.check()  # type: ignore[union-attr]
    assert addon.active is second
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "config" in r.getMessage()]
    assert len(errors) == 1 and "config.nope: unknown field" in errors[0].getMessage()
    harness.path.write_text("{broken")
    addon.watcher.check()  # type: ignore[union-attr]
    harness.path.unlink()
    addon.watcher.check()  # type: ignore[union-attr]
    addon.watcher.check()  # type: ignore[union-attr]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 3 and "invalid JSON" in errors[1] and "cannot read" in errors[2]
    assert addon.active is second
    reconfigure(harness, blocking=True)
    assert addon.active is not second and addon.active.delivery == "sync"  # type: ignore[union-attr]


async def test_hot_reload_by_polling_within_two_seconds(harness: Harness) -> None:
    before = harness.addon.active
    url = f"http://127.0.0.1:{before.client.endpoints[0].address.port}/"  # type: ignore[union-attr]
    write_config(harness.path, url, blocking=False)
    for _ in range(40):
        await asyncio.sleep(0.05)
        if harness.addon.active is not before:
            break
    assert harness.addon.active is not before and harness.addon.active.delivery == "async"  # type: ignore[union-attr]


async def test_a_flow_keeps_the_config_it_started_with(harness: Harness) -> None:
    f = http_flow("/api/items")
    await harness.addon.requestheaders(f)
    started_with = f.metadata[ACTIVE]
    reconfigure(harness, blocking=False)
    assert f.metadata[ACTIVE] is started_with and harness.addon.active is not started_with


def test_invalid_config_option_raises_options_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "wallarm-plugin", "config": {"wallarm_node_address": "https://n.example", "x": 1}}')
    addon = WallarmConnector()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match=r"config\.x: unknown field"):
            tctx.configure(addon, wallarm_config=str(bad))
        with pytest.raises(exceptions.OptionsError, match="wallarm_admin_listen"):
            tctx.configure(addon, wallarm_admin_listen="nonsense")
        assert addon.active is None


@asynccontextmanager
async def listening_connector(config: Path) -> AsyncIterator[tuple[WallarmConnector, Any, str]]:
    """A running connector on `config` whose status listener (a free loopback port) is bound:
    (the addon, its taddons context, the listener's URL); stopped on the way out."""
    port = free_port()
    addon = WallarmConnector()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, wallarm_config=str(config), wallarm_admin_listen=f"127.0.0.1:{port}")
        addon.running()
        try:
            for _ in range(100):  # at most 2 s until the listener running() started is bound
                if addon.status.bound:
                    break
                await asyncio.sleep(0.02)
            yield addon, tctx, f"http://127.0.0.1:{port}"
        finally:
            addon.done()
            await asyncio.sleep(0.05)


async def test_status_endpoints(tmp_path: Path, node: FakeNode) -> None:
    import aiohttp
    path = write_config(tmp_path / "enable-plugin.json", f"http://127.0.0.1:{node.port}/")
    async with listening_connector(path) as (addon, tctx, url):
        f = http_flow("/etc/passwd")
        await tctx.cycle(addon, f)
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{url}/") as r:
                root = await r.json()
            async with s.get(f"{url}/plugins") as r:
                plugins_text = await r.text()
            async with s.get(f"{url}/metrics") as r:
                metrics = await r.text()
    assert root["version"] and "wallarm-plugin" in root["plugins"]["available_on_server"]
    assert "wallarm-plugin" in plugins_text
    plugin = json.loads(plugins_text)["data"][0]
    assert plugin["version"] == root["version"] and plugin["config"]["timeout_ms"] == 500
    page = samples(metrics)
    assert page["wallarm_connector_requests_blocked_total"] == 1
    assert page['wallarm_connector_node_latency_seconds_count{delivery="sync"}'] == 1
    assert "wallarm_connector_mirror_queue_depth" in page


async def test_node_secret_and_instance_are_sent(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, node_secret="s3cret", instance_name="edge-1")
    f = http_flow("/api/items")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    h = node.received[-1]["headers"]
    assert h[protocol.H_SECRET] == "s3cret" and h[protocol.H_INSTANCE] == "edge-1"
    assert harness.addon.store is not None  # the Admin API's view of the reloaded file masks the secret
    assert view("plugins", harness.addon.store.running.plugins[0])["config"]["node_secret"] == "***"


async def test_multiple_nodes_fail_over_in_line(harness: Harness, node: FakeNode) -> None:
    dead = f"http://127.0.0.1:{free_port()}/"
    reconfigure(harness, node=[dead, f"http://127.0.0.1:{node.port}/"])
    for i in range(4):
        f = http_flow(f"/etc/passwd?i={i}")
        await harness.run(f)
        assert f.response is not None and f.response.status_code == 403  # every verdict arrived
    assert harness.addon.metrics.blocked == 4 and not harness.addon.metrics.fail_open


async def test_mirror_backlog_is_delivered_in_pipelined_batches(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, blocking=False)
    harness.addon.mirror.stop()  # let a backlog build up, then drain it
    flows = []
    for i in range(40):
        f = http_flow(f"/api/items?n={i}")
        await harness.addon.requestheaders(f)
        await harness.addon.request(f)
        flows.append(f)
    assert harness.addon.mirror.depth == 40
    harness.addon.mirror.start()
    await asyncio.wait_for(harness.addon.mirror.join(), 10)
    assert harness.addon.metrics.mirror_sent == 40
    assert sorted(r["headers"][protocol.H_REQUEST_ID] for r in node.received) == sorted(f.metadata[RID] for f in flows)
    # fewer round trips than messages
    assert samples(harness.addon._status_metrics())['wallarm_connector_node_latency_seconds_count{delivery="async"}'] < 40


async def test_streamed_benign_request_passes_with_unknown_length_flagged(harness: Harness, node: FakeNode) -> None:
    f = http_flow("/upload", "POST", b"", Transfer_Encoding="chunked")
    f.request.stream = True
    await harness.addon.requestheaders(f)
    assert f.error is None and f.response is None and f.live
    [rec] = node.received
    assert rec["headers"][protocol.H_BODY_TRUNCATED] == "0"
    assert protocol.decode_request(embedded(rec)).header("transfer-encoding") is None  # never chunked to the node


# ------------------------------------------------------------------------- early verdicts


async def wait_received(node: FakeNode, count: int) -> None:
    for _ in range(200):
        if len(node.received) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the node received {len(node.received)} message(s), expected {count}")


async def test_a_body_less_request_is_sent_to_the_node_at_requestheaders(harness: Harness, node: FakeNode) -> None:
    f = http_flow("/etc/passwd")
    await harness.addon.requestheaders(f)
    await wait_received(node, 1)  # asked before mitmproxy has even called `request`
    assert f.response is None  # the verdict applies in `request`, not in the middle of reading
    await harness.addon.request(f)
    assert f.response is not None and f.response.status_code == 403
    assert protocol.decode_request(embedded(node.received[0])).target == "/etc/passwd"
    assert len(node.received) == 1 and harness.addon.metrics.inspected == 1


@pytest.mark.parametrize("headers", [{"Content_Length": "5"}, {"Transfer_Encoding": "chunked"}])
async def test_a_request_with_a_body_waits_for_it(harness: Harness, node: FakeNode, headers) -> None:
    f = http_flow("/upload", "POST", b"name=' OR '1'='1")
    for k, v in headers.items():
        f.request.headers[k.replace("_", "-")] = v
    await harness.addon.requestheaders(f)
    await asyncio.sleep(0.1)
    assert node.received == []
    await harness.addon.request(f)
    assert f.response is not None and f.response.status_code == 403
    assert protocol.decode_request(embedded(node.received[0])).body == b"name=' OR '1'='1"


async def test_an_early_verdict_for_a_flow_that_failed_meanwhile_is_dropped(harness: Harness, node: FakeNode) -> None:
    f = http_flow("/etc/passwd")
    await harness.addon.requestheaders(f)
    f.error = flow_error = flow.Error("client disconnected")
    await harness.addon.request(f)
    assert f.response is None and f.error is flow_error
    await wait_received(node, 1)
    assert harness.addon.metrics.blocked == 0


# ------------------------------------------------------------------------- the out-of-band queue


async def test_mirror_lingers_to_send_messages_that_arrive_close_together_in_one_batch() -> None:
    batches: list[list[int]] = []

    async def deliver(items: list[int]) -> None:
        batches.append(items)

    mirror: Mirror[int] = Mirror(deliver, lambda: None, linger_s=0.2)
    mirror.start()
    for i in range(3):
        mirror.offer(i)
        await asyncio.sleep(0.01)
    await mirror.join()
    assert batches == [[0, 1, 2]]
    mirror.resize(mirror.capacity, mirror.worker_count, 0.0)  # no linger: each goes at once
    for i in range(3, 6):
        mirror.offer(i)
        await asyncio.sleep(0.05)
    await mirror.join()
    assert batches[1:] == [[3], [4], [5]]
    mirror.stop()


async def test_a_message_lingering_when_the_mirror_is_resized_is_not_lost() -> None:
    delivered: list[int] = []

    async def deliver(items: list[int]) -> None:
        delivered.extend(items)

    mirror: Mirror[int] = Mirror(deliver, lambda: None, workers=2, linger_s=0.5)
    mirror.start()
    mirror.offer(1)
    await asyncio.sleep(0.05)  # a worker lingers for more
    mirror.resize(100, 3, 0.0)  # restarts the workers
    await asyncio.wait_for(mirror.join(), 5)
    assert delivered == [1]
    mirror.stop()


async def test_a_full_batch_does_not_linger() -> None:
    batches: list[list[int]] = []

    async def deliver(items: list[int]) -> None:
        batches.append(items)

    mirror: Mirror[int] = Mirror(deliver, lambda: None, batch=4, linger_s=30.0)
    for i in range(4):
        mirror.offer(i)
    mirror.start()
    await asyncio.wait_for(mirror.join(), 5)  # 30 s of linger would time this out
    assert batches == [[0, 1, 2, 3]]
    mirror.stop()


@pytest.mark.parametrize("settings,want", [
    ({"blocking": True}, 0.030), ({"blocking": False}, 0.0),
    ({"blocking": False, "mirror_linger_ms": 5}, 0.005), ({"blocking": True, "mirror_linger_ms": 0}, 0.0),
])
def test_mirror_linger_defaults_by_mode_and_follows_the_config(settings, want) -> None:
    plugin = parse_config(json.dumps({"name": "wallarm-plugin", "config": {
        "wallarm_node_address": "http://127.0.0.1:5050", **settings}}))
    assert Timeouts.from_settings(plugin.config).mirror_linger_s == want


# ------------------------------------------------------------------------- node refusals and fail-open causes


@pytest.mark.parametrize(("node_status", "client_status"), [(431, 431), (413, 413), (400, 400), (401, 503), (415, 503)])
async def test_a_node_refusal_is_never_forwarded(harness: Harness, node: FakeNode, caplog: pytest.LogCaptureFixture,
                                                 node_status: int, client_status: int) -> None:
    node.mode, node.refuse_status = "refuse", node_status
    f = http_flow("/api/items", Accept="application/json")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert f.response is not None and f.response.status_code == client_status  # answered here, not upstream
    assert json.loads(f.response.content)["request_id"] == f.metadata[RID]
    m = harness.addon.metrics
    assert m.node_refusals == {(str(node_status), "sync"): 1} and not m.fail_open and not m.blocked
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert line.startswith(f"[{f.metadata[RID]}] the node refused GET /api/items (HTTP {node_status}: too many headers)")
    harness.addon.response(f)  # the node never judged it: nothing to pair the answer with
    assert harness.addon.mirror.depth == 0
    sample = "wallarm_connector_node_refusals_total{" + f'status="{node_status}",delivery="sync"}}'
    assert value(harness.addon._status_metrics(), sample) == 1


async def test_a_node_refusal_does_not_depend_on_fail_open(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, fail_open=True)
    node.mode = "refuse"
    f = http_flow("/upload", "POST", b"x" * 10, Content_Length="10")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert f.response is not None and f.response.status_code == 431


async def test_a_streamed_request_the_node_refuses_is_killed(harness: Harness, node: FakeNode) -> None:
    node.mode = "refuse"
    f = http_flow("/upload", "POST", b"", Content_Length="5000000")
    f.request.stream = True
    await harness.addon.requestheaders(f)
    assert f.error is not None and f.response is None
    assert harness.addon.metrics.node_refusals[("431", "sync")] == 1


async def test_out_of_band_a_refusal_is_counted_and_logged_loudly(harness: Harness, node: FakeNode,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    reconfigure(harness, blocking=False)
    node.mode = "refuse"
    f = http_flow("/api/items")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert f.response is None  # out-of-band nothing can be blocked: it has gone upstream
    await asyncio.wait_for(harness.addon.mirror.join(), 5)
    m = harness.addon.metrics
    assert m.node_refusals == {("431", "async"): 1} and m.mirror_failed["refusal"] == 1 and m.mirror_sent == 0
    [rec] = [r for r in caplog.records if "refused a mirrored request" in r.getMessage()]
    assert rec.levelname == "ERROR" and rec.getMessage().startswith(f"[{f.metadata[RID]}]")
    assert "NOT inspected" in rec.getMessage()


async def test_a_block_status_with_an_unreadable_body_still_blocks(harness: Harness, node: FakeNode) -> None:
    from addon.http1 import Answer
    f = http_flow("/api/items")
    active = harness.addon.active
    assert active is not None
    harness.addon.verdicts.settle(f, active, "a" * 32, Answer(403, {}, b"<html>nope</html>"), streamed=False)
    assert f.response is not None and f.response.status_code == 403
    g = http_flow("/api/items")
    harness.addon.verdicts.settle(g, active, "b" * 32, Answer(200, {}, b"<html>ok?</html>"), streamed=False)
    assert g.response is None and harness.addon.metrics.fail_open["bad_verdict"] == 1


@pytest.mark.parametrize(("mode", "cause"), [("down", "connect"), ("500", "5xx"), ("garbage", "protocol"),
                                             ("reset", "reset"), ("cut", "reset"), ("slow", "timeout")])
async def test_every_fail_open_is_counted_and_logged_with_its_cause(harness: Harness, node: FakeNode,
                                                                    caplog: pytest.LogCaptureFixture,
                                                                    mode: str, cause: str) -> None:
    reconfigure(harness, timeout_ms=200)
    node.delay_ms = 1000
    if mode == "down":
        await node.stop_node()
    else:
        node.mode = mode
    f = http_flow("/etc/passwd")
    await harness.addon.requestheaders(f)
    await harness.addon.request(f)
    assert f.response is None  # forwarded: the node could not be reached or gave no usable answer
    assert dict(harness.addon.metrics.fail_open) == {cause: 1}
    [line] = [r.getMessage() for r in caplog.records if "no verdict" in r.getMessage()]
    assert line.startswith(f"[{f.metadata[RID]}] no verdict for GET /etc/passwd ({cause}: ") and "fail-open" in line
    assert samples(harness.addon._status_metrics())[f'wallarm_connector_fail_open_total{{cause="{cause}"}}'] == 1


async def test_breaker_open_is_a_counted_fail_open_cause(harness: Harness, node: FakeNode) -> None:
    reconfigure(harness, breaker_failures=1, breaker_cooldown_ms=60_000)
    await node.stop_node()
    f = http_flow("/api/items")
    await harness.run(f)
    ep = harness.addon.active.client.endpoints[0]  # type: ignore[union-attr]
    assert ep.check_task is not None
    await asyncio.wait_for(asyncio.shield(ep.check_task), 5)
    g = http_flow("/api/items")
    await harness.run(g)
    assert g.response is None and dict(harness.addon.metrics.fail_open) == {"connect": 1, "breaker_open": 1}


async def test_one_slow_message_leaves_the_other_requests_their_verdicts(harness: Harness, node: FakeNode) -> None:
    """Issue 13: one slow message opened the breaker; 437 of the next 816 requests went unjudged."""
    reconfigure(harness, timeout_ms=200, breaker_failures=1, breaker_cooldown_ms=60_000)
    node.slow_token, node.delay_ms = b"/slow", 3000

    async def one(path: str) -> object:
        f = http_flow(path)
        await harness.run(f)
        return f

    slow = asyncio.create_task(one("/slow/etc/passwd"))
    others = []
    for i in range(40):
        others.append(await one(f"/etc/passwd?i={i}" if i % 2 else f"/api/items?i={i}"))
        await asyncio.sleep(0.01)
    await slow
    for _ in range(2):  # slow messages with nothing else in flight: the liveness check keeps it closed
        await one("/slow/api")
        ep = harness.addon.active.client.endpoints[0]  # type: ignore[union-attr]
        if ep.check_task is not None:
            await asyncio.wait_for(asyncio.shield(ep.check_task), 5)
    for i in range(40, 60):
        others.append(await one(f"/etc/passwd?i={i}" if i % 2 else f"/api/items?i={i}"))
    m = harness.addon.metrics
    assert dict(m.fail_open) == {"timeout": 3}  # only the slow messages themselves
    assert m.blocked == 30 and m.passed == 30  # every other request got the node's verdict
    assert [f.response.status_code for f in others if f.response is not None] == [403] * 30  # type: ignore[attr-defined]
    assert harness.addon.active.client.breaker_states() == {f"http://127.0.0.1:{node.port}/": "closed"}  # type: ignore[union-attr]


async def test_status_is_unhealthy_while_every_breaker_is_open_and_its_probe_recovers(
        harness: Harness, node: FakeNode) -> None:
    """`GET /status` is what HAProxy checks (make run WORKERS=N): 503 while the worker cannot
    inspect, 200 again once a node answers, with no request needed to re-check the breaker
    (a worker out of rotation gets none)."""
    reconfigure(harness, breaker_failures=1, breaker_cooldown_ms=100)
    healthy, doc = harness.addon._status_document()
    assert healthy and doc["wallarm"]["healthy"] is True and doc["wallarm"]["nodes_down"] == []
    await node.stop_node()
    await harness.run(http_flow("/api/items"))
    ep = harness.addon.active.client.endpoints[0]  # type: ignore[union-attr]
    await asyncio.wait_for(asyncio.shield(ep.check_task), 5)  # type: ignore[arg-type]
    healthy, doc = harness.addon._status_document()
    url = f"http://127.0.0.1:{node.port}/"
    assert not healthy and doc["wallarm"]["nodes_down"] == [[url]]
    assert doc["wallarm"]["node_breakers"] == {url: "open"} and "configuration_hash" in doc
    await node.start_node()
    await asyncio.sleep(0.15)  # the cooldown is over: the next /status starts the liveness check
    harness.addon._status_document()
    await asyncio.wait_for(asyncio.shield(ep.check_task), 5)  # type: ignore[arg-type]
    healthy, doc = harness.addon._status_document()
    assert healthy and doc["wallarm"]["node_breakers"] == {url: "closed"}
    assert len(node.received) == 0  # recovered by the probe alone, not by a request


async def test_status_listener_answers_503_with_the_document_while_the_node_is_down(tmp_path: Path) -> None:
    import aiohttp
    dead = f"http://127.0.0.1:{free_port()}/"
    path = write_config(tmp_path / "enable-plugin.json", dead, breaker_failures=1, breaker_cooldown_ms=60_000)
    async with listening_connector(path) as (addon, tctx, url):
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{url}/status") as r:
                before = r.status
            await tctx.cycle(addon, http_flow("/api/items"))
            ep = addon.active.client.endpoints[0]  # type: ignore[union-attr]
            await asyncio.wait_for(asyncio.shield(ep.check_task), 5)  # type: ignore[arg-type]
            async with s.get(f"{url}/status") as r:
                after, body = r.status, await r.json()
    assert before == 200 and after == 503
    assert body["wallarm"]["healthy"] is False and body["wallarm"]["nodes_down"] == [[dead]]
