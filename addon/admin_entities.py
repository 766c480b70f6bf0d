"""Kong's entities (services, routes, plugins) over the declarative document, and their changes.

The declarative file is the one source of truth: `Entities.from_document` flattens it (nested
routes and plugins get their `service`/`route` reference, entities without an id get a
deterministic one, as Kong's DB-less mode does), the Admin API changes the flat lists, and
`to_document` nests them again (services with their routes and plugins, global plugins at the
top). Only the fields a user gave are stored; Kong's defaults are added in the views, so the file
stays as small as the user wrote it. Every refusal is an `AdminError` carrying Kong's status and
body.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from addon.config import PluginSettings
from addon.declarative import Service, is_declarative

FORMAT_VERSION = "3.0"
KINDS = ("services", "routes", "plugins")
_ID_NAMESPACE = uuid.UUID("8f7b2a2e-61f1-4c2a-9a52-4b1ad0c0a7e1")  # fixed: ids derived alike in every process
_NAME = re.compile(r"^[A-Za-z0-9.\-_~]{1,128}$")
MASK = "***"

SERVICE_DEFAULTS: dict[str, Any] = {
    "name": None, "protocol": "http", "host": None, "port": 80, "path": None, "retries": 5,
    "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000, "tags": None,
    "client_certificate": None, "tls_verify": None, "tls_verify_depth": None, "ca_certificates": None,
    "enabled": True}
ROUTE_DEFAULTS: dict[str, Any] = {
    "name": None, "protocols": ["http", "https"], "methods": None, "hosts": None, "paths": None,
    "headers": None, "snis": None, "sources": None, "destinations": None,
    "https_redirect_status_code": 426, "regex_priority": 0, "strip_path": True, "path_handling": "v0",
    "preserve_host": False, "request_buffering": True, "response_buffering": True, "tags": None,
    "service": None}
PLUGIN_DEFAULTS: dict[str, Any] = {
    "name": None, "instance_name": None, "protocols": ["grpc", "grpcs", "http", "https"], "enabled": True,
    "service": None, "route": None, "consumer": None, "tags": None, "ordering": None}
DEFAULTS = {"services": SERVICE_DEFAULTS, "routes": ROUTE_DEFAULTS, "plugins": PLUGIN_DEFAULTS}
MANAGED = ("id", "created_at", "updated_at")  # set by the Admin API (a create may name its id)


class AdminError(Exception):
    """A refusal with Kong's status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(body.get("message", ""))
        self.status, self.body = status, body


def not_found() -> AdminError:
    return AdminError(404, {"message": "Not found"})


def schema_violation(fields: dict[str, Any]) -> AdminError:
    parts = ", ".join(f"{k}: {v}" for k, v in _flat(fields))
    return AdminError(400, {"code": 2, "name": "schema violation", "message": f"schema violation ({parts})",
                            "fields": fields})


def _flat(fields: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in fields.items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def unique_violation(field_name: str, value: Any) -> AdminError:
    return AdminError(409, {"code": 5, "name": "unique constraint violation",
                            "message": f"UNIQUE violation detected on '{{{field_name}=\"{value}\"}}'",
                            "fields": {field_name: value}})


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def derived_id(kind: str, key: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{kind}:{key}"))


def split_url(url: Any) -> dict[str, Any]:
    """Kong's `url` shorthand as protocol/host/port/path, expanded by the declarative model itself."""
    try:
        service = Service.model_validate({"url": url})
    except ValidationError as e:
        raise schema_violation({"url": "; ".join(err["msg"].removeprefix("Value error, ")
                                                 for err in e.errors())}) from None
    out: dict[str, Any] = {"protocol": service.protocol, "host": service.host, "port": service.port}
    if service.path:
        out["path"] = service.path
    return out


def _ref(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"id": value} if is_uuid(value) else {"name": value}
    if isinstance(value, dict) and set(value) <= {"id", "name"} and value:
        return {k: str(v) for k, v in value.items()}
    raise ValueError("expected an object with an id or a name")


@dataclass
class Located:
    """Where an entity sits in the rendered document (to map a model's errors back to fields)."""

    kind: str
    path: tuple[str | int, ...]


@dataclass
class Entities:
    services: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    plugins: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level keys, kept as they are
    format_version: str = FORMAT_VERSION  # the file's, kept
    _ids: dict[str, str] = field(default_factory=dict, repr=False)
    _stamp: int = 0

    # ----------------------------------------------------------- the document
    @classmethod
    def from_document(cls, doc: dict[str, Any], ids: dict[str, str], stamp: int) -> Entities:
        """Flatten a declarative document (or a bare plugin object, the seed's file). `ids` are the
        ids the declarative model gave the services and routes, by where they are written
        (`services.0.routes.1`), so an entity written without one has the same id everywhere."""
        doc = copy.deepcopy(doc)
        if not is_declarative(doc):
            doc = {"_format_version": FORMAT_VERSION, "plugins": [doc]}
        out = cls(extra={k: v for k, v in doc.items() if k not in KINDS and k != "_format_version"},
                  format_version=str(doc.get("_format_version", FORMAT_VERSION)))
        out._ids, out._stamp = ids, stamp
        for i, s in enumerate(doc.get("services") or []):
            routes, plugins = s.pop("routes", None) or [], s.pop("plugins", None) or []
            out._adopt("services", s, f"services.{i}")
            sref = {"id": s["id"]}
            for j, r in enumerate(routes):
                r.pop("service", None)
                out._adopt_route(r, sref, f"services.{i}.routes.{j}")
            for k, p in enumerate(plugins):
                p["service"] = sref
                out._adopt_plugin(p, f"services.{i}.plugins.{k}")
        for j, r in enumerate(doc.get("routes") or []):
            out._adopt_route(r, out._resolve_ref("services", r.pop("service", None)), f"routes.{j}")
        for k, p in enumerate(doc.get("plugins") or []):
            p["service"] = out._resolve_ref("services", p.get("service"))
            p["route"] = out._resolve_ref("routes", p.get("route"))
            out._adopt_plugin(p, f"plugins.{k}")
        return out

    def _adopt(self, kind: str, entity: dict[str, Any], loc: str) -> None:
        entity.setdefault("id", self._ids.get(loc) or derived_id(kind, loc))
        entity.setdefault("created_at", self._stamp)
        entity.setdefault("updated_at", entity["created_at"])
        getattr(self, kind).append(entity)

    def _adopt_route(self, route: dict[str, Any], sref: dict[str, str] | None, loc: str) -> None:
        plugins = route.pop("plugins", None) or []
        route["service"] = sref
        self._adopt("routes", route, loc)
        for k, p in enumerate(plugins):
            p["route"], p["service"] = {"id": route["id"]}, None
            self._adopt_plugin(p, f"{loc}.plugins.{k}")

    def _adopt_plugin(self, plugin: dict[str, Any], loc: str) -> None:
        plugin.setdefault("service", None)
        plugin.setdefault("route", None)
        self._adopt("plugins", plugin, loc)

    def _resolve_ref(self, kind: str, value: Any) -> dict[str, str] | None:
        try:
            ref = _ref(value)
        except ValueError:
            return None
        if ref is None:
            return None
        found = self.find(kind, ref.get("id") or ref.get("name", ""))
        return {"id": found["id"]} if found else ref

    def to_document(self) -> tuple[dict[str, Any], dict[str, Located]]:
        """The nested declarative document, and where each entity id landed in it."""
        where: dict[str, Located] = {}
        doc: dict[str, Any] = {"_format_version": self.format_version, **self.extra}
        services_out: list[dict[str, Any]] = []
        top_routes: list[dict[str, Any]] = []
        top_plugins: list[dict[str, Any]] = []
        service_index = {s["id"]: i for i, s in enumerate(self.services)}
        for i, s in enumerate(self.services):
            services_out.append(dict(s))
            where[s["id"]] = Located("services", ("services", i))
        route_slot: dict[str, tuple[dict[str, Any], tuple[str | int, ...]]] = {}
        for r in self.routes:
            body = {k: v for k, v in r.items() if k != "service"}
            sid = (r.get("service") or {}).get("id")
            if sid in service_index:
                holder = services_out[service_index[sid]].setdefault("routes", [])
                path: tuple[str | int, ...] = ("services", service_index[sid], "routes", len(holder))
            else:
                holder, path = top_routes, ("routes", len(top_routes))
            holder.append(body)
            route_slot[r["id"]] = (body, path)
            where[r["id"]] = Located("routes", path)
        for p in self.plugins:
            body = {k: v for k, v in p.items() if k not in ("service", "route", "consumer")}
            rid, sid = (p.get("route") or {}).get("id"), (p.get("service") or {}).get("id")
            if rid in route_slot:
                owner, base = route_slot[rid]
            elif sid in service_index:
                owner, base = services_out[service_index[sid]], ("services", service_index[sid])
            else:
                owner, base = None, ()
            if owner is None:
                where[p["id"]] = Located("plugins", ("plugins", len(top_plugins)))
                top_plugins.append(body)
            else:
                holder = owner.setdefault("plugins", [])
                where[p["id"]] = Located("plugins", (*base, "plugins", len(holder)))
                holder.append(body)
        if services_out:
            doc["services"] = services_out
        if top_routes:
            doc["routes"] = top_routes
        if top_plugins:
            doc["plugins"] = top_plugins
        return doc, where

    # ----------------------------------------------------------- lookups
    def find(self, kind: str, ident: str) -> dict[str, Any] | None:
        items: list[dict[str, Any]] = getattr(self, kind)
        for e in items:
            if e.get("id") == ident:
                return e
        if kind != "plugins":
            for e in items:
                if e.get("name") == ident:
                    return e
        return None

    def get(self, kind: str, ident: str) -> dict[str, Any]:
        found = self.find(kind, ident)
        if found is None:
            raise not_found()
        return found

    def routes_of(self, service_id: str) -> list[dict[str, Any]]:
        return [r for r in self.routes if (r.get("service") or {}).get("id") == service_id]

    def plugins_of(self, scope: str, entity_id: str) -> list[dict[str, Any]]:
        return [p for p in self.plugins if (p.get(scope) or {}).get("id") == entity_id]

    # ----------------------------------------------------------- changes
    def create(self, kind: str, body: dict[str, Any], scope: dict[str, Any] | None = None) -> dict[str, Any]:
        entity = self._prepare(kind, body, scope or {}, existing=None)
        getattr(self, kind).append(entity)
        return entity

    def replace(self, kind: str, ident: str, body: dict[str, Any], partial: bool,
                scope: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """PATCH (partial) or PUT (whole, creating it when missing: Kong's upsert). -> (entity, created)"""
        existing = self.find(kind, ident)
        if existing is None:
            if partial:
                raise not_found()
            body = dict(body)
            if is_uuid(ident):
                body["id"] = ident
            elif kind != "plugins":
                body["name"] = ident
            else:
                raise not_found()
            return self.create(kind, body, scope), True
        if partial:
            merged = _merge(_stored_body(existing), body)
        else:
            merged = dict(body)
            if kind != "plugins" and not is_uuid(ident):  # PUT /services/NAME: the URL names it
                merged.setdefault("name", ident)
            if kind == "plugins":
                for ref in ("service", "route"):
                    merged.setdefault(ref, existing.get(ref))
        merged = _keep_masked_secret(existing, merged)
        entity = self._prepare(kind, merged, scope or {}, existing=existing)
        items: list[dict[str, Any]] = getattr(self, kind)
        items[items.index(existing)] = entity
        return entity, False

    def delete(self, kind: str, ident: str) -> None:
        entity = self.get(kind, ident)
        if kind == "services" and self.routes_of(entity["id"]):
            raise AdminError(400, {"code": 4, "name": "foreign key violation",
                                   "message": "an existing 'routes' entity references this 'services' entity",
                                   "fields": {"@referenced_by": {"routes": len(self.routes_of(entity["id"]))}}})
        getattr(self, kind).remove(entity)
        if kind in ("services", "routes"):  # their plugins go with them, as in Kong (cascade)
            scope = kind[:-1]
            self.plugins = [p for p in self.plugins if (p.get(scope) or {}).get("id") != entity["id"]]

    def _prepare(self, kind: str, body: dict[str, Any], scope: dict[str, Any],
                 existing: dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise schema_violation({"@entity": "expected an object"})
        entity = {k: v for k, v in body.items() if k not in MANAGED and v is not None}
        entity.update(scope)
        now = int(time.time())
        if existing is not None:
            entity["id"] = existing["id"]
            entity["created_at"] = existing["created_at"]
        else:
            given = body.get("id")
            if given is not None and (not isinstance(given, str) or not is_uuid(given)):
                raise schema_violation({"id": "expected a uuid"})
            entity["id"] = given or str(uuid.uuid4())
            if any(e["id"] == entity["id"] for e in getattr(self, kind)):
                raise unique_violation("id", entity["id"])
            entity["created_at"] = now
        entity["updated_at"] = now
        if kind == "services" and "url" in entity:
            if any(k in body for k in ("protocol", "host", "port", "path")):
                raise schema_violation({"url": "the url cannot be given with protocol, host, port or path"})
            url_parts = split_url(entity.pop("url"))
            if existing is not None:  # a new url replaces all four parts
                for k in ("protocol", "host", "port", "path"):
                    entity.pop(k, None)
            entity.update(url_parts)
        if kind in ("services", "routes"):
            self._check_name(kind, entity, existing)
        if kind == "routes":
            entity["service"] = self._reference("services", "service", entity.get("service"))
        if kind == "plugins":
            entity["service"] = self._reference("services", "service", entity.get("service"))
            entity["route"] = self._reference("routes", "route", entity.get("route"))
            if entity.pop("consumer", None) is not None:
                raise schema_violation({"consumer": "consumers are not supported by this connector"})
            if entity["service"] and entity["route"]:
                raise schema_violation({"route": "a plugin is scoped to a route or to a service, not both"})
            self._check_plugin_unique(entity, existing)
        if kind == "services" and "host" not in entity:
            raise schema_violation({"host": "required field missing"})
        return _ordered(entity)

    def _check_name(self, kind: str, entity: dict[str, Any], existing: dict[str, Any] | None) -> None:
        name = entity.get("name")
        if name is None:
            return
        if not isinstance(name, str) or not _NAME.match(name) or is_uuid(name):
            raise schema_violation({"name": "invalid value: must only contain alphanumerics or '.-_~'"})
        for e in getattr(self, kind):
            if e.get("name") == name and e is not existing:
                raise unique_violation("name", name)

    def _reference(self, kind: str, field_name: str, value: Any) -> dict[str, str] | None:
        try:
            ref = _ref(value)
        except ValueError as e:
            raise schema_violation({field_name: str(e)}) from None
        if ref is None:
            return None
        found = self.find(kind, ref.get("id") or ref.get("name", ""))
        if found is None:
            key, val = next(iter(ref.items()))
            raise AdminError(400, {"code": 3, "name": "foreign key violation",
                                   "message": f"the foreign key '{{{key}=\"{val}\"}}' does not reference an "
                                              f"existing '{kind}' entity.",
                                   "fields": {field_name: ref}})
        return {"id": found["id"]}

    def _check_plugin_unique(self, entity: dict[str, Any], existing: dict[str, Any] | None) -> None:
        def key(p: dict[str, Any]) -> tuple[Any, ...]:
            return (p.get("name"), (p.get("service") or {}).get("id"), (p.get("route") or {}).get("id"),
                    p.get("instance_name"))
        for p in self.plugins:
            if p is not existing and key(p) == key(entity):
                scope = ("route" if entity.get("route") else "service" if entity.get("service") else "global")
                raise AdminError(409, {"code": 5, "name": "unique constraint violation",
                                       "message": f"UNIQUE violation detected on '{{name=\"{entity.get('name')}\", "
                                                  f"scope={scope}}}'",
                                       "fields": {"name": entity.get("name")}})


def _ordered(entity: dict[str, Any]) -> dict[str, Any]:
    """id and name first, timestamps last: the file reads like Kong's own dumps."""
    head = {k: entity[k] for k in ("id", "name") if k in entity}
    tail = {k: entity[k] for k in ("created_at", "updated_at") if k in entity}
    return {**head, **{k: v for k, v in entity.items() if k not in head and k not in tail}, **tail}


def _stored_body(entity: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in entity.items() if k not in MANAGED}


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Kong's PATCH: records (like a plugin's `config`) merge key by key; a null unsets."""
    out = dict(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("service", "route"):
            out[k] = _merge(out[k], v)
        elif v is None:
            out.pop(k, None)
        else:
            out[k] = v
    if "url" in patch:
        for k in ("protocol", "host", "port", "path"):
            out.pop(k, None)
    return out


def _keep_masked_secret(existing: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A view shows `node_secret` as `***`; sending that back keeps the stored secret."""
    cfg = body.get("config")
    if isinstance(cfg, dict) and cfg.get("node_secret") == MASK:
        cfg = dict(cfg)
        old = (existing.get("config") or {}).get("node_secret")
        if old is None:
            cfg.pop("node_secret")
        else:
            cfg["node_secret"] = old
        body = {**body, "config": cfg}
    return body


# --------------------------------------------------------------- views (Kong's response shapes)
def _plugin_config_view(config: Any) -> Any:
    if not isinstance(config, dict):
        return config
    out: dict[str, Any] = {}
    for name, f in PluginSettings.model_fields.items():  # the model's order, every default filled
        if name in config:
            out[name] = config[name]
        elif not f.is_required():
            default = f.get_default(call_default_factory=True)
            out[name] = [str(n) for n in default] if isinstance(default, list) else default
    out.update({k: v for k, v in config.items() if k not in out})
    addresses = out.get("wallarm_node_address")
    if isinstance(addresses, str):
        out["wallarm_node_address"] = [a.strip() for a in addresses.split(",") if a.strip()]
    if out.get("node_secret"):
        out["node_secret"] = MASK
    return out


def view(kind: str, entity: dict[str, Any]) -> dict[str, Any]:
    out = {**copy.deepcopy(DEFAULTS[kind]), **copy.deepcopy(entity)}
    if kind == "plugins":
        out["config"] = _plugin_config_view(out.get("config"))
    return out
