"""Allow/deny/gray list entries: the one place that validates them.

`IPEntry` checks and normalises itself when built (the network in canonical CIDR text, see
`node.rules.networks`), so entries from the config, the console and the store are alike.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

from node.rules import RuleError
from node.rules.networks import parse_network

ListName = Literal["allow", "deny", "gray"]
LIST_NAMES: tuple[ListName, ...] = ("allow", "deny", "gray")
MAX_COMMENT = 500


def parse_list_name(value: object) -> ListName:
    if value not in LIST_NAMES:
        raise RuleError("list", f"list must be one of {', '.join(LIST_NAMES)}, not {str(value)[:40]!r}")
    return value  # type: ignore[return-value]


def _expiry(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RuleError("expires_at", f"expires_at must be a unix time in seconds or null, not {str(value)[:40]!r}")
    return float(value)


@dataclass(slots=True)
class IPEntry:
    list: ListName
    network: str  # canonical CIDR: "203.0.113.7/32", "2001:db8::/32"
    expires_at: float | None = None  # unix seconds; None = never
    comment: str = ""
    created_at: float = 0.0  # 0 = now
    id: int | None = None  # assigned by the store

    def __post_init__(self) -> None:
        self.list = parse_list_name(self.list)
        self.network = str(parse_network(self.network))
        self.expires_at = _expiry(self.expires_at)
        comment = "" if self.comment is None else self.comment
        if not isinstance(comment, str):
            raise RuleError("comment", "comment must be a string")
        if len(comment) > MAX_COMMENT:
            raise RuleError("comment", f"comment is longer than {MAX_COMMENT} characters")
        self.comment = comment.strip()
        self.created_at = float(self.created_at) if self.created_at else time.time()
