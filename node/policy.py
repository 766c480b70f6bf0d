"""Modes, per-host / per-path overrides and IP lists: what the node does with a request.

Everything the hot path needs is held in memory (`mode_for`, `lists_for` are plain dict and
int work, no I/O); the store is the source of truth and is read again when the console
changes something (`set_mode_settings`, `reload_ip_lists`).

Decision table (sync messages; async messages are only recorded, never blocked):
  mode off            -> pass, no analysis, nothing recorded (the IP lists are not consulted)
  allowlisted IP      -> pass; attacks (and partial inspections) are recorded as "monitored"
  denylisted IP       -> block (monitoring and safe_blocking too), recorded even without attack
  attack, block       -> block
  attack, safe_blocking -> block only when the IP is graylisted, else monitored
  attack, monitoring  -> monitored
  partially inspected, no attack found (a limit ended inspection early):
    partial_inspection: block   -> as an attack (so: block / safe_blocking / monitoring above)
    partial_inspection: monitor -> monitored (recorded, never blocked)
The allowlist beats the denylist beats the graylist when an address is on several. Overrides
(host and/or path prefix) set the mode, and may set partial_inspection and the body limit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import posixpath
import time
from dataclasses import dataclass
from urllib.parse import unquote

from node.rules.ip_lists import LIST_NAMES, IPEntry, ListName
from node.rules.modes import ModeSettings, NodeMode, PartialAction
from node.rules.networks import IPAddress, parse_address, parse_network
from node.store.base import Store, StoredAction

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    mode: NodeMode
    block: bool  # what the node answers (always False for async messages)
    record: bool  # store an attack record
    stored_action: StoredAction
    reason: str  # "attack", "partial", "denylist", "allowlist", "mode off", "" (benign)


@dataclass(frozen=True, slots=True)
class Rules:
    """What applies to one host and path: the mode, what a partial inspection counts as, and
    the body bytes inspected (None: the node's max_body_bytes)."""

    mode: NodeMode
    partial_inspection: PartialAction
    max_body_bytes: int | None = None


@functools.lru_cache(maxsize=4096)
def parse_ip(text: str) -> IPAddress | None:
    """`parse_address`, cached: clients send many requests, and `ipaddress` parsing cost more
    than the rest of a cached verdict."""
    return parse_address(text)


@functools.lru_cache(maxsize=4096)
def canonical_ip(text: str) -> str | None:
    """`text` in the standard notation (`::FFFF:1.2.3.4` -> `1.2.3.4`), None if not an IP address."""
    addr = parse_ip(text)
    return None if addr is None else str(addr)


def normalise_path(target: str) -> str:
    """The path part of a request target, percent-decoded with dot segments resolved.

    Overrides match on this form, so `/%61dmin/../admin/x` cannot slip past an `/admin` rule.
    """
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:  # absolute-form target: keep only the path
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    path = unquote(unquote(path), errors="replace")
    if not path.startswith("/"):
        path = "/" + path
    trailing = path.endswith("/") and len(path) > 1
    path = posixpath.normpath(path)
    if path.startswith("//"):  # normpath keeps a leading double slash (POSIX rule)
        path = "/" + path.lstrip("/")
    return path + "/" if trailing and path != "/" else path


def _prefix_matches(prefix: str, path: str) -> bool:
    # Segment-aware: "/api" matches "/api" and "/api/x", not "/apix".
    if prefix.endswith("/"):
        return path.startswith(prefix) or path == prefix[:-1]
    return path == prefix or path.startswith(prefix + "/")


class ModeTable:
    """The default mode and its overrides, ordered so the first match is the most specific.

    Specificity: an override naming a host beats one that does not; then the longer path
    prefix wins (like a server block, then its longest matching location).
    """

    def __init__(self, settings: ModeSettings):
        self.settings = settings
        # Override hosts are already in `normalise_host` form (node/rules/modes.py).
        ordered = sorted(settings.overrides, key=lambda o: (o.host is not None, len(o.path_prefix or "")), reverse=True)
        # (host, path prefix, rules), the rules made once: the hot path allocates nothing
        self._ordered: list[tuple[str | None, str | None, Rules]] = [
            (o.host, o.path_prefix, Rules(o.mode, o.partial_inspection or settings.partial_inspection, o.max_body_bytes))
            for o in ordered
        ]
        self._default = Rules(settings.default, settings.partial_inspection)

    def rules_for(self, host: str, path: str) -> Rules:
        for o_host, prefix, rules in self._ordered:
            if o_host is not None and o_host != host:
                continue
            if prefix is not None and not _prefix_matches(prefix, path):
                continue
            return rules
        return self._default

    def mode_for(self, host: str, path: str) -> NodeMode:
        return self.rules_for(host, path).mode


_NO_LISTS: frozenset[ListName] = frozenset()


class IPLists:
    """Allow/deny/gray lists as {prefix length: {network int: expiry}} for O(prefix lengths) lookups."""

    def __init__(self, entries: list[IPEntry]):
        # list -> version -> prefixlen -> network int -> expires_at (inf = never)
        self._tables: dict[str, dict[int, dict[int, dict[int, float]]]] = {n: {4: {}, 6: {}} for n in LIST_NAMES}
        self.count = 0
        for e in entries:
            net = parse_network(e.network)  # canonical already: IPEntry checked it when built
            expires = e.expires_at if e.expires_at is not None else float("inf")
            by_len = self._tables[e.list][net.version].setdefault(net.prefixlen, {})
            key = int(net.network_address)
            by_len[key] = max(by_len.get(key, 0.0), expires)
            self.count += 1

    def lists_for(self, ip: str, now: float | None = None) -> frozenset[ListName]:
        if not self.count:
            return _NO_LISTS
        addr = parse_ip(ip)
        if addr is None:
            return _NO_LISTS
        now = time.time() if now is None else now
        bits = 32 if addr.version == 4 else 128
        value = int(addr)
        found: set[ListName] = set()
        for name in LIST_NAMES:
            for prefixlen, nets in self._tables[name][addr.version].items():
                key = (value >> (bits - prefixlen)) << (bits - prefixlen) if prefixlen else 0
                expires = nets.get(key)
                if expires is not None and expires > now:
                    found.add(name)  # type: ignore[arg-type]
                    break
        return frozenset(found)


class Policy:
    def __init__(self, store: Store, initial: ModeSettings):
        self.store = store
        self._modes = ModeTable(initial)
        self._lists = IPLists([])
        self._reload_lock = asyncio.Lock()

    # -- loading and changing (console side)
    async def load(self, config_modes: ModeSettings, forced: bool) -> str:
        """Pick the mode settings at start; returns where they came from (for the log).

        Settings saved by the console win over the config file (they are the later decision),
        unless the mode was forced (`--mode`, or `mode_forced: true`). Only the console
        saves settings, so a config edit applies as long as the console never changed them.
        """
        saved = None if forced else await self.store.load_mode_settings()
        if saved is None:
            self._modes = ModeTable(config_modes)
            source = "command line" if forced else "config"
        else:
            self._modes = ModeTable(saved)
            source = "store (saved by the console; --mode overrides it)"
        await self.reload_ip_lists()
        return source

    async def get_mode_settings(self) -> ModeSettings:
        return self._modes.settings

    async def set_mode_settings(self, settings: ModeSettings) -> None:
        """Persist, then apply (the next message sees the new settings). A ModeSettings
        validated itself when it was built (node/rules/modes.py)."""
        await self.store.save_mode_settings(settings)
        self._modes = ModeTable(settings)
        log.info("mode settings changed: default=%s, %d override(s)", settings.default, len(settings.overrides))

    async def reload_ip_lists(self, periodic: bool = False) -> None:
        """Read the lists again (the console calls this after a change; the node every 30 s,
        which also picks up changes made through another node sharing the store)."""
        async with self._reload_lock:
            entries = await self.store.list_ip_entries(None, include_expired=False)
            self._lists = IPLists(entries)  # one assignment: the hot path sees old or new, never half
        log.log(logging.DEBUG if periodic else logging.INFO, "IP lists loaded: %d entries", self._lists.count)

    # -- hot path
    def rules_for(self, host: str, path: str) -> Rules:
        return self._modes.rules_for(host, path)

    def mode_for(self, host: str, path: str) -> NodeMode:
        return self._modes.mode_for(host, path)

    def lists_for(self, ip: str) -> frozenset[ListName]:
        return self._lists.lists_for(ip)

    @staticmethod
    def decide(mode: NodeMode, lists: frozenset[ListName], is_attack: bool, sync: bool,
               partial: bool = False, partial_inspection: PartialAction = "block") -> Decision:
        """`partial`: a limit ended the inspection early (Detection.partial)."""
        if mode == "off":
            return Decision(mode, False, False, "monitored", "mode off")
        if "allow" in lists:
            return Decision(mode, False, is_attack or partial, "monitored", "allowlist")
        if "deny" in lists:
            return Decision(mode, sync, True, "blocked" if sync else "monitored", "denylist")
        if not is_attack:
            if not partial:
                return Decision(mode, False, False, "monitored", "")
            if partial_inspection == "monitor":
                return Decision(mode, False, True, "monitored", "partial")
        blocks = mode == "block" or (mode == "safe_blocking" and "gray" in lists)
        block = blocks and sync
        return Decision(mode, block, True, "blocked" if block else "monitored", "attack" if is_attack else "partial")
