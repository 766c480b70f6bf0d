"""The result type of the engine, shared by every detector."""

from __future__ import annotations

from dataclasses import dataclass, field

from wallarm_wire.protocol import AttackInfo

# A request is an attack when one location's combined score reaches this; a strong
# signature scores it alone, weak signals (score < threshold) must agree within one value.
DEFAULT_THRESHOLD = 10
MAX_EXCERPT = 120

# Why a request was only partly inspected: a limit ended its inspection early. The policy,
# not the engine, decides what a partial verdict means (node setting `partial_inspection`).
PARTIAL_REASONS = (
    "fields",    # more fields than MAX_FIELDS: the rest were not judged
    "value",     # a value (the request target) longer than the parser reads
    "body",      # a body over max_body (cut by the node, or by the connector before it)
    "inflated",  # a compressed body that decompresses past its bound
    "depth",     # JSON nested deeper than MAX_JSON_DEPTH
    "budget",    # structural detector work per request spent: a later hit went unverified
                 # (detector runs), or nothing more was judged (a glob flood: shell.py)
    "deadline",  # the per-request CPU time bound: later values were not judged
    "decode",    # a value's readings reached a decoding bound (layers, rounds, readings, work)
    "error",     # the parser failed: only the raw target was judged
)


@dataclass(slots=True)
class Detection:
    attacks: list[AttackInfo] = field(default_factory=list)
    score: int = 0
    threshold: int = DEFAULT_THRESHOLD
    # PARTIAL_REASONS met while judging this request, in the order met; empty = judged whole
    partial: list[str] = field(default_factory=list)

    @property
    def is_attack(self) -> bool:
        return self.score >= self.threshold

    def mark_partial(self, reason: str) -> None:
        if reason not in self.partial:
            self.partial.append(reason)


def excerpt(value: str, start: int = 0) -> str:
    """A printable slice of `value` around `start`, at most MAX_EXCERPT chars."""
    begin = max(0, start - 20)
    text = value[begin : begin + MAX_EXCERPT]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "\\x%02x" % (ord(c) & 0xFF) for c in text)[:MAX_EXCERPT]
