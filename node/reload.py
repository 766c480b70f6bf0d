"""Reload the node's config on SIGHUP: apply what can change live, keep the last good on error.

Live (the next message sees it): `mode`, `overrides` and `partial_inspection` (unless the console
saved its own, which win as at start; `--mode` still wins over both), `ip_lists` and `exceptions`
seeds (entries added, like at start; an entry removed from the file stays in the store: the
console removes it), `log_level`, `shared_secret`, `instance`, `node_id`, `pairing.*`, `retention.*`.

Needs a restart (a changed value is logged and ignored; the running value stays): the listeners
and their TLS (`listen`, `console_listen`, `tls_cert`, `tls_key`), the store (`db`),
`console_token` (sessions hang on it), `max_body_bytes` (the server's buffers and the engines are
sized by it; a reloaded override's body limit must fit the running one) and
`shutdown_timeout_seconds`, `log_format`, `events.*` (the SIEM stream's sinks).

A config that cannot be read or validated changes nothing: one ERROR line names the file and the
problem, `wallarm_node_config_errors_total` counts it. A reload that applied counts in
`wallarm_node_config_reloads_total`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from node.context import NodeContext
from node.pairing import Pairing
from node.settings import NodeSettings, format_validation

log = logging.getLogger("node.reload")

RESTART_FIELDS = ("listen", "console_listen", "tls_cert", "tls_key", "tls_cert_pem", "tls_key_pem", "db", "console_token", "max_body_bytes", "log_format",
                  "shutdown_timeout_seconds")

SeedLists = Callable[[NodeSettings], Awaitable[int]]


class ConfigReloader:
    def __init__(self, ctx: NodeContext, load: Callable[[], NodeSettings], pairing: Pairing,
                 apply_endpoint: Callable[[NodeSettings], None], seed_lists: SeedLists):
        self.ctx = ctx
        self._load = load
        self._pairing = pairing
        self._apply_endpoint = apply_endpoint
        self._seed_lists = seed_lists
        self._lock = asyncio.Lock()  # SIGHUPs in a burst: one reload at a time, each sees the file as it is

    async def reload(self) -> bool:
        """Read the config again and apply it; False (and one ERROR line) when it cannot be used."""
        async with self._lock:
            metrics = self.ctx.metrics
            try:
                new = await asyncio.to_thread(self._load)  # a bounded read, off the loop all the same
            except ValueError as e:  # SettingsError, or a value no validator named
                return self._refuse(str(e))
            old = self.ctx.settings
            ignored = [f for f in RESTART_FIELDS if getattr(new, f) != getattr(old, f)]
            try:  # validated again with the running values: an override's body limit must fit the running one
                applied = NodeSettings.model_validate({**dict(new), **{f: getattr(old, f) for f in RESTART_FIELDS}})
            except ValidationError as e:
                return self._refuse(f"with the running values of {', '.join(ignored)} (they need a restart): "
                                    f"{format_validation(e, 'reloaded config')}")
            try:
                await self._apply(old, applied)
            except Exception as e:  # noqa: BLE001 - the store failed (disk full, closed): say so, count it
                log.exception("config reload failed while applying it")
                return self._refuse(f"cannot apply: {e}")
            metrics.config_reloads.inc()
            if ignored:
                log.warning("config reloaded; changed but needing a restart (running values kept): %s",
                            ", ".join(ignored))
            else:
                log.info("config reloaded")
            return True

    def _refuse(self, problem: str) -> bool:
        self.ctx.metrics.config_errors.inc()
        log.error("config reload refused: %s; keeping the last good config", " ".join(problem.split()))
        return False

    async def _apply(self, old: NodeSettings, new: NodeSettings) -> None:
        # The steps that touch the store first: if it fails, the in-memory settings are still the old ones.
        seeded = await self._seed_lists(new)
        policy = self.ctx.policy
        source = await policy.load(new.mode_settings(), new.mode_forced)  # the start's rules; reloads IP lists
        modes = await policy.get_mode_settings()
        logging.getLogger().setLevel(new.log_level)
        self._pairing.ttl = new.pairing.ttl_seconds
        self._pairing.cap = new.pairing.max_entries
        self._apply_endpoint(new)
        self.ctx.settings = new
        if new.mode_settings() != old.mode_settings() and not source.startswith(("config", "command line")):
            log.warning("config mode settings changed, but those saved by the console win: %s", source)
        log.info("mode %s with %d override(s) (from %s); %d IP entries seeded from config",
                 modes.default, len(modes.overrides), source, seeded)
