"""The stable per-request-id sampling draw and the x-request-id rules."""

from __future__ import annotations

import random
import re
import uuid

import pytest

from sidecar.tracing.request_id import is_valid_request_id, new_request_id
from sidecar.tracing.sampling import sample, threshold


@pytest.mark.parametrize(
    ("percent", "expected"), [(100.0, 10000), (0.0, 0), (50.0, 5000), (33.33, 3333), (0.01, 1)]
)
def test_threshold_is_envoys_numerator_out_of_10000(percent: float, expected: int) -> None:
    assert threshold(percent) == expected


def test_draw_uses_first_8_hex_chars_mod_10000() -> None:
    rng = random.Random(0)
    # 0x00001388 = 5000 -> r = 5000: not sampled at 50 %, sampled at 50.01 %.
    rid = "00001388-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
    assert not sample(rid, threshold(50.0), rng)
    assert sample(rid, threshold(50.01), rng)
    # 0xffffffff % 10000 = 7295
    assert sample("ffffffff-0000", 7296, rng) and not sample("ffffffff-0000", 7295, rng)


def test_same_request_id_same_decision_at_every_hop() -> None:
    ids = [str(uuid.uuid4()) for _ in range(200)]
    first = [sample(i, threshold(30.0), random.Random(1)) for i in ids]
    again = [sample(i, threshold(30.0), random.Random(2)) for i in ids]
    assert first == again
    assert 0 < sum(first) < len(ids)


def test_non_hex_request_id_falls_back_to_random_draw() -> None:
    draws = {sample("not-a-hex-id", threshold(50.0), random.Random(seed)) for seed in range(50)}
    assert draws == {True, False}


def test_all_or_nothing() -> None:
    rng = random.Random(0)
    assert sample("zzz", threshold(100.0), rng)
    assert not sample("00000000", threshold(0.0), rng)


def test_new_request_id_is_lowercase_uuid4() -> None:
    rng = random.Random(3)
    for _ in range(100):
        rid = new_request_id(rng)
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", rid)
        assert uuid.UUID(rid).version == 4


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (b"abc", True),
        (b"x" * 128, True),
        (b"x" * 129, False),
        (b"", False),
        (b"a b", False),
        (b"a\x01", False),
    ],
)
def test_request_id_sanity(value: bytes, valid: bool) -> None:
    assert is_valid_request_id(value) is valid
