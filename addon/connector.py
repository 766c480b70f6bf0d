"""The mitmproxy addon: consult the node for every request, in-line or out-of-band.

Options are declared in `load` and validated in `configure` (an invalid config file raises
`OptionsError`, which stops mitmdump at startup). Each flow takes a reference to the active,
immutable `ActiveConfig` when it starts, so a hot reload never shows a request half a config.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from addon import __version__
from wallarm_wire import protocol
from addon.blockpage import block_response
from addon.config import PLUGIN_NAME, ConfigError, PluginConfig, PluginSettings, parse_config, read_config_bytes
from addon.http1 import Answer
from addon.metrics import Metrics
from addon.mirror import Mirror
from addon.node_client import NodeCallError, NodeClient
from addon.status import StatusServer
from wallarm_wire.addresses import parse_hostport
from addon.watch import ConfigWatcher

log = logging.getLogger("wallarm")

RID = "wallarm_request_id"  # flow.metadata keys
ACTIVE = "wallarm_config"
JUDGED = "wallarm_judged"  # the request was already judged on its headers (streamed body)
BLOCKED = "wallarm_blocked"
REFUSED = "wallarm_refused"  # fail-closed 503: the node never judged this flow
EARLY = "wallarm_early_verdict"  # a body-less request's verdict, asked for at requestheaders

DEFAULT_ADMIN_LISTEN = "127.0.0.1:8001"
BREAKER_LOG_INTERVAL_S = 5.0
DEFAULT_INLINE_LINGER_S = 0.030

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ActiveConfig:
    """One validated config with everything derived from it; swapped as a whole on reload."""

    plugin: PluginConfig
    client: NodeClient
    protocols: frozenset[str]
    delivery: str  # protocol.DELIVERY_SYNC (in-line) or DELIVERY_ASYNC (out-of-band)
    timeout_s: float
    trusted: tuple[IPNet, ...]
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def build(cls, plugin: PluginConfig) -> ActiveConfig:
        s = plugin.config
        static = [(protocol.H_CONNECTOR_TYPE, protocol.CONNECTOR_TYPE),
                  (protocol.H_CONNECTOR_VERSION, __version__)]
        if plugin.instance_name:
            static.append((protocol.H_INSTANCE, _header_safe(plugin.instance_name)))
        if s.node_secret:
            static.append((protocol.H_SECRET, _header_safe(s.node_secret)))
        return cls(plugin=plugin, client=NodeClient(s, static), protocols=frozenset(plugin.protocols),
                   delivery=protocol.DELIVERY_SYNC if s.blocking else protocol.DELIVERY_ASYNC,
                   timeout_s=s.timeout_ms / 1000, trusted=tuple(s.trusted_proxies))


@dataclass(slots=True)
class MirrorItem:
    active: ActiveConfig
    head: bytes
    body: bytes
    request_id: str


def _header_safe(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def _strip_mapped(ip: str) -> str:
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def client_ip(flow: http.HTTPFlow, trusted: tuple[IPNet, ...]) -> str:
    """The peer address, or, when the peer is a trusted proxy, the first untrusted hop of XFF."""
    peer = flow.client_conn.peername
    ip = _strip_mapped(str(peer[0])) if peer else ""
    if not trusted or not ip or not _in_nets(ip, trusted):
        return ip
    xff = flow.request.headers.get_all("x-forwarded-for")
    hops = [h.strip() for line in xff for h in line.split(",") if h.strip()]
    for hop in reversed(hops):  # right to left: each hop was appended by the proxy after it
        hop = _strip_mapped(hop)
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return ip  # garbage in the chain: do not believe anything left of it
        if not _in_nets(hop, trusted):
            return hop
        ip = hop
    return ip


def _in_nets(ip: str, nets: tuple[IPNet, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in n for n in nets)


def client_protocol(flow: http.HTTPFlow) -> str:
    return "https" if flow.client_conn.tls_established else "http"


class WallarmConnector:
    def __init__(self) -> None:
        self.active: ActiveConfig | None = None
        self.metrics = Metrics()
        self.mirror: Mirror[MirrorItem] = Mirror(self._deliver, self._count_drop)
        self.status = StatusServer(self._status_root, self._status_plugins, self._status_metrics)
        self.watcher: ConfigWatcher | None = None
        self._running = False
        self._admin_listen = ""
        self._status_task: asyncio.Task[None] | None = None
        self._last_breaker_log = 0.0
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

    # ------------------------------------------------------------------ config handling
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
        self._swap(ActiveConfig.build(plugin))
        s = plugin.config
        self.mirror.resize(s.mirror_queue_size, s.mirror_workers, mirror_linger_s(s))
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

    def _status_root(self) -> dict:
        return {"tagline": "Welcome to the Wallarm connector for mitmproxy",
                "version": __version__, "connector_type": protocol.CONNECTOR_TYPE,
                "protocol_version": protocol.PROTOCOL_VERSION,
                "plugins": {"available_on_server": {PLUGIN_NAME: {"version": __version__}},
                            "enabled_in_cluster": [PLUGIN_NAME] if self.active and self.active.plugin.enabled else []},
                "started_at": self._started_at}

    def _status_plugins(self) -> dict:
        data = []
        if self.active is not None:
            item = self.active.plugin.public_dict()
            item["version"] = __version__
            item["loaded_at"] = self.active.loaded_at
            item["node_breakers"] = self.active.client.breaker_states()
            data.append(item)
        return {"data": data, "next": None}

    def _status_metrics(self) -> str:
        active = self.active
        return self.metrics.render(self.mirror.depth, self.mirror.capacity,
                                   active.client.breaker_states() if active else {},
                                   active is not None, __version__)

    # ------------------------------------------------------------------ flow hooks
    def _in_scope(self, flow: http.HTTPFlow) -> ActiveConfig | None:
        active = self.active
        if active is None or not active.plugin.enabled:
            return None
        if client_protocol(flow) not in active.protocols:
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
            if active.delivery == protocol.DELIVERY_SYNC and _has_no_body(flow.request):
                # The whole request is known already: ask now, so the node works while mitmproxy
                # finishes reading the request; `request` awaits the answer. Eager: the message is
                # written before this hook returns, not on a later turn of the loop.
                flow.metadata[EARLY] = asyncio.eager_task_factory(
                    asyncio.get_running_loop(), self._ask_node(flow, active, rid, b"", -1))
            return
        # A streamed body goes upstream as it arrives, so the request is judged on its headers now.
        flow.metadata[JUDGED] = True
        declared = flow.request.headers.get("content-length", "")
        truncated = int(declared) if declared.isdigit() else 0  # 0: length unknown (chunked)
        await self._judge_or_mirror(flow, active, rid, b"", truncated, streamed=True)

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
            self._settle(flow, active, rid, await early, streamed=False)
            return
        body = flow.request.raw_content or b""
        limit = active.plugin.config.max_body_bytes
        truncated = -1
        if len(body) > limit:
            truncated, body = len(body), body[:limit]
        await self._judge_or_mirror(flow, active, rid, body, truncated, streamed=False)

    def response(self, flow: http.HTTPFlow) -> None:
        active: ActiveConfig | None = flow.metadata.get(ACTIVE)
        # A block answer is mirrored too, so the stored attack gets the status the client saw;
        # a fail-closed 503 is not (the node is unreachable and never saw the request).
        if active is None or flow.metadata.get(REFUSED) or not active.plugin.config.inspect_response:
            return
        resp = flow.response
        if resp is None:
            return
        rid: str = flow.metadata[RID]
        body = resp.raw_content
        truncated = -1
        limit = active.plugin.config.max_body_bytes
        if body is None:  # streamed response: the body never sat in memory
            declared = resp.headers.get("content-length", "")
            body, truncated = b"", (int(declared) if declared.isdigit() else 0)
        elif len(body) > limit:
            truncated, body = len(body), body[:limit]
        try:
            msg = protocol.ResponseMessage(resp.status_code, list(resp.headers.fields), body, resp.reason,
                                           _wire_version(resp.http_version))
            head = self._message_headers(flow, active, rid, protocol.CONTENT_TYPE_RESPONSE, truncated)
            wire = protocol.encode_response(msg)
        except Exception:  # never let an odd response break the flow; the node just misses it
            log.exception("[%s] cannot encode the response for the node", rid)
            return
        self.mirror.offer(MirrorItem(active, head, wire, rid))

    # ------------------------------------------------------------------ deciding
    def _request_wire(self, flow: http.HTTPFlow, body: bytes) -> bytes:
        req = flow.request
        fields = req.headers.fields
        if req.is_http2 or req.is_http3:  # no Host line in h2; the authority carries it
            if req.data.authority and not any(k.lower() == b"host" for k, _ in fields):
                fields = ((b"Host", req.data.authority), *fields)
        msg = protocol.RequestMessage(req.method, req.path, list(fields), body, _wire_version(req.http_version))
        return protocol.encode_request(msg)

    def _message_headers(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, ctype: str,
                         truncated: int) -> bytes:
        host = flow.client_conn.sni or flow.request.host_header or flow.request.host
        lines = [
            f"Content-Type: {ctype}",
            f"{protocol.H_REQUEST_ID}: {rid}",
            f"{protocol.H_FORWARDED_FOR}: {client_ip(flow, active.trusted)}",
            f"{protocol.H_FORWARDED_HOST}: {_header_safe(host)}",
            f"{protocol.H_FORWARDED_PROTO}: {client_protocol(flow)}",
            f"{protocol.H_DELIVERY}: {active.delivery}",
        ]
        if truncated >= 0:
            lines.append(f"{protocol.H_BODY_TRUNCATED}: {truncated}")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")

    async def _judge_or_mirror(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, body: bytes,
                               truncated: int, streamed: bool) -> None:
        if active.delivery == protocol.DELIVERY_ASYNC:
            self._mirror_request(flow, active, rid, body, truncated)
            return
        self._settle(flow, active, rid, await self._ask_node(flow, active, rid, body, truncated), streamed)

    def _encode_request(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, body: bytes,
                        truncated: int) -> tuple[bytes, bytes] | Exception:
        """(protocol headers, message) for the node, or the error that made encoding fail (logged):
        an odd request must never crash a hook."""
        self.metrics.inspected += 1
        try:
            return (self._message_headers(flow, active, rid, protocol.CONTENT_TYPE_REQUEST, truncated),
                    self._request_wire(flow, body))
        except Exception as e:
            log.exception("[%s] cannot encode the request for the node", rid)
            return e

    def _mirror_request(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, body: bytes,
                        truncated: int) -> None:
        encoded = self._encode_request(flow, active, rid, body, truncated)
        if not isinstance(encoded, Exception):  # else the node just misses it
            self.mirror.offer(MirrorItem(active, *encoded, rid))

    async def _ask_node(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, body: bytes,
                        truncated: int) -> Answer | NodeCallError:
        """The node's answer to this request, or the error that stands for it (never raises)."""
        encoded = self._encode_request(flow, active, rid, body, truncated)
        if isinstance(encoded, Exception):  # treated like no verdict
            return NodeCallError("encode", f"cannot encode: {encoded}")
        head, wire = encoded
        started = time.perf_counter()
        try:
            return await active.client.send(head, wire, active.timeout_s)
        except NodeCallError as e:
            return e
        finally:
            self.metrics.node_latency["sync"].observe(time.perf_counter() - started)

    def _settle(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, outcome: Answer | NodeCallError,
                streamed: bool) -> None:
        if isinstance(outcome, NodeCallError):
            self._no_verdict(flow, active, rid, outcome.cause, str(outcome), streamed)
        else:
            self._apply_answer(flow, active, rid, outcome, streamed)

    def _apply_answer(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, answer: Answer,
                      streamed: bool) -> None:
        status = answer.status
        if status not in (protocol.STATUS_PASS, protocol.STATUS_BLOCK):
            self._no_verdict(flow, active, rid, "status", f"node answered HTTP {status}", streamed)
            return
        try:
            verdict = protocol.Verdict.from_json(answer.body)
        except protocol.ProtocolError as e:
            self._no_verdict(flow, active, rid, "bad_verdict", str(e), streamed)
            return
        if status == protocol.STATUS_PASS:
            self.metrics.passed += 1
            return
        self.metrics.blocked += 1
        flow.metadata[BLOCKED] = True
        attacks = ", ".join(f"{a.type}@{a.location}" for a in verdict.attacks) or verdict.reason or "-"
        log.info("[%s] blocked %s %s from %s: %s", rid, flow.request.method, flow.request.path[:200],
                 client_ip(flow, active.trusted), attacks)
        if streamed:
            self.metrics.killed_streams += 1
            flow.kill()  # mitmproxy cannot answer a request whose body is already streaming
            return
        s = active.plugin.config
        flow.response = block_response(s.block_status, rid, flow.request.headers.get("accept", ""), s.block_page)

    def _no_verdict(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, cause: str, detail: str,
                    streamed: bool) -> None:
        s = active.plugin.config
        if cause == "breaker_open":
            # One line per interval, not per request: the breaker opening was already logged.
            now = time.monotonic()
            if now - self._last_breaker_log >= BREAKER_LOG_INTERVAL_S:
                self._last_breaker_log = now
                log.warning("[%s] node unavailable (circuit breaker open): requests are %s without a verdict",
                            rid, "forwarded" if s.fail_open else "refused")
        else:
            log.warning("[%s] no verdict for %s %s (%s): %s", rid, flow.request.method,
                        flow.request.path[:200], detail, "forwarding (fail-open)" if s.fail_open
                        else "refusing with 503 (fail_open=false)")
        if s.fail_open:
            self.metrics.fail_open[cause] += 1
            return
        self.metrics.fail_closed[cause] += 1
        flow.metadata[REFUSED] = True
        if streamed:
            flow.kill()
            return
        flow.response = block_response(503, rid, flow.request.headers.get("accept", ""), None,
                                       message="security check unavailable")

    # ------------------------------------------------------------------ out-of-band delivery
    def _count_drop(self) -> None:
        self.metrics.mirror_dropped += 1

    async def _deliver(self, items: list[MirrorItem]) -> None:
        """Send a backlog; consecutive messages of the same config share one pipelined write."""
        start = 0
        while start < len(items):
            active = items[start].active
            end = start + 1
            while end < len(items) and items[end].active is active:
                end += 1
            await self._deliver_group(active, items[start:end])
            start = end

    async def _deliver_group(self, active: ActiveConfig, items: list[MirrorItem]) -> None:
        # Pipelined messages are answered one after the other: each gets its own allowance.
        timeout_s = active.plugin.config.mirror_timeout_ms / 1000 * len(items)
        started = time.perf_counter()
        try:
            if len(items) == 1:
                answers = [await active.client.send(items[0].head, items[0].body, timeout_s)]
            else:
                answers = await active.client.send_many([(i.head, i.body) for i in items], timeout_s)
        except NodeCallError as e:
            self.metrics.mirror_failed[e.cause] += len(items)
            if e.cause != "breaker_open":
                log.warning("[%s] mirror to node failed (%d message(s)): %s", items[0].request_id, len(items), e)
            return
        finally:
            self.metrics.node_latency["async"].observe(time.perf_counter() - started)
        for item, answer in zip(items, answers):
            if answer.status in (protocol.STATUS_PASS, protocol.STATUS_BLOCK):
                self.metrics.mirror_sent += 1
            else:
                self.metrics.mirror_failed["status"] += 1
                log.warning("[%s] mirror: node answered HTTP %d", item.request_id, answer.status)


def mirror_linger_s(settings: PluginSettings) -> float:
    """In-line mode mirrors only responses, and lingering for a batch saves a node wake-up per
    request at low rates; out-of-band, the backlog batches by itself under load, and lingering
    cost throughput at c=50 (docs/decisions.md)."""
    if settings.mirror_linger_ms is not None:
        return settings.mirror_linger_ms / 1000
    return DEFAULT_INLINE_LINGER_S if settings.blocking else 0.0


def _has_no_body(req: http.Request) -> bool:
    """An HTTP/1 request whose framing says it has no body (RFC 9112 6.3: no Content-Length and
    no Transfer-Encoding means none). HTTP/2 and 3 say it in frames mitmproxy does not expose here."""
    if req.is_http2 or req.is_http3 or "transfer-encoding" in req.headers:
        return False
    return req.headers.get("content-length", "0").strip() == "0"


def _wire_version(version: str) -> str:
    return version if version.startswith("HTTP/") else "HTTP/1.1"
