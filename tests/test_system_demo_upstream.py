"""scripts/demo_upstream.py: a small realistic JSON API that answers from its own data and never
reflects the request (a demo whose upstream echoed the attack back would prove nothing)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.support.procs import REPO

spec = importlib.util.spec_from_file_location("demo_upstream", REPO / "scripts" / "demo_upstream.py")
demo = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
sys.modules["demo_upstream"] = demo
spec.loader.exec_module(demo)  # type: ignore[union-attr]


@pytest.fixture()
async def client() -> AsyncIterator[TestClient]:
    users = dict(demo.USERS)
    async with TestClient(TestServer(demo.build_app())) as c:
        yield c
    demo.USERS.clear()
    demo.USERS.update(users)


async def test_resources(client: TestClient) -> None:
    r = await client.get("/health")
    assert r.status == 200 and (await r.json())["status"] == "ok"
    page = await (await client.get("/api/v1/users", params={"limit": "2", "offset": "1"})).json()
    assert [u["id"] for u in page["items"]] == [2, 3] and page["total"] == len(demo.USERS)
    assert (await (await client.get("/api/v1/users/4")).json())["name"] == "Tim O'Reilly"
    orders = await (await client.get("/api/v1/orders", params={"user_id": "1"})).json()
    assert {o["id"] for o in orders["items"]} == {1001, 1003}
    prods = await (await client.get("/api/v1/products", params={"q": "mouse"})).json()
    assert [p["sku"] for p in prods["items"]] == ["MS-220"]


async def test_never_reflects_the_request(client: TestClient) -> None:
    payload = "<script>alert(1)</script>' OR 1=1--"
    for path, params in (("/etc/passwd", {}), ("/api/v1/products", {"q": payload}),
                         ("/api/v1/users/" + "%3Cscript%3E", {}), ("/api/v1/orders", {"status": payload})):
        r = await client.get(path, params=params)
        body = await r.text()
        assert "script" not in body and "OR 1=1" not in body, (path, body)
    assert (await client.get("/etc/passwd")).status == 404


async def test_validation_errors_are_json(client: TestClient) -> None:
    r = await client.get("/api/v1/users", params={"limit": "ten"})
    assert r.status == 400 and "limit" in (await r.json())["error"]
    r = await client.post("/api/v1/users", data=b"not json", headers={"Content-Type": "application/json"})
    assert r.status == 400
    r = await client.post("/api/v1/users", json={"name": "Bo", "email": "nope"})
    assert r.status == 422 and "email" in (await r.json())["error"]
    r = await client.delete("/api/v1/users/1")
    assert r.status == 405 and (await r.json())["error"] == "method not allowed"


async def test_create_user(client: TestClient) -> None:
    r = await client.post("/api/v1/users", json={"name": "Katherine Johnson", "email": "kj@example.com"})
    assert r.status == 201
    new = await r.json()
    assert (await (await client.get(f"/api/v1/users/{new['id']}")).json())["email"] == "kj@example.com"
