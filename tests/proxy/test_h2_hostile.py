"""Hostile HTTP/2, one row per attack: GOAWAY with the expected error code, the connection closed, the
kind counted, and the listener still serving, including a connection that was open all along."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from sidecar.proxy import ProxySettings
from tests.proxy.conftest import Bench
from tests.proxy.h2_peers import PREFACE, Frames, goaway_codes, read_to_close

SETTINGS = SettingsFrame(0).serialize()
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, ENHANCE_YOUR_CALM = 1, 3, 11

pytestmark = pytest.mark.usefixtures("h2_codec")  # every test on both codecs


def request_block(encoder: hpack.Encoder, extra: list[tuple[str, str]] | None = None) -> bytes:
    base = [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
    return encoder.encode(base + (extra or []))


def headers(stream_id: int, block: bytes, *flags: str) -> bytes:
    frame = HeadersFrame(stream_id)
    frame.data = block
    for flag in flags:
        frame.flags.add(flag)
    return frame.serialize()


def header_list_too_large() -> bytes:
    """61 KiB of fields in frames of the default 16 KiB maximum: HEADERS, then CONTINUATIONs."""
    block = request_block(hpack.Encoder(), [(f"x-big-{i}", "v" * 1000) for i in range(61)])
    parts = [block[i : i + 16000] for i in range(0, len(block), 16000)]
    out = PREFACE + SETTINGS + headers(1, parts[0], "END_STREAM")
    for i, part in enumerate(parts[1:], 1):
        frame = ContinuationFrame(1)
        frame.data = part
        if i == len(parts) - 1:
            frame.flags.add("END_HEADERS")
        out += frame.serialize()
    return out


def rapid_reset() -> bytes:
    enc = hpack.Encoder()
    out = PREFACE + SETTINGS
    for sid in range(1, 2 * 400, 2):
        rst = RstStreamFrame(sid)
        rst.error_code = 8
        out += headers(sid, request_block(enc), "END_HEADERS") + rst.serialize()
    return out


def continuation_flood() -> bytes:
    block = request_block(hpack.Encoder())
    out = PREFACE + SETTINGS + headers(1, block[:2])
    for _ in range(10000):
        frame = ContinuationFrame(1)
        frame.data = b"\x00"
        out += frame.serialize()
    return out


def hpack_bomb() -> bytes:
    enc = hpack.Encoder()
    block = request_block(enc, [("x-bomb", "a" * 4000)])
    block += b"".join(enc.encode([("x-bomb", "a" * 4000)]) for _ in range(200))  # 1 byte each, 4 KB decoded
    return PREFACE + SETTINGS + headers(1, block, "END_HEADERS", "END_STREAM")


def too_many_streams() -> bytes:
    enc = hpack.Encoder()
    return (
        PREFACE
        + SETTINGS
        + b"".join(headers(sid, request_block(enc), "END_HEADERS") for sid in range(1, 204, 2))
    )


def window_overflow() -> bytes:
    frame = WindowUpdateFrame(0)
    frame.window_increment = 2**31 - 1
    return PREFACE + SETTINGS + frame.serialize() + frame.serialize()


def stream_id_reuse() -> bytes:
    enc = hpack.Encoder()
    return (
        PREFACE
        + SETTINGS
        + headers(3, request_block(enc), "END_HEADERS", "END_STREAM")
        + headers(1, request_block(enc), "END_HEADERS", "END_STREAM")
    )


CASES: list[tuple[str, Callable[[], bytes], str, int]] = [
    ("bad preface", lambda: b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + SETTINGS, "bad_preface", PROTOCOL_ERROR),
    ("frames before SETTINGS", lambda: PREFACE + headers(1, request_block(hpack.Encoder()), "END_HEADERS"),
     "frame_before_settings", PROTOCOL_ERROR),
    ("header list over the limit", header_list_too_large, "header_list_too_large", ENHANCE_YOUR_CALM),
    ("more than 100 header fields",
     lambda: PREFACE + SETTINGS + headers(1, request_block(hpack.Encoder(), [(f"x-{i}", "v") for i in range(101)]),
                                          "END_HEADERS", "END_STREAM"),
     "too_many_headers", ENHANCE_YOUR_CALM),
    ("HPACK bomb", hpack_bomb, "header_list_too_large", ENHANCE_YOUR_CALM),
    ("CONTINUATION flood", continuation_flood, "continuation_flood", PROTOCOL_ERROR),
    ("rapid reset", rapid_reset, "rapid_reset", ENHANCE_YOUR_CALM),
    ("PING flood", lambda: PREFACE + SETTINGS + PingFrame(0).serialize() * 1100, "control_flood", ENHANCE_YOUR_CALM),
    ("SETTINGS flood", lambda: PREFACE + SETTINGS * 1100, "control_flood", ENHANCE_YOUR_CALM),
    ("too many concurrent streams", too_many_streams, "too_many_streams", PROTOCOL_ERROR),
    ("window overflow", window_overflow, "flow_control", FLOW_CONTROL_ERROR),
    ("stream id reuse", stream_id_reuse, "stream_id_reuse", PROTOCOL_ERROR),
]  # fmt: skip


async def h2_get(
    port: int, reader_writer: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
) -> int:
    """One GET over HTTP/2 with prior knowledge; its :status."""
    reader, writer = reader_writer or await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")],
                      end_stream=True)  # fmt: skip
    writer.write(conn.data_to_send())
    status = 0
    async with asyncio.timeout(10):
        while True:
            data = await reader.read(65536)
            assert data, "connection closed"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    status = int(dict(event.headers)[b":status"])
                if isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                    writer.write(conn.data_to_send())
                    return status
            writer.write(conn.data_to_send())


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accepts and never answers: streams stay open


async def test_h2_listener_serves(bench: Bench, refused_port: int) -> None:
    listener = await bench.proxy(refused_port, protocol="http2")
    assert await h2_get(listener.bound[1]) == 503  # parsed, proxied, answered (nothing listens upstream)


@pytest.mark.parametrize(("case", "make", "kind", "code"), CASES, ids=[c[0] for c in CASES])
async def test_hostile_http2_gets_goaway_and_close(
    bench: Bench, case: str, make: Callable[[], bytes], kind: str, code: int
) -> None:
    up = await bench.upstream(silent)
    listener = await bench.proxy(up.port, protocol="http2", settings=ProxySettings(upstream_timeout=0.2))
    port = listener.bound[1]
    bystander = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(make())
    try:
        assert goaway_codes(await read_to_close(reader))[-1:] == [code]
    finally:
        writer.close()
    assert listener.stats.h2_errors == {kind: 1}
    # The listener still serves (the silent upstream makes that a 504 UT), on a new connection and on
    # one that was open all along.
    assert await h2_get(port) == 504
    assert await h2_get(port, bystander) == 504
    bystander[1].close()


@pytest.mark.parametrize(
    "field",
    [("connection", "keep-alive"), ("X-Upper", "a"), (":bogus", "x"), ("te", "gzip")],
    ids=["connection-specific", "uppercase name", "unknown pseudo-header", "te other than trailers"],
)
async def test_malformed_request_fields_are_refused_and_counted(
    bench: Bench, h2_codec: str, field: tuple[str, str]
) -> None:
    """RFC 9113 8.2: nghttp2 resets the stream (as nghttpx does) and the connection serves on; h2 ends
    the connection. Either way nothing reaches the upstream and the refusal is counted."""
    up = await bench.upstream(silent)
    listener = await bench.proxy(up.port, protocol="http2", settings=ProxySettings(upstream_timeout=0.2))
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    block = request_block(hpack.Encoder(), [field])
    writer.write(PREFACE + SETTINGS + headers(1, block, "END_HEADERS", "END_STREAM"))
    try:
        frames = Frames(reader)
        refusal = await frames.until(lambda f: isinstance(f, RstStreamFrame | GoAwayFrame))
        if h2_codec == "nghttp2":
            assert isinstance(refusal, RstStreamFrame) and refusal.stream_id == 1
            assert refusal.error_code == PROTOCOL_ERROR
            ping = PingFrame(0)
            ping.opaque_data = b"still-on"
            writer.write(ping.serialize())
            ack = await frames.until(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
            assert isinstance(ack, PingFrame) and ack.opaque_data == b"still-on"  # the connection serves on
        else:
            assert isinstance(refusal, GoAwayFrame) and refusal.error_code == PROTOCOL_ERROR
    finally:
        writer.close()
    assert listener.stats.h2_errors == {"bad_headers": 1} and up.connections <= (h2_codec == "nghttp2")
