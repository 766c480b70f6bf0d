"""The declarative config (a subset of Kong's DB-less format): what loads, what it resolves to, and
errors that name the field."""

from __future__ import annotations

import json

import pytest

from addon.config import ConfigError
from addon.declarative import load_declarative

NODE = {"wallarm_node_address": "https://node.example:5050"}
SEED = {"name": "wallarm-plugin", "instance_name": "wallarm-protection", "protocols": ["http", "https"],
        "enabled": True, "config": {"blocking": True, **NODE, "timeout_ms": 500}}
KONG_PLUGIN = {"id": "3fd1eea1-885a-4011-b986-289943ff8177", "name": "wallarm-plugin", "created_at": 1700000000,
               "updated_at": 1700000001, "service": None, "route": None, "consumer": None, "tags": None,
               "ordering": None, "protocols": ["grpc", "grpcs", "http", "https"], "enabled": True,
               "instance_name": None, "config": dict(NODE)}

KONG_YML = """
_format_version: "3.0"
services:
- name: orders
  url: https://orders.internal:8443/api
  tags: [team-a]
  routes:
  - name: orders-route
    paths: [/orders]
    methods: [GET, POST]
    plugins:
    - name: wallarm-plugin
      enabled: false
      config: {wallarm_node_address: "https://node.example:5050"}
- name: static
  host: 127.0.0.1
  port: 9000
  retries: 5
  read_timeout: 60000
  plugins:
  - name: wallarm-plugin
    config: {wallarm_node_address: "https://node.example:5050", blocking: false, exclude: "~u /health$"}
routes:
- name: static-route
  service: static
  hosts: [static.example, "*.cdn.example"]
  strip_path: false
plugins:
- name: wallarm-plugin
  config: {wallarm_node_address: "https://node.example:5050", timeout_ms: 300}
"""


def test_bare_enable_plugin_json_is_one_global_plugin_without_routing() -> None:
    d = load_declarative(json.dumps(SEED).encode())
    assert d.bare and not d.routing and not d.services
    assert d.global_plugin is not None and d.global_plugin.instance_name == "wallarm-protection"
    assert d.global_plugin.protocols == ["http", "https"]


def test_plugin_object_as_kong_returns_it() -> None:
    d = load_declarative(KONG_PLUGIN)
    assert d.global_plugin is not None and d.global_plugin.id == KONG_PLUGIN["id"]
    assert d.global_plugin.protocols == ["grpc", "grpcs", "http", "https"]
    # Kong's default protocols when the field is absent
    assert load_declarative({"name": "wallarm-plugin", "config": NODE}).global_plugin.protocols == [
        "grpc", "grpcs", "http", "https"]


def test_declarative_yaml_resolves_nesting_references_and_scopes() -> None:
    d = load_declarative(KONG_YML)
    assert d.routing and not d.bare
    orders, static = d.services
    assert (orders.service.protocol, orders.service.host, orders.service.port, orders.service.path) == (
        "https", "orders.internal", 8443, "/api")
    assert static.service.port == 9000 and static.service.path is None
    routes = {r.route.name: r for r in d.routes}
    assert routes["orders-route"].service is orders and routes["static-route"].service is static
    assert routes["static-route"].route.hosts == ["static.example", "*.cdn.example"]
    assert d.global_plugin is not None and d.global_plugin.config.timeout_ms == 300
    assert d.service_plugins[static.id].config.blocking is False
    assert d.route_plugins[routes["orders-route"].id].enabled is False


def test_ids_are_stable_and_the_written_form_loads_again() -> None:
    a, b = load_declarative(KONG_YML), load_declarative(KONG_YML)
    assert [r.id for r in a.routes] == [r.id for r in b.routes]
    again = load_declarative(a.model.to_data())
    assert again.model == a.model
    assert again.model.to_data()["_format_version"] == "3.0"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda y: y.replace('"3.0"', '"9.9"'), r"_format_version: must be one of"),
    (lambda y: y.replace("retries: 5", "retries: 3"), r"services\.1: retries: only Kong's default 5"),
    (lambda y: y.replace("service: static", "service: nope"), r"routes\.0\.service: no service 'nope'"),
    (lambda y: y.replace("[/orders]", "[orders]"), r"services\.0\.routes\.0\.paths: 'orders': a path must start"),
    (lambda y: y.replace("[/orders]", "['~/o.*']"), r"regex paths are not supported"),
    (lambda y: y.replace("exclude: \"~u /health$\"", "exclude: \"~u (\""),
     r"services\.1\.plugins\.0\.config\.exclude: Invalid filter expression"),
    (lambda y: y.replace("name: static-route", "name: orders-route"), r"routes\.0: duplicate route name 'orders-route'"),
    (lambda y: y + "- name: wallarm-plugin\n  config: {wallarm_node_address: 'https://n:1'}\n",
     r"plugins\.1: wallarm-plugin is already configured globally \(at plugins\.0\)"),
    (lambda y: y.replace("methods: [GET, POST]", "methods: [get]"), r"methods: 'get'"),
    (lambda y: y.replace("url: https://orders.internal:8443/api", "url: ftp://x"), r"services\.0: url:"),
    (lambda y: y.replace("tags: [team-a]", "colour: red"), r"services\.0\.colour: unknown field"),
    (lambda y: y.replace("strip_path: false", "strip_path: false\n  paths: null\n  hosts: null"),
     r"routes\.0: .*at least one of paths, hosts or methods"),
])
def test_errors_name_the_field(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        load_declarative(edit(KONG_YML))


def test_a_plugin_object_with_an_unknown_scope_or_a_consumer_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"plugins\.0\.service: no service 'x'"):
        load_declarative({**KONG_PLUGIN, "service": {"id": "x"}})
    with pytest.raises(ConfigError, match=r"consumer: .*not supported"):
        load_declarative({**KONG_PLUGIN, "consumer": {"id": "c"}})
    with pytest.raises(ConfigError, match=r"config\.timeout_ms"):
        load_declarative({**KONG_PLUGIN, "config": {**NODE, "timeout_ms": "5"}})


def test_the_documented_example_loads_and_routes_as_its_comments_say(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import re
    from pathlib import Path

    from addon.router import Router
    from tests.test_addon_config import CA_PEM

    doc = (Path(__file__).resolve().parents[1] / "docs" / "connector.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", doc, re.S).group(1)  # type: ignore[union-attr]
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text(CA_PEM)
    d = load_declarative(example, base_dir=tmp_path)
    assert d.global_plugin is not None and d.global_plugin.config.node_ca_file == str(tmp_path / "certs" / "ca.pem")
    r = Router.build(d, {rr.id: rr.route.name for rr in d.routes})
    m = r.match("GET", "any", "/orders/42", "http")
    assert m is not None and m.scope == "orders" and m.path == "/api/42"
    assert (m.target.upstream.scheme, m.target.upstream.host, m.target.upstream.port) == ("https", "orders.internal", 8443)
    assert r.match("POST", "any", "/orders/webhooks/x", "http").scope == "orders-webhooks"  # type: ignore[union-attr]
    assert r.match("GET", "any", "/orders/webhooks/x", "http").scope == "orders"  # type: ignore[union-attr]
    shop = r.match("GET", "a.shop.example", "/legacy/x", "http")
    assert shop is not None and shop.scope == "shop" and shop.path == "/legacy/x"  # hosts beat paths
    assert r.match("GET", "other", "/legacy/x", "http").scope == "legacy"  # type: ignore[union-attr]
    assert [p.enabled for p in d.plugins()] == [True, True, False]
