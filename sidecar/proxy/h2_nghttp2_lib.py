"""libnghttp2 through ctypes: the library loaded by its soname, every C function the codec calls declared
with its argument and result types and resolved once, at import, and the C structures it reads.

Nothing here runs a session; `h2_nghttp2.NgConnection` does. If the library or one of these symbols is
missing, `load_error()` names what was missing and the codec choice falls back to h2.
"""

from __future__ import annotations

import ctypes
from typing import Any

SONAME = "libnghttp2.so.14"  # the ABI of libnghttp2 1.x (Debian: libnghttp2-14)

# Frame types and flags (RFC 9113 section 6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
DATA_FLAG_EOF, DATA_FLAG_NO_END_STREAM = 0x1, 0x2
SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 3, 4, 5
MAX_STREAM_ID = (1 << 31) - 1

# Library error codes (nghttp2.h, enum nghttp2_error).
ERR_INVALID_ARGUMENT, ERR_STREAM_ID_NOT_AVAILABLE, ERR_DEFERRED = -501, -509, -508
ERR_PROTO, ERR_INVALID_STATE, ERR_STREAM_CLOSED = -505, -519, -510
ERR_TEMPORAL_CALLBACK_FAILURE, ERR_HEADER_COMP, ERR_FRAME_SIZE = -521, -523, -522
ERR_FLOW_CONTROL, ERR_REFUSED_STREAM, ERR_PAUSE = -524, -533, -526
ERR_HTTP_HEADER, ERR_HTTP_MESSAGING = -531, -532
ERR_NOMEM, ERR_CALLBACK_FAILURE, ERR_BAD_CLIENT_MAGIC = -901, -902, -903
ERR_FLOODED, ERR_TOO_MANY_CONTINUATIONS = -904, -905
ERR_FATAL = -900  # every error at or below this one ends the session


class FrameHd(ctypes.Structure):
    _fields_ = [("length", ctypes.c_size_t), ("stream_id", ctypes.c_int32), ("type", ctypes.c_uint8),
                ("flags", ctypes.c_uint8), ("reserved", ctypes.c_uint8)]  # fmt: skip


class RstStream(ctypes.Structure):
    _fields_ = [("hd", FrameHd), ("error_code", ctypes.c_uint32)]


class GoAway(ctypes.Structure):
    _fields_ = [("hd", FrameHd), ("last_stream_id", ctypes.c_int32), ("error_code", ctypes.c_uint32)]


class WindowUpdate(ctypes.Structure):
    _fields_ = [("hd", FrameHd), ("increment", ctypes.c_int32)]


class Nv(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p), ("namelen", ctypes.c_size_t),
                ("valuelen", ctypes.c_size_t), ("flags", ctypes.c_uint8)]  # fmt: skip


class SettingsEntry(ctypes.Structure):
    _fields_ = [("settings_id", ctypes.c_int32), ("value", ctypes.c_uint32)]


VP = ctypes.c_void_p
FRAME = ctypes.POINTER(FrameHd)
ON_FRAME = ctypes.CFUNCTYPE(ctypes.c_int, VP, FRAME, VP)
# Names and values are read by their lengths (ctypes.string_at), never up to a NUL.
ON_HEADER = ctypes.CFUNCTYPE(
    ctypes.c_int, VP, FRAME, VP, ctypes.c_size_t, VP, ctypes.c_size_t, ctypes.c_uint8, VP
)
ON_DATA = ctypes.CFUNCTYPE(ctypes.c_int, VP, ctypes.c_uint8, ctypes.c_int32, VP, ctypes.c_size_t, VP)
ON_CLOSE = ctypes.CFUNCTYPE(ctypes.c_int, VP, ctypes.c_int32, ctypes.c_uint32, VP)
ON_INVALID = ctypes.CFUNCTYPE(ctypes.c_int, VP, FRAME, ctypes.c_int, VP)
READ = ctypes.CFUNCTYPE(
    ctypes.c_ssize_t, VP, ctypes.c_int32, VP, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint32), VP, VP
)


class DataProvider(ctypes.Structure):
    _fields_ = [("source", VP), ("read_callback", READ)]


_I, _I32, _U32, _SZ, _SSZ, _U8 = (
    ctypes.c_int, ctypes.c_int32, ctypes.c_uint32, ctypes.c_size_t, ctypes.c_ssize_t, ctypes.c_uint8,
)  # fmt: skip
_PVP = ctypes.POINTER(VP)
# name -> (restype, argtypes), from nghttp2.h; every function the codec calls is here.
SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "nghttp2_session_callbacks_new": (_I, [_PVP]),
    "nghttp2_session_callbacks_set_on_begin_headers_callback": (None, [VP, ON_FRAME]),
    "nghttp2_session_callbacks_set_on_header_callback": (None, [VP, ON_HEADER]),
    "nghttp2_session_callbacks_set_on_begin_frame_callback": (None, [VP, ON_FRAME]),
    "nghttp2_session_callbacks_set_on_frame_recv_callback": (None, [VP, ON_FRAME]),
    "nghttp2_session_callbacks_set_on_data_chunk_recv_callback": (None, [VP, ON_DATA]),
    "nghttp2_session_callbacks_set_on_stream_close_callback": (None, [VP, ON_CLOSE]),
    "nghttp2_session_callbacks_set_on_invalid_frame_recv_callback": (None, [VP, ON_INVALID]),
    "nghttp2_option_new": (_I, [_PVP]),
    "nghttp2_option_del": (None, [VP]),
    "nghttp2_option_set_no_auto_window_update": (None, [VP, _I]),
    "nghttp2_option_set_no_closed_streams": (None, [VP, _I]),
    "nghttp2_option_set_max_settings": (None, [VP, _SZ]),
    "nghttp2_option_set_stream_reset_rate_limit": (None, [VP, ctypes.c_uint64, ctypes.c_uint64]),
    "nghttp2_session_client_new2": (_I, [_PVP, VP, VP, VP]),
    "nghttp2_session_server_new2": (_I, [_PVP, VP, VP, VP]),
    "nghttp2_session_del": (None, [VP]),
    "nghttp2_session_mem_send": (_SSZ, [VP, _PVP]),
    "nghttp2_session_mem_recv": (_SSZ, [VP, ctypes.c_char_p, _SZ]),
    "nghttp2_session_want_read": (_I, [VP]),
    "nghttp2_session_want_write": (_I, [VP]),
    "nghttp2_submit_request": (_I32, [VP, VP, VP, _SZ, VP, VP]),
    "nghttp2_submit_response": (_I, [VP, _I32, VP, _SZ, VP]),
    "nghttp2_submit_trailer": (_I, [VP, _I32, VP, _SZ]),
    "nghttp2_submit_settings": (_I, [VP, _U8, VP, _SZ]),
    "nghttp2_submit_window_update": (_I, [VP, _U8, _I32, _I32]),
    "nghttp2_submit_rst_stream": (_I, [VP, _U8, _I32, _U32]),
    "nghttp2_session_terminate_session": (_I, [VP, _U32]),
    "nghttp2_session_resume_data": (_I, [VP, _I32]),
    "nghttp2_session_consume": (_I, [VP, _I32, _SZ]),
    "nghttp2_session_get_next_stream_id": (_U32, [VP]),
    "nghttp2_session_set_next_stream_id": (_I, [VP, _I32]),
    "nghttp2_session_get_stream_remote_window_size": (_I32, [VP, _I32]),
    "nghttp2_session_get_remote_window_size": (_I32, [VP]),
    "nghttp2_session_get_remote_settings": (_U32, [VP, _I]),
    "nghttp2_session_get_local_settings": (_U32, [VP, _I]),
    "nghttp2_session_find_stream": (VP, [VP, _I32]),
}


def resolve(lib: ctypes.CDLL) -> list[str]:
    """Declare every function of SIGNATURES on `lib`; the names it lacks (an older library)."""
    missing = []
    for name, (restype, argtypes) in SIGNATURES.items():
        try:
            function = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        function.restype = restype
        function.argtypes = argtypes
    return missing


def load(soname: str = SONAME) -> tuple[ctypes.CDLL | None, str | None]:
    """(the library with every function declared, None), or (None, what was missing)."""
    try:
        lib = ctypes.CDLL(soname)
    except OSError as exc:
        return None, str(exc)
    missing = resolve(lib)
    if missing:
        return None, f"{soname} lacks {', '.join(missing)}"
    return lib, None


def check(rv: int, what: str) -> int:
    """A submit function's return code: raise on a negative one (nghttp2 refused the call)."""
    if rv < 0:
        raise NgError(rv, what)
    return rv


class NgError(Exception):
    """A libnghttp2 call returned an error code."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"{what}: nghttp2 error {code}")
        self.code = code
