"""In-memory harness for the downstream HTTP/1.1 parser path: bytes in, what the proxy wrote out.

The listener has no endpoint, so a request that parses as valid ends in Envoy's 503 `no healthy
upstream`; anything malformed must end in a 4xx and a close. No sockets: fast enough to fuzz.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sidecar.config.snapshot import OutboundListener
from sidecar.proxy.h2_upstream import H2Pool
from sidecar.proxy.host import Deadline, UpstreamPool
from sidecar.proxy.http1 import DownstreamConnection
from sidecar.proxy.outbox import Outbox
from sidecar.proxy.route import Route
from sidecar.proxy.settings import ProxySettings
from sidecar.proxy.stats import ListenerStats
from sidecar.proxy.upstream import Pool
from sidecar.tracing.decide import Tracer, TracerSettings


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


class Turns:
    """An event loop's turns as the outbox uses them, for a loop that does not run: `call_soon` holds
    the callback, `end` runs what is held, where a running loop would after the turn's reads."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], object]] = []

    def call_soon(self, callback: Callable[[], object], /) -> None:
        self.soon.append(callback)

    def end(self) -> None:
        soon, self.soon = self.soon, []
        for callback in soon:
            callback()


class FakeListener:
    SETTINGS = ProxySettings(max_header_bytes=4096, max_headers=20)

    def __init__(
        self, loop: asyncio.AbstractEventLoop, endpoints: tuple[str, ...] = (), outbox: Outbox | None = None
    ) -> None:
        self.name = "fuzz"
        self.loop = loop
        self.settings = self.SETTINGS
        self.stats = ListenerStats("fuzz", "outbound")
        self.outbox = outbox or Outbox(loop)
        self.pool: UpstreamPool = Pool(self.settings, self.outbox)
        self.h2_pool = H2Pool(self.settings, self.pool.resolver)
        self.draining = False
        self.sweep_interval = 1.0
        self.deadlines: set[Deadline] = set()
        self.h2_prefaces = 0
        tracer = Tracer(TracerSettings(), service_name="fuzz", node_id="default.fuzz")
        self.route = Route.outbound(
            OutboundListener("127.0.0.1", 0, "nowhere", "http", endpoints), tracer, lambda _: None
        )

    def connection_opened(self, conn: object) -> None:
        pass

    def connection_closed(self, conn: object) -> None:
        pass

    def switch_to_h2(self, conn: object, data: bytes) -> None:
        self.h2_prefaces += 1


def feed(loop: asyncio.AbstractEventLoop, chunks: list[bytes]) -> tuple[bytes, bool]:
    """Feed `chunks` to one downstream connection; return what it wrote and whether it closed."""
    transport = FakeTransport()
    turns = Turns()  # `loop` does not run: its turns end here, after each read
    conn = DownstreamConnection(FakeListener(loop, outbox=Outbox(turns)))
    conn.connection_made(transport)  # type: ignore[arg-type]
    for chunk in chunks:
        if transport.closed:
            break
        conn.data_received(chunk)
        turns.end()
    conn.connection_lost(None)
    return bytes(transport.written), transport.closed


def check(out: bytes, closed: bool) -> None:
    """The property: every reply is a well-formed status line; a 4xx always closes."""
    for reply in out.split(b"HTTP/1.1 ")[1:]:
        status = int(reply[:3])
        assert status in (400, 405, 408, 431, 503, 505), reply[:80]
        if 400 <= status < 500:
            assert closed and b"connection: close" in reply
