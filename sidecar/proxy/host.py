"""What a downstream connection may use of the listener that accepted it and of the upstream pools, and
what those call back: the bottom of the proxy package.

HTTP/1.1, HTTP/2 and TCP connections and their exchanges are written against these Protocols, not the
concrete listener, pools and upstream connections (as httptools declares the callbacks it calls), so
the modules that implement them import this one and never the reverse, and an in-memory host
(fuzz/harness.py) serves them as well as a bound socket does. This module imports only the small pure
modules below it (endpoint, route, settings, stats, errors, head); mypy checks the concrete classes
against these Protocols where the listener hands itself and its pools to a connection.

The two contracts between an HTTP/1.1 upstream connection and its exchange (`Upstream`, `ResponseSink`)
are mypyc traits instead, which the concrete classes inherit: compiled, the several calls each way per
request then go through the trait's table, not a lookup by name (this module is compiled for them).
Uncompiled, `trait` does nothing and they are plain base classes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from mypy_extensions import trait

from sidecar.proxy import errors
from sidecar.proxy.outbox import Outbox, Sender

if TYPE_CHECKING:
    from sidecar.proxy.endpoint import Endpoint, Resolver
    from sidecar.proxy.head import Headers
    from sidecar.proxy.route import Route
    from sidecar.proxy.settings import ProxySettings
    from sidecar.proxy.stats import ListenerStats


class Deadline(Protocol):
    """An exchange with a timeout the listener's sweep checks (exchange.Exchange)."""

    deadline: float  # when its timeout fires, on the loop's clock

    def fire_timer(self) -> None: ...


# HTTP/1.1 upstream ----------------------------------------------------------------------------------
@trait
class ResponseSink:
    """What an upstream connection reports to the exchange it serves (h1_exchange.H1Exchange,
    h2_to_h1.H2ToH1Stream, which inherit it). A mypyc trait, as `Upstream` below: see the module
    docstring."""

    is_head: bool

    def on_response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool, version: str
    ) -> None:
        raise NotImplementedError

    def on_response_body(self, data: bytes) -> None:
        raise NotImplementedError

    def on_response_complete(self, trailers: list[tuple[bytes, bytes]]) -> None:
        raise NotImplementedError

    def on_upstream_upgraded(self, rest: bytes) -> None:
        raise NotImplementedError

    def on_tunnel_data(self, data: bytes) -> None:
        raise NotImplementedError

    def on_tunnel_eof(self) -> bool:
        raise NotImplementedError

    def on_upstream_lost(self, exc: Exception | None) -> None:
        raise NotImplementedError

    def on_upstream_protocol_error(self, detail: str) -> None:
        raise NotImplementedError

    def pause_downstream(self) -> None:
        raise NotImplementedError

    def flush_downstream(self) -> None:
        raise NotImplementedError

    def resume_downstream(self) -> None:
        raise NotImplementedError


@trait
class Upstream(Sender):
    """An HTTP/1.1 upstream connection, as the exchange it serves uses it (upstream.UpstreamConnection,
    which inherits it). Its writes are queued by `Sender.send` until the end of the loop turn."""

    exchange: ResponseSink | None  # the exchange it serves now
    peer: str  # the address connected to
    transport: asyncio.Transport | None
    reused: bool  # it came from the pool, idle
    got_response_bytes: bool  # since it was handed to its exchange

    def send_eof(self) -> bool:  # half-close after what is queued; False if the transport cannot
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def release(self) -> None:  # back to the pool, idle (or closed if it cannot be reused)
        raise NotImplementedError

    def close(self) -> None:  # after what is queued
        raise NotImplementedError

    def abort(self) -> None:  # at once; what is queued is dropped
        raise NotImplementedError


class UpstreamPool(Protocol):
    """Idle HTTP/1.1 upstream connections per endpoint (upstream.Pool)."""

    @property
    def resolver(self) -> Resolver: ...

    def acquire(self, endpoint: Endpoint) -> Upstream | None: ...
    async def connect(self, endpoint: Endpoint) -> Upstream: ...


# HTTP/2 upstream ------------------------------------------------------------------------------------
class Flushable(Protocol):
    def flush(self) -> None: ...  # write what was queued


class H2PooledConnection(Protocol):
    """An HTTP/2 upstream connection, as a stream it carries uses it (h2_upstream.H2Upstream)."""

    @property
    def peer(self) -> str: ...

    def open(self, stream: H2PooledStream, headers: Headers, *, end_stream: bool) -> int: ...
    def send_data(self, stream_id: int, data: bytes, ack: Callable[[], None]) -> None: ...
    def end_stream(self, stream_id: int, trailers: Headers | None) -> None: ...
    def ack(self, stream_id: int, size: int) -> None: ...
    def cancel(self, sid: int) -> None: ...
    def touch(self) -> None: ...


class H2PooledStream(Protocol):
    """A stream carried by an HTTP/2 upstream connection, as the pool and the connection use it
    (h2_to_h2.H2ToH2Stream)."""

    @property
    def host(self) -> ConnectionHost: ...
    @property
    def down(self) -> Flushable: ...  # its client connection

    def attach_h2(self, up: H2PooledConnection) -> None: ...
    def connect_failed(self, flag: str) -> None: ...
    def on_up_response(self, headers: Headers, *, end: bool) -> None: ...
    def on_up_data(self, data: bytes, flow: int) -> None: ...
    def on_up_end(self, trailers: Headers | None) -> None: ...
    def on_up_reset(self, code: int, *, flag: str = errors.UPSTREAM_RESET) -> None: ...
    def on_up_refused(self) -> None: ...


class H2UpstreamPool(Protocol):
    """HTTP/2 upstream connections per endpoint (h2_upstream.H2Pool)."""

    def open_stream(self, endpoint: Endpoint, stream: H2PooledStream, *, fresh: bool = False) -> None: ...


# The listener ---------------------------------------------------------------------------------------
class ConnectionHost(Protocol):
    """The slice of a listener its connections use."""

    name: str
    loop: asyncio.AbstractEventLoop
    settings: ProxySettings
    stats: ListenerStats
    draining: bool
    sweep_interval: float  # seconds between sweeps: timeouts longer than this are checked by them
    deadlines: set[Deadline]  # exchanges with a timeout running, checked at each sweep
    outbox: Outbox  # where its HTTP/1.1 connections' writes wait for the end of the loop turn

    @property
    def pool(self) -> UpstreamPool: ...

    @property
    def h2_pool(self) -> H2UpstreamPool: ...

    @property
    def route(self) -> Route: ...  # read once per request head: a reload swaps it

    def connection_opened(self, conn: asyncio.Protocol) -> None: ...
    def connection_closed(self, conn: asyncio.Protocol) -> None: ...

    def switch_to_h2(self, conn: asyncio.Protocol, data: bytes) -> None:
        """`conn` (HTTP/1.1) received the HTTP/2 preface: `data` so far, preface included."""
