"""Raw documents to typed resources by Kuma's rules; problems as `FILE:LINE: KIND/NAME: FIELD: message`.

User errors are collected, never raised: every problem of every file is reported in one pass, and
warnings (a valid resource that is likely a mistake) beside them. Messages
keep Kuma's wording and add what names the fix: the offending value, the valid choices, and "did you
mean" for a name or field within two edits of a known one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sidecar.config.fields import Checks, labels_of, mesh_name
from sidecar.config.load import RawResource
from sidecar.config.meshtrace import mesh_trace
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
from sidecar.config.otel_backend import otel_backend
from sidecar.config.problems import Problem, did_you_mean, shown, where
from sidecar.config.snapshot import kubernetes_service_endpoint

API_VERSIONS = {"httpJsonV1": "httpJson", "httpJson": "httpJson", "httpProto": "httpProto"}
BACKEND_TYPES = ("zipkin", "datadog")
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


def _creation_time(raw: RawResource, p: Checks) -> datetime | None:
    value = raw.creation_time
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        field = ("metadata", "creationTimestamp") if raw.prefix else ("creationTime",)
        line = raw.line_of(field)
        p.out.append(
            Problem(
                f"{where(raw.file, line)}: {raw.kind}/{raw.name}: {'.'.join(field)}: "
                f"must be an RFC 3339 time (2024-05-01T12:00:00Z), got {shown(value)}",
                raw.file,
                line,
                raw.kind,
                raw.name,
                p.mesh,
            )
        )
        return None


def _url_problem(url: Any) -> str | None:
    if url is None or url == "":
        return "cannot be empty"
    if not isinstance(url, str):
        return f"invalid URL {shown(url)}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"invalid URL {shown(url)}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"invalid URL {shown(url)}: expected http(s)://HOST:PORT/api/v2/spans"
    if port is None:
        return f"port has to be explicitly specified: {shown(url)}"
    return None


def _backend(item: Any, path: str, p: Checks) -> Backend | None:
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
        available = ", ".join(f'"{t}"' for t in BACKEND_TYPES)
        hint = did_you_mean(kind, BACKEND_TYPES)
        p.add(f"{path}.type", f"unknown backend type {shown(kind)}. Available backends: {available}{hint}")
    sampling = spec.get("sampling", 100.0)
    if isinstance(sampling, bool) or not isinstance(sampling, int | float):
        p.add(f"{path}.sampling", f"must be a number (a percent, 0.0 to 100.0), got {shown(sampling)}")
        sampling = 100.0
    elif not 0.0 <= sampling <= 100.0:
        p.add(f"{path}.sampling", f"has to be in [0.0 - 100.0] range, got {shown(sampling)}")
        sampling = 100.0
    elif 0.0 < sampling < 1.0:
        p.warn(
            f"{path}.sampling",
            f"is a percent, not a ratio: {sampling:g} samples {sampling:g} % of requests "
            f"(for {sampling * 100:g} %, write {sampling * 100:g})",
        )
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
        p.add(
            f"{path}.conf.apiVersion",
            f"has invalid value {shown(api)}. Allowed values: httpJsonV1, httpJson, httpProto"
            f"{did_you_mean(api, API_VERSIONS)}",
        )
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


def _mesh(raw: RawResource, out: list[Problem], defined: dict[str, list[str]]) -> Mesh:
    """The Mesh with its valid backends; `defined[mesh]` gets every backend name written, valid or not,
    so that a reference to an invalid backend is not reported a second time."""
    p = Checks(raw, out)
    body = p.mapping(raw.body, "", _MESH_SECTIONS)
    tracing = p.mapping(body.get("tracing"), "tracing", ("defaultBackend", "backends"))
    backends: list[Backend] = []
    names = defined.setdefault(raw.name, [])
    for i, item in enumerate(p.sequence(tracing.get("backends"), "tracing.backends")):
        path = f"tracing.backends[{i}]"
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in names:
            first = names.index(name)
            p.add(
                f"{path}.name",
                f'name is already used for another backend: "{name}" (tracing.backends[{first}])',
            )
        elif isinstance(name, str):
            names.append(name)
        backend = _backend(item, path, p)
        if backend is not None:
            backends.append(backend)
    default = tracing.get("defaultBackend")
    if default is not None and default != "" and default not in names:
        choices = ", ".join(names) or "none defined"
        p.add(
            "tracing.defaultBackend",
            f"{shown(default)} has to be set to one of the tracing backends in mesh: {choices}"
            f"{did_you_mean(default, names)}",
        )
    return Mesh(raw.name, default or None, tuple(backends), Source(raw.file, raw.line))


def _traffic_trace(
    raw: RawResource, out: list[Problem], meshes: Mapping[str, Mesh], defined: Mapping[str, list[str]]
) -> TrafficTrace:
    p = Checks(raw, out)
    body = p.mapping(raw.body, "", ("selectors", "conf"))
    mesh = mesh_name(raw, p)
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
    if p.mesh_exists(mesh, meshes) and backend is not None:
        names = defined.get(mesh, [])
        if backend not in names:  # a backend that is defined but invalid was reported with its Mesh
            p.add(
                "conf.backend",
                f'tracing backend "{backend}" is not defined in mesh "{mesh}" '
                f"(backends: {', '.join(names) or 'none'}){did_you_mean(backend, names)}",
            )
    created = _creation_time(raw, p)
    return TrafficTrace(raw.name, mesh, tuple(selectors), backend, created, Source(raw.file, raw.line))


def _protocol_ok(tags: Mapping[str, str], path: str, p: Checks) -> None:
    proto = tags.get(PROTOCOL_TAG)
    if proto is not None and proto not in PROTOCOLS:
        p.add(
            f'{path}["{PROTOCOL_TAG}"]',
            f'tag has an invalid value "{proto}". Allowed values: {", ".join(PROTOCOLS)}'
            f"{did_you_mean(proto, PROTOCOLS)}",
        )


def _dataplane(raw: RawResource, out: list[Problem], meshes: Mapping[str, Mesh]) -> Dataplane:
    p = Checks(raw, out)
    body = p.mapping(raw.body, "", ("networking",))
    mesh = mesh_name(raw, p)
    p.mesh_exists(mesh, meshes)
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
    used: dict[tuple[str, int], str] = {}

    def claim(host: str, port: int, path: str) -> None:
        if port and (host, port) in used:
            p.add(
                path,
                f"port {port} is already used by another listener of this dataplane ({used[host, port]})",
            )
        used.setdefault((host, port), path)

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
    return Dataplane(
        raw.name,
        mesh,
        address,
        tuple(inbound),
        tuple(outbound),
        Source(raw.file, raw.line),
        labels_of(raw, p),
        raw.namespace,
    )


def _external_service(raw: RawResource, out: list[Problem], meshes: Mapping[str, Mesh]) -> ExternalService:
    p = Checks(raw, out)
    body = p.mapping(raw.body, "", ("networking", "tags"))
    mesh = mesh_name(raw, p)
    p.mesh_exists(mesh, meshes)
    net = p.mapping(body.get("networking"), "networking", ("address", "tls"))
    address = net.get("address")
    if not isinstance(address, str) or not address:
        p.add("networking.address", "cannot be empty")
        address = ""
    else:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            p.add("networking.address", f"must be host:port with an explicit port, got {shown(address)}")
    if "tls" in net:
        p.add("networking.tls", "TLS origination is not supported by this sidecar")
    tags = p.tags(body.get("tags"), "tags")
    if not tags.get(SERVICE_TAG):
        p.add("tags", f'tag "{SERVICE_TAG}" is required')
    _protocol_ok(tags, "tags", p)
    return ExternalService(raw.name, mesh, address, tags, Source(raw.file, raw.line))


def _unique(items: Iterable[tuple[Any, RawResource]], kind: str, out: list[Problem]) -> None:
    seen: dict[tuple[str, str], Source] = {}
    for item, raw in items:
        key = (getattr(item, "mesh", ""), item.name)
        if key in seen:
            first = seen[key]
            in_mesh = f' in mesh "{key[0]}"' if key[0] else ""
            line = raw.line_of(("metadata", "name") if raw.prefix else ("name",))
            out.append(
                Problem(
                    f"{where(raw.file, line)}: {kind}/{item.name}: name: is already used by another {kind}"
                    f"{in_mesh} ({first.file}:{first.line})",
                    raw.file,
                    line,
                    kind,
                    item.name,
                    key[0],
                )
            )
        else:
            seen[key] = item.source


def _unserved_outbounds(
    dataplanes: list[tuple[Dataplane, RawResource]], externals: list[ExternalService], out: list[Problem]
) -> None:
    """A warning per outbound whose service no Dataplane inbound or ExternalService of its mesh provides
    (nor a Kubernetes Service by name): usually a typo, and at run time every call to it is a 503 UH."""
    provided: dict[str, set[str]] = {}
    for dataplane, _ in dataplanes:
        for inbound in dataplane.inbound:
            provided.setdefault(dataplane.mesh, set()).add(inbound.tags.get(SERVICE_TAG, ""))
    for ext in externals:
        provided.setdefault(ext.mesh, set()).add(ext.tags.get(SERVICE_TAG, ""))
    for dataplane, raw in dataplanes:
        known = provided.get(dataplane.mesh, set()) - {""}
        for i, outbound in enumerate(dataplane.outbound):
            service = outbound.service
            if not service or service in known or kubernetes_service_endpoint(service) is not None:
                continue
            Checks(raw, out).warn(
                f"networking.outbound[{i}].tags",
                f'no Dataplane inbound or ExternalService of mesh "{dataplane.mesh}" provides service '
                f'"{service}": calls to it will get 503 UH{did_you_mean(service, sorted(known))}',
            )


def validate(raws: Iterable[RawResource], files: int = 0) -> tuple[Resources, list[Problem]]:
    """Every problem of every resource, and the resources that parsed (use them only when no problem)."""
    out: list[Problem] = []
    raws = list(raws)
    defined: dict[str, list[str]] = {}

    def of(kind: str) -> list[RawResource]:
        return [r for r in raws if r.kind == kind]

    mesh_list = [(_mesh(r, out, defined), r) for r in of("Mesh")]
    _unique(mesh_list, "Mesh", out)
    meshes = {m.name: m for m, _ in mesh_list}
    traces = [(_traffic_trace(r, out, meshes, defined), r) for r in of("TrafficTrace")]
    otel = [
        (otel_backend(r, out, meshes, _creation_time(r, Checks(r, out))), r)
        for r in of("MeshOpenTelemetryBackend")
    ]
    otel_list = [b for b, _ in otel]
    mesh_traces = [(mesh_trace(r, out, meshes, otel_list), r) for r in of("MeshTrace")]
    dataplanes = [(_dataplane(r, out, meshes), r) for r in of("Dataplane")]
    externals = [(_external_service(r, out, meshes), r) for r in of("ExternalService")]
    _unique(traces, "TrafficTrace", out)
    _unique(mesh_traces, "MeshTrace", out)
    _unique(otel, "MeshOpenTelemetryBackend", out)
    _unique(dataplanes, "Dataplane", out)
    _unique(externals, "ExternalService", out)
    _unserved_outbounds(dataplanes, [e for e, _ in externals], out)
    resources = Resources(
        meshes,
        tuple(t for t, _ in traces),
        tuple(d for d, _ in dataplanes),
        tuple(e for e, _ in externals),
        files,
        tuple(t for t, _ in mesh_traces),
        tuple(otel_list),
    )
    return resources, out
