"""OTLP/HTTP intake: an `ExportTraceServiceRequest` (protobuf) decoded into Zipkin v2 span dicts, so OTLP
spans join the same store, query API and trees as Zipkin ones.

Resource `service.name` becomes `localEndpoint.serviceName`; ids are hex (a trace id with a zero high
half is shortened, as for padded Zipkin ids); times go from Unix nanoseconds to microseconds; attributes
become string tags, with the semantic-convention names the sidecar writes also given their Envoy names
(`http.method`, `http.status_code`, `http.url`) for the tree, and status ERROR becomes `error: true`.
"""

from __future__ import annotations

import struct
from typing import Any

from sidecar.collector.proto import DecodeError, read_fields

_KINDS = {2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS_ERROR = 2


def _string(value: Any) -> str:
    if not isinstance(value, bytes):
        raise DecodeError("expected a length-delimited field")
    return value.decode()


def _any_value(data: bytes) -> str:
    for number, wire, value in read_fields(data):
        if number == 1 and wire == 2:
            return _string(value)
        if number == 2 and wire == 0:
            return "true" if value else "false"
        if number == 3 and wire == 0:
            return str(value - (1 << 64) if value >= 1 << 63 else value)
        if number == 4 and wire == 1:
            return repr(struct.unpack("<d", value.to_bytes(8, "little"))[0])
    return ""


def _key_values(data: bytes) -> tuple[str, str]:
    key, text = "", ""
    for number, wire, value in read_fields(data):
        if number == 1 and wire == 2:
            key = _string(value)
        elif number == 2 and wire == 2:
            text = _any_value(value)
    return key, text


def _hex_id(value: Any, name: str, size: int) -> str:
    if not isinstance(value, bytes) or len(value) != size:
        raise DecodeError(f"{name} must be {size} bytes")
    return value.hex()


def _envoy_names(tags: dict[str, str]) -> None:
    """The tree reads Envoy's tag names: add them from the semantic-convention ones when missing."""
    if "http.request.method" in tags:
        tags.setdefault("http.method", tags["http.request.method"])
    if "http.response.status_code" in tags:
        tags.setdefault("http.status_code", tags["http.response.status_code"])
    if "url.path" in tags and "http.url" not in tags:
        host = tags.get("server.address", "")
        port = f":{tags['server.port']}" if "server.port" in tags else ""
        query = f"?{tags['url.query']}" if "url.query" in tags else ""
        tags["http.url"] = f"{tags.get('url.scheme', 'http')}://{host}{port}{tags['url.path']}{query}"


def _span(data: bytes, service: str | None) -> dict[str, Any]:
    span: dict[str, Any] = {}
    tags: dict[str, str] = {}
    start = end = 0
    for number, wire, value in read_fields(data):
        if number == 1:
            trace_id = _hex_id(value, "trace_id", 16)
            span["traceId"] = trace_id[16:] if trace_id.startswith("0" * 16) else trace_id
        elif number == 2:
            span["id"] = _hex_id(value, "span_id", 8)
        elif number == 4 and value:
            span["parentId"] = _hex_id(value, "parent_span_id", 8)
        elif number == 5:
            span["name"] = _string(value)
        elif number == 6 and wire == 0 and value in _KINDS:
            span["kind"] = _KINDS[value]
        elif number == 7 and wire == 1:
            start = value
        elif number == 8 and wire == 1:
            end = value
        elif number == 9 and wire == 2:
            key, text = _key_values(value)
            tags[key] = text
        elif number == 15 and wire == 2:
            codes = [v for n, w, v in read_fields(value) if n == 3 and w == 0]
            if codes and codes[-1] == _STATUS_ERROR:
                tags["error"] = "true"
    if "traceId" not in span or "id" not in span:
        raise DecodeError("span without trace_id or span_id")
    span["timestamp"] = start // 1000
    span["duration"] = max(1, (end - start) // 1000) if end >= start else 1
    if service:
        span["localEndpoint"] = {"serviceName": service}
    _envoy_names(tags)
    if tags:
        span["tags"] = tags
    return span


def _resource_service(data: bytes) -> str | None:
    for number, wire, value in read_fields(data):
        if number == 1 and wire == 2:
            key, text = _key_values(value)
            if key == "service.name":
                return text
    return None


def decode_export_request(data: bytes) -> list[dict[str, Any]]:
    """Every span of an ExportTraceServiceRequest as a Zipkin v2 span dict; DecodeError if malformed."""
    spans: list[dict[str, Any]] = []
    try:
        for number, wire, resource_spans in read_fields(data):
            if number != 1 or wire != 2:
                continue
            fields = read_fields(resource_spans)
            service = next((_resource_service(v) for n, w, v in fields if n == 1 and w == 2), None)
            for n, w, scope_spans in fields:
                if n != 2 or w != 2:
                    continue
                for sn, sw, span in read_fields(scope_spans):
                    if sn == 2 and sw == 2:
                        spans.append(_span(span, service))
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8: {exc}") from None
    return spans
