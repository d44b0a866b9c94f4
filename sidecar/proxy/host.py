"""What a downstream connection may use of the listener that accepted it, and of the upstream pool.

HTTP/1.1, HTTP/2 and TCP connections are written against these Protocols, not the concrete listener
(as httptools declares the callbacks it calls), so the listener module imports them and not the reverse,
and an in-memory host (fuzz/harness.py) serves them as well as a bound socket does.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sidecar.proxy.endpoint import Endpoint, Resolver
    from sidecar.proxy.exchange import Exchange
    from sidecar.proxy.h2_upstream import H2Pool
    from sidecar.proxy.route import Route
    from sidecar.proxy.settings import ProxySettings
    from sidecar.proxy.stats import ListenerStats
    from sidecar.proxy.upstream import UpstreamConnection


class UpstreamPool(Protocol):
    """Idle HTTP/1.1 upstream connections per endpoint."""

    settings: ProxySettings
    resolver: Resolver
    stats: ListenerStats | None  # where connections broken by the upstream are counted

    def acquire(self, endpoint: Endpoint) -> UpstreamConnection | None: ...
    async def connect(self, endpoint: Endpoint) -> UpstreamConnection: ...
    def release(self, conn: UpstreamConnection) -> None: ...
    def forget(self, conn: UpstreamConnection) -> None: ...


class ConnectionHost(Protocol):
    """The slice of a listener its connections use."""

    name: str
    loop: asyncio.AbstractEventLoop
    settings: ProxySettings
    stats: ListenerStats
    draining: bool
    sweep_interval: float  # seconds between sweeps: timeouts longer than this are checked by them
    deadlines: set[Exchange]  # exchanges with a timeout running, checked at each sweep

    @property
    def pool(self) -> UpstreamPool: ...

    @property
    def h2_pool(self) -> H2Pool: ...

    @property
    def route(self) -> Route: ...  # read once per request head: a reload swaps it

    def connection_opened(self, conn: asyncio.Protocol) -> None: ...
    def connection_closed(self, conn: asyncio.Protocol) -> None: ...

    def switch_to_h2(self, conn: asyncio.Protocol, data: bytes) -> None:
        """`conn` (HTTP/1.1) received the HTTP/2 preface: `data` so far, preface included."""
