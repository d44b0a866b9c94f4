"""One HTTP/2 connection, either side: the `h2` state machine behind an asyncio Protocol, writes
coalesced per read callback, and per-stream send queues that respect the peer's flow-control windows.

Flow control end to end: data received on one connection is acknowledged to its sender (opening its
window again) only when the proxy has handed it on, that is when the other side's queue sent it. A slow
reader therefore closes the window of a fast writer, and what the proxy holds for a stream is bounded by
the windows it advertises, whatever either peer does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import cast

import h2.errors
import h2.events
import h2.exceptions

from sidecar.proxy.h2_codec import new_codec
from sidecar.proxy.head import Headers
from sidecar.proxy.settings import ProxySettings

Ack = Callable[[], None]


def NO_ACK() -> None:
    """For data that needs no acknowledgement (a local reply's body)."""


class _SendQueue:
    """What waits to be sent on one stream: data chunks with the ack to call once each is sent."""

    __slots__ = ("chunks", "end", "reset_after", "size", "trailers")

    def __init__(self) -> None:
        self.chunks: deque[tuple[memoryview, Ack]] = deque()
        self.size = 0
        self.end = False  # end the stream once the chunks are out
        self.trailers: Headers | None = None
        self.reset_after: int | None = None  # then reset it with this code


class H2Peer(asyncio.Protocol):
    """The parts of an HTTP/2 connection that do not depend on which side the proxy is."""

    def __init__(self, settings: ProxySettings, *, client_side: bool) -> None:
        self.settings = settings
        self.h2 = new_codec(settings, client_side=client_side)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.paused = False  # our transport's write buffer is full: send nothing more, ack nothing
        self._queues: dict[int, _SendQueue] = {}
        self._blocked: set[int] = set()  # streams with data waiting for window or for resume_writing
        self.in_callback = False  # inside our own data_received: it flushes once at its end
        self._flush_soon = False

    # asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=self.settings.buffer_high)
        self.h2.initiate_connection()
        window = self.settings.h2_connection_window - 65535
        if window > 0:
            self.h2.increment_flow_control_window(window)
        self.flush()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump_all()
        self.flush()

    # Sending ------------------------------------------------------------------------------------
    def flush(self) -> None:
        conn = self.h2
        data = conn.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)
        if conn.late_events:
            events = list(conn.late_events)
            conn.late_events.clear()
            self.late_events(events)

    def late_events(self, events: list[h2.events.Event]) -> None:
        """Events the codec produced while sending (a stream it reset, a failure): the side handles
        them as those of a read."""

    def touch(self) -> None:
        """Frames were queued from outside our own read callback (a timer, the other side): write
        them once, soon, with whatever else is queued until then."""
        if not self.in_callback and not self._flush_soon and not self.closed:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_soon = False
        self.flush()

    def send_headers(self, stream_id: int, headers: Headers, *, end_stream: bool = False) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):  # the stream or connection is gone
            self.h2.send_headers(stream_id, headers, end_stream=end_stream)

    def send_data(self, stream_id: int, data: bytes, ack: Ack = NO_ACK) -> None:
        """Queue `data` on the stream; `ack` runs once all of it was handed to h2 (and the socket)."""
        queue = self._queues.get(stream_id)
        if queue is None:
            queue = self._queues[stream_id] = _SendQueue()
        queue.chunks.append((memoryview(data), ack))
        queue.size += len(data)
        self._pump(stream_id, queue)

    def end_stream(
        self, stream_id: int, trailers: Headers | None = None, *, then_reset: int | None = None
    ) -> None:
        """End the stream after its queued data (with trailers, or an empty DATA with END_STREAM);
        `then_reset`: reset it right after with that code (a response that ends a request early)."""
        queue = self._queues.get(stream_id)
        if queue is None:
            queue = self._queues[stream_id] = _SendQueue()
        queue.end = True
        queue.trailers = trailers
        queue.reset_after = then_reset
        self._pump(stream_id, queue)

    def queued(self, stream_id: int) -> int:
        queue = self._queues.get(stream_id)
        return queue.size if queue is not None else 0

    def _pump(self, stream_id: int, queue: _SendQueue) -> None:
        conn = self.h2
        chunks = queue.chunks
        while chunks and not self.paused:
            try:
                window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            except h2.exceptions.ProtocolError:  # the stream is closed or reset
                self.forget_stream(stream_id)
                return
            if window <= 0:
                self._blocked.add(stream_id)
                return
            data, ack = chunks[0]
            try:
                if len(data) <= window:
                    conn.send_data(stream_id, data)
                    chunks.popleft()
                    queue.size -= len(data)
                    ack()
                else:
                    conn.send_data(stream_id, data[:window])
                    chunks[0] = (data[window:], ack)
                    queue.size -= window
            except h2.exceptions.ProtocolError:  # the connection was closed meanwhile
                self.forget_stream(stream_id)
                return
        if chunks:
            self._blocked.add(stream_id)
            return
        self._blocked.discard(stream_id)
        if queue.end:
            del self._queues[stream_id]
            with contextlib.suppress(h2.exceptions.ProtocolError):  # reset or closed meanwhile
                if queue.trailers is not None:
                    conn.send_headers(stream_id, queue.trailers, end_stream=True)
                else:
                    conn.end_stream(stream_id)
                if queue.reset_after is not None:
                    conn.reset_stream(stream_id, queue.reset_after)

    def pump_all(self) -> None:
        for stream_id in list(self._blocked):
            queue = self._queues.get(stream_id)
            if queue is None:
                self._blocked.discard(stream_id)
            else:
                self._pump(stream_id, queue)

    def on_window_updated(self, stream_id: int) -> None:
        if stream_id == 0:
            self.pump_all()
        else:
            queue = self._queues.get(stream_id)
            if queue is not None:
                self._pump(stream_id, queue)

    def forget_stream(self, stream_id: int) -> None:
        """The stream is gone: run the acks of what will never be sent (their window must come back)."""
        queue = self._queues.pop(stream_id, None)
        self._blocked.discard(stream_id)
        if queue is not None:
            for _, ack in queue.chunks:
                ack()

    def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        self.forget_stream(stream_id)
        with contextlib.suppress(h2.exceptions.ProtocolError):  # already closed: nothing to reset
            self.h2.reset_stream(stream_id, code)

    def ack(self, stream_id: int, size: int) -> None:
        """Give `size` flow-controlled bytes back to the peer that sent them on `stream_id`."""
        if size and not self.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.acknowledge_received_data(size, stream_id)
            self.touch()

    def goaway(self, code: int = h2.errors.ErrorCodes.NO_ERROR, *, close: bool = False) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection(error_code=code)
        self.flush()
        if close and self.transport is not None:
            self.closed = True
            self.transport.close()
