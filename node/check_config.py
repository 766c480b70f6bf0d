"""`wallarm-node check-config`: everything start-up would refuse, found without starting.

Reads the settings exactly as the node does (file, WALLARM_NODE_* variables, flags), then
checks what validation alone cannot: the TLS pair loads, the signature sets compile, the
attack store opens (and, for SQLite, its migrations apply), and no WALLARM_NODE_* variable is
misspelt (the node would silently ignore it). Prints one line per check; exit 0 when all pass,
2 otherwise - usable as a deploy step or an init container.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from node.detect.engine import Engine
from node.server import endpoint_ssl_context
from node.settings import ENV_PREFIX, NodeSettings
from node.store import open_store

# WALLARM_NODE_* variables that are not settings but are read elsewhere
_OTHER_VARIABLES = frozenset({"CACHE_DIR"})


def unknown_variables(environ: dict[str, str]) -> list[str]:
    """WALLARM_NODE_* variables that name no setting (typos: the node ignores them)."""
    fields = {name.upper() for name in NodeSettings.model_fields}
    out = []
    for name in environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        rest = name.upper()[len(ENV_PREFIX):]
        if rest.split("__", 1)[0] not in fields and rest not in _OTHER_VARIABLES:
            out.append(name)
    return sorted(out)


async def _store_opens(settings: NodeSettings) -> str:
    store = open_store(settings.db)
    await store.open()
    await store.close()
    return settings.db


def run_checks(settings: NodeSettings, environ: dict[str, str] | None = None,
               out: Callable[[str], None] = print) -> bool:
    env = dict(os.environ) if environ is None else environ
    checks: list[tuple[str, Callable[[], str]]] = [
        ("settings", lambda: f"mode {settings.mode}, {len(settings.overrides)} override(s), "
                             f"endpoint {settings.listen}, console {settings.console_listen}"),
        ("environment", lambda: _no_unknown(env)),
        ("tls", lambda: _tls(settings)),
        ("signatures", lambda: f"{len(Engine(max_body=settings.max_body_bytes).request_sigs.signatures)} request signatures compiled"),
        ("store", lambda: "opened " + asyncio.run(_store_opens(settings))),
    ]
    ok = True
    for name, check in checks:
        try:
            out(f"ok    {name}: {check()}")
        except Exception as e:  # noqa: BLE001 - each failed check is reported, the others still run
            ok = False
            out(f"FAIL  {name}: {e}")
    out("config is valid" if ok else "config has errors")
    return ok


def _no_unknown(environ: dict[str, str]) -> str:
    unknown = unknown_variables(environ)
    if unknown:
        raise ValueError(f"unknown variable(s) {', '.join(unknown)}: no such setting (see node.example.yaml)")
    return "no unknown WALLARM_NODE_* variables"


def _tls(settings: NodeSettings) -> str:
    if endpoint_ssl_context(settings) is None:
        return "plain HTTP (loopback endpoint)"
    return "certificate and key load (" + ("PEM text" if settings.tls_cert_pem else str(settings.tls_cert)) + ")"
