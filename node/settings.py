"""Node configuration: a YAML or JSON file, then `WALLARM_NODE_*` environment variables, then
command-line flags (each wins over the one before), validated by pydantic.

Every setting has a variable: `WALLARM_NODE_MODE=monitoring`, nested ones with `__`
(`WALLARM_NODE_RETENTION__MAX_AGE_DAYS=7`), lists and mappings as JSON
(`WALLARM_NODE_IP_LISTS='{"deny": ["203.0.113.7"]}'`), so `docker run -e ...` needs no file.
Relative paths inside the file resolve against the file's directory (so a config and its
certificates can travel together); relative paths given in the environment or on the command
line resolve against the working directory, like every other CLI.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic_settings import EnvSettingsSource
from pydantic_settings import SettingsError as EnvError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from node.events import EventsConfig
from node.rules.exceptions import ExceptionRule, exceptions_from_list
from node.rules.ip_lists import MAX_COMMENT, IPEntry
from node.rules.modes import ModeOverride, ModeSettings, NodeMode, PartialAction, override_from_mapping
from node.rules.networks import parse_network
from node.store.location import db_file, postgres_dsn, resolve_location
from wallarm_wire.addresses import is_loopback_host, parse_hostport
from wallarm_wire.config_file import ConfigFileError, read_config_file as read_bounded

ENV_PREFIX = "WALLARM_NODE_"
DEFAULT_LISTEN = "127.0.0.1:5050"
DEFAULT_CONSOLE_LISTEN = "127.0.0.1:8090"
DEFAULT_DB = "wallarm-node.db"
# Bytes of a message the endpoint accepts, and of a request body the engine inspects (past it
# the inspection is partial: see partial_inspection). Overrides may set a lower body limit.
DEFAULT_MAX_BODY = 8 * 1024 * 1024


class SettingsError(ValueError):
    """A config that cannot be used; `str(err)` names the file and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _yaml_off(v: Any) -> Any:
    # YAML 1.1 reads a bare `off` as false: `mode: off` must still mean the mode "off".
    return "off" if v is False else v


def _overrides(v: Any) -> Any:
    if not isinstance(v, list):
        return v  # pydantic says "should be a valid list"
    out = []
    for i, item in enumerate(v):
        if isinstance(item, dict):
            item = {**item, "mode": _yaml_off(item.get("mode"))}
        try:
            out.append(item if isinstance(item, ModeOverride) else override_from_mapping(item))
        except ValueError as e:
            raise ValueError(f"[{i}] {e}") from None
    return out


class IPListItem(_Model):
    network: str
    comment: str = Field(default="", max_length=MAX_COMMENT)
    expires_at: float | None = None  # unix seconds
    ttl_seconds: float | None = Field(default=None, gt=0)  # relative expiry, from node start

    @field_validator("network")
    @classmethod
    def _net(cls, v: str) -> str:
        return str(parse_network(v))


def _items(v: Any) -> Any:
    # A bare string is shorthand for {"network": "..."}.
    if isinstance(v, list):
        return [{"network": x} if isinstance(x, str) else x for x in v]
    return v


class IPListsConfig(_Model):
    """Entries added to the store at start (idempotent): handy for deployments and tests."""

    allow: list[IPListItem] = []
    deny: list[IPListItem] = []
    gray: list[IPListItem] = []

    @field_validator("allow", "deny", "gray", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return _items(v)


class PairingConfig(_Model):
    ttl_seconds: float = Field(default=60.0, gt=0)
    max_entries: int = Field(default=100_000, gt=0)


class RetentionConfig(_Model):
    max_age_days: float | None = Field(default=30.0, gt=0)
    max_count: int | None = Field(default=1_000_000, gt=0)
    interval_seconds: float = Field(default=300.0, gt=0)


class NodeSettings(_Model):
    listen: str = DEFAULT_LISTEN
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # the same pair as PEM text (WALLARM_NODE_TLS_CERT_PEM="$(cat node.pem)"): a container needs
    # no mounted file; when given, it is used instead of tls_cert / tls_key
    tls_cert_pem: str | None = None
    tls_key_pem: str | None = None
    shared_secret: str | None = None  # connectors must send it in X-Wallarm-Secret
    db: str = DEFAULT_DB  # a file path, sqlite:///path, or postgresql://... (shared by several nodes)
    mode: NodeMode = "block"
    # what a request counts as when a limit ended its inspection early (docs/node.md)
    partial_inspection: PartialAction = "block"
    overrides: list[ModeOverride] = []  # validated by node/rules/modes.py
    console_listen: str = DEFAULT_CONSOLE_LISTEN
    console_token: str | None = None
    instance: str = Field(default_factory=socket.gethostname)
    # Which node judged a record (shown in the console): default instance:port of `listen`.
    # Nodes sharing a PostgreSQL store need distinct ones.
    node_id: str | None = Field(default=None, min_length=1, max_length=200)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, gt=0)
    ip_lists: IPListsConfig = IPListsConfig()
    # "not an attack here" exceptions added to the store at start and on reload (node/rules/exceptions.py)
    exceptions: list[ExceptionRule] = []
    pairing: PairingConfig = PairingConfig()
    retention: RetentionConfig = RetentionConfig()
    events: EventsConfig = EventsConfig()  # the attack event stream for SIEMs (node/events.py)
    shutdown_timeout_seconds: float = Field(default=10.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line (wallarm_wire/jsonlog.py)
    # Set only when --mode was given: it then wins over the mode saved by the console.
    mode_forced: bool = False

    _mode_off = field_validator("mode", mode="before")(classmethod(lambda cls, v: _yaml_off(v)))
    _overrides = field_validator("overrides", mode="before")(classmethod(lambda cls, v: _overrides(v)))

    @field_validator("exceptions", mode="before")
    @classmethod
    def _exceptions(cls, v: Any) -> Any:
        if isinstance(v, list) and all(isinstance(x, ExceptionRule) for x in v):
            return v
        return exceptions_from_list(v, created_by="config")  # RuleError is a ValueError: pydantic names the field

    @field_validator("db")
    @classmethod
    def _db(cls, v: str) -> str:
        if postgres_dsn(v) is None:
            db_file(v)
        return v

    @field_validator("listen", "console_listen")
    @classmethod
    def _addr(cls, v: str) -> str:
        parse_hostport(v)
        return v

    @field_validator("shared_secret", "console_token", "tls_cert_pem", "tls_key_pem")
    @classmethod
    def _nonempty(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            return None
        return v

    @model_validator(mode="after")
    def _mode_settings(self) -> NodeSettings:
        self.mode_settings()  # the rules across overrides (no duplicates, a bounded count)
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> NodeSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if (self.tls_cert_pem is None) != (self.tls_key_pem is None):
            raise ValueError("tls_cert_pem and tls_key_pem must be given together")
        host, _ = parse_hostport(self.listen)
        if not self.tls_enabled and not is_loopback_host(host):
            raise ValueError(
                f"listen {self.listen!r} is not a loopback address: plain HTTP is allowed only on "
                "loopback; give tls_cert and tls_key (or --tls-cert/--tls-key) to listen elsewhere"
            )
        return self

    @model_validator(mode="after")
    def _override_body_limits(self) -> NodeSettings:
        for i, o in enumerate(self.overrides):
            if o.max_body_bytes is not None and o.max_body_bytes > self.max_body_bytes:
                raise ValueError(f"overrides[{i}].max_body_bytes {o.max_body_bytes} is over max_body_bytes "
                                 f"{self.max_body_bytes} (the largest message the node accepts)")
        return self

    # -- derived values used by the rest of the node
    @property
    def listen_addr(self) -> tuple[str, int]:
        return parse_hostport(self.listen)

    @property
    def console_addr(self) -> tuple[str, int]:
        return parse_hostport(self.console_listen)

    @property
    def db_file(self) -> Path | None:
        """The SQLite file `db` names (a path or sqlite:///path); None for a PostgreSQL store."""
        return None if self.shared_store else db_file(self.db)

    @property
    def shared_store(self) -> bool:
        """`db` is a PostgreSQL DSN: several nodes may share the store."""
        return postgres_dsn(self.db) is not None

    @property
    def node_name(self) -> str:
        """The node id its records carry: `node_id`, else `instance:port` of `listen`."""
        return self.node_id or f"{self.instance}:{self.listen_addr[1]}"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None or self.tls_cert_pem is not None

    def mode_settings(self) -> ModeSettings:
        return ModeSettings(default=self.mode, overrides=self.overrides, partial_inspection=self.partial_inspection)

    def seed_ip_entries(self, now: float | None = None) -> list[IPEntry]:
        now = time.time() if now is None else now
        out: list[IPEntry] = []
        for name in ("allow", "deny", "gray"):
            for item in getattr(self.ip_lists, name):
                expires = item.expires_at
                if item.ttl_seconds is not None:
                    expires = now + item.ttl_seconds
                out.append(IPEntry(name, item.network, expires, item.comment or "from config", now))  # type: ignore[arg-type]
        return out


_PATH_FIELDS = ("tls_cert", "tls_key")


def read_config_file(path: Path) -> dict[str, Any]:
    try:  # bounded and non-blocking: a FIFO, a directory or a 50 MB file is refused at once
        text = read_bounded(path).decode("utf-8")
    except ConfigFileError as e:
        raise SettingsError(f"config {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise SettingsError(f"config {path} is not UTF-8: {e}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text) if text.strip() else {}
        else:
            data = yaml.safe_load(text) or {}
    except (ValueError, yaml.YAMLError, RecursionError) as e:  # RecursionError: nesting deeper than the stack
        raise SettingsError(f"config {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {e}") from e
    if not isinstance(data, dict):
        raise SettingsError(f"config {path}: the top level must be a mapping, got {type(data).__name__}")
    base = path.resolve().parent
    for key in _PATH_FIELDS:
        value = data.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            data[key] = str(base / value)
    if isinstance(data.get("db"), str) and data["db"].strip():
        # sqlite:///relative.db is relative like a plain path: to the config file's folder
        data["db"] = resolve_location(data["db"], base)
    return data


def format_validation(err: ValidationError, source: str) -> str:
    lines = [f"invalid node config ({source}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def environment_values() -> dict[str, Any]:
    """The settings given as WALLARM_NODE_* variables (nested keys split on `__`)."""
    try:
        data = EnvSettingsSource(NodeSettings, env_prefix=ENV_PREFIX, env_nested_delimiter="__",  # type: ignore[arg-type]
                                 case_sensitive=False)()
    except EnvError as e:  # a list or mapping variable that is not JSON
        raise SettingsError(f"invalid node config (environment): {e}") from None
    for key in _PATH_FIELDS:
        if isinstance(data.get(key), str) and data[key]:
            data[key] = str(Path(data[key]).resolve())
    if isinstance(data.get("db"), str) and data["db"].strip():
        data["db"] = resolve_location(data["db"], Path.cwd())
    return data


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`; mappings merge key by key (RETENTION__MAX_AGE_DAYS keeps the file's
    other retention settings), anything else is replaced whole."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(config_path: Path | None = None, overrides: dict[str, Any] | None = None,
                  use_environment: bool = True) -> NodeSettings:
    """File values, then WALLARM_NODE_* variables, then non-None `overrides` (the CLI flags)."""
    data: dict[str, Any] = read_config_file(config_path) if config_path else {}
    env = environment_values() if use_environment else {}
    data = _merge(data, env)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    source = " + ".join(filter(None, (str(config_path) if config_path else "",
                                       "environment" if env else "", "command line")))
    try:
        return NodeSettings.model_validate(data)
    except ValidationError as e:
        raise SettingsError(format_validation(e, source)) from None
