"""Zipkin v2 proto3: one span to one complete `ListOfSpans.spans` entry; a batch is a concatenation.

A small hand-written encoder for this one message (specs/zipkin.proto), so no protobuf runtime is
needed; the tests decode its output with classes generated from the .proto file.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Sequence

from sidecar.tracing.protowire import field as _field
from sidecar.tracing.protowire import varint as _varint
from sidecar.tracing.span import Span, ZipkinEndpoint

CONTENT_TYPE = "application/x-protobuf"
_KIND = {"CLIENT": 1, "SERVER": 2}
_FIXED64 = struct.Struct("<Q")


@functools.lru_cache(maxsize=4096)
def _tag_key(key: str) -> bytes:
    """The constant start of a tags map entry up to its value: cached, tag names repeat."""
    return _field(1, key.encode())


@functools.lru_cache(maxsize=4096)
def _endpoint(ep: ZipkinEndpoint) -> bytes:
    out = b""
    if ep.service_name:
        out += _field(1, ep.service_name.encode())
    if ep.ipv4:
        out += _field(2, ipaddress.IPv4Address(ep.ipv4).packed)
    if ep.ipv6:
        out += _field(3, ipaddress.IPv6Address(ep.ipv6).packed)
    if ep.port:
        out += b"\x20" + _varint(ep.port)
    return out


@functools.lru_cache(maxsize=64)
def _local_endpoint(service: str) -> bytes:
    return _field(8, _endpoint(ZipkinEndpoint(service_name=service)))


def encode_span_message(span: Span) -> bytes:
    # 64-bit trace ids are left-padded to 16 bytes: Jaeger's proto receiver rejects 8-byte ones,
    # and a zero high half is the same trace for Zipkin.
    parts = [_field(1, bytes.fromhex(span.trace_id.rjust(32, "0")))]
    if span.parent_id is not None:
        parts.append(_field(2, bytes.fromhex(span.parent_id)))
    parts.append(_field(3, bytes.fromhex(span.span_id)))
    parts.append(b"\x20" + _varint(_KIND[span.kind]))
    if span.name:
        parts.append(_field(5, span.name.encode()))
    parts.append(b"\x31" + _FIXED64.pack(span.timestamp_us))
    parts.append(b"\x38" + _varint(span.duration_us))
    parts.append(_local_endpoint(span.local_service))
    if span.remote_endpoint is not None:
        parts.append(_field(9, _endpoint(span.remote_endpoint)))
    for key, value in span.tags.items():
        entry = _tag_key(key) + _field(2, value.encode())
        parts.append(b"\x5a" + _varint(len(entry)) + entry)
    if span.debug:
        parts.append(b"\x60\x01")
    if span.shared:
        parts.append(b"\x68\x01")
    return b"".join(parts)


def encode_span(span: Span) -> bytes:
    return _field(1, encode_span_message(span))


def encode_batch(spans: Sequence[bytes]) -> bytes:
    return b"".join(spans)
