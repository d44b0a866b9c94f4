"""Protobuf wire primitives: what is written reads back, and what is not protobuf is a DecodeError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.tracing.protowire import DecodeError, field, read_fields, read_varint, varint


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2**64 - 1, b"\xff" * 9 + b"\x01"),
    ],
)
def test_varint_table(value: int, encoded: bytes) -> None:
    assert varint(value) == encoded
    assert read_varint(encoded, 0) == (value, len(encoded))


@given(st.integers(0, 2**64 - 1))
def test_varint_round_trips(value: int) -> None:
    assert read_varint(varint(value), 0) == (value, len(varint(value)))


@given(st.lists(st.tuples(st.integers(1, 2**29 - 1), st.binary(max_size=300)), max_size=8))
def test_length_delimited_fields_read_back_in_order(fields: list[tuple[int, bytes]]) -> None:
    data = b"".join(field(number, payload) for number, payload in fields)
    assert read_fields(data) == [(number, 2, payload) for number, payload in fields]


def test_fixed_and_varint_fields() -> None:
    data = b"\x08\x96\x01" + b"\x11" + (7).to_bytes(8, "little") + b"\x1d" + (9).to_bytes(4, "little")
    assert read_fields(data) == [(1, 0, 150), (2, 1, 7), (3, 5, 9)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x08", "truncated varint"),
        (b"\x0a\x05abc", "truncated field"),
        (b"\x11\x00", "truncated fixed64"),
        (b"\x1d\x00", "truncated fixed32"),
        (b"\x0b", "unsupported wire type 3"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "varint too long"),
    ],
)
def test_what_is_not_protobuf_is_a_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        read_fields(data)


@given(st.binary(max_size=200))
def test_any_bytes_read_or_raise_decode_error(data: bytes) -> None:
    """Never another exception; what reads is typed by its wire type and covers the input whole."""
    try:
        fields = read_fields(data)
    except DecodeError:
        return
    covered = 0
    for number, wire, value in fields:
        assert number >= 0
        assert isinstance(value, bytes) if wire == 2 else isinstance(value, int)
        covered += len(value) if wire == 2 else 0
    assert covered <= len(data)
