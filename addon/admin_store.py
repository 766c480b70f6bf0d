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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from addon.admin_entities import AdminError, Entities, Located, schema_violation
from addon.atomic_file import locked, write_atomically

T = TypeVar("T")

# Validates the bytes of a whole declarative file and returns what the connector applies; raises
# pydantic's ValidationError (mapped to Kong's `fields`) or ValueError (a plain message).
Validate = Callable[[bytes], Any]
Apply = Callable[[bytes, Any], None]


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


def fields_from_error(err: ValidationError, where: dict[str, Located]) -> dict[str, Any]:
    """The model's errors as Kong's `fields`, relative to the entity each one is about."""
    fields: dict[str, Any] = {}
    for e in err.errors():
        loc = tuple(e["loc"])
        best: tuple[str | int, ...] = ()
        for located in where.values():
            if loc[:len(located.path)] == located.path and len(located.path) > len(best):
                best = located.path
        rest = [str(p) for p in loc[len(best):]] or ["@entity"]
        message = "unknown field" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        node = fields
        for key in rest[:-1]:
            child = node.setdefault(key, {})
            node = child if isinstance(child, dict) else node
        node[rest[-1]] = message
    return fields


class DeclarativeStore:
    def __init__(self, path: Path, validate: Validate, apply: Apply):
        self.path = path
        self._validate, self._apply = validate, apply
        self._lock = asyncio.Lock()
        self.running = Entities()
        self.running_hash = ""

    def loaded(self, raw: bytes) -> None:
        """The connector runs this document now (startup, a reload, or our own write)."""
        try:
            doc = decode_document(raw, is_yaml(self.path))
        except ValueError:
            return  # the connector validated it, so this cannot happen; keep the last view
        self.running = Entities.from_document(doc, self._stamp())
        self.running_hash = config_hash(raw)

    def _stamp(self) -> int:
        try:
            return int(self.path.stat().st_mtime)
        except OSError:
            return int(time.time())

    async def change(self, mutate: Callable[[Entities], T]) -> T:
        """Run `mutate` on the file's current entities and write, validate and apply the result."""
        async with self._lock:
            result, raw, applied = await asyncio.to_thread(self._transact, mutate)
            self._apply(raw, applied)
            self.loaded(raw)
        return result

    def _transact(self, mutate: Callable[[Entities], T]) -> tuple[T, bytes, Any]:
        yaml_file = is_yaml(self.path)
        with locked(self.path):
            try:
                current = decode_document(self.path.read_bytes(), yaml_file)
            except (OSError, ValueError) as e:
                raise AdminError(409, {"message": f"the declarative file {self.path} cannot be read ({e}); "
                                                  "fix it before changing it through the Admin API"}) from None
            entities = Entities.from_document(current, self._stamp())
            result = mutate(entities)
            doc, where = entities.to_document()
            raw = encode_document(doc, yaml_file)
            try:
                applied = self._validate(raw)
            except ValidationError as e:
                raise schema_violation(fields_from_error(e, where)) from None
            except ValueError as e:
                raise schema_violation({"@entity": str(e)}) from None
            write_atomically(self.path, raw)
        return result, raw, applied
