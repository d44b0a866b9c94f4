"""B3 extraction and formatting, case by case (openzipkin/b3-propagation)."""

from __future__ import annotations

import pytest

from sidecar.tracing.b3 import B3Context, extract, format_multi, format_single, parse_single

T64 = "463ac35c9f6413ad"
T128 = "463ac35c9f6413ad48485a3953bb6124"
S = "a2fb4a1d1a96d312"
P = "0020000000000001"


def h(**kw: str) -> dict[bytes, bytes]:
    return {k.replace("_", "-").encode(): v.encode() for k, v in kw.items()}


def test_multi_full_context() -> None:
    ctx = extract(h(x_b3_traceid=T64, x_b3_spanid=S, x_b3_parentspanid=P, x_b3_sampled="1"))
    assert ctx == B3Context(T64, S, P, True, False)


def test_multi_128bit_trace_id_kept() -> None:
    ctx = extract(h(x_b3_traceid=T128, x_b3_spanid=S))
    assert ctx is not None and ctx.trace_id == T128 and ctx.sampled is None


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), ("true", True), ("false", False)])
def test_multi_sampled_values_including_legacy(value: str, expected: bool) -> None:
    ctx = extract(h(x_b3_traceid=T64, x_b3_spanid=S, x_b3_sampled=value))
    assert ctx is not None and ctx.sampled is expected


def test_multi_debug_flag() -> None:
    ctx = extract(h(x_b3_traceid=T64, x_b3_spanid=S, x_b3_flags="1"))
    assert ctx is not None and ctx.debug


@pytest.mark.parametrize(
    "headers",
    [
        h(x_b3_traceid=T64),  # span id missing: partial
        h(x_b3_spanid=S),  # trace id missing: partial
        h(x_b3_parentspanid=P),  # parent alone
        h(x_b3_traceid=T64[:-1], x_b3_spanid=S),  # 15 chars
        h(x_b3_traceid=T64 + "0", x_b3_spanid=S),  # 17 chars
        h(x_b3_traceid=T64, x_b3_spanid=S + "00"),  # 18-char span id
        h(x_b3_traceid=T64.upper(), x_b3_spanid=S),  # not lower-hex
        h(x_b3_traceid="0" * 16, x_b3_spanid=S),  # zero trace id
        h(x_b3_traceid=T64, x_b3_spanid="0" * 16),  # zero span id
        h(x_b3_traceid=T64, x_b3_spanid=S, x_b3_parentspanid="xyz"),
        h(x_b3_traceid=T64, x_b3_spanid=S, x_b3_sampled="yes"),
        h(x_b3_traceid=T64, x_b3_spanid=S, x_b3_flags="2"),
        h(x_b3_traceid="g" * 16, x_b3_spanid=S),
        {b"x-b3-traceid": "é".encode() * 8, b"x-b3-spanid": S.encode()},
        {},
    ],
)
def test_multi_invalid_or_partial_is_ignored_as_a_whole(headers: dict[bytes, bytes]) -> None:
    assert extract(headers) is None


def test_multi_sampling_only() -> None:
    assert extract(h(x_b3_sampled="0")) == B3Context(None, None, None, False, False)


def test_multi_debug_only() -> None:
    ctx = extract(h(x_b3_flags="1"))
    assert ctx is not None and ctx.debug and not ctx.has_ids


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"{T64}-{S}", B3Context(T64, S, None, None, False)),
        (f"{T64}-{S}-1", B3Context(T64, S, None, True, False)),
        (f"{T64}-{S}-0", B3Context(T64, S, None, False, False)),
        (f"{T64}-{S}-d", B3Context(T64, S, None, True, True)),
        (f"{T128}-{S}-1-{P}", B3Context(T128, S, P, True, False)),
        ("0", B3Context(None, None, None, False, False)),
        ("1", B3Context(None, None, None, True, False)),
        ("d", B3Context(None, None, None, True, True)),
    ],
)
def test_single_header_valid(value: str, expected: B3Context) -> None:
    assert parse_single(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        T64,
        f"{T64}-",
        f"{T64}-{S}-2",
        f"{T64}-{S}-true",
        f"{T64}-{S}-1-{P}-extra",
        f"{T64}-{S}--{P}",
        f"{T64[:-1]}-{S}",
        f"{T64}-{S.upper()}",
        f"{T64}-{S}-1-abc",
        "true",
    ],
)
def test_single_header_invalid(value: str) -> None:
    assert parse_single(value) is None


def test_single_header_debug_only() -> None:
    ctx = extract({b"b3": b"d"})
    assert ctx is not None and ctx.debug and ctx.sampled and not ctx.has_ids


def test_single_takes_precedence_over_multi() -> None:
    headers = h(x_b3_traceid=T128, x_b3_spanid=P, x_b3_sampled="0") | {b"b3": f"{T64}-{S}-1".encode()}
    assert extract(headers) == B3Context(T64, S, None, True, False)


def test_invalid_single_falls_back_to_multi() -> None:
    headers = h(x_b3_traceid=T64, x_b3_spanid=S) | {b"b3": b"garbage"}
    assert extract(headers) == B3Context(T64, S, None, None, False)


def test_format_multi_root_has_no_parent_and_explicit_decision() -> None:
    assert format_multi(T64, S, None, False, False) == [
        (b"x-b3-traceid", T64.encode()),
        (b"x-b3-spanid", S.encode()),
        (b"x-b3-sampled", b"0"),
    ]


def test_format_multi_debug_sends_flags_and_sampled() -> None:
    out = dict(format_multi(T64, S, P, True, True))
    assert out[b"x-b3-flags"] == b"1" and out[b"x-b3-sampled"] == b"1"
    assert out[b"x-b3-parentspanid"] == P.encode()


def test_format_single_round_trips() -> None:
    for sampled, debug in ((True, False), (False, False), (True, True)):
        value = format_single(T128, S, P, sampled, debug).decode()
        assert parse_single(value) == B3Context(T128, S, P, sampled, debug)
