"""The declarative config: a subset of Kong's DB-less format (`kong.yml`), as pydantic models.

One file describes services, their routes and the `wallarm-plugin` instances (global, per service,
per route; nested under their service/route or at the top level with a reference). A bare
`enable-plugin.json` and a plugin object as Kong's Admin API returns it are accepted too: each is
one global plugin, and with no routes the proxy keeps sending everything to its reverse-mode upstream.

`load_declarative` validates, resolves the references and gives a `Declarative`: the model as
written (for the Admin API to edit and write back) and the resolved entities (for the router and
the plugin scopes). Every error names the field by its path (`services.0.routes.1.paths.0: ...`).

Fields of Kong's that this connector does not implement are accepted only at Kong's default value
(what a dump from a real Kong carries), so a config never silently means less than it says.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError,
                      field_validator, model_validator)

from addon.config import ConfigError, EntityRef, PluginConfig, format_validation_error

FORMAT_VERSIONS = ("1.1", "2.1", "3.0")
# Deterministic ids for entities written without one: stable across reloads, like Kong's DB-less mode.
ID_NAMESPACE = uuid.UUID("6f0c3f1e-5b7a-4f64-9a43-2d6a1c0b7e15")

Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
_METHOD = re.compile(r"^[A-Z]{1,20}$")
_HOST_LABELS = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def _default_only(data: object, defaults: dict[str, object]) -> object:
    """Kong fields we do not implement: accepted (and dropped) only when they hold Kong's default."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for key, default in defaults.items():
        if key in data:
            if data[key] != default:
                raise ValueError(f"{key}: only Kong's default {json.dumps(default)} is supported, "
                                 f"got {json.dumps(data[key])}")
            del data[key]
    return data


class _Entity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictStr | None = None
    name: StrictStr | None = None
    tags: list[StrictStr] | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None


class Route(_Entity):
    """A route: which requests go to its service. Kong's matching fields are `hosts`, `methods`
    and `paths` (prefixes); a route needs at least one of them."""

    paths: list[StrictStr] | None = None
    hosts: list[StrictStr] | None = None
    methods: list[StrictStr] | None = None
    protocols: list[Literal["http", "https"]] = Field(default_factory=lambda: ["http", "https"], min_length=1)
    strip_path: StrictBool = True
    preserve_host: StrictBool = False
    service: EntityRef | None = None  # top-level routes only; nested ones belong to their service
    plugins: list[PluginConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _unimplemented_at_default(cls, data: object) -> object:
        return _default_only(data, {"regex_priority": 0, "path_handling": "v0", "https_redirect_status_code": 426,
                                    "request_buffering": True, "response_buffering": True, "snis": None,
                                    "sources": None, "destinations": None, "headers": None})

    @field_validator("paths")
    @classmethod
    def _prefix_paths(cls, value: list[str] | None) -> list[str] | None:
        for p in value or ():
            if p.startswith("~"):
                raise ValueError(f"{p!r}: regex paths are not supported; use prefix paths")
            if not p.startswith("/"):
                raise ValueError(f"{p!r}: a path must start with '/'")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = []
        for h in value:
            h = h.lower()
            name, _, port = h.partition(":") if not h.startswith("[") else (h, "", "")
            if port and not (port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"{h!r}: bad port")
            bare = name.removeprefix("*.") if name.startswith("*.") else name.removesuffix(".*")
            if "*" in bare or not (_HOST_LABELS.match(bare) or name.startswith("[")):
                raise ValueError(f"{h!r}: not a host name (one leading '*.' or trailing '.*' wildcard allowed)")
            out.append(h)
        return out

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        for m in value or ():
            if not _METHOD.match(m):
                raise ValueError(f"{m!r}: a method is an upper-case token such as GET")
        return value

    @model_validator(mode="after")
    def _matches_something(self) -> Route:
        if not (self.paths or self.hosts or self.methods):
            raise ValueError("a route needs at least one of paths, hosts or methods")
        return self


class Service(_Entity):
    """An upstream. `url` is Kong's shorthand for protocol, host, port and path (expanded on load)."""

    protocol: Literal["http", "https"] = "http"
    host: StrictStr
    port: Port | None = None  # default: 80 for http, 443 for https
    path: StrictStr | None = None
    enabled: StrictBool = True
    routes: list[Route] = Field(default_factory=list)
    plugins: list[PluginConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _expand_url(cls, data: object) -> object:
        data = _default_only(data, {"retries": 5, "connect_timeout": 60000, "write_timeout": 60000,
                                    "read_timeout": 60000, "client_certificate": None, "tls_verify": None,
                                    "tls_verify_depth": None, "ca_certificates": None})
        if not isinstance(data, dict) or data.get("url") is None:
            if isinstance(data, dict):
                data.pop("url", None)
            return data
        url = data.pop("url")
        if not isinstance(url, str):
            raise ValueError("url: must be a string")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url: {url!r} is not an http:// or https:// URL with a host")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"url: {url!r} may not carry a query, fragment or credentials")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"url: {url!r} has a bad port") from None
        data.update(protocol=parts.scheme, host=parts.hostname, port=port, path=parts.path or None)
        return data

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or any(c in value for c in "/?#@ ") :
            raise ValueError(f"{value!r}: not a host name or address")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{value!r}: a service path must start with '/'")
        return value

    @model_validator(mode="after")
    def _default_port(self) -> Service:
        if self.port is None:
            object.__setattr__(self, "port", 443 if self.protocol == "https" else 80)
        return self


class DeclarativeConfig(BaseModel):
    """The file as written: top-level services, routes and plugins (each may also be nested)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    format_version: StrictStr = Field(alias="_format_version")
    services: list[Service] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    plugins: list[PluginConfig] = Field(default_factory=list)

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value not in FORMAT_VERSIONS:
            raise ValueError(f"must be one of {', '.join(FORMAT_VERSIONS)}, got {value!r}")
        return value

    def to_data(self) -> dict[str, Any]:
        """JSON-able data in Kong's shape (`_format_version` first), for writing the file back."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# ---------------------------------------------------------------------------------------- resolved view

@dataclass(frozen=True, slots=True)
class ResolvedService:
    id: str
    service: Service
    loc: str  # where it is written, for messages


@dataclass(frozen=True, slots=True)
class ResolvedRoute:
    id: str
    route: Route
    service: ResolvedService
    order: int  # position in the file: Kong's last tie-break (creation order)
    loc: str


@dataclass(frozen=True, slots=True)
class Declarative:
    """A validated config: the model as written plus its resolved entities and plugin scopes."""

    model: DeclarativeConfig
    services: tuple[ResolvedService, ...]
    routes: tuple[ResolvedRoute, ...]
    global_plugin: PluginConfig | None
    service_plugins: dict[str, PluginConfig]  # service id -> its plugin
    route_plugins: dict[str, PluginConfig]  # route id -> its plugin
    bare: bool  # loaded from a single plugin object (enable-plugin.json), not a declarative file

    @property
    def routing(self) -> bool:
        """Whether requests are routed (services/routes defined) or all go to the reverse upstream."""
        return bool(self.routes)

    def plugins(self) -> list[PluginConfig]:
        """Every plugin instance, global first."""
        out = [self.global_plugin] if self.global_plugin else []
        return out + list(self.service_plugins.values()) + list(self.route_plugins.values())


def _entity_id(kind: str, entity: _Entity, loc: str) -> str:
    if entity.id:
        return entity.id
    return str(uuid.uuid5(ID_NAMESPACE, f"{kind}:{entity.name}" if entity.name else f"{kind}@{loc}"))


class _Resolver:
    """Cross-entity checks: unique names and ids, references that resolve, one plugin per scope."""

    def __init__(self, model: DeclarativeConfig):
        self.model = model
        self.errors: list[str] = []
        self.services: list[ResolvedService] = []
        self.by_key: dict[str, ResolvedService] = {}
        self.routes: list[ResolvedRoute] = []
        self.route_by_key: dict[str, ResolvedRoute] = {}
        self.global_plugin: PluginConfig | None = None
        self.service_plugins: dict[str, PluginConfig] = {}
        self.route_plugins: dict[str, PluginConfig] = {}
        self._plugin_at: dict[tuple[str, str], str] = {}
        self._plugin_ids: dict[str, str] = {}

    def error(self, loc: str, message: str) -> None:
        self.errors.append(f"{loc}: {message}")

    def _register(self, table: dict, kind: str, entity: _Entity, resolved: Any, loc: str) -> None:
        # a derived id follows from the name, so only the name and an id given in the file can clash
        for what, key in (("name", entity.name), ("id", entity.id)):
            if key is None:
                continue
            if key in table:
                self.error(loc, f"duplicate {kind} {what} {key!r} (also at {table[key].loc})")
            else:
                table[key] = resolved
        table.setdefault(resolved.id, resolved)

    def run(self) -> None:
        m = self.model
        for i, svc in enumerate(m.services):
            loc = f"services.{i}"
            rs = ResolvedService(_entity_id("service", svc, loc), svc, loc)
            self._register(self.by_key, "service", svc, rs, loc)
            self.services.append(rs)
        for i, svc in enumerate(m.services):
            rs = self.services[i]
            for j, route in enumerate(svc.routes):
                rloc = f"{rs.loc}.routes.{j}"
                if route.service is not None and self.by_key.get(route.service.key) is not rs:
                    self.error(f"{rloc}.service", "a nested route belongs to its enclosing service")
                self._add_route(route, rs, rloc)
        for j, route in enumerate(m.routes):
            rloc = f"routes.{j}"
            if route.service is None:
                self.error(f"{rloc}.service", "a top-level route needs a service (name or id)")
                continue
            target = self.by_key.get(route.service.key)
            if target is None:
                self.error(f"{rloc}.service", f"no service {route.service.key!r}")
                continue
            self._add_route(route, target, rloc)
        for i, svc in enumerate(m.services):
            for k, plugin in enumerate(svc.plugins):
                self._add_plugin(plugin, f"services.{i}.plugins.{k}", service=self.services[i])
        for rr in list(self.routes):
            for k, plugin in enumerate(rr.route.plugins):
                self._add_plugin(plugin, f"{rr.loc}.plugins.{k}", route=rr)
        for k, plugin in enumerate(m.plugins):
            self._add_plugin(plugin, f"plugins.{k}")

    def _add_route(self, route: Route, service: ResolvedService, loc: str) -> None:
        rr = ResolvedRoute(_entity_id("route", route, loc), route, service, len(self.routes), loc)
        self._register(self.route_by_key, "route", route, rr, loc)
        self.routes.append(rr)

    def _scope(self, ref: EntityRef | None, table: dict, kind: str, loc: str, nested: bool,
               enclosing: Any) -> tuple[Any, bool]:
        """The entity a plugin's `service`/`route` reference names (or the enclosing one), and
        whether it resolved."""
        if ref is None:
            return enclosing, True
        target = table.get(ref.key)
        if target is None:
            self.error(loc, f"no {kind} {ref.key!r}")
            return None, False
        if nested and target is not enclosing:
            self.error(loc, "a nested plugin belongs to its enclosing service or route")
            return None, False
        return target, True

    def _add_plugin(self, plugin: PluginConfig, loc: str, service: ResolvedService | None = None,
                    route: ResolvedRoute | None = None) -> None:
        nested = service is not None or route is not None
        service, ok_s = self._scope(plugin.service, self.by_key, "service", f"{loc}.service", nested, service)
        route, ok_r = self._scope(plugin.route, self.route_by_key, "route", f"{loc}.route", nested, route)
        if not (ok_s and ok_r):
            return None
        if service is not None and route is not None:
            return self.error(loc, "a plugin applies to a service or to a route, not both")
        if plugin.id is not None:
            if plugin.id in self._plugin_ids:
                return self.error(f"{loc}.id", f"duplicate plugin id (also at {self._plugin_ids[plugin.id]})")
            self._plugin_ids[plugin.id] = loc
        scope = ("route", route.id) if route else ("service", service.id) if service else ("global", "")
        if scope in self._plugin_at:
            where = "globally" if scope[0] == "global" else f"for this {scope[0]}"
            return self.error(loc, f"{plugin.name} is already configured {where} (at {self._plugin_at[scope]})")
        self._plugin_at[scope] = loc
        if route is not None:
            self.route_plugins[route.id] = plugin
        elif service is not None:
            self.service_plugins[service.id] = plugin
        else:
            self.global_plugin = plugin


def _resolve_ca_paths(plugin: object, base_dir: Path) -> None:
    """Relative `node_ca_file` paths are relative to the config file's directory."""
    if not isinstance(plugin, dict) or not isinstance(plugin.get("config"), dict):
        return
    settings = plugin["config"]
    if isinstance(settings.get("node_ca_file"), str) and not Path(settings["node_ca_file"]).is_absolute():
        settings["node_ca_file"] = str((base_dir / settings["node_ca_file"]).resolve())


def _each_plugin_dict(data: dict) -> list[object]:
    found: list[object] = []
    if "config" in data and "name" in data:
        return [data]

    def entities(key: str, container: dict) -> list[dict]:
        value = container.get(key)
        return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []

    found += entities("plugins", data)
    for svc in entities("services", data):
        found += entities("plugins", svc)
        for route in entities("routes", svc):
            found += entities("plugins", route)
    for route in entities("routes", data):
        found += entities("plugins", route)
    return found


def is_declarative(data: dict) -> bool:
    """A declarative file (vs a single plugin object such as `enable-plugin.json`)."""
    return "_format_version" in data or not ("name" in data or "config" in data)


def _decode(raw: bytes | str, source: str) -> dict:
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    stripped = text.lstrip()
    try:
        data = json.loads(text) if stripped.startswith(("{", "[")) or not stripped else yaml.safe_load(text)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not UTF-8: {e}") from None
    except ValueError as e:
        raise ConfigError(f"{source}: invalid JSON: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from None
    except RecursionError:  # nesting deeper than the stack: garbage, not a config
        raise ConfigError(f"{source}: invalid {'JSON' if stripped.startswith(('{', '[')) else 'YAML'}: "
                          "nested too deep") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be an object")
    return data


def load_declarative(raw: bytes | str | dict, base_dir: Path | None = None,
                     source: str = "<config>") -> Declarative:
    """Validate a config given as JSON/YAML text or as data: (a) a declarative file, (b) a bare
    `enable-plugin.json` or (c) a plugin object as Kong's Admin API returns it (b and c: one plugin,
    global unless it names a scope, which must then exist: it cannot, with no services)."""
    try:
        data = _decode(raw, source) if isinstance(raw, (bytes, str)) else json.loads(json.dumps(raw))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not UTF-8: {e}") from None
    if base_dir is not None:
        for plugin in _each_plugin_dict(data):
            _resolve_ca_paths(plugin, base_dir)
    bare = not is_declarative(data)
    try:
        if bare:
            model = DeclarativeConfig(_format_version="3.0", plugins=[PluginConfig.model_validate(data)])
        else:
            model = DeclarativeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {format_validation_error(e)}") from None
    return resolve(model, source, bare)


def resolve(model: DeclarativeConfig, source: str = "<config>", bare: bool = False) -> Declarative:
    """The cross-entity checks and the resolved view of an already validated model (the Admin API
    edits a model and calls this before writing it)."""
    r = _Resolver(model)
    r.run()
    if r.errors:
        prefix = "plugin: " if bare else ""
        raise ConfigError(f"{source}: {prefix}" + "; ".join(r.errors))
    return Declarative(model=model, services=tuple(r.services), routes=tuple(r.routes),
                       global_plugin=r.global_plugin, service_plugins=r.service_plugins,
                       route_plugins=r.route_plugins, bare=bare)


def read_declarative(path: str | Path) -> Declarative:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    return load_declarative(raw, base_dir=path.resolve().parent, source=str(path))
