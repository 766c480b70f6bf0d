"""Turn untrusted query strings and JSON bodies into store arguments, or a clear 400.

Every check lives here so the handlers stay thin and the rules are tested in one place.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from typing import Any, Mapping

from multidict import MultiMapping

from node.rules import RuleError
from node.rules.exceptions import ExceptionRule, exception_from_mapping
from node.rules.ip_lists import LIST_NAMES, IPEntry, ListName
from node.rules.ip_lists import parse_list_name as list_name_rule
from node.rules.modes import (
    ModeOverride,
    ModeSettings,
    NodeMode,
    PartialAction,
    is_host_name,
    override_from_mapping,
    parse_mode,
    parse_partial_action,
)
from node.rules.networks import parse_address, parse_network
from node.store.base import PARTIAL_TYPE, AttackFilter

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_TEXT = 256
MAX_TTL_SECONDS = 10 * 365 * 86400
DEFAULT_STATS_RANGE = 24 * 3600
MAX_BUCKETS = 500

_TYPE_RE = re.compile(r"^[a-z0-9_.\-]{1,40}$")
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
    if "/" not in raw:
        addr = parse_address(raw)
        if addr is None:
            raise ApiError(f"ip: {raw!r} is not an IP address or CIDR")
        return str(addr)
    try:
        return str(parse_network(raw))
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
    if host is not None and not is_host_name(host):
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


def parse_list_name(raw: str | None, required: bool) -> ListName | None:
    if raw is None or raw == "":
        if required:
            raise ApiError(f"list: required, one of {', '.join(LIST_NAMES)}")
        return None
    try:
        return list_name_rule(raw)
    except RuleError as e:
        raise ApiError(f"list: {e}") from None


# ---------------------------------------------------------------------------- JSON bodies


def _require_object(body: Any, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise ApiError("body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(f"unknown field(s): {', '.join(map(str, unknown))[:100]}")
    return body


def _mode(value: Any, where: str) -> NodeMode:
    try:
        return parse_mode(value)
    except RuleError as e:
        raise ApiError(f"{where}: {e}") from None


def parse_override(obj: Any, index: int) -> ModeOverride:
    try:
        return override_from_mapping(obj)
    except RuleError as e:
        raise ApiError(f"overrides[{index}]: {e}") from None


def parse_flag(name: str, raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ApiError(f"{name}: must be 1 or 0")


def _partial_action(value: Any) -> PartialAction:
    try:
        return parse_partial_action(value)
    except RuleError as e:
        raise ApiError(f"partial_inspection: {e}") from None


def parse_mode_body(body: Any, current: ModeSettings) -> ModeSettings:
    """PUT /api/v1/mode: `default` required; `overrides` and `partial_inspection` replace the
    current ones when present."""
    obj = _require_object(body, {"default", "overrides", "partial_inspection"})
    if "default" not in obj:
        raise ApiError("default: required")
    default = _mode(obj["default"], "default")
    partial = _partial_action(obj["partial_inspection"]) if "partial_inspection" in obj else current.partial_inspection
    if "overrides" not in obj:
        return ModeSettings(default=default, overrides=current.overrides, partial_inspection=partial)
    raw = obj["overrides"]
    if not isinstance(raw, list):
        raise ApiError("overrides: must be a list")
    overrides = [parse_override(o, i) for i, o in enumerate(raw)]
    try:
        return ModeSettings(default=default, overrides=overrides, partial_inspection=partial)
    except RuleError as e:
        raise ApiError(f"{e.field}: {e}") from None


def parse_ip_entry_body(body: Any, now: float | None = None) -> IPEntry:
    obj = _require_object(body, {"list", "network", "expires_at", "ttl_seconds", "comment"})
    raw_list = obj.get("list")
    if raw_list is not None and not isinstance(raw_list, str):
        raise ApiError("list: must be one of " + ", ".join(LIST_NAMES))
    list_name = parse_list_name(raw_list, required=True)
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
    try:
        return IPEntry(list=list_name, network=obj.get("network"), expires_at=expires_at,  # type: ignore[arg-type]
                       comment=obj.get("comment", "") or "", created_at=now)
    except RuleError as e:
        raise ApiError(f"{e.field}: {e}") from None


EXCEPTION_BODY_FIELDS = {"rule_id", "attack_type", "host", "path_prefix", "location", "comment"}


def parse_exception_body(body: Any, created_by: str, now: float | None = None) -> ExceptionRule:
    """POST /api/v1/exceptions: what (rule_id or attack_type) and where (host, path_prefix,
    location; null or "" = any), a comment; who and when are the console's to say."""
    obj = _require_object(body, EXCEPTION_BODY_FIELDS)
    try:
        return exception_from_mapping({**obj, "created_by": created_by, "created_at": now or time.time()})
    except RuleError as e:
        raise ApiError(f"{e.field}: {e}") from None
