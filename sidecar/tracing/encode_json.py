"""Zipkin v2 JSON: one span to one JSON object (encoded once), a batch is a byte join."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from sidecar.tracing.span import Span, ZipkinEndpoint

CONTENT_TYPE: Final = "application/json"
_dumps: Final = orjson.dumps  # Final: a C static when compiled, no module lookup per span
_memoryview: Final = memoryview  # the same, for a builtin


def _endpoint(ep: ZipkinEndpoint) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ep.service_name:
        out["serviceName"] = ep.service_name
    if ep.ipv4:
        out["ipv4"] = ep.ipv4
    if ep.ipv6:
        out["ipv6"] = ep.ipv6
    if ep.port:
        out["port"] = ep.port
    return out


def span_to_dict(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": span.trace_id, "id": span.span_id}
    if span.parent_id is not None:
        out["parentId"] = span.parent_id
    out["kind"] = span.kind
    out["name"] = span.name
    out["timestamp"] = span.timestamp_us
    out["duration"] = span.duration_us
    out["localEndpoint"] = {"serviceName": span.local_service}
    if span.remote_endpoint is not None:
        out["remoteEndpoint"] = _endpoint(span.remote_endpoint)
    out["tags"] = span.tags
    if span.debug:
        out["debug"] = True
    if span.shared:
        out["shared"] = True
    return out


def encode_span(span: Span) -> bytes:
    # orjson returns its whole output buffer (~8 KiB) for a ~600-byte span; spans wait in the
    # reporter's buffer, so keep an exact-size copy (measured cheaper than keeping the slack).
    return _memoryview(_dumps(span_to_dict(span))).tobytes()


def encode_batch(spans: Sequence[bytes]) -> bytes:
    """A JSON array of the spans, built by one join (a batch is hundreds of KB: no copy of it twice)."""
    if not spans:
        return b"[]"
    last = len(spans) - 1
    if last == 0:
        return b"[" + spans[0] + b"]"
    return b",".join([b"[" + spans[0], *spans[1:last], spans[last] + b"]"])
