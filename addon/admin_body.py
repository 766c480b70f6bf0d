"""Request bodies as Kong's Admin API reads them: JSON, or form-encoded with Kong's key syntax.

`curl --data name=x --data url=http://...` sends `application/x-www-form-urlencoded`; Kong reads
`paths[]=/a&paths[]=/b` and `paths[1]=/a` as arrays, `config.blocking=true` and `service.name=s`
as nested objects, and coerces the strings by the schema (`true` -> boolean, `8080` -> number).
Without a schema at hand here, the coercion is by field name: the booleans and integers of
Kong's services/routes and of the plugin's `config` (taken from the pydantic model) are coerced;
everything else stays a string, and the declarative model judges the result.
"""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any
from urllib.parse import parse_qsl

from addon.config import PluginSettings


class BodyError(ValueError):
    """The body cannot be read at all (Kong: 400 `Cannot parse JSON body`)."""


_INDEX = re.compile(r"^(?P<key>[^\[\]]+)\[(?P<index>\d*)\]$")

# Kong's entity fields of these types (services, routes, plugins, at the top level of a body).
_BOOL_FIELDS = frozenset({"strip_path", "preserve_host", "enabled", "request_buffering", "response_buffering",
                          "tls_verify"})
_INT_FIELDS = frozenset({"port", "retries", "connect_timeout", "write_timeout", "read_timeout",
                         "regex_priority", "https_redirect_status_code", "tls_verify_depth"})
_ARRAY_FIELDS = frozenset({"paths", "hosts", "methods", "protocols", "tags", "snis"})


def _annotation_kinds(annotation: Any) -> set[type]:
    """The plain types an annotation admits (bool, int, list, str...), through Annotated/Optional."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _annotation_kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        kinds: set[type] = set()
        for arg in typing.get_args(annotation):
            kinds |= _annotation_kinds(arg)
        return kinds
    if origin is not None:
        return {origin}
    return {annotation} if isinstance(annotation, type) else set()


def _config_kinds() -> dict[str, set[type]]:
    return {name: _annotation_kinds(f.annotation) for name, f in PluginSettings.model_fields.items()}


_CONFIG_KINDS = _config_kinds()


def _coerce_scalar(value: str, kinds: set[type]) -> Any:
    if bool in kinds and value in ("true", "false"):
        return value == "true"
    if int in kinds and bool not in kinds and re.fullmatch(r"-?\d{1,18}", value):
        return int(value)
    return value


def _coerce(path: tuple[str, ...], value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if len(path) == 1:
        if path[0] in _BOOL_FIELDS:
            return _coerce_scalar(value, {bool})
        if path[0] in _INT_FIELDS:
            return _coerce_scalar(value, {int})
    if len(path) == 2 and path[0] == "config":
        return _coerce_scalar(value, _CONFIG_KINDS.get(path[1], set()))
    return value


def _set(target: dict[str, Any], keys: list[str], index: str | None, value: Any) -> None:
    node = target
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise BodyError(f"{'.'.join(keys)}: conflicting keys")
        node = child
    last = keys[-1]
    if index is None:
        if last in _ARRAY_FIELDS and len(keys) == 1:
            node.setdefault(last, [])
            if not isinstance(node[last], list):
                raise BodyError(f"{last}: conflicting keys")
            node[last].append(value)
        else:
            node[last] = value
        return
    items = node.setdefault(last, [])
    if not isinstance(items, list):
        raise BodyError(f"{'.'.join(keys)}: conflicting keys")
    if index == "":
        items.append(value)
        return
    pos = int(index) - 1  # Kong's arrays in forms are 1-based
    if pos < 0 or pos > 1000:
        raise BodyError(f"{'.'.join(keys)}[{index}]: bad index")
    while len(items) <= pos:
        items.append(None)
    items[pos] = value


def parse_form(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_key, value in parse_qsl(text, keep_blank_values=True, max_num_fields=1000):
        keys = raw_key.split(".")
        index = None
        m = _INDEX.match(keys[-1])
        if m:
            keys[-1], index = m.group("key"), m.group("index")
        if not all(keys):
            raise BodyError(f"{raw_key!r}: bad key")
        coerced = value if index is not None else _coerce(tuple(keys), value)
        _set(out, keys, index, coerced)
    return out


def parse_body(content_type: str, raw: bytes) -> dict[str, Any]:
    """The body as a dict. Empty body: `{}`."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not raw.strip():
        return {}
    if media == "application/json" or (not media and raw.lstrip()[:1] == b"{"):
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BodyError("Cannot parse JSON body") from None
        if not isinstance(data, dict):
            raise BodyError("Cannot parse JSON body")
        return data
    if media in ("application/x-www-form-urlencoded", ""):
        try:
            return parse_form(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise BodyError(f"Cannot parse form body: {e}") from None
    raise BodyError(f"Content-Type {media!r} is not supported (use application/json or a form)")
