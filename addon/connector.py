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
import time
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from addon import __version__, encode
from addon.active import ActiveConfig
from addon.config import ConfigError, PluginConfig, parse_config, read_config_bytes
from addon.delivery import MirrorDelivery, MirrorItem
from addon.http1 import Answer
from addon.metrics import Metrics
from addon.mirror import Mirror
from addon.node_client import NodeCallError
from addon.status import StatusServer, plugins_document, root_document
from addon.verdicts import UNJUDGED, Verdicts
from addon.watch import ConfigWatcher
from wallarm_wire import protocol
from wallarm_wire.addresses import parse_hostport

log = logging.getLogger("wallarm")

RID = "wallarm_request_id"  # flow.metadata keys
ACTIVE = "wallarm_config"
JUDGED = "wallarm_judged"  # the request was already judged on its headers (streamed body)
EARLY = "wallarm_early_verdict"  # a body-less request's verdict, asked for at requestheaders

DEFAULT_ADMIN_LISTEN = "127.0.0.1:8001"


class WallarmConnector:
    def __init__(self) -> None:
        self.active: ActiveConfig | None = None
        self.metrics = Metrics()
        self.verdicts = Verdicts(self.metrics)
        self.delivery = MirrorDelivery(self.metrics)
        self.mirror: Mirror[MirrorItem] = Mirror(self.delivery.deliver, self.delivery.count_drop,
                                                 size_of=MirrorItem.size)
        self.status = StatusServer(lambda: root_document(self.active, self._started_at),
                                   lambda: plugins_document(self.active), self._status_metrics)
        self.watcher: ConfigWatcher | None = None
        self._running = False
        self._admin_listen = ""
        self._status_task: asyncio.Task[None] | None = None
        self._started_at = time.time()

    # ------------------------------------------------------------------ lifecycle
    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option("wallarm_config", str, "",
                          "Path of the Wallarm plugin config (enable-plugin.json). Empty: connector off.")
        loader.add_option("wallarm_admin_listen", str, DEFAULT_ADMIN_LISTEN,
                          "HOST:PORT of the read-only status listener (/, /plugins, /metrics). Empty: off.")

    def configure(self, updated: set[str]) -> None:
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
        if "wallarm_config" in updated:
            path = ctx.options.wallarm_config.strip()
            if not path:
                self._set_watcher(None)
                self._swap(None)
                return
            file = Path(path)
            try:
                raw = read_config_bytes(file)
                plugin = parse_config(raw, base_dir=file.resolve().parent, source=str(file))
            except ConfigError as e:
                raise exceptions.OptionsError(f"wallarm_config: {e}") from None
            self._set_watcher(file)
            assert self.watcher is not None
            self.watcher.prime(raw)  # the exact bytes just loaded: a change after this is seen
            self._apply(plugin, reason="loaded")

    def running(self) -> None:
        self._running = True
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
        if self.active is not None:
            self.active.client.close()

    # ------------------------------------------------------------------ config swap
    def _set_watcher(self, path: Path | None) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = ConfigWatcher(path, self._on_valid_file, self._on_invalid_file) if path else None
        if self.watcher is not None and self._running:
            self.watcher.start()

    def _on_valid_file(self, plugin: PluginConfig) -> None:
        self._apply(plugin, reason="reloaded")

    def _on_invalid_file(self, message: str) -> None:
        self.metrics.config_errors += 1
        log.error("config: %s", message)

    def _apply(self, plugin: PluginConfig, reason: str) -> None:
        active = ActiveConfig.build(plugin)
        self._swap(active)
        s = plugin.config
        self.mirror.resize(s.mirror_queue_size, s.mirror_workers, active.timeouts.mirror_linger_s,
                           s.mirror_queue_bytes)
        if reason == "reloaded":
            self.metrics.config_reloads += 1
        log.info("config %s: %s, %s mode, nodes %s, timeout %d ms, fail_%s", reason,
                 "enabled" if plugin.enabled else "DISABLED",
                 "in-line (blocking)" if s.blocking else "out-of-band (monitoring)",
                 ", ".join(a.url for a in s.wallarm_node_address), s.timeout_ms,
                 "open" if s.fail_open else "closed")

    def _swap(self, new: ActiveConfig | None) -> None:
        old, self.active = self.active, new  # one assignment: flows see the old or the new, never a mix
        if old is not None:
            old.client.close()

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

    def _status_metrics(self) -> str:
        active = self.active
        return self.metrics.render(self.mirror.depth, self.mirror.capacity,
                                   active.client.breaker_states() if active else {},
                                   active is not None, __version__, self.mirror.bytes,
                                   active.client.in_flight() if active else {})

    # ------------------------------------------------------------------ flow hooks
    def _in_scope(self, flow: http.HTTPFlow) -> ActiveConfig | None:
        active = self.active
        if active is None or not active.enabled:
            return None
        if encode.client_protocol(flow) not in active.protocols:
            return None
        return active

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        rid = protocol.new_request_id()
        flow.metadata[RID] = rid
        active = self._in_scope(flow)
        if active is None:
            return
        flow.metadata[ACTIVE] = active  # this flow keeps this config until it ends
        if not flow.request.stream:
            if active.in_line and encode.has_no_body(flow.request):
                # The whole request is known already: ask now, so the node works while mitmproxy
                # finishes reading the request; `request` awaits the answer. Eager: the message is
                # written before this hook returns, not on a later turn of the loop.
                flow.metadata[EARLY] = asyncio.eager_task_factory(
                    asyncio.get_running_loop(), self._ask_node(flow, active, rid, b"", encode.NOT_TRUNCATED))
            return
        # A streamed body goes upstream as it arrives, so the request is judged on its headers now.
        flow.metadata[JUDGED] = True
        await self._judge_or_mirror(flow, active, rid, b"", encode.declared_length(flow.request.headers),
                                    streamed=True)

    async def request(self, flow: http.HTTPFlow) -> None:
        early: asyncio.Task[Answer | NodeCallError] | None = flow.metadata.pop(EARLY, None)
        if flow.response or flow.error or not flow.live:
            return
        active: ActiveConfig | None = flow.metadata.get(ACTIVE)
        if active is None or flow.metadata.get(JUDGED):
            return
        rid = flow.metadata.get(RID) or protocol.new_request_id()
        flow.metadata[RID] = rid
        if early is not None:
            self.verdicts.settle(flow, active, rid, await early, streamed=False)
            return
        body, truncated = encode.cut_body(flow.request.raw_content or b"", active.max_body_bytes)
        await self._judge_or_mirror(flow, active, rid, body, truncated, streamed=False)

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
            head = encode.protocol_headers(flow, rid, protocol.CONTENT_TYPE_RESPONSE, truncated, active.trusted,
                                           active.delivery)
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
        self.verdicts.settle(flow, active, rid, await self._ask_node(flow, active, rid, body, truncated), streamed)

    def _encode_request(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, body: bytes,
                        truncated: int) -> tuple[bytes, bytes] | Exception:
        """(protocol headers, message) for the node, or the error that made encoding fail (logged):
        an odd request must never crash a hook."""
        self.metrics.inspected += 1
        try:
            return (encode.protocol_headers(flow, rid, protocol.CONTENT_TYPE_REQUEST, truncated, active.trusted,
                                            active.delivery),
                    encode.request_wire(flow, body))
        except Exception as e:
            log.exception("[%s] cannot encode the request for the node", rid)
            return e

    async def _ask_node(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, body: bytes,
                        truncated: int) -> Answer | NodeCallError:
        """The node's answer to this request, or the error that stands for it (never raises)."""
        encoded = self._encode_request(flow, active, rid, body, truncated)
        if isinstance(encoded, Exception):  # treated like no verdict
            return NodeCallError("encode", f"cannot encode: {encoded}")
        head, wire = encoded
        started = time.perf_counter()
        try:
            return await active.client.send(head, wire, active.timeouts.call_s)
        except NodeCallError as e:
            return e
        finally:
            self.metrics.node_latency["sync"].observe(time.perf_counter() - started)
