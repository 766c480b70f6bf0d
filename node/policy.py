"""Modes, per-host / per-path overrides and IP lists: what the node does with a request.

Everything the hot path needs is held in memory (`mode_for`, `lists_for` are plain dict and
int work, no I/O); the store is the source of truth and is read again when the console
changes something (`set_mode_settings`, `reload_ip_lists`), and, on a store several nodes
share, when another node changed it (`on_store_change`).

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
import time
from collections import Counter
from dataclasses import dataclass

from node.rules.exceptions import ExceptionRule
from node.rules.ip_lists import LIST_NAMES, IPEntry, ListName
from node.rules.modes import ModeSettings, NodeMode, PartialAction
from node.rules.networks import IPAddress, parse_address, parse_network
from node.rules.paths import prefix_matches
from node.store.base import (
    CHANGE_ALL,
    CHANGE_EXCEPTIONS,
    CHANGE_IP_LISTS,
    CHANGE_MODES,
    ExceptedHit,
    Hit,
    Store,
    StoredAction,
)

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
            if prefix is not None and not prefix_matches(prefix, path):
                continue
            return rules
        return self._default

    def mode_for(self, host: str, path: str) -> NodeMode:
        return self.rules_for(host, path).mode


_NO_EXCEPTED: list[ExceptedHit] = []


def _location_covers(location: str | None, found: str) -> bool:
    # "json.a" covers "json.a" and "json.a.b", not "json.ab"
    return location is None or found == location or found.startswith(location + ".")


class ExceptionTable:
    """The exceptions ("not an attack here") indexed by rule id and by attack type.

    Applied to the engine's findings after detection (the engine and its caches never see
    them): a finding an exception covers is dropped from the verdict. The engine reports the
    findings of one type at one location together when their summed score reaches its
    threshold; when an exception took some of such a group, the rest stays an attack only if
    it still reaches the threshold on its own."""

    def __init__(self, rules: list[ExceptionRule]):
        self.rules = rules
        self.count = len(rules)
        # rule id / attack type -> host (None: any) -> exceptions: a finding is compared only with
        # the exceptions of its rule or type at its host or any host, however many there are
        self._by_rule: dict[str, dict[str | None, list[ExceptionRule]]] = {}
        self._by_type: dict[str, dict[str | None, list[ExceptionRule]]] = {}
        for r in rules:
            index, name = (self._by_rule, r.rule_id) if r.rule_id is not None else (self._by_type, r.attack_type)
            assert name is not None  # ExceptionRule checked that one of the two is set
            index.setdefault(name, {}).setdefault(r.host, []).append(r)

    def find(self, host: str, path: str, hit: Hit) -> ExceptionRule | None:
        """The first exception covering `hit` in a request to `host` and (normalised) `path`."""
        for by_host in (self._by_rule.get(hit.rule_id), self._by_type.get(hit.type)):
            if by_host is None:
                continue
            for candidates in (by_host.get(host), by_host.get(None)):
                for r in candidates or ():
                    if ((r.path_prefix is None or prefix_matches(r.path_prefix, path))
                            and _location_covers(r.location, hit.location)):
                        return r
        return None

    def apply(self, host: str, path: str, hits: list[Hit], threshold: int) -> tuple[list[Hit], list[ExceptedHit]]:
        """(the findings that stay attacks, the excepted ones with the exception that excused each)."""
        if not self.count or not hits:
            return hits, _NO_EXCEPTED
        kept: list[Hit] = []
        excepted: list[ExceptedHit] = []
        broken: dict[tuple[str, str], int] = {}  # (type, location) group -> an exception that took a member
        for hit in hits:
            rule = self.find(host, path, hit)
            if rule is None:
                kept.append(hit)
            else:
                excepted.append(ExceptedHit(hit, rule.id or 0))
                broken.setdefault((hit.type, hit.location), rule.id or 0)
        if not excepted:
            return hits, _NO_EXCEPTED
        if broken:
            left: Counter[tuple[str, str]] = Counter()
            for hit in kept:
                left[(hit.type, hit.location)] += hit.score
            weak = {g for g in broken if g in left and left[g] < threshold}
            if weak:
                excepted += [ExceptedHit(h, broken[(h.type, h.location)]) for h in kept if (h.type, h.location) in weak]
                kept = [h for h in kept if (h.type, h.location) not in weak]
        return kept, excepted


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
        self._exceptions = ExceptionTable([])
        self._exceptions_version: object = None  # the store's, when they were read
        self._excepted_counts: Counter[int] = Counter()  # requests let through, not yet in the store
        self._reload_lock = asyncio.Lock()
        self._exceptions_lock = asyncio.Lock()
        # One mode change or reload at a time: a reload that another node's change started
        # reads the store after this node's own change is applied, never before.
        self._modes_lock = asyncio.Lock()
        self._forced = False  # --mode: the saved mode settings are not used

    # -- loading and changing (console side)
    async def load(self, config_modes: ModeSettings, forced: bool) -> str:
        """Pick the mode settings at start; returns where they came from (for the log).

        Settings saved by the console win over the config file (they are the later decision),
        unless the mode was forced (`--mode`, or `mode_forced: true`). Only the console
        saves settings, so a config edit applies as long as the console never changed them.
        """
        self._forced = forced
        saved = None if forced else await self.store.load_mode_settings()
        if saved is None:
            self._modes = ModeTable(config_modes)
            source = "command line" if forced else "config"
        else:
            self._modes = ModeTable(saved)
            source = "store (saved by the console; --mode overrides it)"
        await self.reload_ip_lists()
        await self.reload_exceptions()
        return source

    async def get_mode_settings(self) -> ModeSettings:
        return self._modes.settings

    async def set_mode_settings(self, settings: ModeSettings) -> None:
        """Persist, then apply (the next message sees the new settings). A ModeSettings
        validated itself when it was built (node/rules/modes.py)."""
        async with self._modes_lock:
            await self.store.save_mode_settings(settings)
            self._modes = ModeTable(settings)
        log.info("mode settings changed: default=%s, %d override(s)", settings.default, len(settings.overrides))

    async def reload_mode_settings(self) -> None:
        """Apply the mode settings saved in the store (another node's console changed them);
        a node whose mode was forced (--mode) keeps its own."""
        if self._forced:
            return
        async with self._modes_lock:
            saved = await self.store.load_mode_settings()
            if saved is None or saved == self._modes.settings:
                return
            self._modes = ModeTable(saved)
        log.info("mode settings reloaded from the store: default=%s, %d override(s)", saved.default,
                 len(saved.overrides))

    async def on_store_change(self, topic: str) -> None:
        """Another node changed shared rules (Store.watch_changes): reload that part."""
        if topic in (CHANGE_IP_LISTS, CHANGE_ALL):
            await self.reload_ip_lists()
        if topic in (CHANGE_MODES, CHANGE_ALL):
            await self.reload_mode_settings()
        if topic in (CHANGE_EXCEPTIONS, CHANGE_ALL):
            await self.reload_exceptions()

    async def reload_ip_lists(self, periodic: bool = False) -> None:
        """Read the lists again (the console calls this after a change; the node every 30 s,
        which also picks up changes made through another node sharing the store)."""
        async with self._reload_lock:
            entries = await self.store.list_ip_entries(None, include_expired=False)
            self._lists = IPLists(entries)  # one assignment: the hot path sees old or new, never half
        log.log(logging.DEBUG if periodic else logging.INFO, "IP lists loaded: %d entries", self._lists.count)

    async def reload_exceptions(self, periodic: bool = False) -> None:
        """Read the exceptions again: the console after a change, the node every second (which
        also picks up an import or another node sharing the store). Rebuilt only on a change."""
        async with self._exceptions_lock:  # one reader at a time: an older read never lands last
            version = await self.store.exceptions_version()
            if periodic and version == self._exceptions_version:
                return
            rules = await self.store.list_exceptions()
            self._exceptions = ExceptionTable(rules)  # one assignment: the hot path sees old or new
            self._exceptions_version = version
        log.log(logging.DEBUG if periodic else logging.INFO, "exceptions loaded: %d", len(rules))

    async def flush_excepted_counts(self) -> None:
        """Add the requests the exceptions let through since the last flush to their counts."""
        if not self._excepted_counts:
            return
        counts, self._excepted_counts = self._excepted_counts, Counter()
        try:
            await self.store.add_excepted_requests(dict(counts), time.time())
        except Exception:
            self._excepted_counts.update(counts)  # kept for the next flush
            raise

    def exceptions(self) -> list[ExceptionRule]:
        return self._exceptions.rules

    # -- hot path
    def except_hits(self, host: str, path: str, hits: list[Hit], threshold: int) -> tuple[list[Hit], list[ExceptedHit]]:
        """The findings minus those an exception covers (ExceptionTable.apply)."""
        return self._exceptions.apply(host, path, hits, threshold)

    def count_excepted(self, excepted: list[ExceptedHit]) -> None:
        """A request passed because of these exceptions: count it once for each of them."""
        for exception_id in {e.exception_id for e in excepted}:
            self._excepted_counts[exception_id] += 1

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
