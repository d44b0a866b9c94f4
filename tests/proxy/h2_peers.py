"""Scriptable HTTP/2 peers for the proxy tests, on python-hyper's h2 (the same library, other side)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
from hyperframe.frame import Frame, GoAwayFrame

Headers = list[tuple[bytes, bytes]]
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]


@dataclass
class Response:
    status: int = 0
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    trailers: Headers = field(default_factory=list)
    reset: int | None = None
    head: asyncio.Event = field(default_factory=asyncio.Event)  # the final response head is in
    done: asyncio.Event = field(default_factory=asyncio.Event)


class H2Client:
    """A client connection; `auto_ack=False` never opens its windows (a client that does not read)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, auto_ack: bool = True
    ) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        self.auto_ack = auto_ack
        self.responses: dict[int, Response] = {}
        self.goaway: int | None = None
        self.window_event = asyncio.Event()
        self.closed = asyncio.Event()
        self._task = asyncio.ensure_future(self._read())
        self.flush()

    @classmethod
    async def open(cls, port: int, **kw: bool) -> H2Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, **kw)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    def request(self, headers: Headers = GET, *, end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.responses[sid] = Response()
        self.conn.send_headers(sid, headers, end_stream=end)
        self.flush()
        return sid

    async def send_all(self, sid: int, data: bytes, *, end: bool = True, until_blocked: bool = False) -> int:
        """Send `data` as the windows allow; with `until_blocked`, stop when they shut: bytes sent."""
        sent = 0
        while sent < len(data):
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                if until_blocked:
                    return sent
                self.window_event.clear()
                await self.window_event.wait()
                continue
            piece = data[sent : sent + window]
            self.conn.send_data(sid, piece)
            sent += len(piece)
            self.flush()
            await asyncio.sleep(0)
        if end:
            self.conn.end_stream(sid)
            self.flush()
        return sent

    async def _read(self) -> None:
        buffer = b""
        try:
            while data := await self.reader.read(65536):
                buffer += data
                frames, buffer = self._without_goaway(buffer)
                for event in self.conn.receive_data(frames):
                    self._on(event)
                self.flush()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.closed.set()
            for response in self.responses.values():
                response.head.set()
                response.done.set()

    def _without_goaway(self, data: bytes) -> tuple[bytes, bytes]:
        """Complete frames minus GOAWAY (noted in `goaway`), and the rest. h2 closes its state machine
        on a GOAWAY, which would refuse the responses of a graceful drain that follow it."""
        out = b""
        while len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            if len(data) < 9 + length:
                break
            frame, data = data[: 9 + length], data[9 + length :]
            if frame[3] == 0x7:
                self.goaway = int.from_bytes(frame[13:17], "big")
            else:
                out += frame
        return out, data

    def _on(self, event: h2.events.Event) -> None:
        sid = getattr(event, "stream_id", None)
        response = self.responses.get(sid) if sid else None
        if isinstance(event, h2.events.ResponseReceived) and response is not None:
            response.headers = list(event.headers)  # type: ignore[arg-type]
            response.status = int(dict(response.headers)[b":status"])
            response.head.set()
        elif isinstance(event, h2.events.DataReceived) and response is not None:
            response.body += event.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived) and response is not None:
            response.trailers = list(event.headers)  # type: ignore[arg-type]
        elif isinstance(event, h2.events.StreamEnded) and response is not None:
            response.done.set()
        elif isinstance(event, h2.events.StreamReset) and response is not None:
            response.reset = event.error_code
            response.done.set()
        elif isinstance(event, h2.events.WindowUpdated):
            self.window_event.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event.error_code

    def send_goaway(self) -> None:
        """A graceful goodbye (NO_ERROR), written beside h2, whose own would close its state machine."""
        self.writer.write(goaway_frame(0))

    async def response(self, sid: int, timeout: float = 10.0) -> Response:
        response = self.responses[sid]
        await asyncio.wait_for(response.done.wait(), timeout)
        return response

    async def close(self) -> None:
        self.writer.close()
        self._task.cancel()


# Raw frames, for the tests that speak HTTP/2 byte by byte -------------------------------------------
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def parse_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """The whole frames at the start of `data`, in order, and the bytes of a partial one after them."""
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames, data


async def read_to_close(reader: asyncio.StreamReader, timeout: float = 10) -> list[Frame]:
    """Every frame the proxy writes until it closes the connection."""
    data = b""
    async with asyncio.timeout(timeout):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:  # closed while the client was still writing: the kernel resets
            pass
    return parse_frames(data)[0]


def goaway_codes(frames: list[Frame]) -> list[int]:
    return [f.error_code for f in frames if isinstance(f, GoAwayFrame)]


class Frames:
    """Frames read from a connection, in order, across reads."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.pending: list[Frame] = []
        self.data = b""

    async def until(self, match: Callable[[Frame], bool], timeout: float = 10) -> Frame:
        """The next frame that matches (those before it are read and passed over)."""
        async with asyncio.timeout(timeout):
            while True:
                while self.pending:
                    frame = self.pending.pop(0)
                    if match(frame):
                        return frame
                chunk = await self.reader.read(65536)
                assert chunk, "closed"
                self.pending, self.data = parse_frames(self.data + chunk)


def goaway_frame(last_stream_id: int) -> bytes:
    frame = GoAwayFrame(0)
    frame.last_stream_id = last_stream_id
    frame.error_code = 0
    return bytes(frame.serialize())


Handler = Callable[["H2Server", int, Headers], Awaitable[None]]


class H2Server:
    """An HTTP/2 origin: `handler(server, stream_id, headers)` per request on the current connection;
    `on_connection(n)` runs when connection number n (from 1) is made (e.g. to send GOAWAY)."""

    def __init__(self, handler: Handler, *, reads: bool = True) -> None:
        self.handler = handler
        self.reads = reads  # False: never acknowledges request data (a server that does not read)
        self.connections = 0
        self.requests: list[Headers] = []
        self.bodies: dict[int, bytes] = {}
        self.server: asyncio.Server | None = None
        self.conn: h2.connection.H2Connection | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.goaway_first: bool = False
        self.disconnected = asyncio.Event()  # a connection ended
        self._tasks: set[asyncio.Future[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> H2Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def flush(self) -> None:
        assert self.conn is not None and self.writer is not None
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        self.conn, self.writer = conn, writer
        writer.write(conn.data_to_send())
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers: Headers = list(event.headers)  # type: ignore[arg-type]
                        self.requests.append(headers)
                        if self.goaway_first and number == 1:
                            conn.close_connection(last_stream_id=0)
                        else:
                            task = asyncio.ensure_future(self.handler(self, event.stream_id, headers))
                            self._tasks.add(task)
                            task.add_done_callback(self._tasks.discard)
                    elif isinstance(event, h2.events.DataReceived):
                        self.bodies[event.stream_id] = self.bodies.get(event.stream_id, b"") + event.data
                        if self.reads:
                            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                writer.write(conn.data_to_send())
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()
            self.disconnected.set()

    def send_goaway(self, last_stream_id: int) -> None:
        """A graceful GOAWAY (NO_ERROR) on the current connection, written beside h2 so that this
        server can still answer the streams up to `last_stream_id`, as a gRPC server stopping does."""
        assert self.writer is not None
        self.flush()
        self.writer.write(goaway_frame(last_stream_id))

    def respond(self, sid: int, headers: Headers, body: bytes = b"", trailers: Headers | None = None) -> None:
        assert self.conn is not None
        self.conn.send_headers(sid, headers, end_stream=not body and not trailers)
        if body:
            self.conn.send_data(sid, body, end_stream=not trailers)
        if trailers:
            self.conn.send_headers(sid, trailers, end_stream=True)
        self.flush()


async def ok(server: H2Server, sid: int, headers: Headers) -> None:
    server.respond(sid, [(b":status", b"200"), (b"content-length", b"2")], b"ok")


async def never(server: H2Server, sid: int, headers: Headers) -> None:
    """Takes the request and never answers."""
