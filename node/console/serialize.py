"""Store records -> the JSON shapes documented in `openapi.json`."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from node.rules.modes import override_to_mapping
from node.store.base import AttackRecord, ExceptionRule, Hit, IPEntry, ModeSettings, Stats


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def attack_summary(r: AttackRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "time": r.time,
        "time_iso": iso(r.time),
        "request_id": r.request_id,
        "client_ip": r.client_ip,
        "host": r.host,
        "method": r.method,
        "path": r.path,
        "types": r.types,
        "action": r.action,
        "mode": r.mode,
        "reason": r.reason,
        "response_status": r.response_status,
        "node_instance": r.node_instance,
    }


def hit(h: Hit) -> dict[str, Any]:
    return {"type": h.type, "location": h.location, "rule_id": h.rule_id, "excerpt": h.excerpt, "score": h.score}


def attack_detail(r: AttackRecord) -> dict[str, Any]:
    out = attack_summary(r)
    out.update(
        instance=r.instance,
        request_excerpt=r.request_excerpt,
        hits=[hit(h) for h in r.hits],
        excepted_hits=[{**hit(e.hit), "exception_id": e.exception_id} for e in r.excepted],
    )
    return out


def exception_rule(e: ExceptionRule) -> dict[str, Any]:
    return {
        "id": e.id,
        "rule_id": e.rule_id,
        "attack_type": e.attack_type,
        "host": e.host,
        "path_prefix": e.path_prefix,
        "location": e.location,
        "comment": e.comment,
        "created_by": e.created_by,
        "created_at": e.created_at,
        "created_at_iso": iso(e.created_at),
        "excepted_requests": e.excepted_requests,
        "last_excepted_at": e.last_excepted_at,
    }


def ip_entry(e: IPEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "list": e.list,
        "network": e.network,
        "expires_at": e.expires_at,
        "expires_at_iso": iso(e.expires_at),
        "comment": e.comment,
        "created_at": e.created_at,
        "created_at_iso": iso(e.created_at),
    }


def mode_settings(s: ModeSettings) -> dict[str, Any]:
    return {
        "default": s.default,
        "partial_inspection": s.partial_inspection,
        "overrides": [override_to_mapping(o) for o in s.overrides],
    }


def stats(s: Stats, since: float, until: float, excepted_requests: int) -> dict[str, Any]:
    return {
        "since": since,
        "until": until,
        "since_iso": iso(since),
        "until_iso": iso(until),
        "total": s.total,
        "by_type": s.by_type,
        "by_action": s.by_action,
        "bucket_seconds": s.bucket_seconds,
        "series": [{"start": b.start, "by_type": b.by_type, "by_action": b.by_action} for b in s.series],
        "top_paths": [{"path": p, "count": c} for p, c in s.top_paths],
        "top_ips": [{"ip": ip, "count": c} for ip, c in s.top_ips],
        # requests the exceptions let through, since each was created (not limited to the range)
        "excepted_requests": excepted_requests,
    }
