"""The Admin API on aiohttp's test client: Kong's shapes and codes, form and JSON bodies, writes
to a real declarative file validated by the real model, the admin token off loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from addon.admin_api import AdminApi
from addon.admin_store import DeclarativeStore
from addon.declarative import Declarative

NODE = "https://node.example:5050"
SEED_PLUGIN = {"name": "wallarm-plugin", "instance_name": "wallarm-protection", "protocols": ["http", "https"],
               "enabled": True, "config": {"blocking": True, "wallarm_node_address": NODE, "timeout_ms": 500}}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Admin:
    """An AdminApi over a real file, recording every version it applied."""

    def __init__(self, path: Path, token: str = "", bound: str = "127.0.0.1"):
        self.path = path
        self.applied: list[Declarative] = []
        self.token, self.bound = token, bound
        self.store = DeclarativeStore(path, lambda raw, decl: self.applied.append(decl))
        raw = path.read_bytes()
        self.store.loaded(raw, self.store.validate(raw))
        self.api = AdminApi(lambda: self.store, lambda p: {"version": "test"}, lambda: self.token,
                            lambda: self.bound)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.api.middleware])
        self.api.add_routes(app)
        return app

    def file(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[tuple[Admin, TestClient]]:
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(SEED_PLUGIN))
    a = Admin(path)
    client = TestClient(TestServer(a.app()))
    await client.start_server()
    try:
        yield a, client
    finally:
        await client.close()


async def test_seed_file_is_one_global_plugin_in_kongs_list_shape(admin: tuple[Admin, TestClient]) -> None:
    _, c = admin
    r = await c.get("/plugins")
    body = await r.json()
    assert r.status == 200 and body["next"] is None and len(body["data"]) == 1
    p = body["data"][0]
    assert p["name"] == "wallarm-plugin" and p["service"] is None and p["route"] is None and p["consumer"] is None
    assert p["config"]["wallarm_node_address"] == [NODE] and p["config"]["max_body_bytes"] == 1024 * 1024
    assert p["version"] == "test" and isinstance(p["created_at"], int)


async def test_service_route_plugin_walkthrough_writes_the_file(admin: tuple[Admin, TestClient]) -> None:
    a, c = admin
    r = await c.post("/services", data="name=test-service&url=http%3A%2F%2F127.0.0.1%3A9000", headers=FORM)
    svc = await r.json()
    assert r.status == 201, svc
    assert (svc["host"], svc["port"], svc["protocol"], svc["name"]) == ("127.0.0.1", 9000, "http", "test-service")
    assert svc["retries"] == 5 and len(svc["id"]) == 36
    r = await c.post("/services/test-service/routes", json={"paths": ["/test"]})
    route = await r.json()
    assert r.status == 201, route
    assert route["service"] == {"id": svc["id"]} and route["strip_path"] is True and route["paths"] == ["/test"]
    r = await c.post("/services/test-service/plugins", json=SEED_PLUGIN)
    plugin = await r.json()
    assert r.status == 201, plugin
    assert plugin["service"] == {"id": svc["id"]} and plugin["route"] is None
    listed = await (await c.get("/services/test-service/plugins")).json()
    assert [p["id"] for p in listed["data"]] == [plugin["id"]]
    # the file: services with nested routes and plugins, the seed's global plugin kept at the top
    doc = a.file()
    assert doc["_format_version"] == "3.0"
    assert doc["services"][0]["routes"][0]["paths"] == ["/test"]
    assert doc["services"][0]["plugins"][0]["id"] == plugin["id"]
    assert doc["plugins"][0]["instance_name"] == "wallarm-protection"
    # applied at once, and the model agrees with what GET shows
    decl = a.applied[-1]
    assert decl.routing and decl.service_plugins and decl.global_plugin is not None
    assert (await (await c.get(f"/routes/{route['id']}")).json())["id"] == route["id"]


async def test_form_bodies_arrays_and_dotted_keys(admin: tuple[Admin, TestClient]) -> None:
    _, c = admin
    await c.post("/services", data="name=s1&url=http%3A%2F%2F127.0.0.1%3A9000", headers=FORM)
    r = await c.post("/services/s1/routes", data="name=r1&paths[]=/a&paths[]=/b&strip_path=false&methods=GET",
                     headers=FORM)
    route = await r.json()
    assert r.status == 201, route
    assert route["paths"] == ["/a", "/b"] and route["strip_path"] is False and route["methods"] == ["GET"]
    r = await c.post("/routes/r1/plugins", headers=FORM,
                     data=f"name=wallarm-plugin&config.wallarm_node_address={NODE}&config.blocking=false"
                          "&config.timeout_ms=250")
    plugin = await r.json()
    assert r.status == 201, plugin
    assert plugin["route"] == {"id": route["id"]}
    assert plugin["config"]["blocking"] is False and plugin["config"]["timeout_ms"] == 250


async def test_kong_error_shapes(admin: tuple[Admin, TestClient]) -> None:
    a, c = admin
    before = a.path.read_bytes()
    r = await c.get("/services/nope")
    assert r.status == 404 and await r.json() == {"message": "Not found"}
    r = await c.post("/services", data="{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400 and "Cannot parse JSON body" in (await r.json())["message"]
    r = await c.post("/services", json={"name": "x", "url": "http://127.0.0.1:1", "retries": 7})
    body = await r.json()
    assert r.status == 400 and body["name"] == "schema violation" and "retries" in json.dumps(body["fields"])
    r = await c.post("/services", json={"name": "bad", "url": "ftp://x"})
    body = await r.json()
    assert r.status == 400 and "url" in body["fields"]
    assert a.path.read_bytes() == before and not a.applied  # nothing written, nothing applied
    assert (await c.post("/services", json={"name": "x", "url": "http://127.0.0.1:1"})).status == 201
    r = await c.post("/services", json={"name": "x", "url": "http://127.0.0.1:2"})
    body = await r.json()
    assert r.status == 409 and body["name"] == "unique constraint violation" and body["fields"] == {"name": "x"}
    r = await c.post("/services/x/routes", json={"paths": ["no-slash"]})
    body = await r.json()
    assert r.status == 400 and "paths" in body["fields"], body
    r = await c.delete("/plugins/../services")
    assert r.status in (404, 405)
    r = await c.request("TRACE", "/services")
    assert r.status == 405 and await r.json() == {"message": "Method not allowed"}


async def test_bad_plugin_config_names_the_field_and_changes_nothing(admin: tuple[Admin, TestClient]) -> None:
    a, c = admin
    await c.post("/services", json={"name": "s", "url": "http://127.0.0.1:9000"})
    good = a.path.read_bytes()
    applied = len(a.applied)
    r = await c.post("/services/s/plugins", json={"name": "wallarm-plugin", "config": {
        "wallarm_node_address": NODE, "timeout_ms": -1}})
    body = await r.json()
    assert r.status == 400 and body["fields"] == {"config": {"timeout_ms": body["fields"]["config"]["timeout_ms"]}}
    assert a.path.read_bytes() == good and len(a.applied) == applied
    assert (await (await c.get("/services/s/plugins")).json())["data"] == []


async def test_patch_put_delete(admin: tuple[Admin, TestClient]) -> None:
    a, c = admin
    svc = await (await c.post("/services", json={"name": "s", "url": "http://127.0.0.1:9000/v1"})).json()
    r = await c.patch("/services/s", data="port=9001", headers=FORM)
    patched = await r.json()
    assert r.status == 200 and patched["port"] == 9001 and patched["path"] == "/v1"
    assert patched["id"] == svc["id"] and patched["created_at"] == svc["created_at"]
    r = await c.put("/services/other", json={"url": "https://127.0.0.1:8443"})
    put = await r.json()
    assert r.status == 200 and put["name"] == "other" and put["port"] == 8443
    r = await c.put("/services/other", json={"url": "https://127.0.0.1:8444"})  # PUT again: replaced, same name
    again = await r.json()
    assert r.status == 200 and (again["name"], again["id"], again["port"]) == ("other", put["id"], 8444)
    route = await (await c.post("/services/s/routes", json={"name": "r", "paths": ["/x"]})).json()
    plugin = await (await c.post("/routes/r/plugins", json=SEED_PLUGIN)).json()
    r = await c.patch(f"/plugins/{plugin['id']}", json={"config": {"blocking": False}})
    assert r.status == 200 and (await r.json())["config"]["timeout_ms"] == 500  # merged, not replaced
    r = await c.delete("/services/s")
    assert r.status == 400 and (await r.json())["name"] == "foreign key violation"
    assert (await c.delete(f"/routes/{route['id']}")).status == 204
    assert (await c.get(f"/plugins/{plugin['id']}")).status == 404  # the route's plugin went with it
    assert (await c.delete("/services/s")).status == 204
    assert (await c.delete("/services/s")).status == 204  # Kong: idempotent
    assert [s["name"] for s in a.file()["services"]] == ["other"]


async def test_masked_secret_round_trips(admin: tuple[Admin, TestClient]) -> None:
    a, c = admin
    pid = (await (await c.get("/plugins")).json())["data"][0]["id"]
    r = await c.patch(f"/plugins/{pid}", json={"config": {"node_secret": "s3cret"}})
    shown = await r.json()
    assert r.status == 200 and shown["config"]["node_secret"] == "***"
    shown.pop("version")
    assert (await c.put(f"/plugins/{pid}", json=shown)).status == 200  # GET, edit, PUT back
    assert a.file()["plugins"][0]["config"]["node_secret"] == "s3cret"


async def test_concurrent_writes_lose_nothing(admin: tuple[Admin, TestClient]) -> None:
    a, c = admin
    results = await asyncio.gather(*(c.post("/services", json={"name": f"svc-{i}", "url": f"http://127.0.0.1:{9000 + i}"})
                                     for i in range(20)))
    assert [r.status for r in results] == [201] * 20
    names = {s["name"] for s in a.file()["services"]}
    assert names == {f"svc-{i}" for i in range(20)}
    listed = await (await c.get("/services")).json()
    assert len(listed["data"]) == 20


async def test_a_write_from_another_process_is_kept(admin: tuple[Admin, TestClient]) -> None:
    a, c = admin
    doc = a.file()
    doc = {"_format_version": "3.0", "plugins": [doc]} if "_format_version" not in doc else doc
    doc["services"] = [{"name": "from-elsewhere", "url": "http://127.0.0.1:7000"}]
    a.path.write_text(json.dumps(doc))  # another worker's write, not yet seen by this one
    assert (await c.post("/services", json={"name": "mine", "url": "http://127.0.0.1:7001"})).status == 201
    assert [s["name"] for s in a.file()["services"]] == ["from-elsewhere", "mine"]


@pytest.mark.parametrize("bound,token,header,read,write", [
    ("0.0.0.0", "", None, 401, 401),  # off loopback without a token configured: nothing but /metrics, /status
    ("0.0.0.0", "", "anything", 401, 401),
    ("0.0.0.0", "t0ken", None, 401, 401),
    ("0.0.0.0", "t0ken", "wrong", 401, 401),
    ("0.0.0.0", "t0ken", "t0ken", 200, 201),
    ("127.0.0.1", "", None, 200, 201),
])
async def test_token_off_loopback(tmp_path: Path, bound: str, token: str, header: str | None, read: int,
                                  write: int) -> None:
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(SEED_PLUGIN))
    a = Admin(path, token=token, bound=bound)
    headers = {"Kong-Admin-Token": header} if header else {}
    async with TestClient(TestServer(a.app())) as c:
        r = await c.get("/plugins", headers=headers)
        assert r.status == read
        r = await c.post("/services", json={"name": "s", "url": "http://127.0.0.1:9000"}, headers=headers)
        assert r.status == write
        if write == 401:
            assert "credentials" in (await r.json())["message"].lower()
            assert "services" not in a.file()


async def test_unwritable_file_is_a_kong_error_and_changes_nothing(tmp_path: Path) -> None:
    # a name the file system takes but its temporary sibling (".NAME.XXXXXXXX.tmp") is too long
    # for: the write fails whoever runs the test (root ignores permission bits)
    path = tmp_path / ("k" * 240 + ".json")
    path.write_text(json.dumps(SEED_PLUGIN))
    a = Admin(path)
    before = path.read_bytes()
    async with TestClient(TestServer(a.app())) as c:
        r = await c.post("/services", json={"name": "s", "url": "http://127.0.0.1:9000"})
        assert r.status == 500 and "cannot write" in (await r.json())["message"]
        assert (await (await c.get("/services")).json())["data"] == []
    assert path.read_bytes() == before and not a.applied
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


async def test_lists_page_like_kong(admin: tuple[Admin, TestClient]) -> None:
    _, c = admin
    for i in range(5):
        await c.post("/services", json={"name": f"s{i}", "url": f"http://127.0.0.1:{9000 + i}"})
    first = await (await c.get("/services", params={"size": "2"})).json()
    assert [s["name"] for s in first["data"]] == ["s0", "s1"] and first["next"].startswith("/services?")
    names = [s["name"] for s in first["data"]]
    nxt = first["next"]
    while nxt:
        page = await (await c.get(nxt)).json()
        names += [s["name"] for s in page["data"]]
        nxt = page["next"]
    assert names == [f"s{i}" for i in range(5)]
    assert (await c.get("/services", params={"size": "0"})).status == 400


async def test_relative_ca_file_is_the_servers_working_directory(admin: tuple[Admin, TestClient], tmp_path: Path,
                                                                 certs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, c = admin
    work = tmp_path / "work"
    (work / "certs").mkdir(parents=True)
    (work / "certs" / "ca.pem").write_bytes((certs / "ca.pem").read_bytes())
    monkeypatch.chdir(work)
    await c.post("/services", json={"name": "s", "url": "http://127.0.0.1:9000"})
    body = {**SEED_PLUGIN, "config": {**SEED_PLUGIN["config"], "node_ca_file": "certs/ca.pem"}}
    r = await c.post("/services/s/plugins", json=body)
    assert r.status == 201, await r.text()
    stored = a.file()["services"][0]["plugins"][0]["config"]["node_ca_file"]
    assert stored == str(work / "certs" / "ca.pem")  # absolute: the file may live elsewhere
