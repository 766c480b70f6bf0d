"""The connector endpoint: wire protocol v1 in, a verdict out.

Every POST, on any path, is one message. The steps are cheap checks first (secret, request id,
content type, size) so that junk costs little, then decoding, then policy and detection. Any
input the node cannot use gets a 4xx with a JSON `{"error": reason}`; nothing a client sends
can crash the handler or be recorded as an attack by mistake.

The HTTP side is `node/http1server.py`: it hands over complete messages and this module answers
them. A message up to LANE_MIN_BYTES is judged inline on the event loop: the engine bounds its
own time per message (a few ms at worst), which is cheaper than a thread hop per request. A
larger one is judged in the large-message lane (`JudgingLane`: one worker thread with its own
engine, since an engine is not for concurrent use) and answered when done, so that while it is
judged the loop keeps answering the small ones. Only the pure part (the engine, on a decoded
message) leaves the loop; checks, policy, pairing, metrics and the store stay on it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wallarm_wire.protocol import (
    H_BODY_TRUNCATED,
    H_FORWARDED_FOR,
    H_FORWARDED_HOST,
    H_INSTANCE,
    H_DELIVERY,
    H_REQUEST_ID,
    H_SECRET,
    DELIVERY_ASYNC,
    DELIVERY_SYNC,
    MSGTYPE_RESPONSE,
    ProtocolError,
    RequestMessage,
    ResponseMessage,
    Verdict,
    decode_request,
    decode_response,
    is_valid_request_id,
    msgtype_of,
)
from node.context import NodeContext
from node.http1server import BadRequest, Incoming, Outgoing, error_body
from node.masking import mask_hits, request_excerpt
from node.pairing import Pairing, RequestSeen, ResponseSeen
from node.policy import Policy, canonical_ip
from node.rules.paths import normalise_path
from node.rules.modes import PartialAction, normalise_host
from node.settings import NodeSettings
from node.store.base import PARTIAL_TYPE, AttackRecord, ExceptedHit, Hit

log = logging.getLogger(__name__)

MAX_STORED_PATH = 2048
# embedded messages over this many bytes are judged in the large-message lane, off the loop
LANE_MIN_BYTES = 64 * 1024
REFUSAL_LOG_INTERVAL = 10.0  # seconds between INFO lines about refused messages of one kind
_NO_HITS: list[Hit] = []
_NO_EXCEPTED: list[ExceptedHit] = []
_NO_REASONS: list[str] = []
# Incoming.headers has lower-cased names.
_SECRET, _REQUEST_ID, _DELIVERY = H_SECRET.lower(), H_REQUEST_ID.lower(), H_DELIVERY.lower()
_BODY_TRUNCATED = H_BODY_TRUNCATED.lower()
_FORWARDED_FOR, _FORWARDED_HOST, _INSTANCE = H_FORWARDED_FOR.lower(), H_FORWARDED_HOST.lower(), H_INSTANCE.lower()
# HTTP-level refusals by the server (before a message reaches the endpoint), as metric kinds.
_HTTP_REFUSAL_KINDS = {413: "too_large", 408: "timeout"}


class MessageRefused(Exception):
    """A message answered with a 4xx; `kind` labels the parse-error metric."""

    def __init__(self, status: int, kind: str, reason: str):
        super().__init__(reason)
        self.status, self.kind, self.reason = status, kind, reason


class JudgingLane:
    """One worker thread with its own engine, for large messages (built in that thread at
    start, so the node does not wait for it; the first large message may)."""

    def __init__(self, make_engine: Callable[[], Any]):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="judge-large")
        self._engine = self._pool.submit(make_engine)

    def analyze(self, method: str, msg: RequestMessage | ResponseMessage, *args: Any) -> asyncio.Future[Any]:
        """`engine.<method>(msg, *args)` in the lane's thread."""
        return asyncio.get_running_loop().run_in_executor(self._pool, self._call, method, msg, *args)

    def _call(self, method: str, msg: RequestMessage | ResponseMessage, *args: Any) -> Any:
        return getattr(self._engine.result(), method)(msg, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(slots=True)
class _Message:
    """A decoded message that passed the checks, waiting for (or back from) the engine."""

    request_id: str
    msg: RequestMessage | ResponseMessage
    delivery: str
    client_ip: str
    instance: str
    host: str = ""
    path: str = ""  # normalised (node/rules/paths.py): what overrides and exceptions match
    mode: str = ""
    body_limit: int | None = None  # body bytes inspected (a host/path override), None: the engine's
    partial_inspection: PartialAction = "block"  # what a partial inspection counts as here
    body_cut: bool = False  # the connector cut (or streamed) the body: X-Wallarm-Body-Truncated


_LIVE_BODY = b'{"status":"live"}'


def _error(status: int, reason: str) -> Outgoing:
    return Outgoing(status, error_body(reason))


def endpoint_ssl_context(settings: NodeSettings) -> ssl.SSLContext | None:
    """The endpoint's TLS from the settings: PEM text if given, else the files; None = plain."""
    if settings.tls_cert_pem and settings.tls_key_pem:
        # ssl loads a chain only from files: written to a private folder, loaded, removed at once
        with tempfile.TemporaryDirectory(prefix="wallarm-tls-") as folder:
            cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            for path, text in ((cert, settings.tls_cert_pem), (key, settings.tls_key_pem)):
                path.touch(mode=0o600)
                path.write_text(text)
            return make_ssl_context(cert, key)
    if settings.tls_cert and settings.tls_key:
        return make_ssl_context(settings.tls_cert, settings.tls_key)
    return None


def make_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot load TLS certificate {cert} / key {key}: {e}") from e
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _client_ip(incoming: Incoming) -> str:
    value = incoming.headers.get(_FORWARDED_FOR)
    if value is None:
        return incoming.peer
    first = value.split(",", 1)[0].strip()
    ip = canonical_ip(first)
    if ip is None:
        raise MessageRefused(400, "client_ip", f"invalid {H_FORWARDED_FOR} {first[:60]!r}: not an IP address")
    return ip


def _check_length(msg: RequestMessage | ResponseMessage) -> None:
    # The connector rewrites the embedded Content-Length to the body it sends: a mismatch
    # means the message was cut in transit.
    declared = msg.header("content-length")
    if declared is None:
        return
    # ASCII digits only: str.strip and isdigit took "\x1f17" and "²", which int() refuses (a 500; tests/fuzz)
    if not (declared.isascii() and declared.isdigit()):
        raise MessageRefused(400, "protocol", f"embedded Content-Length {declared[:20]!r} is not a number")
    if int(declared) != len(msg.body):
        raise MessageRefused(400, "truncated",
                             f"truncated message: embedded Content-Length is {int(declared)}, body has {len(msg.body)} bytes")


class Endpoint:
    def __init__(self, ctx: NodeContext, pairing: Pairing, lane: JudgingLane | None = None):
        self.ctx = ctx
        self.lane = lane
        self.settings = ctx.settings
        self.policy: Policy = ctx.policy
        self.engine = ctx.engine
        self.store = ctx.store
        self._events = ctx.events
        self.metrics = ctx.metrics
        self.pairing = pairing
        self.apply_settings(ctx.settings)
        self._last_refusal_log: dict[str, float] = {}

    def apply_settings(self, settings: NodeSettings) -> None:
        """The settings the endpoint reads per message (at start, and on a config reload)."""
        self.settings = settings
        self._secret = (settings.shared_secret or "").encode()
        self._instance = settings.node_name

    def respond(self, incoming: Incoming) -> Outgoing | asyncio.Future[Outgoing]:
        """The server's handler: one complete message in, the answer out (later, for a large one)."""
        if incoming.method == "GET" and incoming.target.partition("?")[0].endswith("/live"):
            # The connector's breaker asks this before it gives up on a node that stays silent
            # on one message: answered on the loop, so an answer means the node is serving.
            return Outgoing(200, _LIVE_BODY)
        try:
            m = self._prepare(incoming)
        except MessageRefused as e:
            self._count_refusal(e)
            return _error(e.status, e.reason)
        if self.lane is not None and len(incoming.body) > LANE_MIN_BYTES and m.mode != "off":
            return asyncio.ensure_future(self._judge_in_lane(m))
        started = time.perf_counter()
        try:
            if isinstance(m.msg, ResponseMessage):
                detection = self.engine.analyze_response(m.msg)
            else:
                detection = self.engine.analyze_request(m.msg, m.body_limit) if m.mode != "off" else None
        except Exception:  # noqa: BLE001 - one bad message must not take the node down
            return self._analysis_failed(m)
        return self._conclude(m, detection, time.perf_counter() - started)

    async def _judge_in_lane(self, m: _Message) -> Outgoing:
        assert self.lane is not None
        started = time.perf_counter()
        try:
            if isinstance(m.msg, ResponseMessage):
                detection = await self.lane.analyze("analyze_response", m.msg)
            else:
                detection = await self.lane.analyze("analyze_request", m.msg, m.body_limit)
        except Exception:  # noqa: BLE001
            return self._analysis_failed(m)
        return self._conclude(m, detection, time.perf_counter() - started)

    def _analysis_failed(self, m: _Message) -> Outgoing:
        self.metrics.analysis_errors.inc()
        log.exception("analysis failed for request id %s", m.request_id)
        return _error(500, "analysis failed; see the node log")

    def on_bad_request(self, e: BadRequest) -> None:
        """What the HTTP server refused before a message was complete (size, framing, time)."""
        self._count_refusal(MessageRefused(e.status, _HTTP_REFUSAL_KINDS.get(e.status, "http"), e.reason))

    def _count_refusal(self, e: MessageRefused) -> None:
        # A flood of junk must not flood the log: one line per kind per interval, the count is
        # in /metrics (wallarm_node_parse_errors_total).
        self.metrics.parse_errors.inc(e.kind)
        now = time.monotonic()
        if now - self._last_refusal_log.get(e.kind, -REFUSAL_LOG_INTERVAL) >= REFUSAL_LOG_INTERVAL:
            self._last_refusal_log[e.kind] = now
            log.info("refused message (%s, HTTP %d): %s", e.kind, e.status, e.reason)
        else:
            log.debug("refused message (%s, HTTP %d): %s", e.kind, e.status, e.reason)

    def _prepare(self, incoming: Incoming) -> _Message:
        """The cheap checks and the decoding; raises MessageRefused."""
        if incoming.method != "POST":
            raise MessageRefused(405, "method", f"method {incoming.method} not allowed: POST protocol v1 messages")
        headers = incoming.headers
        if self._secret and not hmac.compare_digest(headers.get(_SECRET, "").encode(), self._secret):
            raise MessageRefused(401, "secret", f"missing or wrong {H_SECRET}")
        request_id = headers.get(_REQUEST_ID)
        if not is_valid_request_id(request_id):
            shown = "missing" if request_id is None else f"invalid ({request_id[:40]!r})"
            raise MessageRefused(400, "request_id", f"{H_REQUEST_ID} {shown}: want 32 lowercase hex characters")
        assert request_id is not None
        delivery = headers.get(_DELIVERY, DELIVERY_SYNC).strip().lower()
        if delivery not in (DELIVERY_SYNC, DELIVERY_ASYNC):
            raise MessageRefused(400, "protocol", f"{H_DELIVERY} must be sync or async, got {delivery[:20]!r}")
        try:
            msgtype = msgtype_of(headers.get("content-type"))
        except ProtocolError as e:
            raise MessageRefused(415, "content_type", str(e)) from None
        client_ip = _client_ip(incoming)
        try:
            msg = decode_response(incoming.body) if msgtype == MSGTYPE_RESPONSE else decode_request(incoming.body)
        except ProtocolError as e:
            raise MessageRefused(400, "protocol", str(e)) from None
        _check_length(msg)
        self.metrics.messages.inc(msgtype, delivery)
        m = _Message(request_id, msg, delivery, client_ip, headers.get(_INSTANCE, "")[:200])
        if isinstance(msg, RequestMessage):
            m.host = normalise_host(headers.get(_FORWARDED_HOST) or msg.header("host"))
            m.path = normalise_path(msg.target)
            rules = self.policy.rules_for(m.host, m.path)
            m.mode, m.body_limit, m.partial_inspection = rules.mode, rules.max_body_bytes, rules.partial_inspection
            # the connector cut the body (or streamed it): what it did not send is not inspected
            m.body_cut = _BODY_TRUNCATED in headers
        return m

    def _conclude(self, m: _Message, detection: Any, seconds: float) -> Outgoing:
        """Policy, pairing, store and metrics for a judged message (on the loop)."""
        try:
            hits = self._hits(detection, seconds)
            if isinstance(m.msg, ResponseMessage):
                self._count_attacks(hits)
                verdict = self._on_response(m.request_id, m.msg, hits)
            else:
                # exceptions apply after detection, so the engine and its caches never depend on them
                hits, excepted = self.policy.except_hits(m.host, m.path, hits, detection.threshold) if hits \
                    else (hits, _NO_EXCEPTED)
                self._count_attacks(hits)
                verdict = self._on_request(m, m.msg, hits, self._partial(m, detection), excepted)
        except Exception:  # noqa: BLE001 - one bad message must not take the node down
            return self._analysis_failed(m)
        self.metrics.verdicts.inc(verdict.action, verdict.reason or "benign")
        return Outgoing(verdict.status, verdict.to_json())

    # -- requests: decide (sync) or only record (async)
    def _on_request(self, m: _Message, msg: RequestMessage, hits: list[Hit], partial: list[str],
                    excepted: list[ExceptedHit]) -> Verdict:
        request_id, client_ip, host, mode, instance = m.request_id, m.client_ip, m.host, m.mode, m.instance
        sync = m.delivery == DELIVERY_SYNC
        lists = self.policy.lists_for(client_ip) if mode != "off" else frozenset()
        decision = self.policy.decide(mode, lists, bool(hits), sync, bool(partial), m.partial_inspection)
        verdict_reason = decision.reason
        if excepted and not hits and not decision.block:
            # every finding excepted and nothing else holds it back: an exception let it through
            self.metrics.excepted.inc()
            self.policy.count_excepted(excepted)
            verdict_reason = verdict_reason or "excepted"
        raw_path = msg.target.split("?", 1)[0][:MAX_STORED_PATH]
        masked = mask_hits(hits) if hits else _NO_HITS
        # The pairing table keeps this summary for up to its TTL: no excerpt in it (memory).
        seen = RequestSeen(time.time(), client_ip, host, msg.method, raw_path, mode, instance, decision.record)
        earlier = self.pairing.request_seen(request_id, seen)
        response_hits = earlier.hits if earlier is not None and mode != "off" else _NO_HITS
        if decision.record or response_hits:
            if decision.reason == "denylist":
                reason = "denylist"
            else:
                reason = "attack" if hits or response_hits or not partial else "partial"
            # a partial inspection is stored as findings of its own type, one per reason
            partial_hits = [Hit(PARTIAL_TYPE, "request", f"partial.{r}", "", 0) for r in partial]
            kept = [ExceptedHit(h, e.exception_id) for h, e in zip(mask_hits([e.hit for e in excepted]), excepted)]
            self._record(request_id, seen, masked + partial_hits + response_hits, decision.stored_action, reason,
                         earlier.status if earlier is not None else None, request_excerpt(msg), kept)
        return Verdict(request_id, "block" if decision.block else "pass", mode, masked, verdict_reason, partial)

    def _partial(self, m: _Message, detection: Any) -> list[str]:
        """Why the request's inspection was partial (empty: judged whole, or mode off)."""
        if detection is None:
            return _NO_REASONS
        if m.body_cut:
            detection.mark_partial("body")
        for reason in detection.partial:
            self.metrics.partial.inc(reason)
        return detection.partial or _NO_REASONS

    # -- responses: analysed, joined with their request, never blocked
    def _on_response(self, request_id: str, msg: ResponseMessage, hits: list[Hit]) -> Verdict:
        masked = mask_hits(hits) if hits else _NO_HITS
        earlier = self.pairing.response_seen(request_id, ResponseSeen(msg.status, masked))
        if earlier is not None:
            self.metrics.pairing_joined.inc()
            if earlier.recorded:
                self.store.set_response_status(request_id, msg.status)
            if masked and earlier.mode != "off":
                self._record(request_id, earlier, masked, "monitored", "attack", msg.status)
        return Verdict(request_id, "pass", earlier.mode if earlier else "", masked, "response")

    def _hits(self, detection: Any, seconds: float) -> list[Hit]:
        if detection is None:  # mode off: not judged
            return _NO_HITS
        self.metrics.analysis.observe(seconds)
        if not detection.is_attack:
            return _NO_HITS
        return list(detection.attacks)

    def _count_attacks(self, hits: list[Hit]) -> None:
        for hit in hits:
            self.metrics.attacks.inc(hit.type)

    def _record(self, request_id: str, seen: RequestSeen, hits: list[Hit], action: str, reason: str,
                response_status: int | None, excerpt: str = "", excepted: list[ExceptedHit] = _NO_EXCEPTED) -> None:
        record = AttackRecord(
            time=seen.time, request_id=request_id, client_ip=seen.client_ip, host=seen.host,
            method=seen.method, path=seen.path, hits=hits, action=action,  # type: ignore[arg-type]
            mode=seen.mode, instance=seen.instance, node_instance=self._instance,
            response_status=response_status, request_excerpt=excerpt, reason=reason, excepted=excepted,
        )
        self.store.add_attack(record)
        self.metrics.recorded.inc(action)
        if self._events is not None:
            self._events.publish(record)
