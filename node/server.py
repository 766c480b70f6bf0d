"""The connector endpoint: wire protocol v1 in, a verdict out.

Every POST, on any path, is one message. The steps are cheap checks first (secret, request id,
content type, size) so that junk costs little, then decoding, then policy and detection. Any
input the node cannot use gets a 4xx with a JSON `{"error": reason}`; nothing a client sends
can crash the handler or be recorded as an attack by mistake.

The HTTP side is `node/http1server.py`: it hands over complete messages and this module answers
them synchronously. Analysis runs inline on the event loop: the engine bounds its own time per
message (a few ms at worst), which is cheaper than a thread hop per request.
"""

from __future__ import annotations

import hmac
import logging
import ssl
import time
from pathlib import Path

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
from node.detect.findings import Detection
from node.policy import Policy, Rules, canonical_ip, normalise_path
from node.rules.modes import normalise_host
from node.store.base import PARTIAL_TYPE, AttackRecord, Hit

log = logging.getLogger(__name__)

MAX_STORED_PATH = 2048
REFUSAL_LOG_INTERVAL = 10.0  # seconds between INFO lines about refused messages of one kind
_NO_HITS: list[Hit] = []
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


def _error(status: int, reason: str) -> Outgoing:
    return Outgoing(status, error_body(reason))


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
    if not declared.strip().isdigit():
        raise MessageRefused(400, "protocol", f"embedded Content-Length {declared[:20]!r} is not a number")
    if int(declared) != len(msg.body):
        raise MessageRefused(400, "truncated",
                             f"truncated message: embedded Content-Length is {int(declared)}, body has {len(msg.body)} bytes")


class Endpoint:
    def __init__(self, ctx: NodeContext, pairing: Pairing):
        self.ctx = ctx
        self.settings = ctx.settings
        self.policy: Policy = ctx.policy
        self.engine = ctx.engine
        self.store = ctx.store
        self.metrics = ctx.metrics
        self.pairing = pairing
        self._secret = (self.settings.shared_secret or "").encode()
        self._instance = self.settings.instance
        self._last_refusal_log: dict[str, float] = {}

    def respond(self, incoming: Incoming) -> Outgoing:
        """The server's handler: one complete message in, the answer out."""
        try:
            return self._handle(incoming)
        except MessageRefused as e:
            self._count_refusal(e)
            return _error(e.status, e.reason)

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

    def _handle(self, incoming: Incoming) -> Outgoing:
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
        sync = delivery == DELIVERY_SYNC
        self.metrics.messages.inc(msgtype, delivery)
        instance = headers.get(_INSTANCE, "")[:200]
        try:
            if isinstance(msg, ResponseMessage):
                verdict = self._on_response(request_id, msg)
            else:
                host = normalise_host(headers.get(_FORWARDED_HOST) or msg.header("host"))
                # the connector cut the body (or streamed it): what it did not send is not inspected
                cut = _BODY_TRUNCATED in headers
                verdict = self._on_request(request_id, msg, client_ip, host, sync, instance, cut)
        except Exception:  # noqa: BLE001 - one bad message must not take the node down
            self.metrics.analysis_errors.inc()
            log.exception("analysis failed for request id %s", request_id)
            return _error(500, "analysis failed; see the node log")
        self.metrics.verdicts.inc(verdict.action, verdict.reason or "benign")
        return Outgoing(verdict.status, verdict.to_json())

    # -- requests: decide (sync) or only record (async)
    def _on_request(self, request_id: str, msg: RequestMessage, client_ip: str, host: str,
                    sync: bool, instance: str, body_cut: bool = False) -> Verdict:
        path = normalise_path(msg.target)
        rules = self.policy.rules_for(host, path)
        mode = rules.mode
        hits, partial = _NO_HITS, _NO_REASONS
        lists = frozenset()
        if mode != "off":
            lists = self.policy.lists_for(client_ip)
            hits, partial = self._inspect_request(msg, rules, body_cut)
        decision = self.policy.decide(mode, lists, bool(hits), sync, bool(partial), rules.partial_inspection)
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
            self._record(request_id, seen, masked + partial_hits + response_hits, decision.stored_action, reason,
                         earlier.status if earlier is not None else None, request_excerpt(msg))
        return Verdict(request_id, "block" if decision.block else "pass", mode, masked, decision.reason, partial)

    def _inspect_request(self, msg: RequestMessage, rules: Rules, body_cut: bool) -> tuple[list[Hit], list[str]]:
        """The request's findings, and why its inspection was partial (empty: judged whole)."""
        detection = self._timed(self.engine.analyze_request, msg, rules.max_body_bytes)
        if body_cut:
            detection.mark_partial("body")
        for reason in detection.partial:
            self.metrics.partial.inc(reason)
        return self._hits(detection), detection.partial or _NO_REASONS

    # -- responses: analysed, joined with their request, never blocked
    def _on_response(self, request_id: str, msg: ResponseMessage) -> Verdict:
        hits = self._hits(self._timed(self.engine.analyze_response, msg))
        masked = mask_hits(hits) if hits else _NO_HITS
        earlier = self.pairing.response_seen(request_id, ResponseSeen(msg.status, masked))
        if earlier is not None:
            self.metrics.pairing_joined.inc()
            if earlier.recorded:
                self.store.set_response_status(request_id, msg.status)
            if masked and earlier.mode != "off":
                self._record(request_id, earlier, masked, "monitored", "attack", msg.status)
        return Verdict(request_id, "pass", earlier.mode if earlier else "", masked, "response")

    def _timed(self, analyze, *args) -> Detection:  # noqa: ANN001
        started = time.perf_counter()
        detection = analyze(*args)
        self.metrics.analysis.observe(time.perf_counter() - started)
        return detection

    def _hits(self, detection: Detection) -> list[Hit]:
        if not detection.is_attack:
            return _NO_HITS
        for hit in detection.attacks:
            self.metrics.attacks.inc(hit.type)
        return list(detection.attacks)

    def _record(self, request_id: str, seen: RequestSeen, hits: list[Hit], action: str, reason: str,
                response_status: int | None, excerpt: str = "") -> None:
        record = AttackRecord(
            time=seen.time, request_id=request_id, client_ip=seen.client_ip, host=seen.host,
            method=seen.method, path=seen.path, hits=hits, action=action,  # type: ignore[arg-type]
            mode=seen.mode, instance=seen.instance, node_instance=self._instance,
            response_status=response_status, request_excerpt=excerpt, reason=reason,
        )
        self.store.add_attack(record)
        self.metrics.recorded.inc(action)
