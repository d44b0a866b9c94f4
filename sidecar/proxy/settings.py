"""Limits and timeouts of the data path, with defaults (Envoy's where a sidecar wants the same)."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.proxy.head import UnderscoreAction


@dataclass(frozen=True, slots=True)
class ProxySettings:
    max_header_bytes: int = 60 * 1024  # Envoy's max_request_headers_kb default
    max_headers: int = 100  # Envoy's max_headers_count default
    upstream_timeout: float = 15.0  # seconds from request sent to response headers (Envoy's route timeout)
    connect_timeout: float = 5.0  # seconds to connect to an upstream (Envoy's default)
    header_timeout: float = 10.0  # seconds to receive a request head, HTTP/1.1 or HTTP/2 (Envoy's
    # request_headers_timeout; `--request-headers-timeout`)
    idle_timeout: float = 300.0  # seconds a downstream keep-alive connection may sit idle
    pool_idle_timeout: float = 60.0  # seconds an idle upstream connection is kept
    pool_max_idle: int = 1024  # idle upstream connections kept per endpoint (fewer churn under load)
    buffer_high: int = 256 * 1024  # bytes buffered toward a peer before the other side is paused
    stream_idle_timeout: float = 300.0  # an HTTP/2 stream with no frame either way is reset (Kuma's 5 min)
    h2_max_concurrent_streams: int = 100  # per client connection (nghttpx's default)
    h2_stream_window: int = 256 * 1024  # flow-control window we grant per stream...
    h2_connection_window: int = 1024 * 1024  # ...and per connection: what we may hold for a peer
    h2_max_resets: int = 200  # client resets in 10 s on one connection before GOAWAY (rapid reset)
    h2_max_control_frames: int = 1000  # PING and SETTINGS in 10 s on one connection before GOAWAY
    h2_codec: str = "auto"  # "nghttp2" (libnghttp2 through ctypes), "h2", or auto: the first that loads
    headers_with_underscores: UnderscoreAction = UnderscoreAction.DROP  # request header names with "_"
    dns_ttl: float = 5.0  # seconds a resolved endpoint name is kept before it is resolved again
