"""A small HTTP/1.1 client for span POSTs to a plain-http backend: keep-alive connections to one
origin, a Content-Length body, answers parsed by httptools (llhttp, the parser the proxy uses).

Why not aiohttp, which the reporter still uses for https:// (TLS) and for URLs with credentials: the
reporter runs on the proxy's own loop, and at saturation with 100 % sampling aiohttp's request
machinery (a task, timers, request and response objects per POST, over several turns of the loop)
cost the proxy about 3 us of CPU per traced request, some 10 % of its throughput
(docs/performance.md). This client does one write and one parse per POST.

It knows exactly whether a request reached the backend whole: `Failed.handed` is true once every byte
of the head and body has left the process (the transport's write buffer emptied: its high-water mark
is 0, so asyncio calls `pause_writing` whenever a byte waits and `resume_writing` once none does).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final, cast

import httptools

KEEPALIVE: Final = 15.0  # seconds an idle connection is reused; an older one is closed, not risked
MAX_HEAD: Final = 64 * 1024  # bytes of an answer's status line and headers
MAX_BODY: Final = 1024 * 1024  # bytes of an answer's body kept (the rest is read and dropped)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes  # its first MAX_BODY bytes
    retry_after: str | None


class Failed(Exception):
    """No answer; the message says why, `handed` whether the whole request had left the process."""

    def __init__(self, reason: str, handed: bool) -> None:
        super().__init__(reason)
        self.handed = handed


class _Stop(Exception):
    """Raised in a parser callback to stop `feed_data` (httptools wraps it in HttpParserError)."""


class _Request:
    """How far one request went, and its answer."""

    __slots__ = ("answer", "drained", "handed")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.handed = False
        self.answer: asyncio.Future[Answer] = loop.create_future()
        self.drained: asyncio.Future[None] | None = None  # set while bytes wait in the write buffer


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time (no pipelining)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False  # the last answer was whole and allows keep-alive
        self.idle_since = 0.0
        self._request: _Request | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._clear()

    def _clear(self) -> None:
        self._head_bytes = 0  # of the fields parsed
        self._unparsed = 0  # bytes read while the head was not yet whole
        self._stop: str | None = None  # why a callback stopped the parser
        self._head_done = False
        # Its Content-Length and Transfer-Encoding fields, lowercase; none: it ends with the connection.
        self._framing: list[bytes] = []
        self._retry_after: str | None = None
        self._body: list[bytes] = []
        self._body_size = 0

    async def send(self, head: bytes, body: bytes, request: _Request) -> Answer:
        assert self.transport is not None and self._request is None
        self._request = request
        self.reusable = False
        self.transport.writelines((head, body))  # pause_writing, at once, if a byte is left over
        if request.drained is not None:
            await request.drained  # the buffer emptied, or the answer (or the end) came first
        if not request.answer.done():
            request.handed = True
        return await request.answer

    def close(self) -> None:
        """Close, abandoning the request under way (its sender was cancelled or has failed)."""
        self._request = None
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an instance of asyncio.Transport, hence no isinstance).
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=0)

    def pause_writing(self) -> None:
        request = self._request
        if request is not None and request.drained is None:
            request.drained = self._loop.create_future()

    def resume_writing(self) -> None:
        request = self._request
        if request is not None and request.drained is not None and not request.drained.done():
            request.drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._request is None:  # bytes nobody asked for: the connection is not trusted again
            self.close()
            return
        head_done = self._head_done
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("the backend switched protocols")
        except httptools.HttpParserError as exc:
            self._fail(self._stop or f"malformed answer: {exc}")
        else:
            # A head still unfinished after MAX_HEAD bytes (httptools holds a header line whole
            # before its callback, so this bounds what it buffers).
            if not head_done and not self._head_done and self._request is not None:
                self._unparsed += len(data)
                if self._unparsed > MAX_HEAD:
                    self._fail(f"answer head larger than {MAX_HEAD} bytes")

    def eof_received(self) -> bool:
        return False  # close: a backend that stops sending is done with this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._request is None:
            return
        # An answer without a length ends with the connection (RFC 9112 6.3). One that has no body
        # (1xx, 204, 304) has completed already, whatever its headers say.
        if self._head_done and not self._framing:
            self._complete()
        else:
            self._fail(f"{type(exc).__name__}: {exc}" if exc else "connection closed before the answer")

    # httptools callbacks --------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._request is None:  # a second answer after the whole first one, in the same read
            self.close()

    def on_status(self, reason: bytes) -> None:
        self._count(len(reason))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        lname = name.lower()
        if lname == b"content-length" or lname == b"transfer-encoding":
            self._framing.append(lname + b":" + value.strip().lower())
        elif lname == b"retry-after":
            self._retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._head_done = True
        status = self._parser.get_status_code()
        if status < 200 and any(f != b"content-length:0" for f in self._framing):
            # A 1xx never has a body: one that declares it is read two ways (as the proxy's rule 10).
            self._stop = f"a {status} answer that declares a body"
            raise _Stop

    def on_body(self, body: bytes) -> None:
        if self._body_size < MAX_BODY:
            self._body.append(body[: MAX_BODY - self._body_size])
        self._body_size += len(body)

    def on_message_complete(self) -> None:
        if self._request is None:
            return
        if self._parser.get_status_code() < 200:  # 100 Continue, 103 Early Hints: wait for the answer
            self._clear()
            return
        # Kept only after an HTTP/1.1 answer framed so that no parser could read it two ways: one
        # Content-Length, or chunked alone (HTTP/1.0 keep-alive and other codings: closed instead).
        framing = self._framing
        plain = not framing or (
            len(framing) == 1
            and (framing[0] == b"transfer-encoding:chunked" or framing[0].startswith(b"content-length:"))
        )
        parser = self._parser
        self.reusable = plain and parser.should_keep_alive() and parser.get_http_version() == "1.1"
        self._complete()

    # ----------------------------------------------------------------------------------------------

    def _count(self, size: int) -> None:
        self._head_bytes += size + 4
        if self._head_bytes > MAX_HEAD:
            self._stop = f"answer head larger than {MAX_HEAD} bytes"
            raise _Stop

    def _complete(self) -> None:
        request, self._request = self._request, None
        assert request is not None
        if request.drained is not None and not request.drained.done():
            self.reusable = False  # answered before the body was all sent: the rest must not follow
            request.drained.set_result(None)
        if not request.answer.done():
            body = b"".join(self._body)
            request.answer.set_result(Answer(self._parser.get_status_code(), body, self._retry_after))
        self._clear()

    def _fail(self, reason: str) -> None:
        request, self._request = self._request, None
        self.close()
        if request is None:
            return
        if request.drained is not None and not request.drained.done():
            request.drained.set_result(None)
        if not request.answer.done():
            request.answer.set_exception(Failed(reason, request.handed))


class HttpClient:
    """Requests to one plain-http origin over keep-alive connections, at most `limit` of them idle."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self._host = host
        self._port = port
        self._limit = limit
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()

    async def request(self, head: bytes, body: bytes, timeout: float) -> Answer:
        """One request: its Answer, or Failed, which tells whether it had left whole (a timeout too)."""
        request = _Request(asyncio.get_running_loop())
        try:
            async with asyncio.timeout(timeout):
                return await self._send(head, body, request)
        except TimeoutError:
            raise Failed(f"TimeoutError: no answer within {timeout} s", request.handed) from None

    async def _send(self, head: bytes, body: bytes, request: _Request) -> Answer:
        conn = self._reuse()
        if conn is None:
            loop = asyncio.get_running_loop()
            try:
                _, conn = await loop.create_connection(lambda: _Connection(loop), self._host, self._port)
            except OSError as exc:
                raise Failed(f"{type(exc).__name__}: {exc}", False) from None
        self._busy.add(conn)
        try:
            answer = await conn.send(head, body, request)
        except BaseException:  # failed, or cancelled (the timeout): the connection is not reused
            conn.close()
            raise
        finally:
            self._busy.discard(conn)
        if conn.reusable and not conn.closed and len(self._idle) < self._limit:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    def _reuse(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE:
                return conn
            conn.close()
        return None

    def close(self) -> None:
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        self._busy.clear()
