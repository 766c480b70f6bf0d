"""Kong-like route matching: precedence, hosts/methods/paths, strip_path and the service path."""

from __future__ import annotations

import pytest

from addon.declarative import load_declarative
from addon.router import Router, normalize_path, upstream_path


def router(*routes: dict, services: list[dict] | None = None) -> Router[str]:
    """A router whose scope is the route's name, over services `a` (default) and `b`."""
    services = services or [{"name": "a", "url": "http://a.internal:9001"},
                            {"name": "b", "url": "https://b.internal/base"}]
    decl = load_declarative({"_format_version": "3.0", "services": services,
                             "routes": [{"service": "a", **r} for r in routes]})
    return Router.build(decl, {rr.id: rr.route.name for rr in decl.routes})


def pick(r: Router[str], path: str, host: str | None = "any.example", method: str = "GET",
         proto: str = "http") -> str | None:
    m = r.match(method, host, path, proto)
    return None if m is None else m.scope


def test_longest_prefix_wins_whatever_the_order() -> None:
    r = router({"name": "short", "paths": ["/api", "/zzzzzz"]}, {"name": "long", "paths": ["/api/v2"]})
    assert pick(r, "/api/v2/items") == "long"
    assert pick(r, "/api/v1/items") == "short"
    assert pick(r, "/other") is None


def test_hosts_beat_paths_beat_methods_and_more_conditions_beat_fewer() -> None:
    r = router({"name": "by-method", "methods": ["GET"]},
               {"name": "by-path", "paths": ["/x"]},
               {"name": "by-host", "hosts": ["h.example"]},
               {"name": "host-and-path", "hosts": ["h.example"], "paths": ["/x"]},
               {"name": "all-three", "hosts": ["h.example"], "paths": ["/x"], "methods": ["POST"]})
    assert pick(r, "/x", "h.example", "POST") == "all-three"
    assert pick(r, "/x", "h.example", "GET") == "host-and-path"
    assert pick(r, "/y", "h.example", "GET") == "by-host"
    assert pick(r, "/x", "other.example", "GET") == "by-path"
    assert pick(r, "/y", "other.example", "GET") == "by-method"
    assert pick(r, "/y", "other.example", "DELETE") is None


def test_host_matching_exact_before_wildcard_ports_and_case() -> None:
    r = router({"name": "wild", "hosts": ["*.example.com"]}, {"name": "exact", "hosts": ["api.example.com"]},
               {"name": "suffix", "hosts": ["shop.*"]}, {"name": "with-port", "hosts": ["p.example:8000"]})
    assert pick(r, "/", "api.example.com") == "exact"
    assert pick(r, "/", "API.Example.COM:8080") == "exact"  # the port does not matter without one in the route
    assert pick(r, "/", "x.example.com") == "wild"
    assert pick(r, "/", "example.com") is None  # a wildcard needs a label in its place
    assert pick(r, "/", "shop.fr") == "suffix"
    assert pick(r, "/", "p.example:8000") == "with-port" and pick(r, "/", "p.example") is None
    assert pick(r, "/", None) is None


def test_route_protocols_and_disabled_services() -> None:
    r = router({"name": "tls-only", "paths": ["/"], "protocols": ["https"]})
    assert pick(r, "/", proto="https") == "tls-only" and pick(r, "/", proto="http") is None
    off = router({"name": "r", "paths": ["/"]}, services=[{"name": "a", "url": "http://a", "enabled": False}])
    assert pick(off, "/") is None


@pytest.mark.parametrize(("service_path", "route_path", "strip", "request_path", "upstream"), [
    # Kong's path_handling v0 table
    ("/s", "/fv0", False, "/fv0req", "/s/fv0req"),
    ("/s", "/fv0", False, "/fv0", "/s/fv0"),
    ("/s", "/tv0", True, "/tv0req", "/s/req"),
    ("/s", "/tv0", True, "/tv0", "/s"),
    ("/s", "/fv0/", False, "/fv0/req", "/s/fv0/req"),
    ("/s", "/tv0/", True, "/tv0/req", "/s/req"),
    ("/s", "/tv0/", True, "/tv0/", "/s/"),
    (None, "/test", True, "/test/etc/passwd?x=1", "/etc/passwd?x=1"),
    (None, "/test", True, "/test", "/"),
    (None, "/test", False, "/test/a", "/test/a"),
    ("/base/", "/", True, "/a/b", "/base/a/b"),
])
def test_strip_path_and_service_path(service_path: str | None, route_path: str, strip: bool, request_path: str,
                                     upstream: str) -> None:
    svc: dict = {"name": "a", "host": "a.internal"}
    if service_path:
        svc["path"] = service_path
    r = router({"name": "r", "paths": [route_path], "strip_path": strip}, services=[svc])
    m = r.match("GET", "h", request_path, "http")
    assert m is not None and m.path == upstream


def test_match_carries_the_service_address() -> None:
    decl = load_declarative({"_format_version": "3.0", "services": [
        {"name": "b", "url": "https://b.internal/base", "routes": [{"name": "r", "paths": ["/b"], "preserve_host": True}]}]})
    m = Router.build(decl, {rr.id: "x" for rr in decl.routes}).match("GET", "h", "/b/c", "http")
    assert m is not None
    up = m.target.upstream
    assert (up.scheme, up.host, up.port, m.path, m.target.preserve_host) == ("https", "b.internal", 443, "/base/c", True)


@pytest.mark.parametrize(("raw", "norm"), [
    ("/a/b", "/a/b"),
    ("/public/../admin", "/admin"),
    ("/public/%2e%2e/admin", "/admin"),
    ("/a/./b/.", "/a/b/"),
    ("/%41%7e%2F", "/A~%2F"),  # unreserved decoded, a slash escape kept
    ("/../../x", "/x"),
    ("", "/"),
])
def test_normalize_path(raw: str, norm: str) -> None:
    assert normalize_path(raw) == norm


def test_a_dot_dot_path_cannot_pose_as_another_route() -> None:
    r = router({"name": "public", "paths": ["/public"]}, {"name": "admin", "paths": ["/admin"]})
    assert pick(r, "/public/../admin/users") == "admin"
    m = r.match("GET", "h", "/public/%2E%2E/admin/users", "http")
    assert m is not None and m.scope == "admin" and m.path == "/users"


def test_upstream_path_join() -> None:
    assert upstream_path(None, "/x") == "/x"
    assert upstream_path("/s", "") == "/s"
    assert upstream_path("/s/", "/x") == "/s/x"
    assert upstream_path("/s", "x") == "/s/x"


def test_the_per_host_candidate_cache_is_bounded_and_keyed_by_method_and_protocol() -> None:
    from addon.router import CANDIDATE_CACHE_SIZE
    r = router({"name": "get", "paths": ["/"], "methods": ["GET"]}, {"name": "tls", "paths": ["/"], "protocols": ["https"]})
    assert pick(r, "/", "h") == "get" and pick(r, "/", "h", "POST") is None
    assert pick(r, "/", "h", "POST", "https") == "tls"
    for i in range(CANDIDATE_CACHE_SIZE + 10):
        pick(r, "/", f"h{i}.example")
    assert len(r._candidates) <= CANDIDATE_CACHE_SIZE
    assert pick(r, "/", "h" * 1000) == "get" and ("h" * 1000, "GET", "http") not in r._candidates
