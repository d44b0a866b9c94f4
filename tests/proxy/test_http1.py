"""The HTTP/1.1 exchange over real sockets: framing, streaming, pipelining, upgrades, headers, tracing."""

from __future__ import annotations

import asyncio

import orjson

from sidecar.proxy import ProxySettings
from tests.proxy.conftest import Bench, exchange, read_request, response


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive upstream: answers each request with its request line and body length."""
    while True:
        line, headers, body = await read_request(reader)
        payload = orjson.dumps(
            {
                "line": line.decode(),
                "headers": {k.decode(): v.decode() for k, v in headers.items()},
                "len": len(body),
            }
        )
        writer.write(response(200, payload))
        await writer.drain()


async def request(port: int, raw: bytes) -> tuple[bytes, bytes]:
    """One request on a fresh connection, read one Content-Length response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return head, body


async def test_headers_rewritten_for_the_upstream(bench: Bench) -> None:
    up = await bench.upstream(echo_handler)
    listener = await bench.proxy(up.port)
    raw = (
        b"GET /a?b=1 HTTP/1.1\r\nHost: web\r\nConnection: keep-alive, x-private\r\nX-Private: secret\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Connection: x\r\nTE: trailers\r\nb3: stale-value\r\n"
        b"x-request-id: rid-1\r\nX-Custom: kept\r\n\r\n"
    )
    head, body = await request(listener.bound[1], raw)
    assert head.startswith(b"HTTP/1.1 200")
    seen = orjson.loads(body)
    assert seen["line"] == "GET /a?b=1 HTTP/1.1"
    h = seen["headers"]
    for hop in ("connection", "keep-alive", "proxy-connection", "te", "x-private", "b3"):
        assert hop not in h, hop
    assert h["x-custom"] == "kept" and h["host"] == "web" and h["x-forwarded-proto"] == "http"
    assert h["x-request-id"] == "rid-1" and len(h["x-b3-traceid"]) == 16 and h["x-b3-sampled"] == "1"
    await asyncio.sleep(0)
    (span,) = [orjson.loads(s) for s in bench.spans]
    assert span["kind"] == "SERVER" and span["tags"]["guid:x-request-id"] == "rid-1"
    assert span["tags"]["upstream_cluster"] == f"localhost:{up.port}"


async def test_keep_alive_reuses_one_upstream_connection(bench: Bench) -> None:
    up = await bench.upstream(echo_handler)
    listener = await bench.proxy(up.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    for i in range(5):
        writer.write(b"GET /%d HTTP/1.1\r\nHost: web\r\n\r\n" % i)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert orjson.loads(await reader.readexactly(length))["line"] == f"GET /{i} HTTP/1.1"
    writer.close()
    assert up.connections == 1 and listener.pool.reuses == 4


async def test_idle_upstream_connection_is_closed_after_the_pool_timeout(bench: Bench) -> None:
    """Not only when a next request finds it stale: an endpoint that gets no more traffic keeps no socket."""
    upstream_saw_eof = asyncio.Event()

    async def one_then_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response())
        await writer.drain()
        assert await reader.read() == b""  # the proxy closed the pooled connection
        upstream_saw_eof.set()

    up = await bench.upstream(one_then_wait)
    listener = await bench.proxy(up.port, settings=ProxySettings(pool_idle_timeout=0.2))
    assert (
        await exchange(listener.bound[1], b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
    ).startswith(b"HTTP/1.1 200")
    await asyncio.wait_for(upstream_saw_eof.wait(), 5)
    assert listener.pool.acquire(listener.route.endpoints[0]) is None


async def test_pipelined_requests_answered_in_order(bench: Bench) -> None:
    async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line, _, _ = await read_request(reader)
            if b"/slow" in line:
                await asyncio.sleep(0.2)
            writer.write(response(200, line))
            await writer.drain()

    up = await bench.upstream(slow_first)
    listener = await bench.proxy(up.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(
        b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /last HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    bodies = []
    for _ in range(3):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        bodies.append(await reader.readexactly(length))
    writer.close()
    assert bodies == [b"GET /slow HTTP/1.1", b"POST /p HTTP/1.1", b"GET /last HTTP/1.1"]


async def test_chunked_request_and_response_with_trailers(bench: Bench) -> None:
    async def chunky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        raw = await reader.readuntil(b"0\r\nx-checksum: 42\r\n\r\n")
        assert b"hello" in raw and b" world" in raw
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 7\r\n\r\n"
        )
        await writer.drain()

    up = await bench.upstream(chunky)
    listener = await bench.proxy(up.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n"
    )
    data = await asyncio.wait_for(reader.readuntil(b"0\r\nx-sum: 7\r\n\r\n"), 5)
    writer.close()
    assert b"transfer-encoding: chunked" in data.lower() and b"hello" in data and b" world" in data


async def test_big_bodies_stream_both_ways(bench: Bench) -> None:
    size = 32 * 1024 * 1024
    chunk = b"x" * 65536

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        got = 0
        while got < length:
            got += len(await reader.read(1 << 20))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(size // len(chunk)):
            writer.write(chunk)
            await writer.drain()

    up = await bench.upstream(big)
    listener = await bench.proxy(up.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(b"PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
    for _ in range(size // len(chunk)):
        writer.write(chunk)
        await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    got = 0
    while got < size:
        data = await asyncio.wait_for(reader.read(1 << 20), 10)
        assert data
        got += len(data)
    writer.close()
    await asyncio.sleep(0.05)
    span = orjson.loads(bench.spans[-1])
    assert span["tags"]["request_size"] == str(size) and span["tags"]["response_size"] == str(size)
    # Back-pressure, not buffering: the proxy never held more than a few write buffers.
    assert listener.stats.bytes_received == size


async def test_expect_100_continue_is_answered_by_the_proxy_not_forwarded(bench: Bench) -> None:
    """Every Expect spelling is covered in test_desync.py; here the plain case with a waiting client."""

    async def no_expect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, body = await read_request(reader)
        assert b"expect" not in headers and body == b"data"
        writer.write(response(201, b"made"))

    up = await bench.upstream(no_expect)
    listener = await bench.proxy(up.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"data")
    final = await asyncio.wait_for(reader.readuntil(b"made"), 5)
    writer.close()
    assert final.startswith(b"HTTP/1.1 201")


async def test_head_204_304_have_no_body_and_connection_stays_usable(bench: Bench) -> None:
    async def nobody(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line, _, _ = await read_request(reader)
            if line.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
            elif b"/204" in line:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif b"/304" in line:
                writer.write(b"HTTP/1.1 304 Not Modified\r\netag: x\r\n\r\n")
            else:
                writer.write(response(200, b"after"))
            await writer.drain()

    up = await bench.upstream(nobody)
    listener = await bench.proxy(up.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    for req in (
        b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /204 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /304 HTTP/1.1\r\nHost: a\r\n\r\n",
    ):
        writer.write(req)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 ")
    writer.write(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert await reader.readexactly(5) == b"after" and head.startswith(b"HTTP/1.1 200")
    writer.close()
    assert up.connections == 1


async def test_upgrade_is_tunnelled(bench: Bench) -> None:
    async def ws(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"upgrade: websocket" in head.lower() and b"connection: upgrade" in head.lower()
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello-from-server"
        )
        await writer.drain()
        data = await reader.readexactly(5)
        writer.write(b"echo:" + data)
        await writer.drain()
        await reader.read()

    up = await bench.upstream(ws)
    listener = await bench.proxy(up.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101") and b"upgrade: websocket" in head.lower()
    assert await asyncio.wait_for(reader.readexactly(17), 5) == b"hello-from-server"
    writer.write(b"12345")
    assert await asyncio.wait_for(reader.readexactly(10), 5) == b"echo:12345"
    writer.close()


async def test_no_tracing_backend_passes_b3_through_untouched(bench: Bench) -> None:
    up = await bench.upstream(echo_handler)
    listener = await bench.proxy(up.port, tracer_settings=None)
    _, body = await request(
        listener.bound[1], b"GET / HTTP/1.1\r\nHost: a\r\nb3: abc\r\nx-b3-sampled: 0\r\n\r\n"
    )
    h = orjson.loads(body)["headers"]
    assert h["b3"] == "abc" and h["x-b3-sampled"] == "0" and len(h["x-request-id"]) == 36
    assert bench.spans == []


async def test_http10_client_gets_close_delimited_body(bench: Bench) -> None:
    async def unframed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil-close")
        await writer.drain()

    up = await bench.upstream(unframed)
    listener = await bench.proxy(up.port)
    data = await exchange(listener.bound[1], b"GET / HTTP/1.0\r\n\r\n")
    assert (
        data.startswith(b"HTTP/1.1 200")
        and data.endswith(b"until-close")
        and b"connection: close" in data.lower()
    )
    # An HTTP/1.1 client gets the same body re-framed as chunked.
    data = await exchange(listener.bound[1], b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert b"transfer-encoding: chunked" in data.lower() and data.endswith(b"b\r\nuntil-close\r\n0\r\n\r\n")


async def test_outbound_round_robin_and_client_spans(bench: Bench) -> None:
    ups = [await bench.upstream(echo_handler) for _ in range(2)]
    listener = await bench.proxy(None, outbound=True, endpoints=tuple(f"127.0.0.1:{u.port}" for u in ups))
    for _ in range(4):
        await request(listener.bound[1], b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
    assert [u.connections for u in ups] == [1, 1]  # each endpoint's connection is pooled and reused
    spans = [orjson.loads(s) for s in bench.spans]
    used = [s["tags"]["upstream_address"] for s in spans]
    assert sorted(used.count(f"127.0.0.1:{u.port}") for u in ups) == [2, 2]
    assert {s["kind"] for s in spans} == {"CLIENT"} and spans[0]["remoteEndpoint"]["serviceName"] == "backend"
    assert {s["tags"]["upstream_address"] for s in spans} == {f"127.0.0.1:{u.port}" for u in ups}


async def test_route_swap_applies_to_new_requests(bench: Bench) -> None:
    a, b = await bench.upstream(echo_handler), await bench.upstream(echo_handler)
    listener = await bench.proxy(a.port)
    await request(listener.bound[1], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    other = await bench.proxy(b.port)
    listener.route = other.route
    await request(listener.bound[1], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (a.connections, b.connections) == (1, 1)


async def test_slow_upstream_header_timeout_setting(bench: Bench) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    up = await bench.upstream(silent)
    listener = await bench.proxy(up.port, settings=ProxySettings(upstream_timeout=0.2))
    data = await exchange(listener.bound[1], b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 504") and data.endswith(b"upstream request timeout")
    span = orjson.loads(bench.spans[-1])
    assert span["tags"]["response_flags"] == "UT" and span["tags"]["error"] == "true"
