"""Framing property harness: client bytes → proxy → an independent strict upstream (h11), all in memory.

The property: the requests the upstream parses are exactly the requests the client gets
answers to, in order and with the same boundaries, whatever bytes the client sends. The upstream is
python-hyper's h11 (not the proxy's llhttp), it answers every request it parses with its sequence number
and a digest of what it read, and upstream connections are pooled across clients like the real pool, so a
request smuggled past the proxy shows up as an answer nobody asked for or one given to the wrong client.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import httptools

from fuzz.harness import FakeListener, FakeTransport
from sidecar.proxy.endpoint import Endpoint, Resolver
from sidecar.proxy.http1 import DownstreamConnection, new_request_parser
from sidecar.proxy.outbox import Outbox
from sidecar.proxy.stats import ListenerStats
from sidecar.proxy.upstream import UpstreamConnection

Pump = deque[Callable[[], None]]


def digest(data: bytes) -> bytes:
    return hashlib.sha1(data).hexdigest()[:16].encode()


class UpstreamTransport(FakeTransport):
    """The proxy's side of one in-memory upstream connection: writes go to the h11 server."""

    def __init__(self, server: H11Server, pump: Pump) -> None:
        super().__init__()
        self.server = server
        self.pump = pump
        self.protocol: UpstreamConnection | None = None

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.server.receive(data)
        self.pump.append(self.server.process)

    def close(self) -> None:
        self.lose()

    def abort(self) -> None:
        self.lose()

    def lose(self) -> None:
        """Either side closed: the proxy hears of it after what the server sent before."""
        if not self.closed:
            self.closed = True
            self.server.closed = True
            protocol = self.protocol
            if protocol is not None:
                self.pump.append(lambda: protocol.connection_lost(None))


@dataclass
class Upstream:
    """Every request any upstream connection parsed, in order (the sequence numbers)."""

    parsed: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)  # method, target, body digest


class H11Server:
    """A strict HTTP/1.1 origin on one connection: answers each request with `x-seq` and echoes."""

    def __init__(self, upstream: Upstream, transport: UpstreamTransport | None = None) -> None:
        self.upstream = upstream
        self.conn = h11.Connection(h11.SERVER)
        self.transport = transport
        self.closed = False
        self._request: h11.Request | None = None
        self._body = bytearray()

    def receive(self, data: bytes) -> None:
        if not self.closed:
            self.conn.receive_data(data)

    def _answer(self, headers: list[tuple[bytes, bytes]], *, close: bool = False) -> None:
        seq = str(len(self.upstream.parsed) - 1).encode()
        reply = [(b"content-length", b"0"), (b"x-seq", seq), *headers]
        if close:
            reply.append((b"connection", b"close"))
        out = self.conn.send(h11.Response(status_code=200, headers=reply))
        out = (out or b"") + (self.conn.send(h11.EndOfMessage()) or b"")
        self._deliver(out)

    def _deliver(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        protocol = transport.protocol
        if protocol is not None and not transport.closed:
            transport.pump.append(lambda: protocol.data_received(data))

    def process(self) -> None:
        while not self.closed:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                # It read something it refuses: that is a request it saw, answered with 400 and closed.
                self.upstream.parsed.append((b"!", b"!", b"!"))
                seq = str(len(self.upstream.parsed) - 1).encode()
                self._deliver(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-seq: %b\r\n" % seq
                              + b"connection: close\r\n\r\n")  # fmt: skip
                self._close()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if event is h11.PAUSED and self.conn.our_state is h11.DONE:
                    self.conn.start_next_cycle()
                    continue
                return
            if isinstance(event, h11.Request):
                self._request = event
                self._body = bytearray()
            elif isinstance(event, h11.Data):
                self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                request = self._request
                assert request is not None
                self.upstream.parsed.append((request.method, request.target, digest(bytes(self._body))))
                self._answer(
                    [
                        (b"x-method", request.method),
                        (b"x-target", request.target.hex().encode()),
                        (b"x-body", digest(bytes(self._body))),
                    ]
                )
                if self.conn.our_state is h11.MUST_CLOSE:
                    self._close()
                    return
                self.conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
                return

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.lose()


class FakePool:
    """The real pool's interface, in memory: connections open at once and idle ones are reused LIFO."""

    def __init__(self, upstream: Upstream, pump: Pump, outbox: Outbox) -> None:
        self.upstream = upstream
        self.pump = pump
        self.outbox = outbox
        self.idle: list[UpstreamConnection] = []
        self.opened: list[UpstreamTransport] = []
        self.server: Callable[[Upstream], H11Server] = H11Server  # the origin behind each connection
        self.stats: ListenerStats | None = None
        self.settings = FakeListener.SETTINGS
        self.resolver = Resolver()
        self.connects = 0
        self.reuses = 0

    def _open(self, endpoint: Endpoint) -> UpstreamConnection:
        server = self.server(self.upstream)
        transport = UpstreamTransport(server, self.pump)
        self.opened.append(transport)
        server.transport = transport
        conn = UpstreamConnection(self, endpoint)
        transport.protocol = conn
        conn.connection_made(transport)  # type: ignore[arg-type]
        self.connects += 1
        return conn

    def acquire(self, endpoint: Endpoint) -> UpstreamConnection | None:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                conn.reused = True
                conn.got_response_bytes = False
                return conn
        return self._open(endpoint)

    async def connect(self, endpoint: Endpoint) -> UpstreamConnection:
        return self._open(endpoint)

    def release(self, conn: UpstreamConnection) -> None:
        conn.exchange = None
        if conn.broken:
            conn.close()
        elif not conn.closed:
            self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()


class _RequestLog:
    """What the client sent, as the proxy's own parser reads it: (method, target, body digest)."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes, bytes]] = []
        self._url = b""
        self._body = bytearray()

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = bytearray()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.requests.append((b"", self._url, digest(bytes(self._body))))


def client_requests(data: bytes) -> list[tuple[bytes, bytes]]:
    """(target, body digest) of each complete request in `data` per the proxy's parser settings."""
    log = _RequestLog()
    parser = new_request_parser(log)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError:
        pass
    return [(target, body) for _, target, body in log.requests]


class _Responses:
    def __init__(self) -> None:
        self.responses: list[dict[bytes, bytes]] = []
        self.statuses: list[int] = []
        self._headers: dict[bytes, bytes] = {}
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self._headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_message_complete(self) -> None:
        self.responses.append(self._headers)
        self.statuses.append(self.parser.get_status_code())


def client_responses(data: bytes) -> tuple[list[int], list[dict[bytes, bytes]]]:
    parsed = _Responses()
    parsed.parser.feed_data(data)
    return parsed.statuses, parsed.responses


@dataclass
class Run:
    upstream: Upstream
    pool: FakePool
    pump: Pump
    listener: Any


def new_run(loop: asyncio.AbstractEventLoop) -> Run:
    upstream = Upstream()
    pump: Pump = deque()
    listener = FakeListener(loop, endpoints=("127.0.0.1:8080",))
    pool = FakePool(upstream, pump, listener.outbox)
    listener.pool = pool
    pool.stats = listener.stats
    return Run(upstream, pool, pump, listener)


async def drive(run: Run, chunks: list[bytes]) -> tuple[bytes, bool]:
    """One client connection: feed `chunks`, let every answer settle; return its bytes and closed flag."""
    transport = FakeTransport()
    conn = DownstreamConnection(run.listener)
    conn.connection_made(transport)  # type: ignore[arg-type]
    for chunk in chunks:
        if transport.closed:
            break
        conn.data_received(chunk)
        await settle(run)
    await settle(run)
    written, closed = bytes(transport.written), transport.closed
    conn.connection_lost(None)
    await settle(run)
    return written, closed


async def settle(run: Run) -> None:
    quiet = 0
    while quiet < 3:  # a connect future needs a few loop turns before its callback runs
        quiet = 0 if run.pump else quiet + 1
        while run.pump:
            run.pump.popleft()()
        await asyncio.sleep(0)


def check_framing(run: Run, sent: bytes, out: bytes, first_seq: int) -> int:
    """The property for one client; returns the next sequence number."""
    statuses, responses = client_responses(out)
    requests = client_requests(sent)
    # Liveness: every request the proxy read completely is answered, unless an earlier answer closed.
    owed = len(requests)
    for index, headers in enumerate(responses):
        if headers.get(b"connection", b"").lower() == b"close":
            owed = min(owed, index + 1)
            break
    assert len(responses) >= owed, f"{owed} complete requests, {len(responses)} answers"
    seq = first_seq
    for index, (status, headers) in enumerate(zip(statuses, responses, strict=True)):
        if b"x-seq" not in headers:
            assert 400 <= status < 600, f"response {index}: {status} without x-seq"
            continue
        got = int(headers[b"x-seq"])
        assert got == seq, f"response {index} answers upstream request {got}, expected {seq}"
        seq += 1
        if b"x-target" not in headers:
            continue  # h11 refused what it read (it knows no transfer coding but chunked); still in order
        assert index < len(requests), f"response {index} answers a request the client never completed"
        target, body = requests[index]
        assert bytes.fromhex(headers[b"x-target"].decode()) == target, (index, target)
        assert headers[b"x-body"] == body, f"response {index}: the upstream read another body"
    assert len(run.upstream.parsed) == seq, (
        f"the upstream parsed {len(run.upstream.parsed) - first_seq} requests, the client got "
        f"{seq - first_seq} answers"
    )
    return seq


VICTIM = b"GET /victim HTTP/1.1\r\nHost: v\r\nCookie: secret\r\n\r\n"


async def check_case(loop: asyncio.AbstractEventLoop, chunks: list[bytes]) -> None:
    """An attacker's connection, then a victim's request on the same (pooled) upstream connections."""
    run = new_run(loop)
    out, _ = await drive(run, chunks)
    seq = check_framing(run, b"".join(chunks), out, 0)
    victim, _ = await drive(run, [VICTIM])
    check_framing(run, VICTIM, victim, seq)
    statuses, responses = client_responses(victim)
    assert statuses == [200] and bytes.fromhex(responses[0][b"x-target"].decode()) == b"/victim", victim
