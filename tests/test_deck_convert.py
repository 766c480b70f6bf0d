"""decK YAML to and from the connector's state: round trips through the file, the Admin API and
the CLI, and what cannot be carried is dropped with a note."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from addon.deck import entities_from_admin, entities_from_file, from_deck, to_deck
from addon.declarative import Declarative, load_declarative
from tests.support.procs import REPO, child_env
from tests.test_addon_declarative import KONG_YML
from tests.test_admin_api import SEED_PLUGIN, Admin


def routing_of(decl: Declarative) -> list[tuple]:
    """What a config does, independent of how it is written: upstreams, matching, plugin scopes."""
    services = sorted((s.service.name, s.service.protocol, s.service.host, s.service.port, s.service.path)
                      for s in decl.services)
    routes = sorted((r.route.name, r.service.service.name, tuple(r.route.paths or ()), tuple(r.route.hosts or ()),
                     tuple(r.route.methods or ()), r.route.strip_path) for r in decl.routes)
    def plugin(p):  # type: ignore[no-untyped-def]
        return json.dumps(p.config.model_dump(mode="json"), sort_keys=True), p.enabled
    scopes = sorted([("global", *plugin(decl.global_plugin))] if decl.global_plugin else [])
    names = {s.id: s.service.name for s in decl.services} | {r.id: r.route.name for r in decl.routes}
    scopes += sorted(("service", names[k], *plugin(p)) for k, p in decl.service_plugins.items())
    scopes += sorted(("route", names[k], *plugin(p)) for k, p in decl.route_plugins.items())
    return [services, routes, scopes]


def test_file_to_deck_and_back_means_the_same(tmp_path: Path) -> None:
    src = tmp_path / "kong.yml"
    src.write_text(KONG_YML)
    text, notes = to_deck(entities_from_file(src))
    assert not notes
    deck = yaml.safe_load(text)
    assert deck["_format_version"] == "3.0" and "id" not in deck["services"][0]
    assert deck["services"][1]["routes"][0]["name"] == "static-route"  # top-level route nested in its service
    back, notes = from_deck(text, tmp_path)
    assert not notes
    assert routing_of(load_declarative(json.dumps(back).encode())) == routing_of(load_declarative(KONG_YML))


async def test_admin_state_to_deck_with_ids_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(SEED_PLUGIN))
    a = Admin(path)
    async with TestClient(TestServer(a.app())) as c:
        await c.post("/services", json={"name": "orders", "url": "https://127.0.0.1:8443/api"})
        await c.post("/services/orders/routes", json={"name": "r", "paths": ["/orders"], "strip_path": False})
        await c.post("/routes/r/plugins", json={**SEED_PLUGIN, "enabled": False})
        server_url = str(c.make_url("/"))
        entities = await asyncio.to_thread(entities_from_admin, server_url)
    text, notes = to_deck(entities, with_ids=True)
    assert not notes and "node_breakers" not in text and "version" not in yaml.safe_load(text)["plugins"][0]
    back, _ = from_deck(text, tmp_path)
    assert back["services"][0]["id"] == entities.services[0]["id"]
    assert routing_of(load_declarative(json.dumps(back).encode())) == routing_of(a.store.validate(path.read_bytes()))


def test_from_deck_drops_what_it_cannot_carry_and_validates(tmp_path: Path) -> None:
    data = {"_format_version": "3.0", "consumers": [{"username": "bob"}],
            "services": [{"name": "s", "url": "http://127.0.0.1:9000",
                          "plugins": [{"name": "rate-limiting", "config": {"minute": 5}}],
                          "routes": [{"name": "r", "paths": ["/"]}]}]}
    text = yaml.safe_dump(data)
    doc, notes = from_deck(text, tmp_path)
    assert doc["services"][0]["plugins"] == [] and "consumers" not in doc
    assert any("rate-limiting" in n for n in notes) and any("consumers" in n for n in notes)
    data["services"][0]["routes"][0]["paths"] = ["nope"]
    with pytest.raises(ValueError, match=r"services\.0\.routes\.0\.paths"):
        from_deck(yaml.safe_dump(data), tmp_path)


def test_cli_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "kong.yml"
    src.write_text(KONG_YML)
    script = [sys.executable, str(REPO / "scripts" / "deck_convert.py")]
    run = lambda *args: subprocess.run([*script, *args], capture_output=True, text=True, env=child_env(), timeout=60)  # noqa: E731
    out = run("to-deck", "--file", str(src), "-o", str(tmp_path / "deck.yaml"))
    assert out.returncode == 0, out.stderr
    out = run("from-deck", str(tmp_path / "deck.yaml"), "-o", str(tmp_path / "back.json"))
    assert out.returncode == 0, out.stderr
    back = load_declarative((tmp_path / "back.json").read_bytes())
    assert routing_of(back) == routing_of(load_declarative(KONG_YML))
    out = run("from-deck", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "x.json"))
    assert out.returncode == 1 and "deck_convert:" in out.stderr
