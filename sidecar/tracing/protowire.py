"""Protocol Buffers wire format: the few primitives the hand-written encoders and decoders share.

Writing: varints and length-delimited fields. Reading: a message's top-level fields as (number, wire
type, value) with a clear error for anything that is not protobuf. No schema, no I/O.
"""

from __future__ import annotations

from typing import Any, Final

SMALL: Final = [bytes((i,)) for i in range(128)]  # the one-byte varints, shared rather than rebuilt


class DecodeError(ValueError):
    """The bytes are not a protobuf message (truncated, or a wire type proto3 does not use)."""


def varint(value: int) -> bytes:
    if value < 128:
        return SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def read_fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of a message's top-level fields: value is an int for varint and
    fixed fields, bytes for length-delimited ones."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = read_varint(data, pos)
        wire = key & 7
        value: int | bytes
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 2:
            size, pos = read_varint(data, pos)
            if pos + size > end:
                raise DecodeError("truncated field")
            value, pos = data[pos : pos + size], pos + size
        elif wire == 1 or wire == 5:
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise DecodeError(f"truncated fixed{width * 8}")
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        out.append((key >> 3, wire, value))
    return out
