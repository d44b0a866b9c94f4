"""HTTP/2 streams through the proxy: flow control that never buffers beyond the windows, trailers, GOAWAY
retries, drain, timeouts; HTTP/2 clients on `http` listeners reach HTTP/1.1 upstreams."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.proxy import Listener, ProxySettings
from sidecar.proxy.http2 import H2Downstream
from tests.proxy.conftest import Bench, read_request
from tests.proxy.h2_peers import GET, H2Client, H2Server, Headers, never, ok

POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/up")]

pytestmark = pytest.mark.usefixtures("h2_codec")  # every test on both codecs


@pytest.fixture
async def h2_server() -> H2Server:
    return await H2Server(ok).start()


async def test_streams_multiplexed_on_one_upstream_connection(bench: Bench, h2_server: H2Server) -> None:
    listener = await bench.proxy(h2_server.port, protocol="http2")
    client = await H2Client.open(listener.bound[1])
    sids = [client.request() for _ in range(20)]
    for sid in sids:
        response = await client.response(sid)
        assert response.status == 200 and response.body == b"ok"
    assert h2_server.connections == 1 and len(h2_server.requests) == 20
    headers = dict(h2_server.requests[0])
    assert headers[b"x-b3-sampled"] == b"1" and headers[b"x-forwarded-proto"] == b"http"
    assert len(bench.spans) == 20 and listener.stats.streams_active == 0
    await client.close()


async def test_request_body_never_buffered_beyond_the_windows(bench: Bench) -> None:
    silent = await H2Server(never, reads=False).start()  # takes the first 64 KiB, never opens its window
    settings = ProxySettings()
    listener = await bench.proxy(silent.port, protocol="http2", settings=settings)
    client = await H2Client.open(listener.bound[1])
    sid = client.request(POST, end=False)
    sent = await asyncio.wait_for(client.send_all(sid, b"x" * (8 << 20), until_blocked=True), 10)
    # The client could send its initial stream window plus what the upstream took, nothing more.
    assert settings.h2_stream_window <= sent <= settings.h2_stream_window + 65535
    while sum(len(b) for b in silent.bodies.values()) < 65535:  # the upstream took its window
        await asyncio.sleep(0.01)
    (down,) = [c for c in listener.connections if isinstance(c, H2Downstream)]
    (stream,) = down.streams.values()
    assert stream.request_size == sent  # everything sent arrived, and nothing was acked beyond it
    assert client.conn.local_flow_control_window(sid) == 0
    await client.close()
    await silent.close()


async def test_response_body_never_buffered_beyond_the_windows(bench: Bench) -> None:
    wrote = 0

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal wrote
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (64 << 20))
        for _ in range(1024):
            writer.write(b"y" * 65536)
            wrote += 65536
            await writer.drain()  # blocks once the proxy stops reading

    up = await bench.upstream(big)
    settings = ProxySettings()
    listener = await bench.proxy(up.port, settings=settings)  # `http`: an h2c client, HTTP/1.1 upstream
    client = await H2Client.open(listener.bound[1], auto_ack=False)  # a client that never reads
    sid = client.request()
    while not client.responses[sid].body:
        await asyncio.sleep(0.01)
    (down,) = [c for c in listener.connections if isinstance(c, H2Downstream)]
    for _ in range(3):  # whatever the upstream writes now stays in its socket, not in the proxy
        before = wrote
        await asyncio.sleep(0.2)
        if wrote == before:
            break
    assert wrote < 64 << 20
    assert down.queued(sid) <= settings.buffer_high + 65536
    await client.close()


async def test_complete_response_stops_the_upload(bench: Bench, h2_server: H2Server) -> None:
    listener = await bench.proxy(h2_server.port, protocol="http2")  # answers at once, body or not
    client = await H2Client.open(listener.bound[1])
    sid = client.request(POST, end=False)
    response = await client.response(sid)
    assert response.status == 200 and response.body == b"ok"
    while client.responses[sid].reset is None:  # RST_STREAM(NO_ERROR): stop sending (RFC 9113 8.1)
        await asyncio.sleep(0.01)
    assert client.responses[sid].reset == 0 and len(bench.spans) == 1
    await client.close()


async def test_h1_trailers_become_h2_trailers(bench: Bench) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n"
                     b"3\r\nabc\r\n0\r\nx-sum: 42\r\n\r\n")  # fmt: skip
        await writer.drain()

    up = await bench.upstream(chunked)
    listener = await bench.proxy(up.port)
    client = await H2Client.open(listener.bound[1])
    response = await client.response(client.request())
    assert response.body == b"abc" and response.trailers == [(b"x-sum", b"42")]
    assert b"transfer-encoding" not in dict(response.headers) and b"trailer" not in dict(response.headers)
    await client.close()


async def test_h2_request_body_to_h1_upstream_is_chunked(bench: Bench) -> None:
    up, got = await bench.recording_upstream(b"HTTP/1.1 204 No Content\r\n\r\n")
    listener = await bench.proxy(up.port)
    client = await H2Client.open(listener.bound[1])
    sid = client.request([*POST, (b"cookie", b"a=1"), (b"cookie", b"b=2")], end=False)
    await client.send_all(sid, b"hello")
    assert (await client.response(sid)).status == 204
    ((line, headers, body),) = got
    assert line == b"POST /up HTTP/1.1" and body == b"hello" and headers[b"host"] == b"a"
    assert headers[b"transfer-encoding"] == b"chunked" and headers[b"cookie"] == b"a=1; b=2"
    await client.close()


async def test_goaway_refused_stream_is_retried_on_a_new_connection(bench: Bench) -> None:
    server = await H2Server(ok).start()
    server.goaway_first = True  # the first connection answers its first request with GOAWAY(0)
    listener = await bench.proxy(server.port, protocol="http2")
    client = await H2Client.open(listener.bound[1])
    response = await client.response(client.request())
    assert response.status == 200 and server.connections == 2
    await client.close()
    await server.close()


async def test_upstream_goaway_lets_its_open_streams_finish(bench: Bench) -> None:
    """A gRPC server stopping with a grace period: GOAWAY naming the stream in flight, then its answer.
    The answer reaches the client, and the next request goes to a new connection."""

    async def goodbye_then_answer(server: H2Server, sid: int, headers: Headers) -> None:
        if server.connections == 1:
            server.send_goaway(last_stream_id=sid)
        await ok(server, sid, headers)

    server = await H2Server(goodbye_then_answer).start()
    listener = await bench.proxy(server.port, protocol="http2")
    client = await H2Client.open(listener.bound[1])
    first = await client.response(client.request())
    assert first.status == 200 and first.body == b"ok" and first.reset is None
    second = await client.response(client.request())
    assert second.status == 200 and server.connections == 2
    assert len(bench.spans) == 2 and all(b'"error"' not in s for s in bench.spans)
    await client.close()
    await server.close()


async def held_stream(bench: Bench) -> tuple[H2Server, asyncio.Event, Listener, H2Client, int]:
    """A stream open through the proxy to an origin that answers once `release` is set."""
    release = asyncio.Event()

    async def later(server: H2Server, sid: int, headers: Headers) -> None:
        await release.wait()
        await ok(server, sid, headers)

    server = await H2Server(later).start()
    listener = await bench.proxy(server.port, protocol="http2")
    client = await H2Client.open(listener.bound[1])
    sid = client.request()
    while not server.requests:
        await asyncio.sleep(0.01)
    return server, release, listener, client, sid


async def test_client_goaway_with_a_stream_open_still_gets_its_answer(bench: Bench) -> None:
    server, release, _, client, sid = await held_stream(bench)
    client.send_goaway()
    while client.goaway is None:  # the proxy answers in kind: no new streams, the open one finishes
        await asyncio.sleep(0.01)
    release.set()
    response = await client.response(sid)
    assert response.status == 200 and response.body == b"ok" and response.reset is None
    await asyncio.wait_for(client.closed.wait(), 5)  # then the proxy closes the connection
    await server.close()


async def test_idle_upstream_connection_is_closed_after_the_pool_timeout(bench: Bench) -> None:
    server = await H2Server(ok).start()
    listener = await bench.proxy(server.port, protocol="http2", settings=ProxySettings(pool_idle_timeout=0.2))
    client = await H2Client.open(listener.bound[1])
    assert (await client.response(client.request())).status == 200
    await asyncio.wait_for(server.disconnected.wait(), 5)  # GOAWAY and close, with no stream open
    assert (await client.response(client.request())).status == 200  # the next one opens another
    assert server.connections == 2
    await client.close()
    await server.close()


async def test_drain_sends_goaway_and_lets_the_stream_finish(bench: Bench) -> None:
    server, release, listener, client, sid = await held_stream(bench)
    drain = asyncio.ensure_future(listener.drain(5.0))
    while client.goaway is None:
        await asyncio.sleep(0.01)
    assert client.goaway == 0  # NO_ERROR: no new streams, finish what is open
    release.set()
    assert (await client.response(sid)).status == 200
    await asyncio.wait_for(drain, 5)
    await asyncio.wait_for(client.closed.wait(), 5)
    await server.close()


async def test_idle_stream_is_ended(bench: Bench) -> None:
    server = await H2Server(never).start()
    listener = await bench.proxy(
        server.port, protocol="http2", settings=ProxySettings(stream_idle_timeout=0.2)
    )
    client = await H2Client.open(listener.bound[1])
    response = await client.response(client.request(), timeout=10)
    assert response.status == 504
    await client.close()
    await server.close()


async def test_grpc_timeout_caps_the_upstream_timeout(bench: Bench) -> None:
    server = await H2Server(never).start()
    listener = await bench.proxy(server.port, protocol="grpc")
    client = await H2Client.open(listener.bound[1])
    grpc_call = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/t.E/M"),
                 (b"content-type", b"application/grpc"), (b"te", b"trailers"), (b"grpc-timeout", b"200m")]  # fmt: skip
    response = await client.response(client.request(grpc_call), timeout=5)
    headers = dict(response.headers)
    assert response.status == 200 and headers[b"grpc-status"] == b"4"  # DEADLINE_EXCEEDED, trailers-only
    assert dict(server.requests[0])[b"te"] == b"trailers"
    await client.close()
    await server.close()


async def test_grpc_timeout_caps_the_upstream_timeout_toward_http1_too(bench: Bench) -> None:
    """gRPC over an `http` listener whose upstream speaks HTTP/1.1: the caller's deadline still holds (it
    was ignored on this path, so the call waited for --upstream-timeout)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answers

    up = await bench.upstream(silent)
    listener = await bench.proxy(up.port, settings=ProxySettings(upstream_timeout=30.0))
    client = await H2Client.open(listener.bound[1])
    grpc_call = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/t.E/M"),
                 (b"content-type", b"application/grpc"), (b"te", b"trailers"), (b"grpc-timeout", b"200m")]  # fmt: skip
    response = await client.response(client.request(grpc_call), timeout=5)
    assert response.status == 200 and dict(response.headers)[b"grpc-status"] == b"4"
    assert listener.stats.local_replies == {"UT": 1}
    await client.close()


async def test_no_endpoint_is_unavailable_for_grpc_and_503_otherwise(bench: Bench) -> None:
    listener = await bench.proxy(None, protocol="grpc", outbound=True, endpoints=())
    client = await H2Client.open(listener.bound[1])
    grpc_call = [*POST, (b"content-type", b"application/grpc")]
    grpc_reply = await client.response(client.request(grpc_call))
    assert dict(grpc_reply.headers)[b"grpc-status"] == b"14" and grpc_reply.body == b""
    plain = await client.response(client.request(GET))
    assert plain.status == 503 and plain.body == b"no healthy upstream"
    assert listener.stats.local_replies == {"UH": 2}
    await client.close()
