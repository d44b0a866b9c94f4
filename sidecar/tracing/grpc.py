"""gRPC on a span, Envoy's way: request tags from the headers, status tags from the trailers (or a
trailers-only response), and which statuses are the server's fault and so mark the span `error`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

# Envoy's server-side error set: Unknown, DeadlineExceeded, ResourceExhausted, Unimplemented, Internal,
# Unavailable, DataLoss.
SERVER_ERRORS: Final = frozenset({2, 4, 8, 12, 13, 14, 15})
OK, CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE = 0, 1, 4, 14


def is_grpc(content_type: bytes | None) -> bool:
    """`application/grpc`, `application/grpc+proto`, `application/grpc-web...` (gRPC over HTTP/2)."""
    return content_type is not None and content_type.startswith(b"application/grpc")


def span_name(path: bytes) -> str:
    """A gRPC span is named after its method, `/pkg.Service/Method`, not the authority: one operation
    per RPC, the way gRPC users look for them (an HTTP span keeps Envoy's name, the Host)."""
    return path.decode("latin-1")


def request_tags(path: bytes, authority: bytes, content_type: bytes, timeout: bytes | None) -> dict[str, str]:
    tags = {
        "grpc.path": path.decode("latin-1"),
        "grpc.authority": authority.decode("latin-1"),
        "grpc.content_type": content_type.decode("latin-1"),
    }
    if timeout is not None:
        tags["grpc.timeout"] = timeout.decode("latin-1")
    return tags


def status_tags(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """From trailers or a trailers-only response: grpc.status_code, grpc.message, and error."""
    tags: dict[str, str] = {}
    for name, value in headers:
        if name == b"grpc-status":
            text = value.decode("latin-1").strip()
            tags["grpc.status_code"] = text
            if text.isdigit() and int(text) in SERVER_ERRORS:
                tags["error"] = "true"
        elif name == b"grpc-message":
            tags["grpc.message"] = value.decode("latin-1")
    return tags


_UNITS: Final = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


def timeout_seconds(value: bytes | None) -> float | None:
    """The `grpc-timeout` header (`100m`, `5S`: at most 8 digits and a unit) in seconds, None if absent
    or malformed."""
    if not value or len(value) > 9 or not value[:-1].isdigit():
        return None
    unit = _UNITS.get(value[-1:])
    return None if unit is None else int(value[:-1]) * unit
