"""Node modes and their per-host / per-path overrides: the one place that validates them.

An override sets the mode, and may set what a partially inspected request counts as
(`partial_inspection`) and the body bytes inspected (`max_body_bytes`) for its host/path.

`ModeOverride` and `ModeSettings` check and normalise themselves when built, so the config
file, the console API, the policy and the store all hold settings that passed the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from node.rules import RuleError

NodeMode = Literal["off", "monitoring", "safe_blocking", "block"]
NODE_MODES: tuple[NodeMode, ...] = ("off", "monitoring", "safe_blocking", "block")
# What a partially inspected request counts as (docs/node.md, "Partial inspection"): an attack
# (the mode then decides: block, safe_blocking, monitoring), or a finding that is only recorded.
PartialAction = Literal["block", "monitor"]
PARTIAL_ACTIONS: tuple[PartialAction, ...] = ("block", "monitor")

MAX_OVERRIDES = 200
MAX_PATH_PREFIX = 1024
MAX_OVERRIDE_BODY = 1 << 30  # an override's max_body_bytes; the node's own limit still applies
OVERRIDE_FIELDS = frozenset({"mode", "host", "path_prefix", "partial_inspection", "max_body_bytes"})
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-_:\[\]]{1,255}$")


def parse_mode(value: Any) -> NodeMode:
    if value not in NODE_MODES:
        raise RuleError("mode", f"mode must be one of {', '.join(NODE_MODES)}, not {str(value)[:40]!r}")
    return value  # type: ignore[no-any-return]


def parse_partial_action(value: Any) -> PartialAction:
    if value not in PARTIAL_ACTIONS:
        raise RuleError("partial_inspection", f"partial_inspection must be one of {', '.join(PARTIAL_ACTIONS)}, "
                        f"not {str(value)[:40]!r}")
    return value  # type: ignore[no-any-return]


def _override_body_limit(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 < value <= MAX_OVERRIDE_BODY:
        raise RuleError("max_body_bytes", f"max_body_bytes must be an integer from 1 to {MAX_OVERRIDE_BODY}")
    return value


def is_host_name(text: str) -> bool:
    """A Host header value as a client may send it (name or address, maybe a port)."""
    return bool(_HOST_RE.match(text))


def normalise_host(host: str | None) -> str:
    """`API.Example.com:8443` -> `api.example.com`; `[::1]:80` -> `::1`.

    Request hosts and override hosts both go through it, so they compare as equals."""
    if not host:
        return ""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def optional_text(value: Any, name: str, star_is_any: bool = False) -> str | None:
    """A rule's text field, stripped; None for "any": None, "", blanks (and "*" when
    `star_is_any`, as exceptions write it). RuleError for a value that is not a string."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RuleError(name, f"{name} must be a string")
    value = value.strip()
    return None if not value or (star_is_any and value == "*") else value


def checked_host(host: str) -> str:
    """A rule's host, normalised; RuleError if it is not a host name (overrides, exceptions)."""
    if not is_host_name(host) or not normalise_host(host):
        raise RuleError("host", f"host {host[:60]!r} is not a host name")
    return normalise_host(host)


def checked_path_prefix(prefix: str) -> str:
    """A rule's path prefix as written; RuleError unless it starts with '/', has no spaces and
    fits MAX_PATH_PREFIX (overrides, exceptions)."""
    if not prefix.startswith("/") or len(prefix) > MAX_PATH_PREFIX or any(c.isspace() for c in prefix):
        raise RuleError("path_prefix", f"path_prefix {prefix[:60]!r} must start with '/', contain no spaces "
                        f"and be at most {MAX_PATH_PREFIX} characters")
    return prefix


def optional_host(value: Any, star_is_any: bool = False) -> str | None:
    """A rule's host field (optional_text), checked and normalised (overrides, exceptions)."""
    host = optional_text(value, "host", star_is_any)
    return None if host is None else checked_host(host)


def _override_path_prefix(value: Any) -> str | None:
    prefix = optional_text(value, "path_prefix")
    return None if prefix is None else checked_path_prefix(prefix)


@dataclass(slots=True)
class ModeOverride:
    """A node mode for a host and/or a path prefix; the most specific match wins."""

    mode: NodeMode
    host: str | None = None  # exact host, normalised (lower case, no port); None = any
    path_prefix: str | None = None  # e.g. "/api/admin"; None = any
    partial_inspection: PartialAction | None = None  # None: the settings' own
    max_body_bytes: int | None = None  # body bytes inspected here; None: the node's max_body_bytes

    def __post_init__(self) -> None:
        self.mode = parse_mode(self.mode)
        self.host = optional_host(self.host)
        self.path_prefix = _override_path_prefix(self.path_prefix)
        if self.partial_inspection is not None:
            self.partial_inspection = parse_partial_action(self.partial_inspection)
        self.max_body_bytes = _override_body_limit(self.max_body_bytes)
        if self.host is None and self.path_prefix is None:
            raise RuleError("override", "an override needs a host, a path_prefix or both")


@dataclass(slots=True)
class ModeSettings:
    default: NodeMode
    overrides: list[ModeOverride] = field(default_factory=list)
    partial_inspection: PartialAction = "block"

    def __post_init__(self) -> None:
        self.default = parse_mode(self.default)
        self.partial_inspection = parse_partial_action(self.partial_inspection)
        self.overrides = list(self.overrides)
        if len(self.overrides) > MAX_OVERRIDES:
            raise RuleError("overrides", f"at most {MAX_OVERRIDES}")
        seen: set[tuple[str | None, str | None]] = set()
        for o in self.overrides:
            if not isinstance(o, ModeOverride):
                raise RuleError("overrides", f"{type(o).__name__} is not a ModeOverride")
            key = (o.host, o.path_prefix)
            if key in seen:
                raise RuleError("overrides", f"duplicate host/path_prefix {o.host or '*'} {o.path_prefix or '*'}")
            seen.add(key)


def override_from_mapping(obj: Any) -> ModeOverride:
    """An override from a JSON/YAML object `{mode, host?, path_prefix?, partial_inspection?,
    max_body_bytes?}`; RuleError says what is wrong."""
    if not isinstance(obj, Mapping):
        raise RuleError("override", "an override must be an object with mode, host and/or path_prefix")
    unknown = sorted(map(str, set(obj) - OVERRIDE_FIELDS))
    if unknown:
        raise RuleError("override", f"unknown field(s): {', '.join(unknown)[:100]}")
    return ModeOverride(mode=obj.get("mode"), host=obj.get("host"), path_prefix=obj.get("path_prefix"),
                        partial_inspection=obj.get("partial_inspection"), max_body_bytes=obj.get("max_body_bytes"))


def override_to_mapping(o: ModeOverride) -> dict[str, Any]:
    """What override_from_mapping reads (the store's JSON, the console's answers)."""
    return {"mode": o.mode, "host": o.host, "path_prefix": o.path_prefix,
            "partial_inspection": o.partial_inspection, "max_body_bytes": o.max_body_bytes}
