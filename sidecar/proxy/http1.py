"""The HTTP/1.1 exchange: downstream request parsing (strict), head rewriting, tracing, streaming both ways.

One `DownstreamConnection` per client connection parses requests with llhttp (httptools). Each request
becomes an `Exchange`; exchanges run one at a time in arrival order (pipelined ones wait, their bodies
buffered up to a bound, then the client is paused). Bodies are streamed with back-pressure: a peer whose
write buffer is full pauses reading on the other side. No per-request task: pooled connections are taken
synchronously, new ones are awaited through a future callback.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import httptools

from sidecar.proxy import errors
from sidecar.proxy.upstream import UpstreamConnection
from sidecar.tracing.decide import TRACE_HEADER_NAMES, Decision

if TYPE_CHECKING:
    from sidecar.proxy.listener import HttpListener
    from sidecar.proxy.route import Route

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
)
_CRLF = b"\r\n"
_UPSTREAM_FAILURES = frozenset(
    {
        errors.UPSTREAM_CONNECT_FAILURE,
        errors.UPSTREAM_RESET,
        errors.UPSTREAM_TIMEOUT,
        errors.UPSTREAM_PROTOCOL_ERROR,
    }
)


class HeadError(Exception):
    """A request head we refuse: carries the status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _trailer_block(trailers: list[tuple[bytes, bytes]]) -> bytes:
    return b"0\r\n" + b"".join(n + b": " + v + _CRLF for n, v in trailers) + _CRLF


def _connection_tokens(headers: list[tuple[bytes, bytes, bytes]]) -> set[bytes]:
    tokens: set[bytes] = set()
    for lname, _, value in headers:
        if lname == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


class Exchange:
    """One request/response through the proxy, from the request head to the end of the response."""

    __slots__ = (
        "_down_out",
        "_timer",
        "_up_out",
        "close_downstream",
        "conn",
        "decision",
        "down_chunked",
        "endpoint",
        "finished",
        "flags",
        "has_body",
        "head",
        "is_head",
        "keep_alive",
        "method",
        "pending",
        "pending_size",
        "req_chunked",
        "req_done",
        "request_size",
        "resp_framing",
        "response_size",
        "response_started",
        "retried",
        "route",
        "started",
        "status",
        "target",
        "tunnel",
        "upgrade",
        "upstream",
        "upstream_address",
        "upstream_keep_alive",
        "version",
    )

    def __init__(
        self,
        conn: DownstreamConnection,
        route: Route,
        method: bytes,
        head: bytes,
        decision: Decision,
        *,
        keep_alive: bool,
        version: str,
        req_chunked: bool,
        has_body: bool,
        upgrade: bool,
        target: bytes,
    ) -> None:
        self.conn = conn
        self.route = route
        self.method = method
        self.is_head = method == b"HEAD"
        self.head = head
        self.decision = decision
        self.keep_alive = keep_alive
        self.version = version
        self.req_chunked = req_chunked
        self.has_body = has_body
        self.upgrade = upgrade
        self.target = target
        self.started = time.perf_counter()
        self.pending: list[bytes] = []  # framed request bytes waiting for an upstream connection
        self.pending_size = 0
        self.req_done = False
        self.request_size = 0
        self.response_size = 0
        self.upstream: UpstreamConnection | None = None
        self.endpoint: tuple[str, int] | None = None
        self.upstream_address: str | None = None
        self.status = 0
        self.flags = errors.NO_FLAGS
        self.response_started = False
        self.resp_framing = "length"  # "length" | "chunked" | "none" | "close"
        self.down_chunked = False
        self.upstream_keep_alive = False
        self.close_downstream = False
        self.finished = False
        self.tunnel = False
        self.retried = False
        self._timer: asyncio.TimerHandle | None = None
        # Writes are collected per read callback and flushed once: one syscall per direction
        # instead of one per head, body chunk and terminator.
        self._up_out: list[bytes] = []
        self._down_out: list[bytes] = []

    # Start --------------------------------------------------------------------------------------
    def begin(self) -> None:
        endpoint = self.route.next_endpoint()
        if endpoint is None:
            self.local_flag(errors.NO_HEALTHY_UPSTREAM)
            return
        self.endpoint = endpoint
        stats = self.conn.listener.stats
        stats.count_endpoint(stats.upstream_rq, f"{endpoint[0]}:{endpoint[1]}")
        conn = self.conn.listener.pool.acquire(endpoint)
        if conn is not None:
            self.attach(conn)
        else:
            self._connect()

    def _connect(self) -> None:
        assert self.endpoint is not None
        future = asyncio.ensure_future(self.conn.listener.pool.connect(self.endpoint))
        future.add_done_callback(self._connected)

    def _connected(self, future: asyncio.Future[UpstreamConnection]) -> None:
        if future.cancelled():
            exc: BaseException | None = asyncio.CancelledError()
        else:
            exc = future.exception()
        if self.finished:
            if exc is None:
                future.result().close()
            return
        stats = self.conn.listener.stats
        assert self.endpoint is not None
        key = f"{self.endpoint[0]}:{self.endpoint[1]}"
        if exc is not None:
            stats.count_endpoint(stats.upstream_cx_connect_fail, key)
            self.local_flag(errors.UPSTREAM_CONNECT_FAILURE)
            return
        stats.count_endpoint(stats.upstream_cx_total, key)
        self.attach(future.result())
        self.flush_upstream()

    def flush_upstream(self) -> None:
        if self._up_out and self.upstream is not None:
            out = self._up_out
            self._up_out = []
            self.upstream.write(out[0] if len(out) == 1 else b"".join(out))

    def flush_downstream(self) -> None:
        if self._down_out:
            out = self._down_out
            self._down_out = []
            if not self.conn.closed:
                self.conn.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def attach(self, upstream: UpstreamConnection) -> None:
        self.upstream = upstream
        self.upstream_address = upstream.peer
        upstream.exchange = self
        self._up_out.append(self.head)
        self._up_out += self.pending
        if self.pending_size:
            self.pending = []
            self.conn.pending_bytes -= self.pending_size
            self.pending_size = 0
            self.conn.maybe_resume()
        timeout = self.conn.listener.settings.upstream_timeout
        self._timer = self.conn.listener.loop.call_later(timeout, self._on_timeout)

    # Request body (from the downstream parser) ---------------------------------------------------
    def _to_upstream(self, data: bytes) -> None:
        if self.upstream is not None:
            self._up_out.append(data)
        else:
            self.pending.append(data)
            self.pending_size += len(data)
            self.conn.pending_bytes += len(data)
            self.conn.maybe_pause()

    def on_request_body(self, data: bytes) -> None:
        self.request_size += len(data)
        self._to_upstream(_chunk(data) if self.req_chunked else data)

    def on_request_complete(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.req_done = True
        if self.req_chunked:
            self._to_upstream(_trailer_block(trailers))

    def on_downstream_tunnel_data(self, data: bytes) -> None:
        self.request_size += len(data)
        self._to_upstream(data)

    # Response (from the upstream connection) ----------------------------------------------------
    def on_response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool, version: str
    ) -> None:
        if self.finished:
            return
        if 100 <= status < 200 and status != 101:
            # Informational (100 Continue, 103 Early Hints): relayed, the final response follows.
            lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason or errors.reason(status))]
            lines += [n + b": " + v + _CRLF for n, v in headers]
            self._down_out.append(b"".join(lines) + _CRLF)
            return
        self._cancel_timer()
        self.status = status
        self.response_started = True
        self.upstream_keep_alive = keep_alive
        triples = [(n.lower(), n, v) for n, v in headers]
        tokens = _connection_tokens(triples)
        chunked = False
        has_length = False
        out = [b"HTTP/1.1 %d %s\r\n" % (status, reason or errors.reason(status))]
        for lname, name, value in triples:
            if lname == b"transfer-encoding":
                chunked = chunked or value.lower().rstrip().endswith(b"chunked")
                continue
            if lname in HOP_BY_HOP or lname in tokens:
                continue
            if lname == b"content-length":
                has_length = True
            out.append(name + b": " + value + _CRLF)
        if status == 101:
            self.resp_framing = "none"
            out.append(b"connection: upgrade\r\n")
            for lname, name, value in triples:
                if lname == b"upgrade":
                    out.append(name + b": " + value + _CRLF)
        else:
            if self.is_head or status in (204, 304):
                self.resp_framing = "none"
            elif chunked:
                self.resp_framing = "chunked"
            elif has_length:
                self.resp_framing = "length"
            else:
                self.resp_framing = "close"
            if self.resp_framing in ("chunked", "close"):
                if self.version == "1.1":
                    self.down_chunked = True
                    out.append(b"transfer-encoding: chunked\r\n")
                else:
                    self.close_downstream = True  # an HTTP/1.0 client learns the end from the close
            if self.upgrade or not self.keep_alive or self.conn.listener.draining:
                self.close_downstream = True
            if self.close_downstream:
                out.append(b"connection: close\r\n")
        out.append(_CRLF)
        self._down_out.append(b"".join(out))

    def on_response_body(self, data: bytes) -> None:
        if self.finished:
            return
        self.response_size += len(data)
        self._down_out.append(_chunk(data) if self.down_chunked else data)

    def on_response_complete(self, trailers: list[tuple[bytes, bytes]]) -> None:
        if self.finished:
            return
        if self.down_chunked:
            self._down_out.append(_trailer_block(trailers))
        self.flush_downstream()
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            reusable = self.upstream_keep_alive and self.req_done and self.resp_framing != "close"
            if reusable:
                self.conn.listener.pool.release(upstream)
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
        if rest:
            self.on_tunnel_data(rest)
        self.flush_upstream()
        self.record()

    def on_tunnel_data(self, data: bytes) -> None:
        self.response_size += len(data)
        self.conn.transport.write(data)

    def on_tunnel_eof(self) -> bool:
        if self.conn.transport.can_write_eof() and not self.conn.closed:
            self.conn.transport.write_eof()
            return True
        return False

    def on_upstream_lost(self, exc: Exception | None) -> None:
        if self.tunnel:
            self.upstream = None
            self.conn.transport.close()
            return
        if self.finished:
            return
        upstream, self.upstream = self.upstream, None
        if not self.response_started:
            self._cancel_timer()
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
                self._connect()
                return
            self.local_flag(errors.UPSTREAM_RESET)
        elif self.resp_framing == "close":
            self.on_response_complete([])  # the close is the end of an unframed body
        else:
            self.flush_downstream()
            self.flags = errors.UPSTREAM_RESET
            self.close_downstream = True
            self.conn.transport.abort()  # the client must not mistake a cut body for a whole one
            self.done()

    def on_upstream_protocol_error(self, detail: str) -> None:
        if self.finished:
            return
        self.upstream = None
        if not self.response_started:
            self._cancel_timer()
            self.local_flag(errors.UPSTREAM_PROTOCOL_ERROR)
        else:
            self.flush_downstream()
            self.flags = errors.UPSTREAM_PROTOCOL_ERROR
            self.close_downstream = True
            self.conn.transport.abort()
            self.done()

    def _on_timeout(self) -> None:
        self._timer = None
        if self.finished or self.response_started:
            return
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None
        self.local_flag(errors.UPSTREAM_TIMEOUT)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

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
        self.flags = flag
        if self.response_started:
            self.close_downstream = True
            self.conn.transport.abort()
        else:
            close = not self.req_done or not self.keep_alive or self.upgrade or self.conn.listener.draining
            extra = [(b"x-request-id", self.decision.request_id.encode())]
            self.status, reply = errors.flag_reply(flag, close=close, extra=extra)
            self.close_downstream = close
            self.flush_downstream()  # a 100 Continue may have been relayed already
            self.conn.transport.write(reply)
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
        self._cancel_timer()
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None
        self.flags = errors.DOWNSTREAM_CLOSED
        self.record()

    def done(self) -> None:
        self._cancel_timer()
        self.record()
        self.conn.exchange_finished(self)

    def record(self) -> None:
        """Stats, span and access log, once."""
        if self.finished:
            return
        self.finished = True
        listener = self.conn.listener
        seconds = time.perf_counter() - self.started
        stats = listener.stats
        stats.record(self.status, seconds, self.request_size, self.response_size, self.flags)
        if self.endpoint is not None and (self.status >= 500 or self.flags in _UPSTREAM_FAILURES):
            stats.count_endpoint(stats.upstream_rq_error, f"{self.endpoint[0]}:{self.endpoint[1]}")
        route = self.route
        span = self.decision.span
        if span is not None and route.sink is not None:
            route.sink(
                route.tracer.finish(
                    span,
                    status=self.status,
                    request_size=self.request_size,
                    response_size=self.response_size,
                    response_flags=self.flags,
                    upstream_address=self.upstream_address,
                )
            )
        if route.access_log is not None:
            route.access_log(self.access_record(seconds))

    def access_record(self, seconds: float) -> dict[str, Any]:
        return {
            "start_time": time.time() - seconds,
            "direction": self.route.direction,
            "listener": self.conn.listener.name,
            "method": self.method.decode("latin-1"),
            "path": self.target.decode("latin-1"),
            "protocol": f"HTTP/{self.version}",
            "status": self.status,
            "response_flags": self.flags,
            "duration_ms": round(seconds * 1000, 3),
            "bytes_received": self.request_size,
            "bytes_sent": self.response_size,
            "upstream_cluster": self.route.cluster,
            "upstream_host": self.upstream_address,
            "downstream_remote_address": self.conn.peer,
            "x_request_id": self.decision.request_id,
            "trace_id": self.decision.trace_id or None,
            "span_id": self.decision.span_id or None,
            "sampled": self.decision.sampled,
        }


class DownstreamConnection(asyncio.Protocol):
    """One client connection: strict request parsing, the queue of exchanges, flow control."""

    def __init__(self, listener: HttpListener) -> None:
        self.listener = listener
        self.settings = listener.settings
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.peer = "-"
        self.queue: deque[Exchange] = deque()
        self.current: Exchange | None = None  # the exchange whose request is being parsed
        self.tunnel: Exchange | None = None
        self.pending_bytes = 0
        self.closed = False
        self.last_activity = 0.0
        self.head_started: float | None = None
        self._paused_pending = False
        self._paused_upstream = False
        self._upgrade_pending = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._trailers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._in_body = False
        self._refused = False
        self._refusal: bytes | None = None

    # asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass it
        transport = self.transport
        transport.set_write_buffer_limits(high=self.settings.buffer_high)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}" if ":" not in str(peer[0]) else f"[{peer[0]}]:{peer[1]}"
        self.last_activity = self.listener.loop.time()
        self.listener.connection_opened(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.listener.loop.time()
        if self.tunnel is not None:
            self.tunnel.on_downstream_tunnel_data(data)
            self.tunnel.flush_upstream()
            return
        if self._refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            self._upgraded(data[offset:])
        except HeadError as exc:
            self.refuse(exc.status, exc.detail)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__ or exc.__cause__
            if isinstance(cause, HeadError):
                self.refuse(cause.status, cause.detail)
            else:
                self.refuse(400, "invalid request")
        except httptools.HttpParserError as exc:
            self.refuse(400, str(exc) or "invalid request")
        if self.queue and not self._refused:
            self.queue[0].flush_upstream()

    def eof_received(self) -> bool | None:
        if self.tunnel is not None and self.tunnel.upstream is not None:
            transport = self.tunnel.upstream.transport
            if transport is not None and transport.can_write_eof():
                transport.write_eof()
                return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for exchange in list(self.queue):
            exchange.on_downstream_lost()
        if self.tunnel is not None:
            self.tunnel.on_downstream_lost()
        self.queue.clear()
        self.listener.connection_closed(self)

    def pause_writing(self) -> None:
        upstream = self.queue[0].upstream if self.queue else (self.tunnel.upstream if self.tunnel else None)
        if upstream is not None:
            upstream.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.queue[0].upstream if self.queue else (self.tunnel.upstream if self.tunnel else None)
        if upstream is not None:
            upstream.resume_reading()

    # Flow control -------------------------------------------------------------------------------
    def maybe_pause(self) -> None:
        if not self._paused_pending and self.pending_bytes > self.settings.buffer_high:
            self._paused_pending = True
            self.transport.pause_reading()

    def maybe_resume(self) -> None:
        if self._paused_pending and self.pending_bytes <= self.settings.buffer_high:
            self._paused_pending = False
            if not self._paused_upstream and not self.closed:
                self.transport.resume_reading()

    def pause_for_upstream(self) -> None:
        if not self._paused_upstream:
            self._paused_upstream = True
            self.transport.pause_reading()

    def resume_for_upstream(self) -> None:
        if self._paused_upstream:
            self._paused_upstream = False
            if not self._paused_pending and not self.closed:
                self.transport.resume_reading()

    # Errors and endings -------------------------------------------------------------------------
    def refuse(self, status: int, detail: str) -> None:
        """A malformed request: answer once, forward nothing more of it, close."""
        if self._refused:
            return
        self._refused = True
        stats = self.listener.stats
        stats.local_replies[errors.DOWNSTREAM_PROTOCOL_ERROR] = (
            stats.local_replies.get(errors.DOWNSTREAM_PROTOCOL_ERROR, 0) + 1
        )
        reply = errors.bad_request(status, detail)
        current = self.current
        if current is not None and not current.req_done and not current.finished:
            # A body went bad after its head was forwarded: cut the upstream request, which must not
            # pass for a complete one, and answer if the client is still owed this response.
            current.flags = errors.DOWNSTREAM_PROTOCOL_ERROR
            current.close_downstream = True
            if current.upstream is not None:
                current.upstream.abort()
                current.upstream = None
            if self.queue and self.queue[0] is current and not current.response_started:
                current.status = status
                current.response_started = True
                self.transport.write(reply)
            current.done()
            self.transport.close()
            return
        stats.requests[f"{status // 100}xx"] += 1
        if self.queue:
            self._refusal = reply  # answered in order, after the responses already owed
        else:
            self.transport.write(reply)
            self.transport.close()

    def exchange_finished(self, exchange: Exchange) -> None:
        if self.queue and self.queue[0] is exchange:
            self.queue.popleft()
        if exchange.tunnel:
            return
        if self._refusal is not None and not self.queue and not self.closed:
            self.transport.write(self._refusal)
            exchange.close_downstream = True
        if exchange.close_downstream or self.closed:
            self.transport.close()
            self.closed = True
            for rest in self.queue:
                rest.on_downstream_lost()
            self.queue.clear()
            return
        self.last_activity = self.listener.loop.time()
        if self.queue:
            self.queue[0].begin()
            self.queue[0].flush_upstream()

    def idle(self) -> bool:
        return not self.queue and self.head_started is None and self.tunnel is None

    def close_if_idle(self) -> bool:
        if self.idle() and not self.closed:
            self.closed = True
            self.transport.close()
            return True
        return False

    # httptools callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.head_started = self.listener.loop.time()
        self._url = b""
        self._headers = []
        self._trailers = []
        self._head_bytes = 0
        self._in_body = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self.settings.max_header_bytes:
            raise HeadError(431, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_body:
            self._trailers.append((name, value))
            return
        self._headers.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        if len(self._headers) > self.settings.max_headers:
            raise HeadError(431, f"more than {self.settings.max_headers} headers")
        if self._head_bytes > self.settings.max_header_bytes:
            raise HeadError(431, f"headers larger than {self.settings.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._in_body = True
        self.head_started = None
        parser = self.parser
        method = parser.get_method()
        if method == b"CONNECT":
            raise HeadError(405, "CONNECT is not supported")
        version = parser.get_http_version()
        route = self.listener.route
        triples = [(n.lower(), n, v) for n, v in self._headers]
        tokens = _connection_tokens(triples)
        upgrade = parser.should_upgrade()
        trace_in: dict[bytes, bytes] = {}
        authority = b""
        user_agent: bytes | None = None
        has_xfp = False
        chunked = False
        has_host = False
        content_length: bytes | None = None
        for lname, _, value in triples:
            if lname in TRACE_HEADER_NAMES:
                trace_in.setdefault(lname, value)
            elif lname == b"host":
                if has_host and value != authority:
                    raise HeadError(400, "multiple Host headers")
                has_host = True
                authority = value
            elif lname == b"user-agent":
                user_agent = value
            elif lname == b"x-forwarded-proto":
                has_xfp = True
            elif lname == b"transfer-encoding":
                chunked = chunked or value.lower().rstrip().endswith(b"chunked")
            elif lname == b"content-length":
                if content_length is not None and content_length != value:
                    raise HeadError(400, "conflicting Content-Length")
                content_length = value
        if version == "1.1" and not has_host:
            raise HeadError(400, "missing Host header")
        decision = route.tracer.start(
            route.kind,  # type: ignore[arg-type]
            trace_in,
            method=method.decode("latin-1"),
            authority=authority.decode("latin-1"),
            path=self._url.decode("latin-1"),
            scheme="http",
            protocol=f"HTTP/{version}",
            user_agent=user_agent.decode("latin-1") if user_agent is not None else None,
            peer_address=self.peer,
            upstream_cluster=route.cluster,
            remote_service=route.remote_service,
        )
        remove = decision.remove
        out = [method, b" ", self._url, b" HTTP/1.1\r\n"]
        for lname, name, value in triples:
            if lname in HOP_BY_HOP or lname in remove or lname in tokens:
                if upgrade and lname == b"upgrade":
                    out += (name, b": ", value, _CRLF)
                continue
            out += (name, b": ", value, _CRLF)
        for name, value in decision.headers:
            out += (name, b": ", value, _CRLF)
        if not has_xfp:
            out.append(b"x-forwarded-proto: http\r\n")
        if upgrade:
            out.append(b"connection: upgrade\r\n")
        if chunked:
            out.append(b"transfer-encoding: chunked\r\n")
        out.append(_CRLF)
        has_body = chunked or (content_length is not None and content_length.strip() not in (b"0", b""))
        exchange = Exchange(
            self,
            route,
            method,
            b"".join(out),
            decision,
            keep_alive=parser.should_keep_alive(),
            version=version,
            req_chunked=chunked,
            has_body=has_body,
            upgrade=upgrade,
            target=self._url,
        )
        self.current = exchange
        self.queue.append(exchange)
        if len(self.queue) == 1:
            exchange.begin()

    def on_body(self, body: bytes) -> None:
        if self.current is not None:
            self.current.on_request_body(body)

    def on_message_complete(self) -> None:
        current = self.current
        if current is not None:
            current.on_request_complete(self._trailers)
        self._in_body = False

    def _upgraded(self, rest: bytes) -> None:
        """The parser stopped at an upgrade request: later bytes belong to the tunnel (or nobody)."""
        exchange = self.current
        if exchange is None or exchange.finished:
            self.transport.close()
            return
        self.tunnel = exchange
        if rest:
            exchange.on_downstream_tunnel_data(rest)
