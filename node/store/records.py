"""How an attack record, its hits, an exception and the mode settings become column values, for
every backend.

Validation happens here once: a malformed record raises ValueError/TypeError and each backend
counts it as a bad record and skips it, so both backends accept and refuse the same records.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from node.rules.modes import override_from_mapping, override_to_mapping
from node.store import ipkeys
from node.store.base import AttackRecord, ExceptedHit, ExceptionRule, Hit, ModeSettings
from node.store.filters import STORED_ACTIONS

log = logging.getLogger("node.store")


def storable(value: object) -> str:
    """`value` as text a database can bind: a request's bytes that are not UTF-8 reach a record as
    surrogate escapes (a Host, a path, a JSON key), and one such string made the whole batch's
    INSERT fail, every record in it lost (found by tests/fuzz, endpoint); they are kept visible
    as backslash escapes instead."""
    text = str(value)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _hit_json(h: Hit) -> dict[str, Any]:
    return {"type": h.type, "location": h.location, "rule_id": h.rule_id, "excerpt": h.excerpt, "score": h.score}


def hits_json(hits: list[Hit], excepted: list[ExceptedHit]) -> str:
    # excepted findings ride along in the same column, marked with the exception's id
    return json.dumps(
        [_hit_json(h) for h in hits] + [{**_hit_json(e.hit), "excepted": e.exception_id} for e in excepted],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def hits_from_json(text: str) -> tuple[list[Hit], list[ExceptedHit]]:
    try:
        hits: list[Hit] = []
        excepted: list[ExceptedHit] = []
        for h in json.loads(text):
            hit = Hit(type=str(h["type"]), location=str(h.get("location", "")), rule_id=str(h.get("rule_id", "")),
                      excerpt=str(h.get("excerpt", "")), score=int(h.get("score", 0)))
            if h.get("excepted") is None:
                hits.append(hit)
            else:
                excepted.append(ExceptedHit(hit, int(h["excepted"])))
        return hits, excepted
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("attack store: unreadable hits JSON %.80r", text)
        return [], []


# The column order of `attack_values` (and of the SQLite INSERT after its id).
ATTACK_FIELDS = ("time", "request_id", "client_ip", "ip_key", "host", "method", "path", "path_lc", "action", "mode",
                 "instance", "node_instance", "response_status", "request_excerpt", "reason", "hits")
STATUS_INDEX = ATTACK_FIELDS.index("response_status")


def attack_values(r: AttackRecord) -> tuple:
    """The stored values of a record, in ATTACK_FIELDS order; ValueError/TypeError for a malformed one."""
    t = float(r.time)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"time {r.time!r} is not a unix time")
    if r.action not in STORED_ACTIONS:
        raise ValueError(f"action {r.action!r} is not one of {STORED_ACTIONS}")
    status = None if r.response_status is None else int(r.response_status)
    path = storable(r.path)
    client_ip = str(r.client_ip)
    return (
        t, storable(r.request_id), client_ip, ipkeys.ip_key(client_ip), storable(r.host), storable(r.method), path,
        path.lower(), r.action, storable(r.mode), storable(r.instance), storable(r.node_instance), status,
        storable(r.request_excerpt), storable(r.reason), storable(hits_json(list(r.hits), list(r.excepted))),
    )


def record_from_values(attack_id: int, values: tuple) -> AttackRecord:
    """A record from (time, request_id, client_ip, host, method, path, action, mode, instance,
    node_instance, response_status, request_excerpt, reason, hits) as read back."""
    (t, request_id, client_ip, host, method, path, action, mode, instance, node_instance,
     response_status, request_excerpt, reason, hits) = values
    found, excepted = hits_from_json(hits)
    return AttackRecord(
        time=t, request_id=request_id, client_ip=client_ip, host=host, method=method, path=path,
        hits=found, excepted=excepted, action=action, mode=mode, instance=instance, node_instance=node_instance,
        response_status=response_status, request_excerpt=request_excerpt, reason=reason, id=attack_id,
    )


def mode_settings_to_json(s: ModeSettings) -> str:
    # A ModeSettings validated itself when it was built (node/rules/modes.py).
    overrides = [override_to_mapping(o) for o in s.overrides]
    return json.dumps({"default": s.default, "overrides": overrides, "partial_inspection": s.partial_inspection})


def mode_settings_from_json(text: str) -> ModeSettings:
    data = json.loads(text)
    return ModeSettings(default=data["default"],
                        overrides=[override_from_mapping(o) for o in data.get("overrides", [])],
                        # absent from settings saved before it existed
                        partial_inspection=data.get("partial_inspection", "block"))


def check_id(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, not {value!r}")


EXCEPTION_COLUMNS = ("id, rule_id, attack_type, host, path_prefix, location, comment, created_by, created_at, "
                     "excepted_requests, last_excepted_at")


def exception_from_row(row: tuple) -> ExceptionRule:
    """An exception from the EXCEPTION_COLUMNS of a row."""
    (i, rule_id, attack_type, host, prefix, location, comment, created_by, created_at, count, last) = row
    return ExceptionRule(rule_id=rule_id, attack_type=attack_type, host=host, path_prefix=prefix, location=location,
                         comment=comment, created_by=created_by, created_at=created_at, id=i,
                         excepted_requests=count, last_excepted_at=last)


def exception_values(rule: ExceptionRule) -> tuple:
    """(rule_id, attack_type, host, path_prefix, location, comment, created_by, created_at) to insert.
    An ExceptionRule validated and normalised itself when it was built (node/rules/exceptions.py)."""
    return (rule.rule_id, rule.attack_type, rule.host, rule.path_prefix, storable(rule.location or "") or None,
            storable(rule.comment), storable(rule.created_by), rule.created_at)


def with_id(rule: ExceptionRule, exception_id: int) -> ExceptionRule:
    """`rule` as stored under `exception_id` (no counts yet)."""
    return ExceptionRule(rule_id=rule.rule_id, attack_type=rule.attack_type, host=rule.host,
                         path_prefix=rule.path_prefix, location=rule.location, comment=rule.comment,
                         created_by=rule.created_by, created_at=rule.created_at, id=exception_id)
