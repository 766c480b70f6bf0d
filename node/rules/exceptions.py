"""Exceptions ("not an attack here"): the one place that says what one is and validates it.

An exception names what it excuses (a rule id, or an attack type) and where: a host (exact, or
any), a path prefix (whole segments of the decoded path, or any) and a parameter location
(`query.q`, `json.a.b`, `header.user-agent`; a location also covers the ones below it, so
`json.a` covers `json.a.b`; or any). It keeps who made it, when, and a comment.

`ExceptionRule` checks and normalises itself when built, so the config file, the console API,
the CLI import and the store all hold exceptions that passed the same rule. Matching findings
against them is the policy's job (node/policy.py, `ExceptionTable`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.rules import RuleError
from node.rules.modes import checked_path_prefix, optional_host, optional_text
from node.rules.paths import normalise_path

MAX_EXCEPTIONS = 10_000  # an import beyond this is refused: the matcher is held in memory
MAX_LOCATION = 256
MAX_COMMENT = 500
MAX_CREATED_BY = 200
# Rule ids and attack types as the engine writes them (`sqli`, `xss-onevent-12`, `partial.fields`).
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
# A location: dotted parts of printable characters without spaces (`json.a.b`, `xml.r.@id`).
_LOCATION_RE = re.compile(r"^[^\s.][^\s]*$")
EXCEPTION_FIELDS = frozenset({"rule_id", "attack_type", "host", "path_prefix", "location", "comment",
                              "created_by", "created_at"})
# Findings no exception can excuse: a partial inspection is not a finding a user can wave away
# (docs/node.md, "Partial inspection").
UNEXCUSABLE_TYPES = frozenset({"partial_inspection"})


def _optional_text(value: Any, name: str) -> str | None:
    return optional_text(value, name, star_is_any=True)  # None, "", blanks and "*" all mean "any"


def _name(value: Any, field: str) -> str | None:
    text = _optional_text(value, field)
    if text is not None and not _NAME_RE.match(text):
        raise RuleError(field, f"{field} {text[:60]!r} is not a rule id or attack type name")
    return text


def _path_prefix(value: Any) -> str | None:
    prefix = _optional_text(value, "path_prefix")
    if prefix is None:
        return None
    # as the matcher sees a request's path (decoded, dot segments resolved); "/" is any path
    prefix = normalise_path(checked_path_prefix(prefix))
    return None if prefix == "/" else prefix


def _location(value: Any) -> str | None:
    location = _optional_text(value, "location")
    if location is None:
        return None
    if len(location) > MAX_LOCATION or not _LOCATION_RE.match(location) or location.endswith("."):
        raise RuleError("location", f"location {location[:60]!r} must be a finding's location like query.q, "
                        f"json.a.b or header.user-agent (no spaces, at most {MAX_LOCATION} characters)")
    return location


def _bounded_text(value: Any, field: str, limit: int) -> str:
    text = "" if value is None else value
    if not isinstance(text, str):
        raise RuleError(field, f"{field} must be a string")
    if len(text) > limit:
        raise RuleError(field, f"{field} is longer than {limit} characters")
    return text.strip()


def _time(value: Any) -> float:
    if value in (None, 0):
        return time.time()
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e11:
        raise RuleError("created_at", f"created_at must be a unix time in seconds, not {str(value)[:40]!r}")
    return float(value)


@dataclass(slots=True)
class ExceptionRule:
    """Findings of `rule_id` (or of any rule of `attack_type`) at `host` / `path_prefix` /
    `location` are not attacks. Exactly one of rule_id and attack_type is set."""

    rule_id: str | None = None
    attack_type: str | None = None
    host: str | None = None  # exact host, normalised (lower case, no port); None = any
    path_prefix: str | None = None  # decoded, dot-resolved; None = any path
    location: str | None = None  # e.g. "query.q"; covers "query.q.x" too; None = anywhere
    comment: str = ""
    created_by: str = ""
    created_at: float = 0.0  # 0 = now
    id: int | None = None  # assigned by the store
    # what the store counted: requests this exception let through, and the last one's time
    excepted_requests: int = 0
    last_excepted_at: float | None = None

    def __post_init__(self) -> None:
        self.rule_id = _name(self.rule_id, "rule_id")
        self.attack_type = _name(self.attack_type, "attack_type")
        if self.attack_type is not None:
            self.attack_type = self.attack_type.lower()
        if (self.rule_id is None) == (self.attack_type is None):
            raise RuleError("exception", "an exception names a rule_id or an attack_type (one of the two)")
        if self.attack_type in UNEXCUSABLE_TYPES or (self.rule_id or "").startswith("partial."):
            raise RuleError("exception", "a partial inspection cannot be excepted (set partial_inspection instead)")
        self.host = optional_host(self.host, star_is_any=True)
        self.path_prefix = _path_prefix(self.path_prefix)
        self.location = _location(self.location)
        self.comment = _bounded_text(self.comment, "comment", MAX_COMMENT)
        self.created_by = _bounded_text(self.created_by, "created_by", MAX_CREATED_BY) or "unknown"
        self.created_at = _time(self.created_at)

    @property
    def key(self) -> tuple[str | None, ...]:
        """What the exception excuses, and where: two exceptions with one key are the same."""
        return (self.rule_id, self.attack_type, self.host, self.path_prefix, self.location)

    def describe(self) -> str:
        what = f"rule {self.rule_id}" if self.rule_id else f"type {self.attack_type}"
        return (f"{what} at host {self.host or '*'} path {self.path_prefix or '/*'} "
                f"location {self.location or '*'}")


def exception_from_mapping(obj: Any, created_by: str = "") -> ExceptionRule:
    """An exception from a JSON/YAML object (the API's body, the config's and the export's
    items); RuleError says what is wrong. `created_by` applies when the object has none."""
    if not isinstance(obj, Mapping):
        raise RuleError("exception", "an exception must be an object with rule_id or attack_type")
    unknown = sorted(map(str, set(obj) - EXCEPTION_FIELDS))
    if unknown:
        raise RuleError("exception", f"unknown field(s): {', '.join(unknown)[:100]}")
    return ExceptionRule(rule_id=obj.get("rule_id"), attack_type=obj.get("attack_type"), host=obj.get("host"),
                         path_prefix=obj.get("path_prefix"), location=obj.get("location"),
                         comment=obj.get("comment", ""), created_by=obj.get("created_by") or created_by,
                         created_at=obj.get("created_at") or 0)


def exception_to_mapping(e: ExceptionRule) -> dict[str, Any]:
    """What exception_from_mapping reads (the export, the config file): no id, no counts."""
    return {"rule_id": e.rule_id, "attack_type": e.attack_type, "host": e.host, "path_prefix": e.path_prefix,
            "location": e.location, "comment": e.comment, "created_by": e.created_by, "created_at": e.created_at}


def exceptions_from_list(items: Any, created_by: str = "") -> list[ExceptionRule]:
    """Every item validated before any is used (an import applies all or nothing); duplicates
    (the same key) are refused, so an export read back is the same set."""
    if not isinstance(items, list):
        raise RuleError("exceptions", "exceptions must be a list")
    if len(items) > MAX_EXCEPTIONS:
        raise RuleError("exceptions", f"at most {MAX_EXCEPTIONS} exceptions")
    out: list[ExceptionRule] = []
    seen: dict[tuple[str | None, ...], int] = {}
    for i, item in enumerate(items):
        try:
            rule = exception_from_mapping(item, created_by)
        except RuleError as e:
            raise RuleError(f"exceptions[{i}]", f"exceptions[{i}]: {e}") from None
        if rule.key in seen:
            raise RuleError(f"exceptions[{i}]", f"exceptions[{i}] is the same as exceptions[{seen[rule.key]}]")
        seen[rule.key] = i
        out.append(rule)
    return out
