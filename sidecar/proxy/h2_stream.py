"""One HTTP/2 request stream from a client, its client side: traced like an HTTP/1.1 exchange, with
gRPC's tags and trailers-only local replies on top; the span ends when the stream ends. The upstream side
is `h2_to_h1.H2ToH1Stream` (an `http` listener that met an h2c client) or `h2_to_h2.H2ToH2Stream`
(`http2` and `grpc` listeners).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import h2.errors

from sidecar.proxy import errors
from sidecar.proxy.exchange import Exchange
from sidecar.proxy.h2_base import NO_ACK, Ack
from sidecar.proxy.head import (
    H2RequestHead,
    Headers,
)
from sidecar.tracing import grpc

if TYPE_CHECKING:
    from sidecar.proxy.host import ConnectionHost
    from sidecar.proxy.route import Route
    from sidecar.tracing.decide import Decision


class Downstream(Protocol):
    """What a stream uses of its client connection (http2.H2Downstream)."""

    @property
    def host(self) -> ConnectionHost: ...
    @property
    def peer(self) -> str: ...

    def send_headers(self, stream_id: int, headers: Headers, *, end_stream: bool) -> None: ...
    def send_data(self, stream_id: int, data: bytes, ack: Ack) -> None: ...
    def end_stream(self, stream_id: int, trailers: Headers | None, *, then_reset: int | None) -> None: ...
    def reset(self, stream_id: int, code: int) -> None: ...
    def ack(self, stream_id: int, size: int) -> None: ...  # flow-controlled bytes handed on
    def queued(self, stream_id: int) -> int: ...  # bytes waiting for the client's window
    def touch(self) -> None: ...  # flush at the end of the current callback
    def flush(self) -> None: ...
    def stream_closed(self, stream: H2Stream) -> None: ...


class H2Stream(Exchange):
    """The client side of an HTTP/2 stream; subclasses own the upstream side."""

    __slots__ = (
        "closed",
        "down",
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
        self, down: Downstream, sid: int, route: Route, decision: Decision, head: H2RequestHead
    ) -> None:
        super().__init__(
            down.host,
            route,
            decision,
            method=head.method,
            target=head.path,
            protocol="HTTP/2",
            peer=down.peer,
            grpc_timeout=head.grpc_timeout,
        )
        self.down = down
        self.sid = sid
        self.is_head = head.method == b"HEAD"
        self.is_grpc = grpc.is_grpc(head.content_type)
        if self.is_grpc and decision.span is not None:
            assert head.content_type is not None
            self.extra_tags = grpc.request_tags(
                head.path, head.authority, head.content_type, head.grpc_timeout
            )
            decision.span.name = grpc.span_name(head.path)
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
        if self.extra_tags is not None and end:
            self.extra_tags.update(grpc.status_tags(headers))  # a trailers-only gRPC response
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
        if trailers and self.extra_tags is not None:
            self.extra_tags.update(grpc.status_tags(trailers))
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
        self.cancel_upstream()  # the upstream's work for this stream ends with it
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
