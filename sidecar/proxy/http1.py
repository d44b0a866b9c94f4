"""An HTTP/1.1 client connection: strict request parsing (llhttp via httptools), the queue of exchanges,
flow control, refusals. A connection that opens with the HTTP/2 preface is handed to the HTTP/2 codec.

No per-request task: pooled upstream connections are taken synchronously, new ones are awaited through a
future callback. The head rules live in `head.py`; one request's life in `h1_exchange.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Final, cast

import httptools

from sidecar.proxy import errors
from sidecar.proxy.h1_exchange import Downstream, H1Exchange
from sidecar.proxy.head import HeadError, RequestHead, UnderscoreError, check_version, render_h1_request

log: Final = logging.getLogger("sidecar.proxy")

if TYPE_CHECKING:
    from sidecar.proxy.host import ConnectionHost

H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_PROTOCOL: Final = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}


def new_request_parser(protocol: object) -> httptools.HttpRequestParser:
    """llhttp in strict mode, with three leniencies RFC 9112 asks for or allows; each is safe because
    the proxy re-frames what it forwards:
    - any HTTP/1.x version (`check_version` then treats 1.2+ as 1.1 and refuses the rest);
    - bytes after a request that closes the connection are ignored, not an error (RFC 9112 9.6);
    - whitespace between a chunk size and its extension or line end (`5 ;ext`)."""
    parser = httptools.HttpRequestParser(protocol)
    parser.set_dangerous_leniencies(
        lenient_version=True, lenient_data_after_close=True, lenient_spaces_after_chunk_size=True
    )
    return parser


def peer_name(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    return "-"


class DownstreamConnection(asyncio.Protocol, Downstream):
    """One client connection: strict request parsing, the queue of exchanges, flow control."""

    def __init__(self, host: ConnectionHost) -> None:
        self.host = host
        self.outbox = host.outbox
        self._out: list[bytes] = []  # written at the end of the loop turn (outbox.py)
        self.settings = host.settings
        self.parser = new_request_parser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.peer = "-"
        self.queue: deque[H1Exchange] = deque()
        self.current: H1Exchange | None = None  # the exchange whose request is being parsed
        self.tunnel: H1Exchange | None = None
        self.pending_bytes = 0
        self.closed = False
        self.last_activity = 0.0
        self.head_started: float | None = None
        self._sniffing = True  # until the first bytes show whether this is HTTP/2's preface
        self._preface = b""
        self._paused_pending = False
        self._paused_upstream = False
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
        self.transport.set_write_buffer_limits(high=self.settings.buffer_high)
        self.peer = peer_name(transport)
        self.last_activity = self.host.loop.time()
        self.host.connection_opened(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.host.loop.time()
        if self._sniffing and self._sniff(data):
            return
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
        # Even after a refusal: the requests before the bad bytes are owed their answers first.
        if self.queue:
            self.queue[0].flush_upstream()

    def _sniff(self, data: bytes) -> bool:
        """True when `data` was taken by the HTTP/2 check (the preface, or a prefix of it so far)."""
        seen = self._preface + data
        if len(seen) < len(H2_PREFACE) and H2_PREFACE.startswith(seen):
            self._preface = seen
            return True
        self._sniffing = False
        self._preface = b""
        if seen.startswith(H2_PREFACE):
            self.host.switch_to_h2(self, seen)
            return True
        if len(seen) > len(data):
            self.data_received(seen)  # a partial preface that turned out to be something else
            return True
        return False

    def eof_received(self) -> bool | None:
        if self.tunnel is not None and self.tunnel.upstream is not None and self.tunnel.upstream.send_eof():
            return True  # half-closed: the other way stays open
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for exchange in list(self.queue):
            exchange.on_downstream_lost()
        if self.tunnel is not None:
            self.tunnel.on_downstream_lost()
        self.queue.clear()
        self.host.connection_closed(self)

    def pause_writing(self) -> None:
        upstream = self.queue[0].upstream if self.queue else (self.tunnel.upstream if self.tunnel else None)
        if upstream is not None:
            upstream.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.queue[0].upstream if self.queue else (self.tunnel.upstream if self.tunnel else None)
        if upstream is not None:
            upstream.resume_reading()

    # Writes: queued, sent at the end of the loop turn (outbox.py) -------------------------------
    def send_out(self) -> None:
        out = self._out
        if out:
            self._out = []
            if not self.closed and not self.transport.is_closing():
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def send_eof(self) -> bool:
        if self.closed or not self.transport.can_write_eof():
            return False
        self.send_out()
        self.transport.write_eof()
        return True

    def close(self) -> None:
        self.send_out()
        self.transport.close()

    def abort(self) -> None:
        self.send_out()  # what the client was sent so far, then the reset
        self.transport.abort()

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
        self.host.stats.local_reply(errors.DOWNSTREAM_PROTOCOL_ERROR)
        log.debug("%s: local reply %d DPE to %s: %s", self.host.name, status, self.peer, detail)
        reply = errors.bad_request(status, detail)
        current = self.current
        if current is not None and not current.req_done and not current.finished and self.queue:
            if self.queue[0] is not current:
                # Its head parsed but it never started: earlier requests are owed their answers
                # first, then this one gets the refusal and the connection closes.
                self.queue.remove(current)
                current.flags = errors.DOWNSTREAM_PROTOCOL_ERROR
                current.status = status
                current.record()
                self._refusal = reply
                return
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
                self.send(reply)
            current.done()
            self.close()
            return
        self.host.stats.requests[f"{status // 100}xx"] += 1
        if self.queue:
            self._refusal = reply  # answered in order, after the responses already owed
        else:
            self.send(reply)
            self.close()

    def exchange_finished(self, exchange: H1Exchange) -> None:
        if self.queue and self.queue[0] is exchange:
            self.queue.popleft()
        if exchange.tunnel:
            return
        if self._refusal is not None and not self.queue and not self.closed:
            self.send(self._refusal)
            exchange.close_downstream = True
        if exchange.close_downstream or self.closed:
            self.close()
            self.closed = True
            for rest in self.queue:
                rest.on_downstream_lost()
            self.queue.clear()
            return
        self.last_activity = self.host.loop.time()
        if self.queue:
            self.queue[0].begin()
            self.queue[0].flush_upstream()

    def idle(self) -> bool:
        return not self.queue and self.head_started is None and self.tunnel is None

    def close_if_idle(self) -> bool:
        if self.idle() and not self.closed:
            self.close()
            self.closed = True
            return True
        return False

    # httptools callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        # The parser runs only inside data_received, which has just read the loop's clock.
        self.head_started = self.last_activity
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
        if version != "1.1" and version != "1.0":
            version = check_version(version)
        route = self.host.route
        try:
            head = RequestHead(
                self._headers, version, route.tracer.header_names, self.settings.headers_with_underscores
            )
        except UnderscoreError:
            self.host.stats.requests_rejected_with_underscores_in_headers += 1
            raise
        if head.dropped_underscores:
            self.host.stats.dropped_headers_with_underscores += head.dropped_underscores
        upgrade = parser.should_upgrade()
        decision = route.tracer.start(
            route.kind,
            head.trace_in,
            method=method,
            authority=head.authority,
            path=self._url,
            scheme="http",
            protocol=_PROTOCOL[version],
            user_agent=head.user_agent,
            peer_address=self.peer,
            upstream_cluster=route.cluster,
            remote_service=route.remote_service,
        )
        forwarded = render_h1_request(
            method,
            self._url,
            head,
            decision.remove,
            decision.headers,
            upgrade=upgrade,
            default_host=route.default_host,
        )
        exchange = H1Exchange(
            self,
            route,
            method,
            self._url,
            forwarded,
            decision,
            # HTTP/1.0 with Transfer-Encoding is faulty framing: close after the response (RFC 9112 6.1).
            keep_alive=parser.should_keep_alive() and not (version == "1.0" and head.codings),
            version=version,
            req_chunked=head.chunked,
            has_body=head.has_body,
            upgrade=upgrade,
            expect_continue=head.expect_continue,
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
            self.close()
            return
        self.tunnel = exchange
        if rest:
            exchange.on_downstream_tunnel_data(rest)
