"""A small proto3 decoder for Zipkin's `ListOfSpans` into Zipkin v2 JSON dicts (specs/zipkin.proto)."""

from __future__ import annotations

import ipaddress
from typing import Any

from sidecar.tracing.protowire import DecodeError, read_fields

__all__ = ["DecodeError", "read_fields"]

_KINDS = {1: "CLIENT", 2: "SERVER", 3: "PRODUCER", 4: "CONSUMER"}


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
