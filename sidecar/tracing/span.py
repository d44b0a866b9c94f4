"""The span record: opened by the tracer at the request head, closed once when the exchange ends."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Final, Literal

SpanKind = Literal["SERVER", "CLIENT"]
PATH_TAG_LIMIT: Final = 256  # Envoy's default max_path_tag_length


@dataclass(frozen=True, slots=True)
class ZipkinEndpoint:
    service_name: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    port: int | None = None  # never 0: Zipkin treats 0 as absent, so we omit it


@functools.lru_cache(maxsize=4096)
def zipkin_endpoint(address: str | None, service_name: str | None = None) -> ZipkinEndpoint | None:
    """`ip:port` or `[ipv6]:port` (or a bare ip) to a ZipkinEndpoint; hostnames keep only the service name.

    Cached: peers and upstreams repeat across requests, and ip_address() is slow."""
    ipv4 = ipv6 = None
    port: int | None = None
    if address:
        host, sep, port_text = address.rpartition(":")
        if not sep or "]" in port_text:
            host, port_text = address, ""
        host = host.strip("[]")
        if port_text.isdigit() and 0 < int(port_text) < 65536:
            port = int(port_text)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            ipv4, ipv6 = (str(ip), None) if ip.version == 4 else (None, str(ip))
        else:
            port = None  # a port without an address says nothing useful
    if service_name is None and ipv4 is None and ipv6 is None:
        return None
    return ZipkinEndpoint(service_name, ipv4, ipv6, port)


class Span:
    """Mutable while open; `finish` fills duration and the closing tags. Ids are lower-hex strings."""

    __slots__ = (
        "debug",
        "duration_us",
        "kind",
        "local_service",
        "name",
        "parent_id",
        "peer_address",
        "remote_endpoint",
        "remote_service",
        "shared",
        "span_id",
        "start_ns",
        "tags",
        "timestamp_us",
        "trace_id",
    )

    def __init__(
        self,
        *,
        trace_id: str,
        span_id: str,
        parent_id: str | None,
        kind: SpanKind,
        name: str,
        timestamp_us: int,
        start_ns: int,
        local_service: str,
        tags: dict[str, str],
        shared: bool = False,
        debug: bool = False,
        peer_address: str | None = None,
        remote_service: str | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.kind = kind
        self.name = name
        self.timestamp_us = timestamp_us
        self.start_ns = start_ns
        self.duration_us = 0
        self.local_service = local_service
        self.tags = tags
        self.shared = shared
        self.debug = debug
        self.peer_address = peer_address
        self.remote_service = remote_service
        self.remote_endpoint: ZipkinEndpoint | None = None

    def __repr__(self) -> str:
        ids = f"{self.trace_id}/{self.span_id} parent={self.parent_id}"
        return f"Span({self.kind} {ids} shared={self.shared})"


def http_url(scheme: str, authority: str, path: str) -> str:
    """Envoy's `http.url` tag: `proto://host/path`, the path cut at 256 characters."""
    return f"{scheme}://{authority}{path[:PATH_TAG_LIMIT]}"
