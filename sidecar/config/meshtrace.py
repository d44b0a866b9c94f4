"""MeshTrace documents to typed resources, with Kuma's validation messages.

A MeshTrace keeps its body under `spec:` in both forms (Universal: `type`, `name`, `mesh`, `spec`;
Kubernetes: `apiVersion`, `kind`, `metadata`, `spec`), so field paths read `spec.default.backends[0]...`
either way. The messages are Kuma's own (its MeshTrace validator), with the offending value and a "did
you mean" added where they help. A validated MeshTrace keeps its `default` as
plain data for the merge (config/targetref.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from sidecar.config.fields import Checks, labels_of, mesh_name, spec_view
from sidecar.config.load import RawResource
from sidecar.config.model import Mesh, MeshTrace, OpenTelemetryBackend, Source, TargetRef
from sidecar.config.otel_backend import KIND as MOTB_KIND
from sidecar.config.otel_backend import select_otel_backend
from sidecar.config.problems import Problem, did_you_mean, shown

#: The targetRef kinds a MeshTrace may use here, least specific first (Kuma's order of kinds).
TARGET_KINDS = ("Mesh", "Dataplane", "MeshSubset", "MeshService")
BACKEND_TYPES = ("Zipkin", "OpenTelemetry", "Datadog")
ZIPKIN_API_VERSIONS = ("httpJson", "httpProto")
# Which targetRef fields each kind takes (any other is "must not be set with kind X").
_TARGET_FIELDS = {
    "Mesh": (),
    "Dataplane": ("name", "namespace", "labels", "sectionName"),
    "MeshSubset": ("tags",),
    "MeshService": ("name",),
}
_ALL_TARGET_FIELDS = ("kind", "name", "namespace", "labels", "tags", "sectionName", "mesh", "proxyTypes")


# ---- sampling -------------------------------------------------------------------------------------------


def percent(value: Any, path: str, p: Checks) -> float | None:
    """An int or a decimal string, 0..100 (Kuma's IntOrString); None (and a problem) otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        p.add(path, f'must be an int or a decimal string (e.g. 50 or "0.5"), got {shown(value)}')
        return None
    try:
        number = Decimal(str(value).strip())
        if not number.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        p.add(path, f"string is not a number: {shown(value)}")
        return None
    if not Decimal(0) <= number <= Decimal(100):
        p.add(path, f"must be between 0 and 100, got {shown(value)}")
        return None
    return float(number)


# ---- targetRef ------------------------------------------------------------------------------------------


def _target(value: Any, p: Checks) -> TargetRef | None:
    if value is None:
        return TargetRef("Mesh")  # Kuma: no top-level targetRef means the whole mesh
    ref = p.mapping(value, "targetRef", _ALL_TARGET_FIELDS)
    if not isinstance(value, dict):
        return None
    kind = ref.get("kind")
    if kind is None or kind == "":
        p.add("targetRef.kind", "must be defined")
        return None
    if kind not in TARGET_KINDS:
        p.add(
            "targetRef.kind",
            f"value {shown(kind)} is not supported; supported: {', '.join(TARGET_KINDS)}"
            f"{did_you_mean(kind, TARGET_KINDS)}",
        )
        return None
    before = p.count
    for key in ref:
        if kind == "MeshService" and key == "labels":  # Kuma 2.x: MeshService resources by labels
            p.add("targetRef.labels", "selecting MeshService resources by labels is not supported; use name")
        elif key != "kind" and key not in _TARGET_FIELDS[kind]:
            p.add(f"targetRef.{key}", f"must not be set with kind {kind}")

    def text(key: str) -> str | None:
        got = ref.get(key)
        if got is None:
            return None
        if not isinstance(got, str) or not got:
            p.add(f"targetRef.{key}", f"must be a non-empty string, got {shown(got)}")
            return None
        return got

    name, namespace = text("name"), text("namespace")
    labels = p.tags(ref["labels"], "targetRef.labels") if "labels" in ref else None
    tags = p.tags(ref["tags"], "targetRef.tags") if "tags" in ref else None
    if kind == "Dataplane":
        if labels and (name or namespace):
            p.add("targetRef.labels", "either labels or name and namespace must be specified")
        if ref.get("sectionName") is not None:
            p.add("targetRef.sectionName", "can only be used with inbound policies")
    if kind == "MeshService" and not name:
        p.add("targetRef", f"name or labels must be set when kind is {kind}")
    if p.count != before:
        return None
    return TargetRef(kind, name, namespace, labels, tags, None)


# ---- backends -------------------------------------------------------------------------------------------


def _zipkin(value: Any, path: str, p: Checks) -> dict[str, Any]:
    if value is None:
        p.add(path, "must be defined")
        return {}
    conf = p.mapping(value, path, ("url", "traceId128bit", "apiVersion", "sharedSpanContext"))
    out: dict[str, Any] = {}
    url = conf.get("url")
    if url is None or url == "":
        p.add(f"{path}.url", "must not be empty")
    else:
        problem = http_url_problem(url)
        if problem:
            p.add(f"{path}.url", problem)
        out["url"] = url
    for key in ("traceId128bit", "sharedSpanContext"):
        if key in conf:
            out[key] = p.boolean(conf[key], f"{path}.{key}", False)
    if "apiVersion" in conf:
        api = conf["apiVersion"]
        if api not in ZIPKIN_API_VERSIONS:
            p.add(
                f"{path}.apiVersion",
                f"must be one of: {', '.join(ZIPKIN_API_VERSIONS)}, got {shown(api)}"
                f"{did_you_mean(api, ZIPKIN_API_VERSIONS)}",
            )
        out["apiVersion"] = api
    return out


def http_url_problem(url: Any) -> str | None:
    """Why `url` is not an http(s) URL with a host and an explicit port (None when it is one)."""
    if not isinstance(url, str):
        return f"must be a valid url, got {shown(url)}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"must be a valid url, got {shown(url)}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be a valid url, got {shown(url)}: expected http(s)://HOST:PORT/PATH"
    if port is None:
        return f"port must be defined: {shown(url)}"
    return None


def host_port_problem(endpoint: str) -> str | None:
    host, sep, port = endpoint.rpartition(":")
    if any(c in endpoint for c in "/?#"):
        return f"must be in host:port format, not a URL, got {shown(endpoint)} (or an http(s):// URL)"
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"must be in host:port format with a port in [1, 65535], got {shown(endpoint)}"
    return None


def _open_telemetry(
    value: Any, path: str, p: Checks, mesh: str, otel: Sequence[OpenTelemetryBackend]
) -> dict[str, Any]:
    if value is None:
        p.add(path, "must be defined")
        return {}
    conf = p.mapping(value, path, ("endpoint", "backendRef"))
    endpoint = conf.get("endpoint") or ""
    ref = conf.get("backendRef")
    if endpoint and ref is not None:
        p.add(path, "openTelemetry must have only one type defined: endpoint, backendRef")
        return {}
    if not endpoint and ref is None:
        p.add(path, "openTelemetry must have exactly one defined: endpoint, backendRef")
        return {}
    if ref is None:
        if not isinstance(endpoint, str):
            p.add(f"{path}.endpoint", f"must be a string, got {shown(endpoint)}")
            return {}
        scheme = endpoint.split("://", 1)[0] if "://" in endpoint else ""
        problem = http_url_problem(endpoint) if scheme in ("http", "https") else host_port_problem(endpoint)
        if problem:
            p.add(f"{path}.endpoint", problem)
        return {"endpoint": endpoint}
    spec = p.mapping(ref, f"{path}.backendRef", ("kind", "labels"))
    kind = spec.get("kind")
    if kind != MOTB_KIND:
        p.add(f"{path}.backendRef.kind", f"must be one of: {MOTB_KIND}, got {shown(kind)}")
    labels = p.tags(spec.get("labels"), f"{path}.backendRef.labels")
    if not labels:
        p.add(f"{path}.backendRef", "backendRef must have exactly one defined: labels")
        return {}
    if kind == MOTB_KIND and select_otel_backend(labels, mesh, otel) is None:
        names = sorted(b.name for b in otel if b.mesh == mesh)
        p.add(
            f"{path}.backendRef.labels",
            f"selects no {MOTB_KIND} in mesh {shown(mesh)} "
            f"({', '.join(names) or 'none defined'}): {', '.join(f'{k}={v}' for k, v in labels.items())}",
        )
    return {"backendRef": {"kind": kind, "labels": labels}}


def _datadog(value: Any, path: str, p: Checks) -> None:
    if value is None:
        p.add(path, "must be defined")
        return
    conf = p.mapping(value, path, ("url", "splitService"))
    url = conf.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or not parts.scheme or not parts.netloc:
        p.add(f"{path}.url", f"must be a valid url, got {shown(url)}")
    elif parts.scheme != "http":
        p.add(f"{path}.url", "scheme must be http")
    p.boolean(conf.get("splitService"), f"{path}.splitService", False)


def _backends(
    value: Any, p: Checks, mesh: str, otel: Sequence[OpenTelemetryBackend]
) -> list[dict[str, Any]] | None:
    path = "default.backends"
    if value is None:
        p.add(path, "must be defined")
        return None
    items = p.sequence(value, path)
    if len(items) > 1:
        p.add(path, f"must have zero or one backend defined, got {len(items)}")
        return None
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        at = f"{path}[{i}]"
        spec = p.mapping(item, at, ("type", "zipkin", "openTelemetry", "datadog"))
        kind = spec.get("type")
        if kind not in BACKEND_TYPES:
            p.add(
                f"{at}.type",
                f"unknown backend type {shown(kind)}. Available backends: {', '.join(BACKEND_TYPES)}"
                f"{did_you_mean(kind, BACKEND_TYPES)}",
            )
            continue
        for other in ("zipkin", "openTelemetry", "datadog"):
            if other in spec and other != kind[0].lower() + kind[1:]:
                p.add(f"{at}.{other}", f"must not be set with type {kind}")
        if kind == "Zipkin":
            out.append({"type": kind, "zipkin": _zipkin(spec.get("zipkin"), f"{at}.zipkin", p)})
        elif kind == "OpenTelemetry":
            conf = _open_telemetry(spec.get("openTelemetry"), f"{at}.openTelemetry", p, mesh, otel)
            out.append({"type": kind, "openTelemetry": conf})
        else:
            before = p.count
            _datadog(spec.get("datadog"), f"{at}.datadog", p)
            if p.count == before:  # valid, and still refused: one line that says so
                p.add(
                    f"{at}.type",
                    'backend type "Datadog" is not supported by this sidecar; use Zipkin or OpenTelemetry',
                )
    return out


def _tags(value: Any, p: Checks) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, item in enumerate(p.sequence(value, "default.tags")):
        path = f"default.tags[{i}]"
        tag = p.mapping(item, path, ("name", "literal", "header"))
        name = tag.get("name")
        if not isinstance(name, str) or not name:
            p.add(f"{path}.name", "must not be empty")
        if ("header" in tag and tag["header"] is not None) == (
            "literal" in tag and tag["literal"] is not None
        ):
            p.add(path, "tag must have only one type defined: header, literal")
            continue
        if tag.get("literal") is not None:
            literal = tag["literal"]
            if not isinstance(literal, str | int | float) or isinstance(literal, bool):
                p.add(f"{path}.literal", f"must be a string, got {shown(literal)}")
                continue
            out.append({"name": name, "literal": str(literal)})
            continue
        header = p.mapping(tag["header"], f"{path}.header", ("name", "default"))
        hname = header.get("name")
        if not isinstance(hname, str) or not hname:
            p.add(f"{path}.header.name", "must not be empty")
            continue
        entry: dict[str, Any] = {"name": hname.lower()}
        if header.get("default") is not None:
            entry["default"] = str(header["default"])
        out.append({"name": name, "header": entry})
    return out


def mesh_trace(
    raw: RawResource,
    out: list[Problem],
    meshes: Mapping[str, Mesh],
    otel: Sequence[OpenTelemetryBackend],
) -> MeshTrace:
    p0 = Checks(raw, out)
    mesh = mesh_name(raw, p0)
    p, spec = spec_view(raw, p0)
    spec = p.mapping(spec, "", ("targetRef", "default", "from", "to", "rules"))
    for key in ("from", "to", "rules"):
        if key in spec:
            p.add(key, "MeshTrace takes only targetRef and default")
    p.mesh_exists(mesh, meshes)
    target = _target(spec.get("targetRef"), p)
    default = p.mapping(spec.get("default"), "default", ("backends", "sampling", "tags"))
    if "default" not in spec:
        p.add("default.backends", "must be defined")
    conf: dict[str, Any] = {}
    backends = _backends(default.get("backends"), p, mesh, otel) if "default" in spec else None
    if backends is not None:
        conf["backends"] = backends
    sampling = p.mapping(default.get("sampling"), "default.sampling", ("overall", "client", "random"))
    knobs: dict[str, float] = {}
    for knob in ("overall", "client", "random"):
        if sampling.get(knob) is not None:
            value = percent(sampling[knob], f"default.sampling.{knob}", p)
            if value is not None:
                knobs[knob] = value
    if knobs:
        conf["sampling"] = knobs
    if default.get("tags") is not None:
        conf["tags"] = _tags(default["tags"], p)
    return MeshTrace(
        raw.name, mesh, target or TargetRef("Mesh"), conf, Source(raw.file, raw.line), labels_of(raw, p0)
    )
