"""Typed Kuma resources after validation: Mesh (backends), TrafficTrace, Dataplane, ExternalService."""

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

    def to_json(self) -> dict[str, Any]:
        """The `backend` object of the inspect JSON (DESIGN.md section 4)."""
        return {
            "name": self.name,
            "type": self.type,
            "sampling": self.sampling,
            "url": self.url,
            "traceId128bit": self.trace_id_128bit,
            "apiVersion": self.api_version,
            "sharedSpanContext": self.shared_span_context,
        }


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
