"""The seed's walkthrough through a real mitmdump with the addon, against a real node process.

`curl http://localhost:8000/etc/passwd`: blocked and recorded in block mode, recorded but
passed in monitoring mode; the other modes and the three IP lists as the connector sees them.
The client is 127.0.0.1, so the lists name that address.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.support.node import start_node
from tests.support.proxy import start_proxy, start_upstream, upstream_body, write_config
from tests.test_node_endpoint import wait_for

pytestmark = pytest.mark.e2e


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def upstream():
    u = start_upstream()
    yield u
    u.stop()


@pytest.fixture
def system(tmp_path, upstream):
    """start(mode, extra, **plugin_config) -> (proxy, node); everything stopped afterwards."""
    started = []

    def start(mode: str, extra: dict | None = None, **plugin):
        node = start_node(tmp_path / f"n{len(started)}", mode=mode, extra=extra)
        started.append(node)
        cfg = write_config(tmp_path / f"plugin{len(started)}.json", node.endpoint_url, timeout_ms=2000, **plugin)
        proxy = start_proxy(upstream.url, cfg)
        started.append(proxy)
        return proxy, node

    yield start
    for p in reversed(started):
        p.stop()


def by_path(records, path):
    return [r for r in records if r.path == path]


async def test_seed_walkthrough_block_and_monitoring(system, upstream):
    proxy, node = system("block", {"overrides": [{"path_prefix": "/mon", "mode": "monitoring"},
                                                 {"path_prefix": "/safe", "mode": "safe_blocking"},
                                                 {"path_prefix": "/off", "mode": "off"}]},
                         inspect_response=True)
    status, _ = get(proxy.url + "/etc/passwd")
    assert status == 403
    status, body = get(proxy.url + "/api/items?page=1")
    assert status == 200 and body == upstream_body("/api/items?page=1")
    status, body = get(proxy.url + "/mon/etc/passwd")
    assert status == 200 and body == upstream_body("/mon/etc/passwd")
    status, _ = get(proxy.url + "/safe/etc/passwd")  # 127.0.0.1 is not graylisted here
    assert status == 200
    status, _ = get(proxy.url + "/off/etc/passwd")
    assert status == 200
    assert "/etc/passwd" not in upstream.seen()

    # the block answer is mirrored too, so the blocked attack carries the status the client got
    records = await wait_for(node.db_path, lambda rs: any(
        r.response_status == 403 for r in by_path(rs, "/etc/passwd")) and any(
        r.response_status == 200 for r in by_path(rs, "/mon/etc/passwd")) and by_path(rs, "/safe/etc/passwd"))
    blocked = by_path(records, "/etc/passwd")[0]
    assert blocked.action == "blocked" and blocked.client_ip == "127.0.0.1" and "ptrav" in blocked.types
    assert blocked.response_status == 403
    assert by_path(records, "/mon/etc/passwd")[0].action == "monitored"
    assert by_path(records, "/safe/etc/passwd")[0].action == "monitored"
    assert by_path(records, "/off/etc/passwd") == []
    assert by_path(records, "/api/items") == []


async def test_graylist_and_denylist_through_the_proxy(system):
    proxy, _ = system("safe_blocking", {"ip_lists": {"gray": ["127.0.0.0/8"]},
                                        "overrides": [{"path_prefix": "/mon", "mode": "monitoring"}]})
    assert get(proxy.url + "/etc/passwd")[0] == 403  # graylisted source in safe_blocking
    assert get(proxy.url + "/api/items")[0] == 200
    assert get(proxy.url + "/mon/etc/passwd")[0] == 200
    proxy, node = system("monitoring", {"ip_lists": {"deny": ["127.0.0.1", "::1"]},
                                        "overrides": [{"path_prefix": "/off", "mode": "off"}]})
    assert get(proxy.url + "/api/items")[0] == 403  # denylisted: blocked without an attack
    assert get(proxy.url + "/off/api/items")[0] == 200
    records = await wait_for(node.db_path, lambda rs: by_path(rs, "/api/items"))
    assert by_path(records, "/api/items")[0].reason == "denylist"


async def test_allowlist_through_the_proxy(system):
    proxy, node = system("block", {"ip_lists": {"allow": ["127.0.0.1"]}})
    status, _ = get(proxy.url + "/etc/passwd")
    assert status == 200
    records = await wait_for(node.db_path, lambda rs: by_path(rs, "/etc/passwd"))
    assert by_path(records, "/etc/passwd")[0].action == "monitored"


async def test_out_of_band_connector_only_records(system, upstream):
    proxy, node = system("block", blocking=False, inspect_response=True)
    status, body = get(proxy.url + "/oob/etc/passwd")
    assert status == 200 and body == upstream_body("/oob/etc/passwd")
    records = await wait_for(node.db_path, lambda rs: any(r.response_status == 200 for r in by_path(rs, "/oob/etc/passwd")))
    assert by_path(records, "/oob/etc/passwd")[0].action == "monitored"
