"""Kong-like routing: which route (and so which service and plugin scope) a request belongs to.

Built once per config version: every route is flattened into one entry per (host, path) pair and
the entries are sorted by Kong's precedence, so matching a request is a first-hit scan:

1. routes with more kinds of conditions first (hosts, paths, methods: three beats two beats one);
2. among equal counts, Kong's order of the kinds: hosts, then paths, then methods;
3. an exact host before a wildcard host; a longer path prefix before a shorter one;
4. then the order in the file (Kong: creation order).

Paths are prefixes, compared on the normalized path (percent-encoded unreserved characters
decoded, dot segments removed: RFC 3986 6.2.2), so `/public/../admin` cannot pose as `/public`;
the normalized path is what goes upstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from addon.declarative import Declarative, ResolvedRoute

S = TypeVar("S")  # what a route carries for the connector (its plugin scope)

NO_ROUTE_BODY = b'{"message":"no Route matched with those values"}'
CANDIDATE_CACHE_SIZE = 4096
MAX_CACHED_HOST = 260

_UNRESERVED_ESCAPE = re.compile(r"%(2[dDeE]|3[0-9]|4[1-9a-fA-F]|5[0-9aA]|5[fF]|6[1-9a-fA-F]|7[0-9aA]|7[eE])")


def normalize_path(path: str) -> str:
    """RFC 3986 6.2.2 normalization of a request path (no query): escapes of unreserved characters
    decoded, dot segments removed (5.2.4). Other escapes (`%2F`, `%25`…) stay as they are."""
    if "%" in path:
        path = _UNRESERVED_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), path)
    if "." not in path:
        return path or "/"
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def upstream_path(service_path: str | None, remainder: str) -> str:
    """Kong's `path_handling: v0` join of the service path and what is left of the request path."""
    base = service_path or "/"
    if not remainder:
        return base
    if base.endswith("/"):
        return base + remainder[1:] if remainder.startswith("/") else base + remainder
    return base + remainder if remainder.startswith("/") else base + "/" + remainder


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where a route's requests go (the service)."""

    scheme: str
    host: str
    port: int
    path: str | None


@dataclass(frozen=True, slots=True)
class RouteTarget(Generic[S]):
    """One route as the connector uses it: where to send, how to rewrite, which plugin scope."""

    route_id: str
    name: str | None
    upstream: Upstream
    strip_path: bool
    preserve_host: bool
    scope: S


@dataclass(frozen=True, slots=True)
class _Entry(Generic[S]):
    target: RouteTarget[S]
    protocols: frozenset[str]
    methods: frozenset[str] | None
    host: str | None  # exact name, "*.suffix" or "prefix.*"; with ":port" only if the route said so
    host_has_port: bool
    path: str | None
    strip: str  # the prefix strip_path removes (the route path without its trailing slash)


@dataclass(frozen=True, slots=True)
class Match(Generic[S]):
    target: RouteTarget[S]
    path: str  # the upstream path, query included

    @property
    def scope(self) -> S:
        return self.target.scope


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    if pattern.endswith(".*"):
        return host.startswith(pattern[:-1]) and len(host) > len(pattern) - 1
    return host == pattern


class Router(Generic[S]):
    def __init__(self, entries: list[_Entry[S]]):
        self._entries = tuple(entries)
        # (host, method, protocol) -> the entries those allow, in precedence order: a request then
        # only compares paths. Bounded (cleared when full): random Hosts cost a scan, not memory.
        self._candidates: dict[tuple[str, str, str], tuple[_Entry[S], ...]] = {}

    @classmethod
    def build(cls, decl: Declarative, scope_of: dict[str, S]) -> Router[S]:
        """`scope_of`: route id -> what the connector keeps for that route (its plugin scope)."""
        keyed: list[tuple[tuple, _Entry[S]]] = []
        for rr in decl.routes:
            if not rr.service.service.enabled:
                continue  # Kong: a disabled service's routes do not match
            keyed += _entries_of(rr, scope_of[rr.id])
        keyed.sort(key=lambda ke: ke[0])
        return cls([e for _, e in keyed])

    def _allowed(self, host_full: str, method: str, protocol: str) -> tuple[_Entry[S], ...]:
        key = (host_full, method, protocol)
        found = self._candidates.get(key)
        if found is not None:
            return found
        host_name = host_full
        if host_full and not host_full.endswith("]") and ":" in host_full:
            host_name = host_full.rsplit(":", 1)[0]
        found = tuple(e for e in self._entries
                      if protocol in e.protocols and (e.methods is None or method in e.methods)
                      and (e.host is None or _host_matches(e.host, host_full if e.host_has_port else host_name)))
        if len(host_full) <= MAX_CACHED_HOST:
            if len(self._candidates) >= CANDIDATE_CACHE_SIZE:
                self._candidates.clear()
            self._candidates[key] = found
        return found

    def match(self, method: str, host_header: str | None, path: str, protocol: str) -> Match[S] | None:
        """The route for a request, by Kong's precedence, and the path to send upstream."""
        raw_path, sep, query = path.partition("?")
        norm = normalize_path(raw_path)
        for e in self._allowed((host_header or "").lower().rstrip("."), method, protocol):
            if e.path is not None and not norm.startswith(e.path):
                continue
            t = e.target
            remainder = norm[len(e.strip):] if t.strip_path and e.path is not None else norm
            return Match(t, upstream_path(t.upstream.path, remainder) + sep + query)
        return None


def _entries_of(rr: ResolvedRoute, scope: S) -> list[tuple[tuple, _Entry[S]]]:
    route, svc = rr.route, rr.service.service
    target = RouteTarget(rr.id, route.name, Upstream(svc.protocol, svc.host, svc.port or 80, svc.path),
                         route.strip_path, route.preserve_host, scope)
    kinds = [bool(route.hosts), bool(route.paths), bool(route.methods)]
    weight = 4 * kinds[0] + 2 * kinds[1] + kinds[2]  # Kong's order of the kinds: hosts, paths, methods
    methods = frozenset(route.methods) if route.methods else None
    out = []
    for host in route.hosts or [None]:
        for path in route.paths or [None]:
            wildcard = host is not None and (host.startswith("*.") or host.endswith(".*"))
            # sort ascending: so negate what should come first
            key = (-sum(kinds), -weight, wildcard, -len(path or ""), rr.order)
            out.append((key, _Entry(target, frozenset(route.protocols), methods, host,
                                    host is not None and not host.startswith("[") and ":" in host,
                                    path, (path or "").rstrip("/"))))
    return out
