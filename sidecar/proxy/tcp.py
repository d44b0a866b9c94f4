"""TCP passthrough for non-HTTP listeners: bytes both ways with back-pressure and half-close, no tracing."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from sidecar.proxy import errors

if TYPE_CHECKING:
    from sidecar.proxy.endpoint import Endpoint
    from sidecar.proxy.host import ConnectionHost


class _Upstream(asyncio.Protocol):
    def __init__(self, down: TcpDownstream) -> None:
        self.down = down
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass it
        transport = self.transport
        transport.set_write_buffer_limits(high=self.down.listener.settings.buffer_high)

    def data_received(self, data: bytes) -> None:
        self.down.listener.stats.bytes_sent += len(data)
        self.down.transport.write(data)

    def eof_received(self) -> bool:
        if self.down.transport.can_write_eof() and not self.down.transport.is_closing():
            self.down.transport.write_eof()
        self.down.upstream_eof = True
        if self.down.downstream_eof:
            self.down.transport.close()
            return False
        return True  # keep the other direction open (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.transport.close()

    def pause_writing(self) -> None:
        self.down.transport.pause_reading()

    def resume_writing(self) -> None:
        self.down.transport.resume_reading()


class TcpDownstream(asyncio.Protocol):
    def __init__(self, listener: ConnectionHost) -> None:
        self.listener = listener
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.upstream: _Upstream | None = None
        self.pending: list[bytes] = []
        self.downstream_eof = False
        self.upstream_eof = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass it
        transport = self.transport
        transport.set_write_buffer_limits(high=self.listener.settings.buffer_high)
        self.listener.connection_opened(self)
        endpoint = self.listener.route.next_endpoint()
        if endpoint is None:
            self.listener.stats.local_reply(errors.NO_HEALTHY_UPSTREAM)
            transport.close()
            return
        transport.pause_reading()  # nothing to forward to until the upstream answers
        future = asyncio.ensure_future(self._connect(endpoint))
        future.add_done_callback(self._connected)

    async def _connect(self, endpoint: Endpoint) -> _Upstream:
        loop = asyncio.get_running_loop()
        stats = self.listener.stats
        stats.count_endpoint(stats.upstream_rq, endpoint.key)
        try:
            address = await self.listener.pool.resolver.address(endpoint)
        except OSError:
            stats.local_reply(errors.NO_HEALTHY_UPSTREAM)
            raise
        try:
            async with asyncio.timeout(self.listener.settings.connect_timeout):
                _, upstream = await loop.create_connection(lambda: _Upstream(self), address, endpoint.port)
        except (OSError, TimeoutError):
            stats.count_endpoint(stats.upstream_cx_connect_fail, endpoint.key)
            stats.local_reply(errors.UPSTREAM_CONNECT_FAILURE)
            raise
        stats.count_endpoint(stats.upstream_cx_total, endpoint.key)
        return upstream

    def _connected(self, future: asyncio.Future[_Upstream]) -> None:
        if future.cancelled() or future.exception() is not None:
            self.transport.close()
            return
        upstream = future.result()
        if self.closed:
            if upstream.transport is not None:
                upstream.transport.close()
            return
        self.upstream = upstream
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.listener.stats.bytes_received += len(data)
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(data)

    def eof_received(self) -> bool:
        self.downstream_eof = True
        up = self.upstream.transport if self.upstream is not None else None
        if up is not None and up.can_write_eof() and not up.is_closing():
            up.write_eof()
        return not self.upstream_eof

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener.connection_closed(self)
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()
