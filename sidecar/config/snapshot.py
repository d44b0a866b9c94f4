"""One Dataplane resolved into an immutable snapshot: listeners, endpoints and the tracing backend.

Tracing comes from the MeshTraces that select the dataplane when there is any (config/targetref.py),
else from the one TrafficTrace that matches it (config/match.py); both give the same `Backend`, so nothing
past this module knows which policy kind it came from.

The snapshot is what every I/O layer consumes and what `sidecar inspect` and `/config_dump` print
(docs/configuration.md); its JSON keys are a public contract.

Endpoints of an outbound, in order: the inbounds of the other Dataplanes carrying its service, then the
ExternalServices tagged with it. A service named the way Kuma names Kubernetes Services,
`<name>_<namespace>_svc_<port>`, is the exception: its endpoint is the Service's DNS name
`<name>.<namespace>.svc:<port>` (or its ExternalServices, when there are some). On Kubernetes one
Dataplane stands for every replica of a Deployment and its address is each pod's own `${POD_IP}`, so it
says which protocol the service speaks but not where a peer reaches it; the Service does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.config.match import best_traffic_trace
from sidecar.config.model import PROTOCOL_TAG, SERVICE_TAG, Backend, Dataplane, Outbound, Resources
from sidecar.config.targetref import applicable, merge, to_backend

#: Protocols that are proxied as HTTP and traced (Kuma traces http, http2 and grpc)...
TRACED_PROTOCOLS = frozenset({"http", "http2", "grpc"})
#: ...and those spoken as HTTP/2 with prior knowledge on both sides (Kuma's HTTP/2 clusters).
H2_PROTOCOLS = frozenset({"http2", "grpc"})


# The resolved backend is the validated Mesh backend itself (defaults applied, httpJsonV1 -> httpJson).
TracingBackend = Backend


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
        return self.tags[SERVICE_TAG]

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
    # Which policy kind decided the tracing: "MeshTrace" when any MeshTrace selects the dataplane (then
    # TrafficTraces are not used for it), "TrafficTrace" when one matches, else None.
    policy: str | None = None
    mesh_traces: tuple[str, ...] = ()  # the MeshTraces that apply, in merge order (the last one wins)
    ignored_traffic_trace: str | None = None  # the TrafficTrace that would apply without MeshTrace

    @property
    def node_id(self) -> str:
        return f"{self.mesh}.{self.dataplane}"

    def to_json(self) -> dict[str, Any]:
        """The inspect / config_dump document: a public contract, keys are only ever added."""
        mesh_trace = self.policy == "MeshTrace"
        doc: dict[str, Any] = {
            "mesh": self.mesh,
            "dataplane": self.dataplane,
            "trafficTrace": self.traffic_trace,
            "backend": None if self.backend is None else self.backend.to_json(mesh_trace),
            "inbound": [i.to_json() for i in self.inbound],
            "outbound": [o.to_json() for o in self.outbound],
            # Added with MeshTrace, after the historical keys: which policy kind decided the tracing.
            "policy": self.policy,
            "meshTraces": list(self.mesh_traces),
        }
        if mesh_trace:  # say that a matching TrafficTrace is not used
            doc["ignoredTrafficTrace"] = self.ignored_traffic_trace
        return doc


def tracing_line(doc: Mapping[str, Any], target: str | None = None, wire: str = "") -> str:
    """The tracing part of the ready line, from the inspect document: `traffic trace NAME -> URL`,
    `mesh trace A, B -> URL` (merge order), or `no tracing`. `target` replaces the backend's own address
    (the reporter's, when --otlp-endpoint overrides it) and `wire` follows it (" (OTLP/gRPC)")."""
    backend = doc.get("backend")
    if not backend:
        return "no tracing"
    if target is None:
        target = backend.get("url") or backend.get("endpoint", "")
    if doc.get("policy") == "MeshTrace":
        return f"mesh trace {', '.join(doc.get('meshTraces', []))} -> {target}{wire}"
    return f"traffic trace {doc.get('trafficTrace')} -> {target}{wire}"


class SnapshotError(Exception):
    """The dataplane cannot be resolved (unknown name, ...); the message is for the user."""


def _protocol_of(tags: Mapping[str, str]) -> str:
    return tags.get(PROTOCOL_TAG, "tcp")


_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_KUBERNETES_SERVICE = re.compile(rf"({_DNS_LABEL})_({_DNS_LABEL})_svc_([0-9]{{1,5}})")


def kubernetes_service_endpoint(service: str) -> str | None:
    """`backend_shop_svc_8080` -> `backend.shop.svc:8080`; None for a name not of that form."""
    match = _KUBERNETES_SERVICE.fullmatch(service)
    if match is None or not 1 <= int(match[3]) <= 65535:
        return None
    return f"{match[1]}.{match[2]}.svc:{int(match[3])}"


def _outbound(resources: Resources, dataplane: Dataplane, out: Outbound) -> OutboundListener:
    endpoints: list[str] = []
    external: list[str] = []
    protocols: set[str] = set()
    for other in sorted(resources.dataplanes, key=lambda d: d.name):
        if other.mesh != dataplane.mesh or other.name == dataplane.name:
            continue
        for inbound in other.inbound:
            if inbound.tags.get(SERVICE_TAG) == out.service:
                endpoints.append(f"{other.listen_address(inbound)}:{inbound.port}")
                protocols.add(_protocol_of(inbound.tags))
    for ext in sorted(resources.external_services, key=lambda e: e.name):
        if ext.mesh == dataplane.mesh and ext.tags.get(SERVICE_TAG) == out.service:
            external.append(ext.address)
            protocols.add(_protocol_of(ext.tags))
    by_dns = kubernetes_service_endpoint(out.service)
    if by_dns is not None:  # see the module's docstring: Dataplanes only tell the protocol
        endpoints = external or [by_dns]
    else:
        endpoints += external
    # Kuma infers one protocol for a service; endpoints that disagree fall back to plain TCP.
    if len(protocols) == 1:
        protocol = protocols.pop()
    elif not protocols:
        # Nothing tells the protocol. With no endpoint at all (a typo, a peer not deployed yet), HTTP: a
        # caller then gets Envoy's 503 UH naming the problem, not a silently closed TCP connection.
        protocol = out.tags.get(PROTOCOL_TAG, "tcp" if endpoints else "http")
    else:
        protocol = "tcp"
    return OutboundListener(out.address, out.port, out.service, protocol, tuple(endpoints))


def build_snapshot(resources: Resources, dataplane_name: str, dataplane: Dataplane | None = None) -> Snapshot:
    """Resolve one dataplane (by name, or the given one) against validated resources."""
    if dataplane is None:
        dataplane = next((d for d in resources.dataplanes if d.name == dataplane_name), None)
        if dataplane is None:
            known = ", ".join(sorted(d.name for d in resources.dataplanes)) or "none"
            raise SnapshotError(f'dataplane "{dataplane_name}" not found (known: {known})')
    mesh = resources.meshes.get(dataplane.mesh)
    if mesh is None:
        raise SnapshotError(f'dataplane "{dataplane.name}": mesh "{dataplane.mesh}" does not exist')
    policy = best_traffic_trace(dataplane, resources.traffic_traces)
    backend: TracingBackend | None = None
    traces = applicable(dataplane, resources.mesh_traces)
    if traces:  # MeshTrace decides for every dataplane it selects
        backend = to_backend(merge(traces), dataplane.mesh, resources.otel_backends)
    elif policy is not None:
        backend = mesh.backend(policy.backend or mesh.default_backend or "")
    inbound = tuple(
        InboundListener(
            address=dataplane.listen_address(i),
            port=i.port,
            service_address=i.service_address,
            service_port=i.service_port,
            protocol=_protocol_of(i.tags),
            tags=dict(i.tags),
        )
        for i in dataplane.inbound
    )
    services = sorted(i.tags[SERVICE_TAG] for i in dataplane.inbound if SERVICE_TAG in i.tags)
    return Snapshot(
        mesh=dataplane.mesh,
        dataplane=dataplane.name,
        service_name=services[0] if services else dataplane.name,
        traffic_trace=policy.name if policy is not None and not traces else None,
        backend=backend,
        inbound=inbound,
        outbound=tuple(_outbound(resources, dataplane, o) for o in dataplane.outbound),
        policy="MeshTrace" if traces else ("TrafficTrace" if policy is not None else None),
        mesh_traces=tuple(t.name for t in traces),
        ignored_traffic_trace=policy.name if policy is not None and traces else None,
    )
