"""Trace and span identifiers: lower-hex validation and random generation (randomness is passed in)."""

from __future__ import annotations

import random

_HEX = frozenset("0123456789abcdef")


def is_lower_hex(value: str, *lengths: int) -> bool:
    """True when `value` is lower-hex of one of `lengths` and not all zeros (B3: zero ids are invalid)."""
    if len(value) not in lengths or not _HEX.issuperset(value):
        return False
    return value.strip("0") != ""


def new_id64(rng: random.Random) -> int:
    """A random non-zero 64-bit id."""
    value = 0
    while value == 0:
        value = rng.getrandbits(64)
    return value


def hex64(value: int) -> str:
    return f"{value:016x}"
