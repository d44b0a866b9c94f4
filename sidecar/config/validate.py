"""Raw documents to typed resources by Kuma's rules; problems as `FILE: KIND/NAME: FIELD: message`.

User errors are collected, never raised: every problem of every file is reported in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sidecar.config.load import RawResource
from sidecar.config.model import (
    PROTOCOL_TAG,
    PROTOCOLS,
    SERVICE_TAG,
    Backend,
    Dataplane,
    ExternalService,
    Inbound,
    Mesh,
    Outbound,
    Resources,
    Source,
    TrafficTrace,
)

API_VERSIONS = {"httpJsonV1": "httpJson", "httpJson": "httpJson", "httpProto": "httpProto"}
_MESH_SECTIONS = {
    "mtls",
    "logging",
    "metrics",
    "networking",
    "routing",
    "tracing",
    "constraints",
    "skipCreatingInitialPolicies",
    "meshServices",
}


class _Problems:
    """Collects messages for one resource, with field paths relative to the document."""

    def __init__(self, raw: RawResource, out: list[str]) -> None:
        self.raw = raw
        self.out = out
        self.count = 0

    def add(self, path: str, message: str) -> None:
        self.count += 1
        prefix = "" if path == "mesh" else self.raw.prefix  # `mesh` is top-level in both forms
        self.out.append(f"{self.raw.file}: {self.raw.kind}/{self.raw.name}: {prefix}{path}: {message}")

    def mapping(self, value: Any, path: str, allowed: Iterable[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, "must be a mapping")
            return {}
        allowed = set(allowed)
        for key in value:
            if key not in allowed:
                self.add(f"{path}.{key}" if path else str(key), "unknown field")
        return value

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(path, "must be a list")
            return []
        return value

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.add(path, "must be a boolean")
            return default
        return value

    def port(self, value: Any, path: str, required: bool = True) -> int:
        if value is None and not required:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.add(path, "port must be in the range [1, 65535]")
            return 0
        return value

    def tags(self, value: Any, path: str) -> dict[str, str]:
        tags = self.mapping(value, path, allowed=value.keys() if isinstance(value, dict) else ())
        out: dict[str, str] = {}
        for key, tag in tags.items():
            if not isinstance(key, str) or not key:
                self.add(path, "tag name must be non-empty")
            elif not isinstance(tag, str | int | float) or isinstance(tag, bool) or str(tag) == "":
                self.add(f'{path}["{key}"]', "tag value must be non-empty")
            else:
                out[key] = str(tag)
        return out


def _mesh_name(raw: RawResource, p: _Problems) -> str:
    if raw.mesh is None:
        return "default"
    if not isinstance(raw.mesh, str) or not raw.mesh:
        p.add("mesh", "must be a non-empty string")
        return "default"
    return raw.mesh


def _creation_time(raw: RawResource, p: _Problems) -> datetime | None:
    value = raw.creation_time
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        field = "metadata.creationTimestamp" if raw.prefix else "creationTime"
        p.out.append(f"{raw.file}: {raw.kind}/{raw.name}: {field}: must be an RFC 3339 time")
        return None


def _url_problem(url: Any) -> str | None:
    if url is None or url == "":
        return "cannot be empty"
    if not isinstance(url, str):
        return "invalid URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "invalid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "invalid URL"
    if port is None:
        return "port has to be explicitly specified"
    return None


def _backend(item: Any, path: str, p: _Problems) -> Backend | None:
    spec = p.mapping(item, path, ("name", "type", "sampling", "conf"))
    before = p.count
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        p.add(f"{path}.name", "cannot be empty")
        name = ""
    kind = spec.get("type", "zipkin")
    if kind == "datadog":
        p.add(f"{path}.type", 'backend type "datadog" is not supported by this sidecar; use "zipkin"')
    elif kind != "zipkin":
        p.add(f"{path}.type", 'unknown backend type. Available backends: "zipkin", "datadog"')
    sampling = spec.get("sampling", 100.0)
    if isinstance(sampling, bool) or not isinstance(sampling, int | float) or not 0.0 <= sampling <= 100.0:
        p.add(f"{path}.sampling", "has to be in [0.0 - 100.0] range")
        sampling = 100.0
    if kind != "zipkin":
        return None
    conf = p.mapping(
        spec.get("conf"), f"{path}.conf", ("url", "traceId128bit", "apiVersion", "sharedSpanContext")
    )
    url = conf.get("url")
    problem = _url_problem(url)
    if problem:
        p.add(f"{path}.conf.url", problem)
    api = conf.get("apiVersion", "httpJson")
    if api not in API_VERSIONS:
        p.add(f"{path}.conf.apiVersion", "has invalid value. Allowed values: httpJsonV1, httpJson, httpProto")
        api = "httpJson"
    backend = Backend(
        name=name,
        type="zipkin",
        sampling=float(sampling),
        url=str(url or ""),
        trace_id_128bit=p.boolean(conf.get("traceId128bit"), f"{path}.conf.traceId128bit", False),
        api_version=API_VERSIONS[api],
        shared_span_context=p.boolean(conf.get("sharedSpanContext"), f"{path}.conf.sharedSpanContext", True),
    )
    return backend if p.count == before else None


def _mesh(raw: RawResource, out: list[str]) -> Mesh:
    p = _Problems(raw, out)
    body = p.mapping(raw.body, "", _MESH_SECTIONS)
    tracing = p.mapping(body.get("tracing"), "tracing", ("defaultBackend", "backends"))
    backends: list[Backend] = []
    names: set[str] = set()
    for i, item in enumerate(p.sequence(tracing.get("backends"), "tracing.backends")):
        path = f"tracing.backends[{i}]"
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in names:
            p.add(f"{path}.name", "name is already used for another backend")
        elif isinstance(name, str):
            names.add(name)
        backend = _backend(item, path, p)
        if backend is not None:
            backends.append(backend)
    default = tracing.get("defaultBackend")
    if default is not None and default != "" and default not in names:
        p.add("tracing.defaultBackend", "has to be set to one of the tracing backend in mesh")
    return Mesh(raw.name, default or None, tuple(backends), Source(raw.file, raw.line))


def _traffic_trace(raw: RawResource, out: list[str], meshes: Mapping[str, Mesh]) -> TrafficTrace:
    p = _Problems(raw, out)
    body = p.mapping(raw.body, "", ("selectors", "conf"))
    mesh = _mesh_name(raw, p)
    selectors: list[dict[str, str]] = []
    items = p.sequence(body.get("selectors"), "selectors")
    if not items:
        p.add("selectors", "must have at least one element")
    for i, item in enumerate(items):
        sel = p.mapping(item, f"selectors[{i}]", ("match",))
        match = p.tags(sel.get("match"), f"selectors[{i}].match")
        if not sel.get("match"):
            p.add(f"selectors[{i}].match", "must have at least one tag")
        selectors.append(match)
    conf = p.mapping(body.get("conf"), "conf", ("backend",))
    backend = conf.get("backend") or None
    known = meshes.get(mesh)
    if known is None:
        p.add("mesh", f'mesh "{mesh}" does not exist')
    elif backend is not None and known.backend(str(backend)) is None:
        p.add("conf.backend", f'tracing backend "{backend}" is not defined in mesh "{mesh}"')
    created = _creation_time(raw, p)
    return TrafficTrace(raw.name, mesh, tuple(selectors), backend, created, Source(raw.file, raw.line))


def _protocol_ok(tags: Mapping[str, str], path: str, p: _Problems) -> None:
    proto = tags.get(PROTOCOL_TAG)
    if proto is not None and proto not in PROTOCOLS:
        p.add(
            f'{path}["{PROTOCOL_TAG}"]',
            f'tag has an invalid value "{proto}". Allowed values: {", ".join(PROTOCOLS)}',
        )


def _dataplane(raw: RawResource, out: list[str], meshes: Mapping[str, Mesh]) -> Dataplane:
    p = _Problems(raw, out)
    body = p.mapping(raw.body, "", ("networking",))
    mesh = _mesh_name(raw, p)
    if mesh not in meshes:
        p.add("mesh", f'mesh "{mesh}" does not exist')
    net = p.mapping(
        body.get("networking"),
        "networking",
        ("address", "advertisedAddress", "inbound", "outbound", "gateway", "transparentProxying", "admin"),
    )
    address = net.get("address")
    if not isinstance(address, str) or not address:
        p.add("networking.address", "cannot be empty")
        address = "127.0.0.1"
    if "gateway" in net:
        p.add("networking.gateway", "gateway dataplanes are not supported by this sidecar")
    used: set[tuple[str, int]] = set()

    def claim(host: str, port: int, path: str) -> None:
        if port and (host, port) in used:
            p.add(path, f"port {port} is already used by another listener of this dataplane")
        used.add((host, port))

    inbound: list[Inbound] = []
    items = p.sequence(net.get("inbound"), "networking.inbound")
    if not items and "gateway" not in net:
        p.add("networking", "has to contain at least one inbound interface or gateway")
    for i, item in enumerate(items):
        path = f"networking.inbound[{i}]"
        spec = p.mapping(
            item, path, ("port", "servicePort", "serviceAddress", "address", "tags", "health", "serviceProbe")
        )
        port = p.port(spec.get("port"), f"{path}.port")
        service_port = p.port(spec.get("servicePort"), f"{path}.servicePort", required=False) or port
        tags = p.tags(spec.get("tags"), f"{path}.tags")
        if not tags.get(SERVICE_TAG):
            p.add(f"{path}.tags", f'tag "{SERVICE_TAG}" is required')
        _protocol_ok(tags, f"{path}.tags", p)
        own = spec.get("address")
        claim(str(own or address), port, f"{path}.port")
        service_address = spec.get("serviceAddress") or "127.0.0.1"
        inbound.append(Inbound(port, service_port, str(service_address), own and str(own), tags))
    outbound: list[Outbound] = []
    for i, item in enumerate(p.sequence(net.get("outbound"), "networking.outbound")):
        path = f"networking.outbound[{i}]"
        spec = p.mapping(item, path, ("port", "address", "tags", "service"))
        port = p.port(spec.get("port"), f"{path}.port")
        tags = p.tags(spec.get("tags"), f"{path}.tags")
        service = tags.get(SERVICE_TAG) or spec.get("service")
        if not isinstance(service, str) or not service:
            p.add(f"{path}.tags", f'tag "{SERVICE_TAG}" is required')
            service = ""
        host = str(spec.get("address") or "127.0.0.1")
        claim(host, port, f"{path}.port")
        outbound.append(Outbound(port, host, service, tags))
    return Dataplane(raw.name, mesh, address, tuple(inbound), tuple(outbound), Source(raw.file, raw.line))


def _external_service(raw: RawResource, out: list[str], meshes: Mapping[str, Mesh]) -> ExternalService:
    p = _Problems(raw, out)
    body = p.mapping(raw.body, "", ("networking", "tags"))
    mesh = _mesh_name(raw, p)
    if mesh not in meshes:
        p.add("mesh", f'mesh "{mesh}" does not exist')
    net = p.mapping(body.get("networking"), "networking", ("address", "tls"))
    address = net.get("address")
    if not isinstance(address, str) or not address:
        p.add("networking.address", "cannot be empty")
        address = ""
    else:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            p.add("networking.address", "must be host:port with an explicit port")
    if "tls" in net:
        p.add("networking.tls", "TLS origination is not supported by this sidecar")
    tags = p.tags(body.get("tags"), "tags")
    if not tags.get(SERVICE_TAG):
        p.add("tags", f'tag "{SERVICE_TAG}" is required')
    _protocol_ok(tags, "tags", p)
    return ExternalService(raw.name, mesh, address, tags, Source(raw.file, raw.line))


def _unique(items: Iterable[Any], kind: str, out: list[str]) -> None:
    seen: dict[tuple[str, str], Source] = {}
    for item in items:
        key = (getattr(item, "mesh", ""), item.name)
        if key in seen:
            first = seen[key]
            where = f' in mesh "{key[0]}"' if key[0] else ""
            out.append(
                f"{item.source.file}: {kind}/{item.name}: name: is already used by another {kind}{where} "
                f"({first.file}:{first.line})"
            )
        else:
            seen[key] = item.source


def validate(raws: Iterable[RawResource], files: int = 0) -> tuple[Resources, list[str]]:
    """Every problem of every resource, and the resources that parsed (use them only when no problem)."""
    out: list[str] = []
    raws = list(raws)
    meshes_list = [_mesh(r, out) for r in raws if r.kind == "Mesh"]
    _unique(meshes_list, "Mesh", out)
    meshes = {m.name: m for m in meshes_list}
    traces = [_traffic_trace(r, out, meshes) for r in raws if r.kind == "TrafficTrace"]
    dataplanes = [_dataplane(r, out, meshes) for r in raws if r.kind == "Dataplane"]
    externals = [_external_service(r, out, meshes) for r in raws if r.kind == "ExternalService"]
    _unique(traces, "TrafficTrace", out)
    _unique(dataplanes, "Dataplane", out)
    _unique(externals, "ExternalService", out)
    resources = Resources(meshes, tuple(traces), tuple(dataplanes), tuple(externals), files)
    return resources, out
