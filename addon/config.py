"""The plugin configuration: `enable-plugin.json` as pydantic models, validated like Kong's schema.

The seed file loads unchanged; everything we add lives under `config` with a default that keeps
the seed's behaviour. Unknown fields are an error naming the field, as in Kong.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from wallarm_wire.addresses import is_loopback_host
from wallarm_wire.config_file import ConfigFileError, read_config_file
from mitmproxy import flowfilter
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError,
                      field_serializer, field_validator, model_validator)

PLUGIN_NAME = "wallarm-plugin"
DEFAULT_BLOCK_STATUS = 403

# Kong's plugin protocols. gRPC rides on HTTP/2, which mitmproxy handles as HTTP: `grpc` counts as
# `http` and `grpcs` as `https` (the plugin never acts on fewer flows than listed).
Protocol = Literal["grpc", "grpcs", "http", "https"]
KONG_DEFAULT_PROTOCOLS: tuple[str, ...] = ("grpc", "grpcs", "http", "https")


class ConfigError(ValueError):
    """The configuration file cannot be used; the message names the file and the problem."""


class NodeAddress(BaseModel):
    """One parsed node URL: where the connector POSTs its messages."""

    model_config = ConfigDict(frozen=True)

    url: str
    scheme: Literal["http", "https"]
    host: str
    port: int
    path: str

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def parse_node_address(raw: str) -> NodeAddress:
    raw = raw.strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{raw!r}: the node address must be an https:// URL")
    if not parts.hostname:
        raise ValueError(f"{raw!r}: no host in the node address")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(f"{raw!r}: plain http is allowed only to a loopback host; use https")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{raw!r}: the node address may not carry a query, fragment or credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise ValueError(f"{raw!r}: bad port") from e
    return NodeAddress(url=raw, scheme=parts.scheme, host=parts.hostname, port=port,  # type: ignore[arg-type]
                       path=parts.path or "/")


PositiveInt = Annotated[int, Field(gt=0, strict=True)]
MAX_CA_FILE_BYTES = 4 * 1024 * 1024  # a system-wide bundle is ~200 KB


def compile_filter(expression: str) -> flowfilter.TFilter:
    """A mitmproxy flow-filter expression, compiled (ValueError with the reason if it is not one)."""
    if not expression.strip():
        raise ValueError("empty filter expression")
    return flowfilter.parse(expression)


class EntityRef(BaseModel):
    """A reference to a service or route, as Kong returns it (`{"id": ...}`); a declarative file may
    also give the bare name or id as a string, or `{"name": ...}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictStr | None = None
    name: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_string(cls, value: object) -> object:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_key(self) -> EntityRef:
        if (self.id is None) == (self.name is None):
            raise ValueError("give exactly one of id or name")
        return self

    @property
    def key(self) -> str:
        return self.id if self.id is not None else self.name  # type: ignore[return-value]


def parse_cidr(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network (`10.0.0.0/8`) or one address (`::1`); ValueError naming the value otherwise."""
    try:
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a CIDR") from e


class PluginSettings(BaseModel):
    """The `config` object of the plugin (Kong's per-plugin settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- the seed's fields
    blocking: StrictBool = True
    wallarm_node_address: list[NodeAddress]
    timeout_ms: PositiveInt = 500

    # --- our documented extensions (defaults keep the seed's behaviour)
    inspect_response: StrictBool = True
    max_body_bytes: Annotated[int, Field(ge=0, strict=True)] = 1024 * 1024
    fail_open: StrictBool = True
    node_ca_file: StrictStr | None = None
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(default_factory=list)
    block_status: Annotated[int, Field(ge=400, le=599, strict=True)] = DEFAULT_BLOCK_STATUS
    block_page: StrictStr | None = None
    connect_timeout_ms: PositiveInt | None = None  # default: timeout_ms
    mirror_queue_size: PositiveInt = 10_000
    mirror_queue_bytes: PositiveInt = 64 * 1024 * 1024  # the queue's second bound: queued bytes
    # calls to one node at once (each holds a connection); past it a call waits, then fails "overload"
    max_in_flight_per_node: Annotated[int, Field(ge=1, le=10_000, strict=True)] = 128
    mirror_workers: Annotated[int, Field(ge=1, le=64, strict=True)] = 4
    mirror_timeout_ms: PositiveInt = 2_000
    # default: 30 in in-line mode, 0 out-of-band (measured; docs/decisions.md)
    mirror_linger_ms: Annotated[int, Field(ge=0, le=1_000, strict=True)] | None = None
    breaker_failures: PositiveInt = 3
    breaker_cooldown_ms: PositiveInt = 1_000
    node_secret: StrictStr | None = None
    # mitmproxy flow-filter expression: matching requests are never sent to the node (counted)
    exclude: StrictStr | None = None

    @field_serializer("wallarm_node_address")
    def _addresses_as_urls(self, value: list[NodeAddress]) -> list[str]:
        return [a.url for a in value]  # as written, so a dumped config loads again

    @field_validator("exclude")
    @classmethod
    def _filter_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_filter(value)  # ValueError names the expression; pydantic adds the field
        return value

    @field_validator("wallarm_node_address", mode="before")
    @classmethod
    def _split_addresses(cls, value: object) -> list[NodeAddress]:
        if isinstance(value, str):
            items = [p for p in value.split(",") if p.strip()]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = value
        else:
            raise ValueError("must be a URL string, comma-separated URLs, or a list of URLs")
        if not items:
            raise ValueError("at least one node address is required")
        return [parse_node_address(v) for v in items]

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_cidrs(cls, value: object) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        if not isinstance(value, list):
            raise ValueError("must be a list of CIDRs")
        return [parse_cidr(v) for v in value]

    @field_validator("node_ca_file")
    @classmethod
    def _ca_file_usable(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not Path(value).is_file():
            raise ValueError(f"{value!r} is not a readable file")
        if Path(value).stat().st_size > MAX_CA_FILE_BYTES:  # loaded on the proxy's event loop at each reload
            raise ValueError(f"{value!r} is over {MAX_CA_FILE_BYTES} bytes: not a CA bundle")
        try:
            ssl.create_default_context(cafile=value)
        except (ssl.SSLError, OSError) as e:
            raise ValueError(f"{value!r} is not a usable PEM CA bundle ({e})") from None
        return value



DEFAULT_INLINE_LINGER_MS = 30


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Every time budget of one config, in seconds: the one place milliseconds become seconds."""

    call_s: float  # the whole in-line call, failovers included (timeout_ms)
    connect_s: float  # TCP + TLS connect per node (connect_timeout_ms, default timeout_ms)
    mirror_s: float  # per mirrored message; a pipelined batch of N gets N times this
    mirror_linger_s: float  # how long a mirror worker waits for more messages before sending
    breaker_cooldown_s: float  # an open breaker's wait before the next liveness check
    liveness_s: float  # a liveness check's budget: the node must answer a trivial GET this fast

    @classmethod
    def from_settings(cls, s: PluginSettings) -> Timeouts:
        # In-line mode mirrors only responses, and lingering for a batch saves a node wake-up per
        # request at low rates; out-of-band, the backlog batches by itself under load, and
        # lingering cost throughput at c=50 (docs/decisions.md).
        linger_ms = s.mirror_linger_ms
        if linger_ms is None:
            linger_ms = DEFAULT_INLINE_LINGER_MS if s.blocking else 0
        return cls(call_s=s.timeout_ms / 1000, connect_s=(s.connect_timeout_ms or s.timeout_ms) / 1000,
                   mirror_s=s.mirror_timeout_ms / 1000, mirror_linger_s=linger_ms / 1000,
                   breaker_cooldown_s=s.breaker_cooldown_ms / 1000, liveness_s=s.timeout_ms / 1000)


class PluginConfig(BaseModel):
    """One plugin object: the whole `enable-plugin.json`, or the plugin as Kong's Admin API returns
    it (with `id`, timestamps, `service`/`route`/`consumer` scope, `tags`, `ordering`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr
    instance_name: StrictStr | None = None
    protocols: list[Protocol] = Field(default_factory=lambda: list(KONG_DEFAULT_PROTOCOLS), min_length=1)
    enabled: StrictBool = True
    config: PluginSettings
    # --- Kong's plugin object fields (kept as given; the scope refs are resolved by addon.declarative)
    id: StrictStr | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    service: EntityRef | None = None
    route: EntityRef | None = None
    consumer: EntityRef | None = None
    tags: list[StrictStr] | None = None
    ordering: dict[str, Any] | None = None

    @field_validator("consumer")
    @classmethod
    def _no_consumers(cls, value: EntityRef | None) -> EntityRef | None:
        if value is not None:
            raise ValueError("consumer-scoped plugins are not supported (there are no consumers here)")
        return value

    @field_validator("name")
    @classmethod
    def _name_is_ours(cls, value: str) -> str:
        if value != PLUGIN_NAME:
            raise ValueError(f"must be {PLUGIN_NAME!r}, got {value!r}")
        return value

    @field_validator("protocols")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("duplicate protocol")
        return value

    def public_dict(self) -> dict:
        """The config as JSON-able data, secrets masked (served by the status listener)."""
        data = self.model_dump(mode="json")
        if data["config"].get("node_secret"):
            data["config"]["node_secret"] = "***"
        return data


def format_validation_error(err: ValidationError) -> str:
    problems = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
    return "; ".join(problems)


def parse_config(raw: bytes | str, base_dir: Path | None = None, source: str = "<config>") -> PluginConfig:
    """Validate raw JSON text. Relative `node_ca_file` paths resolve against `base_dir`."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: nesting deeper than the stack
        raise ConfigError(f"{source}: invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a JSON object")
    settings = data.get("config")
    if base_dir is not None and isinstance(settings, dict) and isinstance(settings.get("node_ca_file"), str):
        ca = Path(settings["node_ca_file"])
        if not ca.is_absolute():
            settings["node_ca_file"] = str((base_dir / ca).resolve())
    try:
        return PluginConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {format_validation_error(e)}") from None


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes, bounded and never blocking (wallarm_wire/config_file.py)."""
    try:
        return read_config_file(path)
    except ConfigFileError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_config(path: str | Path) -> PluginConfig:
    path = Path(path)
    return parse_config(read_config_bytes(path), base_dir=path.resolve().parent, source=str(path))
