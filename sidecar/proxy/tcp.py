"""TCP passthrough for non-HTTP listeners: bytes both ways with back-pressure and half-close, no tracing."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from sidecar.proxy.listener import Listener


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
    def __init__(self, listener: Listener) -> None:
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
            self.listener.stats.local_replies["UH"] = self.listener.stats.local_replies.get("UH", 0) + 1
            transport.close()
            return
        transport.pause_reading()  # nothing to forward to until the upstream answers
        loop = asyncio.get_running_loop()
        future = asyncio.ensure_future(
            asyncio.wait_for(
                loop.create_connection(lambda: _Upstream(self), *endpoint),
                self.listener.settings.connect_timeout,
            )
        )
        future.add_done_callback(self._connected)

    def _connected(self, future: asyncio.Future[tuple[asyncio.Transport, _Upstream]]) -> None:
        if future.cancelled() or future.exception() is not None:
            self.listener.stats.local_replies["UF"] = self.listener.stats.local_replies.get("UF", 0) + 1
            self.transport.close()
            return
        _, upstream = future.result()
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
