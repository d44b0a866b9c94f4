"""An HTTP/2 client connection (h2c, prior knowledge): one traced exchange per stream, and the defences
a proxy needs against hostile HTTP/2.

Every protocol violation, and every abuse below, ends the connection with GOAWAY and a close, is counted
in `ListenerStats.h2_errors` by kind, and leaves other connections alone:
- a bad preface, or a first frame that is not SETTINGS (RFC 9113 3.4);
- h2's own checks: HPACK errors and bombs (header list over `max_header_bytes`), CONTINUATION floods,
  flow-control window overflow, stream id reuse, streams beyond SETTINGS_MAX_CONCURRENT_STREAMS;
- more header fields than `max_headers` (as for HTTP/1.1);
- rapid reset (CVE-2023-44487) and MadeYouReset (CVE-2025-8671): more than `h2_max_resets` resets in
  10 s, counting those the client sends and those the codec sends because of what the client sent
  (WINDOW_UPDATE 0, DATA past a window, frames on a half-closed stream, malformed fields): GOAWAY
  ENHANCE_YOUR_CALM. Every reset stream's upstream exchange is cancelled at once, so upstream work stays
  within SETTINGS_MAX_CONCURRENT_STREAMS per connection whatever the client does;
- a SETTINGS/PING flood: more than `h2_max_control_frames` in 10 s, or any while we cannot write;
- a connection error the codec handled alone (it sent GOAWAY and reads nothing more).

Idle and slow clients: a connection with no open stream for `idle_timeout` (PINGs do not count) is
closed with GOAWAY, and so is one whose header block stays unfinished for `header_timeout`
(`--request-headers-timeout`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import h2.errors
import h2.events
import h2.exceptions
from hyperframe.frame import GoAwayFrame

from sidecar.proxy import errors
from sidecar.proxy.h2_base import H2Peer
from sidecar.proxy.h2_errors import CodecFailed, kind_of
from sidecar.proxy.h2_stream import H2Stream
from sidecar.proxy.h2_to_h1 import H2ToH1Stream
from sidecar.proxy.h2_to_h2 import H2ToH2Stream
from sidecar.proxy.h2_watch import HeaderBlockWatch
from sidecar.proxy.head import (
    H2RequestHead,
    UnderscoreError,
    render_h1_request_from_h2,
    render_h2_request,
)
from sidecar.proxy.http1 import H2_PREFACE, peer_name

if TYPE_CHECKING:
    import asyncio

    from sidecar.proxy.host import ConnectionHost

log: Final = logging.getLogger("sidecar.proxy")
_WINDOW: Final = 10.0  # seconds over which resets and control frames are counted
_SETTINGS_FRAME_TYPE: Final = 0x4


class H2Downstream(H2Peer):
    """One client connection speaking HTTP/2; `upstream_h2` chooses the upstream protocol."""

    def __init__(self, host: ConnectionHost, *, upstream_h2: bool) -> None:
        super().__init__(host.settings, client_side=False)
        self.host = host
        self.upstream_h2 = upstream_h2
        self.peer = "-"
        self.streams: dict[int, H2Stream] = {}
        self.draining = False
        self.last_activity = 0.0
        self.idle_since = 0.0  # when the last stream ended (or the connection opened)
        self.headers_since: float | None = None  # since when a header block is unfinished
        self._watch = HeaderBlockWatch()
        self._preface = b""  # bytes so far, until the preface and the first frame header are checked
        self._checked = False
        self._resets: list[float] = []
        self._control: list[float] = []
        self._adopted = False
        self._last_stream_id = 1 << 31  # the GOAWAY's: streams above it are refused while draining

    def adopt(self, transport: asyncio.BaseTransport, data: bytes) -> None:
        """Take over a connection an HTTP/1.1 protocol accepted and found to start with the preface."""
        self._adopted = True
        transport.set_protocol(self)
        self.connection_made(transport)
        self.data_received(data)

    # asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.peer = peer_name(transport)
        self.last_activity = self.idle_since = self.host.loop.time()
        if not self._adopted:
            self.host.connection_opened(self)
        if self.host.draining:
            self.start_drain()

    def data_received(self, data: bytes) -> None:
        self.last_activity = now = self.host.loop.time()
        watch = self._watch
        watch.feed(data)
        if watch.open:
            if self.headers_since is None:
                self.headers_since = now
        else:
            self.headers_since = None
        if not self._checked:
            data = self._check_start(data)
            if not data:
                return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.protocol_error(kind_of(exc), getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR))
            return
        if self.h2.stream_errors:  # streams the codec reset itself (nghttp2), counted all the same
            for kind in self.h2.stream_errors:
                self.host.stats.h2_error(kind)
            self.h2.stream_errors.clear()
        self.in_callback = True
        try:
            for event in events:
                if self.closed:
                    return
                self._dispatch(event)
        finally:
            self.in_callback = False
        self.flush()

    def late_events(self, events: list[h2.events.Event]) -> None:
        self.in_callback = True
        try:
            for event in events:
                if self.closed:
                    return
                if isinstance(event, CodecFailed):
                    self.protocol_error(event.error.kind, event.error.error_code)
                    return
                self._dispatch(event)
        finally:
            self.in_callback = False
        self.flush()

    def _check_start(self, data: bytes) -> bytes:
        """The preface, then a SETTINGS frame header: h2 itself would take frames before SETTINGS."""
        seen = self._preface + data
        n = len(H2_PREFACE)
        if seen[:n] != H2_PREFACE[: len(seen)]:
            self.protocol_error("bad_preface", h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return b""
        if len(seen) < n + 4:  # the first frame's type is its fourth byte
            self._preface = seen
            return b""
        self._checked = True
        self._preface = b""
        if seen[n + 3] != _SETTINGS_FRAME_TYPE:
            self.protocol_error("frame_before_settings", h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return b""
        return seen

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None:
                self.ack(event.stream_id, event.flow_controlled_length)
            else:
                stream.on_data(event.data, event.flow_controlled_length)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.on_end()
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.on_trailers(list(event.headers))
        elif isinstance(event, h2.events.StreamReset):
            self.forget_stream(event.stream_id)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.on_reset()
            if self._count(self._resets, self.settings.h2_max_resets):
                self.protocol_error("rapid_reset", h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        elif isinstance(event, h2.events.WindowUpdated):
            self.on_window_updated(event.stream_id)
        elif isinstance(event, h2.events.PingReceived | h2.events.RemoteSettingsChanged):
            if self.paused or self._count(self._control, self.settings.h2_max_control_frames):
                self.protocol_error("control_flood", h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.start_drain()  # the client opens no more streams; answer in kind, open ones finish

    def _count(self, times: list[float], limit: int) -> bool:
        now = self.host.loop.time()
        times.append(now)
        if len(times) > limit:
            while times and now - times[0] > _WINDOW:
                times.pop(0)
            return len(times) > limit
        return False

    # Streams ------------------------------------------------------------------------------------
    def _request(self, event: h2.events.RequestReceived) -> None:
        headers: list[tuple[bytes, bytes]] = event.headers
        sid = event.stream_id
        assert sid is not None
        if self.draining and sid > self._last_stream_id:
            self.reset(sid, h2.errors.ErrorCodes.REFUSED_STREAM)  # after our GOAWAY: retry elsewhere
            return
        settings = self.settings
        if len(headers) > settings.max_headers:
            self.protocol_error("too_many_headers", h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            return
        if sum(len(n) + len(v) + 32 for n, v in headers) > settings.max_header_bytes:  # RFC 9113 6.5.2's size
            self.protocol_error("header_list_too_large", h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            return
        if len(self.streams) >= settings.h2_max_concurrent_streams:
            self.protocol_error("too_many_streams", h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return
        stats = self.host.stats
        route = self.host.route
        try:
            head = H2RequestHead(headers, route.tracer.header_names, settings.headers_with_underscores)
        except UnderscoreError:
            stats.requests_rejected_with_underscores_in_headers += 1
            self.send_headers(sid, [(b":status", b"400"), (b"content-length", b"0")], end_stream=True)
            stats.local_reply(errors.DOWNSTREAM_PROTOCOL_ERROR)
            return
        if head.dropped_underscores:
            stats.dropped_headers_with_underscores += head.dropped_underscores
        if head.method == b"CONNECT":
            self.send_headers(sid, [(b":status", b"405"), (b"content-length", b"0")], end_stream=True)
            self.host.stats.local_reply(errors.DOWNSTREAM_PROTOCOL_ERROR)
            return
        decision = route.tracer.start(
            route.kind,
            head.trace_in,
            method=head.method,
            authority=head.authority,
            path=head.path,
            scheme=(head.scheme or b"http").decode("latin-1"),
            protocol="HTTP/2",
            user_agent=head.user_agent,
            peer_address=self.peer,
            upstream_cluster=route.cluster,
            remote_service=route.remote_service,
        )
        ended = event.stream_ended is not None
        stream: H2Stream
        if self.upstream_h2:
            forwarded_h2 = render_h2_request(head, decision.remove, decision.headers)
            stream = H2ToH2Stream(self, sid, route, decision, head, forwarded_h2)
        else:
            chunked = not ended and head.content_length is None
            forwarded = render_h1_request_from_h2(head, decision.remove, decision.headers, chunked=chunked)
            # Framing follows the head unless the stream says content-length 0 (any zeros).
            has_body = not ended and (head.content_length is None or head.content_length.strip(b"0") != b"")
            stream = H2ToH1Stream(
                self, sid, route, decision, head, forwarded, chunked=chunked, has_body=has_body
            )
        self.streams[sid] = stream
        self.host.stats.streams_active += 1
        if ended:
            stream.req_done = True
        stream.begin()

    def stream_closed(self, stream: H2Stream) -> None:
        if self.streams.get(stream.sid) is stream:
            del self.streams[stream.sid]
            self.host.stats.streams_active -= 1
            if not self.streams:
                self.idle_since = self.host.loop.time()
        self._maybe_close()

    def sweep(self, now: float) -> None:
        """Timeouts, checked by the listener's periodic sweep: an unfinished header block
        (`header_timeout`), a connection with no stream (`idle_timeout`), idle streams."""
        settings = self.settings
        if self.headers_since is not None and now - self.headers_since > settings.header_timeout:
            self.protocol_error("request_headers_timeout", h2.errors.ErrorCodes.NO_ERROR)
            return
        if not self.streams and now - self.idle_since > settings.idle_timeout:
            self.start_drain()
            return
        limit = settings.stream_idle_timeout
        for stream in list(self.streams.values()):
            if now - stream.last_activity > limit:
                stream.on_idle()
        self.flush()

    # Endings ------------------------------------------------------------------------------------
    def protocol_error(self, kind: str, code: int) -> None:
        self.host.stats.h2_error(kind)
        log.debug("%s: HTTP/2 %s from %s: GOAWAY %s", self.host.name, kind, self.peer, code)
        self.goaway(code, close=True)

    def start_drain(self) -> None:
        """Drain: GOAWAY (no new streams), let open ones finish, then close.

        h2's close_connection() would also close the state machine, cutting the open streams, so the
        graceful GOAWAY frame is written beside it, after what h2 has queued."""
        if not self.draining:
            self.draining = True
            self._last_stream_id = self.h2.highest_inbound_stream_id
            if self.streams:  # else the close right below sends the only one
                self._write_goaway()
        self._maybe_close()

    def _write_goaway(self) -> None:
        self.flush()
        if self.transport is not None and not self.closed:
            frame = GoAwayFrame(0)
            frame.last_stream_id = self._last_stream_id
            frame.error_code = h2.errors.ErrorCodes.NO_ERROR
            self.transport.write(frame.serialize())

    def _maybe_close(self) -> None:
        """The last stream of a drain ended: a final GOAWAY after its frames, then the close (the
        first GOAWAY may lie far back, and a close must come right after a GOAWAY)."""
        if self.draining and not self.streams and not self.closed and self.transport is not None:
            self._write_goaway()
            self.closed = True
            self.transport.close()

    def idle(self) -> bool:
        return not self.streams

    def close_if_idle(self) -> bool:
        self.start_drain()
        return self.closed

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        streams, self.streams = self.streams, {}
        self.host.stats.streams_active -= len(streams)
        for stream in streams.values():
            stream.on_downstream_lost()
        self.host.connection_closed(self)
