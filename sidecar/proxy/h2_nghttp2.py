"""libnghttp2 (the C codec inside nghttpx and curl) behind the part of h2's `H2Connection` interface the
proxy drives, through ctypes: no compiler and no binding package, only the shared library
(Debian: libnghttp2-14). The events and exceptions are h2's own classes, so `H2Peer` and the two
connection classes run unchanged on either codec. `bench/h2_codec.py` measured the codec work of one
proxied gRPC call at 45 µs here against h2's 196 µs.

What differs from h2, and how it is made to match:
- nghttp2 pulls DATA through a provider instead of taking frames: data handed over waits in a per-stream
  buffer until the next `data_to_send()`, and `local_flow_control_window` subtracts what waits there, so
  the proxy never hands over more than the peer's windows allow (its acks stay exact).
- Received DATA is acknowledged only when the proxy says so (`no_auto_window_update` and
  `nghttp2_session_consume`), as with h2.
- A header list over the proxy's limit stops decoding at once (an HPACK bomb never expands in memory);
  a stream beyond the concurrency limit, which nghttp2 would refuse alone, ends the connection as it
  does with h2; a protocol error nghttp2 answers with GOAWAY raises h2's exception for it.
- A reset asked for right after the end of a stream is sent after that end (nghttp2 sends RST_STREAM
  ahead of queued DATA), so a response that ends a request early still arrives whole.
- A client's HEADERS on a stream id below one it opened is a connection error (RFC 9113 5.1.1; nghttp2
  skips it when it never saw that stream).
- A request with malformed fields gets RST_STREAM from nghttp2 (h2 would end the connection); such
  streams are listed in `stream_errors` for the connection to count.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import weakref
from collections.abc import Callable
from typing import Any, cast

import h2.errors
import h2.events
import h2.exceptions

from sidecar.proxy.head import Headers

_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
_END_STREAM = _ACK = 0x1
_DATA_FLAG_EOF, _DATA_FLAG_NO_END_STREAM = 0x1, 0x2
_ERR_DEFERRED, _ERR_PAUSE, _ERR_CALLBACK_FAILURE = -508, -526, -902
_ERR_REFUSED_STREAM, _ERR_FLOW_CONTROL, _ERR_HEADER_COMP = -533, -524, -523
_ERR_FRAME_SIZE, _ERR_BAD_CLIENT_MAGIC, _ERR_FLOODED, _ERR_TOO_MANY_CONTINUATIONS = -522, -903, -904, -905
# A stream nghttp2 resets alone (RST_STREAM, as nghttpx answers; h2 would end the connection instead).
_STREAM_ERROR_KINDS = {-531: "bad_headers", -532: "bad_message"}
_SETTINGS_MAX_CONCURRENT_STREAMS, _SETTINGS_INITIAL_WINDOW_SIZE, _SETTINGS_MAX_FRAME_SIZE = 3, 4, 5


class _FrameHd(ctypes.Structure):
    _fields_ = [("length", ctypes.c_size_t), ("stream_id", ctypes.c_int32), ("type", ctypes.c_uint8),
                ("flags", ctypes.c_uint8), ("reserved", ctypes.c_uint8)]  # fmt: skip


class _RstStream(ctypes.Structure):
    _fields_ = [("hd", _FrameHd), ("error_code", ctypes.c_uint32)]


class _GoAway(ctypes.Structure):
    _fields_ = [("hd", _FrameHd), ("last_stream_id", ctypes.c_int32), ("error_code", ctypes.c_uint32)]


class _WindowUpdate(ctypes.Structure):
    _fields_ = [("hd", _FrameHd), ("increment", ctypes.c_int32)]


class _Nv(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p), ("namelen", ctypes.c_size_t),
                ("valuelen", ctypes.c_size_t), ("flags", ctypes.c_uint8)]  # fmt: skip


class _SettingsEntry(ctypes.Structure):
    _fields_ = [("settings_id", ctypes.c_int32), ("value", ctypes.c_uint32)]


_CODES = h2.errors.ErrorCodes
_VP = ctypes.c_void_p
_FRAME = ctypes.POINTER(_FrameHd)
_ON_FRAME = ctypes.CFUNCTYPE(ctypes.c_int, _VP, _FRAME, _VP)
# Names and values arrive as bytes converted in C: nghttp2 NUL-terminates both and, with its HTTP
# messaging checks on (the default, kept), has refused any field containing NUL, CR or LF before this.
_ON_HEADER = ctypes.CFUNCTYPE(
    ctypes.c_int, _VP, _FRAME, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
    ctypes.c_uint8, _VP,
)  # fmt: skip
_ON_DATA = ctypes.CFUNCTYPE(ctypes.c_int, _VP, ctypes.c_uint8, ctypes.c_int32, _VP, ctypes.c_size_t, _VP)
_ON_CLOSE = ctypes.CFUNCTYPE(ctypes.c_int, _VP, ctypes.c_int32, ctypes.c_uint32, _VP)
_ON_INVALID = ctypes.CFUNCTYPE(ctypes.c_int, _VP, _FRAME, ctypes.c_int, _VP)
_READ = ctypes.CFUNCTYPE(
    ctypes.c_ssize_t, _VP, ctypes.c_int32, _VP, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint32), _VP, _VP
)


class _DataProvider(ctypes.Structure):
    _fields_ = [("source", _VP), ("read_callback", _READ)]


# Sessions find their connection through the user_data key; weak, so a dropped connection is collected
# (and its session freed by a finalizer) whether or not anybody closed it.
# Callbacks only run inside a call on a live connection, so the reference is never dead there.
_connections: dict[int, Callable[[], NgConnection]] = {}
_next_key = 1


def _on_begin_headers(_s: int, frame: Any, user_data: int) -> int:
    return _connections[user_data]().begin_headers(frame.contents.stream_id)


def _on_header(
    _s: int, _f: Any, name: bytes, _nlen: int, value: bytes | None, _vlen: int, _fl: int, user_data: int
) -> int:
    return _connections[user_data]().header(name, value or b"")


def _on_begin_frame(_s: int, hd: Any, user_data: int) -> int:
    return _connections[user_data]().begin_frame(hd.contents)


def _on_frame_recv(_s: int, frame: Any, user_data: int) -> int:
    return _connections[user_data]().frame_received(frame)


def _on_data_chunk(_s: int, _flags: int, stream_id: int, data: int, length: int, user_data: int) -> int:
    return _connections[user_data]().data_received(stream_id, ctypes.string_at(data, length))


def _on_stream_close(_s: int, stream_id: int, error_code: int, user_data: int) -> int:
    return _connections[user_data]().stream_closed(stream_id, error_code)


def _on_invalid_frame(_s: int, frame: Any, lib_error: int, user_data: int) -> int:
    return _connections[user_data]().invalid_frame(frame.contents, lib_error)


def _read_data(_s: int, stream_id: int, buf: int, length: int, flags: Any, _src: int, user_data: int) -> int:
    return _connections[user_data]().read_data(stream_id, buf, length, flags)


# The C entry points, made once (ctypes keeps a thunk per function; kept alive here).
_THUNKS = {
    "on_begin_headers": _ON_FRAME(_on_begin_headers),
    "on_header": _ON_HEADER(_on_header),
    "on_begin_frame": _ON_FRAME(_on_begin_frame),
    "on_frame_recv": _ON_FRAME(_on_frame_recv),
    "on_data_chunk_recv": _ON_DATA(_on_data_chunk),
    "on_stream_close": _ON_CLOSE(_on_stream_close),
    "on_invalid_frame_recv": _ON_INVALID(_on_invalid_frame),
}
_READ_THUNK = _READ(_read_data)


class _Library:
    """The loaded library and one callbacks table shared by every session."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        lib.nghttp2_session_mem_send.restype = ctypes.c_ssize_t
        lib.nghttp2_session_mem_send.argtypes = [_VP, ctypes.POINTER(_VP)]
        lib.nghttp2_session_mem_recv.restype = ctypes.c_ssize_t
        lib.nghttp2_session_mem_recv.argtypes = [_VP, ctypes.c_char_p, ctypes.c_size_t]
        lib.nghttp2_submit_request.restype = ctypes.c_int32
        lib.nghttp2_session_get_stream_remote_window_size.argtypes = [_VP, ctypes.c_int32]
        lib.nghttp2_session_get_remote_window_size.argtypes = [_VP]
        lib.nghttp2_session_get_remote_settings.restype = ctypes.c_uint32
        lib.nghttp2_session_consume.argtypes = [_VP, ctypes.c_int32, ctypes.c_size_t]
        self.lib = lib
        self.client_callbacks = self._callbacks(server=False)
        self.server_callbacks = self._callbacks(server=True)
        self.provider = _DataProvider(None, _READ_THUNK)

    def _callbacks(self, *, server: bool) -> ctypes.c_void_p:
        lib = self.lib
        callbacks = _VP()
        lib.nghttp2_session_callbacks_new(ctypes.byref(callbacks))
        for name, thunk in _THUNKS.items():
            # A client's stream ids are checked as each frame begins (see begin_frame).
            if server or name != "on_begin_frame":
                getattr(lib, f"nghttp2_session_callbacks_set_{name}_callback")(callbacks, thunk)
        return callbacks


_library: _Library | None = None
_load_error: str | None = None


def available() -> bool:
    """Whether libnghttp2 can be loaded here (once; the answer is kept)."""
    global _library, _load_error
    if _library is None and _load_error is None:
        name = ctypes.util.find_library("nghttp2") or "libnghttp2.so.14"
        try:
            _library = _Library(ctypes.CDLL(name))
        except (OSError, AttributeError) as exc:  # missing, or too old for a symbol used here
            _load_error = str(exc)
    return _library is not None


def load_error() -> str | None:
    available()
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
    """The peer's settings, read from the session (no reference back to the connection: no cycle)."""

    def __init__(self, lib: ctypes.CDLL, session: ctypes.c_void_p) -> None:
        self._lib = lib
        self._session = session

    @property
    def max_concurrent_streams(self) -> int:
        got = self._lib.nghttp2_session_get_remote_settings(self._session, _SETTINGS_MAX_CONCURRENT_STREAMS)
        return int(got)


def _error(exc: h2.exceptions.ProtocolError, code: h2.errors.ErrorCodes) -> h2.exceptions.ProtocolError:
    exc.error_code = code
    return exc


def _nva(headers: Headers) -> Any:
    """A C array of nghttp2_nv (nghttp2 copies the names and values at submit)."""
    return (_Nv * len(headers))(*[(n, v, len(n), len(v), 0) for n, v in headers])  # type: ignore[misc]


class NgConnection:
    """One HTTP/2 connection on libnghttp2, either side, with the h2 methods the proxy uses."""

    def __init__(self, *, client_side: bool, settings: dict[int, int], max_header_bytes: int) -> None:
        global _next_key
        assert _library is not None, "call available() first"
        self.lib = lib = _library.lib
        self._provider = ctypes.byref(_library.provider)  # the one data provider: reads self._out
        self.client_side = client_side
        self.settings = settings
        self.max_header_bytes = max_header_bytes
        self.key = _next_key
        _next_key += 1
        _connections[self.key] = cast(Callable[[], NgConnection], weakref.ref(self))
        option = _VP()
        lib.nghttp2_option_new(ctypes.byref(option))
        lib.nghttp2_option_set_no_auto_window_update(option, 1)
        lib.nghttp2_option_set_no_closed_streams(option, 1)
        self.session = _VP()
        new = lib.nghttp2_session_client_new2 if client_side else lib.nghttp2_session_server_new2
        callbacks = _library.client_callbacks if client_side else _library.server_callbacks
        rv = new(ctypes.byref(self.session), callbacks, _VP(self.key), option)
        lib.nghttp2_option_del(option)
        if rv != 0:
            raise MemoryError(f"nghttp2 session: {rv}")
        weakref.finalize(self, _free, lib, self.session.value, self.key)
        self.remote_settings = _RemoteSettings(lib, self.session)
        self.highest_inbound_stream_id = 0
        self._out: dict[int, _Out] = {}
        self._buffered = 0  # bytes in every _Out.buf: they count against the connection window
        self._responded: set[int] = set()  # streams whose first header block was sent (or received)
        self._heads: set[int] = set()  # streams whose first header block arrived
        self._reset_told: set[int] = set()  # streams whose reset the proxy knows of
        self._events: list[h2.events.Event] | None = None
        self._block: Headers = []
        self._block_size = 0
        self._failure: h2.exceptions.ProtocolError | None = None
        self._lib_error = 0
        self.stream_errors: list[str] = []  # streams nghttp2 reset for what they sent; the owner counts them
        self._sent = ctypes.c_void_p()
        self._pending = b""  # sent by nghttp2 while checking for a connection error
        self._dirty = True  # something may be queued: nghttp2 only queues frames when called

    # Connection -------------------------------------------------------------------------------------
    def initiate_connection(self) -> None:
        self._dirty = True
        items = [(k, v) for k, v in self.settings.items() if self.client_side or k != 2]  # push: clients
        entries = (_SettingsEntry * len(items))(*[_SettingsEntry(k, v) for k, v in items])
        self.lib.nghttp2_submit_settings(self.session, 0, entries, len(items))

    def increment_flow_control_window(self, increment: int) -> None:
        self._dirty = True
        self.lib.nghttp2_submit_window_update(self.session, 0, 0, increment)

    def get_next_available_stream_id(self) -> int:
        return int(self.lib.nghttp2_session_get_next_stream_id(self.session))

    @property
    def max_outbound_frame_size(self) -> int:
        return int(self.lib.nghttp2_session_get_remote_settings(self.session, _SETTINGS_MAX_FRAME_SIZE))

    def close_connection(self, error_code: int = 0) -> None:
        self._dirty = True
        self.lib.nghttp2_session_terminate_session(self.session, error_code)

    def data_to_send(self) -> bytes:
        if not self._dirty:
            return b""
        self._dirty = False
        if self._pending:
            data, self._pending = self._pending + self._mem_send(), b""
            return data
        return self._mem_send()

    def _mem_send(self) -> bytes:
        lib, session, sent = self.lib, self.session, self._sent
        chunks = []
        while (n := lib.nghttp2_session_mem_send(session, ctypes.byref(sent))) > 0:
            chunks.append(ctypes.string_at(sent.value or 0, n))
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # Receiving -------------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[h2.events.Event]:
        self._dirty = True  # acknowledgements, resets, resumed data
        self._events = events = list[h2.events.Event]()
        try:
            n = self.lib.nghttp2_session_mem_recv(self.session, data, len(data))
        finally:
            self._events = None
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        if n < 0:
            raise _lib_exception(n, self._lib_error)
        if self._lib_error:
            # A stream error (nghttp2 reset the stream) or a connection error (it queued GOAWAY and
            # reads nothing more, which shows once that GOAWAY is out): only the second is raised.
            lib_error, self._lib_error = self._lib_error, 0
            self._pending += self._mem_send()
            if not self.lib.nghttp2_session_want_read(self.session):
                raise _lib_exception(lib_error, lib_error)
            self.stream_errors.append(_STREAM_ERROR_KINDS.get(lib_error, "stream_error"))
        return events

    def begin_frame(self, hd: _FrameHd) -> int:
        """A client's HEADERS on a stream id below one it opened, not an open stream's trailers, is a
        connection error (RFC 9113 5.1.1); nghttp2 would skip it when the stream was never seen."""
        sid = hd.stream_id
        if hd.type == _HEADERS and sid < self.highest_inbound_stream_id and sid not in self._heads:
            too_low = h2.exceptions.StreamIDTooLowError(sid, self.highest_inbound_stream_id)
            self._failure = _error(too_low, _CODES.PROTOCOL_ERROR)
            return _ERR_PAUSE
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
            self._failure = _error(h2.exceptions.DenialOfServiceError(msg), _CODES.ENHANCE_YOUR_CALM)
            return _ERR_PAUSE
        self._block.append((name, value))
        return 0

    def frame_received(self, frame: Any) -> int:
        hd = frame.contents
        kind, sid, events = hd.type, hd.stream_id, self._events
        assert events is not None
        if kind == _DATA:
            if hd.flags & _END_STREAM:
                events.append(h2.events.StreamEnded(stream_id=sid))
        elif kind == _HEADERS:
            self._headers_received(sid, hd.flags & _END_STREAM, events)
        elif kind == _RST_STREAM:
            self._reset_told.add(sid)
            self._drop(sid)
            code = ctypes.cast(frame, ctypes.POINTER(_RstStream)).contents.error_code
            events.append(h2.events.StreamReset(stream_id=sid, error_code=_code(code)))
        elif kind == _WINDOW_UPDATE:
            delta = ctypes.cast(frame, ctypes.POINTER(_WindowUpdate)).contents.increment
            events.append(h2.events.WindowUpdated(stream_id=sid, delta=delta))
        elif kind == _SETTINGS:
            if not hd.flags & _ACK:
                events.append(h2.events.RemoteSettingsChanged())
        elif kind == _PING:
            if not hd.flags & _ACK:
                events.append(h2.events.PingReceived(ping_data=b""))
        elif kind == _GOAWAY:
            goaway = ctypes.cast(frame, ctypes.POINTER(_GoAway)).contents
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
        """nghttp2 closed a stream; one it reset on its own (a malformed response) is reported as reset."""
        self._drop(stream_id)
        self._heads.discard(stream_id)
        self._responded.discard(stream_id)
        if error_code and stream_id not in self._reset_told and self._events is not None:
            reset = h2.events.StreamReset(
                stream_id=stream_id, error_code=_code(error_code), remote_reset=False
            )
            self._events.append(reset)
        self._reset_told.discard(stream_id)
        return 0

    def invalid_frame(self, hd: _FrameHd, lib_error: int) -> int:
        if lib_error == _ERR_REFUSED_STREAM and not self.client_side:
            # Beyond our SETTINGS_MAX_CONCURRENT_STREAMS: a connection error, as h2 makes it.
            msg = "too many concurrent streams"
            self._failure = _error(h2.exceptions.TooManyStreamsError(msg), _CODES.PROTOCOL_ERROR)
            return -1
        self._lib_error = lib_error
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
            stream = lib.nghttp2_session_get_remote_settings(self.session, _SETTINGS_INITIAL_WINDOW_SIZE)
        waiting = len(out.buf) if out is not None else 0
        connection = lib.nghttp2_session_get_remote_window_size(self.session) - self._buffered
        return int(min(stream - waiting, connection))

    def read_data(self, stream_id: int, buf: int, length: int, flags: Any) -> int:
        out = self._out.get(stream_id)
        if out is None:
            flags[0] = _DATA_FLAG_EOF
            return 0
        n = min(len(out.buf), length)
        if n:
            ctypes.memmove(buf, (ctypes.c_char * n).from_buffer(out.buf), n)
            del out.buf[:n]
            self._buffered -= n
        if not out.buf and out.eof:
            out.done = True
            if out.trailers is not None:
                flags[0] = _DATA_FLAG_EOF | _DATA_FLAG_NO_END_STREAM
                nva = _nva(out.trailers)
                self.lib.nghttp2_submit_trailer(self.session, stream_id, nva, len(out.trailers))
            else:
                flags[0] = _DATA_FLAG_EOF
            if out.reset_after is not None:
                self._reset_told.add(stream_id)
                self.lib.nghttp2_submit_rst_stream(self.session, 0, stream_id, out.reset_after)
            del self._out[stream_id]
            return n
        if not n:
            out.deferred = True
            return _ERR_DEFERRED
        return n

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        self._dirty = True
        out = self._out.get(stream_id)
        if out is not None and out.eof and not out.done:
            out.reset_after = error_code  # after the end already handed over (see the module doc)
            self._resume(stream_id, out)
            return
        self._drop(stream_id)
        self._reset_told.add(stream_id)
        self.lib.nghttp2_submit_rst_stream(self.session, 0, stream_id, error_code)

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        self._dirty = True
        if self.lib.nghttp2_session_consume(self.session, stream_id, acknowledged_size) != 0:
            raise h2.exceptions.ProtocolError("consume failed")

    def _drop(self, stream_id: int) -> None:
        out = self._out.pop(stream_id, None)
        if out is not None:
            self._buffered -= len(out.buf)


def _free(lib: ctypes.CDLL, session: int | None, key: int) -> None:
    _connections.pop(key, None)
    if session:
        lib.nghttp2_session_del(_VP(session))


def _code(value: int) -> h2.errors.ErrorCodes | int:
    try:
        return h2.errors.ErrorCodes(value)
    except ValueError:
        return value


# nghttp2's error -> h2's exception, its message (`_kind` in http2.py names the metric from it), the code.
_LIB_ERRORS: dict[int, tuple[type[h2.exceptions.ProtocolError], str, h2.errors.ErrorCodes]] = {
    _ERR_FLOW_CONTROL: (h2.exceptions.FlowControlError, "window exceeded", _CODES.FLOW_CONTROL_ERROR),
    _ERR_TOO_MANY_CONTINUATIONS: (h2.exceptions.ProtocolError, "continuation flood", _CODES.PROTOCOL_ERROR),
    _ERR_FLOODED: (h2.exceptions.ProtocolError, "control frame flood", _CODES.ENHANCE_YOUR_CALM),
    _ERR_BAD_CLIENT_MAGIC: (h2.exceptions.ProtocolError, "invalid preamble", _CODES.PROTOCOL_ERROR),
    _ERR_HEADER_COMP: (h2.exceptions.ProtocolError, "header block not decodable", _CODES.COMPRESSION_ERROR),
    _ERR_FRAME_SIZE: (h2.exceptions.FrameTooLargeError, "frame size", _CODES.FRAME_SIZE_ERROR),
}


def _lib_exception(returned: int, lib_error: int) -> h2.exceptions.ProtocolError:
    """h2's exception for what nghttp2 reported: mem_recv's fatal error, else the last invalid frame's."""
    for err in (returned, lib_error):
        if err in _LIB_ERRORS:
            cls, message, code = _LIB_ERRORS[err]
            return _error(cls(message), code)
    return _error(
        h2.exceptions.ProtocolError(f"nghttp2 error {lib_error or returned}"), _CODES.PROTOCOL_ERROR
    )
