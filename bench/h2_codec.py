"""Is the HTTP/2 codec the ceiling? One proxied gRPC unary call's codec work, in memory, with python-hyper's
`h2` (what the sidecar uses) and with libnghttp2 (C, what nghttpx uses) driven through ctypes.

    .venv/bin/python bench/h2_codec.py [--calls 20000]

Four sessions per codec: a client, the proxy's downstream (server side) and upstream (client side), and an
origin. Per call the client sends HEADERS + DATA(END_STREAM); the proxy's downstream receives them, its
upstream sends them on with B3 headers added; the origin answers HEADERS + DATA + trailers; the proxy
relays the answer back. Only the proxy's two sessions are timed (receive, header handling, submit, and
serialising), the peers are not: the figure is what one sidecar hop spends in its codec per call, with
no sockets, no event loop and no tracing. Sessions are long-lived, so window updates and HPACK's dynamic
table behave as on a real connection. Needs libnghttp2 (Debian: libnghttp2-14); no headers, no compiler.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import sys
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.proxy.h2_hyper import H2Connection, h2_config  # noqa: E402

Headers = list[tuple[bytes, bytes]]

REQUEST: Headers = [
    (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/t.Echo/Ping"),
    (b":authority", b"127.0.0.1:50051"), (b"te", b"trailers"), (b"content-type", b"application/grpc"),
    (b"user-agent", b"grpc-python-asyncio/1.76.0 grpc-c/51.0.0 (linux; chttp2)"),
    (b"grpc-accept-encoding", b"identity, deflate, gzip"), (b"grpc-timeout", b"4999m"),
]  # fmt: skip
TRACE: Headers = [
    (b"x-request-id", b"6f1c1b9e-0d6a-4a57-9d0c-2f9b5d3c8e11"), (b"x-b3-traceid", b"80f198ee56343ba8"),
    (b"x-b3-spanid", b"e457b5a2e4d86bd1"), (b"x-b3-sampled", b"1"),
]  # fmt: skip
RESPONSE: Headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS: Headers = [(b"grpc-status", b"0"), (b"grpc-message", b"")]
BODY = b"\x00\x00\x00\x00\x20" + b"x" * 32


# h2 ----------------------------------------------------------------------------------------------
def h2_call_loop(calls: int) -> float:
    """Seconds the proxy's two h2 sessions spent over `calls` calls."""

    def plain(client_side: bool) -> h2.connection.H2Connection:
        return h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=client_side, header_encoding=None)
        )

    client, origin = plain(True), plain(False)
    down, up = H2Connection(h2_config(client_side=False)), H2Connection(h2_config(client_side=True))
    for conn in (client, origin, down, up):
        conn.initiate_connection()
    spent = 0.0

    def pump(a: h2.connection.H2Connection, b: h2.connection.H2Connection, timed: str) -> list[Any]:
        """Deliver what `a` has to send to `b`; returns b's events. `timed`: which of them is ours."""
        nonlocal spent
        t0 = time.perf_counter()
        data = a.data_to_send()
        t1 = time.perf_counter()
        events = b.receive_data(data) if data else []
        t2 = time.perf_counter()
        spent += (t1 - t0) if timed == "a" else (t2 - t1)
        return events

    pump(client, down, "b"), pump(down, client, "a"), pump(up, origin, "a"), pump(origin, up, "b")
    for _ in range(calls):
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, REQUEST)
        client.send_data(sid, BODY, end_stream=True)
        headers: Headers = []
        body = b""
        for event in pump(client, down, "b"):  # the proxy's downstream receives the request
            if isinstance(event, h2.events.RequestReceived):
                headers = event.headers  # type: ignore[assignment]
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
        t0 = time.perf_counter()
        down.acknowledge_received_data(len(body), sid)
        usid = up.get_next_available_stream_id()
        up.send_headers(usid, headers + TRACE)
        up.send_data(usid, body, end_stream=True)
        spent += time.perf_counter() - t0
        for event in pump(up, origin, "a"):  # the origin answers
            if isinstance(event, h2.events.RequestReceived):
                osid = event.stream_id
                assert osid is not None
            elif isinstance(event, h2.events.DataReceived):
                origin.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        origin.send_headers(osid, RESPONSE)
        origin.send_data(osid, BODY)
        origin.send_headers(osid, TRAILERS, end_stream=True)
        rhead: Headers = []
        rbody = b""
        trailers: Headers = []
        for event in pump(origin, up, "b"):  # the proxy's upstream receives the answer
            if isinstance(event, h2.events.ResponseReceived):
                rhead = event.headers  # type: ignore[assignment]
            elif isinstance(event, h2.events.DataReceived):
                rbody += event.data
            elif isinstance(event, h2.events.TrailersReceived):
                trailers = event.headers  # type: ignore[assignment]
        t0 = time.perf_counter()
        up.acknowledge_received_data(len(rbody), usid)
        down.send_headers(sid, rhead)
        down.send_data(sid, rbody)
        down.send_headers(sid, trailers, end_stream=True)
        spent += time.perf_counter() - t0
        for event in pump(down, client, "a"):
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        assert rbody == BODY and trailers
        pump(client, down, "b"), pump(origin, up, "b")  # window updates back
    return spent


# libnghttp2 through ctypes -------------------------------------------------------------------------
class _FrameHd(ctypes.Structure):
    _fields_ = [("length", ctypes.c_size_t), ("stream_id", ctypes.c_int32), ("type", ctypes.c_uint8),
                ("flags", ctypes.c_uint8), ("reserved", ctypes.c_uint8)]  # fmt: skip


class _Nv(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p), ("namelen", ctypes.c_size_t),
                ("valuelen", ctypes.c_size_t), ("flags", ctypes.c_uint8)]  # fmt: skip


_VP = ctypes.c_void_p
_ON_HEADER = ctypes.CFUNCTYPE(ctypes.c_int, _VP, ctypes.POINTER(_FrameHd), ctypes.POINTER(ctypes.c_char),
                              ctypes.c_size_t, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t, ctypes.c_uint8, _VP)  # fmt: skip
_ON_FRAME = ctypes.CFUNCTYPE(ctypes.c_int, _VP, ctypes.POINTER(_FrameHd), _VP)
_ON_DATA = ctypes.CFUNCTYPE(ctypes.c_int, _VP, ctypes.c_uint8, ctypes.c_int32, ctypes.POINTER(ctypes.c_char),
                            ctypes.c_size_t, _VP)  # fmt: skip
_READ = ctypes.CFUNCTYPE(ctypes.c_ssize_t, _VP, ctypes.c_int32, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t,
                         ctypes.POINTER(ctypes.c_uint32), _VP, _VP)  # fmt: skip


class _DataProvider(ctypes.Structure):
    _fields_ = [("source", _VP), ("read_callback", _READ)]


class NgSession:
    """A minimal nghttp2 session: headers and data per stream, bodies sent from Python bytes."""

    lib: Any = None

    def __init__(self, *, server: bool) -> None:
        lib = NgSession.lib
        self.streams: dict[int, dict[str, Any]] = {}
        self.outgoing: dict[int, tuple[bytes, Headers | None]] = {}
        cbs = _VP()
        lib.nghttp2_session_callbacks_new(ctypes.byref(cbs))
        self._keep = [_ON_HEADER(self._on_header), _ON_FRAME(self._on_frame), _ON_DATA(self._on_data)]
        lib.nghttp2_session_callbacks_set_on_header_callback(cbs, self._keep[0])
        lib.nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, self._keep[1])
        lib.nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, self._keep[2])
        self.session = _VP()
        new = lib.nghttp2_session_server_new if server else lib.nghttp2_session_client_new
        assert new(ctypes.byref(self.session), cbs, None) == 0
        lib.nghttp2_session_callbacks_del(cbs)
        lib.nghttp2_submit_settings(self.session, 0, None, 0)
        self._reader = _READ(self._read)
        self._out = ctypes.POINTER(ctypes.c_char)()

    def _stream(self, sid: int) -> dict[str, Any]:
        stream = self.streams.get(sid)
        if stream is None:
            stream = self.streams[sid] = {
                "headers": [],
                "trailers": [],
                "body": b"",
                "ended": False,
                "blocks": 0,
            }
        return stream

    def _on_header(
        self, _s: Any, frame: Any, name: Any, nlen: int, value: Any, vlen: int, _f: int, _u: Any
    ) -> int:
        stream = self._stream(frame.contents.stream_id)
        pair = (ctypes.string_at(name, nlen), ctypes.string_at(value, vlen))
        (stream["trailers"] if stream["blocks"] else stream["headers"]).append(pair)
        return 0

    def _on_frame(self, _s: Any, frame: Any, _u: Any) -> int:
        hd = frame.contents
        if hd.type in (0, 1) and hd.stream_id:
            stream = self._stream(hd.stream_id)
            if hd.type == 1:
                stream["blocks"] += 1
            if hd.flags & 0x1:
                stream["ended"] = True
        return 0

    def _on_data(self, _s: Any, _flags: int, sid: int, data: Any, n: int, _u: Any) -> int:
        self._stream(sid)["body"] += ctypes.string_at(data, n)
        return 0

    def _read(self, _s: Any, sid: int, buf: Any, length: int, flags: Any, _src: Any, _u: Any) -> int:
        body, trailers = self.outgoing.pop(sid)
        assert len(body) <= length
        ctypes.memmove(buf, body, len(body))
        flags[0] = 0x1 | (0x2 if trailers else 0)  # EOF, and NO_END_STREAM when trailers follow
        if trailers:
            nva, n = _nva(trailers)
            NgSession.lib.nghttp2_submit_trailer(self.session, sid, nva, n)
        return len(body)

    def provider(self, sid: int, body: bytes, trailers: Headers | None) -> Any:
        self.outgoing[sid] = (body, trailers)
        return ctypes.byref(_DataProvider(None, self._reader))

    def request(self, headers: Headers, body: bytes) -> int:
        nva, n = _nva(headers)
        # The stream id is known only after submit: the provider is looked up by the next id.
        sid = self.next_sid
        self.next_sid += 2
        got = int(
            NgSession.lib.nghttp2_submit_request(
                self.session, None, nva, n, self.provider(sid, body, None), None
            )
        )
        assert got == sid, (got, sid)
        return sid

    next_sid = 1

    def respond(self, sid: int, headers: Headers, body: bytes, trailers: Headers) -> None:
        nva, n = _nva(headers)
        NgSession.lib.nghttp2_submit_response(self.session, sid, nva, n, self.provider(sid, body, trailers))

    def send(self) -> bytes:
        n = NgSession.lib.nghttp2_session_mem_send(self.session, ctypes.byref(self._out))
        return ctypes.string_at(self._out, n) if n > 0 else b""

    def recv(self, data: bytes) -> None:
        assert NgSession.lib.nghttp2_session_mem_recv(self.session, data, len(data)) == len(data)


def _nva(headers: Headers) -> tuple[Any, int]:
    array = (_Nv * len(headers))(*[_Nv(n, v, len(n), len(v), 0) for n, v in headers])
    return array, len(headers)


def load_nghttp2() -> bool:
    name = ctypes.util.find_library("nghttp2") or "libnghttp2.so.14"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return False
    lib.nghttp2_session_mem_send.restype = ctypes.c_ssize_t
    lib.nghttp2_session_mem_recv.restype = ctypes.c_ssize_t
    lib.nghttp2_session_mem_recv.argtypes = [_VP, ctypes.c_char_p, ctypes.c_size_t]
    lib.nghttp2_submit_request.restype = ctypes.c_int32
    NgSession.lib = lib
    return True


def ng_call_loop(calls: int) -> float:
    client, origin = NgSession(server=False), NgSession(server=True)
    down, up = NgSession(server=True), NgSession(server=False)
    spent = 0.0

    def pump(a: NgSession, b: NgSession, timed: str) -> None:
        nonlocal spent
        while True:
            t0 = time.perf_counter()
            data = a.send()
            t1 = time.perf_counter()
            if data:
                b.recv(data)
            t2 = time.perf_counter()
            spent += (t1 - t0) if timed == "a" else (t2 - t1)
            if not data:
                return

    pump(client, down, "b"), pump(down, client, "a"), pump(up, origin, "a"), pump(origin, up, "b")
    for _ in range(calls):
        sid = client.request(REQUEST, BODY)
        pump(client, down, "b")
        t0 = time.perf_counter()
        got = down.streams.pop(sid)
        assert got["ended"] and got["body"] == BODY
        usid = up.request(got["headers"] + TRACE, got["body"])
        spent += time.perf_counter() - t0
        pump(up, origin, "a")
        asked = origin.streams.pop(usid)
        origin.respond(usid, RESPONSE, asked["body"], TRAILERS)
        pump(origin, up, "b")
        t0 = time.perf_counter()
        answer = up.streams.pop(usid)
        down.respond(sid, answer["headers"], answer["body"], answer["trailers"])
        spent += time.perf_counter() - t0
        pump(down, client, "a")
        done = client.streams.pop(sid)
        assert done["body"] == BODY and done["trailers"], done
        pump(client, down, "b"), pump(origin, up, "b")
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    peers = {"h2 (python-hyper)": h2_call_loop}
    if load_nghttp2():
        peers["libnghttp2 via ctypes"] = ng_call_loop
    else:
        print("libnghttp2 not found: h2 only")
    print(
        f"codec work of one proxied gRPC unary call, both proxy sessions, {args.calls} calls, best of {args.rounds}"
    )
    for name, loop in peers.items():
        loop(500)  # warm up
        best = min(loop(args.calls) for _ in range(args.rounds))
        print(f"{name:<24} {best / args.calls * 1e6:7.1f} us per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
