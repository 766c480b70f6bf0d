"""Exceptions through the console API: in-process (validation, answers) and against a real node
in block mode (the next request passes, partial stays partial, counts, records, config seeds)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from store_support import record

from node.detect.request import MAX_JSON_DEPTH
from node.store.base import ExceptedHit, Hit
from tests.support.console import Console
from tests.test_console_auth import csrf_of, login
from tests.support.node import NodeClient, NodeHandle, start_node, stored_attacks

SQLI = "1' OR 1=1--"
XSS = "<script>alert(1)</script>"


async def post(c: Console, body: object, status: int) -> dict:
    r = await c.client.post("/api/v1/exceptions", headers=c.auth, json=body)
    data = await r.json()
    assert r.status == status, data
    return data


# ---------------------------------------------------------------------------- in-process


async def test_create_list_delete(console) -> None:  # noqa: ANN001
    made = await post(console, {"attack_type": "sqli", "host": "Shop.Example:443", "path_prefix": "/search",
                                "location": "query.q", "comment": "search box"}, 201)
    assert made["attack_type"] == "sqli" and made["rule_id"] is None
    assert (made["host"], made["path_prefix"], made["location"]) == ("shop.example", "/search", "query.q")
    assert made["created_by"] == "bearer from 127.0.0.1"
    assert abs(made["created_at"] - time.time()) < 60 and made["created_at_iso"].endswith("Z")
    assert made["excepted_requests"] == 0
    r = await console.client.get("/api/v1/exceptions", headers=console.auth)
    assert [e["id"] for e in (await r.json())["items"]] == [made["id"]]
    assert [e.id for e in console.policy.exceptions()] == [made["id"]]  # applied without waiting
    r = await console.client.delete(f"/api/v1/exceptions/{made['id']}", headers=console.auth)
    assert r.status == 204
    assert console.policy.exceptions() == []
    r = await console.client.delete(f"/api/v1/exceptions/{made['id']}", headers=console.auth)
    assert r.status == 404


async def test_the_same_exception_twice_is_a_conflict(console) -> None:  # noqa: ANN001
    first = await post(console, {"rule_id": "xss.js-sink", "path_prefix": "/cms"}, 201)
    again = await post(console, {"rule_id": "xss.js-sink", "path_prefix": "/cms/x/..", "host": ""}, 409)
    assert f"exception {first['id']} already" in again["error"]


@pytest.mark.parametrize("body,word", [
    ({}, "exception"),
    ({"rule_id": "a", "attack_type": "sqli"}, "exception"),
    ({"attack_type": "partial_inspection"}, "partial"),
    ({"rule_id": "a", "created_by": "someone else"}, "unknown field"),
    ({"rule_id": "a", "id": 4}, "unknown field"),
    ({"rule_id": "a", "path_prefix": "no-slash"}, "path_prefix"),
    ({"rule_id": "a", "location": "a b"}, "location"),
    ({"rule_id": 5}, "rule_id"),
    (["rule_id"], "object"),
])
async def test_invalid_bodies_are_refused(console, body, word) -> None:  # noqa: ANN001
    assert word in (await post(console, body, 400))["error"]


async def test_unknown_list_parameters_are_refused(console) -> None:  # noqa: ANN001
    r = await console.client.get("/api/v1/exceptions?host=a", headers=console.auth)
    assert r.status == 400


async def test_stats_report_the_requests_let_through(console) -> None:  # noqa: ANN001
    made = await post(console, {"attack_type": "sqli"}, 201)
    await console.store.add_excepted_requests({made["id"]: 4}, time.time())
    r = await console.client.get("/api/v1/stats", headers=console.auth)
    assert (await r.json())["excepted_requests"] == 4


async def test_the_attack_page_offers_it_and_a_session_creates_it_with_csrf(console) -> None:  # noqa: ANN001
    sqli = Hit("sqli", "query.id", "sqli.structure.breakout-tautology", SQLI, 10)
    excused = Hit("xss", "query.x", "xss.js-sink", "alert(1)", 6)
    partial = Hit("partial_inspection", "request", "partial.depth", "", 0)
    console.store.add_attack(record(1, hits=[sqli, partial], excepted=[ExceptedHit(excused, 42)]))
    await console.store.flush()
    assert (await login(console)).status == 303
    r = await console.client.get("/attacks/1")
    html = await r.text()
    assert r.status == 200
    assert html.count('class="not-attack"') == 1  # not on the partial inspection
    assert 'data-rule="sqli.structure.breakout-tautology" data-type="sqli" data-location="query.id"' in html
    assert 'data-host="api.example.com" data-path="/api/items/1"' in html
    assert "Excepted findings" in html and "xss.js-sink" in html and "#42" in html
    body = {"rule_id": sqli.rule_id, "host": "api.example.com", "path_prefix": "/api/items/1", "location": "query.id"}
    r = await console.client.post("/api/v1/exceptions", json=body, headers=console.origin)
    assert r.status == 403  # a session without its CSRF token
    csrf = await csrf_of(console)
    r = await console.client.post("/api/v1/exceptions", json=body, headers={**console.origin, "X-CSRF-Token": csrf})
    made = await r.json()
    assert r.status == 201 and made["created_by"] == "session from 127.0.0.1", made
    r = await console.client.get("/settings")
    assert 'id="exception-list"' in await r.text()


# ---------------------------------------------------------------------------- a real node


def api(node: NodeHandle, method: str, path: str, body: object | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {node.token}", "Content-Type": "application/json"}
    req = urllib.request.Request(node.console_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metric(node: NodeHandle, line_start: str) -> float:
    with urllib.request.urlopen(node.console_url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    handle = start_node(tmp_path_factory.mktemp("exceptions-node"), mode="block", extra={
        "exceptions": [{"attack_type": "sqli", "path_prefix": "/seeded", "comment": "from the config"}]})
    try:
        yield handle
    finally:
        handle.stop()


@pytest.mark.e2e
def test_an_exception_lets_the_same_request_through(node: NodeHandle) -> None:
    target = f"/search/items?q={quote(SQLI)}"
    with NodeClient(node) as c:
        status, verdict = c.request("GET", target, host="shop.test")
        assert status == 403 and verdict["attacks"][0]["location"] == "query.q"
        rule_id = verdict["attacks"][0]["rule_id"]
        code, made = api(node, "POST", "/api/v1/exceptions", {"rule_id": rule_id, "host": "shop.test",
                                                                "path_prefix": "/search", "location": "query.q"})
        assert code == 201, made
        status, verdict = c.request("GET", target, host="shop.test")
        assert (status, verdict["action"], verdict["reason"], verdict["attacks"]) == (200, "pass", "excepted", [])
        # elsewhere it is still an attack: another host, another path, another parameter
        assert c.request("GET", target, host="other.test")[0] == 403
        assert c.request("GET", f"/login?q={quote(SQLI)}", host="shop.test")[0] == 403
        assert c.request("GET", f"/search/items?id={quote(SQLI)}", host="shop.test")[0] == 403
        # an attack of another kind beside the excepted one still blocks, and the record keeps both
        status, verdict = c.request("GET", f"{target}&x={quote(XSS)}", host="shop.test")
        assert status == 403 and {a["type"] for a in verdict["attacks"]} == {"xss"}
        rid = verdict["request_id"]
    assert metric(node, "wallarm_node_requests_excepted_total") == 1
    assert metric(node, 'wallarm_node_verdicts_total{action="pass",reason="excepted"}') == 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the node adds its counts to the store every second
        code, listed = api(node, "GET", "/api/v1/exceptions")
        ours = [e for e in listed["items"] if e["id"] == made["id"]]  # type: ignore[index]
        if ours[0]["excepted_requests"] == 1:
            break
        time.sleep(0.2)
    assert ours[0]["excepted_requests"] == 1 and ours[0]["last_excepted_at"] is not None
    assert api(node, "GET", "/api/v1/stats")[1]["excepted_requests"] >= 1  # type: ignore[index]
    record = next(r for r in asyncio.run(stored_attacks(node.db_path)) if r.request_id == rid)
    assert [h.type for h in record.hits] == ["xss"] * len(record.hits)
    assert [(e.hit.location, e.exception_id) for e in record.excepted] == [("query.q", made["id"])]
    code, detail = api(node, "GET", f"/api/v1/attacks/{record.id}")
    assert detail["excepted_hits"][0]["exception_id"] == made["id"]  # type: ignore[index]
    # removed: an attack again at once
    assert api(node, "DELETE", f"/api/v1/exceptions/{made['id']}")[0] == 204
    with NodeClient(node) as c:
        assert c.request("GET", target, host="shop.test")[0] == 403


@pytest.mark.e2e
def test_a_partial_inspection_stays_partial(node: NodeHandle) -> None:
    doc: object = {"q": "hello"}
    for _ in range(MAX_JSON_DEPTH + 3):
        doc = {"a": doc}
    with NodeClient(node) as c:
        status, verdict = c.request("POST", f"/seeded/form?q={quote(SQLI)}", body=json.dumps(doc).encode(),
                                    headers=[("Content-Type", "application/json")])
    # the config's exception took the sqli; the request was still not inspected whole
    assert status == 403 and verdict["reason"] == "partial" and verdict["partial"] == ["depth"]
    assert verdict["attacks"] == []


@pytest.mark.e2e
def test_the_config_seeds_exceptions(node: NodeHandle) -> None:
    code, listed = api(node, "GET", "/api/v1/exceptions")
    seeded = [e for e in listed["items"] if e["created_by"] == "config"]  # type: ignore[index]
    assert [(e["attack_type"], e["path_prefix"], e["comment"]) for e in seeded] == [("sqli", "/seeded", "from the config")]
    with NodeClient(node) as c:
        assert c.request("GET", f"/seeded/x?q={quote(SQLI)}")[0] == 200


@pytest.mark.e2e
def test_a_config_reload_adds_the_file_s_new_exceptions(node: NodeHandle) -> None:
    with NodeClient(node) as c:
        assert c.request("GET", f"/hupped/x?q={quote(SQLI)}")[0] == 403
        config = json.loads(node.config_path.read_text())
        config["exceptions"].append({"rule_id": "sqli.structure.breakout-tautology", "path_prefix": "/hupped"})
        node.config_path.write_text(json.dumps(config))
        before = metric(node, "wallarm_node_config_reloads_total")
        os.kill(node.proc.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while metric(node, "wallarm_node_config_reloads_total") <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.request("GET", f"/hupped/x?q={quote(SQLI)}")[0] == 200, node.output()[-2000:]
    listed = api(node, "GET", "/api/v1/exceptions")[1]["items"]  # type: ignore[index]
    assert [e["path_prefix"] for e in listed if e["created_by"] == "config"] == ["/seeded", "/hupped"]


@pytest.mark.e2e
def test_an_import_into_a_running_node_s_store_applies_within_a_second(node: NodeHandle, tmp_path) -> None:  # noqa: ANN001
    target = f"/imported/x?q={quote(SQLI)}"
    with NodeClient(node) as c:
        assert c.request("GET", target)[0] == 403
        exported = tmp_path / "exceptions.yaml"
        exported.write_text("exceptions:\n  - {attack_type: sqli, path_prefix: /imported, comment: by import}\n")
        done = subprocess.run([sys.executable, "-m", "node", "exceptions", "--config", str(node.config_path),
                               "import", str(exported)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        imported_at = time.monotonic()
        while c.request("GET", target)[0] != 200:
            assert time.monotonic() - imported_at < 3.0, "the running node never applied the import"
            time.sleep(0.05)
        print(f"applied {time.monotonic() - imported_at:.2f}s after the import ended")
        out = subprocess.run([sys.executable, "-m", "node", "exceptions", "--config", str(node.config_path), "export"],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "comment: by import" in out.stdout and "created_by: import by " in out.stdout
