"""The Admin API's writes to the declarative file: read, change, validate, write, apply.

One change is one transaction, serialized twice: an asyncio lock orders the writes of this
process, and a `flock` on a sibling lock file orders them with other mitmdump workers sharing the
file. Inside, the file is read again (never a cached copy, so another process's write is kept),
changed, rendered, validated with the declarative model, and only then written atomically; a
change the model refuses answers 400 and leaves both the file and the running config untouched.
The new config is applied at once through `apply`, not on the watcher's next poll.

`GET`s are answered from `running`: the document the connector runs now.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from addon.admin_entities import AdminError, Entities, Located, schema_violation
from addon.atomic_file import locked, write_atomically
from addon.config import ConfigError
from addon.declarative import Declarative, load_declarative

T = TypeVar("T")

Apply = Callable[[bytes, Declarative], None]  # the connector runs this version now


def is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yml", ".yaml")


def decode_document(raw: bytes, yaml_file: bool) -> dict[str, Any]:
    """A declarative file's bytes as a dict (JSON, or YAML for a .yml/.yaml file)."""
    try:
        data = yaml.safe_load(raw) if yaml_file else json.loads(raw)
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot parse: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("the top level must be an object")
    return data


def encode_document(doc: dict[str, Any], yaml_file: bool) -> bytes:
    if yaml_file:
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def config_hash(raw: bytes) -> str:
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()  # Kong's DB-less configuration_hash


_PROBLEM = re.compile(r"(?:^|; )(?P<loc>\(top level\)|[\w.]+): ")


_NAMED_FIELD = re.compile(r"^([a-z_]+): (.+)$", re.S)


def problems(message: str, source: str) -> list[tuple[str, str]]:
    """`loc: message` pairs out of the declarative model's error text (`SOURCE: loc: msg; loc: msg`)."""
    text = message.removeprefix(f"{source}: ")
    starts = list(_PROBLEM.finditer(text))
    if not starts:
        return [("", text)]
    out = []
    for m, following in zip(starts, starts[1:] + [None]):
        end = following.start() if following is not None else len(text)
        loc = "" if m.group("loc") == "(top level)" else m.group("loc")
        out.append((loc, text[m.end():end]))
    return out


def fields_from_problems(found: list[tuple[str, str]], where: dict[str, Located]) -> dict[str, Any]:
    """The model's problems as Kong's `fields`, relative to the entity each one is about."""
    fields: dict[str, Any] = {}
    for loc, message in found:
        parts = loc.split(".") if loc else []
        best: tuple[str, ...] = ()
        for located in where.values():
            path = tuple(str(p) for p in located.path)
            if tuple(parts[:len(path)]) == path and len(path) > len(best):
                best = path
        rest = parts[len(best):]
        named = _NAMED_FIELD.match(message)
        if not rest and named:  # an entity-level check that names its field ("retries: only ...")
            rest, message = [named.group(1)], named.group(2)
        rest = rest or ["@entity"]
        node = fields
        for key in rest[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                break
            node = child
        node[rest[-1]] = message
    return fields


def entity_ids(decl: Declarative) -> dict[str, str]:
    """The ids the model gave services and routes, by where each is written."""
    return {**{s.loc: s.id for s in decl.services}, **{r.loc: r.id for r in decl.routes}}


class DeclarativeStore:
    def __init__(self, path: Path, apply: Apply):
        self.path = path
        self._apply = apply
        self._lock = asyncio.Lock()
        self.running = Entities()
        self.running_hash = ""

    def validate(self, raw: bytes) -> Declarative:
        """The declarative model's judgement of a whole file (ConfigError names the fields)."""
        return load_declarative(raw, base_dir=self.path.resolve().parent, source=str(self.path))

    def loaded(self, raw: bytes, decl: Declarative) -> None:
        """The connector runs this version now (startup, a reload, or our own write)."""
        try:
            doc = decode_document(raw, is_yaml(self.path))
        except ValueError:
            return  # the connector validated it, so this cannot happen; keep the last view
        self.running = Entities.from_document(doc, entity_ids(decl), self._stamp())
        self.running_hash = config_hash(raw)

    def _stamp(self) -> int:
        try:
            return int(self.path.stat().st_mtime)
        except OSError:
            return int(time.time())

    async def change(self, mutate: Callable[[Entities], T]) -> T:
        """Run `mutate` on the file's current entities and write, validate and apply the result."""
        async with self._lock:
            result, raw, decl = await asyncio.to_thread(self._transact, mutate)
            self._apply(raw, decl)
            self.loaded(raw, decl)
        return result

    def _transact(self, mutate: Callable[[Entities], T]) -> tuple[T, bytes, Declarative]:
        yaml_file = is_yaml(self.path)
        with locked(self.path):
            try:
                current_raw = self.path.read_bytes()
                current = decode_document(current_raw, yaml_file)
                current_ids = entity_ids(self.validate(current_raw))
            except (OSError, ValueError) as e:
                raise AdminError(409, {"message": f"the declarative file cannot be used ({e}); fix it before "
                                                  "changing it through the Admin API"}) from None
            entities = Entities.from_document(current, current_ids, self._stamp())
            result = mutate(entities)
            doc, where = entities.to_document()
            raw = encode_document(doc, yaml_file)
            try:
                decl = self.validate(raw)
            except ConfigError as e:
                raise schema_violation(fields_from_problems(problems(str(e), str(self.path)), where)) from None
            try:
                write_atomically(self.path, raw)
            except OSError as e:  # a read-only mount, a full disk: nothing was replaced
                raise AdminError(500, {"message": f"cannot write the declarative file: {e.strerror or e}"}) from None
        return result, raw, decl
