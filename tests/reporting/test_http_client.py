"""The reporter's HTTP/1.1 client against a scripted raw backend on loopback: framing of answers, the
keep-alive rules, and whether a failed request had left whole (`Failed.handed`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.reporting import http_client
from sidecar.reporting.http import HttpTransport
from sidecar.reporting.http_client import MAX_BODY, MAX_HEAD, Answer, Failed, HttpClient
from tests.reporting.fake_collector import narrow_server

uvloop = pytest.importorskip("uvloop")

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
Main = Callable[["Backend"], Coroutine[Any, Any, None]]
Run = Callable[[Main], None]


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a test's coroutine with a started Backend, on each loop: the sidecar runs on uvloop,
    whose transports differ from asyncio's (these tests run their own loops, as test_acceptor.py)."""

    def runner(main: Main) -> None:
        async def with_backend() -> None:
            backend = Backend()
            server = await asyncio.start_server(backend.serve, "127.0.0.1", 0)
            backend.port = server.sockets[0].getsockname()[1]
            try:
                await main(backend)
            finally:
                server.close()

        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            runner.run(with_backend())

    return runner


HANG = b"hang"  # a piece that is never sent: the backend stops there and holds the connection
CUT = b"cut"  # a piece that is never sent: the backend closes the connection there


@dataclass
class Backend:
    """Answers each request with the next script entry (a list of pieces written one by one, the
    connection closed after the last one if `close`), then 202s; records what came, per connection."""

    script: list[tuple[list[bytes], bool]] = field(default_factory=list)
    requests: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # (connection, head, body)
    connections: int = 0
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                self.requests.append((conn, head, body))
                pieces, close = self.script.pop(0) if self.script else ([OK], False)
                for piece in pieces:
                    if piece == HANG:
                        await asyncio.Event().wait()
                    if piece == CUT:
                        return
                    writer.write(piece)
                    await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"


def head(backend: Backend, body: bytes) -> bytes:
    return (
        f"POST /api/v2/spans?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{backend.port}\r\nb3: 0\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()


@contextlib.contextmanager
def client_of(port: int, limit: int = 4) -> Iterator[HttpClient]:
    client = HttpClient("127.0.0.1", port, limit=limit)
    try:
        yield client
    finally:
        client.close()


async def post(client: HttpClient, backend: Backend, body: bytes = b"[]", timeout: float = 5.0) -> Answer:
    return await client.request(head(backend, body), body, timeout)


# Framing and keep-alive: (answer as written, then closed?) -> (status, body, Retry-After, reused)
ANSWERS = [
    (OK, False, 202, b"", None, True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", False, 200, b"hello", None, True),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
        False,
        200,
        b"hello",
        None,
        True,
    ),
    (b"HTTP/1.1 200 OK\r\n\r\nhello", True, 200, b"hello", None, False),  # ends with the connection
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", True, 200, b"ok", None, False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", True, 200, b"ok", None, False),
    (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
        False,
        202,
        b"",
        None,
        True,
    ),
    (b"HTTP/1.1 204 No Content\r\n\r\n", False, 204, b"", None, True),
    (b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy", False, 503, b"busy", "7", True),
    (b"HTTP/1.1 400 Bad\r\nContent-Length: 3\r\n\r\nbad", False, 400, b"bad", None, True),
    # Read, but the connection is not kept: framing another parser could read otherwise (h11 takes
    # neither HTTP/1.0 keep-alive nor codings before chunked; found by fuzz/fuzz_collector.py).
    (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
        False,
        200,
        b"ok",
        None,
        False,
    ),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        False,
        200,
        b"ok",
        None,
        False,
    ),
    (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n",
        False,
        200,
        b"ok",
        None,
        True,
    ),  # a blank line after
]


@pytest.mark.parametrize(("answer", "close", "status", "body", "retry_after", "reused"), ANSWERS)
def test_answers(
    run: Run, answer: bytes, close: bool, status: int, body: bytes, retry_after: str | None, reused: bool
) -> None:
    async def main(backend: Backend) -> None:
        backend.script = [([answer], close)]
        with client_of(backend.port) as client:
            assert await post(client, backend) == Answer(status, body, retry_after)
            assert await post(client, backend) == Answer(202, b"", None)  # the next one goes through
        assert backend.connections == (1 if reused else 2)

    run(main)


def test_the_request_on_the_wire(run: Run) -> None:
    async def main(backend: Backend) -> None:
        body = b'[{"traceId":"1"}]'
        with client_of(backend.port) as client:
            await post(client, backend, body)
            # "Handed over" waits for an empty write buffer: asyncio says when, with limits of 0.
            ((conn,),) = [client._idle]
            assert conn.transport is not None and conn.transport.get_write_buffer_limits() == (0, 0)
        ((_, got_head, got_body),) = backend.requests
        assert got_head == head(backend, body) and got_body == body

    run(main)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    answer=st.sampled_from([a for a in ANSWERS if not a[1]]),
    cuts=st.lists(st.integers(min_value=1, max_value=120), max_size=6),
)
def test_an_answer_in_any_pieces_reads_as_written_whole(
    run: Run, answer: tuple[bytes, bool, int, bytes, str | None, bool], cuts: list[int]
) -> None:
    """What the client takes from an answer does not depend on how the bytes arrive."""

    async def main(backend: Backend) -> None:
        raw, _, status, body, retry_after, _ = answer
        points = sorted({c for c in cuts if c < len(raw)})
        pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
        backend.script = [(pieces, False)]
        with client_of(backend.port) as client:
            assert await post(client, backend) == Answer(status, body, retry_after)

    run(main)


# Failures: whether the request had left whole decides if the reporter may send the batch again.


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (([b"FOO / bar\r\n\r\n"], False), "malformed answer"),
        (([CUT], True), "connection closed before the answer"),
        (([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"], True), "connection closed"),
        (
            ([b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n"], False),
            "switched",
        ),
        (
            ([b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + OK], False),
            "declares a body",
        ),
    ],
)
def test_no_answer_after_the_whole_request(run: Run, entry: tuple[list[bytes], bool], reason: str) -> None:
    async def main(backend: Backend) -> None:
        backend.script = [entry]
        with client_of(backend.port) as client:
            with pytest.raises(Failed, match=reason) as failed:
                await post(client, backend)
            assert failed.value.handed
            assert await post(client, backend) == Answer(202, b"", None)  # on a new connection
        assert backend.connections == 2

    run(main)


def test_no_answer_in_time(run: Run) -> None:
    async def main(backend: Backend) -> None:
        backend.script = [([HANG], False)]
        with client_of(backend.port) as client:
            with pytest.raises(Failed, match="TimeoutError") as failed:
                await post(client, backend, timeout=0.2)
            assert failed.value.handed

    run(main)


def test_refused_is_not_handed(run: Run) -> None:
    async def main(backend: Backend) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))  # bound, not listening: refused
        try:
            with (
                client_of(sock.getsockname()[1]) as client,
                pytest.raises(Failed, match="ConnectionRefusedError") as failed,
            ):
                await client.request(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"", 5.0)
            assert not failed.value.handed
        finally:
            sock.close()

    run(main)


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts and never reads."""
    await asyncio.Event().wait()


def test_timeout_while_the_body_is_still_going_out_is_not_handed(run: Run) -> None:
    async def main(backend: Backend) -> None:
        server, port = await narrow_server(hold)
        try:
            with client_of(port) as client, pytest.raises(Failed, match="TimeoutError") as failed:
                await client.request(
                    b"POST / HTTP/1.1\r\nContent-Length: 12000000\r\n\r\n", b"x" * 12_000_000, 0.3
                )
            assert not failed.value.handed
        finally:
            server.close()

    run(main)


def test_an_answer_before_the_body_is_read_settles_it_and_the_connection_is_dropped(run: Run) -> None:
    """A backend that refuses a body it has not read (413) has answered: the batch is settled, and
    the connection, with the body's rest still in its buffer, is not used again."""

    async def main(backend: Backend) -> None:
        connections = 0

        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            await asyncio.Event().wait()

        server, port = await narrow_server(refuse)
        body = b"x" * 12_000_000
        request = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body)
        try:
            with client_of(port) as client:
                assert (await client.request(request, body, 5.0)).status == 413
                assert (await client.request(request, body, 5.0)).status == 413
        finally:
            server.close()
        assert connections == 2

    run(main)


def test_a_second_answer_in_the_same_read_drops_the_connection(run: Run) -> None:
    async def main(backend: Backend) -> None:
        backend.script = [([OK + OK], False)]
        with client_of(backend.port) as client:
            assert await post(client, backend) == Answer(202, b"", None)
            assert await post(client, backend) == Answer(202, b"", None)
        assert backend.connections == 2

    run(main)


def test_an_idle_connection_the_backend_closed_is_not_used(run: Run) -> None:
    async def main(backend: Backend) -> None:
        backend.script = [([OK], True)]  # answers with keep-alive, then closes
        with client_of(backend.port) as client:
            await post(client, backend)
            while not all(c.closed for c in client._idle):  # the backend's FIN, seen while idle
                await asyncio.sleep(0.01)
            assert await post(client, backend) == Answer(202, b"", None)
        assert backend.connections == 2

    run(main)


def test_an_idle_connection_is_kept_only_so_long(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main(backend: Backend) -> None:
        monkeypatch.setattr(http_client, "KEEPALIVE", 0.0)
        with client_of(backend.port) as client:
            await post(client, backend)
            await post(client, backend)
        assert backend.connections == 2

    run(main)


def test_limits_on_what_an_answer_may_hold(run: Run) -> None:
    async def main(backend: Backend) -> None:
        big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 10) + b"y" * (MAX_BODY + 10)
        huge_head = b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"z" * MAX_HEAD + b"\r\n\r\n"
        backend.script = [([big], False), ([huge_head], False)]
        with client_of(backend.port) as client:
            answer = await post(client, backend)
            assert answer.status == 200 and answer.body == b"y" * MAX_BODY
            with pytest.raises(Failed, match="answer head larger"):
                await post(client, backend)

    run(main)


def test_concurrent_requests_use_their_own_connections_and_pool_them(run: Run) -> None:
    async def main(backend: Backend) -> None:
        with client_of(backend.port, limit=2) as client:
            answers = await asyncio.gather(*(post(client, backend, b"[%d]" % i) for i in range(4)))
            assert all(a.status == 202 for a in answers)
            assert sorted(body for _, _, body in backend.requests) == [b"[%d]" % i for i in range(4)]
            assert len(client._idle) == 2  # the others were closed, not kept

    run(main)


def test_a_head_that_never_ends_is_cut_off(run: Run) -> None:
    """One header line longer than the limit, sent slowly: the client stops before it ends."""

    async def main(backend: Backend) -> None:
        endless = [b"HTTP/1.1 200 OK\r\nX-Filler: "] + [b"z" * 8192] * (MAX_HEAD // 8192 + 2) + [HANG]
        backend.script = [(endless, False)]
        with client_of(backend.port) as client:
            with pytest.raises(Failed, match="answer head larger") as failed:
                await post(client, backend)
            assert failed.value.handed

    run(main)


@pytest.mark.parametrize(
    ("url", "request_line", "host"),
    [
        ("http://collector:9411/api/v2/spans", b"POST /api/v2/spans HTTP/1.1", b"collector:9411"),
        ("http://otel", b"POST / HTTP/1.1", b"otel"),
        ("http://[::1]:4318/v1/traces?a=b c", b"POST /v1/traces?a=b%20c HTTP/1.1", b"[::1]:4318"),
        ("http://h/p ath/%41/\u00e9", b"POST /p%20ath/%41/%C3%A9 HTTP/1.1", b"h"),
        ("https://collector/api/v2/spans", None, None),  # TLS: aiohttp
        ("http://user:pw@collector/api/v2/spans", None, None),  # credentials: aiohttp
        ("http://b\u00fccher.example/api/v2/spans", None, None),  # an IDN: aiohttp encodes it
    ],
)
def test_which_urls_the_own_client_takes(url: str, request_line: bytes | None, host: bytes | None) -> None:
    head = HttpTransport._plain_head(url, "application/json")
    if request_line is None:
        assert head is None
        return
    assert head is not None
    lines = head.split(b"\r\n")
    assert lines[0] == request_line and lines[1] == b"Host: " + host
    assert head.endswith(b"b3: 0\r\nContent-Length: ")
