"""libnghttp2 (the C codec inside nghttpx and curl) behind the part of h2's `H2Connection` interface the
proxy drives, through ctypes (the declarations are in `h2_nghttp2_lib`). The events and exceptions are
h2's own classes, so `H2Peer` and the two connection classes run unchanged on either codec.
`bench/h2_codec.py` measured the codec work of one proxied gRPC call at 45 µs here against h2's 196 µs.

What differs from h2, and how it is made to match:
- nghttp2 pulls DATA through a provider instead of taking frames: data handed over waits in a per-stream
  buffer until the next `data_to_send()`, and `local_flow_control_window` subtracts what waits there, so
  the proxy never hands over more than the peer's windows allow (its acks stay exact).
- Received DATA is acknowledged only when the proxy says so (`no_auto_window_update` and
  `nghttp2_session_consume`), as with h2.
- A header list over the proxy's limit stops decoding at once (an HPACK bomb never expands in memory);
  a stream beyond the concurrency limit ends the connection as it does with h2; a connection error
  nghttp2 handles alone (GOAWAY queued, all further input ignored) is raised as h2's exception for it,
  found from the session's state after every read, not only from `on_invalid_frame_recv`; after the
  client's own GOAWAY, from the GOAWAY with an error code nghttp2 wrote.
- Every stream nghttp2 resets on its own (a malformed request or response, WINDOW_UPDATE 0, DATA past
  a window, frames on a half-closed stream: the MadeYouReset shapes) is reported as a `StreamReset` with
  `remote_reset=False`, in the events of the read that caused it; one reset while sending (a data
  provider that failed) waits in `late_events` for the owner.
- A reset asked for right after the end of a stream is sent after that end (nghttp2 sends RST_STREAM
  ahead of queued DATA), so a response that ends a request early still arrives whole.
- A client's HEADERS on a stream id below one it opened is a connection error (RFC 9113 5.1.1), unless
  the stream was reset lately: trailers the client sent before it saw our reset are ignored, as h2 does.
- An exception inside a C callback never leaves C reading a stale return value: each trampoline
  catches it and returns nghttp2's failure code; the stream is reset (header and data callbacks) or the
  connection fails, and the exception is logged once by the call that ran the callback.
"""

from __future__ import annotations

import ctypes
import logging
import weakref
from collections.abc import Callable
from typing import Any, cast

import h2.errors
import h2.events
import h2.exceptions

from sidecar.proxy import h2_nghttp2_callbacks as callbacks
from sidecar.proxy import h2_nghttp2_lib as ng
from sidecar.proxy.h2_errors import CodecError, CodecFailed
from sidecar.proxy.head import Headers

log = logging.getLogger("sidecar.proxy")
_CODES = h2.errors.ErrorCodes
_RECENT_RESETS = 1024  # streams reset lately whose late trailers are ignored
# A stream nghttp2 resets alone for what the peer sent, by library error: the metric kind.
_STREAM_ERROR_KINDS = {ng.ERR_HTTP_HEADER: "bad_headers", ng.ERR_HTTP_MESSAGING: "bad_message"}

_connections = callbacks.connections  # user_data key -> weak reference to its NgConnection
_next_key = 1
# Loaded and every symbol resolved at import: a missing one is known before any connection.
_library, _load_error = callbacks.load()


def available() -> bool:
    """Whether libnghttp2 loaded here with every function the codec calls."""
    return _library is not None


def load_error() -> str | None:
    return _load_error


class _Out:
    """What the proxy handed over for one stream and nghttp2 has not pulled yet."""

    __slots__ = ("buf", "deferred", "done", "eof", "reset_after", "trailers")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.eof = False
        self.done = False  # the end of the stream was handed to nghttp2
        self.deferred = False  # nghttp2 asked and got nothing: resume it when there is data
        self.trailers: Headers | None = None
        self.reset_after: int | None = None


class _RemoteSettings:
    """The peer's settings, read through the connection while it lives (a weak reference: no cycle,
    and no read of a session freed under it; a dead connection allows no streams)."""

    def __init__(self, conn: NgConnection) -> None:
        self._conn = weakref.ref(conn)

    @property
    def max_concurrent_streams(self) -> int:
        conn = self._conn()
        return 0 if conn is None else conn.remote_setting(ng.SETTINGS_MAX_CONCURRENT_STREAMS)


def _nva(headers: Headers) -> Any:
    """A C array of nghttp2_nv (nghttp2 copies the names and values at submit)."""
    return (ng.Nv * len(headers))(*[(n, v, len(n), len(v), 0) for n, v in headers])  # type: ignore[misc]


class NgConnection:
    """One HTTP/2 connection on libnghttp2, either side, with the h2 methods the proxy uses."""

    def __init__(
        self, *, client_side: bool, settings: dict[int, int], max_header_bytes: int, max_resets: int = 200
    ) -> None:
        global _next_key
        assert _library is not None, "libnghttp2 did not load (see available())"
        self.lib = lib = _library.lib
        self._provider = ctypes.byref(_library.provider)  # the one data provider: reads self._out
        self.client_side = client_side
        self.settings = settings
        self.max_header_bytes = max_header_bytes
        self.max_streams = settings.get(ng.SETTINGS_MAX_CONCURRENT_STREAMS, 1 << 31)
        self.key = _next_key
        _next_key += 1
        _connections[self.key] = cast(Callable[[], NgConnection | None], weakref.ref(self))
        option = ctypes.c_void_p()
        ng.check(lib.nghttp2_option_new(ctypes.byref(option)), "nghttp2_option_new")
        lib.nghttp2_option_set_no_auto_window_update(option, 1)
        lib.nghttp2_option_set_no_closed_streams(option, 1)
        # nghttp2's own rapid-reset limiter is a backstop behind the proxy's budget (which also counts
        # the resets nghttp2 sends): twice the budget, refilled at the budget's rate.
        lib.nghttp2_option_set_stream_reset_rate_limit(option, 2 * max_resets, max(1, max_resets // 10))
        self.session = ctypes.c_void_p()
        new = lib.nghttp2_session_client_new2 if client_side else lib.nghttp2_session_server_new2
        callbacks = _library.client_callbacks if client_side else _library.server_callbacks
        rv = new(ctypes.byref(self.session), callbacks, ctypes.c_void_p(self.key), option)
        lib.nghttp2_option_del(option)
        if rv != 0 or not self.session.value:
            _connections.pop(self.key, None)
            raise MemoryError(f"nghttp2 session: {rv}")
        weakref.finalize(self, _free, lib, self.session.value, self.key)
        self.remote_settings = _RemoteSettings(self)
        self.highest_inbound_stream_id = 0
        self._out: dict[int, _Out] = {}
        self._buffered = 0  # bytes in every _Out.buf: they count against the connection window
        self._responded: set[int] = set()  # streams whose first header block was sent (or received)
        self._heads: set[int] = set()  # streams whose first header block arrived
        self._reset_told: set[int] = set()  # open streams whose reset the proxy knows of
        self._recent_resets: dict[int, None] = {}  # the last streams reset (oldest first), bounded
        self._events: list[h2.events.Event] | None = None
        self.late_events: list[h2.events.Event] = []  # events from a send, for the owner to take
        self.callback_errors: list[BaseException] = []
        self._block: Headers = []
        self._block_size = 0
        self._failure: h2.exceptions.ProtocolError | None = None
        self._lib_errors: list[int] = []
        self._closing = False  # close_connection was asked for: the session stops reading, as it should
        self._peer_goaway = False  # the peer sent GOAWAY: with no stream left, nghttp2 stops reading too
        self.stream_errors: list[str] = []  # streams nghttp2 reset for what they sent; the owner counts them
        self._sent = ctypes.c_void_p()
        self._pending = b""  # sent by nghttp2 right after a read
        self._dirty = True  # something may be queued: nghttp2 only queues frames when called

    def remote_setting(self, setting: int) -> int:
        return int(self.lib.nghttp2_session_get_remote_settings(self.session, setting))

    # Connection -------------------------------------------------------------------------------------
    def initiate_connection(self) -> None:
        self._dirty = True
        items = [(k, v) for k, v in self.settings.items() if self.client_side or k != 2]  # push: clients
        entries = (ng.SettingsEntry * len(items))(*[ng.SettingsEntry(k, v) for k, v in items])
        self._check(self.lib.nghttp2_submit_settings(self.session, 0, entries, len(items)), "submit_settings")

    def increment_flow_control_window(self, increment: int) -> None:
        self._dirty = True
        rv = self.lib.nghttp2_submit_window_update(self.session, 0, 0, increment)
        self._check(rv, "submit_window_update")

    def get_next_available_stream_id(self) -> int:
        """As h2: NoAvailableStreamIDError once the ids are spent (the connection must be replaced)."""
        sid = int(self.lib.nghttp2_session_get_next_stream_id(self.session))
        if sid > ng.MAX_STREAM_ID:
            raise h2.exceptions.NoAvailableStreamIDError("no stream id left on this connection")
        return sid

    @property
    def max_outbound_frame_size(self) -> int:
        return self.remote_setting(ng.SETTINGS_MAX_FRAME_SIZE)

    def close_connection(self, error_code: int = 0) -> None:
        self._dirty = True
        self._closing = True
        self._check(self.lib.nghttp2_session_terminate_session(self.session, error_code), "terminate_session")

    def data_to_send(self) -> bytes:
        if not self._dirty:
            return b""
        self._dirty = False
        sent = self._mem_send()
        if self._pending:
            sent, self._pending = self._pending + sent, b""
        if self.callback_errors:
            self._callback_failed(fatal=self._failure is not None)
        if self._failure is not None:  # fatal while sending: the owner closes the connection
            failure, self._failure = self._failure, None
            assert isinstance(failure, CodecError)
            self.late_events.append(CodecFailed(failure))
        return sent

    def _mem_send(self) -> bytes:
        lib, session, sent = self.lib, self.session, self._sent
        chunks = []
        while (n := lib.nghttp2_session_mem_send(session, ctypes.byref(sent))) > 0:
            chunks.append(ctypes.string_at(sent.value or 0, n))
        if n < 0 and self._failure is None:
            self._failure = CodecError("codec_error", f"nghttp2 send failed: {n}", _CODES.INTERNAL_ERROR)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _check(self, rv: int, what: str) -> None:
        if rv < 0:
            if rv <= ng.ERR_FATAL:
                raise CodecError("codec_error", f"nghttp2 {what}: {rv}", _CODES.INTERNAL_ERROR)
            raise h2.exceptions.ProtocolError(f"nghttp2 {what}: {rv}")

    def _callback_failed(self, *, fatal: bool) -> None:
        errors, self.callback_errors = self.callback_errors, []
        log.error(
            "HTTP/2 codec callback failed (%s): %r",
            "connection closed" if fatal else "stream reset",
            errors[0],
            exc_info=errors[0],
        )
        if fatal and not (isinstance(self._failure, CodecError) and self._failure.kind != "codec_error"):
            failure = CodecError(
                "callback_error", f"codec callback failed: {errors[0]!r}", _CODES.INTERNAL_ERROR
            )
            failure.__cause__ = errors[0]
            self._failure = failure

    # Receiving -------------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[h2.events.Event]:
        self._dirty = True  # acknowledgements, resets, resumed data
        self._events = events = list[h2.events.Event]()
        try:
            n = self.lib.nghttp2_session_mem_recv(self.session, data, len(data))
            if n >= 0 and self._failure is None and self.lib.nghttp2_session_want_write(self.session):
                # What nghttp2 queued in answer goes out now: a stream it reset closes here, while
                # its StreamReset can still join this read's events.
                self._pending += self._mem_send()
        finally:
            self._events = None
        if self.callback_errors:
            self._callback_failed(fatal=n < 0 or self._failure is not None)
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        lib_errors, self._lib_errors = self._lib_errors, []
        if n < 0:
            raise _lib_exception(n, lib_errors)
        # A connection error nghttp2 handled alone: GOAWAY queued (sent above), input ignored. After the
        # peer's GOAWAY a session also stops reading when its last stream ends, so there the GOAWAY with
        # an error code nghttp2 wrote is what tells the two apart.
        if (
            not self._closing
            and not self.lib.nghttp2_session_want_read(self.session)
            and (not self._peer_goaway or _has_goaway_error(self._pending))
        ):
            raise _lib_exception(0, lib_errors)
        for lib_error in lib_errors:  # stream errors: nghttp2 reset those streams
            self.stream_errors.append(_STREAM_ERROR_KINDS.get(lib_error, "stream_error"))
        return events

    def begin_frame(self, hd: ng.FrameHd) -> int:
        """A client's HEADERS on a stream id below one it opened, not an open stream's trailers nor a
        stream reset lately, is a connection error (RFC 9113 5.1.1); nghttp2 would skip it."""
        if hd.type != ng.HEADERS:
            return 0
        sid = hd.stream_id
        if sid < self.highest_inbound_stream_id and sid not in self._heads and sid not in self._recent_resets:
            too_low = h2.exceptions.StreamIDTooLowError(sid, self.highest_inbound_stream_id)
            too_low.error_code = _CODES.PROTOCOL_ERROR
            self._failure = too_low
            return ng.ERR_PAUSE
        return 0

    def begin_headers(self, stream_id: int) -> int:
        self._block = []
        self._block_size = 0
        if not self.client_side and stream_id > self.highest_inbound_stream_id and stream_id & 1:
            self.highest_inbound_stream_id = stream_id
        return 0

    def header(self, name: bytes, value: bytes) -> int:
        self._block_size += len(name) + len(value) + 32  # RFC 9113 6.5.2's size
        if self._block_size > self.max_header_bytes:
            msg = "header list over the limit"
            self._failure = CodecError("header_list_too_large", msg, _CODES.ENHANCE_YOUR_CALM)
            return ng.ERR_PAUSE
        self._block.append((name, value))
        return 0

    def frame_received(self, frame: Any) -> int:
        hd = frame.contents
        kind, sid, events = hd.type, hd.stream_id, self._events
        assert events is not None
        if kind == ng.DATA:
            if hd.flags & ng.END_STREAM:
                events.append(h2.events.StreamEnded(stream_id=sid))
        elif kind == ng.HEADERS:
            self._headers_received(sid, hd.flags & ng.END_STREAM, events)
        elif kind == ng.RST_STREAM:
            self._reset_told.add(sid)
            self._drop(sid)
            code = ctypes.cast(frame, ctypes.POINTER(ng.RstStream)).contents.error_code
            events.append(h2.events.StreamReset(stream_id=sid, error_code=_code(code)))
        elif kind == ng.WINDOW_UPDATE:
            delta = ctypes.cast(frame, ctypes.POINTER(ng.WindowUpdate)).contents.increment
            events.append(h2.events.WindowUpdated(stream_id=sid, delta=delta))
        elif kind == ng.SETTINGS:
            if not hd.flags & ng.ACK:
                events.append(h2.events.RemoteSettingsChanged())
        elif kind == ng.PING:
            if not hd.flags & ng.ACK:
                events.append(h2.events.PingReceived(ping_data=b""))
        elif kind == ng.GOAWAY:
            self._peer_goaway = True
            goaway = ctypes.cast(frame, ctypes.POINTER(ng.GoAway)).contents
            event = h2.events.ConnectionTerminated()
            event.error_code = _code(goaway.error_code)
            event.last_stream_id = goaway.last_stream_id
            events.append(event)
        return 0

    def _headers_received(self, sid: int, ended: int, events: list[h2.events.Event]) -> None:
        headers, self._block = self._block, []
        event: h2.events.RequestReceived | h2.events.ResponseReceived | h2.events.TrailersReceived
        if sid in self._heads:
            event = h2.events.TrailersReceived(stream_id=sid, headers=headers)
        elif not self.client_side:
            self._heads.add(sid)
            event = h2.events.RequestReceived(stream_id=sid, headers=headers)
        elif headers and headers[0][0] == b":status" and headers[0][1][:1] == b"1":
            events.append(h2.events.InformationalResponseReceived(stream_id=sid, headers=headers))
            return
        else:
            self._heads.add(sid)
            event = h2.events.ResponseReceived(stream_id=sid, headers=headers)
        events.append(event)
        if ended:
            event.stream_ended = end = h2.events.StreamEnded(stream_id=sid)
            events.append(end)

    def data_received(self, stream_id: int, data: bytes) -> int:
        assert self._events is not None
        event = h2.events.DataReceived(stream_id=stream_id, data=data, flow_controlled_length=len(data))
        self._events.append(event)
        return 0

    def stream_closed(self, stream_id: int, error_code: int) -> int:
        """nghttp2 closed a stream; one it reset on its own (whatever the reason) is reported as reset
        by us (`remote_reset=False`), in this read's events or, while sending, in `late_events`."""
        self._drop(stream_id)
        self._heads.discard(stream_id)
        self._responded.discard(stream_id)
        told = stream_id in self._reset_told
        if error_code or told:  # reset, by either side (ours may say NO_ERROR): late frames are ignored
            recent = self._recent_resets
            recent[stream_id] = None
            if len(recent) > _RECENT_RESETS:
                del recent[next(iter(recent))]
            if not told:
                reset = h2.events.StreamReset(
                    stream_id=stream_id, error_code=_code(error_code), remote_reset=False
                )
                (self._events if self._events is not None else self.late_events).append(reset)
        self._reset_told.discard(stream_id)
        return 0

    def invalid_frame(self, hd: ng.FrameHd, lib_error: int) -> int:
        # A new stream beyond our SETTINGS_MAX_CONCURRENT_STREAMS: nghttp2 refuses it before our SETTINGS
        # are acknowledged and calls it a protocol error after; either way a connection error, as h2
        # makes it, counted as too many streams.
        new_stream = not self.client_side and hd.type == ng.HEADERS and hd.stream_id not in self._heads
        if new_stream and (
            lib_error == ng.ERR_REFUSED_STREAM
            or (lib_error == ng.ERR_PROTO and len(self._heads) >= self.max_streams)
        ):
            msg = "too many concurrent streams"
            self._failure = CodecError("too_many_streams", msg, _CODES.PROTOCOL_ERROR)
            return ng.ERR_CALLBACK_FAILURE
        self._lib_errors.append(lib_error)
        return 0

    # Sending ---------------------------------------------------------------------------------------
    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool = False) -> None:
        self._dirty = True
        lib = self.lib
        nva = _nva(headers)
        if stream_id not in self._responded:
            self._responded.add(stream_id)
            provider = None
            if not end_stream:
                self._out[stream_id] = _Out()
                provider = self._provider
            if self.client_side:
                rv = lib.nghttp2_submit_request(self.session, None, nva, len(headers), provider, None)
                ok = rv == stream_id
            else:
                # nghttp2 takes a response for a stream already gone and drops it later, unseen: its
                # buffer would never be released, so ask first (a closed stream has no window).
                ok = lib.nghttp2_session_get_stream_remote_window_size(self.session, stream_id) >= 0
                ok = (
                    ok
                    and lib.nghttp2_submit_response(self.session, stream_id, nva, len(headers), provider) == 0
                )
            if not ok:
                self._out.pop(stream_id, None)
                self._responded.discard(stream_id)
                raise h2.exceptions.StreamClosedError(stream_id)
            return
        out = self._out.get(stream_id)
        if out is None or out.eof:
            raise h2.exceptions.StreamClosedError(stream_id)
        out.trailers = headers  # sent after the data, by read_data
        out.eof = True
        self._resume(stream_id, out)

    def send_data(self, stream_id: int, data: bytes | memoryview) -> None:
        out = self._out.get(stream_id)
        if out is None or out.eof:
            raise h2.exceptions.StreamClosedError(stream_id)
        out.buf += data
        self._buffered += len(data)
        self._resume(stream_id, out)

    def end_stream(self, stream_id: int) -> None:
        out = self._out.get(stream_id)
        if out is None or out.eof:
            raise h2.exceptions.StreamClosedError(stream_id)
        out.eof = True
        self._resume(stream_id, out)

    def _resume(self, stream_id: int, out: _Out) -> None:
        self._dirty = True
        if out.deferred:
            out.deferred = False
            self.lib.nghttp2_session_resume_data(self.session, stream_id)

    def local_flow_control_window(self, stream_id: int) -> int:
        lib = self.lib
        stream = lib.nghttp2_session_get_stream_remote_window_size(self.session, stream_id)
        out = self._out.get(stream_id)
        if stream < 0:
            if out is None:
                raise h2.exceptions.StreamClosedError(stream_id)
            # Submitted, its HEADERS not sent yet: nghttp2 opens the stream then, with this window.
            stream = self.remote_setting(ng.SETTINGS_INITIAL_WINDOW_SIZE)
        waiting = len(out.buf) if out is not None else 0
        connection = lib.nghttp2_session_get_remote_window_size(self.session) - self._buffered
        return int(min(stream - waiting, connection))

    def read_data(self, stream_id: int, buf: int, length: int, flags: Any) -> int:
        out = self._out.get(stream_id)
        if out is None:
            flags[0] = ng.DATA_FLAG_EOF
            return 0
        n = min(len(out.buf), length)
        if n:
            ctypes.memmove(buf, (ctypes.c_char * n).from_buffer(out.buf), n)
            del out.buf[:n]
            self._buffered -= n
        if not out.buf and out.eof:
            out.done = True
            if out.trailers is not None:
                flags[0] = ng.DATA_FLAG_EOF | ng.DATA_FLAG_NO_END_STREAM
                nva = _nva(out.trailers)
                rv = self.lib.nghttp2_submit_trailer(self.session, stream_id, nva, len(out.trailers))
                self._check(rv, "submit_trailer")
            else:
                flags[0] = ng.DATA_FLAG_EOF
            if out.reset_after is not None:
                self._reset_told.add(stream_id)
                rv = self.lib.nghttp2_submit_rst_stream(self.session, 0, stream_id, out.reset_after)
                self._check(rv, "submit_rst_stream")
            del self._out[stream_id]
            return n
        if not n:
            out.deferred = True
            return ng.ERR_DEFERRED
        return n

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        self._dirty = True
        out = self._out.get(stream_id)
        if out is not None and out.eof and not out.done:
            out.reset_after = error_code  # after the end already handed over (see the module doc)
            self._resume(stream_id, out)
            return
        self._drop(stream_id)
        if not self.lib.nghttp2_session_find_stream(self.session, stream_id):
            if stream_id not in self._responded:
                raise h2.exceptions.StreamClosedError(stream_id)  # nothing to reset, nothing to remember
            # Submitted, its HEADERS not sent yet: nghttp2 cancels them, the stream never opens.
            self._responded.discard(stream_id)
            rv = self.lib.nghttp2_submit_rst_stream(self.session, 0, stream_id, error_code)
            self._check(rv, "submit_rst_stream")
            return
        self._reset_told.add(stream_id)
        self._check(
            self.lib.nghttp2_submit_rst_stream(self.session, 0, stream_id, error_code), "submit_rst_stream"
        )

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        self._dirty = True
        if self.lib.nghttp2_session_consume(self.session, stream_id, acknowledged_size) != 0:
            raise h2.exceptions.ProtocolError("consume failed")

    def _drop(self, stream_id: int) -> None:
        out = self._out.pop(stream_id, None)
        if out is not None:
            self._buffered -= len(out.buf)

    def bookkeeping(self) -> dict[str, int]:
        """The sizes of the per-stream tables (they must follow the open streams, not their total)."""
        return {
            "out": len(self._out),
            "responded": len(self._responded),
            "heads": len(self._heads),
            "reset_told": len(self._reset_told),
            "recent_resets": len(self._recent_resets),
            "stream_errors": len(self.stream_errors),
            "late_events": len(self.late_events),
        }


def _free(lib: ctypes.CDLL, session: int | None, key: int) -> None:
    _connections.pop(key, None)
    if session:
        lib.nghttp2_session_del(ctypes.c_void_p(session))


def _code(value: int) -> h2.errors.ErrorCodes | int:
    try:
        return h2.errors.ErrorCodes(value)
    except ValueError:
        return value


def _has_goaway_error(out: bytes) -> bool:
    """Whether `out`, whole frames as nghttp2 wrote them, holds a GOAWAY with an error code."""
    pos, end = 0, len(out)
    while pos + 9 <= end:
        if out[pos + 3] == ng.GOAWAY and pos + 17 <= end and out[pos + 13 : pos + 17] != b"\x00\x00\x00\x00":
            return True
        pos += 9 + int.from_bytes(out[pos : pos + 3], "big")
    return False


# nghttp2's error -> the metric kind, the message, the GOAWAY code.
_LIB_ERRORS: dict[int, tuple[str, str, h2.errors.ErrorCodes]] = {
    ng.ERR_FLOW_CONTROL: ("flow_control", "window exceeded", _CODES.FLOW_CONTROL_ERROR),
    ng.ERR_TOO_MANY_CONTINUATIONS: ("continuation_flood", "continuation flood", _CODES.PROTOCOL_ERROR),
    ng.ERR_FLOODED: ("control_flood", "control frame flood", _CODES.ENHANCE_YOUR_CALM),
    ng.ERR_BAD_CLIENT_MAGIC: ("bad_preface", "invalid preamble", _CODES.PROTOCOL_ERROR),
    ng.ERR_HEADER_COMP: ("bad_headers", "header block not decodable", _CODES.COMPRESSION_ERROR),
    ng.ERR_FRAME_SIZE: ("frame_size", "frame size", _CODES.FRAME_SIZE_ERROR),
}


def _lib_exception(returned: int, lib_errors: list[int]) -> CodecError:
    """The connection error for what nghttp2 reported: mem_recv's fatal error, else the first error of
    the read that it knows, else a protocol error (it ended the session for a reason it did not say)."""
    for err in (returned, *lib_errors):
        if err in _LIB_ERRORS:
            kind, message, code = _LIB_ERRORS[err]
            return CodecError(kind, message, code)
    known = returned or (lib_errors[0] if lib_errors else 0)
    return CodecError("protocol_error", f"nghttp2 ended the session: error {known}", _CODES.PROTOCOL_ERROR)
