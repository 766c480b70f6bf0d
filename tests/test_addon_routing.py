"""The addon with a declarative config (tflow/taddons, in-process fake nodes over real sockets):
routing, plugin scopes route > service > global, `enabled: false`, exclusions, the 404, reloads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from addon.connector import ACTIVE, WallarmConnector
from tests.support.fake_node import FakeNode
from tests.support.metrics import samples
from tests.support.procs import free_port
from tests.test_addon_connector import embedded, http_flow
from wallarm_wire import protocol


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[FakeNode, FakeNode]]:
    a, b = FakeNode("127.0.0.1", free_port(), mode="match"), FakeNode("127.0.0.1", free_port(), mode="match")
    await a.start_node()
    await b.start_node()
    yield a, b
    await a.stop_node()
    await b.stop_node()


def plugin(node: FakeNode, **extra: object) -> dict:
    config = {"wallarm_node_address": f"http://127.0.0.1:{node.port}/", **extra.pop("config", {})}  # type: ignore[dict-item]
    return {"name": "wallarm-plugin", "config": config, **extra}


def declarative(global_node: FakeNode, other: FakeNode) -> dict:
    return {
        "_format_version": "3.0",
        "services": [
            {"name": "orders", "url": "http://orders.internal:9001/v1", "routes": [
                {"name": "orders", "paths": ["/orders"]},
                {"name": "orders-public", "paths": ["/orders/public"], "preserve_host": True,
                 "plugins": [plugin(global_node, enabled=False)]},
            ]},
            {"name": "static", "url": "https://static.internal", "routes": [
                {"name": "static", "hosts": ["static.example"], "strip_path": False}],
             "plugins": [plugin(other, config={"timeout_ms": 400})]},
        ],
        "plugins": [plugin(global_node, config={"exclude": "~u /health$ | ~h ^X-Probe:"})],
    }


class Routed:
    def __init__(self, tctx: taddons.context, addon: WallarmConnector, path: Path):
        self.tctx, self.addon, self.path = tctx, addon, path

    async def send(self, path: str, host: str = "proxy.example", method: str = "GET", **headers: str):  # type: ignore[no-untyped-def]
        f = http_flow(path, method, Host=host, **headers)
        await self.tctx.cycle(self.addon, f)
        return f

    def write(self, data: dict | str) -> None:
        self.path.write_text(data if isinstance(data, str) else json.dumps(data))
        assert self.addon.watcher is not None
        self.addon.watcher.check()


@pytest.fixture
async def routed(tmp_path: Path, nodes: tuple[FakeNode, FakeNode]) -> AsyncIterator[Routed]:
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(declarative(*nodes)))
    addon = WallarmConnector()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, wallarm_config=str(path), wallarm_admin_listen="")
        addon.running()
        yield Routed(tctx, addon, path)
        addon.done()


async def test_requests_go_to_their_service_with_kong_rewrites(routed: Routed, nodes) -> None:  # type: ignore[no-untyped-def]
    f = await routed.send("/orders/42?x=1")
    assert f.response is None
    r = f.request
    assert (r.scheme, r.host, r.port, r.path) == ("http", "orders.internal", 9001, "/v1/42?x=1")
    assert r.headers["Host"] == "orders.internal:9001"  # preserve_host: false, Kong's default
    g = await routed.send("/assets/app.js", host="static.example")
    assert (g.request.scheme, g.request.host, g.request.port, g.request.path) == (
        "https", "static.internal", 443, "/assets/app.js")  # strip_path: false
    assert g.request.headers["Host"] == "static.internal"


async def test_the_node_sees_the_request_as_the_client_sent_it(routed: Routed, nodes) -> None:  # type: ignore[no-untyped-def]
    await routed.send("/orders/42")
    [rec] = nodes[0].received
    msg = protocol.decode_request(embedded(rec))
    assert msg.target == "/orders/42" and msg.header("host") == "proxy.example"


async def test_no_route_is_kongs_404_and_never_reaches_a_node(routed: Routed, nodes) -> None:  # type: ignore[no-untyped-def]
    f = await routed.send("/etc/passwd")
    assert f.response is not None and f.response.status_code == 404
    assert json.loads(f.response.content) == {"message": "no Route matched with those values"}
    assert f.response.headers["content-type"].startswith("application/json")
    assert not nodes[0].received and not nodes[1].received
    assert routed.addon.metrics.unrouted == 1
    assert samples(routed.addon._status_metrics())["wallarm_connector_requests_unrouted_total"] == 1


async def test_scopes_route_over_service_over_global(routed: Routed, nodes) -> None:  # type: ignore[no-untyped-def]
    global_node, service_node = nodes
    # global plugin: orders route has no plugin of its own
    f = await routed.send("/orders/etc/passwd")
    assert f.response is not None and f.response.status_code == 403
    assert len(global_node.received) == 1 and not service_node.received
    # the service's plugin, with its own node and timeout
    g = await routed.send("/etc/passwd", host="static.example")
    assert g.response is not None and g.response.status_code == 403
    assert len(service_node.received) == 1 and len(global_node.received) == 1
    assert g.metadata[ACTIVE].timeouts.call_s == 0.4 and f.metadata[ACTIVE].timeouts.call_s == 0.5
    # the route's plugin says enabled: false: not inspected, routed, Host kept (preserve_host)
    h = await routed.send("/orders/public/etc/passwd")
    assert h.response is None and ACTIVE not in h.metadata
    assert (h.request.host, h.request.path, h.request.headers["Host"]) == ("orders.internal", "/v1/etc/passwd",
                                                                          "proxy.example")
    assert len(global_node.received) == 1 and len(service_node.received) == 1


async def test_exclusions_are_counted_and_never_sent(routed: Routed, nodes) -> None:  # type: ignore[no-untyped-def]
    f = await routed.send("/orders/health")
    g = await routed.send("/orders/etc/passwd", X_Probe="1")
    assert f.response is None and g.response is None  # the attack passes: excluded from inspection
    assert g.request.path == "/v1/etc/passwd"  # but still routed
    assert not nodes[0].received
    assert routed.addon.metrics.excluded == 2
    assert samples(routed.addon._status_metrics())["wallarm_connector_requests_excluded_total"] == 2
    # the service's plugin has no exclusion: the global one's does not apply there
    h = await routed.send("/health", host="static.example")
    assert h.response is None and len(nodes[1].received) == 1 and routed.addon.metrics.excluded == 2


async def test_scopes_with_the_same_node_settings_share_one_client(routed: Routed, nodes) -> None:  # type: ignore[no-untyped-def]
    runtime = routed.addon.runtime
    assert runtime is not None
    assert len(runtime.actives) == 3 and len(runtime.clients) == 2  # global + disabled route share a client
    assert runtime.actives[0].client is next(a for a in runtime.actives if not a.enabled).client


async def test_bad_versions_keep_the_last_good_config(routed: Routed, nodes) -> None:  # type: ignore[no-untyped-def]
    good = routed.addon.runtime
    bad = declarative(*nodes)
    bad["routes"] = [{"name": "x", "service": "nope", "paths": ["/x"]}]
    routed.write(bad)
    routed.write("{not json")
    routed.write({**declarative(*nodes), "plugins": [plugin(nodes[0], config={"exclude": "~u ("})]})
    assert routed.addon.runtime is good and routed.addon.metrics.config_errors == 3
    f = await routed.send("/orders/etc/passwd")
    assert f.response is not None and f.response.status_code == 403
    # a good version then applies: the orders route now goes out-of-band
    fixed = declarative(*nodes)
    fixed["plugins"][0]["config"]["blocking"] = False
    routed.write(fixed)
    assert routed.addon.runtime is not good
    g = await routed.send("/orders/etc/passwd")
    assert g.response is None


async def test_a_bare_plugin_config_does_not_route(routed: Routed, nodes) -> None:  # type: ignore[no-untyped-def]
    routed.write(plugin(nodes[0]))
    assert routed.addon.runtime is not None and routed.addon.runtime.router is None
    f = await routed.send("/anything/etc/passwd")
    assert f.response is not None and f.response.status_code == 403
    g = await routed.send("/anything")
    assert g.response is None and (g.request.host, g.request.path) == ("address", "/anything")


async def test_routing_sets_the_mitmproxy_options_it_needs_and_a_bare_config_restores_them(
        routed: Routed, nodes) -> None:  # type: ignore[no-untyped-def]
    options = routed.tctx.options
    # mitmproxy's proxyserver declares these; taddons does not load it
    options.add_option("keep_host_header", bool, False, "")
    options.add_option("connection_strategy", str, "eager", "", choices=("eager", "lazy"))
    routed.write(declarative(*nodes) | {"services": declarative(*nodes)["services"][:1]})
    assert (options.keep_host_header, options.connection_strategy) == (True, "lazy")
    routed.write(plugin(nodes[0]))
    assert (options.keep_host_header, options.connection_strategy) == (False, "eager")  # the user's values
    routed.write(declarative(*nodes))
    assert (options.keep_host_header, options.connection_strategy) == (True, "lazy")


async def test_a_streamed_request_is_judged_then_routed_at_requestheaders(routed: Routed, nodes) -> None:  # type: ignore[no-untyped-def]
    f = http_flow("/orders/upload", "POST", Host="proxy.example", Content_Length="5")
    f.request.stream = True
    await routed.addon.requestheaders(f)  # the body goes upstream right after this hook
    assert (f.request.host, f.request.port, f.request.path) == ("orders.internal", 9001, "/v1/upload")
    [rec] = nodes[0].received
    assert protocol.decode_request(embedded(rec)).target == "/orders/upload"
    g = http_flow("/orders/etc/passwd", "POST", Host="proxy.example", Content_Length="5")
    g.request.stream = True
    await routed.addon.requestheaders(g)
    assert g.error is not None and g.request.host == "address"  # blocked: killed, not routed
