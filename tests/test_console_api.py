"""The console's JSON API in-process: real SQLiteStore, real Policy, real aiohttp app."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

import pytest

from tests.support.console import TOKEN, Console, fill

ENDPOINTS = [
    ("GET", "/api/v1/attacks"),
    ("GET", "/api/v1/attacks/1"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/mode"),
    ("PUT", "/api/v1/mode"),
    ("GET", "/api/v1/iplists"),
    ("POST", "/api/v1/iplists"),
    ("DELETE", "/api/v1/iplists/1"),
    ("GET", "/api/v1/exceptions"),
    ("POST", "/api/v1/exceptions"),
    ("DELETE", "/api/v1/exceptions/1"),
    ("GET", "/api/v1/openapi.json"),
]


async def get_json(c: Console, path: str, status: int = 200) -> dict:
    r = await c.client.get(path, headers=c.auth)
    body = await r.json()
    assert r.status == status, body
    return body


# ---------------------------------------------------------------------------- auth


@pytest.mark.parametrize("method,path", ENDPOINTS)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic " + TOKEN, "Bearer "])
async def test_every_endpoint_refuses_missing_or_wrong_token(console, method, path, auth):
    headers = {"Authorization": auth} if auth else {}
    r = await console.client.request(method, path, headers=headers, json={"default": "block"})
    assert r.status == 401
    assert "error" in await r.json()
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_wrong_bearer_is_refused_even_with_a_valid_session_cookie(console):
    await fill(console.store, 3)
    r = await console.client.get("/api/v1/attacks", headers={"Authorization": "Bearer nope"})
    assert r.status == 401


# ---------------------------------------------------------------------------- attacks


async def test_list_is_newest_first_with_all_columns(console):
    records = await fill(console.store, 30)
    page = await get_json(console, "/api/v1/attacks?limit=10")
    assert len(page["items"]) == 10
    assert page["total"] == 30
    times = [a["time"] for a in page["items"]]
    assert times == sorted(times, reverse=True)
    first, newest = page["items"][0], max(records, key=lambda r: r.time)
    assert first["request_id"] == newest.request_id
    for key in ("time", "client_ip", "host", "method", "path", "types", "action", "response_status", "id"):
        assert key in first
    assert first["types"] == newest.types
    assert "request_excerpt" not in first  # detail only: keeps the polled list small


async def test_paging_walks_every_attack_once(console):
    records = await fill(console.store, 250)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        url = "/api/v1/attacks?limit=100" + (f"&cursor={cursor}" if cursor else "")
        page = await get_json(console, url)
        seen += [a["id"] for a in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == len(records)


async def test_filters(console):
    now = time.time()
    records = await fill(console.store, 90, now=now)

    async def ids(query: str) -> set[str]:
        page = await get_json(console, "/api/v1/attacks?limit=200&" + query)
        return {a["request_id"] for a in page["items"]}

    def expect(pred) -> set[str]:
        return {r.request_id for r in records if pred(r)}

    assert await ids("type=sqli") == expect(lambda r: "sqli" in r.types)
    both = expect(lambda r: "sqli" in r.types or "xss" in r.types)
    assert await ids("type=sqli&type=xss") == both
    assert await ids("type=sqli,xss") == both
    assert await ids("ip=203.0.113.7") == expect(lambda r: r.client_ip == "203.0.113.7")
    assert await ids("ip=203.0.113.0/29") == expect(lambda r: int(r.client_ip.rsplit(".", 1)[1]) < 8)
    assert await ids("action=blocked") == expect(lambda r: r.action == "blocked")
    assert await ids("host=SHOP.example.com") == expect(lambda r: r.host == "shop.example.com")
    assert await ids("q=LOGIN") == expect(lambda r: "login" in r.path.lower())
    since, until = now - 200, now - 100
    assert await ids(f"since={since}&until={until}") == expect(lambda r: since <= r.time < until)
    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat()  # noqa: E731
    assert await ids(f"since={iso(since)}".replace("+", "%2B")) == expect(lambda r: r.time >= since)
    combined = await ids("type=xss&action=monitored&host=shop.example.com")
    assert combined == expect(lambda r: "xss" in r.types and r.action == "monitored" and r.host == "shop.example.com")
    assert combined  # the data set makes this non-trivial


@pytest.mark.parametrize("query,needle", [
    ("limit=0", "limit"), ("limit=201", "limit"), ("limit=ten", "limit"),
    ("action=allowed", "action"), ("since=yesterday", "since"), ("until=1e30", "until"),
    ("since=200&until=100", "since"), ("ip=300.1.2.3", "ip"), ("ip=10.0.0.0/33", "ip"),
    ("type=%3Cscript%3E", "type"), ("colour=red", "unknown"), ("cursor=not-a-cursor", "cursor"),
    ("cursor=" + "A" * 600, "cursor"), ("q=" + "x" * 300, "q"), ("host=a%20b", "host"), ("limit=1&limit=2", "limit"),
])
async def test_bad_filters_are_400_with_a_message(console, query, needle):
    await fill(console.store, 3)
    body = await get_json(console, "/api/v1/attacks?" + query, status=400)
    assert needle in body["error"]


async def test_attack_detail(console):
    await fill(console.store, 5)
    page = await get_json(console, "/api/v1/attacks?limit=1")
    attack_id = page["items"][0]["id"]
    detail = await get_json(console, f"/api/v1/attacks/{attack_id}")
    assert detail["id"] == attack_id
    assert detail["hits"] and {"type", "location", "rule_id", "excerpt", "score"} <= set(detail["hits"][0])
    assert detail["request_excerpt"].startswith("GET ")
    assert re.fullmatch(r"[0-9a-f]{32}", detail["request_id"])
    assert (await get_json(console, "/api/v1/attacks/999999", status=404))["error"]
    assert "id" in (await get_json(console, "/api/v1/attacks/abc", status=400))["error"]


# ---------------------------------------------------------------------------- stats


async def test_stats_counts_the_chosen_range(console):
    now = time.time()
    records = await fill(console.store, 60, now=now)
    since, until = now - 210, now + 1
    s = await get_json(console, f"/api/v1/stats?since={since}&until={until}&buckets=10")
    inside = [r for r in records if since <= r.time < until]
    assert s["total"] == len(inside)
    assert s["by_action"].get("blocked", 0) == sum(r.action == "blocked" for r in inside)
    assert sum(sum(b["by_type"].values()) for b in s["series"]) == sum(len(r.types) for r in inside)
    assert sum(sum(b["by_action"].values()) for b in s["series"]) == len(inside)
    assert s["top_ips"] and s["top_paths"]
    assert s["top_ips"][0]["count"] >= s["top_ips"][-1]["count"]
    default = await get_json(console, "/api/v1/stats")
    assert default["total"] == 60 and default["until"] - default["since"] == pytest.approx(86400)


@pytest.mark.parametrize("query", ["since=abc", "since=200&until=100", "buckets=0", "buckets=9999", "foo=1"])
async def test_stats_bad_params(console, query):
    assert (await get_json(console, "/api/v1/stats?" + query, status=400))["error"]


# ---------------------------------------------------------------------------- mode


async def test_mode_get_put_takes_effect_and_persists(console):
    assert (await get_json(console, "/api/v1/mode"))["default"] == "monitoring"
    body = {"default": "block", "overrides": [
        {"host": "Shop.Example.com", "mode": "monitoring"},
        {"path_prefix": "/api/admin", "mode": "off"},
        {"host": "shop.example.com", "path_prefix": "/checkout", "mode": "safe_blocking"},
    ]}
    r = await console.client.put("/api/v1/mode", headers=console.auth, json=body)
    saved = await r.json()
    assert r.status == 200, saved
    assert saved["default"] == "block" and len(saved["overrides"]) == 3
    assert saved["overrides"][0]["host"] == "shop.example.com"
    # The policy answers the next request with it...
    assert console.policy.mode_for("api.example.com", "/x") == "block"
    assert console.policy.mode_for("shop.example.com", "/x") == "monitoring"
    assert console.policy.mode_for("any.example.com", "/api/admin/users") == "off"
    # ...and the store keeps it for the next start.
    stored = await console.store.load_mode_settings()
    assert stored is not None and stored.default == "block" and len(stored.overrides) == 3
    # Without "overrides", a PUT keeps them.
    r = await console.client.put("/api/v1/mode", headers=console.auth, json={"default": "monitoring"})
    assert (await r.json())["overrides"] == saved["overrides"]


@pytest.mark.parametrize("body,status", [
    ({"default": "blocking"}, 400),
    ({}, 400),
    ({"default": "block", "overrides": "none"}, 400),
    ({"default": "block", "overrides": [{"mode": "block"}]}, 400),
    ({"default": "block", "overrides": [{"mode": "nope", "host": "a"}]}, 400),
    ({"default": "block", "overrides": [{"mode": "off", "path_prefix": "api"}]}, 400),
    ({"default": "block", "overrides": [{"mode": "off", "host": "a b"}]}, 400),
    ({"default": "block", "overrides": [{"mode": "off", "host": "a"}, {"mode": "block", "host": "A"}]}, 400),
    ({"default": "block", "extra": 1}, 400),
    ([1, 2], 400),
])
async def test_bad_mode_is_400_and_changes_nothing(console, body, status):
    r = await console.client.put("/api/v1/mode", headers=console.auth, json=body)
    assert r.status == status
    assert (await r.json())["error"]
    assert (await console.policy.get_mode_settings()).default == "monitoring"


async def test_mode_put_needs_json(console):
    r = await console.client.put("/api/v1/mode", headers=console.auth, data="default=block")
    assert r.status == 415
    r = await console.client.put("/api/v1/mode", headers={**console.auth, "Content-Type": "application/json"},
                                 data="{not json")
    assert r.status == 400 and "JSON" in (await r.json())["error"]


# ---------------------------------------------------------------------------- IP lists


async def test_ip_lists_add_list_delete_take_effect(console):
    c = console
    r = await c.client.post("/api/v1/iplists", headers=c.auth,
                            json={"list": "deny", "network": "198.51.100.7", "comment": "scanner"})
    deny = await r.json()
    assert r.status == 201, deny
    assert deny["network"] == "198.51.100.7/32" and deny["expires_at"] is None
    r = await c.client.post("/api/v1/iplists", headers=c.auth,
                            json={"list": "allow", "network": "2001:db8::1/64", "ttl_seconds": 3600})
    allow = await r.json()
    assert r.status == 201, allow
    assert allow["network"] == "2001:db8::/64"
    assert allow["expires_at"] == pytest.approx(time.time() + 3600, abs=5)
    r = await c.client.post("/api/v1/iplists", headers=c.auth,
                            json={"list": "gray", "network": "192.0.2.0/24",
                                  "expires_at": "2099-01-01T00:00:00Z"})
    assert r.status == 201
    assert c.policy.lists_for("198.51.100.7") == frozenset({"deny"})
    assert c.policy.lists_for("2001:db8::abcd") == frozenset({"allow"})

    everything = await get_json(c, "/api/v1/iplists")
    assert {e["list"] for e in everything["items"]} == {"allow", "deny", "gray"}
    only_deny = await get_json(c, "/api/v1/iplists?list=deny")
    assert [e["network"] for e in only_deny["items"]] == ["198.51.100.7/32"]

    r = await c.client.delete(f"/api/v1/iplists/{deny['id']}", headers=c.auth)
    assert r.status == 204
    assert c.policy.lists_for("198.51.100.7") == frozenset()
    r = await c.client.delete(f"/api/v1/iplists/{deny['id']}", headers=c.auth)
    assert r.status == 404
    r = await c.client.delete("/api/v1/iplists/x1", headers=c.auth)
    assert r.status == 400


@pytest.mark.parametrize("body,needle", [
    ({"list": "deny", "network": "10.0.0.300"}, "network"),
    ({"list": "deny", "network": "10.0.0.0/40"}, "network"),
    ({"list": "deny", "network": ""}, "network"),
    ({"list": "black", "network": "10.0.0.1"}, "list"),
    ({"network": "10.0.0.1"}, "list"),
    ({"list": "deny", "network": "10.0.0.1", "ttl_seconds": 60, "expires_at": 9999999999}, "not both"),
    ({"list": "deny", "network": "10.0.0.1", "expires_at": 1000}, "past"),
    ({"list": "deny", "network": "10.0.0.1", "ttl_seconds": -5}, "ttl_seconds"),
    ({"list": "deny", "network": "10.0.0.1", "ttl_seconds": "1h"}, "ttl_seconds"),
    ({"list": "deny", "network": "10.0.0.1", "comment": "x" * 501}, "comment"),
    ({"list": "deny", "network": "10.0.0.1", "owner": "me"}, "unknown"),
])
async def test_bad_ip_entries_are_400(console, body, needle):
    r = await console.client.post("/api/v1/iplists", headers=console.auth, json=body)
    assert r.status == 400
    assert needle in (await r.json())["error"]
    assert (await get_json(console, "/api/v1/iplists"))["items"] == []


async def test_ip_list_query_validation(console):
    assert "list" in (await get_json(console, "/api/v1/iplists?list=black", status=400))["error"]
    assert (await get_json(console, "/api/v1/iplists?include_expired=maybe", status=400))["error"]


# ---------------------------------------------------------------------------- OpenAPI


async def test_openapi_documents_every_api_route(console):
    doc = await get_json(console, "/api/v1/openapi.json")
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = set()
    for route in console.client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/api/") and route.method != "HEAD":
            served.add((route.method, path))
    assert served == documented
    assert json.dumps(doc)  # valid JSON round trip
