"""Trace and span id checks against a plain reference."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.tracing.ids import hex64, is_lower_hex


def reference(value: str, *lengths: int) -> bool:
    return len(value) in lengths and re.fullmatch("[0-9a-f]*", value) is not None and set(value) != {"0"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("463ac35c9f6413ad", True),
        ("463ac35c9f6413ad463ac35c9f6413ad", True),
        ("0000000000000001", True),
        ("0000000000000000", False),  # all zeros: invalid in B3
        ("463AC35C9F6413AD", False),  # upper case
        ("463ac35c9f6413a", False),  # 15
        ("463ac35c9f6413adf", False),  # 17
        ("463ac35c9f6413a ", False),
        ("463ac35c9f6413aé", False),  # non-ASCII of the right length
        ("463ac35c9f6413a\ud800", False),  # a lone surrogate cannot be encoded: still just False
        ("", False),
    ],
)
def test_table(value: str, expected: bool) -> None:
    assert is_lower_hex(value, 16, 32) is expected


@given(st.one_of(st.text(), st.text("0123456789abcdefABX -", min_size=14, max_size=34)))
def test_agrees_with_a_regular_expression(value: str) -> None:
    assert is_lower_hex(value, 16, 32) == reference(value, 16, 32)
    assert is_lower_hex(value, 16) == reference(value, 16)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, "0000000000000001"), (0x463AC35C9F6413AD, "463ac35c9f6413ad"), (2**64 - 1, "f" * 16)],
)
def test_hex64_table(value: int, expected: str) -> None:
    assert hex64(value) == expected


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_hex64_is_sixteen_lower_hex_digits(value: int) -> None:
    assert hex64(value) == f"{value:016x}"
