"""W3C traceparent/tracestate parsing and formatting, case by case (Trace Context Level 1, section 3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.tracing.w3c import TraceParent, format_traceparent, parse_traceparent, parse_tracestate

T = "0af7651916cd43dd8448eb211c80319c"
P = "b7ad6b7169203331"
VALID = f"00-{T}-{P}-01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (VALID, TraceParent(T, P, 1)),
        (f"00-{T}-{P}-00", TraceParent(T, P, 0)),
        (f"00-{T}-{P}-03", TraceParent(T, P, 3)),  # Level 2's random bit is kept for version 00
        (f"00-{T}-{P}-ff", TraceParent(T, P, 0xFF)),
        (f" {VALID}", TraceParent(T, P, 1)),  # optional whitespace around the value
        (f"\t{VALID}\t ", TraceParent(T, P, 1)),
        (f"cc-{T}-{P}-01", TraceParent(T, P, 1)),  # a higher version: its first four fields
        (f"cc-{T}-{P}-01-what-the-future-will-be-like", TraceParent(T, P, 1)),
        (f"cc-{T}-{P}-03", TraceParent(T, P, 1)),  # ...and only the sampled bit of its flags
        (f"01-{T}-{P}-00-", TraceParent(T, P, 0)),
    ],
)
def test_valid_traceparent(value: str, expected: TraceParent) -> None:
    assert parse_traceparent(value.encode()) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",  # what the proxy hands over for two traceparent fields
        f"ff-{T}-{P}-01",  # version ff is invalid
        f"00-{T}-{P}-01.",  # version 00 is exactly 55 characters
        f"00-{T}-{P}-01-what-the-future-will-be-like",
        f"cc-{T}-{P}-01.what-the-future-will-be-like",  # a later field starts after a dash
        f".0-{T}-{P}-01",
        f"0.-{T}-{P}-01",
        f"000-{T}-{P}-01",
        f"0000-{T}-{P}-01",
        f"0-{T}-{P}-01",
        f"0A-{T}-{P}-01",  # upper-case hex is not hex here
        f"00-{T.upper()}-{P}-01",
        f"00-{T}-{P.upper()}-01",
        f"00-{T}-{P}-0A",
        f"00-{'0' * 32}-{P}-01",  # all-zero ids
        f"00-{T}-{'0' * 16}-01",
        f"00-.{T[1:]}-{P}-01",
        f"00-{T[:-1]}.-{P}-01",
        f"00-{T}3-{P}-01",  # 33 hex
        f"00-{T[:-1]}-{P}-01",  # 31 hex
        f"00-{T}-.{P[1:]}-01",
        f"00-{T}-{P[:-1]}.-01",
        f"00-{T}-{P}7-01",
        f"00-{T}-{P[:-1]}-01",
        f"00-{T}-{P}-.0",
        f"00-{T}-{P}-0.",
        f"00-{T}-{P}-001",
        f"00-{T}-{P}-1",
        f"00_{T}_{P}_01",
        f"00-{T}-{P}-01\x00",
        f"00-{T}-{P}-0é",
    ],
)
def test_invalid_traceparent_is_ignored_as_a_whole(value: str) -> None:
    assert parse_traceparent(value.encode("utf-8")) is None


def test_traceparent_that_is_not_ascii() -> None:
    assert parse_traceparent(b"\xff" * 55) is None


@pytest.mark.parametrize(
    ("trace_id", "flags", "expected"),
    [
        (T, 1, f"00-{T}-{P}-01"),
        (T, 0, f"00-{T}-{P}-00"),
        (T, 3, f"00-{T}-{P}-03"),
        ("463ac35c9f6413ad", 1, f"00-0000000000000000463ac35c9f6413ad-{P}-01"),  # 64-bit: left-padded
    ],
)
def test_format_traceparent(trace_id: str, flags: int, expected: str) -> None:
    assert format_traceparent(trace_id, P, flags) == expected.encode()


_hex = st.text(alphabet="0123456789abcdef", min_size=1).filter(lambda s: s.strip("0") != "")


@given(
    trace=st.integers(1, 2**128 - 1),
    span=st.integers(1, 2**64 - 1),
    flags=st.integers(0, 255),
)
def test_format_then_parse_round_trips(trace: int, span: int, flags: int) -> None:
    trace_id, span_id = f"{trace:032x}", f"{span:016x}"
    assert parse_traceparent(format_traceparent(trace_id, span_id, flags)) == TraceParent(
        trace_id, span_id, flags
    )


@given(st.binary(max_size=80))
def test_any_bytes_parse_or_are_ignored(raw: bytes) -> None:
    parsed = parse_traceparent(raw)
    if parsed is not None:  # whatever is accepted is well-formed
        assert len(parsed.trace_id) == 32 and len(parsed.parent_id) == 16 and 0 <= parsed.flags <= 255


# tracestate ---------------------------------------------------------------------------------------
KEY = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
VALUE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ",=")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("foo=1", "foo=1"),
        ("foo=1,bar=2", "foo=1,bar=2"),
        ("foo=1 \t , \t bar=2, \t baz=3", "foo=1,bar=2,baz=3"),  # spaces around members dropped
        ("\t foo=1 \t", "foo=1"),
        ("foo=1,", "foo=1"),  # empty members (an empty field joined) dropped
        (",foo=1", "foo=1"),
        ("foo=1,,bar=2", "foo=1,bar=2"),
        (f"{KEY}={VALUE}", f"{KEY}={VALUE}"),  # every allowed character, the value's leading space kept
        (f"{KEY}@a-z0-9_-*/={VALUE}", f"{KEY}@a-z0-9_-*/={VALUE}"),
        ("z" * 256 + "=1", "z" * 256 + "=1"),
        ("t" * 241 + "@" + "v" * 14 + "=1", "t" * 241 + "@" + "v" * 14 + "=1"),
        ("0tenant@vendor=1", "0tenant@vendor=1"),  # a tenant may start with a digit
        ("foo=" + "x" * 256, "foo=" + "x" * 256),
        (",".join(f"bar{i:02d}={i:02d}" for i in range(1, 33)), None),  # 32 members: kept (below)
    ],
)
def test_valid_tracestate(value: str, expected: str | None) -> None:
    assert parse_tracestate(value.encode()) == (value if expected is None else expected).encode()


@pytest.mark.parametrize(
    "value",
    [
        "",
        " , ",
        "foo=1,foo=1",  # repeated key
        "foo=1,foo=2",
        "foo =1",  # illegal key characters
        "FOO=1",
        "foo.bar=1",
        "1foo=1",  # a simple key starts with a letter
        "foo@=1,bar=2",  # bad tenant@system forms
        "@foo=1,bar=2",
        "foo@@bar=1,bar=2",
        "foo@bar@baz=1,bar=2",
        "foo@1bar=1",
        "z" * 257 + "=1",  # key lengths
        "t" * 242 + "@v=1",
        "t@" + "v" * 15 + "=1",
        "foo=bar=baz",  # illegal values
        "foo=,bar=3",
        "foo",
        "foo=1 x\x7f",
        "foo=" + "x" * 257,
        ",".join(f"bar{i:02d}={i:02d}" for i in range(1, 34)),  # 33 members
        "foo=é",
    ],
)
def test_invalid_tracestate_is_dropped_as_a_whole(value: str) -> None:
    assert parse_tracestate(value.encode("utf-8")) is None


@given(st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9_*/-]{0,20}", fullmatch=True), _hex), max_size=40))
def test_tracestate_members_kept_in_order_when_keys_are_unique(members: list[tuple[str, str]]) -> None:
    raw = " , ".join(f"{k}={v}" for k, v in members).encode()
    keys = [k for k, _ in members]
    parsed = parse_tracestate(raw)
    if not members or len(set(keys)) != len(keys) or len(members) > 32:
        assert parsed is None
    else:
        assert parsed == ",".join(f"{k}={v}" for k, v in members).encode()
