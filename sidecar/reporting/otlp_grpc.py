"""OTLP/gRPC: unary `TraceService/Export` calls over one h2c connection (prior knowledge), with `h2`.

The proxy's own HTTP/2 client forwards streams between peers and lives in a layer above this one, so
the reporter has this small client: one connection to `host:port`, opened on first use and again after
it is lost, one stream per batch (the reporter keeps at most four in flight), flow control honoured
for bodies larger than the peer's window.

How a call ends, for the reporter (transport.py):
- grpc-status 0: sent; the response's `partial_success.rejected_spans` are counted as rejected;
- UNAVAILABLE and DEADLINE_EXCEEDED from the server, and RESOURCE_EXHAUSTED when its
  `grpc-status-details-bin` carries a `google.rpc.RetryInfo` (the OTLP specification's rule): RetryLater,
  after RetryInfo's delay when given; an HTTP 429, 502, 503 or 504 before any gRPC status likewise;
- any other status: Rejected;
- the connection lost, the stream reset or the call timed out before the whole request was written,
  or a GOAWAY or REFUSED_STREAM saying the stream was not processed: NotSent;
- the same after the whole request was written: NoResponse (the server may have stored the spans).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Mapping
from typing import cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from sidecar.reporting.transport import NoResponse, NotSent, Rejected, RetryLater
from sidecar.tracing.encode_otlp import decode_partial_success
from sidecar.tracing.protowire import read_fields

PATH = b"/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
OK, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE = 0, 4, 8, 14
_HTTP_RETRYABLE = frozenset({b"429", b"502", b"503", b"504"})
MAX_RETRY_DELAY = 60.0


def retry_delay(details_bin: bytes | None) -> float | None:
    """RetryInfo.retry_delay in seconds from a `grpc-status-details-bin` value (base64 of a
    google.rpc.Status); None when absent or unreadable."""
    if not details_bin:
        return None
    try:
        status = base64.b64decode(details_bin + b"=" * (-len(details_bin) % 4))
        for number, _, detail in read_fields(status):
            if number != 3 or not isinstance(detail, bytes):
                continue
            any_fields = {n: v for n, _, v in read_fields(detail)}
            type_url, value = any_fields.get(1), any_fields.get(2)
            if type_url != RETRY_INFO.encode() or not isinstance(value, bytes):
                continue
            for n, _, duration in read_fields(value):
                if n == 1 and isinstance(duration, bytes):
                    parts = {k: v for k, _, v in read_fields(duration)}
                    seconds, nanos = parts.get(1, 0), parts.get(2, 0)
                    if isinstance(seconds, int) and isinstance(nanos, int):
                        return min(MAX_RETRY_DELAY, max(0.0, seconds + nanos / 1e9))
            return 0.0  # a RetryInfo without a delay: retry, with the reporter's backoff
    except ValueError:  # binascii.Error is a ValueError
        return None
    return None


def call_outcome(headers: Mapping[bytes, bytes], message: bytes) -> tuple[int, str]:
    """Settle a finished call from its response headers and trailers (merged) and its message; raise
    RetryLater or Rejected for a failed one."""
    http_status = headers.get(b":status", b"")
    raw = headers.get(b"grpc-status")
    if raw is None:
        reason = f"HTTP {http_status.decode('latin-1')} without grpc-status"
        if http_status in _HTTP_RETRYABLE:
            raise RetryLater(reason)
        raise Rejected(reason)
    text = headers.get(b"grpc-message", b"").decode("utf-8", "replace")
    code = int(raw) if raw.isdigit() else -1
    if code == OK:
        if len(message) >= 5 and message[0] == 0:
            return decode_partial_success(message[5:])
        return 0, ""
    reason = f"grpc-status {code} {text!r}"
    if code in (UNAVAILABLE, DEADLINE_EXCEEDED):
        raise RetryLater(reason, retry_delay(headers.get(b"grpc-status-details-bin")))
    if code == RESOURCE_EXHAUSTED:
        delay = retry_delay(headers.get(b"grpc-status-details-bin"))
        if delay is not None:
            raise RetryLater(reason, delay or None)
    raise Rejected(reason)


class _Call:
    __slots__ = ("done", "headers", "message", "sent_all", "stream_id")

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.headers: dict[bytes, bytes] = {}
        self.message = bytearray()
        self.sent_all = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done.add_done_callback(_retrieve)  # a call given up on must not log "never retrieved"


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class _Connection(asyncio.Protocol):
    """One client HTTP/2 connection: h2's state machine fed from the socket."""

    def __init__(self) -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, _Call] = {}
        self.window = asyncio.Event()  # set when the peer opens flow-control window
        self.usable = True  # False once the peer sent GOAWAY or the connection ended

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self.h2.initiate_connection()
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail_all(f"HTTP/2 protocol error from the collector: {exc}")
            self.flush()
            self.close()
            return
        for event in events:
            self._event(event)
        self.flush()

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            call = self.calls.get(event.stream_id)
            if call is not None:
                call.headers.update((bytes(k), bytes(v)) for k, v in event.headers)
        elif isinstance(event, h2.events.DataReceived):
            call = self.calls.get(event.stream_id)
            if call is not None:
                call.message += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            call = self.calls.pop(event.stream_id, None)
            if call is not None and not call.done.done():
                call.done.set_result(None)
            if not self.usable and not self.calls:  # after a GOAWAY, the last call closes the connection
                self.close()
        elif isinstance(event, h2.events.StreamReset):
            call = self.calls.pop(event.stream_id, None)
            if call is not None and not call.done.done():
                refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                reason = f"stream reset by the collector ({event.error_code!r})"
                safe = refused or not call.sent_all
                call.done.set_exception(NotSent(reason) if safe else NoResponse(reason))
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.usable = False
            last = event.last_stream_id if event.last_stream_id is not None else 0
            reason = f"GOAWAY from the collector ({event.error_code!r})"
            for stream_id in [s for s in self.calls if s > last]:  # never processed: safe to send again
                call = self.calls.pop(stream_id)
                if not call.done.done():
                    call.done.set_exception(NotSent(reason))
            if not self.calls:
                self.close()

    def _fail_all(self, reason: str) -> None:
        self.usable = False
        for call in self.calls.values():
            if not call.done.done():
                call.done.set_exception(NoResponse(reason) if call.sent_all else NotSent(reason))
        self.calls.clear()
        self.window.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(f"connection to the collector lost{f': {exc}' if exc else ''}")

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()


class GrpcTransport:
    """OTLP/gRPC to `host:port` (h2c)."""

    def __init__(self, target: str, timeout: float) -> None:
        host, sep, port = target.rpartition(":")
        if not sep or not port.isdigit() or "/" in target:
            raise ValueError(f"an OTLP/gRPC endpoint is host:port, got {target!r}")
        self._target = target
        self._host = host.strip("[]")
        self._port = int(port)
        self._timeout = timeout
        self._conn: _Connection | None = None
        self._connecting = asyncio.Lock()
        self._headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", PATH),
            (b":authority", target.encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"user-agent", b"kuma-trace-sidecar"),
        ]

    @property
    def target(self) -> str:
        return self._target

    @property
    def protocol(self) -> str:
        return "otlp_grpc"

    async def start(self) -> None:
        """Nothing until the first batch: a collector that is down at start costs no error."""

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(h2.exceptions.H2Error):
                conn.h2.close_connection()
                conn.flush()
            conn.close()

    async def _connection(self) -> _Connection:
        async with self._connecting:
            conn = self._conn
            if conn is None or not conn.usable:
                loop = asyncio.get_running_loop()
                try:
                    _, conn = await loop.create_connection(_Connection, self._host, self._port)
                except OSError as exc:
                    raise NotSent(f"{type(exc).__name__}: {exc}") from None
                self._conn = conn
            return conn

    async def send(self, body: bytes, spans: int) -> tuple[int, str]:
        call: _Call | None = None
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self._timeout):
                conn = await self._connection()
                call = _Call(conn.h2.get_next_available_stream_id())
                conn.calls[call.stream_id] = call
                await self._write(conn, call, body)
                await call.done
        except TimeoutError:
            if conn is not None and call is not None:
                self._cancel(conn, call.stream_id)
                if call.sent_all:
                    raise NoResponse(f"no answer within {self._timeout:g}s") from None
            raise NotSent(f"the request was not written within {self._timeout:g}s") from None
        except h2.exceptions.H2Error as exc:
            if conn is not None:
                conn.close()
            if call is not None and call.sent_all:
                raise NoResponse(f"HTTP/2: {exc!r}") from None
            raise NotSent(f"HTTP/2: {exc!r}") from None
        return call_outcome(call.headers, bytes(call.message))

    async def _write(self, conn: _Connection, call: _Call, body: bytes) -> None:
        """Write the whole request on the call's stream, honouring flow control."""
        stream_id = call.stream_id
        timeout_ms = max(1, int(self._timeout * 1000))
        conn.h2.send_headers(stream_id, [*self._headers, (b"grpc-timeout", b"%dm" % timeout_ms)])
        conn.flush()
        payload = memoryview(b"\0" + len(body).to_bytes(4, "big") + body)
        pos = 0
        while pos < len(payload):
            if call.done.done():  # reset or connection lost while writing: raises NotSent
                call.done.result()
                raise NotSent("the stream ended before the request was written")
            window = min(conn.h2.local_flow_control_window(stream_id), conn.h2.max_outbound_frame_size)
            if window <= 0:
                conn.window.clear()
                await conn.window.wait()
                continue
            conn.h2.send_data(stream_id, bytes(payload[pos : pos + window]))
            pos += window
            conn.flush()
        conn.h2.end_stream(stream_id)
        conn.flush()
        call.sent_all = True

    @staticmethod
    def _cancel(conn: _Connection, stream_id: int) -> None:
        conn.calls.pop(stream_id, None)
        with contextlib.suppress(h2.exceptions.H2Error):
            conn.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            conn.flush()
