"""The detection engine: parse, normalise, match, judge, score. See docs/detection.md.

Per request: the parser yields (location, value) fields; a value made only of harmless
characters is skipped; the rest are decoded into their variants, which one hyperscan scan
per value matches against all signatures at once. Signature hits either score directly or
call a structural detector (SQL, shell, Log4j) on that value. Scores add up per value and
attack type; the request's score is the highest of those sums.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

from addon.protocol import AttackInfo, RequestMessage, ResponseMessage
from node.detect import decode
from node.detect.findings import DEFAULT_THRESHOLD, Detection, excerpt
from node.detect.log4j import detect_log4j
from node.detect.request import Field, extract, inflate
from node.detect.shell import detect_shell
from node.detect.signatures import SignatureSet, load_signatures
from node.detect.sqli import detect_sqli

__all__ = ["Engine", "Detection"]

log = logging.getLogger(__name__)

MAX_RESPONSE_SCAN = 64 * 1024
# values made only of these characters cannot carry an attack (and are most of the traffic)
_SAFE_RE = re.compile(r"[\w\-.]*")
_DETECTORS: dict[str, Callable[[str, str], str | None]] = {
    "sqli": detect_sqli,
    "shell": detect_shell,
    "log4j": detect_log4j,
}


def _to_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


class Engine:
    """Thread-safe after construction (each thread gets its own hyperscan scratch)."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self.request_sigs = SignatureSet(load_signatures("request.yaml"))
        self.response_sigs = SignatureSet(load_signatures("response.yaml"))
        self._owner = threading.get_ident()
        log.info("detection engine: %d request and %d response signatures",
                 len(self.request_sigs.signatures), len(self.response_sigs.signatures))

    # ------------------------------------------------------------------ requests

    def analyze_request(self, msg: RequestMessage) -> Detection:
        try:
            sink = extract(msg)
        except Exception:  # the parser must never take the node down: judge what we can
            log.exception("request parser failed; judging the raw target only")
            sink = None
        fields = sink.fields if sink else [Field("path", msg.target, "path")]
        return self._judge_fields(fields)

    def analyze_value(self, value: str, location: str = "query.x", kind: str = "query") -> Detection:
        """Judge one value (tests, tools)."""
        return self._judge_fields([Field(location, value, kind)])

    def _judge_fields(self, fields: list[Field]) -> Detection:
        det = Detection(threshold=self.threshold)
        sigs = self.request_sigs.signatures
        seen: set[tuple[str, str]] = set()
        for f in fields:
            value = f.value
            if _SAFE_RE.fullmatch(value) and ".." not in value:
                if len(value) < 12:
                    continue
                forms = decode.variants(value)
                if len(forms) == 1:
                    continue
            else:
                forms = decode.variants(value)
            key = (f.kind, value)
            if key in seen:  # same value twice (e.g. a header repeated): judge once
                continue
            seen.add(key)
            hits = self.request_sigs.scan(_to_bytes("\n" + "\n".join(forms) + "\n"))
            if not hits:
                continue
            self._score_field(f, forms, hits, sigs, det)
        return det

    def _score_field(self, f: Field, forms: list[str], hits: set[int], sigs, det: Detection) -> None:
        by_type: dict[str, list[tuple[int, AttackInfo]]] = {}
        for idx in sorted(hits):
            sig = sigs[idx]
            if not sig.applies_to(f.kind, f.location):
                continue
            rule_id = sig.id
            if sig.detector:
                judge = _DETECTORS[sig.detector]
                rule = None
                for form in forms:
                    rule = judge(form, f.kind)
                    if rule:
                        break
                if not rule:
                    continue
                rule_id = f"{sig.id}.{rule}"
            info = AttackInfo(sig.type, f.location, rule_id, excerpt(forms[-1] if len(forms) > 1 else f.value), sig.score)
            by_type.setdefault(sig.type, []).append((sig.score, info))
        for typ, found in by_type.items():
            total = sum(s for s, _ in found)
            if total > det.score:
                det.score = total
            if total >= self.threshold:
                det.attacks.extend(info for _, info in found)

    # ------------------------------------------------------------------ responses

    def analyze_response(self, msg: ResponseMessage) -> Detection:
        det = Detection(threshold=self.threshold)
        body = msg.body
        if not body:
            return det
        enc = msg.header("content-encoding")
        if enc:
            body = inflate(body, enc) or b""
        hits = self.response_sigs.scan(body[:MAX_RESPONSE_SCAN])
        for idx in sorted(hits):
            sig = self.response_sigs.signatures[idx]
            det.attacks.append(AttackInfo(sig.type, "response.body", sig.id, "", sig.score))
            det.score = max(det.score, sig.score)
        return det
