"""Where a listener sends traffic and how it is traced; swapped atomically on reload."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sidecar.config.snapshot import InboundListener, OutboundListener
from sidecar.proxy.endpoint import Endpoint, endpoint_of, parse_endpoint
from sidecar.tracing.decide import SpanKind, Tracer

SpanSink = Callable[[bytes], None]
AccessLog = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Route:
    direction: str  # "inbound" | "outbound"
    cluster: str  # Envoy-like cluster name: the `upstream_cluster` tag
    endpoints: tuple[Endpoint, ...]
    tracer: Tracer
    sink: SpanSink | None = None  # the reporter's submit; None when nothing is traced
    remote_service: str | None = None  # outbound: the destination service
    access_log: AccessLog | None = None
    _cycle: Iterator[Endpoint] = field(init=False, repr=False, compare=False)
    default_host: bytes = field(init=False, repr=False, compare=False)  # Host for a request without one

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cycle", itertools.cycle(self.endpoints))
        object.__setattr__(self, "default_host", self.cluster.encode())

    @property
    def kind(self) -> SpanKind:
        return "SERVER" if self.direction == "inbound" else "CLIENT"

    def next_endpoint(self) -> Endpoint | None:
        """Round-robin over the endpoints (Envoy's default load balancing is round robin too)."""
        return next(self._cycle) if self.endpoints else None

    @classmethod
    def inbound(
        cls,
        spec: InboundListener,
        tracer: Tracer,
        sink: SpanSink | None = None,
        access_log: AccessLog | None = None,
    ) -> Route:
        # Kuma names inbound clusters after the local service port.
        return cls(
            "inbound",
            f"localhost:{spec.service_port}",
            (endpoint_of(spec.service_address, spec.service_port),),
            tracer,
            sink,
            None,
            access_log,
        )

    @classmethod
    def outbound(
        cls,
        spec: OutboundListener,
        tracer: Tracer,
        sink: SpanSink | None = None,
        access_log: AccessLog | None = None,
    ) -> Route:
        endpoints = tuple(parse_endpoint(e) for e in spec.endpoints)
        return cls("outbound", spec.service, endpoints, tracer, sink, spec.service, access_log)
