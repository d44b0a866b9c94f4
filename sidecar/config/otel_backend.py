"""MeshOpenTelemetryBackend documents to typed resources (Kuma's validation messages), and the rule that
picks the one a MeshTrace's `backendRef` selects.

A MeshOpenTelemetryBackend (Kuma 2.14+) names an OpenTelemetry collector once, for every policy that
refers to it by labels: `spec.endpoint.{address,port,path}` and `spec.protocol` (grpc or http).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sidecar.config.fields import Checks, labels_of, mesh_name, spec_view
from sidecar.config.load import RawResource
from sidecar.config.model import Mesh, OpenTelemetryBackend, Source
from sidecar.config.problems import Problem, did_you_mean, shown

KIND = "MeshOpenTelemetryBackend"
PROTOCOLS = ("grpc", "http")
DEFAULT_PORT = 4317  # Kuma's default for a MeshOpenTelemetryBackend without a port, either protocol
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?$"
)


def select_otel_backend(
    labels: Mapping[str, str], mesh: str, backends: Sequence[OpenTelemetryBackend]
) -> OpenTelemetryBackend | None:
    """Kuma's rule: among the mesh's MeshOpenTelemetryBackends carrying every label, the oldest (by
    creation time; without times, by name)."""
    found = [b for b in backends if b.mesh == mesh and all(b.labels.get(k) == v for k, v in labels.items())]
    if not found:
        return None

    def age(b: OpenTelemetryBackend) -> tuple[bool, datetime, str]:
        created = b.creation_time or _EPOCH
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return (b.creation_time is None, created, b.name)

    return min(found, key=age)


def _address_ok(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return bool(_DNS_NAME.match(address))


def otel_backend(
    raw: RawResource, out: list[Problem], meshes: Mapping[str, Mesh], created: datetime | None
) -> OpenTelemetryBackend:
    p0 = Checks(raw, out)
    mesh = mesh_name(raw, p0)
    labels = labels_of(raw, p0)
    p, spec = spec_view(raw, p0)
    spec = p.mapping(spec, "", ("endpoint", "protocol", "env"))
    p.mesh_exists(mesh, meshes)
    protocol = spec.get("protocol", "grpc")
    if protocol not in PROTOCOLS:
        p.add(
            "protocol",
            f"protocol must be one of: {', '.join(PROTOCOLS)}, got {shown(protocol)}"
            f"{did_you_mean(protocol, PROTOCOLS)}",
        )
        protocol = "grpc"
    endpoint = p.mapping(spec.get("endpoint"), "endpoint", ("address", "port", "path"))
    address = endpoint.get("address")
    if address is None:
        p.add(
            "endpoint.address",
            "must be defined (this sidecar reads no collector address from the environment)",
        )
        address = ""
    elif not isinstance(address, str) or address == "":
        p.add("endpoint.address", "must not be empty")
        address = ""
    elif not _address_ok(address):
        p.add("endpoint.address", f"address has to be a valid IP or hostname, got {shown(address)}")
    port = p.port(endpoint.get("port"), "endpoint.port", required=False) or DEFAULT_PORT
    path = endpoint.get("path")
    if path is not None and path != "":
        if protocol == "grpc":
            p.add("endpoint.path", "must not be set when protocol is grpc")
        elif not isinstance(path, str) or not path.startswith("/"):
            p.add("endpoint.path", f"must start with /, got {shown(path)}")
        elif any(c in path for c in "?#"):
            p.add("endpoint.path", "must not contain query or fragment")
    return OpenTelemetryBackend(
        raw.name,
        mesh,
        labels,
        str(address),
        port,
        str(path) if path else None,
        str(protocol),
        created,
        Source(raw.file, raw.line),
    )
