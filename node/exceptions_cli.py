"""`wallarm-node exceptions export|import`: the store's exceptions as YAML, and back.

The YAML is the node config's `exceptions:` section (an export can be pasted into node.yaml,
and a node.yaml can be imported). An import validates every item before it applies any, then
applies them in one store transaction; a running node on the same store sees them within a
second (it re-reads its exceptions every second).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from node.rules import RuleError
from node.rules.exceptions import ExceptionRule, exception_to_mapping, exceptions_from_list
from node.settings import SettingsError, load_settings, read_config_file
from node.store import open_store
from node.store.base import StoreError
from node.store.location import resolve_location


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wallarm-node exceptions",
                                description="Export or import the node's exceptions (\"not an attack here\") as YAML.")
    p.add_argument("--config", type=Path, help="the node's config file (its db is the store used)")
    p.add_argument("--db", metavar="PATH", help="the store (SQLite file or sqlite:///path); wins over --config")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("export", help="print the exceptions as YAML (the config's exceptions: section)")
    imp = sub.add_parser("import", help="add the exceptions of a YAML/JSON file (an export or a node config)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--replace", action="store_true", help="also delete the stored exceptions the file does not list")
    return p


def export_yaml(rules: list[ExceptionRule]) -> str:
    items = [{k: v for k, v in exception_to_mapping(r).items() if v not in (None, "")} for r in rules]
    return yaml.safe_dump({"exceptions": items}, sort_keys=False, allow_unicode=True)


def read_import(path: Path, created_by: str) -> list[ExceptionRule]:
    """Every exception of the file, all validated (SettingsError names the first bad one)."""
    data: dict[str, Any] = read_config_file(path)
    if "exceptions" not in data:
        raise SettingsError(f"{path}: no exceptions: list in it")
    try:
        return exceptions_from_list(data["exceptions"], created_by=created_by)
    except RuleError as e:
        raise SettingsError(f"{path}: {e}; nothing imported") from None


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    overrides = {"db": resolve_location(args.db, Path.cwd()) if args.db else None}
    settings = load_settings(args.config, overrides)
    rules = read_import(args.file, f"import by {getpass.getuser()}@{socket.gethostname()}") \
        if args.command == "import" else []
    store = open_store(settings.db)
    await store.open()
    try:
        if args.command == "export":
            out.write(export_yaml(await store.list_exceptions()))
            return 0
        added, deleted = await store.import_exceptions(rules, replace=args.replace)
        print(f"imported {args.file}: {added} exception(s) added, {len(rules) - added} already there, "
              f"{deleted} deleted", file=sys.stderr)
        return 0
    finally:
        await store.close()


def main(argv: list[str], out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args, out))
    except (SettingsError, StoreError, ValueError) as e:
        print(f"wallarm-node exceptions: {e}", file=sys.stderr)
        return 2
