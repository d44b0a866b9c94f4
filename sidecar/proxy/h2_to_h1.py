"""An HTTP/2 stream forwarded as an HTTP/1.1 request: an `http` listener that met an h2c client.

The upstream connection goes back to the pool on the same terms as for an HTTP/1.1 client (see
h1_exchange): the request was complete before the response began, and it was not a GET, HEAD or
OPTIONS with a body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.proxy import errors
from sidecar.proxy.h2_stream import H2Stream
from sidecar.proxy.head import (
    MAY_IGNORE_BODY,
    H2RequestHead,
    Headers,
    chunk,
    h2_response_from_h1,
    h2_trailers,
    last_chunk,
)
from sidecar.proxy.host import ResponseSink, Upstream

if TYPE_CHECKING:
    from sidecar.proxy.h2_stream import Downstream
    from sidecar.proxy.route import Route
    from sidecar.tracing.decide import Decision


class H2ToH1Stream(H2Stream, ResponseSink):
    """An HTTP/2 stream forwarded as an HTTP/1.1 request (the `ResponseSink` of its connection)."""

    __slots__ = ("chunked", "has_body", "head", "paused_up", "unacked", "upstream", "upstream_keep_alive")

    def __init__(
        self,
        down: Downstream,
        sid: int,
        route: Route,
        decision: Decision,
        head: H2RequestHead,
        forwarded: bytes,
        *,
        chunked: bool,
        has_body: bool,
    ) -> None:
        super().__init__(down, sid, route, decision, head)
        self.head = forwarded
        self.chunked = chunked
        self.has_body = has_body  # body bytes or chunked framing follow the head
        self.upstream: Upstream | None = None
        self.upstream_keep_alive = False
        self.paused_up = False  # the upstream socket is full: hold the client's window
        self.unacked = 0

    # Upstream side ------------------------------------------------------------------------------
    def attach(self, upstream: Upstream) -> None:
        if self.closed:
            upstream.release()
            return
        self.upstream = upstream
        self.upstream_address = upstream.peer
        upstream.exchange = self
        upstream.send(self.head)
        self.start_response_timer()
        self.release_pending()

    def upstream_ready(self) -> bool:
        return self.upstream is not None

    def forward_data(self, data: bytes, flow: int) -> None:
        assert self.upstream is not None
        self.upstream.send(chunk(data) if self.chunked else data)
        if self.paused_up:
            self.unacked += flow
        else:
            self.down.ack(self.sid, flow)

    def forward_end(self) -> None:
        if self.upstream is not None and self.chunked:
            self.upstream.send(last_chunk(self.pending_trailers or []))

    def cancel_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None

    # ResponseSink -------------------------------------------------------------------------------
    def on_response_head(
        self, status: int, reason: bytes, headers: Headers, keep_alive: bool, version: str
    ) -> None:
        if self.closed or status == 101 or 100 <= status < 200:
            return  # informational answers are not relayed over HTTP/2; 101 is refused at the body
        # Decided now: after an early answer the back-end may never read the rest of the body.
        self.upstream_keep_alive = (
            keep_alive and self.req_done and not (self.has_body and self.method in MAY_IGNORE_BODY)
        )
        end = self.is_head or status in (204, 304)
        self.send_response_head(h2_response_from_h1(status, headers), end=False)
        if end:
            self.send_response_end(None)

    def on_response_body(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is None:
            return
        self.send_response_data(data, self._response_acked)
        if self.down.queued(self.sid) > self.host.settings.buffer_high:
            upstream.pause_reading()  # the client's window is shut: stop reading the upstream

    def _response_acked(self) -> None:
        upstream = self.upstream
        if upstream is not None and self.down.queued(self.sid) <= self.host.settings.buffer_high:
            upstream.resume_reading()

    def on_response_complete(self, trailers: Headers) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            if self.upstream_keep_alive:
                upstream.release()
            else:
                upstream.close()
        if not self.response_done:
            self.send_response_end(h2_trailers(trailers) if trailers else None)

    def on_upstream_upgraded(self, rest: bytes) -> None:
        self.on_upstream_protocol_error("101 Switching Protocols cannot be relayed over HTTP/2")

    def on_tunnel_data(self, data: bytes) -> None:
        pass

    def on_tunnel_eof(self) -> bool:
        return False

    def on_upstream_lost(self, exc: Exception | None) -> None:
        self.upstream = None
        if not self.response_done:
            self.local_flag(errors.UPSTREAM_RESET)

    def on_upstream_protocol_error(self, detail: str) -> None:
        self.cancel_upstream()
        if not self.response_done:
            self.local_flag(errors.UPSTREAM_PROTOCOL_ERROR)

    def pause_downstream(self) -> None:
        self.paused_up = True

    def resume_downstream(self) -> None:
        self.paused_up = False
        unacked, self.unacked = self.unacked, 0
        self.down.ack(self.sid, unacked)

    def flush_downstream(self) -> None:
        self.down.flush()
