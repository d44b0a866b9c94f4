"""The one call the proxy makes per request head, and the one it makes when the exchange ends.

INTERFACE STUB written by the lead so the proxy can be built in parallel; the tracing helper replaces
the bodies (keep the names, parameters and types; extend only with keyword arguments that have defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

SpanKind = Literal["SERVER", "CLIENT"]

#: Lowercase names of the request headers the tracing decision reads and may replace. The proxy passes
#: the first value of each one present to `Tracer.start`, and drops from the forwarded head every name in
#: `Decision.remove` before appending `Decision.headers`.
TRACE_HEADER_NAMES: frozenset[bytes] = frozenset(
    {b"x-request-id", b"b3", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid", b"x-b3-sampled", b"x-b3-flags"}
)


@dataclass(frozen=True, slots=True)
class TracerSettings:
    """What the tracer needs of a resolved backend (kept free of config types: tracing imports no config)."""

    sampling: float = 100.0  # percent
    trace_id_128bit: bool = False
    shared_span_context: bool = True
    api_version: str = "httpJson"  # "httpJson" -> finish() returns JSON bytes, "httpProto" -> proto3 bytes


class OpenSpan:
    """A span between `Tracer.start` and `Tracer.finish` (fields owned by tracing/span.py)."""


@dataclass(slots=True)
class Decision:
    request_id: str
    trace_id: str  # lower hex, "" when nothing is traced (no backend)
    span_id: str  # the id this hop propagates upstream ("" when nothing is traced)
    sampled: bool
    headers: list[tuple[bytes, bytes]]  # lowercase name, value: append these to the forwarded head
    remove: frozenset[bytes]  # lowercase names to drop from the incoming head first
    span: OpenSpan | None  # None when unsampled or when there is no backend


class Tracer:
    def __init__(
        self,
        settings: TracerSettings | None,  # None: no TrafficTrace -> only x-request-id handling
        *,
        service_name: str,
        node_id: str,
    ) -> None:
        raise NotImplementedError

    def start(
        self,
        kind: SpanKind,
        incoming: Mapping[bytes, bytes],  # lowercase trace-header name -> first value, as received
        *,
        method: str,
        authority: str,  # Host header value ("" when missing); the span name
        path: str,  # request target as received
        scheme: str,  # "http"
        protocol: str,  # "HTTP/1.1"
        user_agent: str | None,
        peer_address: str,  # the downstream peer "ip:port" (tag peer.address; SERVER remoteEndpoint)
        upstream_cluster: str,  # Envoy-like cluster name: "localhost:8080" (inbound) or "backend" (outbound)
        remote_service: str | None = None,  # CLIENT: destination service, remoteEndpoint.serviceName
    ) -> Decision:
        raise NotImplementedError

    def finish(
        self,
        span: OpenSpan,
        *,
        status: int,  # 0 when no response
        request_size: int,
        response_size: int,
        response_flags: str,  # "-" or Envoy's flags ("UF", "UH", "UR", "UT", "DC")
        upstream_address: str | None,  # "ip:port" actually used (tag upstream_address; CLIENT remoteEndpoint)
    ) -> bytes:
        """Close the span and return it encoded once (JSON object or one proto3 ListOfSpans entry)."""
        raise NotImplementedError
