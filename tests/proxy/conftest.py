"""Proxy test bench: a listener with a real tracer in front of scriptable raw or aiohttp upstreams."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from sidecar.config.snapshot import InboundListener, OutboundListener
from sidecar.proxy import Listener, ProxySettings, Route, start_listener
from sidecar.proxy import h2_codec as h2_codec_choice
from sidecar.tracing.decide import Tracer, TracerSettings
from tests.util import refusing_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawUpstream:
    """A TCP server whose behaviour is a coroutine per connection; remembers every byte it got."""

    handler: Handler
    received: bytearray = field(default_factory=bytearray)
    connections: int = 0
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> RawUpstream:
        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            recording = _Recording(reader, self.received)
            try:
                await self.handler(recording, writer)  # type: ignore[arg-type]
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


class _Recording:
    def __init__(self, reader: asyncio.StreamReader, sink: bytearray) -> None:
        self._reader = reader
        self._sink = sink

    async def readuntil(self, sep: bytes = b"\n") -> bytes:
        data = await self._reader.readuntil(sep)
        self._sink += data
        return data

    async def readexactly(self, n: int) -> bytes:
        data = await self._reader.readexactly(n)
        self._sink += data
        return data

    async def read(self, n: int = -1) -> bytes:
        data = await self._reader.read(n)
        self._sink += data
        return data


Request = tuple[bytes, dict[bytes, bytes], bytes]  # request line, headers (lowercase names), body


async def read_request(reader: asyncio.StreamReader) -> Request:
    """Head and a Content-Length or chunked body, as a minimal HTTP/1.1 server would."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower().endswith(b"chunked"):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                trailer = await reader.readuntil(b"\r\n")
                while trailer != b"\r\n":
                    trailer = await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    return lines[0], headers, body


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def read_reply(reader: asyncio.StreamReader, *, head_request: bool = False) -> Reply:
    """One final response as a careful client reads it (a 1xx before it is skipped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 1"):
        head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if head_request or status in (204, 304) or status < 200:
        pass
    elif b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").endswith(b"chunked"):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    else:
        body = await reader.read()
    return Reply(status, headers, body)


def response(status: int = 200, body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%b\r\n%b" % (status, len(body), extra, body)


@dataclass
class Bench:
    spans: list[bytes]
    listeners: list[Listener]
    upstreams: list[RawUpstream]
    h2_codec: str = "auto"  # the `h2_codec` fixture runs a test once per HTTP/2 codec

    async def recording_upstream(self, answer: bytes) -> tuple[RawUpstream, list[Request]]:
        """An upstream that reads one request per connection (kept in the list) and answers `answer`."""
        got: list[Request] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.append(await read_request(reader))
            writer.write(answer)
            await writer.drain()

        return await self.upstream(handler), got

    async def upstream(self, handler: Handler) -> RawUpstream:
        up = await RawUpstream(handler).start()
        self.upstreams.append(up)
        return up

    async def proxy(
        self,
        upstream_port: int | None,
        *,
        settings: ProxySettings | None = None,
        tracer_settings: TracerSettings | None = TracerSettings(),
        outbound: bool = False,
        http: bool = True,
        protocol: str | None = None,  # "http" (the default), "http2", "grpc" or "tcp"
        endpoints: tuple[str, ...] | None = None,
    ) -> Listener:
        protocol = protocol or ("http" if http else "tcp")
        tracer = Tracer(tracer_settings, service_name="web", node_id="default.web-01")
        if outbound:
            eps = (
                endpoints
                if endpoints is not None
                else ((f"127.0.0.1:{upstream_port}",) if upstream_port else ())
            )
            route = Route.outbound(
                OutboundListener("127.0.0.1", 0, "backend", protocol, eps), tracer, self.spans.append
            )
        else:
            spec = InboundListener(
                "127.0.0.1", 0, "127.0.0.1", upstream_port or 1, protocol, {"kuma.io/service": "web"}
            )
            route = Route.inbound(spec, tracer, self.spans.append)
        listener = await start_listener(
            "test",
            "outbound" if outbound else "inbound",
            "127.0.0.1",
            0,
            route,
            dataclasses.replace(settings or ProxySettings(), h2_codec=self.h2_codec),
            protocol=protocol,
        )
        self.listeners.append(listener)
        return listener


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port that refuses connections for the whole test (bound, not listening)."""
    sock, port = refusing_port()
    yield port
    sock.close()


@pytest.fixture
async def bench() -> AsyncIterator[Bench]:
    b = Bench([], [], [])
    yield b
    for listener in b.listeners:
        await listener.drain(0.5)
    for up in b.upstreams:
        await up.close()


async def exchange(port: int, raw: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the proxy closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


H2_CODECS = h2_codec_choice.PREFERENCE


@pytest.fixture(params=H2_CODECS)
def h2_codec(request: pytest.FixtureRequest, bench: Bench) -> str:
    """Runs the test with each HTTP/2 codec (modules opt in with `pytestmark`)."""
    codec = str(request.param)
    why = h2_codec_choice.unavailable(codec)
    if why is not None:
        pytest.skip(f"{codec} does not load here: {why}")
    bench.h2_codec = codec
    return codec
