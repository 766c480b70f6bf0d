"""The node as a real process, configured by a file, answering protocol v1 messages.

One node per module where the config allows it: the modes are all reached through per-host
overrides of one node, the IP lists through another node's config.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest

from tests.support.node import NodeClient, start_node, stored_attacks

pytestmark = pytest.mark.e2e

ATTACK = "/etc/passwd"
SQLI = "/items?id=1'%20OR%201=1--"
BENIGN = "/api/v1/products?page=2&sort=price"


async def wait_for(db_path, predicate, timeout: float = 5.0):
    """Poll the store until `predicate(records)` holds (writes are batched off the loop)."""
    deadline = time.monotonic() + timeout
    records = []
    while time.monotonic() < deadline:
        records = await stored_attacks(db_path)
        if predicate(records):
            return records
        await asyncio.sleep(0.1)
    raise AssertionError(f"store never matched; it holds {[(r.request_id, r.action, r.path) for r in records]}")


def by_id(records, rid):
    return [r for r in records if r.request_id == rid]


@pytest.fixture(scope="module")
def modes_node(tmp_path_factory):
    node = start_node(tmp_path_factory.mktemp("modes"), mode="block", extra={
        "overrides": [
            {"host": "off.test", "mode": "off"},
            {"host": "mon.test", "mode": "monitoring"},
            {"host": "safe.test", "mode": "safe_blocking"},
        ],
        "ip_lists": {"gray": ["198.51.100.7"]},
    })
    yield node
    node.stop()


@pytest.fixture(scope="module")
def lists_node(tmp_path_factory):
    node = start_node(tmp_path_factory.mktemp("lists"), mode="block", extra={
        "overrides": [{"host": "off.test", "mode": "off"}, {"host": "mon.test", "mode": "monitoring"}],
        "ip_lists": {
            "allow": ["10.1.0.0/16", "2001:db8:a11::/48"],
            "deny": ["203.0.113.0/24", {"network": "2001:db8:dead::/48", "comment": "v6 range"},
                     {"network": "192.0.2.99", "expires_at": time.time() - 60}],  # already expired
            "gray": ["198.51.100.0/24"],
        },
    })
    yield node
    node.stop()


# ------------------------------------------------------------------------- modes


async def test_block_mode_blocks_and_records_an_attack(modes_node):
    with NodeClient(modes_node) as c:
        status, verdict = c.request("GET", ATTACK)
    assert status == 403
    assert verdict["action"] == "block" and verdict["mode"] == "block" and verdict["reason"] == "attack"
    assert verdict["attacks"] and verdict["attacks"][0]["location"]
    records = await wait_for(modes_node.db_path, lambda rs: by_id(rs, verdict["request_id"]))
    rec = by_id(records, verdict["request_id"])[0]
    assert rec.action == "blocked" and rec.mode == "block" and rec.path == ATTACK
    assert rec.client_ip == "192.0.2.10" and rec.host == "api.test" and rec.method == "GET"
    # node_id defaults to instance:port
    assert rec.instance == "test-connector" and rec.node_instance == f"test-node:{modes_node.port}"
    assert rec.types and rec.request_excerpt.startswith("GET /etc/passwd HTTP/1.1")


async def test_benign_request_passes_and_is_not_recorded(modes_node):
    with NodeClient(modes_node) as c:
        status, verdict = c.request("GET", BENIGN)
        _, marker = c.request("GET", SQLI)  # recorded after the benign one: proves the writer caught up
    assert status == 200 and verdict["action"] == "pass" and verdict["attacks"] == []
    records = await wait_for(modes_node.db_path, lambda rs: by_id(rs, marker["request_id"]))
    assert by_id(records, verdict["request_id"]) == []


async def test_monitoring_mode_records_but_passes(modes_node):
    with NodeClient(modes_node) as c:
        status, verdict = c.request("GET", ATTACK, host="mon.test")
    assert status == 200 and verdict["action"] == "pass" and verdict["mode"] == "monitoring"
    assert verdict["attacks"]
    records = await wait_for(modes_node.db_path, lambda rs: by_id(rs, verdict["request_id"]))
    assert by_id(records, verdict["request_id"])[0].action == "monitored"


async def test_off_mode_neither_analyses_nor_records(modes_node):
    with NodeClient(modes_node) as c:
        status, verdict = c.request("GET", ATTACK, host="off.test")
        _, marker = c.request("GET", ATTACK, host="mon.test")
    assert status == 200 and verdict == {**verdict, "action": "pass", "mode": "off", "reason": "mode off", "attacks": []}
    records = await wait_for(modes_node.db_path, lambda rs: by_id(rs, marker["request_id"]))
    assert by_id(records, verdict["request_id"]) == []


async def test_safe_blocking_blocks_only_graylisted_sources(modes_node):
    with NodeClient(modes_node) as c:
        plain_status, plain = c.request("GET", ATTACK, host="safe.test", ip="192.0.2.50")
        gray_status, gray = c.request("GET", ATTACK, host="safe.test", ip="198.51.100.7")
        benign_gray_status, _ = c.request("GET", BENIGN, host="safe.test", ip="198.51.100.7")
    assert plain_status == 200 and plain["mode"] == "safe_blocking" and plain["attacks"]
    assert gray_status == 403 and gray["action"] == "block"
    assert benign_gray_status == 200  # the graylist alone never blocks
    records = await wait_for(modes_node.db_path, lambda rs: by_id(rs, plain["request_id"]) and by_id(rs, gray["request_id"]))
    assert by_id(records, plain["request_id"])[0].action == "monitored"
    assert by_id(records, gray["request_id"])[0].action == "blocked"


async def test_async_messages_are_recorded_never_blocked(modes_node):
    with NodeClient(modes_node) as c:
        status, verdict = c.request("GET", SQLI, delivery="async")
    assert status == 200 and verdict["action"] == "pass" and verdict["attacks"]
    records = await wait_for(modes_node.db_path, lambda rs: by_id(rs, verdict["request_id"]))
    assert by_id(records, verdict["request_id"])[0].action == "monitored"


# ------------------------------------------------------------------------- IP lists


async def test_allowlist_is_never_blocked_but_recorded(lists_node):
    with NodeClient(lists_node) as c:
        status, verdict = c.request("GET", ATTACK, ip="10.1.2.3")
        v6_status, _ = c.request("GET", ATTACK, ip="2001:db8:a11::5")
    assert status == 200 and v6_status == 200 and verdict["reason"] == "allowlist"
    records = await wait_for(lists_node.db_path, lambda rs: by_id(rs, verdict["request_id"]))
    assert by_id(records, verdict["request_id"])[0].action == "monitored"


async def test_denylist_blocks_without_attack_in_every_mode_but_off(lists_node):
    with NodeClient(lists_node) as c:
        block = c.request("GET", BENIGN, ip="203.0.113.77")
        mon = c.request("GET", BENIGN, ip="203.0.113.77", host="mon.test")
        off = c.request("GET", BENIGN, ip="203.0.113.77", host="off.test")
        outside = c.request("GET", BENIGN, ip="203.0.114.1")
    assert block[0] == 403 and block[1]["reason"] == "denylist" and block[1]["attacks"] == []
    assert mon[0] == 403
    assert off[0] == 200 and off[1]["reason"] == "mode off"
    assert outside[0] == 200
    records = await wait_for(lists_node.db_path, lambda rs: by_id(rs, block[1]["request_id"]) and by_id(rs, mon[1]["request_id"]))
    rec = by_id(records, block[1]["request_id"])[0]
    assert rec.reason == "denylist" and rec.action == "blocked" and rec.hits == []
    assert by_id(records, off[1]["request_id"]) == []


async def test_denylist_ipv6_cidr(lists_node):
    with NodeClient(lists_node) as c:
        inside = c.request("GET", BENIGN, ip="2001:db8:dead:beef::1")
        outside = c.request("GET", BENIGN, ip="2001:db8:deae::1")
        mapped = c.request("GET", BENIGN, ip="::ffff:203.0.113.5")  # IPv4-mapped form of a denied v4
    assert inside[0] == 403 and outside[0] == 200 and mapped[0] == 403


async def test_expired_entries_do_not_apply(lists_node):
    with NodeClient(lists_node) as c:
        status, verdict = c.request("GET", BENIGN, ip="192.0.2.99")
    assert status == 200 and verdict["reason"] == ""


async def test_graylist_alone_does_not_block_in_block_mode(lists_node):
    with NodeClient(lists_node) as c:
        benign = c.request("GET", BENIGN, ip="198.51.100.9")
        attack = c.request("GET", ATTACK, ip="198.51.100.9")
    assert benign[0] == 200 and attack[0] == 403


def console_api(node, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(node.console_url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {node.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


async def test_lists_change_at_run_time_and_entries_expire(tmp_path):
    """An entry added through the console API applies to the next message, then expires."""
    node = start_node(tmp_path)
    try:
        with NodeClient(node) as c:
            assert c.request("GET", BENIGN, ip="203.0.113.9")[0] == 200
            status, entry = console_api(node, "POST", "/api/v1/iplists",
                                        {"list": "deny", "network": "203.0.113.0/24", "ttl_seconds": 4})
            assert status in (200, 201), entry
            added = time.time()
            assert c.request("GET", BENIGN, ip="203.0.113.9")[0] == 403
            time.sleep(max(0.0, added + 4.3 - time.time()))
            assert c.request("GET", BENIGN, ip="203.0.113.9")[0] == 200  # expired: no reload needed
            status, entry = console_api(node, "POST", "/api/v1/iplists", {"list": "deny", "network": "2001:db8::/32"})
            assert c.request("GET", BENIGN, ip="2001:db8:1::1")[0] == 403
            assert console_api(node, "DELETE", f"/api/v1/iplists/{entry['id']}")[0] in (200, 204)
            assert c.request("GET", BENIGN, ip="2001:db8:1::1")[0] == 200
    finally:
        node.stop()


# ------------------------------------------------------------------------- overrides


async def test_most_specific_override_wins(tmp_path):
    node = start_node(tmp_path, mode="block", extra={"overrides": [
        {"path_prefix": "/public", "mode": "monitoring"},
        {"host": "api.test", "mode": "off"},
        {"host": "api.test", "path_prefix": "/public/admin", "mode": "block"},
        {"host": "Shop.Test", "path_prefix": "/checkout/", "mode": "monitoring"},
    ]})
    try:
        with NodeClient(node) as c:
            def mode(host, path):
                return c.request("GET", path + "?f=/etc/passwd", host=host)[1]["mode"]
            assert mode("other.test", "/public/x") == "monitoring"  # path-only override
            assert mode("other.test", "/publicity") == "block"  # prefixes match whole segments
            assert mode("other.test", "/%70ublic/x") == "monitoring"  # decoded before matching
            assert mode("other.test", "/x/../public/y") == "monitoring"  # dot segments resolved
            assert mode("api.test", "/anything") == "off"  # host-only override
            assert mode("api.test", "/public/y") == "off"  # a host override beats a path-only one
            assert mode("api.test", "/public/admin/users") == "block"  # host + longer path wins
            assert mode("shop.test:8443", "/checkout/pay") == "monitoring"  # host case and port ignored
            assert mode("shop.test", "/checkout") == "monitoring"
            assert mode("other.test", "/other") == "block"  # default
    finally:
        node.stop()


async def test_default_mode_from_the_config_file(tmp_path):
    node = start_node(tmp_path, mode="monitoring")
    try:
        with NodeClient(node) as c:
            status, verdict = c.request("GET", ATTACK)
        assert status == 200 and verdict["mode"] == "monitoring" and verdict["attacks"]
    finally:
        node.stop()
