"""How an attack record, its hits and the mode settings become column values, for every backend.

Validation happens here once: a malformed record raises ValueError/TypeError and each backend
counts it as a bad record and skips it, so both backends accept and refuse the same records.
"""

from __future__ import annotations

import json
import logging
import math

from node.rules.modes import override_from_mapping, override_to_mapping
from node.store import ipkeys
from node.store.base import AttackRecord, Hit, ModeSettings
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


def hits_json(hits: list[Hit]) -> str:
    return json.dumps(
        [{"type": h.type, "location": h.location, "rule_id": h.rule_id, "excerpt": h.excerpt, "score": h.score}
         for h in hits],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def hits_from_json(text: str) -> list[Hit]:
    try:
        items = json.loads(text)
        return [Hit(type=str(h["type"]), location=str(h.get("location", "")), rule_id=str(h.get("rule_id", "")),
                    excerpt=str(h.get("excerpt", "")), score=int(h.get("score", 0)))
                for h in items]
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("attack store: unreadable hits JSON %.80r", text)
        return []


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
        storable(r.request_excerpt), storable(r.reason), storable(hits_json(list(r.hits))),
    )


def record_from_values(attack_id: int, values: tuple) -> AttackRecord:
    """A record from (time, request_id, client_ip, host, method, path, action, mode, instance,
    node_instance, response_status, request_excerpt, reason, hits) as read back."""
    (t, request_id, client_ip, host, method, path, action, mode, instance, node_instance,
     response_status, request_excerpt, reason, hits) = values
    return AttackRecord(
        time=t, request_id=request_id, client_ip=client_ip, host=host, method=method, path=path,
        hits=hits_from_json(hits), action=action, mode=mode, instance=instance, node_instance=node_instance,
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
