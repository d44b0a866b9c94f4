"""Micro-benchmark of the HTTP/1.1 data path's own Python work per request, no sockets: a request is fed
to a client connection, the upstream answers at once, the response is written back; µs per request.

    .venv/bin/python bench/bench_proxy.py [REQUESTS]

The syscalls, the event loop and the peers are left out on purpose (bench/run.py measures those): this is
the part a code change moves, measured without the noise of a shared machine.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.harness import FakeListener, FakeTransport, Turns
from sidecar.config.snapshot import OutboundListener
from sidecar.proxy.endpoint import Endpoint, Resolver
from sidecar.proxy.http1 import DownstreamConnection
from sidecar.proxy.outbox import Outbox
from sidecar.proxy.route import Route
from sidecar.proxy.upstream import UpstreamConnection
from sidecar.tracing.decide import Tracer, TracerSettings
from sidecar.tracing.encoding import otlp_encoding

REQUEST = (
    b"GET /orders/42 HTTP/1.1\r\nHost: backend:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
    b"x-request-id: 6f1c9e3a-1111-4222-8333-444455556666\r\n\r\n"
)
RESPONSE = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class InstantUpstream(FakeTransport):
    """The upstream's socket: every request written is answered at once (after the write returns)."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: UpstreamConnection | None = None
        self.pending = 0

    def write(self, data: bytes) -> None:
        self.pending += 1


class OnePool:
    """One pooled connection, always idle when asked."""

    def __init__(self, settings: object, outbox: Outbox) -> None:
        self.settings = settings
        self.outbox = outbox
        self.resolver = Resolver()
        self.transport = InstantUpstream()
        self.conn = UpstreamConnection(self, Endpoint("127.0.0.1", 8080, "127.0.0.1:8080"))  # type: ignore[arg-type]
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]

    def acquire(self, endpoint: Endpoint) -> UpstreamConnection:
        return self.conn

    async def connect(self, endpoint: Endpoint) -> UpstreamConnection:
        return self.conn

    def release(self, conn: UpstreamConnection) -> None:
        conn.exchange = None

    def forget(self, conn: UpstreamConnection) -> None:
        pass


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's when installed, as `sidecar run` uses: timers and callbacks cost what they cost there."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(settings: TracerSettings | None, n: int) -> float:
    loop = new_loop()
    turns = Turns()  # `loop` does not run: its turns end here, after each read
    listener = FakeListener(loop, outbox=Outbox(turns))
    pool = OnePool(listener.settings, listener.outbox)
    listener.pool = pool  # type: ignore[assignment]
    spans: list[bytes] = []
    tracer = Tracer(settings, service_name="web", node_id="default.web-01")
    listener.route = Route.outbound(
        OutboundListener("127.0.0.1", 0, "backend", "http", ("127.0.0.1:8080",)), tracer, spans.append
    )
    down = FakeTransport()
    conn = DownstreamConnection(listener)
    conn.connection_made(down)  # type: ignore[arg-type]
    upstream = pool.conn
    start = time.perf_counter()
    for _ in range(n):
        conn.data_received(REQUEST)
        turns.end()  # the request goes up
        upstream.data_received(RESPONSE)
        turns.end()  # the response goes down
        del down.written[:]
        spans.clear()
    elapsed = time.perf_counter() - start
    loop.close()
    assert not down.closed
    assert pool.transport.pending == n  # one send up per request: the head in one piece
    return elapsed / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    rows = [
        ("no TrafficTrace (x-request-id only)", run(None, n)),
        ("sampling 0 %", run(TracerSettings(sampling=0.0), n)),
        ("sampling 100 %, JSON span", run(TracerSettings(), n)),
        ("sampling 100 %, OTLP span", run(TracerSettings(encoding=otlp_encoding("web")), n)),
    ]
    print(f"{'case':<38} {'us/request':>10}")
    for name, us in rows:
        print(f"{name:<38} {us:>10.2f}")


if __name__ == "__main__":
    main()
