"""The result type of the engine, shared by every detector."""

from __future__ import annotations

from dataclasses import dataclass, field

from wallarm_wire.protocol import AttackInfo

# A request is an attack when one location's combined score reaches this; a strong
# signature scores it alone, weak signals (score < threshold) must agree within one value.
DEFAULT_THRESHOLD = 10
MAX_EXCERPT = 120


@dataclass(slots=True)
class Detection:
    attacks: list[AttackInfo] = field(default_factory=list)
    score: int = 0
    threshold: int = DEFAULT_THRESHOLD
    truncated: bool = False  # the work bound was reached: later values were not judged

    @property
    def is_attack(self) -> bool:
        return self.score >= self.threshold


def excerpt(value: str, start: int = 0) -> str:
    """A printable slice of `value` around `start`, at most MAX_EXCERPT chars."""
    begin = max(0, start - 20)
    text = value[begin : begin + MAX_EXCERPT]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "\\x%02x" % (ord(c) & 0xFF) for c in text)[:MAX_EXCERPT]
