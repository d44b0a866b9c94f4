"""The stable per-request-id sampling draw and the x-request-id rules."""

from __future__ import annotations

import math
import random
import re
import uuid

import pytest

from sidecar.tracing.request_id import is_valid_request_id, new_request_id
from sidecar.tracing.sampling import Sampling, client_draw, sample, threshold


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
    ids = [new_request_id(rng) for _ in range(200)]
    for rid in ids:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", rid)
        assert uuid.UUID(rid).version == 4
        assert uuid.UUID(rid).variant == uuid.RFC_4122
    # The fixed bits are the only fixed ones: every other digit, the variant's too, takes many values.
    assert {rid[19] for rid in ids} == set("89ab")
    for i in (0, 9, 15, 20, 35):
        assert len({rid[i] for rid in ids}) > 8
    assert len(set(ids)) == len(ids)


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


def test_request_id_sanity_byte_by_byte() -> None:
    """Every byte value, alone and between visible ones: only 0x21..0x7e pass."""
    for b in range(256):
        visible = 0x21 <= b <= 0x7E
        assert is_valid_request_id(bytes([b])) is visible
        assert is_valid_request_id(b"ab" + bytes([b]) + b"cd") is visible


# ---- Envoy's three knobs (MeshTrace's sampling.overall / client / random) --------------------------------

N = 4000


def request_ids(seed: int, n: int = N) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def expected(overall: float, client: float, rand: float, header: bool) -> float:
    """Envoy's meaning as a probability: `random` (or, with the header, `client` first) then `overall`."""
    o, c, r = overall / 100, client / 100, rand / 100
    return c * o + (1 - c) * min(r, o) if header else min(r, o)


def within_binomial(k: int, n: int, p: float) -> bool:
    """k successes out of n within 4.5 standard deviations of n*p (a false alarm about once in 150,000
    runs; the ids are seeded, so a given run is reproducible anyway)."""
    sigma = math.sqrt(n * p * (1 - p))
    return abs(k - n * p) <= 4.5 * sigma + 1


KNOBS = [
    # overall, client, random, x-client-trace-id present
    (100, 100, 100, False),
    (100, 100, 0, False),
    (100, 100, 30, False),
    (50, 100, 100, False),
    (80, 100, 30, False),  # random below overall: random decides
    (30, 100, 80, False),  # overall below random: overall caps
    (100, 100, 0, True),  # client 100: every request with the header
    (100, 40, 0, True),
    (100, 40, 20, True),  # client's draw, else random's: 0.4 + 0.6 x 0.2
    (50, 40, 20, True),  # and overall bounds the client path: 0.4 x 0.5 + 0.6 x 0.2
    (100, 0, 20, True),  # client 0: the header changes nothing
    (10, 100, 0, True),  # overall is the upper bound even for forced client traces
    (60, 100, 90, True),  # random above overall: the header changes nothing
]


@pytest.mark.parametrize(("overall", "client", "rand", "header"), KNOBS)
def test_each_knob_traces_its_share_of_requests(
    overall: float, client: float, rand: float, header: bool
) -> None:
    knobs = Sampling.from_percent(overall, client, rand)
    rng = random.Random(3)
    traced = sum(knobs.decide(rid, header, rng) for rid in request_ids(seed=int(overall + client + rand)))
    p = expected(overall, client, rand, header)
    assert within_binomial(traced, N, p), (traced, N * p)


@pytest.mark.parametrize(("overall", "client", "rand", "header"), KNOBS)
def test_knobs_decide_alike_at_every_hop(overall: float, client: float, rand: float, header: bool) -> None:
    knobs = Sampling.from_percent(overall, client, rand)
    ids = request_ids(seed=11, n=500)
    first = [knobs.decide(rid, header, random.Random(1)) for rid in ids]
    assert first == [knobs.decide(rid, header, random.Random(2)) for rid in ids]


def test_traffic_trace_sampling_is_the_single_percentage_as_before() -> None:
    ids = request_ids(seed=5, n=1000)
    knobs = Sampling.from_percent(37.5)
    for header in (False, True):
        assert [knobs.decide(rid, header, random.Random(0)) for rid in ids] == [
            sample(rid, threshold(37.5), random.Random(0)) for rid in ids
        ]


def test_client_draw_is_stable_and_independent_of_the_request_draw() -> None:
    ids = request_ids(seed=9)
    assert [client_draw(i) for i in ids] == [client_draw(i) for i in ids]
    # Among requests whose r is below 50 %, the client draw is still spread like any other.
    low = [i for i in ids if int(i[:8], 16) % 10000 < 5000]
    below = sum(client_draw(i) < 5000 for i in low)
    assert within_binomial(below, len(low), 0.5)


@pytest.mark.parametrize(
    ("overall", "client", "rand", "reads"),
    [
        (100, 100, 100, False),
        (100, 50, 100, False),
        (100, 100, 10, True),
        (10, 100, 10, False),
        (100, 0, 10, False),
    ],
)
def test_client_header_is_read_only_when_it_can_change_a_decision(
    overall: float, client: float, rand: float, reads: bool
) -> None:
    assert Sampling.from_percent(overall, client, rand).reads_client_header is reads
