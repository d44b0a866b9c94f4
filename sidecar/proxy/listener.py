"""Listeners: bind and accept (acceptor.py), sweep idle and slow connections, drain."""

from __future__ import annotations

import asyncio
import contextlib

from sidecar.config.snapshot import H2_PROTOCOLS, TRACED_PROTOCOLS
from sidecar.proxy.acceptor import Acceptor, bind
from sidecar.proxy.h2_upstream import H2Pool
from sidecar.proxy.host import Deadline
from sidecar.proxy.http1 import DownstreamConnection
from sidecar.proxy.http2 import H2Downstream
from sidecar.proxy.outbox import Outbox
from sidecar.proxy.route import Route
from sidecar.proxy.settings import ProxySettings
from sidecar.proxy.stats import ListenerStats
from sidecar.proxy.tcp import TcpDownstream
from sidecar.proxy.upstream import Pool


class Listener:
    """What the runtime holds of a listener of either kind."""

    def __init__(
        self, name: str, direction: str, host: str, port: int, route: Route, settings: ProxySettings
    ) -> None:
        self.name = name
        self.direction = direction
        self.host = host
        self.port = port
        self.route = route  # swapped whole on reload; each request reads it once, at its head
        self.settings = settings
        self.stats = ListenerStats(name, direction)
        self.loop = asyncio.get_running_loop()
        self.outbox = Outbox(self.loop)  # shared by its HTTP/1.1 connections, both sides
        self.pool = Pool(settings, self.outbox, stats=self.stats)
        self.h2_pool = H2Pool(settings, self.pool.resolver)
        self.draining = False
        self.protocol = "tcp"  # the kuma.io/protocol it serves (set by start_listener)
        self.acceptor: Acceptor | None = None
        self.connections: set[asyncio.Protocol] = set()
        self.deadlines: set[Deadline] = set()
        timeouts = (
            settings.header_timeout,
            settings.idle_timeout,
            settings.upstream_timeout,
            settings.pool_idle_timeout,
        )
        self.sweep_interval = max(0.05, min(1.0, *(t / 4 for t in timeouts)))
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def bound(self) -> tuple[str, int]:
        assert self.acceptor is not None and self.acceptor.serving
        host, port = self.acceptor.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def serving(self) -> bool:
        return self.acceptor is not None and self.acceptor.serving

    def _protocol(self) -> asyncio.Protocol:
        raise NotImplementedError

    async def start(self, *, reuse_port: bool = False) -> None:
        self.acceptor = Acceptor(await bind(self.host, self.port, reuse_port=reuse_port), self._protocol)
        self.acceptor.start()
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name=f"sweep {self.name}")

    def connection_opened(self, conn: asyncio.Protocol) -> None:
        self.connections.add(conn)
        self.stats.connections_total += 1
        self.stats.connections_active += 1

    def connection_closed(self, conn: asyncio.Protocol) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.stats.connections_active -= 1

    def switch_to_h2(self, conn: asyncio.Protocol, data: bytes) -> None:
        """An HTTP/1.1 connection began with the HTTP/2 preface (h2c prior knowledge, like Envoy's AUTO
        codec): the HTTP/2 codec takes the socket over; its streams go to the HTTP/1.1 upstream."""
        transport = getattr(conn, "transport", None)
        if transport is None:
            return
        h2conn = H2Downstream(self, upstream_h2=False)
        self.connections.discard(conn)
        self.connections.add(h2conn)
        h2conn.adopt(transport, data)

    async def _sweep(self) -> None:
        """Timeouts checked in one pass instead of a timer per request: upstream responses, idle and
        slow-head connections, idle streams, idle upstream connections."""
        while True:
            await asyncio.sleep(self.sweep_interval)
            now = self.loop.time()
            expired = [e for e in self.deadlines if e.deadline <= now]
            for exchange in expired:
                self.deadlines.discard(exchange)
                exchange.fire_timer()
            self.sweep_once(now)
            self.pool.close_expired()
            self.h2_pool.close_expired()

    def sweep_once(self, now: float) -> None:
        pass

    def close(self) -> None:
        """Stop accepting; connections carry on."""
        if self.acceptor is not None:
            self.acceptor.close()

    def idle_connections(self) -> list[DownstreamConnection | H2Downstream]:
        """Connections to close (HTTP/1.1 between requests) or to drain (HTTP/2: GOAWAY) now."""
        return []

    async def drain(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish within `grace` seconds, then cut the rest."""
        self.draining = True
        self.close()
        loop = self.loop
        deadline = loop.time() + grace
        while self.connections and loop.time() < deadline:
            for idle in self.idle_connections():
                idle.close_if_idle()
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            transport = getattr(conn, "transport", None)
            if transport is not None:
                transport.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self.pool.close()
        self.h2_pool.close()


class HttpListener(Listener):
    """`http`: HTTP/1.1 clients, and HTTP/2 clients with prior knowledge; the upstream speaks HTTP/1.1."""

    def _protocol(self) -> asyncio.Protocol:
        return DownstreamConnection(self)

    def idle_connections(self) -> list[DownstreamConnection | H2Downstream]:
        return [
            c
            for c in self.connections
            if isinstance(c, H2Downstream) or (isinstance(c, DownstreamConnection) and c.idle())
        ]

    def sweep_once(self, now: float) -> None:
        settings = self.settings
        for conn in list(self.connections):
            if isinstance(conn, H2Downstream):
                if not conn.closed:
                    conn.sweep(now)
                continue
            if not isinstance(conn, DownstreamConnection) or conn.closed:
                continue
            if conn.head_started is not None and now - conn.head_started > settings.header_timeout:
                conn.refuse(408, "request head not received in time")
            elif conn.idle() and now - conn.last_activity > settings.idle_timeout:
                conn.close_if_idle()


class H2Listener(HttpListener):
    """`http2` and `grpc`: HTTP/2 with prior knowledge on both sides (Kuma sets such clusters to HTTP/2)."""

    def _protocol(self) -> asyncio.Protocol:
        return H2Downstream(self, upstream_h2=True)


class TcpListener(Listener):
    def _protocol(self) -> asyncio.Protocol:
        return TcpDownstream(self)


def listener_class(protocol: str) -> type[Listener]:
    """The listener for a `kuma.io/protocol` value (docs/traffic.md's protocol table)."""
    if protocol in H2_PROTOCOLS:
        return H2Listener
    return HttpListener if protocol in TRACED_PROTOCOLS else TcpListener


async def start_listener(
    name: str,
    direction: str,
    host: str,
    port: int,
    route: Route,
    settings: ProxySettings,
    *,
    protocol: str,
    reuse_port: bool = False,
) -> Listener:
    cls = listener_class(protocol)
    listener = cls(name, direction if cls is not TcpListener else "tcp", host, port, route, settings)
    listener.protocol = protocol
    await listener.start(reuse_port=reuse_port)
    return listener


__all__ = ["H2Listener", "HttpListener", "Listener", "TcpListener", "listener_class", "start_listener"]
