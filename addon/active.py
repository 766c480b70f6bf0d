"""One validated plugin config with everything derived from it, built once, swapped as a whole.

Each flow takes a reference to the `ActiveConfig` current when it starts, so a hot reload never
shows a request half a config. The flow hooks read the flat fields here, never the settings model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mitmproxy.flowfilter import TFilter

from addon import __version__
from addon.config import PluginConfig, Timeouts, compile_filter
from addon.encode import IPNet, header_safe
from addon.node_client import NodeClient, make_ssl_context
from wallarm_wire import protocol

# What makes two plugin instances able to share one NodeClient (its pools and breakers).
ClientKey = tuple[object, ...]
# Kong's gRPC protocols ride on HTTP/2, which mitmproxy handles as HTTP (docs/connector.md).
_TRANSPORT = {"grpc": "http", "grpcs": "https", "http": "http", "https": "https"}


@dataclass(frozen=True, slots=True)
class ActiveConfig:
    plugin: PluginConfig  # as loaded: for /plugins and the log
    client: NodeClient
    enabled: bool
    protocols: frozenset[str]
    delivery: str  # protocol.DELIVERY_SYNC (in-line) or DELIVERY_ASYNC (out-of-band)
    timeouts: Timeouts
    trusted: tuple[IPNet, ...]
    max_body_bytes: int
    inspect_response: bool
    fail_open: bool
    block_status: int
    block_page: str | None
    exclude: TFilter | None  # matching requests are never sent to the node
    loaded_at: float = field(default_factory=time.time)

    @property
    def in_line(self) -> bool:
        return self.delivery == protocol.DELIVERY_SYNC

    @staticmethod
    def client_key(plugin: PluginConfig) -> ClientKey:
        """Plugin instances with equal keys talk to the node the same way: one client serves them."""
        s = plugin.config
        return (tuple(a.url for a in s.wallarm_node_address), Timeouts.from_settings(s), s.breaker_failures,
                s.node_ca_file, plugin.instance_name, s.node_secret, s.max_in_flight_per_node)

    @staticmethod
    def make_client(plugin: PluginConfig) -> NodeClient:
        s = plugin.config
        static = [(protocol.H_CONNECTOR_TYPE, protocol.CONNECTOR_TYPE),
                  (protocol.H_CONNECTOR_VERSION, __version__)]
        if plugin.instance_name:
            static.append((protocol.H_INSTANCE, header_safe(plugin.instance_name)))
        if s.node_secret:
            static.append((protocol.H_SECRET, header_safe(s.node_secret)))
        tls = make_ssl_context(s.node_ca_file) if any(a.tls for a in s.wallarm_node_address) else None
        return NodeClient(s.wallarm_node_address, Timeouts.from_settings(s), s.breaker_failures, tls, static,
                          s.max_in_flight_per_node)

    @classmethod
    def build(cls, plugin: PluginConfig, client: NodeClient | None = None,
              front_proxies: tuple[IPNet, ...] = ()) -> ActiveConfig:
        """`client`: a shared one (same `client_key`); by default a new one for this config.
        `front_proxies`: trusted besides the plugin's `trusted_proxies` (RuntimeConfig.build)."""
        s = plugin.config
        timeouts = Timeouts.from_settings(s)
        client = client if client is not None else cls.make_client(plugin)
        protocols = frozenset(_TRANSPORT[p] for p in plugin.protocols)
        return cls(plugin=plugin, client=client, enabled=plugin.enabled, protocols=protocols,
                   delivery=protocol.DELIVERY_SYNC if s.blocking else protocol.DELIVERY_ASYNC,
                   timeouts=timeouts, trusted=(*s.trusted_proxies, *front_proxies), max_body_bytes=s.max_body_bytes,
                   inspect_response=s.inspect_response, fail_open=s.fail_open, block_status=s.block_status,
                   block_page=s.block_page, exclude=compile_filter(s.exclude) if s.exclude else None)
