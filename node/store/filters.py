"""What the console's attack list accepts, for every backend: keyset cursors and filter validation."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

from node.rules.networks import parse_network
from node.store import ipkeys
from node.store.base import AttackFilter

STORED_ACTIONS = ("blocked", "monitored")
MAX_TYPES = 50
MAX_NEEDLE = 1000


# ---------------------------------------------------------------------------- cursors

def encode_cursor(t: float, attack_id: int) -> str:
    raw = f"{t!r}:{attack_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    """Inverse of `encode_cursor`; anything else raises ValueError("bad cursor ...")."""
    try:
        if not isinstance(cursor, str) or not cursor or len(cursor) > 100:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        t_text, _, id_text = raw.partition(":")
        t, attack_id = float(t_text), int(id_text)
        if not math.isfinite(t) or attack_id < 0:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        shown = cursor[:40] if isinstance(cursor, str) else cursor
        raise ValueError(f"bad cursor {shown!r}: pass back the next_cursor of a previous page") from None
    return t, attack_id


# ---------------------------------------------------------------------------- filters

@dataclass(slots=True, frozen=True)
class ParsedFilter:
    types: tuple[str, ...] = ()
    ip_range: tuple[bytes, bytes] | None = None  # inclusive 16-byte keys
    action: str | None = None
    host: str | None = None
    since: float | None = None
    until: float | None = None
    needle: str | None = None  # lower-cased path substring

    @property
    def types_only(self) -> bool:
        return bool(self.types) and not (self.ip_range or self.action or self.host or self.needle)


def _unix_time(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite unix time in seconds, not {value!r}")
    return float(value)


def parse_filter(flt: AttackFilter) -> ParsedFilter:
    """Validate a filter; ValueError with a message fit for an API client."""
    types: tuple[str, ...] = ()
    if flt.types:
        if not isinstance(flt.types, list | tuple) or len(flt.types) > MAX_TYPES or \
                not all(isinstance(t, str) and t for t in flt.types):
            raise ValueError(f"types must be a list of at most {MAX_TYPES} non-empty strings")
        types = tuple(dict.fromkeys(flt.types))
    ip_range = None
    if flt.client_ip:
        ip_range = ipkeys.network_key_range(parse_network(flt.client_ip))
    if flt.action and flt.action not in STORED_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(STORED_ACTIONS)}, not {flt.action!r}")
    needle = None
    if flt.path_search:
        needle = str(flt.path_search)
        if len(needle) > MAX_NEEDLE:
            raise ValueError(f"path_search is longer than {MAX_NEEDLE} characters")
        needle = needle.lower()
    return ParsedFilter(
        types=types, ip_range=ip_range, action=flt.action or None,
        host=str(flt.host).strip() if flt.host else None,
        since=_unix_time("since", flt.since), until=_unix_time("until", flt.until), needle=needle,
    )
