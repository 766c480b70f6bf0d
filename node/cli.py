"""`wallarm-node` / `python -m node`: load the config, start the endpoint and the console.

Start order: settings -> store (open, seed IP lists) -> engine -> policy -> listeners. Stop
order on SIGTERM/SIGINT: stop accepting on both listeners, let in-flight messages finish (up
to `shutdown_timeout_seconds`), then flush and close the store. SIGHUP reloads the config file
(node/reload.py: what applies live, what needs a restart); a SIGHUP during start-up is applied
once the node is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node import __version__
from node.admin import make_admin_app
from node.check_config import run_checks
from node.console.auth import resolve_console_token
from node.context import NodeContext
from node.detect.engine import Engine
from node.events import EventStream
from node.http1server import HTTPServer
from node.metrics import NodeMetrics
from node.pairing import Pairing
from node.policy import Policy
from node.reload import ConfigReloader
from node.server import Endpoint, JudgingLane, endpoint_ssl_context
from node.rules.modes import NODE_MODES
from node.settings import NodeSettings, SettingsError, load_settings
from node.store import open_store
from node.store.base import Store, StoreError
from node.store.location import resolve_location
from wallarm_wire.addresses import format_hostport, is_loopback_host
from wallarm_wire.jsonlog import JSONFormatter

log = logging.getLogger("node")

# subcommands before the flags (`wallarm-node check-config --config node.yaml`); none = serve
COMMANDS = {
    "check-config": "Check a node config (file, WALLARM_NODE_* variables, flags) without starting: "
                    "TLS pair, signatures, store. Exit 0 when valid, 2 otherwise.",
}

SWEEP_INTERVAL = 5.0
IP_LISTS_RELOAD_INTERVAL = 30.0
# exceptions made elsewhere (an import, another node on the store) apply within this; the
# requests they let through reach the store's counts as often
EXCEPTIONS_RELOAD_INTERVAL = 1.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wallarm-node", description="The Wallarm-style security node: "
                                "answers the mitmproxy connector (protocol v1), records attacks, serves the console. "
                                "`wallarm-node exceptions export|import` exports or imports its exceptions as YAML.")
    p.add_argument("--config", type=Path, help="YAML or JSON config file (see node.example.yaml)")
    p.add_argument("--listen", metavar="HOST:PORT", help="connector endpoint (default 127.0.0.1:5050)")
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="certificate for the connector endpoint")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="private key for the connector endpoint")
    p.add_argument("--db", metavar="PATH|DSN", help="attack store: a SQLite file or sqlite:///path (default "
                   "wallarm-node.db), or postgresql://user:pass@host/db that several nodes share")
    p.add_argument("--mode", choices=NODE_MODES, help="default node mode; wins over the mode saved by the console")
    p.add_argument("--console-listen", metavar="HOST:PORT", help="console, API, /live, /ready, /metrics (default 127.0.0.1:8090)")
    p.add_argument("--log-format", choices=("text", "json"), help="log lines as text (default) or one JSON object each")
    p.add_argument("--version", action="version", version=f"wallarm-node {__version__}")
    return p


def settings_from_args(args: argparse.Namespace) -> NodeSettings:
    overrides: dict[str, Any] = {
        "listen": args.listen,
        "tls_cert": str(args.tls_cert.resolve()) if args.tls_cert else None,
        "tls_key": str(args.tls_key.resolve()) if args.tls_key else None,
        "db": resolve_location(args.db, Path.cwd()) if args.db else None,
        "mode": args.mode,
        "console_listen": args.console_listen,
        "log_format": args.log_format,
        "mode_forced": True if args.mode else None,
    }
    return load_settings(args.config, overrides)


async def seed_ip_lists(store: Store, settings: NodeSettings) -> int:
    """Add the config's IP entries that the store does not hold yet (idempotent across restarts)."""
    existing = {(e.list, e.network) for e in await store.list_ip_entries(None, include_expired=False)}
    added = 0
    for entry in settings.seed_ip_entries():
        if (entry.list, entry.network) not in existing:
            await store.add_ip_entry(entry)
            added += 1
    return added


async def seed_exceptions(store: Store, settings: NodeSettings) -> int:
    """Add the config's exceptions that the store does not hold yet (idempotent); one removed
    from the file stays until removed in the console, like an IP list entry."""
    added, _ = await store.import_exceptions(settings.exceptions, replace=False)
    return added


Job = Callable[[], Awaitable[None]]


async def _periodic(interval: Callable[[], float], job: Job, name: str) -> None:
    while True:
        await asyncio.sleep(interval())  # read each round: a config reload may change it
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a failed round must not end the loop
            log.exception("%s failed", name)


async def serve(settings: NodeSettings, reload: Callable[[], NodeSettings] | None = None) -> int:
    """Run until SIGTERM/SIGINT. `reload` reads the settings again (on SIGHUP)."""
    # Signals are caught from the very start, so a SIGTERM during start-up still ends in a
    # clean stop (the node finishes starting, then stops at once) rather than a killed store,
    # and a SIGHUP (whose default action would kill the node) waits until the node is ready.
    stop = asyncio.Event()
    hup = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hup.set)
    try:
        store = open_store(settings.db)
        await store.open()
        try:
            return await _serve_with_store(settings, store, stop, hup, reload or (lambda: settings))
        finally:
            await store.close()
            log.info("attack store flushed and closed")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def _serve_with_store(settings: NodeSettings, store: Store, stop: asyncio.Event, hup: asyncio.Event,
                            reload: Callable[[], NodeSettings]) -> int:
    seeded = await seed_ip_lists(store, settings)
    seeded_exceptions = await seed_exceptions(store, settings)
    engine = Engine(max_body=settings.max_body_bytes)
    metrics = NodeMetrics()
    policy = Policy(store, settings.mode_settings())
    source = await policy.load(settings.mode_settings(), settings.mode_forced)
    modes = await policy.get_mode_settings()
    log.info("mode %s with %d override(s) (from %s); %d IP entries and %d exception(s) seeded from config",
             modes.default, len(modes.overrides), source, seeded, seeded_exceptions)

    pairing = Pairing(settings.pairing.ttl_seconds, settings.pairing.max_entries,
                      on_evict=lambda reason, side: metrics.pairing_evictions.inc(reason, side))
    metrics.add_gauge("wallarm_node_pairing_pending", "Messages waiting for their pair.", lambda: len(pairing))
    metrics.add_gauge("wallarm_node_store_queue_depth", "Writes waiting for the store's writer.",
                      lambda: float(store.gauges().queue_depth))
    metrics.add_counter("wallarm_node_store_dropped_writes", "Writes the store refused (queue full or closed).",
                        lambda: float(store.gauges().dropped_writes))
    metrics.add_counter("wallarm_node_store_write_errors", "Batches of writes the store failed to commit.",
                        lambda: float(store.gauges().write_errors))
    metrics.add_counter("wallarm_node_store_lost_writes", "Queued writes lost in batches that failed to commit.",
                        lambda: float(store.gauges().lost_writes))
    metrics.add_counter("wallarm_node_store_bad_records", "Malformed records the store skipped.",
                        lambda: float(store.gauges().bad_records))

    events = EventStream(settings.events, settings.instance, metrics.events.inc)
    ctx = NodeContext(settings=settings, store=store, policy=policy, engine=engine, metrics=metrics, events=events)
    ctx.console_token = resolve_console_token(settings.console_token, settings.db_file)
    if store.shared:  # another node changed IP lists, modes or exceptions: apply them here too
        store.watch_changes(policy.on_store_change)
    # large messages: judged off the loop, with their own engine
    lane = JudgingLane(lambda: Engine(max_body=settings.max_body_bytes))
    endpoint = Endpoint(ctx, pairing, lane)

    ssl_ctx = endpoint_ssl_context(settings)
    grace = settings.shutdown_timeout_seconds
    endpoint_server = HTTPServer(endpoint.respond, settings.max_body_bytes, endpoint.on_bad_request)
    admin_runner = web.AppRunner(make_admin_app(ctx), access_log=None, shutdown_timeout=grace, handle_signals=False)
    await admin_runner.setup()
    try:
        host, port = settings.listen_addr
        await endpoint_server.start(host, port, ssl_ctx, backlog=1024)
        chost, cport = settings.console_addr
        console_site = web.TCPSite(admin_runner, chost, cport)
        await console_site.start()
    except OSError as e:
        endpoint_server.close()
        lane.close()
        await admin_runner.cleanup()
        raise SettingsError(f"cannot listen: {e.strerror or e}") from e
    if not is_loopback_host(chost):
        log.warning("console on %s is plain HTTP off loopback: put a TLS proxy in front of it", settings.console_listen)
    ep_addr = format_hostport(*endpoint_server.address)
    console_addr = _bound(admin_runner)
    log.info("connector endpoint listening on %s://%s", "https" if ssl_ctx else "http", ep_addr)
    log.info("console listening on http://%s (health: /live /ready, metrics: /metrics)", console_addr)

    events.start()
    jobs = [
        asyncio.create_task(_periodic(lambda: SWEEP_INTERVAL, _sweeper(pairing), "pairing sweep")),
        asyncio.create_task(_periodic(lambda: ctx.settings.retention.interval_seconds, _retention(store, ctx),
                                      "retention")),
        asyncio.create_task(_periodic(lambda: IP_LISTS_RELOAD_INTERVAL,
                                      lambda: policy.reload_ip_lists(periodic=True), "IP list reload")),
        asyncio.create_task(_periodic(lambda: EXCEPTIONS_RELOAD_INTERVAL, _exceptions_sync(policy),
                                      "exception reload")),
        asyncio.create_task(_reload_on_hup(hup, ConfigReloader(
            ctx, reload, pairing, endpoint.apply_settings, lambda s: _seed_all(store, s)))),
    ]
    await _retention(store, ctx)()
    log.info("node ready (node id %s)", settings.node_name)
    await stop.wait()

    log.info("shutting down: no new connections, finishing in-flight messages (up to %.0fs)", grace)
    for job in jobs:
        job.cancel()
    # Endpoint first: the console may still be read while the last verdicts go out.
    left = await endpoint_server.drain(grace)  # stops listening first
    if left:
        log.warning("%d message(s) still in flight after %.0fs: closing them", left, grace)
    endpoint_server.close()
    lane.close()
    await events.stop()  # what was recorded reaches the SIEM before the node exits
    await admin_runner.cleanup()
    try:  # the requests let through since the last flush still count
        await policy.flush_excepted_counts()
    except StoreError as e:
        log.warning("exception counts not saved: %s", e)
    return 0


def _bound(runner: web.AppRunner) -> str:
    for addr in runner.addresses:
        if isinstance(addr, tuple):
            return format_hostport(addr[0], addr[1])
    return "?"


async def _seed_all(store: Store, settings: NodeSettings) -> int:
    """A config reload's seeding: IP entries and exceptions; returns the IP entries added."""
    await seed_exceptions(store, settings)
    return await seed_ip_lists(store, settings)


def _exceptions_sync(policy: Policy) -> Job:
    async def sync() -> None:
        await policy.flush_excepted_counts()
        await policy.reload_exceptions(periodic=True)
    return sync


def _sweeper(pairing: Pairing) -> Job:
    async def sweep() -> None:
        pairing.sweep()
    return sweep


async def _reload_on_hup(hup: asyncio.Event, reloader: ConfigReloader) -> None:
    while True:
        await hup.wait()
        hup.clear()  # SIGHUPs during a reload make one more reload, not one each
        log.info("SIGHUP: reloading the config")
        try:
            await reloader.reload()
        except Exception:  # noqa: BLE001 - a failed reload must not end the loop
            log.exception("config reload failed; keeping the last good config")


def _retention(store: Store, ctx: NodeContext) -> Job:
    async def apply() -> None:
        r = ctx.settings.retention
        max_age = r.max_age_days * 86400 if r.max_age_days is not None else None
        deleted = await store.apply_retention(max_age, r.max_count)
        if deleted:
            log.info("retention: deleted %d attack record(s)", deleted)
    return apply


def configure_logging(settings: NodeSettings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if settings.log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["exceptions"]:  # `wallarm-node exceptions export|import ...`
        from node.exceptions_cli import main as exceptions_main

        return exceptions_main(argv[1:])
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser()
    if command:
        parser.prog = f"wallarm-node {command}"
        parser.description = COMMANDS[command]
    args = parser.parse_args(argv[1:] if command else argv)
    try:
        settings = settings_from_args(args)
    except SettingsError as e:
        print(f"wallarm-node: {e}", file=sys.stderr)
        if command == "check-config":
            print("config has errors", file=sys.stderr)
        return 2
    if command == "check-config":
        return 0 if run_checks(settings) else 2
    configure_logging(settings)
    try:
        return asyncio.run(serve(settings, lambda: settings_from_args(args)))
    except (SettingsError, StoreError, ValueError) as e:
        log.error("%s", e)
        print(f"wallarm-node: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
