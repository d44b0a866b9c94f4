"""The transport of an OTLP endpoint: `host:port` is OTLP/gRPC, an http(s) URL is OTLP/HTTP."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from sidecar.reporting.http import HttpTransport
from sidecar.reporting.transport import Transport
from sidecar.tracing import encode_otlp

DEFAULT_PATH = "/v1/traces"


def otlp_url(endpoint: str) -> str:
    """An OTLP/HTTP URL with the default path `/v1/traces` when it has none."""
    parts = urlsplit(endpoint)
    if parts.path in ("", "/"):
        parts = parts._replace(path=DEFAULT_PATH)
    return urlunsplit(parts)


def is_url(endpoint: str) -> bool:
    return endpoint.startswith(("http://", "https://"))


def otlp_transport(endpoint: str, protocol: str, timeout: float) -> Transport:
    """`protocol` "http" (endpoint an http(s) URL) or "grpc" (endpoint `host:port`); ValueError if the
    endpoint does not fit its protocol."""
    if protocol == "http":
        if not is_url(endpoint):
            raise ValueError(f"an OTLP/HTTP endpoint is an http(s) URL, got {endpoint!r}")
        return HttpTransport(otlp_url(endpoint), encode_otlp.CONTENT_TYPE, "otlp_http", timeout)
    if protocol == "grpc":
        # Imported only for this protocol: it brings h2's connection machinery (1.5 MB of RSS).
        from sidecar.reporting.otlp_grpc import GrpcTransport

        return GrpcTransport(endpoint, timeout)
    raise ValueError(f"unknown OTLP protocol {protocol!r}: grpc or http")
