"""Upstream side: the HTTP/1.1 response reader of one connection, and a keep-alive pool per endpoint.

One request at a time goes up a connection, so once a final response is complete every further byte is
one nobody asked for: the parser is stopped there, the response is delivered after `feed_data` returns
(never from inside it, where releasing the connection would hand the rest of the same read to the next
exchange), and the connection is marked broken, closed instead of pooled and counted in
`upstream_cx_protocol_error`. The check costs one flag test per message, not a look at each byte.
Bytes that arrive on an idle pooled connection end it the same way.

An exchange that ends while its connection is reading (the usual case: the response's last bytes
complete it) is put back in the pool only when that read is over. Otherwise a client's pipelined next
request, started from inside the read, would take the connection at once, and a second response in the
connection's next read (an origin that answered twice, in two segments) would answer it: now that
read finds the connection idle and ends it, and the next request goes up another connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Final, Protocol, cast

import httptools

from sidecar.proxy.endpoint import Endpoint, Resolver
from sidecar.proxy.head import informational_has_body
from sidecar.proxy.host import ResponseSink, Upstream
from sidecar.proxy.outbox import Outbox

if TYPE_CHECKING:
    from sidecar.proxy.settings import ProxySettings
    from sidecar.proxy.stats import ListenerStats

_monotonic: Final = time.monotonic  # Final: a C static when compiled, no lookup per request


class _Stop(Exception):
    """Raised in a parser callback to stop `feed_data`; the connection's flags say why."""


class ConnectionPool(Protocol):
    """What a connection uses of the pool that opened it (`Pool`, or a test's own)."""

    settings: ProxySettings
    stats: ListenerStats | None  # where connections broken by the upstream are counted
    outbox: Outbox  # where its connections' writes wait for the end of the loop turn

    def release(self, conn: UpstreamConnection) -> None: ...
    def forget(self, conn: UpstreamConnection) -> None: ...


class UpstreamConnection(asyncio.Protocol, Upstream):
    """One connection to an endpoint; serves one exchange at a time, then goes back to the pool."""

    def __init__(self, pool: ConnectionPool, endpoint: Endpoint) -> None:
        self.pool = pool
        self.outbox = pool.outbox
        self._out: list[bytes] = []  # written at the end of the loop turn (outbox.py)
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.exchange: ResponseSink | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.got_response_bytes = False
        self.tunnel = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self._trailers: list[tuple[bytes, bytes]] = []
        self.peer = endpoint.key
        self.broken = False  # never pooled again
        self._complete: list[tuple[bytes, bytes]] | None = None  # a final response's trailers, undelivered
        self._head_only = False  # a response to HEAD, complete at its headers
        self._leftover = False  # bytes followed a complete response
        self._malformed: str | None = None
        self._reading = False  # inside data_received
        self._release_pending = False  # released while reading: pooled when the read is over

    # asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass it
        transport = self.transport
        transport.set_write_buffer_limits(high=self.pool.settings.buffer_high)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}" if ":" not in peer[0] else f"[{peer[0]}]:{peer[1]}"

    def data_received(self, data: bytes) -> None:
        self._reading = True
        try:
            self._read(data)
        finally:
            self._reading = False
            if self._release_pending:
                self._release_pending = False
                self.pool.release(self)

    def _read(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.protocol_error()  # bytes nobody asked for: the connection is not reusable
            return
        self.got_response_bytes = True
        if self.tunnel:
            exchange.on_tunnel_data(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.tunnel = True
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            if self.exchange is not None:
                self.exchange.on_upstream_upgraded(data[offset:])
            return
        except httptools.HttpParserError as exc:
            if self._complete is None:
                current = self.exchange
                self.protocol_error()
                if current is not None:
                    current.on_upstream_protocol_error(self._malformed or str(exc))
                return
            self._leftover = True  # what followed the response does not even parse
        trailers = self._complete
        if trailers is None:
            exchange.flush_downstream()
        elif self._head_only or self._leftover:
            self._deliver()
        else:  # the usual end of a response, inline
            self._complete = None
            if self.exchange is not None:
                self.exchange.on_response_complete(trailers)

    def _deliver(self) -> None:
        """The final response is complete: hand it over now that the parser has stopped."""
        trailers, self._complete = self._complete, None
        if self._head_only or self._leftover:
            self._head_only = False
            self.parser = httptools.HttpResponseParser(self)  # the old one expects a body, or broke
        if self._leftover:
            self._leftover = False
            self.protocol_error(close=False)  # counted now; the exchange's release closes it
        exchange = self.exchange
        if exchange is not None:
            exchange.on_response_complete(trailers or [])

    def protocol_error(self, *, close: bool = True) -> None:
        """The upstream broke HTTP/1.1 framing: count it once; never pool this connection again."""
        if not self.broken:
            self.broken = True
            stats = self.pool.stats
            if stats is not None:
                stats.count_endpoint(stats.upstream_cx_protocol_error, self.endpoint.key)
        if close:
            self.close()

    def eof_received(self) -> bool | None:
        if self.tunnel and self.exchange is not None:
            return self.exchange.on_tunnel_eof()  # half-close: pass the FIN on, keep the other way open
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.on_upstream_lost(exc)
        else:
            self.pool.forget(self)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_downstream()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.resume_downstream()

    # httptools callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete is not None:
            self._leftover = True
            raise _Stop
        self._reason = b""
        self._headers = []
        self._trailers = []
        self._head_done = False

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            self._trailers.append((name, value))
        else:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_done = True
        exchange = self.exchange
        if exchange is None:
            return
        parser = self.parser
        status = parser.get_status_code()
        if status < 200:
            # A 101 answers only an upgrade request (an exchange that sent none has no `upgrade`).
            if status == 101 and not getattr(exchange, "upgrade", False):
                self._malformed = "101 Switching Protocols to a request that asked for no upgrade"
                raise _Stop
            if status != 101 and informational_has_body(self._headers):
                self._malformed = f"{status} response with a body"
                raise _Stop
        version = parser.get_http_version()
        keep_alive = parser.should_keep_alive()
        if version == "1.0" and keep_alive and _has_transfer_encoding(self._headers):
            keep_alive = False  # faulty framing: close after this response (RFC 9112 6.1)
        exchange.on_response_head(status, self._reason, self._headers, keep_alive, version)
        if exchange.is_head and status >= 200 and self.exchange is exchange:
            self._head_only = True
            self._complete = []

    def on_body(self, body: bytes) -> None:
        if self._head_only:
            self._leftover = True  # a body on a response to HEAD
            raise _Stop
        if self.exchange is not None:
            self.exchange.on_response_body(body)

    def on_message_complete(self) -> None:
        if self._head_only:
            if _has_transfer_encoding(self._headers):
                self._leftover = True  # a last chunk after a response to HEAD
                raise _Stop
            return  # Content-Length: 0, no byte read
        if self.exchange is None or self.parser.get_status_code() < 200:
            return  # informational: the final response follows; 101: the upgrade exception follows
        self._complete = self._trailers

    # used by the exchange -----------------------------------------------------------------------
    def send_out(self) -> None:
        out = self._out
        if out:
            self._out = []
            transport = self.transport
            if transport is not None and not self.closed and not transport.is_closing():
                transport.write(out[0] if len(out) == 1 else b"".join(out))

    def send_eof(self) -> bool:
        transport = self.transport
        if transport is None or self.closed or not transport.can_write_eof():
            return False
        self.send_out()
        transport.write_eof()
        return True

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def release(self) -> None:
        """The exchange is done with it: back to the pool, idle, if it can be reused (after the read
        under way, if any: see the module docstring)."""
        if self._reading:
            self._release_pending = True
        else:
            self.pool.release(self)

    def close(self) -> None:
        self.exchange = None
        if not self.closed:
            self.send_out()
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self.pool.forget(self)

    def abort(self) -> None:
        self.exchange = None
        self._out = []
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.pool.forget(self)


def _has_transfer_encoding(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"transfer-encoding" for name, _ in headers)


class Pool:
    """Idle keep-alive connections per endpoint, LIFO (the warmest first), bounded in count and age."""

    def __init__(
        self,
        settings: ProxySettings,
        outbox: Outbox,
        resolver: Resolver | None = None,
        stats: ListenerStats | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats  # where broken connections are counted
        self.outbox = outbox
        self.resolver = resolver or Resolver(settings.dns_ttl, settings.connect_timeout)
        self._idle: dict[Endpoint, deque[UpstreamConnection]] = {}
        self.connects = 0
        self.reuses = 0

    def acquire(self, endpoint: Endpoint) -> UpstreamConnection | None:
        idle = self._idle.get(endpoint)
        if not idle:
            return None
        oldest_ok = _monotonic() - self.settings.pool_idle_timeout
        while idle:
            conn = idle.pop()
            if (
                conn.closed
                or conn.transport is None
                or conn.transport.is_closing()
                or conn.idle_since < oldest_ok
            ):
                conn.close()
                continue
            conn.reused = True
            conn.got_response_bytes = False
            self.reuses += 1
            return conn
        return None

    async def connect(self, endpoint: Endpoint) -> UpstreamConnection:
        """A new connection; ResolutionError when a name does not resolve, OSError/TimeoutError else."""
        loop = asyncio.get_running_loop()
        address = await self.resolver.address(endpoint)
        async with asyncio.timeout(self.settings.connect_timeout):
            _, conn = await loop.create_connection(
                lambda: UpstreamConnection(self, endpoint), address, endpoint.port
            )
        self.connects += 1
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        if conn.closed or conn.broken or conn.transport is None or conn.transport.is_closing():
            conn.close()
            return
        conn.exchange = None
        conn.got_response_bytes = False
        idle = self._idle.get(conn.endpoint)
        if idle is None:
            idle = self._idle[conn.endpoint] = deque()
        if len(idle) >= self.settings.pool_max_idle:
            conn.close()
            return
        conn.idle_since = _monotonic()
        conn.resume_reading()
        idle.append(conn)

    def close_expired(self) -> None:
        """Close what has idled past `pool_idle_timeout` (the listener's sweep calls this): an endpoint
        that gets no more requests keeps no sockets. Each deque is oldest first, as `release` appends."""
        oldest_ok = _monotonic() - self.settings.pool_idle_timeout
        for idle in self._idle.values():
            while idle and idle[0].idle_since < oldest_ok:
                idle.popleft().close()

    def forget(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.endpoint)
        if idle and conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
