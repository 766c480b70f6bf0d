"""decK-style YAML to and from this connector's state, so a config moves between a real Kong and here.

decK's files (`deck gateway dump` / `deck gateway sync`) are Kong's declarative format: services
with their routes and plugins nested, global plugins at the top, `_format_version: "3.0"`, no ids or
timestamps unless asked for. The connector's state comes from its Admin API (Kong's response
shapes) or from its declarative file; both become `Entities`, which nest the same way. Going the
other way, only what this connector implements is kept: other plugins and entity kinds (consumers,
upstreams, certificates...) are dropped with a note, and the result is validated by the
declarative model before anything is written.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from addon.admin_entities import DEFAULTS, FORMAT_VERSION, KINDS, MASK, Entities
from addon.admin_store import decode_document, entity_ids, is_yaml
from addon.config import PLUGIN_NAME
from addon.declarative import load_declarative

TIMESTAMPS = ("created_at", "updated_at")


def _kong_fields(kind: str, entity: dict[str, Any]) -> dict[str, Any]:
    """An Admin API view without this connector's extras (version, node_breakers...)."""
    keep = set(DEFAULTS[kind]) | {"id", "config", *TIMESTAMPS}
    return {k: v for k, v in entity.items() if k in keep}


def entities_from_admin(base_url: str, token: str | None = None, timeout: float = 10.0) -> Entities:
    """The state as a running connector's (or a real Kong's) Admin API shows it."""
    headers = {"Kong-Admin-Token": token} if token else {}
    lists: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        items: list[dict[str, Any]] = []
        url: str | None = f"{base_url.rstrip('/')}/{kind}"
        while url:
            req = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - an admin URL the user gives
                page = json.load(r)
            items += [_kong_fields(kind, e) for e in page.get("data", [])]
            nxt = page.get("next")
            url = f"{base_url.rstrip('/')}{nxt}" if isinstance(nxt, str) and nxt.startswith("/") else nxt
        lists[kind] = items
    return Entities(services=lists["services"], routes=lists["routes"], plugins=lists["plugins"])


def entities_from_file(path: Path) -> Entities:
    raw = path.read_bytes()
    decl = load_declarative(raw, base_dir=path.resolve().parent, source=str(path))
    return Entities.from_document(decode_document(raw, is_yaml(path)), entity_ids(decl), int(path.stat().st_mtime))


def _prune(value: Any, with_ids: bool, notes: list[str], where: str) -> Any:
    """decK's shape: no nulls, and no ids/timestamps unless asked; a masked secret cannot travel."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None or (not with_ids and k in ("id", *TIMESTAMPS)):
                continue
            if k == "node_secret" and v == MASK:
                notes.append(f"{where}: node_secret is masked by the Admin API and was left out; set it again")
                continue
            out[k] = _prune(v, with_ids, notes, f"{where}.{k}")
        return out
    if isinstance(value, list):
        return [_prune(v, with_ids, notes, f"{where}.{i}") for i, v in enumerate(value)]
    return value


def to_deck(entities: Entities, with_ids: bool = False) -> tuple[str, list[str]]:
    """decK YAML for the state, and notes about what could not be carried."""
    notes: list[str] = []
    doc, _ = entities.to_document()  # nested: no entity needs a reference by id
    doc = _prune(doc, with_ids, notes, "")
    doc["_format_version"] = FORMAT_VERSION
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), notes


def from_deck(text: str, base_dir: Path, source: str = "<deck>") -> tuple[dict[str, Any], list[str]]:
    """A declarative document this connector loads (validated), from decK YAML, and notes about
    what was dropped. Raises ConfigError (naming the field) if the result is not valid."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{source}: the top level must be a mapping")
    notes: list[str] = []
    out: dict[str, Any] = {"_format_version": str(data.get("_format_version", FORMAT_VERSION))}
    for key, value in data.items():
        if key == "_format_version":
            continue
        if key not in KINDS:
            notes.append(f"{key}: not supported by this connector, left out")
            continue
        out[key] = value
    _drop_foreign_plugins(out, notes, "")
    load_declarative(json.dumps(out).encode(), base_dir=base_dir, source=source)
    return out, notes


def _drop_foreign_plugins(node: Any, notes: list[str], where: str) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _drop_foreign_plugins(item, notes, f"{where}.{i}" if where else str(i))
        return
    if not isinstance(node, dict):
        return
    plugins = node.get("plugins")
    if isinstance(plugins, list):
        kept = []
        for i, p in enumerate(plugins):
            if isinstance(p, dict) and p.get("name") != PLUGIN_NAME:
                notes.append(f"{where + '.' if where else ''}plugins.{i}: plugin {p.get('name')!r} is not "
                             "this connector's, left out")
            else:
                kept.append(p)
        node["plugins"] = kept
    for key in ("services", "routes"):
        if key in node:
            _drop_foreign_plugins(node[key], notes, f"{where + '.' if where else ''}{key}")
