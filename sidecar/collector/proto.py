"""A small proto3 decoder for Zipkin's `ListOfSpans` into Zipkin v2 JSON dicts (specs/zipkin.proto)."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

_KINDS = {1: "CLIENT", 2: "SERVER", 3: "PRODUCER", 4: "CONSUMER"}


class DecodeError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def read_fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) triples; value is int for varint/fixed, bytes for length-delimited."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            if pos + 8 > len(data):
                raise DecodeError("truncated fixed64")
            value = struct.unpack_from("<Q", data, pos)[0]
            pos += 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise DecodeError("truncated field")
            value = data[pos : pos + size]
            pos += size
        elif wire == 5:
            if pos + 4 > len(data):
                raise DecodeError("truncated fixed32")
            value = struct.unpack_from("<I", data, pos)[0]
            pos += 4
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _endpoint(data: bytes) -> dict[str, Any]:
    ep: dict[str, Any] = {}
    for number, _, value in read_fields(data):
        if number == 1:
            ep["serviceName"] = value.decode()
        elif number == 2 and len(value) == 4:
            ep["ipv4"] = str(ipaddress.IPv4Address(value))
        elif number == 3 and len(value) == 16:
            ep["ipv6"] = str(ipaddress.IPv6Address(value))
        elif number == 4 and value:
            ep["port"] = value
    return ep


def _id(value: bytes, name: str, sizes: tuple[int, ...]) -> str:
    if len(value) not in sizes:
        raise DecodeError(f"{name} must be {' or '.join(map(str, sizes))} bytes, got {len(value)}")
    return value.hex()


def decode_span(data: bytes) -> dict[str, Any]:
    span: dict[str, Any] = {}
    tags: dict[str, str] = {}
    annotations: list[dict[str, Any]] = []
    for number, _, value in read_fields(data):
        if number == 1:
            span["traceId"] = _id(value, "trace_id", (8, 16))
        elif number == 2:
            span["parentId"] = _id(value, "parent_id", (8,))
        elif number == 3:
            span["id"] = _id(value, "id", (8,))
        elif number == 4 and value in _KINDS:
            span["kind"] = _KINDS[value]
        elif number == 5:
            span["name"] = value.decode()
        elif number == 6:
            span["timestamp"] = value
        elif number == 7:
            span["duration"] = value
        elif number == 8:
            span["localEndpoint"] = _endpoint(value)
        elif number == 9:
            span["remoteEndpoint"] = _endpoint(value)
        elif number == 10:
            ann = {n: v for n, _, v in read_fields(value)}
            annotations.append({"timestamp": ann.get(1, 0), "value": ann.get(2, b"").decode()})
        elif number == 11:
            entry = {n: v for n, _, v in read_fields(value)}
            tags[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
        elif number == 12 and value:
            span["debug"] = True
        elif number == 13 and value:
            span["shared"] = True
    if "traceId" not in span or "id" not in span:
        raise DecodeError("span without trace_id or id")
    if tags:
        span["tags"] = tags
    if annotations:
        span["annotations"] = annotations
    return span


def decode_list_of_spans(data: bytes) -> list[dict[str, Any]]:
    try:
        return [decode_span(value) for number, wire, value in read_fields(data) if number == 1 and wire == 2]
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8: {exc}") from None
