"""The libnghttp2 binding driven with hand-made frames (hyperframe, hpack): what it must never do
silently. Each test names the failure it guards against."""

from __future__ import annotations

import contextlib
import ctypes
import logging

import h2.errors
import h2.events
import h2.exceptions
import hpack
import pytest
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from sidecar.proxy import ProxySettings, h2_nghttp2
from sidecar.proxy import h2_nghttp2_lib as ng
from sidecar.proxy.h2_errors import CodecError, CodecFailed
from tests.proxy.h2_peers import PREFACE, parse_frames

pytestmark = pytest.mark.skipif(not h2_nghttp2.available(), reason="libnghttp2 does not load here")

GET = [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
POST = [(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
PROTOCOL_ERROR, INTERNAL_ERROR = 1, 2


def codec(
    *, client_side: bool = False, max_streams: int = 100, drain: bool = True
) -> h2_nghttp2.NgConnection:
    conn = h2_nghttp2.NgConnection(
        client_side=client_side,
        settings={ng.SETTINGS_MAX_CONCURRENT_STREAMS: max_streams, ng.SETTINGS_INITIAL_WINDOW_SIZE: 65535},
        max_header_bytes=ProxySettings().max_header_bytes,
    )
    conn.initiate_connection()
    if drain:
        conn.data_to_send()
    return conn


def headers(enc: hpack.Encoder, sid: int, fields: list[tuple[str, str]], *flags: str) -> bytes:
    frame = HeadersFrame(sid)
    frame.data = enc.encode(fields)
    for flag in ("END_HEADERS", *flags):
        frame.flags.add(flag)
    return bytes(frame.serialize())


def client_start() -> bytes:
    return PREFACE + bytes(SettingsFrame(0).serialize())


def resets(events: list[h2.events.Event]) -> list[tuple[int, int, bool]]:
    return [
        (e.stream_id, e.error_code, e.remote_reset) for e in events if isinstance(e, h2.events.StreamReset)
    ]


# Callback exceptions -----------------------------------------------------------------------------
def test_an_exception_in_the_header_callback_resets_the_stream_and_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: CPython swallowed it, C read a stale return value, the field was dropped and the
    request forwarded without it."""
    conn = codec()
    real = conn.header

    def header(name: bytes, value: bytes) -> int:
        if name == b"x-boom":
            raise ValueError("boom")
        return real(name, value)

    monkeypatch.setattr(conn, "header", header)
    enc = hpack.Encoder()
    with caplog.at_level(logging.ERROR, "sidecar.proxy"):
        events = conn.receive_data(
            client_start()
            + headers(enc, 1, [*GET, ("x-boom", "1")], "END_STREAM")
            + headers(enc, 3, GET, "END_STREAM")
        )
    assert [e.stream_id for e in events if isinstance(e, h2.events.RequestReceived)] == [3]
    assert resets(events) == [(1, INTERNAL_ERROR, False)]
    sent = [f for f in parse_frames(conn.data_to_send())[0] if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in sent] == [(1, INTERNAL_ERROR)]
    assert "ValueError('boom')" in caplog.text and "stream reset" in caplog.text


def test_an_exception_in_a_frame_callback_fails_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = codec()

    def broken(frame: object) -> int:
        raise RuntimeError("bug")

    monkeypatch.setattr(conn, "frame_received", broken)
    with pytest.raises(CodecError) as raised:
        conn.receive_data(client_start())
    assert raised.value.kind == "callback_error" and raised.value.error_code == INTERNAL_ERROR
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_a_failing_data_provider_resets_its_stream_not_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: it returned a stale value to nghttp2, mem_send failed (-902) and nobody noticed."""
    conn = codec()
    enc = hpack.Encoder()
    conn.receive_data(
        client_start() + headers(enc, 1, GET, "END_STREAM") + headers(enc, 3, GET, "END_STREAM")
    )
    conn.data_to_send()
    for sid in (1, 3):
        conn.send_headers(sid, [(b":status", b"200")])
        conn.send_data(sid, b"hello")
        conn.end_stream(sid)

    real = conn.read_data

    def read_data(stream_id: int, buf: int, length: int, flags: object) -> int:
        if stream_id == 1:
            raise MemoryError
        return real(stream_id, buf, length, flags)

    monkeypatch.setattr(conn, "read_data", read_data)
    sent = parse_frames(conn.data_to_send())[0]
    assert [(f.stream_id, f.error_code) for f in sent if isinstance(f, RstStreamFrame)] == [
        (1, INTERNAL_ERROR)
    ]
    assert [f.data for f in sent if isinstance(f, DataFrame) and f.stream_id == 3] == [b"hello"]
    assert resets(conn.late_events) == [(1, INTERNAL_ERROR, False)]  # the owner learns of it


def test_a_failed_send_is_reported_to_the_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = codec()
    conn.receive_data(client_start() + headers(hpack.Encoder(), 1, GET, "END_STREAM"))
    conn.data_to_send()

    def closed(stream_id: int, error_code: int) -> int:
        raise RuntimeError("bug")

    monkeypatch.setattr(conn, "stream_closed", closed)
    conn.send_headers(1, [(b":status", b"204")], end_stream=True)
    conn.data_to_send()
    [failed] = conn.late_events
    assert isinstance(failed, CodecFailed) and failed.error.kind == "callback_error"


# Streams nghttp2 resets itself (MadeYouReset) ----------------------------------------------------
@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("window overflow on a stream", lambda enc: headers(enc, 1, POST) + _window_update(1, 2**31 - 1)),
        ("malformed field", lambda enc: headers(enc, 1, [*GET, ("connection", "x")], "END_STREAM")),
        ("body over content-length",
         lambda enc: headers(enc, 1, [*POST, ("content-length", "1")]) + _data(1, b"xx", end=True)),
    ],
)  # fmt: skip
def test_every_stream_nghttp2_resets_is_reported(case: str, make: object) -> None:
    """Before: the RST_STREAM left in mem_send and the proxy never heard of it: the upstream request
    went on after its stream was gone."""
    conn = codec()
    assert callable(make)
    events = conn.receive_data(client_start() + make(hpack.Encoder()))
    [(sid, code, remote)] = resets(events)
    assert sid == 1 and code != 0 and remote is False
    sent = [f for f in parse_frames(conn.data_to_send())[0] if isinstance(f, RstStreamFrame)]
    assert [f.stream_id for f in sent] == [1]


def _window_update(sid: int, increment: int) -> bytes:
    frame = WindowUpdateFrame(sid)
    frame.window_increment = increment
    return bytes(frame.serialize())


def _data(sid: int, data: bytes, *, end: bool = False) -> bytes:
    frame = DataFrame(sid)
    frame.data = data
    if end:
        frame.flags.add("END_STREAM")
    return bytes(frame.serialize())


def test_a_malformed_response_resets_only_its_stream() -> None:
    conn = codec(client_side=True)
    server_frames = bytes(SettingsFrame(0).serialize())
    conn.receive_data(server_frames)
    for _ in range(2):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in GET], end_stream=True)
    conn.data_to_send()
    enc = hpack.Encoder()
    events = conn.receive_data(
        headers(enc, 1, [(":status", "200"), ("transfer-encoding", "chunked")], "END_STREAM")
        + headers(enc, 3, [(":status", "200")], "END_STREAM")
    )
    assert resets(events) == [(1, PROTOCOL_ERROR, False)]
    assert [e.stream_id for e in events if isinstance(e, h2.events.ResponseReceived)] == [3]


# Connection errors nghttp2 handles alone ----------------------------------------------------------
@pytest.mark.parametrize(
    "frame",
    [
        bytes([0, 0, 5, 4, 0, 0, 0, 0, 0]) + b"\0" * 5,  # SETTINGS of a length not a multiple of 6
        bytes([0, 0, 7, 6, 0, 0, 0, 0, 0]) + b"\0" * 7,  # PING of 7 bytes
        bytes([0, 0, 1, 0, 0, 0, 0, 0, 5]) + b"x",  # DATA on an idle stream
        bytes([0, 0, 1, 0, 0, 0, 0, 0, 0]) + b"x",  # DATA on stream 0
    ],
    ids=["settings length", "ping length", "data on idle stream", "data on stream 0"],
)
def test_a_connection_error_without_invalid_frame_callback_is_raised(frame: bytes) -> None:
    """Before: nghttp2 queued GOAWAY and ignored all further input, and the connection stayed open."""
    conn = codec()
    with pytest.raises(CodecError) as raised:
        conn.receive_data(client_start() + frame)
    assert raised.value.error_code == PROTOCOL_ERROR or raised.value.kind == "frame_size"
    goaways = [f for f in parse_frames(conn.data_to_send())[0] if isinstance(f, GoAwayFrame)]
    assert len(goaways) == 1 and goaways[0].error_code != 0


def test_a_graceful_goaway_is_no_error() -> None:
    conn = codec()
    goaway = GoAwayFrame(0)
    events = conn.receive_data(client_start() + goaway.serialize())
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events)


def test_too_many_streams_after_the_settings_ack_is_counted_as_such() -> None:
    conn = codec(max_streams=2)
    enc = hpack.Encoder()
    ack = SettingsFrame(0)
    ack.flags.add("ACK")
    with pytest.raises(CodecError) as raised:
        conn.receive_data(
            client_start() + ack.serialize() + b"".join(headers(enc, sid, GET) for sid in (1, 3, 5))
        )
    assert raised.value.kind == "too_many_streams"


def test_every_library_error_of_a_read_is_counted() -> None:
    conn = codec()
    enc = hpack.Encoder()
    conn.receive_data(
        client_start()
        + headers(enc, 1, [*GET, ("connection", "x")], "END_STREAM")
        + headers(enc, 3, [*GET, ("te", "gzip")], "END_STREAM")
    )
    assert conn.stream_errors == ["bad_headers", "bad_headers"]


# Late trailers, stream ids, bookkeeping ----------------------------------------------------------
@pytest.mark.parametrize("code", [h2.errors.ErrorCodes.CANCEL, h2.errors.ErrorCodes.NO_ERROR])
def test_late_trailers_for_a_stream_just_reset_are_ignored(code: h2.errors.ErrorCodes) -> None:
    """Before: a connection error (stream id too low) that cut every other stream. NO_ERROR is the
    reset that ends a request the response finished early."""
    conn = codec()
    enc = hpack.Encoder()
    conn.receive_data(client_start() + headers(enc, 1, POST) + headers(enc, 3, GET, "END_STREAM"))
    conn.reset_stream(1, code)
    conn.data_to_send()
    events = conn.receive_data(
        headers(enc, 1, [("grpc-status", "0")], "END_STREAM") + PingFrame(0).serialize()
    )
    assert any(isinstance(e, h2.events.PingReceived) for e in events)
    conn.send_headers(3, [(b":status", b"204")], end_stream=True)  # stream 3 still served


def test_headers_on_a_stream_never_opened_below_the_highest_is_still_an_error() -> None:
    conn = codec()
    enc = hpack.Encoder()
    with pytest.raises(h2.exceptions.StreamIDTooLowError):
        conn.receive_data(
            client_start() + headers(enc, 5, GET, "END_STREAM") + headers(enc, 3, GET, "END_STREAM")
        )


def test_stream_ids_above_2_to_the_31_are_refused_not_wrapped() -> None:
    """Before: the getter was read as a signed int and went negative; the pool kept using it."""
    conn = codec(client_side=True)
    conn.receive_data(bytes(SettingsFrame(0).serialize()))
    assert conn.lib.nghttp2_session_set_next_stream_id(conn.session, ng.MAX_STREAM_ID) == 0
    sid = conn.get_next_available_stream_id()
    assert sid == ng.MAX_STREAM_ID
    conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in GET], end_stream=True)
    conn.data_to_send()
    assert conn.lib.nghttp2_session_get_next_stream_id(conn.session) > ng.MAX_STREAM_ID  # unsigned, as in C
    with pytest.raises(h2.exceptions.NoAvailableStreamIDError):
        conn.get_next_available_stream_id()


def test_remote_settings_do_not_outlive_the_session() -> None:
    conn = codec(client_side=True)
    settings = conn.remote_settings
    assert settings.max_concurrent_streams > 0
    del conn
    assert settings.max_concurrent_streams == 0  # no read of a freed session


def test_bookkeeping_stays_flat_over_100000_streams() -> None:
    """Before: `_reset_told` kept every stream reset after it had closed, and `stream_errors` every
    malformed response, for the life of the connection."""
    client, server = (
        codec(client_side=True, max_streams=1000, drain=False),
        codec(max_streams=1000, drain=False),
    )
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    get = [(k.encode(), v.encode()) for k, v in GET]
    for _ in range(100):
        sids = []
        for _ in range(1000):
            sid = client.get_next_available_stream_id()
            client.send_headers(sid, get, end_stream=True)
            sids.append(sid)
        for event in server.receive_data(client.data_to_send()):
            if isinstance(event, h2.events.RequestReceived):
                if event.stream_id % 4 == 1:
                    server.send_headers(event.stream_id, [(b":status", b"204")], end_stream=True)
                else:
                    server.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        client.receive_data(server.data_to_send())
        for sid in sids:  # the pool cancels streams already over (as after an early response)
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                client.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
        client.stream_errors.clear()  # the owner counts and clears them
    assert client.get_next_available_stream_id() > 2 * 100_000
    for conn in (client, server):
        sizes = conn.bookkeeping()
        assert sizes.pop("recent_resets") <= 1024
        assert all(size == 0 for size in sizes.values()), sizes


def test_every_function_is_declared() -> None:
    lib = ctypes.CDLL(ng.SONAME)
    assert ng.resolve(lib) == []
    for name, (restype, argtypes) in ng.SIGNATURES.items():
        function = getattr(lib, name)
        assert function.restype is restype and function.argtypes == argtypes, name
    assert ng.SIGNATURES["nghttp2_session_get_next_stream_id"][0] is ctypes.c_uint32


def test_a_missing_symbol_names_itself() -> None:
    lib, error = ng.load("libc.so.6")
    assert lib is None and error is not None and "nghttp2_session_mem_recv" in error
    lib, error = ng.load("libnghttp2-missing.so.14")
    assert lib is None and error is not None and "libnghttp2-missing.so.14" in error
