"""The mitmproxy addon: consult the node for every request, in-line or out-of-band.

Options are declared in `load` and validated in `configure` (an invalid config file raises
`OptionsError`, which stops mitmdump at startup). Each flow takes a reference to the active,
immutable `ActiveConfig` when it starts, so a hot reload never shows a request half a config.

This class holds the lifecycle and the flow hooks; the parts live beside it: `encode` (flow ->
wire), `verdicts` (what an answer does to a flow), `delivery` + `mirror` (out-of-band batches),
`active` (one config, derived once), `status` (the read-only listener), `watch` (hot reload).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from addon import __version__, encode
from addon.active import ActiveConfig
from addon.config import ConfigError, parse_cidr, read_config_bytes
from addon.declarative import Declarative, load_declarative
from addon.delivery import MirrorDelivery, MirrorItem
from addon.gc_tuning import freeze_startup_heap
from addon.http1 import Answer
from addon.logformat import LogFormat
from addon.metrics import Metrics
from addon.mirror import Mirror
from addon.node_client import NodeCallError
from addon.router import NO_ROUTE_BODY, Match
from addon.runtime import RuntimeConfig, Scope
from addon.admin_api import AdminApi
from addon.admin_store import DeclarativeStore
from addon.status import StatusServer, root_document
from addon.verdicts import UNJUDGED, Verdicts
from addon.watch import ConfigWatcher
from wallarm_wire import protocol
from wallarm_wire.addresses import parse_hostport

log = logging.getLogger("wallarm")

RID = "wallarm_request_id"  # flow.metadata keys
ACTIVE = "wallarm_config"
JUDGED = "wallarm_judged"  # the request was already judged on its headers (streamed body)
EARLY = "wallarm_early_verdict"  # a body-less request's verdict, asked for at requestheaders
ROUTE = "wallarm_route"  # the route matched at requestheaders, applied once the node has the request
FLOW_LINES = "wallarm_flow_lines"  # the protocol header lines shared by the flow's messages

NO_ROUTE_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
# What routing needs from mitmproxy: the client's Host (to match `hosts`, `preserve_host`), and no
# connection to the reverse-mode placeholder before the route has chosen the upstream.
ROUTING_OPTIONS = {"keep_host_header": True, "connection_strategy": "lazy"}

# A request sent to the node: the future of its answer and when it was sent; or why it was not sent.
Asked = tuple["asyncio.Future[Answer | NodeCallError]", float] | NodeCallError

DEFAULT_ADMIN_LISTEN = "127.0.0.1:8001"
ADMIN_TOKEN_ENV = "WALLARM_ADMIN_TOKEN"


class WallarmConnector:
    def __init__(self) -> None:
        # Not an addon of its own in the chain: mitmproxy walks every addon (and its children) for
        # every hook of every flow, so even one without flow hooks costs a lookup per hook.
        self.log_format = LogFormat()
        self.runtime: RuntimeConfig | None = None
        self.metrics = Metrics()
        self.verdicts = Verdicts(self.metrics)
        self.delivery = MirrorDelivery(self.metrics)
        self.mirror: Mirror[MirrorItem] = Mirror(self.delivery.deliver, self.delivery.count_drop,
                                                 size_of=MirrorItem.size)
        self.store: DeclarativeStore | None = None  # the Admin API's writer of the config file
        self.node_id = str(uuid.uuid4())
        admin = AdminApi(lambda: self.store, self._plugin_runtime, self._admin_token,
                         lambda: self.status.bound[0] if self.status.bound else None)
        self.status = StatusServer(lambda: root_document(self.runtime, self._started_at, self.node_id),
                                   self._status_document, self._status_metrics, admin)
        self.watcher: ConfigWatcher | None = None
        self._running = False
        self._admin_listen = ""
        self._status_task: asyncio.Task[None] | None = None
        self._started_at = time.time()
        self._saved_options: dict[str, object] = {}  # mitmproxy options routing changed, as they were
        self._front_proxies: tuple[encode.IPNet, ...] = ()  # wallarm_front_proxies
        self._decl: Declarative | None = None  # the config applied last: rebuilt when the front proxies change

    # ------------------------------------------------------------------ lifecycle
    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        self.log_format.load(loader)
        loader.add_option("wallarm_config", str, "",
                          "Path of the Wallarm config: a declarative file (Kong's DB-less format, JSON or YAML) "
                          "or a single plugin (enable-plugin.json). Empty: connector off.")
        loader.add_option("wallarm_admin_listen", str, DEFAULT_ADMIN_LISTEN,
                          "HOST:PORT of the status listener and Admin API (/, /services, /routes, /plugins, "
                          "/status, /metrics). Empty: off.")
        loader.add_option("wallarm_front_proxies", str, "",
                          "Comma-separated CIDRs of the load balancer in front of this mitmdump (a worker behind "
                          "HAProxy): trusted for X-Forwarded-For by every plugin, besides its trusted_proxies.")
        loader.add_option("wallarm_admin_token", str, "",
                          "Token the Admin API requires (header Kong-Admin-Token) from a non-loopback peer or "
                          f"when listening off loopback. Empty: ${ADMIN_TOKEN_ENV}, else no access off loopback.")

    def configure(self, updated: set[str]) -> None:
        self.log_format.configure(updated)  # first: the lines below (config loaded) come out in its format
        if "wallarm_admin_listen" in updated:
            value = ctx.options.wallarm_admin_listen.strip()
            if value:
                try:
                    parse_hostport(value)
                except ValueError as e:
                    raise exceptions.OptionsError(f"wallarm_admin_listen: {e}") from None
            self._admin_listen = value
            if self._running:
                self._restart_status()
        if "wallarm_front_proxies" in updated:
            try:
                self._front_proxies = tuple(parse_cidr(v.strip()) for v in ctx.options.wallarm_front_proxies.split(",")
                                            if v.strip())
            except ValueError as e:
                raise exceptions.OptionsError(f"wallarm_front_proxies: {e}") from None
            if self._decl is not None and "wallarm_config" not in updated:
                self._apply(self._decl, reason="rebuilt for wallarm_front_proxies")
        if "wallarm_config" in updated:
            path = ctx.options.wallarm_config.strip()
            if not path:
                self._set_watcher(None)
                self.store = None
                self._decl = None
                self._swap(None)
                return
            file = Path(path)
            try:
                raw = read_config_bytes(file)
                decl = load_declarative(raw, base_dir=file.resolve().parent, source=str(file))
            except ConfigError as e:
                raise exceptions.OptionsError(f"wallarm_config: {e}") from None
            self._set_watcher(file)
            assert self.watcher is not None
            self.watcher.prime(raw)  # the exact bytes just loaded: a change after this is seen
            self.store = DeclarativeStore(file, self._apply_admin_change)
            self._apply(decl, reason="loaded")
            self.store.loaded(raw, decl)

    def running(self) -> None:
        self._running = True
        freeze_startup_heap()
        self.mirror.start()
        if self.watcher is not None:
            self.watcher.start()
        self._restart_status()

    def done(self) -> None:
        self._running = False
        if self.mirror.depth:
            log.warning("shutting down with %d mirrored message(s) not delivered to the node", self.mirror.depth)
        self.mirror.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self._status_task is not None:
            self._status_task.cancel()
        try:
            asyncio.get_running_loop().create_task(self.status.stop())
        except RuntimeError:
            pass
        if self.runtime is not None:
            self.runtime.close()

    @property
    def active(self) -> ActiveConfig | None:
        """The global plugin of the running config (what applies when nothing narrower does)."""
        return self.runtime.default if self.runtime is not None else None

    # ------------------------------------------------------------------ config swap
    def _set_watcher(self, path: Path | None) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = ConfigWatcher(path, self._on_valid_file, self._on_invalid_file) if path else None
        if self.watcher is not None and self._running:
            self.watcher.start()

    def _on_valid_file(self, decl: Declarative) -> None:
        self._apply(decl, reason="reloaded")
        if self.store is not None and self.watcher is not None and self.watcher.seen is not None:
            self.store.loaded(self.watcher.seen, decl)

    def _apply_admin_change(self, raw: bytes, decl: Declarative) -> None:
        """A change written by the Admin API: applied now, and the watcher told it is not news."""
        if self.watcher is not None:
            self.watcher.prime(raw)
        self._apply(decl, reason="changed through the Admin API")

    def _on_invalid_file(self, message: str) -> None:
        self.metrics.config_errors += 1
        log.error("config: %s", message)

    def _apply(self, decl: Declarative, reason: str) -> None:
        runtime = RuntimeConfig.build(decl, self._front_proxies)
        self._decl = decl
        self._routing_options(runtime.router is not None)
        self._swap(runtime)
        sizing = runtime.mirror_sizing()
        if sizing is not None:
            self.mirror.resize(*sizing)
        if reason != "loaded":
            self.metrics.config_reloads += 1
        if not decl.bare:
            log.info("config %s: %d service(s), %d route(s), %d plugin instance(s)%s", reason, len(decl.services),
                     len(decl.routes), len(runtime.actives),
                     "" if decl.routing else "; no routes: everything goes to the reverse-mode upstream")
        for active in runtime.actives:
            self._log_plugin(active, reason if decl.bare else "plugin")

    @staticmethod
    def _log_plugin(active: ActiveConfig, what: str) -> None:
        plugin, s = active.plugin, active.plugin.config
        scope = (f"route {plugin.route.key}" if plugin.route else f"service {plugin.service.key}" if plugin.service
                 else "global")
        log.info("config %s: %s%s, %s mode, nodes %s, timeout %d ms, fail_%s%s", what,
                 "enabled" if plugin.enabled else "DISABLED", "" if what != "plugin" else f" ({scope})",
                 "in-line (blocking)" if s.blocking else "out-of-band (monitoring)",
                 ", ".join(a.url for a in s.wallarm_node_address), s.timeout_ms,
                 "open" if s.fail_open else "closed", f", exclude {s.exclude!r}" if s.exclude else "")

    def _routing_options(self, routing: bool) -> None:
        """Routing needs `ROUTING_OPTIONS`; they are set while the config routes and the user's values
        come back when it stops (a bare plugin config behaves exactly as without routing)."""
        if routing:
            wrong = {k: v for k, v in ROUTING_OPTIONS.items() if k in ctx.options and getattr(ctx.options, k) != v}
            if wrong:
                self._saved_options = {k: getattr(ctx.options, k) for k in wrong} | self._saved_options
                log.info("routing: setting %s", ", ".join(f"{k}={v}" for k, v in wrong.items()))
                ctx.options.update(**wrong)
        elif self._saved_options:
            saved, self._saved_options = self._saved_options, {}
            log.info("no routes: restoring %s", ", ".join(f"{k}={v}" for k, v in saved.items()))
            ctx.options.update(**saved)

    def _swap(self, new: RuntimeConfig | None) -> None:
        old, self.runtime = self.runtime, new  # one assignment: flows see the old or the new, never a mix
        if old is not None:
            old.close()

    # ------------------------------------------------------------------ status listener
    def _restart_status(self) -> None:
        if self._status_task is not None:
            self._status_task.cancel()
        listen = self._admin_listen
        self._status_task = asyncio.get_running_loop().create_task(self._start_status(listen))

    async def _start_status(self, listen: str) -> None:
        if not listen:
            await self.status.stop()
            return
        host, port = parse_hostport(listen)
        await self.status.start(host, port)

    def _admin_token(self) -> str:
        return ctx.options.wallarm_admin_token or os.environ.get(ADMIN_TOKEN_ENV, "")

    def _plugin_runtime(self, plugin: dict) -> dict:
        """What `/plugins` shows of a plugin beside its config: the connector's version and, while
        it runs, when it was loaded and its node breakers."""
        out: dict = {"version": __version__}
        runtime = self.runtime
        if runtime is None:
            return out
        decl = runtime.decl
        route, service = (plugin.get("route") or {}).get("id"), (plugin.get("service") or {}).get("id")
        running = (decl.route_plugins.get(route) if route else decl.service_plugins.get(service) if service
                   else decl.global_plugin)
        for active in runtime.actives:
            if running is not None and active.plugin is running:
                out["loaded_at"] = active.loaded_at
                out["node_breakers"] = active.client.breaker_states()
        return out

    def _status_document(self) -> tuple[bool, dict]:
        """`GET /status`, like Kong's: counters and the running config's hash; and whether this
        worker can inspect: unhealthy (503) while every node breaker of an enabled plugin is
        open, so a load balancer sends the traffic to a worker whose node answers. Each call
        also starts the liveness check of open breakers whose cooldown is over (a worker out of
        rotation gets no calls that would re-check them)."""
        runtime = self.runtime
        down: list[list[str]] = []
        if runtime is not None:
            runtime.probe_open_breakers()
            down = runtime.nodes_down()
        healthy = not down
        return healthy, {"database": {"reachable": True},
                         "server": {"requests_inspected": self.metrics.inspected},
                         "configuration_hash": self.store.running_hash if self.store else "",
                         "hostname": socket.gethostname(), "node_id": self.node_id,
                         "wallarm": {"enabled": bool(runtime and runtime.any_enabled), "healthy": healthy,
                                     "nodes_down": down, "mirror_queue_depth": self.mirror.depth,
                                     "node_breakers": runtime.breaker_states() if runtime else {}}}

    def _status_metrics(self) -> str:
        runtime = self.runtime
        return self.metrics.render(self.mirror.depth, self.mirror.capacity,
                                   runtime.breaker_states() if runtime else {},
                                   runtime is not None, __version__, self.mirror.bytes,
                                   runtime.in_flight() if runtime else {})

    # ------------------------------------------------------------------ flow hooks
    def _in_scope(self, flow: http.HTTPFlow, scope: Scope) -> ActiveConfig | None:
        """The plugin config that judges this flow, or None (no plugin, disabled, other protocol,
        excluded: the node never sees the request)."""
        if scope is None or not scope.enabled:
            return None
        if encode.client_protocol(flow) not in scope.protocols:
            return None
        if scope.exclude is not None and scope.exclude(flow):
            self.metrics.excluded += 1
            return None
        return scope

    def _scope(self, flow: http.HTTPFlow, runtime: RuntimeConfig) -> tuple[bool, Scope]:
        """(routed, scope): the route's plugin scope, remembered for `_route`; (False, _) when no
        route matches (the flow then has Kong's 404)."""
        if runtime.router is None:
            return True, runtime.default
        req = flow.request
        match = runtime.router.match(req.method, req.host_header, req.path, encode.client_protocol(flow))
        if match is None:
            self.metrics.unrouted += 1
            flow.response = http.Response.make(404, NO_ROUTE_BODY, NO_ROUTE_HEADERS)
            return False, None
        flow.metadata[ROUTE] = match
        return True, match.scope

    @staticmethod
    def _route(flow: http.HTTPFlow) -> None:
        """Send the flow to its route's service (mitmproxy's way: set the request's scheme, host
        and port) with the path Kong would send. Runs after the node has the request as the client
        sent it."""
        match: Match[Scope] | None = flow.metadata.pop(ROUTE, None)
        if match is None:
            return
        req, target = flow.request, match.target
        client_host = req.host_header if target.preserve_host else None
        up = target.upstream
        req.scheme = up.scheme
        req.host = up.host  # also sets Host to the service's (Kong's preserve_host: false)
        req.port = up.port
        req.path = match.path
        if client_host is not None:
            req.host_header = client_host

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        rid = protocol.new_request_id()
        flow.metadata[RID] = rid
        runtime = self.runtime
        if runtime is None:
            return
        routed, scope = self._scope(flow, runtime)
        if not routed:
            return
        active = self._in_scope(flow, scope)
        if active is not None:
            flow.metadata[ACTIVE] = active  # this flow keeps this config until it ends
            if not flow.request.stream:
                if active.in_line and encode.has_no_body(flow.request):
                    # The whole request is known already: ask now, so the node works while mitmproxy
                    # finishes reading the request; `request` awaits the answer. The message goes out
                    # at the end of this turn of the loop, with the others asked for during it.
                    flow.metadata[EARLY] = self._ask_node(flow, active, rid, b"", encode.NOT_TRUNCATED)
            else:
                # A streamed body goes upstream as it arrives, so the request is judged on its headers now.
                flow.metadata[JUDGED] = True
                await self._judge_or_mirror(flow, active, rid, b"", encode.declared_length(flow.request.headers),
                                            streamed=True)
        if flow.request.stream and not (flow.response or flow.error):
            self._route(flow)  # the request goes upstream right after this hook

    async def request(self, flow: http.HTTPFlow) -> None:
        early: Asked | None = flow.metadata.pop(EARLY, None)
        if flow.response or flow.error or not flow.live:
            return
        active: ActiveConfig | None = flow.metadata.get(ACTIVE)
        if active is not None and not flow.metadata.get(JUDGED):
            rid = flow.metadata.get(RID) or protocol.new_request_id()
            flow.metadata[RID] = rid
            if early is not None:
                self.verdicts.settle(flow, active, rid, await self._verdict(early), streamed=False)
            else:
                body, truncated = encode.cut_body(flow.request.raw_content or b"", active.max_body_bytes)
                await self._judge_or_mirror(flow, active, rid, body, truncated, streamed=False)
            if flow.response or flow.error or not flow.live:
                return
        self._route(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        active: ActiveConfig | None = flow.metadata.get(ACTIVE)
        # A block answer is mirrored too, so the stored attack gets the status the client saw;
        # an answer the connector gave without a verdict is not (the node never judged the request).
        if active is None or flow.metadata.get(UNJUDGED) or not active.inspect_response:
            return
        resp = flow.response
        if resp is None:
            return
        rid: str = flow.metadata[RID]
        if resp.raw_content is None:  # streamed response: the body never sat in memory
            body, truncated = b"", encode.declared_length(resp.headers)
        else:
            body, truncated = encode.cut_body(resp.raw_content, active.max_body_bytes)
        try:
            head = encode.message_header_lines(self._flow_lines(flow, active, rid), protocol.CONTENT_TYPE_RESPONSE,
                                               truncated)
            wire = encode.response_wire(resp, body)
        except Exception:  # never let an odd response break the flow; the node just misses it
            log.exception("[%s] cannot encode the response for the node", rid)
            return
        self.mirror.offer(MirrorItem(active, head, wire, rid, protocol.MSGTYPE_RESPONSE))

    # ------------------------------------------------------------------ asking the node
    async def _judge_or_mirror(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, body: bytes,
                               truncated: int, streamed: bool) -> None:
        if not active.in_line:
            encoded = self._encode_request(flow, active, rid, body, truncated)
            if not isinstance(encoded, Exception):  # else the node just misses it (logged)
                self.mirror.offer(MirrorItem(active, *encoded, rid, protocol.MSGTYPE_REQUEST))
            return
        asked = self._ask_node(flow, active, rid, body, truncated)
        self.verdicts.settle(flow, active, rid, await self._verdict(asked), streamed)

    def _encode_request(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, body: bytes,
                        truncated: int) -> tuple[bytes, bytes] | Exception:
        """(protocol headers, message) for the node, or the error that made encoding fail (logged):
        an odd request must never crash a hook."""
        self.metrics.inspected += 1
        try:
            return (encode.message_header_lines(self._flow_lines(flow, active, rid), protocol.CONTENT_TYPE_REQUEST,
                                                truncated),
                    encode.request_wire(flow, body))
        except Exception as e:
            log.exception("[%s] cannot encode the request for the node", rid)
            return e

    @staticmethod
    def _flow_lines(flow: http.HTTPFlow, active: ActiveConfig, rid: str) -> bytes:
        lines: bytes | None = flow.metadata.get(FLOW_LINES)
        if lines is None:
            lines = flow.metadata[FLOW_LINES] = encode.flow_header_lines(flow, rid, active.trusted, active.delivery)
        return lines

    def _ask_node(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, body: bytes,
                  truncated: int) -> Asked:
        """Send this request to the node (with the others of this turn of the loop): what to await
        for its answer, or the error that stands for it (never raises)."""
        encoded = self._encode_request(flow, active, rid, body, truncated)
        if isinstance(encoded, Exception):  # treated like no verdict
            return NodeCallError("encode", f"cannot encode: {encoded}")
        return active.client.ask(*encoded, active.timeouts.call_s), time.perf_counter()

    async def _verdict(self, asked: Asked) -> Answer | NodeCallError:
        """The node's answer to an asked request, or the error that stands for it (never raises)."""
        if isinstance(asked, NodeCallError):
            return asked
        future, started = asked
        try:
            return await future
        finally:
            self.metrics.node_latency["sync"].observe(time.perf_counter() - started)
