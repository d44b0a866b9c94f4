"""One HTTP/1.1 request from an HTTP/1.1 client to an HTTP/1.1 upstream: head, bodies, endings.

Exchanges of one client connection run one at a time in arrival order (pipelined ones wait, their bodies
buffered up to a bound, then the client is paused). Bodies stream with back-pressure: a peer whose write
buffer is full pauses reading on the other side. Writes are collected per read callback and handed to
the connection once, which sends them with the rest of its loop turn's bytes (outbox.py): one send per
direction instead of one per head, body chunk and terminator.

An upstream connection goes back to the pool only when nothing can be left on it: the response is
complete and framed, the request was complete before the response began, and the request is not a
GET, HEAD or OPTIONS with a body (a back-end may answer those without reading the body, then read the
body as the next request, which would answer someone else).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from mypy_extensions import trait

from sidecar.proxy import errors
from sidecar.proxy.exchange import Exchange
from sidecar.proxy.head import MAY_IGNORE_BODY, Framing, ResponseHead, chunk, informational, last_chunk
from sidecar.proxy.host import ResponseSink, Upstream
from sidecar.proxy.outbox import Sender

if TYPE_CHECKING:
    import asyncio

    from sidecar.proxy.host import ConnectionHost
    from sidecar.proxy.route import Route
    from sidecar.tracing.decide import Decision


CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


@trait
class Downstream(Sender):
    """What an exchange uses of its client connection (http1.DownstreamConnection, which inherits it).
    A mypyc trait rather than a Protocol, like host.py's `Upstream` and `ResponseSink` (see there)."""

    host: ConnectionHost
    peer: str
    transport: asyncio.Transport
    closed: bool
    pending_bytes: int  # request bytes buffered by its exchanges, waiting for an upstream
    tunnel: H1Exchange | None  # the exchange whose upgrade made the connection a tunnel

    def maybe_pause(self) -> None:
        raise NotImplementedError

    def maybe_resume(self) -> None:
        raise NotImplementedError

    def pause_for_upstream(self) -> None:
        raise NotImplementedError

    def resume_for_upstream(self) -> None:
        raise NotImplementedError

    def exchange_finished(self, exchange: H1Exchange) -> None:
        raise NotImplementedError

    # Every write goes through these and `Sender.send`, so bytes keep their order (see outbox.py).
    def send_eof(self) -> bool:  # half-close after what is queued; False if the transport cannot
        raise NotImplementedError

    def close(self) -> None:  # after what is queued
        raise NotImplementedError

    def abort(self) -> None:  # after what is queued: a cut response, then the reset
        raise NotImplementedError


class H1Exchange(Exchange, ResponseSink):
    """The HTTP/1.1 client side of an exchange; the upstream side is an `upstream.UpstreamConnection`."""

    __slots__ = (
        "_down_out",
        "_up_out",
        "close_downstream",
        "conn",
        "continue_owed",
        "down_chunked",
        "has_body",
        "head",
        "held",
        "is_head",
        "keep_alive",
        "pending",
        "req_chunked",
        "req_done",
        "resp_framing",
        "response_started",
        "retried",
        "tunnel",
        "upgrade",
        "upstream",
        "upstream_keep_alive",
        "version",
    )

    def __init__(
        self,
        conn: Downstream,
        route: Route,
        method: bytes,
        target: bytes,
        head: bytes,
        decision: Decision,
        *,
        keep_alive: bool,
        version: str,
        req_chunked: bool,
        has_body: bool,
        upgrade: bool,
        expect_continue: bool = False,
    ) -> None:
        """`expect_continue`: the client may wait for `100 Continue` before its body (the proxy sends
        it when the exchange is at the front of the queue; Expect itself is never forwarded)."""
        super().__init__(
            conn.host,
            route,
            decision,
            method=method,
            target=target,
            protocol=f"HTTP/{version}",
            peer=conn.peer,
        )
        self.conn = conn
        self.is_head = method == b"HEAD"
        self.head = head
        self.keep_alive = keep_alive
        self.version = version
        self.req_chunked = req_chunked
        self.has_body = has_body
        self.upgrade = upgrade
        # Decided at its first flush: only the exchange at the front of the queue is flushed, after
        # the whole read was parsed, so a body that came with the head is seen first.
        self.continue_owed = expect_continue
        self.pending: list[bytes] = []  # request bytes waiting for an upstream connection
        self.held: list[bytes] = []  # bytes after an upgrade request, waiting for a 101
        self.req_done = False
        self.upstream: Upstream | None = None
        self.response_started = False
        self.resp_framing = Framing.LENGTH
        self.down_chunked = False
        self.upstream_keep_alive = False
        self.close_downstream = False
        self.tunnel = False
        self.retried = False
        self._up_out: list[bytes] = []
        self._down_out: list[bytes] = []

    # Upstream side ------------------------------------------------------------------------------
    def attach(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.upstream_address = upstream.peer
        upstream.exchange = self
        self._up_out.append(self.head)
        if self.pending:
            self._up_out += self._unbuffer(self.pending)
            self.pending = []
        self.start_response_timer()

    def _buffer(self, into: list[bytes], data: bytes) -> None:
        into.append(data)
        self.conn.pending_bytes += len(data)
        self.conn.maybe_pause()

    def _unbuffer(self, buffered: list[bytes]) -> list[bytes]:
        self.conn.pending_bytes -= sum(map(len, buffered))
        self.conn.maybe_resume()
        return buffered

    def flush_upstream(self) -> None:
        if self.continue_owed:
            self.continue_owed = False
            # Only to a client still waiting: no body byte read yet, no answer started.
            if (
                not self.request_size
                and not self.req_done
                and not self.response_started
                and not self.conn.closed
            ):
                self.conn.send(CONTINUE)
        if self._up_out and self.upstream is not None:
            out = self._up_out
            self._up_out = []
            self.upstream.send(out[0] if len(out) == 1 else b"".join(out))

    def flush_downstream(self) -> None:
        if self._down_out:
            out = self._down_out
            self._down_out = []
            if not self.conn.closed:
                self.conn.send(out[0] if len(out) == 1 else b"".join(out))

    # Request body (from the client's parser) ----------------------------------------------------
    def _to_upstream(self, data: bytes) -> None:
        if self.upstream is not None:
            self._up_out.append(data)
        else:
            self._buffer(self.pending, data)

    def on_request_body(self, data: bytes) -> None:
        self.request_size += len(data)
        self._to_upstream(chunk(data) if self.req_chunked else data)

    def on_request_complete(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.req_done = True
        if self.req_chunked:
            self._to_upstream(last_chunk(trailers))

    def on_downstream_tunnel_data(self, data: bytes) -> None:
        """Bytes after an upgrade request: held until the upstream agrees (101), never sent before.

        Sent early, a declined upgrade would leave them on a pooled connection to be read as requests."""
        if not self.finished:  # the span ended at the upgrade: what the tunnel carries is not its size
            self.request_size += len(data)
        if self.tunnel:
            self._to_upstream(data)
        else:
            self._buffer(self.held, data)

    # Response (from the upstream connection) ----------------------------------------------------
    def on_response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool, version: str
    ) -> None:
        if self.finished:
            return
        reason = reason or errors.reason(status)
        if 100 <= status < 200 and status != 101:
            self._down_out.append(informational(status, reason, headers))
            return
        self.cancel_timer()
        self.status = status
        self.response_started = True
        # Pooled again only if the upstream surely read the whole request (see the module docstring):
        # not after an early answer, nor after a body a back-end may ignore.
        self.upstream_keep_alive = (
            keep_alive and self.req_done and not (self.has_body and self.method in MAY_IGNORE_BODY)
        )
        close = self.upgrade or not self.keep_alive or self.host.draining
        head = ResponseHead(
            status, reason, headers, is_head=self.is_head, client_version=self.version, close=close
        )
        self.resp_framing = head.framing
        self.down_chunked = head.down_chunked
        self.close_downstream = head.close
        self._down_out.append(head.head)

    def on_response_body(self, data: bytes) -> None:
        if self.finished:
            return
        self.response_size += len(data)
        self._down_out.append(chunk(data) if self.down_chunked else data)

    def on_response_complete(self, trailers: list[tuple[bytes, bytes]]) -> None:
        if self.finished:
            return
        if self.down_chunked:
            self._down_out.append(last_chunk(trailers))
        self.flush_downstream()
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            if self.upstream_keep_alive and self.req_done and self.resp_framing is not Framing.CLOSE:
                upstream.release()
            else:
                upstream.close()
        if not self.req_done:
            self.close_downstream = True  # the rest of the request body would be read as a new request
        self.done()

    def on_upstream_upgraded(self, rest: bytes) -> None:
        """The upstream switched protocols: both sides become a byte tunnel; the span ends here."""
        if self.finished or self.upstream is None:
            return
        self.flush_downstream()
        self.tunnel = True
        self.conn.tunnel = self
        if self.held:
            self._up_out += self._unbuffer(self.held)
            self.held = []
        if rest:
            self.on_tunnel_data(rest)
        self.flush_upstream()
        self.record()

    def on_tunnel_data(self, data: bytes) -> None:
        if not self.finished:  # `rest`, read with the 101, is the upgrade's; later tunnel bytes are not
            self.response_size += len(data)
        self.conn.send(data)

    def on_tunnel_eof(self) -> bool:
        return self.conn.send_eof()

    def on_upstream_lost(self, exc: Exception | None) -> None:
        if self.tunnel:
            self.upstream = None
            self.conn.close()
            return
        if self.finished:
            return
        upstream, self.upstream = self.upstream, None
        if not self.response_started:
            self.cancel_timer()
            # A pooled connection the peer closed while idle must not cost the request: retry once
            # on a fresh connection when nothing of the response arrived and the request is replayable.
            if (
                upstream is not None
                and upstream.reused
                and not upstream.got_response_bytes
                and not self.has_body
                and not self.retried
            ):
                self.retried = True
                self.connect()
                return
            self.local_flag(errors.UPSTREAM_RESET)
        elif self.resp_framing is Framing.CLOSE:
            self.on_response_complete([])  # the close is the end of an unframed body
        else:
            self._cut(errors.UPSTREAM_RESET)

    def on_upstream_protocol_error(self, detail: str) -> None:
        if self.finished:
            return
        self.upstream = None
        if not self.response_started:
            self.cancel_timer()
            self.local_flag(errors.UPSTREAM_PROTOCOL_ERROR)
        else:
            self._cut(errors.UPSTREAM_PROTOCOL_ERROR)

    def _cut(self, flag: str) -> None:
        """The response broke after its head: the client must not mistake a cut body for a whole one."""
        self.flush_downstream()
        self.flags = flag
        self.close_downstream = True
        self.conn.abort()
        self.done()

    def on_timeout(self) -> None:
        if self.response_started:
            return
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None
        self.local_flag(errors.UPSTREAM_TIMEOUT)

    # Back-pressure between the two sides ---------------------------------------------------------
    def pause_downstream(self) -> None:
        self.conn.pause_for_upstream()

    def resume_downstream(self) -> None:
        self.conn.resume_for_upstream()

    # Endings ------------------------------------------------------------------------------------
    def local_flag(self, flag: str) -> None:
        """Answer with Envoy's local reply for `flag` (or cut the response if it already started)."""
        if self.finished:
            return
        if flag == errors.UPSTREAM_CONNECT_FAILURE and self.endpoint is not None:
            self.upstream_address = self.endpoint.key  # the endpoint tried, for the span and the log
        self.flags = flag
        if self.response_started:
            self.close_downstream = True
            self.conn.abort()
        else:
            close = not self.req_done or not self.keep_alive or self.upgrade or self.host.draining
            extra = [(b"x-request-id", self.decision.request_id.encode())]
            self.status, reply, body_size = errors.flag_reply(
                flag, close=close, extra=extra, head_request=self.is_head
            )
            self.response_size += body_size
            self.close_downstream = close
            self.flush_downstream()  # a 100 Continue may have been relayed already
            self.conn.send(reply)
            self.response_started = True
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None
        self.done()

    def on_downstream_lost(self) -> None:
        if self.tunnel:
            if self.upstream is not None:
                self.upstream.close()
                self.upstream = None
            return
        if self.finished:
            return
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None
        self.flags = errors.DOWNSTREAM_CLOSED
        self.record()

    def done(self) -> None:
        self.record()
        self.conn.exchange_finished(self)
