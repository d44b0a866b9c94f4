"""The C entry points of the nghttp2 codec: one trampoline per libnghttp2 callback, which never lets a
Python exception reach C (CPython would print it and C would read a stale return value), the registry
in which a session finds its connection by its user_data key, and the callbacks table every session
shares. The connection's methods do the work (`h2_nghttp2.NgConnection`, through the `Connection`
Protocol below: this module is imported by that one, not the reverse)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any, Protocol

from sidecar.proxy import h2_nghttp2_lib as ng


class Connection(Protocol):
    """What the callbacks call on the connection of a session (h2_nghttp2.NgConnection); each method
    returns 0 or nghttp2's error code for C."""

    callback_errors: list[BaseException]  # what the callbacks raised, for the call that ran C

    def begin_frame(self, hd: ng.FrameHd) -> int: ...
    def begin_headers(self, stream_id: int) -> int: ...
    def header(self, name: bytes, value: bytes) -> int: ...
    def frame_received(self, frame: Any) -> int: ...
    def data_received(self, stream_id: int, data: bytes) -> int: ...
    def stream_closed(self, stream_id: int, error_code: int) -> int: ...
    def invalid_frame(self, hd: ng.FrameHd, lib_error: int) -> int: ...
    def read_data(self, stream_id: int, buf: int, length: int, flags: Any) -> int: ...


# Sessions find their connection through the user_data key; weak, so a dropped connection is collected
# (and its session freed by a finalizer) whether or not anybody closed it.
connections: dict[int, Callable[[], Connection | None]] = {}


def _trampoline(fail: int) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """A C entry point that never lets an exception through: C gets `fail`, the connection (found by
    the user_data key, always the last argument) keeps the exception for the call that ran C."""

    def wrap(function: Callable[..., int]) -> Callable[..., int]:
        def call(*args: Any) -> int:
            try:
                return function(*args)
            except BaseException as exc:  # C must get a return value whatever went wrong
                conn = connections.get(args[-1], _gone)()
                if conn is not None:
                    conn.callback_errors.append(exc)
                return fail

        call.__name__ = function.__name__
        return call

    return wrap


def _gone() -> None:
    return None


def _conn(user_data: int) -> Connection:
    conn = connections[user_data]()
    assert conn is not None
    return conn


# Header and data callbacks fail the stream alone (nghttp2 resets it); the others fail the session.
@_trampoline(ng.ERR_TEMPORAL_CALLBACK_FAILURE)
def _on_begin_headers(_s: int, frame: Any, user_data: int) -> int:
    return _conn(user_data).begin_headers(frame.contents.stream_id)


@_trampoline(ng.ERR_TEMPORAL_CALLBACK_FAILURE)
def _on_header(
    _s: int, _f: Any, name: int, nlen: int, value: int, vlen: int, _fl: int, user_data: int
) -> int:
    return _conn(user_data).header(
        ctypes.string_at(name, nlen), ctypes.string_at(value, vlen) if vlen else b""
    )


@_trampoline(ng.ERR_CALLBACK_FAILURE)
def _on_begin_frame(_s: int, hd: Any, user_data: int) -> int:
    return _conn(user_data).begin_frame(hd.contents)


@_trampoline(ng.ERR_CALLBACK_FAILURE)
def _on_frame_recv(_s: int, frame: Any, user_data: int) -> int:
    return _conn(user_data).frame_received(frame)


@_trampoline(ng.ERR_CALLBACK_FAILURE)
def _on_data_chunk(_s: int, _flags: int, stream_id: int, data: int, length: int, user_data: int) -> int:
    return _conn(user_data).data_received(stream_id, ctypes.string_at(data, length))


@_trampoline(ng.ERR_CALLBACK_FAILURE)
def _on_stream_close(_s: int, stream_id: int, error_code: int, user_data: int) -> int:
    return _conn(user_data).stream_closed(stream_id, error_code)


@_trampoline(ng.ERR_CALLBACK_FAILURE)
def _on_invalid_frame(_s: int, frame: Any, lib_error: int, user_data: int) -> int:
    return _conn(user_data).invalid_frame(frame.contents, lib_error)


@_trampoline(ng.ERR_TEMPORAL_CALLBACK_FAILURE)
def _read_data(_s: int, stream_id: int, buf: int, length: int, flags: Any, _src: int, user_data: int) -> int:
    return _conn(user_data).read_data(stream_id, buf, length, flags)


# The C entry points, made once (ctypes keeps a thunk per function; kept alive here).
_THUNKS = {
    "on_begin_headers": ng.ON_FRAME(_on_begin_headers),
    "on_header": ng.ON_HEADER(_on_header),
    "on_begin_frame": ng.ON_FRAME(_on_begin_frame),
    "on_frame_recv": ng.ON_FRAME(_on_frame_recv),
    "on_data_chunk_recv": ng.ON_DATA(_on_data_chunk),
    "on_stream_close": ng.ON_CLOSE(_on_stream_close),
    "on_invalid_frame_recv": ng.ON_INVALID(_on_invalid_frame),
}
_READ_THUNK = ng.READ(_read_data)


class Library:
    """The loaded library and one callbacks table shared by every session."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.client_callbacks = self._callbacks(server=False)
        self.server_callbacks = self._callbacks(server=True)
        self.provider = ng.DataProvider(None, _READ_THUNK)

    def _callbacks(self, *, server: bool) -> ctypes.c_void_p:
        lib = self.lib
        callbacks = ctypes.c_void_p()
        ng.check(lib.nghttp2_session_callbacks_new(ctypes.byref(callbacks)), "nghttp2_session_callbacks_new")
        for name, thunk in _THUNKS.items():
            # A client's stream ids are checked as each frame begins (see begin_frame).
            if server or name != "on_begin_frame":
                getattr(lib, f"nghttp2_session_callbacks_set_{name}_callback")(callbacks, thunk)
        return callbacks


def load() -> tuple[Library | None, str | None]:
    lib, error = ng.load()
    if lib is None:
        return None, error
    try:
        return Library(lib), None
    except ng.NgError as exc:
        return None, str(exc)
