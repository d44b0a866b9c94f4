"""Typed Kuma resources after validation: Mesh (backends), TrafficTrace, MeshTrace,
MeshOpenTelemetryBackend, Dataplane, ExternalService; and the resolved tracing Backend both policies give."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SERVICE_TAG = "kuma.io/service"
PROTOCOL_TAG = "kuma.io/protocol"
PROTOCOLS = ("grpc", "http", "http2", "kafka", "tcp")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a resource came from, for messages."""

    file: str
    line: int


@dataclass(frozen=True, slots=True)
class CustomTag:
    """A MeshTrace tag: a literal value, or a request header's value (or its default)."""

    name: str
    literal: str | None = None
    header: str | None = None  # lowercase header name
    default: str | None = None  # with `header`: the value when the header is absent

    def to_json(self) -> dict[str, Any]:
        """The tag as MeshTrace writes it."""
        if self.literal is not None:
            return {"name": self.name, "literal": self.literal}
        header: dict[str, Any] = {"name": self.header}
        if self.default is not None:
            header["default"] = self.default
        return {"name": self.name, "header": header}


@dataclass(frozen=True, slots=True)
class Backend:
    """A resolved tracing backend: a Mesh backend (TrafficTrace) or a MeshTrace backend.

    `type` is "zipkin" or "openTelemetry". TrafficTrace backends use only `sampling` (Envoy's
    overall_sampling); MeshTrace also sets `client_sampling`, `random_sampling` and `tags`.
    """

    name: str
    type: str
    sampling: float = 100.0  # percent: overall
    url: str = ""  # zipkin
    trace_id_128bit: bool = False
    api_version: str = "httpJson"
    shared_span_context: bool = True
    endpoint: str = ""  # openTelemetry: "host:port" (protocol grpc) or an http(s) URL (protocol http)
    protocol: str = ""  # openTelemetry: "grpc" | "http"
    client_sampling: float = 100.0  # percent: requests carrying x-client-trace-id
    random_sampling: float = 100.0  # percent: the others
    tags: tuple[CustomTag, ...] = ()

    def to_json(self, mesh_trace: bool = False) -> dict[str, Any]:
        """The `backend` object of the inspect JSON. A TrafficTrace backend keeps its historical shape
        (`sampling` a number); a MeshTrace backend shows its three sampling knobs and its tags."""
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if mesh_trace:
            out["sampling"] = {
                "overall": self.sampling,
                "client": self.client_sampling,
                "random": self.random_sampling,
            }
        else:
            out["sampling"] = self.sampling
        if self.type == "openTelemetry":
            out["endpoint"] = self.endpoint
            out["protocol"] = self.protocol
        else:
            out["url"] = self.url
            out["traceId128bit"] = self.trace_id_128bit
            out["apiVersion"] = self.api_version
            out["sharedSpanContext"] = self.shared_span_context
        if mesh_trace:
            out["tags"] = [tag.to_json() for tag in self.tags]
        return out


@dataclass(frozen=True, slots=True)
class Mesh:
    name: str
    default_backend: str | None
    backends: tuple[Backend, ...]
    source: Source

    def backend(self, name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)


@dataclass(frozen=True, slots=True)
class TrafficTrace:
    name: str
    mesh: str
    selectors: tuple[Mapping[str, str], ...]
    backend: str | None  # None: the mesh's defaultBackend
    creation_time: datetime | None
    source: Source


@dataclass(frozen=True, slots=True)
class TargetRef:
    """A MeshTrace's `spec.targetRef`: which dataplanes it selects (config/meshtrace.py says how)."""

    kind: str  # Mesh | Dataplane | MeshSubset | MeshService
    name: str | None = None  # Dataplane, MeshService
    namespace: str | None = None  # Dataplane (Kubernetes)
    labels: Mapping[str, str] | None = None  # Dataplane: the Dataplane resource's own labels
    tags: Mapping[str, str] | None = None  # MeshSubset: an inbound's tags
    section_name: str | None = None


@dataclass(frozen=True, slots=True)
class MeshTrace:
    """A validated MeshTrace. `conf` is its `spec.default` as plain data (absent fields left out, sampling
    values as floats, backend settings with defaults not filled in), ready to be merged as Kuma merges
    policies (a JSON merge patch); config/meshtrace.py turns the merged conf into a Backend."""

    name: str
    mesh: str
    target: TargetRef
    conf: Mapping[str, Any]
    source: Source
    labels: Mapping[str, str] = field(default_factory=dict)  # its own (kuma.io/origin, policy-role...)


@dataclass(frozen=True, slots=True)
class OpenTelemetryBackend:
    """A validated MeshOpenTelemetryBackend: where an OpenTelemetry collector is, selected by its labels."""

    name: str
    mesh: str
    labels: Mapping[str, str]
    address: str
    port: int
    path: str | None
    protocol: str  # grpc | http
    creation_time: datetime | None
    source: Source


@dataclass(frozen=True, slots=True)
class Inbound:
    port: int
    service_port: int
    service_address: str
    address: str | None  # overrides the dataplane's networking.address
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outbound:
    port: int
    address: str
    service: str
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dataplane:
    name: str
    mesh: str
    address: str
    inbound: tuple[Inbound, ...]
    outbound: tuple[Outbound, ...]
    source: Source
    labels: Mapping[str, str] = field(default_factory=dict)  # the resource's own labels
    namespace: str | None = None  # Kubernetes form: metadata.namespace

    def listen_address(self, inbound: Inbound) -> str:
        return inbound.address or self.address


@dataclass(frozen=True, slots=True)
class ExternalService:
    name: str
    mesh: str
    address: str  # host:port
    tags: Mapping[str, str]
    source: Source


@dataclass(frozen=True, slots=True)
class Resources:
    meshes: Mapping[str, Mesh]
    traffic_traces: tuple[TrafficTrace, ...]
    dataplanes: tuple[Dataplane, ...]
    external_services: tuple[ExternalService, ...]
    files: int = 0
    mesh_traces: tuple[MeshTrace, ...] = ()
    otel_backends: tuple[OpenTelemetryBackend, ...] = ()
