"""What the node's answer (or its absence) does to an in-line flow; every outcome counted and logged.

* 200 / 403 with a verdict: pass, or block (the block answer; a streaming flow is killed). A 403
  whose body cannot be read still blocks: the status is the verdict, the body only explains it.
* Another 4xx: the node is up and refuses the message ("I cannot read this"). Never forwarded:
  the client gets the node's status when it describes the client's message (400, 413, 414, 431),
  503 otherwise (a refusal of the connector itself: secret, method, content type, ...).
* No verdict because the node cannot be reached or did not answer usefully (timeout, connection
  or TLS error, 5xx, an unreadable answer, breaker open): fail-open (forward) or, with
  `fail_open: false`, 503.
"""

from __future__ import annotations

import json
import logging
import time

from mitmproxy import http

from addon.active import ActiveConfig
from addon.blockpage import block_response
from addon.encode import client_ip
from addon.http1 import Answer
from addon.metrics import Metrics
from addon.node_client import NodeCallError
from wallarm_wire import protocol

log = logging.getLogger("wallarm")

BLOCKED = "wallarm_blocked"  # flow.metadata keys
UNJUDGED = "wallarm_refused"  # the connector answered without a verdict: nothing for the node to pair

BREAKER_LOG_INTERVAL_S = 5.0
# Refusals that describe the client's own message: the client gets the node's status.
REFUSALS_ANSWERED_AS_IS = frozenset({400, 413, 414, 431})
REFUSAL_STATUS_OTHERWISE = 503

VERDICT, REFUSAL, SERVER_ERROR, BAD_STATUS = "verdict", "refusal", "5xx", "bad_status"


def status_kind(status: int) -> str:
    """How a node status reads: VERDICT (200/403), REFUSAL (other 4xx), SERVER_ERROR, BAD_STATUS."""
    if status in (protocol.STATUS_PASS, protocol.STATUS_BLOCK):
        return VERDICT
    if 400 <= status < 500:
        return REFUSAL
    return SERVER_ERROR if status >= 500 else BAD_STATUS


def refusal_reason(answer: Answer) -> str:
    """The node's `{"error": reason}`, or the start of whatever it sent, for the log."""
    try:
        reason = json.loads(answer.body)["error"]
    except (ValueError, KeyError, TypeError):
        reason = answer.body[:200].decode("utf-8", "replace")
    return str(reason)[:200] or "-"


class Verdicts:
    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self._last_breaker_log = 0.0

    def settle(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, outcome: Answer | NodeCallError,
               streamed: bool) -> None:
        if isinstance(outcome, NodeCallError):
            self._no_verdict(flow, active, rid, outcome.cause, str(outcome), streamed)
            return
        kind = status_kind(outcome.status)
        if kind == REFUSAL:
            self._refused(flow, rid, outcome, streamed)
        elif kind == VERDICT:
            self._verdict(flow, active, rid, outcome, streamed)
        else:
            self._no_verdict(flow, active, rid, kind, f"{kind}: node answered HTTP {outcome.status}", streamed)

    def _verdict(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, answer: Answer, streamed: bool) -> None:
        if answer.status == protocol.STATUS_PASS:
            try:
                protocol.Verdict.action_of(answer.body)  # the status is the verdict; the body must be one
            except protocol.ProtocolError as e:
                self._no_verdict(flow, active, rid, "bad_verdict", f"bad_verdict: {e}", streamed)
                return
            self.metrics.passed += 1
            return
        try:
            verdict: protocol.Verdict | None = protocol.Verdict.from_json(answer.body)
        except protocol.ProtocolError:
            verdict = None  # a block status with an unreadable body still blocks
        self.metrics.blocked += 1
        flow.metadata[BLOCKED] = True
        if verdict is None:
            attacks = "verdict body unreadable, blocked on the status"
        else:
            attacks = ", ".join(f"{a.type}@{a.location}" for a in verdict.attacks) or verdict.reason or "-"
        log.info("[%s] blocked %s %s from %s: %s", rid, flow.request.method, flow.request.path[:200],
                 client_ip(flow, active.trusted), attacks)
        if streamed:
            self.metrics.killed_streams += 1
            flow.kill()  # mitmproxy cannot answer a request whose body is already streaming
            return
        flow.response = block_response(active.block_status, rid, flow.request.headers.get("accept", ""),
                                       active.block_page)

    def _refused(self, flow: http.HTTPFlow, rid: str, answer: Answer, streamed: bool) -> None:
        status = answer.status
        self.metrics.node_refusals[(str(status), protocol.DELIVERY_SYNC)] += 1
        flow.metadata[UNJUDGED] = True
        answered = status if status in REFUSALS_ANSWERED_AS_IS else REFUSAL_STATUS_OTHERWISE
        log.warning("[%s] the node refused %s %s (HTTP %d: %s): %s, not forwarded", rid, flow.request.method,
                    flow.request.path[:200], status, refusal_reason(answer),
                    "stream killed" if streamed else f"answering {answered}")
        if streamed:
            flow.kill()
            return
        flow.response = block_response(answered, rid, flow.request.headers.get("accept", ""), None,
                                       message="the security check cannot read this request")

    def _no_verdict(self, flow: http.HTTPFlow, active: ActiveConfig, rid: str, cause: str, detail: str,
                    streamed: bool) -> None:
        """`detail` starts with `cause:` (as a NodeCallError's text does), so each log line names the
        metric label it was counted under."""
        if cause == "breaker_open":
            # One line per interval, not per request: the breaker opening was already logged.
            now = time.monotonic()
            if now - self._last_breaker_log >= BREAKER_LOG_INTERVAL_S:
                self._last_breaker_log = now
                log.warning("[%s] node unavailable (circuit breaker open): requests are %s without a verdict",
                            rid, "forwarded" if active.fail_open else "refused")
        else:
            log.warning("[%s] no verdict for %s %s (%s): %s", rid, flow.request.method,
                        flow.request.path[:200], detail, "forwarding (fail-open)" if active.fail_open
                        else "refusing with 503 (fail_open=false)")
        if active.fail_open:
            self.metrics.fail_open[cause] += 1
            return
        self.metrics.fail_closed[cause] += 1
        flow.metadata[UNJUDGED] = True
        if streamed:
            flow.kill()
            return
        flow.response = block_response(503, rid, flow.request.headers.get("accept", ""), None,
                                       message="security check unavailable")
