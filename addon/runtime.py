"""One config version as the flow hooks use it: the router and one `ActiveConfig` per plugin scope.

Built once per version and swapped as a whole (a flow keeps the version it started with). Each
route gets the plugin of its narrowest scope (route > service > global, as Kong); plugin instances
that talk to the node the same way share one `NodeClient`, so a scope does not cost a connection
pool of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from addon.active import ActiveConfig, ClientKey
from addon.config import PluginConfig
from addon.encode import IPNet
from addon.declarative import Declarative
from addon.node_client import NodeClient
from addon.router import Router

Scope = ActiveConfig | None  # None: no plugin applies to the route


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    decl: Declarative
    default: Scope  # the global plugin: applies to every flow when the config has no routes
    router: Router[Scope] | None  # None: no routes, everything goes to the reverse-mode upstream
    actives: tuple[ActiveConfig, ...]  # every plugin instance, global first
    clients: tuple[NodeClient, ...]
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def build(cls, decl: Declarative, front_proxies: tuple[IPNet, ...] = ()) -> RuntimeConfig:
        """`front_proxies`: the load balancer in front of this process (the connector's
        `wallarm_front_proxies` option), trusted by every plugin besides its `trusted_proxies`."""
        clients: dict[ClientKey, NodeClient] = {}
        actives: dict[int, ActiveConfig] = {}

        def active_for(plugin: PluginConfig | None) -> Scope:
            if plugin is None:
                return None
            if id(plugin) not in actives:
                key = ActiveConfig.client_key(plugin)
                if key not in clients:
                    clients[key] = ActiveConfig.make_client(plugin)
                actives[id(plugin)] = ActiveConfig.build(plugin, clients[key], front_proxies)
            return actives[id(plugin)]

        for plugin in decl.plugins():  # global first, so actives keep that order
            active_for(plugin)
        default = active_for(decl.global_plugin)
        router = None
        if decl.routing:
            scope_of = {rr.id: active_for(decl.route_plugins.get(rr.id) or decl.service_plugins.get(rr.service.id)
                                          or decl.global_plugin) for rr in decl.routes}
            router = Router.build(decl, scope_of)
        return cls(decl, default, router, tuple(actives.values()), tuple(clients.values()))

    @property
    def any_enabled(self) -> bool:
        return any(a.enabled for a in self.actives)

    def mirror_sizing(self) -> tuple[int, int, float, int] | None:
        """The one mirror queue serves every scope: the largest queue (count and bytes) and worker
        count, the shortest linger among the enabled plugins (None: none is enabled)."""
        enabled = [a for a in self.actives if a.enabled] or list(self.actives)
        if not enabled:
            return None
        return (max(a.plugin.config.mirror_queue_size for a in enabled),
                max(a.plugin.config.mirror_workers for a in enabled),
                min(a.timeouts.mirror_linger_s for a in enabled),
                max(a.plugin.config.mirror_queue_bytes for a in enabled))

    def in_flight(self) -> dict[str, int]:
        """Calls in flight per node address (summed over the clients that share an address)."""
        counts: dict[str, int] = {}
        for c in self.clients:
            for url, n in c.in_flight().items():
                counts[url] = counts.get(url, 0) + n
        return counts

    def breaker_states(self) -> dict[str, str]:
        states: dict[str, str] = {}
        for c in self.clients:
            states.update(c.breaker_states())
        return states

    def nodes_down(self) -> list[list[str]]:
        """The node lists of enabled plugins whose every breaker is open: those flows go
        uninspected (fail-open) or refused (fail-closed) until a node answers again."""
        down: dict[int, list[str]] = {}
        for a in self.actives:
            if a.enabled and id(a.client) not in down and a.client.all_open():
                down[id(a.client)] = [ep.address.url for ep in a.client.endpoints]
        return list(down.values())

    def probe_open_breakers(self) -> None:
        for c in self.clients:
            c.probe_open()

    def close(self) -> None:
        for c in self.clients:
            c.close()
