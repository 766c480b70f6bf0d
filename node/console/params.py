"""Turn untrusted query strings and JSON bodies into store arguments, or a clear 400.

Every check lives here so the handlers stay thin and the rules are tested in one place.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from datetime import datetime, timezone
from typing import Any, Mapping

from multidict import MultiMapping

from node.store.base import (
    LIST_NAMES,
    NODE_MODES,
    PARTIAL_ACTIONS,
    PARTIAL_TYPE,
    AttackFilter,
    IPEntry,
    ModeOverride,
    ModeSettings,
)

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_TEXT = 256
MAX_COMMENT = 500
MAX_OVERRIDES = 200
MAX_TTL_SECONDS = 10 * 365 * 86400
DEFAULT_STATS_RANGE = 24 * 3600
MAX_BUCKETS = 500
MAX_OVERRIDE_BODY = 1 << 30  # an override's max_body_bytes; the node's own limit still applies

_TYPE_RE = re.compile(r"^[a-z0-9_.\-]{1,40}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-_:\[\]]{1,255}$")
ACTIONS = ("blocked", "monitored")
ATTACK_PARAMS = {"type", "ip", "action", "host", "since", "until", "q", "partial", "cursor", "limit"}


class ApiError(Exception):
    """A request the API refuses; becomes `{"error": message}` with `status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def parse_time(name: str, raw: str) -> float:
    """Unix seconds ("1764136800", "1764136800.5") or ISO 8601 (naive = UTC)."""
    raw = raw.strip()
    if not raw:
        raise ApiError(f"{name}: empty time")
    try:
        value = float(raw)
    except ValueError:
        try:
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ApiError(f"{name}: {raw[:40]!r} is neither unix seconds nor ISO 8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        value = dt.timestamp()
    if not math.isfinite(value) or value < 0 or value > 1e11:
        raise ApiError(f"{name}: {raw[:40]!r} is out of range")
    return value


def _single(query: MultiMapping[str], name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise ApiError(f"{name}: give it once")
    return values[0] if values else None


def _text(name: str, raw: str | None, max_len: int = MAX_TEXT) -> str | None:
    if raw is None:
        return None
    raw = raw.strip()
    if not raw:
        return None
    if len(raw) > max_len:
        raise ApiError(f"{name}: longer than {max_len} characters")
    return raw


def parse_types(values: list[str]) -> list[str]:
    types: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lower()
            if not part:
                continue
            if not _TYPE_RE.match(part):
                raise ApiError(f"type: {part[:40]!r} is not an attack type name")
            if part not in types:
                types.append(part)
    return types


def parse_ip(raw: str | None) -> str | None:
    """A client IP, or a CIDR to match a whole network ("203.0.113.0/24")."""
    raw = _text("ip", raw, 64)
    if raw is None:
        return None
    try:
        if "/" not in raw:
            return str(ipaddress.ip_address(raw))
        return str(ipaddress.ip_network(raw, strict=False))
    except ValueError:
        raise ApiError(f"ip: {raw!r} is not an IP address or CIDR") from None


def parse_time_range(query: MultiMapping[str]) -> tuple[float | None, float | None]:
    since_raw, until_raw = _single(query, "since"), _single(query, "until")
    since = parse_time("since", since_raw) if since_raw not in (None, "") else None
    until = parse_time("until", until_raw) if until_raw not in (None, "") else None
    if since is not None and until is not None and since > until:
        raise ApiError("since is after until")
    return since, until


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(f"limit: {raw[:20]!r} is not an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(f"limit: must be between 1 and {MAX_LIMIT}")
    return limit


def parse_attack_query(query: MultiMapping[str]) -> tuple[AttackFilter, str | None, int]:
    unknown = sorted(set(query.keys()) - ATTACK_PARAMS)
    if unknown:
        raise ApiError(f"unknown parameter(s): {', '.join(unknown)[:100]}")
    action = _text("action", _single(query, "action"))
    if action is not None:
        action = action.lower()
        if action not in ACTIONS:
            raise ApiError(f"action: must be one of {', '.join(ACTIONS)}")
    host = _text("host", _single(query, "host"))
    if host is not None and not _HOST_RE.match(host):
        raise ApiError("host: not a host name")
    since, until = parse_time_range(query)
    types = parse_types(query.getall("type", []))
    if parse_flag("partial", _single(query, "partial")) and PARTIAL_TYPE not in types:
        types.append(PARTIAL_TYPE)  # partial=1 is type=partial_inspection (types are any-of)
    flt = AttackFilter(
        types=types,
        client_ip=parse_ip(_single(query, "ip")),
        action=action,  # type: ignore[arg-type]
        host=host.lower() if host else None,
        since=since,
        until=until,
        path_search=_text("q", _single(query, "q")),
    )
    cursor = _text("cursor", _single(query, "cursor"), 512)
    return flt, cursor, parse_limit(_single(query, "limit"))


def parse_stats_query(query: MultiMapping[str], now: float | None = None) -> tuple[float, float, int]:
    unknown = sorted(set(query.keys()) - {"since", "until", "buckets"})
    if unknown:
        raise ApiError(f"unknown parameter(s): {', '.join(unknown)[:100]}")
    since, until = parse_time_range(query)
    now = time.time() if now is None else now
    until = now if until is None else until
    since = until - DEFAULT_STATS_RANGE if since is None else since
    if since >= until:
        raise ApiError("since must be before until")
    raw = _single(query, "buckets")
    buckets = 48
    if raw:
        try:
            buckets = int(raw)
        except ValueError:
            raise ApiError("buckets: not an integer") from None
        if not 1 <= buckets <= MAX_BUCKETS:
            raise ApiError(f"buckets: must be between 1 and {MAX_BUCKETS}")
    return since, until, buckets


def parse_int_id(raw: str, what: str = "id") -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(f"{what}: {raw[:20]!r} is not a positive integer")
    return int(raw)


def parse_list_name(raw: str | None, required: bool) -> str | None:
    if raw is None or raw == "":
        if required:
            raise ApiError(f"list: required, one of {', '.join(LIST_NAMES)}")
        return None
    if raw not in LIST_NAMES:
        raise ApiError(f"list: must be one of {', '.join(LIST_NAMES)}")
    return raw


# ---------------------------------------------------------------------------- JSON bodies


def _require_object(body: Any, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise ApiError("body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(f"unknown field(s): {', '.join(map(str, unknown))[:100]}")
    return body


def parse_flag(name: str, raw: str | None) -> bool:
    if raw is None or raw.strip().lower() in ("", "0", "false", "no"):
        return False
    if raw.strip().lower() in ("1", "true", "yes"):
        return True
    raise ApiError(f"{name}: must be 1 or 0")


def parse_partial_action(value: Any, where: str) -> str:
    if value not in PARTIAL_ACTIONS:
        raise ApiError(f"{where}: partial_inspection must be one of {', '.join(PARTIAL_ACTIONS)}")
    return value


def parse_mode(value: Any, where: str) -> str:
    if value not in NODE_MODES:
        raise ApiError(f"{where}: mode must be one of {', '.join(NODE_MODES)}")
    return value


def parse_override(obj: Any, index: int) -> ModeOverride:
    where = f"overrides[{index}]"
    if not isinstance(obj, dict):
        raise ApiError(f"{where}: must be an object")
    unknown = sorted(set(obj) - {"mode", "host", "path_prefix", "partial_inspection", "max_body_bytes"})
    if unknown:
        raise ApiError(f"{where}: unknown field(s): {', '.join(map(str, unknown))[:100]}")
    mode = parse_mode(obj.get("mode"), where)
    host = obj.get("host")
    prefix = obj.get("path_prefix")
    if host is not None and not isinstance(host, str) or prefix is not None and not isinstance(prefix, str):
        raise ApiError(f"{where}: host and path_prefix must be strings")
    host = (host or "").strip().lower() or None
    prefix = (prefix or "").strip() or None
    if host is None and prefix is None:
        raise ApiError(f"{where}: give a host, a path_prefix or both")
    if host is not None and not _HOST_RE.match(host):
        raise ApiError(f"{where}: host {host[:60]!r} is not a host name")
    if prefix is not None and (not prefix.startswith("/") or len(prefix) > 1024 or any(c.isspace() for c in prefix)):
        raise ApiError(f"{where}: path_prefix must start with '/' and contain no spaces")
    partial = obj.get("partial_inspection")
    if partial is not None:
        partial = parse_partial_action(partial, where)
    max_body = obj.get("max_body_bytes")
    if max_body is not None and (type(max_body) is not int or not 0 < max_body <= MAX_OVERRIDE_BODY):
        raise ApiError(f"{where}: max_body_bytes must be an integer from 1 to {MAX_OVERRIDE_BODY}")
    return ModeOverride(mode=mode, host=host, path_prefix=prefix,  # type: ignore[arg-type]
                        partial_inspection=partial, max_body_bytes=max_body)  # type: ignore[arg-type]


def parse_mode_body(body: Any, current: ModeSettings) -> ModeSettings:
    """PUT /api/v1/mode: `default` required; `overrides` (and `partial_inspection`) replace the
    current ones when present."""
    obj = _require_object(body, {"default", "overrides", "partial_inspection"})
    if "default" not in obj:
        raise ApiError("default: required")
    default = parse_mode(obj["default"], "default")
    partial = (parse_partial_action(obj["partial_inspection"], "partial_inspection")
               if "partial_inspection" in obj else current.partial_inspection)
    if "overrides" not in obj:
        return ModeSettings(default=default, overrides=list(current.overrides),  # type: ignore[arg-type]
                            partial_inspection=partial)  # type: ignore[arg-type]
    raw = obj["overrides"]
    if not isinstance(raw, list):
        raise ApiError("overrides: must be a list")
    if len(raw) > MAX_OVERRIDES:
        raise ApiError(f"overrides: at most {MAX_OVERRIDES}")
    overrides = [parse_override(o, i) for i, o in enumerate(raw)]
    seen: set[tuple[str | None, str | None]] = set()
    for o in overrides:
        key = (o.host, o.path_prefix)
        if key in seen:
            raise ApiError(f"overrides: duplicate host/path_prefix {o.host or '*'} {o.path_prefix or '*'}")
        seen.add(key)
    return ModeSettings(default=default, overrides=overrides, partial_inspection=partial)  # type: ignore[arg-type]


def parse_network(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ApiError("network: required, an IP address or CIDR such as 203.0.113.0/24")
    raw = raw.strip()
    try:
        return str(ipaddress.ip_network(raw, strict=False))
    except ValueError:
        raise ApiError(f"network: {raw[:60]!r} is not an IP address or CIDR") from None


def parse_ip_entry_body(body: Any, now: float | None = None) -> IPEntry:
    obj = _require_object(body, {"list", "network", "expires_at", "ttl_seconds", "comment"})
    raw_list = obj.get("list")
    if raw_list is not None and not isinstance(raw_list, str):
        raise ApiError("list: must be one of " + ", ".join(LIST_NAMES))
    list_name = parse_list_name(raw_list, required=True)
    network = parse_network(obj.get("network"))
    now = time.time() if now is None else now
    expires_at: float | None = None
    has_exp, has_ttl = obj.get("expires_at") is not None, obj.get("ttl_seconds") is not None
    if has_exp and has_ttl:
        raise ApiError("give expires_at or ttl_seconds, not both")
    if has_exp:
        raw = obj["expires_at"]
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise ApiError("expires_at: unix seconds or ISO 8601")
        expires_at = parse_time("expires_at", str(raw))
        if expires_at <= now:
            raise ApiError("expires_at: is in the past")
    elif has_ttl:
        ttl = obj["ttl_seconds"]
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
            raise ApiError("ttl_seconds: must be a number of seconds")
        if not 1 <= ttl <= MAX_TTL_SECONDS:
            raise ApiError(f"ttl_seconds: must be between 1 and {MAX_TTL_SECONDS}")
        expires_at = now + float(ttl)
    comment = obj.get("comment", "") or ""
    if not isinstance(comment, str):
        raise ApiError("comment: must be a string")
    if len(comment) > MAX_COMMENT:
        raise ApiError(f"comment: longer than {MAX_COMMENT} characters")
    return IPEntry(list=list_name, network=network, expires_at=expires_at,  # type: ignore[arg-type]
                   comment=comment.strip(), created_at=now)
