"""An HTTP/2 stream forwarded as a stream of a multiplexed HTTP/2 upstream (`http2`/`grpc` listeners)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sidecar.proxy import errors
from sidecar.proxy.h2_base import NO_ACK
from sidecar.proxy.h2_stream import H2Stream
from sidecar.proxy.head import H2RequestHead, Headers, h2_response_from_h2

if TYPE_CHECKING:
    from sidecar.proxy.h2_stream import Downstream
    from sidecar.proxy.host import H2PooledConnection
    from sidecar.proxy.route import Route
    from sidecar.tracing.decide import Decision

_REPLAY_LIMIT: Final = 64 * 1024  # request bytes kept to retry a stream the upstream's GOAWAY refused


class H2ToH2Stream(H2Stream):
    """An HTTP/2 stream forwarded as a stream of a multiplexed HTTP/2 upstream connection."""

    __slots__ = ("headers", "replay", "replay_size", "retried", "up", "up_sid")

    def __init__(
        self,
        down: Downstream,
        sid: int,
        route: Route,
        decision: Decision,
        head: H2RequestHead,
        headers: Headers,
    ) -> None:
        super().__init__(down, sid, route, decision, head)
        self.headers = headers
        self.up: H2PooledConnection | None = None
        self.up_sid = 0
        self.replay: list[bytes] | None = []  # request data sent so far, while small enough to resend
        self.replay_size = 0
        self.retried = False

    def begin(self) -> None:
        endpoint = self.pick_endpoint()
        if endpoint is not None:
            self.host.h2_pool.open_stream(endpoint, self)

    def attach_h2(self, up: H2PooledConnection) -> None:
        """Called by the pool with a connection that has room for one more stream."""
        if self.closed:
            return
        self.up = up
        self.upstream_address = up.peer
        end = self.req_done and not self.pending and self.pending_trailers is None
        self.up_sid = up.open(self, self.headers, end_stream=end)
        if not self.response_started:
            self.start_response_timer()
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

    def on_up_reset(self, code: int, *, flag: str = errors.UPSTREAM_RESET) -> None:
        """The upstream stream ended without its response: reset by the upstream (UR), or by our codec
        because what the upstream sent was malformed, or with its connection broken (UPE)."""
        self.up = None
        if self.response_started:
            self.cut(flag)
        else:
            self.local_flag(flag)

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
