"""Hostile and broken HTTP/2 peers against the running proxy, on both codecs: streams the proxy resets
itself (MadeYouReset), connection errors, idle and slow clients, malformed and dead upstreams. Each
test names the time within which the proxy must act."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import pytest
from hyperframe.frame import (
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from sidecar.proxy import ProxySettings
from tests.proxy.conftest import Bench
from tests.proxy.h2_peers import GET, PREFACE, Frames, H2Client, Headers, goaway_codes, read_to_close

pytestmark = pytest.mark.usefixtures("h2_codec")  # every test on both codecs

SETTINGS = bytes(SettingsFrame(0).serialize())
POST = [(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
PROTOCOL_ERROR, ENHANCE_YOUR_CALM = 1, 11
# The proxy stamps a read with uvloop's clock: whole milliseconds, read once per loop turn. So a
# timeout it keeps can end up to this much before the same span on the test's clock.
CLOCK_GRAIN = 0.002

Answer = Callable[["TrackingUpstream", h2.connection.H2Connection, int, Headers], None]


class _Origin(h2.connection.H2Connection):
    MAX_CLOSED_STREAMS = 1024  # the test's own memory must not count in the proxy's


class TrackingUpstream:
    """An HTTP/2 origin that records which streams are open at once and when each was cancelled;
    `answer` may respond (malformed if it likes: outbound headers are not validated)."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer
        self.open: set[tuple[int, int]] = set()
        self.max_open = 0
        self.requests = 0
        self.cancelled: list[float] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> TrackingUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.writers.append(writer)
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = _Origin(config)
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    key = (number, getattr(event, "stream_id", 0) or 0)
                    if isinstance(event, h2.events.RequestReceived):
                        self.requests += 1
                        self.open.add(key)
                        self.max_open = max(self.max_open, len(self.open))
                        if self.answer is not None:
                            self.answer(self, conn, key[1], list(event.headers))  # type: ignore[arg-type]
                    elif isinstance(event, h2.events.StreamReset):
                        if key in self.open:
                            self.open.discard(key)
                            self.cancelled.append(loop.time())
                    elif isinstance(event, h2.events.StreamEnded) and key not in self.open:
                        pass
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, key[1])
                writer.write(conn.data_to_send())
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.open = {k for k in self.open if k[0] != number}
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()


@pytest.fixture
async def tracking() -> object:
    made: list[TrackingUpstream] = []

    async def make(answer: Answer | None = None) -> TrackingUpstream:
        up = await TrackingUpstream(answer).start()
        made.append(up)
        return up

    yield make
    for up in made:
        await up.close()


def headers_frame(enc: hpack.Encoder, sid: int, fields: list[tuple[str, str]], *flags: str) -> bytes:
    frame = HeadersFrame(sid)
    frame.data = enc.encode(fields)
    for flag in ("END_HEADERS", *flags):
        frame.flags.add(flag)
    return bytes(frame.serialize())


def window_overflow(sid: int) -> bytes:
    """WINDOW_UPDATE that pushes the proxy's send window of `sid` past 2^31-1: a stream error the
    codec answers with RST_STREAM of its own (one of MadeYouReset's shapes)."""
    frame = WindowUpdateFrame(sid)
    frame.window_increment = 2**31 - 1
    return bytes(frame.serialize())


async def until(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# MadeYouReset --------------------------------------------------------------------------------------
async def test_streams_the_proxy_resets_are_cancelled_upstream_within_a_second(
    bench: Bench, tracking: Callable[..., object]
) -> None:
    up = await tracking()  # type: ignore[misc]
    listener = await bench.proxy(up.port, protocol="http2")
    _reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    enc = hpack.Encoder()
    sids = range(1, 21, 2)
    writer.write(PREFACE + SETTINGS + b"".join(headers_frame(enc, sid, POST) for sid in sids))
    await until(lambda: len(up.open) == len(sids), 5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    writer.write(b"".join(window_overflow(sid) for sid in sids))
    await until(lambda: not up.open, 1.0)  # every upstream stream cancelled within a second
    assert len(up.cancelled) == len(sids) and max(up.cancelled) - start < 1.0
    writer.close()


async def test_upstream_work_stays_within_the_stream_limit(
    bench: Bench, tracking: Callable[..., object]
) -> None:
    """Batch after batch of streams the proxy must reset, each batch as large as the stream limit and
    sent once the client has seen the resets of the one before: the upstream never holds more (before,
    the streams nghttp2 reset went on upstream and piled up there)."""
    up = await tracking()  # type: ignore[misc]
    settings = ProxySettings(h2_max_concurrent_streams=5, h2_max_resets=10_000)
    listener = await bench.proxy(up.port, protocol="http2", settings=settings)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    frames = Frames(reader)
    enc = hpack.Encoder()
    writer.write(PREFACE + SETTINGS)
    sid = 1
    for i in range(20):
        batch = list(range(sid, sid + 10, 2))
        sid += 10
        writer.write(b"".join(headers_frame(enc, s, POST) for s in batch))
        await until(lambda i=i: up.requests == 5 * (i + 1), 5)  # the upstream works on the whole batch
        writer.write(b"".join(window_overflow(s) for s in batch))
        for _ in batch:
            await frames.until(lambda f: isinstance(f, RstStreamFrame))
    await until(lambda: not up.open, 5)
    assert up.requests == 100 and up.max_open == 5 and set(listener.stats.h2_errors) <= {"stream_error"}
    writer.close()


async def test_self_resets_count_in_the_reset_budget(bench: Bench, tracking: Callable[..., object]) -> None:
    up = await tracking()  # type: ignore[misc]
    listener = await bench.proxy(up.port, protocol="http2", settings=ProxySettings(h2_max_resets=20))
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    enc = hpack.Encoder()
    writer.write(
        PREFACE
        + SETTINGS
        + b"".join(headers_frame(enc, s, POST) + window_overflow(s) for s in range(1, 61, 2))
    )
    frames = await read_to_close(reader, 2.0)
    assert goaway_codes(frames)[-1:] == [ENHANCE_YOUR_CALM]
    assert listener.stats.h2_errors["rapid_reset"] == 1
    writer.close()


# Connection errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "frame",
    [
        bytes([0, 0, 5, 4, 0, 0, 0, 0, 0]) + b"\0" * 5,  # SETTINGS of a length not a multiple of 6
        bytes([0, 0, 7, 6, 0, 0, 0, 0, 0]) + b"\0" * 7,  # PING of 7 bytes
        bytes([0, 0, 1, 0, 0, 0, 0, 0, 5]) + b"x",  # DATA on an idle stream
    ],
    ids=["settings length", "ping length", "data on idle stream"],
)
async def test_a_connection_error_closes_the_connection_within_a_second(
    bench: Bench, tracking: Callable[..., object], frame: bytes
) -> None:
    up = await tracking()  # type: ignore[misc]
    listener = await bench.proxy(up.port, protocol="http2")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(PREFACE + SETTINGS + frame)
    frames = await read_to_close(reader, 1.0)
    assert goaway_codes(frames) and goaway_codes(frames)[-1] != 0
    assert sum(listener.stats.h2_errors.values()) == 1
    writer.close()


# Idle and slow clients -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "start", [PREFACE[:10], PREFACE, PREFACE + SETTINGS], ids=["part", "preface", "settings"]
)
async def test_a_client_that_opens_no_stream_is_closed_after_the_idle_timeout(
    bench: Bench, tracking: Callable[..., object], start: bytes
) -> None:
    up = await tracking()  # type: ignore[misc]
    listener = await bench.proxy(up.port, protocol="http2", settings=ProxySettings(idle_timeout=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(start)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await read_to_close(reader, 2.0)
    assert loop.time() - began >= 0.3 - CLOCK_GRAIN
    writer.close()


async def test_a_header_block_trickled_in_is_cut_after_the_request_headers_timeout(
    bench: Bench, tracking: Callable[..., object]
) -> None:
    up = await tracking()  # type: ignore[misc]
    settings = ProxySettings(header_timeout=0.3, idle_timeout=60)
    listener = await bench.proxy(up.port, protocol="http2", settings=settings)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    block = hpack.Encoder().encode([*POST, ("x-pad", "p" * 500)])
    writer.write(PREFACE + SETTINGS + len(block).to_bytes(3, "big") + b"\x01\x04\x00\x00\x00\x01")
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def trickle() -> None:
        for byte in block:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.02)

    task = asyncio.ensure_future(trickle())
    try:
        await read_to_close(reader, 2.0)
    finally:
        task.cancel()
    assert loop.time() - began >= 0.3 - CLOCK_GRAIN
    assert listener.stats.h2_errors == {"request_headers_timeout": 1} and up.requests == 0
    writer.close()


# Upstream side -------------------------------------------------------------------------------------
def malformed(up: TrackingUpstream, conn: h2.connection.H2Connection, sid: int, headers: Headers) -> None:
    path = dict(headers)[b":path"]
    if path == b"/no-status":
        conn.send_headers(sid, [(b"content-length", b"0")], end_stream=True)
    elif path == b"/connection-specific":
        conn.send_headers(sid, [(b":status", b"200"), (b"transfer-encoding", b"chunked")], end_stream=True)
    elif path == b"/too-long":
        conn.send_headers(sid, [(b":status", b"200"), (b"content-length", b"1")])
        conn.send_data(sid, b"xx", end_stream=True)
    elif path == b"/slow":
        asyncio.get_running_loop().call_later(0.5, _answer_later, up, conn, sid)


def _answer_later(up: TrackingUpstream, conn: h2.connection.H2Connection, sid: int) -> None:
    conn.send_headers(sid, [(b":status", b"200"), (b"content-length", b"2")])
    conn.send_data(sid, b"ok", end_stream=True)
    up.writers[-1].write(conn.data_to_send())


def get(path: bytes) -> Headers:
    return [(n, path if n == b":path" else v) for n, v in GET]


@pytest.mark.parametrize("path", [b"/no-status", b"/connection-specific", b"/too-long"])
async def test_a_malformed_response_is_a_502_at_once_and_fails_that_stream_only(
    bench: Bench, tracking: Callable[..., object], path: bytes
) -> None:
    up = await tracking(malformed)  # type: ignore[misc]
    listener = await bench.proxy(up.port, protocol="http2", settings=ProxySettings(upstream_timeout=5))
    client = await H2Client.open(listener.bound[1])
    slow = client.request(get(b"/slow"))
    await until(lambda: up.requests == 1, 5)
    loop = asyncio.get_running_loop()
    began = loop.time()
    bad = await client.response(client.request(get(path)), timeout=1.0)
    assert bad.status == 502 and b"protocol error" in bad.body and loop.time() - began < 1.0
    answered = await client.response(slow, timeout=2.0)  # the other stream carried on
    assert (answered.status, answered.body) == (200, b"ok") and up.connections == 1
    await client.close()


def breaks_its_connection(
    up: TrackingUpstream, conn: h2.connection.H2Connection, sid: int, headers: Headers
) -> None:
    if up.connections == 1:
        up.writers[0].write(bytes([0, 0, 1, 0, 0, 0, 0, 0, 0]) + b"x")  # DATA on stream 0
    else:
        conn.send_headers(sid, [(b":status", b"204")], end_stream=True)


async def test_a_broken_upstream_connection_fails_its_streams_and_is_never_reused(
    bench: Bench, tracking: Callable[..., object]
) -> None:
    up = await tracking(breaks_its_connection)  # type: ignore[misc]
    listener = await bench.proxy(up.port, protocol="http2", settings=ProxySettings(upstream_timeout=5))
    client = await H2Client.open(listener.bound[1])
    first = await client.response(client.request(), timeout=1.0)
    assert first.status == 502
    second = await client.response(client.request(), timeout=1.0)
    assert second.status == 204 and up.connections == 2
    await client.close()


# Memory --------------------------------------------------------------------------------------------
def rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


async def test_rss_stays_flat_over_20000_streams_with_resets(
    bench: Bench, tracking: Callable[..., object]
) -> None:
    """Streams opened and reset by the proxy (one MadeYouReset shape each): what the proxy keeps per
    connection must follow its open streams, not their total."""
    up = await tracking()  # type: ignore[misc]
    settings = ProxySettings(h2_max_resets=1_000_000)
    listener = await bench.proxy(up.port, protocol="http2", settings=settings)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    enc = hpack.Encoder()
    writer.write(PREFACE + SETTINGS)
    sid = 1
    data = b""

    async def streams(n: int) -> None:
        nonlocal sid, data
        for _ in range(n // 50):
            batch = range(sid, sid + 100, 2)
            sid += 100
            writer.write(b"".join(headers_frame(enc, s, POST) + window_overflow(s) for s in batch))
            resets = 0
            while True:  # frame headers only: no parsing, no timer per frame
                while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
                    resets += data[3] == 0x3
                    data = data[9 + int.from_bytes(data[:3], "big") :]
                if resets >= len(batch):
                    break
                chunk = await reader.read(65536)
                assert chunk, "closed"
                data += chunk
            bench.spans.clear()  # the test's span sink, not the proxy's memory

    async with asyncio.timeout(60):
        await streams(2_000)  # warm up: pools, caches, the allocator's arenas
        before = rss_kb()
        await streams(20_000)
        grown = rss_kb() - before
    await until(lambda: not up.open, 5)
    assert set(listener.stats.h2_errors) <= {"stream_error"} and not listener.stats.streams_active
    assert grown < 2_048, f"RSS grew by {grown} KiB over 20,000 streams"
    writer.close()
