"""End to end with a declarative config: real mitmdump (reverse mode to a placeholder that is never
contacted), the real node, two real upstreams. Routing, scopes, exclusions, the 404, hot reload."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.proxy import Proxy, Upstream, start_proxy, start_upstream, upstream_body
from tests.test_addon_e2e import metric, real_node, wait_until  # noqa: F401 (real_node: fixture)

pytestmark = pytest.mark.e2e

PLACEHOLDER = "http://127.0.0.1:9"  # discard port: nothing answers there; routing must never go there
SQLI = "?id=1%27%20OR%20%271%27%3D%271"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    a, b = start_upstream(), start_upstream()
    yield a, b
    a.stop()
    b.stop()


def kong_config(node: str, a: Upstream, b: Upstream, **edits: object) -> dict:
    plugin = {"name": "wallarm-plugin", "config": {"wallarm_node_address": node, "timeout_ms": 2000,
                                                   "exclude": "~u ^https?://[^/]+/api/health"}}
    cfg: dict = {
        "_format_version": "3.0",
        "services": [
            {"name": "api", "url": a.url, "routes": [{"name": "api", "paths": ["/api"]}]},
            {"name": "shop", "url": b.url + "/shop", "routes": [
                {"name": "shop", "hosts": ["shop.example"], "preserve_host": True}],
             # monitoring only on this service: attacks pass, the node still sees them
             "plugins": [{"name": "wallarm-plugin", "config": {"wallarm_node_address": node, "blocking": False}}]},
            {"name": "legacy", "url": b.url, "routes": [
                {"name": "legacy", "paths": ["/legacy"], "strip_path": False,
                 "plugins": [{"name": "wallarm-plugin", "enabled": False, "config": {"wallarm_node_address": node}}]}]},
        ],
        "plugins": [plugin],
    }
    cfg.update(edits)
    return cfg


def write(path: Path, data: dict | str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(data if isinstance(data, str) else json.dumps(data))
    tmp.replace(path)


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory, upstreams: tuple[Upstream, Upstream],
           real_node: str) -> Iterator[tuple[Proxy, Path]]:  # noqa: F811
    path = tmp_path_factory.mktemp("kong") / "kong.json"
    write(path, kong_config(real_node, *upstreams))
    proxy = start_proxy(PLACEHOLDER, path)
    yield proxy, path
    proxy.stop()


def get(proxy: Proxy, path: str, host: str | None = None) -> httpx.Response:
    return httpx.get(proxy.url + path, headers={"Host": host} if host else None, timeout=10)


def test_routes_pick_the_upstream_and_rewrite_like_kong(routed, upstreams) -> None:  # type: ignore[no-untyped-def]
    proxy, _ = routed
    a, b = upstreams
    r = get(proxy, "/api/items?x=1")
    assert r.status_code == 200 and r.content == upstream_body("/items?x=1")  # strip_path, upstream a
    assert r.headers["x-upstream-host"] == f"127.0.0.1:{a.port}"  # preserve_host: false
    s = get(proxy, "/cart", host="shop.example")
    assert s.status_code == 200 and s.content == upstream_body("/shop/cart")  # service path, upstream b
    assert s.headers["x-upstream-host"] == "shop.example"  # preserve_host: true
    assert "/items?x=1" in a.seen() and "/shop/cart" in b.seen()
    legacy = get(proxy, "/legacy/page")
    assert legacy.status_code == 200 and legacy.content == upstream_body("/legacy/page")  # strip_path: false


def test_no_route_answers_kongs_404(routed) -> None:  # type: ignore[no-untyped-def]
    proxy, _ = routed
    r = get(proxy, "/nowhere")
    assert r.status_code == 404 and r.json() == {"message": "no Route matched with those values"}
    assert metric(proxy, "wallarm_connector_requests_unrouted_total") >= 1


def test_scopes_block_monitor_or_switch_off(routed, upstreams) -> None:  # type: ignore[no-untyped-def]
    proxy, _ = routed
    a, b = upstreams
    blocked = get(proxy, "/api/items" + SQLI)
    assert blocked.status_code == 403  # the global plugin, in-line
    assert "/items" + SQLI not in a.seen()
    inspected = metric(proxy, "wallarm_connector_requests_inspected_total")
    monitored = get(proxy, "/cart" + SQLI, host="shop.example")
    assert monitored.status_code == 200  # the service's plugin is out-of-band
    off = get(proxy, "/legacy/x" + SQLI)
    assert off.status_code == 200  # the route's plugin is disabled
    assert metric(proxy, "wallarm_connector_requests_inspected_total") == inspected + 1  # only the monitored one


def test_an_excluded_attack_passes_and_is_counted(routed, upstreams) -> None:  # type: ignore[no-untyped-def]
    proxy, _ = routed
    before = metric(proxy, "wallarm_connector_requests_excluded_total")
    inspected = metric(proxy, "wallarm_connector_requests_inspected_total")
    r = get(proxy, "/api/health" + SQLI)
    assert r.status_code == 200 and r.content == upstream_body("/health" + SQLI)
    assert metric(proxy, "wallarm_connector_requests_excluded_total") == before + 1
    assert metric(proxy, "wallarm_connector_requests_inspected_total") == inspected


def test_hot_reload_keeps_the_last_good_config_and_applies_a_good_one(routed, upstreams, real_node) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    proxy, path = routed
    a, b = upstreams
    errors = metric(proxy, "wallarm_connector_config_errors_total")
    write(path, kong_config(real_node, a, b, routes=[{"name": "x", "service": "missing", "paths": ["/x"]}]))
    assert wait_until(lambda: metric(proxy, "wallarm_connector_config_errors_total") == errors + 1, 3)
    assert get(proxy, "/api/items").status_code == 200
    assert "routes.0.service: no service 'missing'" in proxy.proc.output()
    # a good version: /api now goes to upstream b, within 2 s
    cfg = kong_config(real_node, a, b)
    cfg["services"][0]["url"] = b.url
    started = time.monotonic()
    write(path, cfg)
    assert wait_until(lambda: get(proxy, "/api/moved").headers.get("x-upstream-host") == f"127.0.0.1:{b.port}", 2.5)
    assert time.monotonic() - started <= 2.5
    write(path, kong_config(real_node, a, b))
    assert wait_until(lambda: get(proxy, "/api/back").headers.get("x-upstream-host") == f"127.0.0.1:{a.port}", 2.5)


def test_a_bare_plugin_file_keeps_todays_behaviour_before_and_after_routing(
        tmp_path: Path, upstreams, real_node) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    a, b = upstreams
    path = tmp_path / "enable-plugin.json"
    bare = {"name": "wallarm-plugin", "config": {"wallarm_node_address": real_node, "timeout_ms": 2000}}
    write(path, bare)
    proxy = start_proxy(a.url, path)
    try:
        def today() -> bool:
            r = get(proxy, "/nowhere", host="client.example")
            # everything goes to the reverse-mode upstream, which gets its own Host (keep_host_header off)
            return r.status_code == 200 and r.headers["x-upstream-host"] == f"127.0.0.1:{a.port}"

        assert today()
        assert get(proxy, "/x" + SQLI).status_code == 403
        write(path, kong_config(real_node, a, b))
        assert wait_until(lambda: get(proxy, "/nowhere").status_code == 404, 2.5)
        write(path, bare)
        assert wait_until(today, 2.5)  # mitmproxy's options are the user's again
    finally:
        proxy.stop()
