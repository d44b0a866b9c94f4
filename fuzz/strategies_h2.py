"""Hypothesis strategies for an HTTP/2 client's byte stream: the preface (usually), then frames built
with hyperframe from the parts the defences are about (header blocks, flags, stream ids, windows,
resets, CONTINUATION, PING/SETTINGS), the shapes that make a server reset streams itself (MadeYouReset),
frames of a length their type forbids, late trailers after a reset, sometimes a raw or mutated tail,
cut into arbitrary chunks."""

from __future__ import annotations

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import strategies as st

from fuzz.strategies import _cut

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
STREAM_IDS = st.sampled_from([0, 1, 3, 5, 2, 7, 2**31 - 1])
FIELDS = [
    (b":method", b"GET"), (b":method", b"POST"), (b":method", b"CONNECT"), (b":scheme", b"http"),
    (b":authority", b"a"), (b":path", b"/"), (b":path", b""), (b":status", b"200"), (b"host", b"b"),
    (b"content-length", b"3"), (b"content-length", b"x"), (b"te", b"trailers"), (b"te", b"gzip"),
    (b"connection", b"close"), (b"x-b3-traceid", b"463ac35c9f6413ad"), (b"Upper", b"1"),
    (b"content-type", b"application/grpc"), (b"grpc-timeout", b"1S"), (b"cookie", b"a=1"), (b"x", b"\x00"),
]  # fmt: skip
REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]


def _block(fields: list[tuple[bytes, bytes]], valid_request: bool) -> bytes:
    return hpack.Encoder().encode((REQUEST if valid_request else []) + fields)


def _frame() -> st.SearchStrategy[bytes]:
    flags = st.lists(st.sampled_from(["END_STREAM", "END_HEADERS", "ACK", "PADDED", "PRIORITY"]), max_size=3)

    def headers(sid: int, fields: list[tuple[bytes, bytes]], valid: bool, chosen: list[str]) -> bytes:
        frame = HeadersFrame(sid or 1)
        frame.data = _block(fields, valid)
        for flag in chosen:
            if flag in ("END_STREAM", "END_HEADERS"):
                frame.flags.add(flag)
        return frame.serialize()

    def data(sid: int, size: int, chosen: list[str]) -> bytes:
        frame = DataFrame(sid or 1)
        frame.data = b"d" * size
        if "END_STREAM" in chosen:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    def continuation(sid: int, raw: bytes, chosen: list[str]) -> bytes:
        frame = ContinuationFrame(sid or 1)
        frame.data = raw
        if "END_HEADERS" in chosen:
            frame.flags.add("END_HEADERS")
        return frame.serialize()

    def window(sid: int, increment: int) -> bytes:
        frame = WindowUpdateFrame(sid)
        frame.window_increment = increment
        return frame.serialize()

    def reset(sid: int, code: int) -> bytes:
        frame = RstStreamFrame(sid or 1)
        frame.error_code = code
        return frame.serialize()

    def settings(values: dict[int, int], ack: bool) -> bytes:
        frame = SettingsFrame(0, settings={} if ack else values)
        if ack:
            frame.flags.add("ACK")
        return frame.serialize()

    def goaway(last: int, code: int) -> bytes:
        frame = GoAwayFrame(0)
        frame.last_stream_id, frame.error_code = last, code
        return frame.serialize()

    def priority(sid: int, depends: int) -> bytes:
        frame = PriorityFrame(sid or 1)
        frame.depends_on = depends
        return frame.serialize()

    def bad_length(kind: int, length: int, sid: int) -> bytes:
        """A frame whose length its type forbids (SETTINGS not a multiple of 6, PING not 8, ...): a
        connection error nghttp2 handles without telling any callback."""
        return length.to_bytes(3, "big") + bytes([kind, 0]) + sid.to_bytes(4, "big") + b"\0" * length

    def made_you_reset(sid: int, how: int) -> bytes:
        """A stream opened, then one of the frames that make the server reset it (MadeYouReset)."""
        post = HeadersFrame(sid or 1)
        fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]
        post.data = hpack.Encoder().encode([*fields, (b"content-length", b"1")])
        post.flags.add("END_HEADERS")
        if how == 1:
            post.flags.add("END_STREAM")
        out = post.serialize()
        if how == 0:  # the server's send window pushed past 2^31-1
            return out + window(sid or 1, 2**31 - 1)
        if how == 1:  # DATA on a stream the client has half-closed
            return out + data(sid or 1, 1, [])
        return out + data(sid or 1, 2, ["END_STREAM"])  # a body over its content-length

    def late_trailers(sid: int) -> bytes:
        """A stream, its reset, then its trailers (sent before the client saw a reset, say)."""
        trailers = HeadersFrame(sid or 1)
        trailers.data = hpack.Encoder().encode([(b"grpc-status", b"0")])
        trailers.flags.add("END_HEADERS")
        trailers.flags.add("END_STREAM")
        return headers(sid, [], True, ["END_HEADERS"]) + reset(sid, 8) + trailers.serialize()

    return st.one_of(
        st.builds(bad_length, st.sampled_from([2, 3, 4, 6, 8]), st.sampled_from([0, 3, 5, 7, 9]), STREAM_IDS),
        st.builds(made_you_reset, STREAM_IDS, st.integers(0, 2)),
        st.builds(late_trailers, STREAM_IDS),
        st.builds(headers, STREAM_IDS, st.lists(st.sampled_from(FIELDS), max_size=5), st.booleans(), flags),
        st.builds(data, STREAM_IDS, st.sampled_from([0, 1, 100, 16384, 20000]), flags),
        st.builds(continuation, STREAM_IDS, st.binary(max_size=20), flags),
        st.builds(window, STREAM_IDS, st.sampled_from([0, 1, 65535, 2**31 - 1])),
        st.builds(reset, STREAM_IDS, st.integers(0, 14)),
        st.builds(
            settings, st.dictionaries(st.integers(1, 8), st.integers(0, 2**31), max_size=3), st.booleans()
        ),
        st.builds(goaway, STREAM_IDS, st.integers(0, 14)),
        st.builds(priority, STREAM_IDS, STREAM_IDS),
        st.just(PingFrame(0).serialize()),
        st.binary(min_size=9, max_size=30),  # an unknown type, or garbage
    )


def h2_streams() -> st.SearchStrategy[list[bytes]]:
    start = st.sampled_from([PREFACE + SettingsFrame(0).serialize(), PREFACE, b"PRI * HTTP/2.0\r\n\r\n", b""])
    body = st.lists(_frame(), max_size=12).map(b"".join)
    stream = st.builds(lambda a, b: a + b, start, body)
    return st.builds(_cut, stream, st.lists(st.integers(0, 10_000), max_size=4))
