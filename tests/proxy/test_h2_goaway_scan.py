"""The scan of nghttp2's output for a GOAWAY with an error code (h2_nghttp2._has_goaway_error)."""

from __future__ import annotations

import pytest
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, PingFrame, RstStreamFrame, SettingsFrame
from hypothesis import given
from hypothesis import strategies as st

from sidecar.proxy.h2_nghttp2 import _has_goaway_error


def goaway(code: int, last: int = 1, debug: bytes = b"") -> Frame:
    frame = GoAwayFrame(0)
    frame.error_code, frame.last_stream_id, frame.additional_data = code, last, debug
    return frame


def data(size: int) -> Frame:
    frame = DataFrame(1)
    frame.data = b"\x07" * size  # bytes that would read as GOAWAY (type 7) if the scan lost its place
    return frame


def reset(code: int) -> Frame:
    frame = RstStreamFrame(1)
    frame.error_code = code
    return frame


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([], False),
        ([SettingsFrame(0)], False),
        ([goaway(0)], False),  # NO_ERROR: a graceful goodbye
        ([goaway(6)], True),
        ([SettingsFrame(0), data(40), goaway(1, debug=b"why")], True),
        ([reset(2), goaway(0)], False),  # an error code on a RST_STREAM is a stream's
        ([data(20), goaway(0), PingFrame(0)], False),
    ],
)
def test_table(frames: list[Frame], expected: bool) -> None:
    assert _has_goaway_error(b"".join(f.serialize() for f in frames)) is expected


frames = st.one_of(
    st.builds(goaway, st.integers(0, 13), st.integers(0, 2**31 - 1), st.binary(max_size=20)),
    st.builds(data, st.integers(0, 60)),
    st.builds(reset, st.integers(0, 13)),
    st.just(SettingsFrame(0)),
)


@given(st.lists(frames, max_size=8))
def test_agrees_with_hyperframe(sequence: list[Frame]) -> None:
    expected = any(isinstance(f, GoAwayFrame) and f.error_code != 0 for f in sequence)
    assert _has_goaway_error(b"".join(f.serialize() for f in sequence)) is expected


@given(st.binary(max_size=64))
def test_any_bytes_are_only_an_answer(out: bytes) -> None:
    assert _has_goaway_error(out) in (True, False)  # a truncated frame ends the scan, nothing raises
