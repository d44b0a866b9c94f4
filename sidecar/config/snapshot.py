"""One Dataplane resolved into an immutable snapshot: listeners, endpoints and the tracing backend.

The snapshot is what every I/O layer consumes and what `sidecar inspect` and `/config_dump` print
(DESIGN.md section 4); its JSON keys are a public contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Protocols that are proxied as HTTP and traced (Kuma traces http, http2 and grpc; we speak HTTP/1.1).
TRACED_PROTOCOLS = frozenset({"http", "http2", "grpc"})


@dataclass(frozen=True, slots=True)
class TracingBackend:
    """A resolved `zipkin` tracing backend of a Mesh, defaults applied."""

    name: str
    type: str  # always "zipkin" in a valid snapshot
    sampling: float  # percent, 0..100
    url: str
    trace_id_128bit: bool = False
    api_version: str = "httpJson"  # "httpJson" | "httpProto" (httpJsonV1 is normalised to httpJson)
    shared_span_context: bool = True

    def to_json(self) -> dict[str, Any]:
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
class InboundListener:
    """The sidecar listens on address:port and forwards to service_address:service_port."""

    address: str
    port: int
    service_address: str
    service_port: int
    protocol: str  # the kuma.io/protocol tag, "tcp" when missing
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def service(self) -> str:
        return self.tags["kuma.io/service"]

    @property
    def traced(self) -> bool:
        return self.protocol in TRACED_PROTOCOLS

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "serviceAddress": self.service_address,
            "servicePort": self.service_port,
            "protocol": self.protocol,
            "tags": dict(self.tags),
        }


@dataclass(frozen=True, slots=True)
class OutboundListener:
    """The app calls address:port to reach `service`; the sidecar balances over `endpoints`."""

    address: str
    port: int
    service: str
    protocol: str  # the destination's kuma.io/protocol, "tcp" when unknown
    endpoints: tuple[str, ...]  # "host:port", in a stable order; empty when no endpoint is known

    @property
    def traced(self) -> bool:
        return self.protocol in TRACED_PROTOCOLS

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "service": self.service,
            "protocol": self.protocol,
            "endpoints": list(self.endpoints),
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    mesh: str
    dataplane: str
    service_name: str  # the alphabetically first kuma.io/service of the inbounds (localEndpoint)
    traffic_trace: str | None
    backend: TracingBackend | None
    inbound: tuple[InboundListener, ...]
    outbound: tuple[OutboundListener, ...]

    @property
    def node_id(self) -> str:
        return f"{self.mesh}.{self.dataplane}"

    def to_json(self) -> dict[str, Any]:
        """The inspect / config_dump document (DESIGN.md section 4)."""
        return {
            "mesh": self.mesh,
            "dataplane": self.dataplane,
            "trafficTrace": self.traffic_trace,
            "backend": None if self.backend is None else self.backend.to_json(),
            "inbound": [i.to_json() for i in self.inbound],
            "outbound": [o.to_json() for o in self.outbound],
        }
