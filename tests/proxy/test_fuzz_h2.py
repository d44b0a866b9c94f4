"""Property test of the HTTP/2 client path (fuzz/fuzz_http2.py runs it longer): no exception escapes,
the output is well-formed framing, a close comes after a GOAWAY."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.fuzz_http2 import h2_case
from fuzz.harness_h2 import check_h2, codecs, feed_h2
from fuzz.strategies_h2 import PREFACE, h2_streams

_loop = asyncio.new_event_loop()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(h2_streams(), st.sampled_from(codecs()))
def test_http2_path_never_crashes(chunks: list[bytes], codec: str) -> None:
    h2_case(chunks, codec)


@pytest.mark.parametrize("codec", codecs())
def test_harness_sees_a_request_through_and_a_bad_preface_refused(codec: str) -> None:
    from hpack import Decoder, Encoder
    from hyperframe.frame import Frame, HeadersFrame, SettingsFrame

    frame = HeadersFrame(1)
    frame.data = Encoder().encode(
        [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/x")]
    )
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    out, closed = _loop.run_until_complete(
        feed_h2(_loop, [PREFACE + SettingsFrame(0).serialize() + frame.serialize()], codec)
    )
    check_h2(out, closed)
    assert not closed
    decoder, data, fields = Decoder(), memoryview(out), {}
    while data:
        parsed, length = Frame.parse_frame_header(data[:9])
        parsed.parse_body(data[9 : 9 + length])
        if isinstance(parsed, HeadersFrame) and parsed.stream_id == 1:
            fields = dict(decoder.decode(parsed.data, raw=True))
        data = data[9 + length :]
    assert fields[b":status"] == b"200" and fields[b"x-seq"] == b"0"  # the h11 origin answered
    out, closed = _loop.run_until_complete(feed_h2(_loop, [b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"], codec))
    check_h2(out, closed)
    assert closed


def _frame(kind: int, stream: int, body: bytes, flags: int = 0) -> bytes:
    return len(body).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + body


_SETTINGS = _frame(4, 0, b"")
_OPEN = _frame(1, 1, b"\x83\x86A\x81\x1f\x84\\\x81\x0f", flags=4)  # POST with content-length: stream 1 open
_CLIENT_GOAWAY = _frame(7, 0, bytes(8))  # last stream 0, NO_ERROR: the client is leaving
# Rows: in one read, a stream opened, the client's GOAWAY, then a frame that is a connection error.
# Found by the property on libnghttp2 (the last row): the error's GOAWAY went out and the connection
# stayed open.
LEAVING = [
    ("DATA on stream 0", _frame(0, 0, b"")),
    ("WINDOW_UPDATE of 0 on the connection", _frame(8, 0, bytes(4))),
    ("SETTINGS with a bad length", _frame(4, 0, b"\x00\x04\x00")),
    ("PRIORITY of length 0 on stream 0", _frame(2, 0, b"")),
]


@pytest.mark.parametrize("codec", codecs())
@pytest.mark.parametrize(("case", "error"), LEAVING, ids=[r[0] for r in LEAVING])
@pytest.mark.parametrize("overflow", [False, True], ids=["", "stream window overflowed"])
def test_a_connection_error_after_the_client_goaway_still_closes(
    case: str, error: bytes, overflow: bool, codec: str
) -> None:
    # With `overflow`, stream 1's send window overflows first (a stream error: the stream is reset).
    reset = _frame(8, 1, b"\x7f\xff\xff\xff") if overflow else b""
    chunk = PREFACE + _SETTINGS + _OPEN + reset + _CLIENT_GOAWAY + error
    out, closed = _loop.run_until_complete(feed_h2(_loop, [chunk], codec))
    check_h2(out, closed)
    assert closed, case
