"""One HTTP/2 request stream from a client, to an HTTP/1.1 upstream (an `http` listener that met an h2c
client) or to an HTTP/2 upstream stream (`http2` and `grpc` listeners): traced like an HTTP/1.1 exchange,
with gRPC's tags and trailers-only local replies on top. The span ends when the stream ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h2.errors

from sidecar.proxy import errors
from sidecar.proxy.exchange import Exchange
from sidecar.proxy.h2_base import NO_ACK, Ack
from sidecar.proxy.head import (
    H2RequestHead,
    chunk,
    h2_response_from_h1,
    h2_response_from_h2,
    h2_trailers,
    last_chunk,
)
from sidecar.tracing import grpc

if TYPE_CHECKING:
    from sidecar.proxy.h2_upstream import H2Upstream
    from sidecar.proxy.http2 import H2Downstream
    from sidecar.proxy.route import Route
    from sidecar.proxy.upstream import UpstreamConnection
    from sidecar.tracing.decide import Decision

Headers = list[tuple[bytes, bytes]]
_REPLAY_LIMIT = 64 * 1024  # request bytes kept to retry a stream the upstream's GOAWAY refused


class H2Stream(Exchange):
    """The client side of an HTTP/2 stream; subclasses own the upstream side."""

    __slots__ = (
        "closed",
        "down",
        "grpc_tags",
        "is_grpc",
        "is_head",
        "last_activity",
        "pending",
        "pending_trailers",
        "req_done",
        "response_done",
        "response_started",
        "sid",
    )

    def __init__(
        self, down: H2Downstream, sid: int, route: Route, decision: Decision, head: H2RequestHead
    ) -> None:
        super().__init__(
            down.host,
            route,
            decision,
            method=head.method,
            target=head.path,
            protocol="HTTP/2",
            peer=down.peer,
        )
        self.down = down
        self.sid = sid
        self.is_head = head.method == b"HEAD"
        self.is_grpc = grpc.is_grpc(head.content_type)
        self.grpc_tags: dict[str, str] = {}
        if self.is_grpc and decision.span is not None:
            assert head.content_type is not None
            self.grpc_tags = grpc.request_tags(
                head.path, head.authority, head.content_type, head.grpc_timeout
            )
        self.pending: list[tuple[bytes, int]] = []  # request data (and its flow-controlled size) waiting
        self.pending_trailers: Headers | None = None
        self.req_done = False
        self.response_started = False
        self.response_done = False
        self.closed = False  # the stream is over on the client side: nothing more is sent or forwarded
        self.last_activity = down.host.loop.time()

    # From the client ----------------------------------------------------------------------------
    def on_data(self, data: bytes, flow: int) -> None:
        self.request_size += len(data)
        self.last_activity = self.down.host.loop.time()
        if self.upstream_ready():
            self.forward_data(data, flow)
        else:
            self.pending.append((data, flow))

    def on_trailers(self, trailers: Headers) -> None:
        self.pending_trailers = trailers
        self.on_end()

    def on_end(self) -> None:
        if self.req_done:
            return  # the request ended with its headers: the upstream stream was opened ended
        self.req_done = True
        if self.upstream_ready():
            self.forward_end()

    def on_reset(self) -> None:
        """The client reset the stream (a cancelled call): cancel upstream too."""
        if self.closed:
            return
        self.closed = True
        self.cancel_upstream()
        if not self.finished:
            self.flags = errors.DOWNSTREAM_RESET
            self.record()
        self.down.stream_closed(self)

    def on_downstream_lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.cancel_upstream()
        if not self.finished:
            self.flags = errors.DOWNSTREAM_CLOSED
            self.record()

    # To be provided by the upstream side ---------------------------------------------------------
    def upstream_ready(self) -> bool:
        raise NotImplementedError

    def forward_data(self, data: bytes, flow: int) -> None:
        raise NotImplementedError

    def forward_end(self) -> None:
        raise NotImplementedError

    def cancel_upstream(self) -> None:
        raise NotImplementedError

    def release_pending(self) -> None:
        """The upstream is ready: what the client sent meanwhile goes now."""
        pending, self.pending = self.pending, []
        for data, flow in pending:
            self.forward_data(data, flow)
        if self.req_done:
            self.forward_end()

    # To the client ------------------------------------------------------------------------------
    def send_response_head(self, headers: Headers, *, end: bool) -> None:
        if self.closed:
            return
        self.cancel_timer()
        self.response_started = True
        status = headers[0][1] if headers and headers[0][0] == b":status" else b"0"
        self.status = int(status) if status.isdigit() else 0
        if self.is_grpc and end:
            self.grpc_tags.update(grpc.status_tags(headers))  # a trailers-only response
        self.down.send_headers(self.sid, headers, end_stream=end)
        if end and not self.req_done:
            self.down.reset(self.sid, h2.errors.ErrorCodes.NO_ERROR)  # see response_finished
        self.down.touch()
        if end:
            self.response_finished()

    def send_response_data(self, data: bytes, ack: Ack) -> None:
        self.response_size += len(data)
        if self.closed:
            ack()
            return
        self.last_activity = self.down.host.loop.time()
        self.down.send_data(self.sid, data, ack)
        self.down.touch()

    def send_response_end(self, trailers: Headers | None) -> None:
        if self.closed:
            return
        if trailers and self.is_grpc:
            self.grpc_tags.update(grpc.status_tags(trailers))
        stop_upload = None if self.req_done else h2.errors.ErrorCodes.NO_ERROR
        self.down.end_stream(self.sid, trailers or None, then_reset=stop_upload)
        self.down.touch()
        self.response_finished()

    def response_finished(self) -> None:
        """The whole response is queued. Before the whole request, the client is asked to stop sending
        (RST_STREAM NO_ERROR once the response is out, RFC 9113 8.1) and the upstream stream ends."""
        self.response_done = True
        if not self.req_done and not self.closed:
            self.closed = True
            self.cancel_upstream()
        self.record()
        self.down.stream_closed(self)

    def cut(self, flag: str) -> None:
        """The response broke after its head: reset the stream, the client must not take it as whole."""
        if self.closed:
            return
        self.flags = flag
        self.closed = True
        self.down.reset(self.sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        self.down.touch()
        self.record()
        self.down.stream_closed(self)

    def local_flag(self, flag: str) -> None:
        """Envoy's local reply for `flag`: a trailers-only reply for gRPC, else 503/504 with a body."""
        if self.finished or self.closed:
            return
        if flag == errors.UPSTREAM_CONNECT_FAILURE and self.endpoint is not None:
            self.upstream_address = self.endpoint.key
        self.cancel_upstream()
        if self.response_started:
            self.cut(flag)
            return
        self.flags = flag
        if self.is_grpc:
            self.send_response_head(errors.grpc_flag_reply(flag), end=True)
            return
        status, body = errors.flag_body(flag)
        head = [
            (b":status", b"%d" % status),
            (b"content-type", b"text/plain"),
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", self.decision.request_id.encode()),
        ]
        if self.is_head:
            self.send_response_head(head, end=True)
            return
        self.send_response_head(head, end=False)
        self.send_response_data(body, NO_ACK)
        self.send_response_end(None)

    def on_timeout(self) -> None:
        if not self.response_started:
            self.local_flag(errors.UPSTREAM_TIMEOUT)

    def on_idle(self) -> None:
        """No frame either way for the stream idle timeout: end it (Envoy's stream idle timeout)."""
        if self.response_started:
            self.cut(errors.STREAM_IDLE_TIMEOUT)
        else:
            self.local_flag(errors.UPSTREAM_TIMEOUT)

    def span_tags(self) -> dict[str, str] | None:
        return self.grpc_tags or None


class H2ToH1Stream(H2Stream):
    """An HTTP/2 stream forwarded as an HTTP/1.1 request (the `ResponseSink` of its connection)."""

    __slots__ = ("chunked", "head", "paused_up", "unacked", "upstream", "upstream_keep_alive")

    def __init__(
        self,
        down: H2Downstream,
        sid: int,
        route: Route,
        decision: Decision,
        head: H2RequestHead,
        forwarded: bytes,
        *,
        chunked: bool,
    ) -> None:
        super().__init__(down, sid, route, decision, head)
        self.head = forwarded
        self.chunked = chunked
        self.upstream: UpstreamConnection | None = None
        self.upstream_keep_alive = False
        self.paused_up = False  # the upstream socket is full: hold the client's window
        self.unacked = 0

    # Upstream side ------------------------------------------------------------------------------
    def attach(self, upstream: UpstreamConnection) -> None:
        if self.closed:
            self.host.pool.release(upstream)
            return
        self.upstream = upstream
        self.upstream_address = upstream.peer
        upstream.exchange = self
        upstream.write(self.head)
        self.start_timer(self.host.settings.upstream_timeout)
        self.release_pending()

    def upstream_ready(self) -> bool:
        return self.upstream is not None

    def forward_data(self, data: bytes, flow: int) -> None:
        assert self.upstream is not None
        self.upstream.write(chunk(data) if self.chunked else data)
        if self.paused_up:
            self.unacked += flow
        else:
            self.down.ack(self.sid, flow)

    def forward_end(self) -> None:
        if self.upstream is not None and self.chunked:
            self.upstream.write(last_chunk(self.pending_trailers or []))

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
        self.upstream_keep_alive = keep_alive
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
            if self.upstream_keep_alive and self.req_done:
                self.host.pool.release(upstream)
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


class H2ToH2Stream(H2Stream):
    """An HTTP/2 stream forwarded as a stream of a multiplexed HTTP/2 upstream connection."""

    __slots__ = ("headers", "replay", "replay_size", "retried", "up", "up_sid")

    def __init__(
        self,
        down: H2Downstream,
        sid: int,
        route: Route,
        decision: Decision,
        head: H2RequestHead,
        headers: Headers,
    ) -> None:
        super().__init__(down, sid, route, decision, head)
        self.headers = headers
        self.up: H2Upstream | None = None
        self.up_sid = 0
        self.replay: list[bytes] | None = []  # request data sent so far, while small enough to resend
        self.replay_size = 0
        self.retried = False

    def begin(self) -> None:
        endpoint = self.route.next_endpoint()
        if endpoint is None:
            self.local_flag(errors.NO_HEALTHY_UPSTREAM)
            return
        self.endpoint = endpoint
        stats = self.host.stats
        stats.count_endpoint(stats.upstream_rq, endpoint.key)
        self.host.h2_pool.open_stream(endpoint, self)

    def attach_h2(self, up: H2Upstream) -> None:
        """Called by the pool with a connection that has room for one more stream."""
        if self.closed:
            return
        self.up = up
        self.upstream_address = up.peer
        end = self.req_done and not self.pending and self.pending_trailers is None
        self.up_sid = up.open(self, self.headers, end_stream=end)
        if not self.response_started:
            timeout = self.host.settings.upstream_timeout
            deadline = grpc.timeout_seconds(dict(self.headers).get(b"grpc-timeout"))
            self.start_timer(min(timeout, deadline) if deadline is not None else timeout)
        if end:
            self.pending = []
        else:
            self.release_pending()

    def connect_failed(self, flag: str) -> None:
        stats = self.host.stats
        if self.endpoint is not None and flag == errors.UPSTREAM_CONNECT_FAILURE:
            stats.count_endpoint(stats.upstream_cx_connect_fail, self.endpoint.key)
        self.local_flag(flag)

    def upstream_ready(self) -> bool:
        return self.up is not None

    def forward_data(self, data: bytes, flow: int) -> None:
        assert self.up is not None
        if self.replay is not None:
            self.replay_size += len(data)
            if self.replay_size > _REPLAY_LIMIT:
                self.replay = None
            else:
                self.replay.append(data)
        down, sid = self.down, self.sid
        self.up.send_data(self.up_sid, data, lambda: down.ack(sid, flow))
        self.up.touch()

    def forward_end(self) -> None:
        if self.up is not None:
            self.up.end_stream(self.up_sid, self.pending_trailers)
            self.up.touch()

    def cancel_upstream(self) -> None:
        up, self.up = self.up, None
        if up is not None:
            up.cancel(self.up_sid)

    # From the upstream stream -------------------------------------------------------------------
    def on_up_response(self, headers: Headers, *, end: bool) -> None:
        self.replay = None
        if end:
            up, self.up = self.up, None
            if up is not None and not self.req_done:
                up.cancel(self.up_sid)
        self.send_response_head(h2_response_from_h2(headers), end=end)

    def on_up_data(self, data: bytes, flow: int) -> None:
        up, up_sid = self.up, self.up_sid
        ack = (lambda: up.ack(up_sid, flow)) if up is not None else NO_ACK
        self.send_response_data(data, ack)

    def on_up_end(self, trailers: Headers | None) -> None:
        up, self.up = self.up, None
        if up is not None and not self.req_done:
            up.cancel(self.up_sid)  # the upstream answered before the whole request: it wants no more
        self.send_response_end(h2_response_from_h2(trailers) if trailers else None)

    def on_up_reset(self, code: int) -> None:
        self.up = None
        if self.response_started:
            self.cut(errors.UPSTREAM_RESET)
        else:
            self.local_flag(errors.UPSTREAM_RESET)

    def on_up_refused(self) -> None:
        """The upstream's GOAWAY said it never saw this stream: retry it once, on a new connection."""
        self.up = None
        if self.retried or self.replay is None or self.response_started or self.closed:
            self.local_flag(errors.UPSTREAM_RESET)
            return
        self.retried = True
        self.pending = [(data, 0) for data in self.replay] + self.pending
        self.replay, self.replay_size = [], 0
        assert self.endpoint is not None
        self.cancel_timer()
        self.host.h2_pool.open_stream(self.endpoint, self, fresh=True)
