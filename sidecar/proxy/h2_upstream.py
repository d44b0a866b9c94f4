"""HTTP/2 upstream connections (h2c, prior knowledge) and their pool: streams are multiplexed on one
connection per endpoint up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS, then another is opened.

A GOAWAY stops new streams on that connection; streams above its last-stream-id were never processed by
the upstream, so they are handed back to be retried once on a fresh connection.

A malformed response (no `:status`, a connection-specific field, a body longer than its
content-length) fails its stream alone, at once: the codec resets it and the client gets 502 with
Envoy's UPE flag; the other streams of the connection carry on. A connection error (the codec's, or one
it handled alone) removes the connection from the pool at once and fails its streams the same way.
A connection whose stream ids are spent takes no new stream and closes once its last one ends.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import h2.errors
import h2.events
import h2.exceptions

from sidecar.proxy import errors
from sidecar.proxy.endpoint import Endpoint, ResolutionError, Resolver
from sidecar.proxy.h2_base import H2Peer
from sidecar.proxy.h2_errors import CodecFailed
from sidecar.proxy.head import Headers

if TYPE_CHECKING:
    from sidecar.proxy.host import Flushable, H2PooledStream
    from sidecar.proxy.settings import ProxySettings


class H2Upstream(H2Peer):
    """One client-side HTTP/2 connection to an endpoint."""

    def __init__(self, pool: H2Pool, endpoint: Endpoint) -> None:
        super().__init__(pool.settings, client_side=True)
        self.pool = pool
        self.endpoint = endpoint
        self.peer = endpoint.key
        self.streams: dict[int, H2PooledStream] = {}
        self.going_away = False
        self.idle_since = time.monotonic()  # updated while no stream is open
        self._touched: set[Flushable] = set()  # client connections to flush after a read

    # Pool interface -----------------------------------------------------------------------------
    def has_room(self) -> bool:
        if self.closed or self.going_away:
            return False
        if len(self.streams) >= min(self.h2.remote_settings.max_concurrent_streams, 1 << 20):
            return False
        try:
            self.h2.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:  # ids spent: replace the connection
            self.going_away = True
            self.pool.forget(self)
            self._maybe_idle()
            return False
        return True

    def open(self, stream: H2PooledStream, headers: Headers, *, end_stream: bool) -> int:
        sid = self.h2.get_next_available_stream_id()
        self.streams[sid] = stream
        self.send_headers(sid, headers, end_stream=end_stream)
        self.touch()
        return sid

    def cancel(self, sid: int) -> None:
        """We are done with the stream (whatever its state): reset it, so it stops counting as open."""
        self.streams.pop(sid, None)
        self.reset(sid, h2.errors.ErrorCodes.CANCEL)
        self.touch()
        self._maybe_idle()

    # asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"

    def data_received(self, data: bytes) -> None:
        self.in_callback = True
        try:
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self.failed(getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR))
                return
            if self.h2.stream_errors:  # malformed responses: counted, their streams fail as reset
                self.pool.protocol_errors += len(self.h2.stream_errors)
                self.h2.stream_errors.clear()
            events = _without_failed(events)
            for event in events:
                self._dispatch(event)
        finally:
            self.in_callback = False
        self.flush()
        self._flush_touched()

    def _flush_touched(self) -> None:
        touched, self._touched = self._touched, set()
        for peer in touched:
            peer.flush()

    def late_events(self, events: list[h2.events.Event]) -> None:
        for event in events:
            if isinstance(event, CodecFailed):
                self.failed(event.error.error_code)
                break
            self._dispatch(event)
        if not self.in_callback:
            self._flush_touched()

    def failed(self, code: int) -> None:
        """A connection error: out of the pool now, GOAWAY and close, every stream failed (UPE)."""
        self.pool.protocol_errors += 1
        self.pool.forget(self)
        self.going_away = True
        streams, self.streams = self.streams, {}
        self.goaway(code, close=True)
        for sid, stream in streams.items():
            self.forget_stream(sid)
            stream.on_up_reset(code, flag=errors.UPSTREAM_PROTOCOL_ERROR)
            self._touched.add(stream.down)

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None:
                self.ack(event.stream_id, event.flow_controlled_length)
            else:
                stream.on_up_data(event.data, event.flow_controlled_length)
                self._touched.add(stream.down)
        elif isinstance(event, h2.events.ResponseReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                ended = event.stream_ended is not None
                if ended:
                    self.streams.pop(event.stream_id, None)
                stream.on_up_response(event.headers, end=ended)
                self._touched.add(stream.down)
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                stream.on_up_end(event.headers)
                self._touched.add(stream.down)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                stream.on_up_end(None)
                self._touched.add(stream.down)
        elif isinstance(event, h2.events.StreamReset):
            self.forget_stream(event.stream_id)
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                # Reset by our codec (remote_reset False): what the upstream sent was malformed.
                flag = errors.UPSTREAM_RESET if event.remote_reset else errors.UPSTREAM_PROTOCOL_ERROR
                stream.on_up_reset(event.error_code, flag=flag)
                self._touched.add(stream.down)
        elif isinstance(event, h2.events.WindowUpdated):
            self.on_window_updated(event.stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway_received(event.last_stream_id or 0)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.pool.settled(self)
        self._maybe_idle()

    def _goaway_received(self, last_stream_id: int) -> None:
        self.going_away = True
        self.pool.forget(self)
        refused = [(sid, s) for sid, s in self.streams.items() if sid > last_stream_id]
        for sid, stream in refused:
            del self.streams[sid]
            self.forget_stream(sid)
            stream.on_up_refused()
            self._touched.add(stream.down)

    def _maybe_idle(self) -> None:
        if not self.streams:
            self.idle_since = time.monotonic()
            if self.going_away and not self.closed:
                self.closed = True
                if self.transport is not None:
                    self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.on_up_reset(h2.errors.ErrorCodes.INTERNAL_ERROR)
            stream.down.flush()

    def close(self) -> None:
        self.goaway(close=True)


class H2Pool:
    """HTTP/2 upstream connections per endpoint; one connect in progress per endpoint at a time."""

    def __init__(self, settings: ProxySettings, resolver: Resolver) -> None:
        self.settings = settings
        self.resolver = resolver
        self._conns: dict[Endpoint, list[H2Upstream]] = {}
        self._waiting: dict[Endpoint, list[tuple[H2PooledStream, bool]]] = {}
        self._connecting: set[asyncio.Future[None]] = set()
        self.connects = 0
        self.protocol_errors = 0

    def open_stream(self, endpoint: Endpoint, stream: H2PooledStream, *, fresh: bool = False) -> None:
        """Attach `stream` to a connection with room (`fresh`: not one that refused it), or queue it
        for the connection being opened."""
        if not fresh:
            for conn in self._conns.get(endpoint, ()):
                if conn.has_room():
                    stream.attach_h2(conn)
                    return
        waiting = self._waiting.get(endpoint)
        if waiting is not None:
            waiting.append((stream, fresh))
            return
        self._waiting[endpoint] = [(stream, fresh)]
        task = asyncio.ensure_future(self._connect(endpoint))
        self._connecting.add(task)  # keep a reference until it is done
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        try:
            address = await self.resolver.address(endpoint)
            async with asyncio.timeout(self.settings.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: H2Upstream(self, endpoint), address, endpoint.port
                )
        except (OSError, TimeoutError) as exc:
            flag = (
                errors.NO_HEALTHY_UPSTREAM
                if isinstance(exc, ResolutionError)
                else errors.UPSTREAM_CONNECT_FAILURE
            )
            for stream, _ in self._waiting.pop(endpoint, []):
                stream.connect_failed(flag)
                stream.down.flush()
            return
        self.connects += 1
        self._conns.setdefault(endpoint, []).append(conn)
        stats_key = endpoint.key
        waiting = self._waiting.pop(endpoint, [])
        if waiting:
            stats = waiting[0][0].host.stats
            stats.count_endpoint(stats.upstream_cx_total, stats_key)
        # The peer's SETTINGS have not arrived yet: assume its limit is at least ours until they do.
        for stream, _ in waiting:
            if conn.has_room():
                stream.attach_h2(conn)
            else:
                self.open_stream(endpoint, stream, fresh=True)
        conn.flush()
        for stream, _ in waiting:
            stream.down.flush()

    def settled(self, conn: H2Upstream) -> None:
        """The peer's SETTINGS arrived (its stream limit may be lower than assumed): nothing to move,
        new streams simply see it in `has_room`."""

    def close_expired(self) -> None:
        """Close connections without streams for `pool_idle_timeout` (the listener's sweep calls this),
        with a GOAWAY first, as HTTP/2 asks."""
        oldest_ok = time.monotonic() - self.settings.pool_idle_timeout
        for conns in self._conns.values():
            for conn in [c for c in conns if not c.streams and c.idle_since < oldest_ok]:
                conn.close()
                conns.remove(conn)

    def forget(self, conn: H2Upstream) -> None:
        conns = self._conns.get(conn.endpoint)
        if conns and conn in conns:
            conns.remove(conn)

    def close(self) -> None:
        for conns in self._conns.values():
            for conn in list(conns):
                conn.close()
        self._conns.clear()


def _without_failed(events: list[h2.events.Event]) -> list[h2.events.Event]:
    """A stream our codec reset in this read (its response malformed, say a body over its
    content-length) loses what came before the reset in the same read: its head is not relayed,
    so the client gets the 502 rather than a response cut short."""
    failed = {e.stream_id for e in events if isinstance(e, h2.events.StreamReset) and not e.remote_reset}
    if not failed:
        return events
    return [
        e
        for e in events
        if isinstance(e, h2.events.StreamReset) or getattr(e, "stream_id", None) not in failed
    ]
