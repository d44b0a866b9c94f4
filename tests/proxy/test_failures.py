"""Upstream failures become Envoy's local replies and flags; downstream failures are recorded; drain."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson

from sidecar.proxy import ProxySettings
from tests.proxy.conftest import Bench, exchange, read_request, response


def last_span(bench: Bench) -> dict:  # type: ignore[type-arg]
    return orjson.loads(bench.spans[-1])  # type: ignore[no-any-return]


async def test_connect_failure_is_503_uf(bench: Bench, refused_port: int) -> None:
    listener = await bench.proxy(refused_port)
    reply = await exchange(listener.bound[1], b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 503 ") and reply.endswith(b"reset reason: connection failure")
    span = last_span(bench)
    assert (
        span["tags"]["response_flags"] == "UF"
        and span["tags"]["http.status_code"] == "503"
        and span["tags"]["error"] == "true"
    )
    assert listener.stats.local_replies == {"UF": 1} and listener.stats.requests["5xx"] == 1


async def test_no_endpoint_is_503_uh(bench: Bench) -> None:
    listener = await bench.proxy(None, outbound=True, endpoints=())
    reply = await exchange(listener.bound[1], b"GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 503 ") and reply.endswith(b"no healthy upstream")
    assert last_span(bench)["tags"]["response_flags"] == "UH"


async def test_reset_before_headers_is_503_ur(bench: Bench) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    up = await bench.upstream(reset)
    listener = await bench.proxy(up.port)
    reply = await exchange(
        listener.bound[1], b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
    )
    assert reply.startswith(b"HTTP/1.1 503 ") and b"connection termination" in reply
    assert last_span(bench)["tags"]["response_flags"] == "UR"


async def test_reset_mid_body_cuts_the_client(bench: Bench) -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    up = await bench.upstream(half)
    listener = await bench.proxy(up.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(1024), 5):
            data += chunk
    except ConnectionResetError:
        pass
    writer.close()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"partial")  # never a complete-looking body
    await asyncio.sleep(0.05)
    assert last_span(bench)["tags"]["response_flags"] == "UR"


async def test_stale_pooled_connection_does_not_cost_a_request(bench: Bench) -> None:
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(200, b"ok"))  # keep-alive promised, then closed while idle
        await writer.drain()
        await asyncio.sleep(0.05)

    up = await bench.upstream(one_per_connection)
    listener = await bench.proxy(up.port)
    for _ in range(3):
        reply = await exchange(listener.bound[1], b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.1)
    assert listener.stats.requests["5xx"] == 0


async def test_downstream_closing_early_is_dc(bench: Bench) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.3)
        writer.write(response(200, b"late"))

    up = await bench.upstream(slow)
    listener = await bench.proxy(up.port)
    _, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    for _ in range(50):
        if bench.spans:
            break
        await asyncio.sleep(0.02)
    span = last_span(bench)
    assert span["tags"]["response_flags"] == "DC" and span["tags"]["http.status_code"] == "0"


async def test_drain_finishes_in_flight_and_refuses_new(bench: Bench) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.3)
        writer.write(response(200, b"done"))
        await writer.drain()

    up = await bench.upstream(slow)
    listener = await bench.proxy(up.port)
    port = listener.bound[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.05)
    drain = asyncio.create_task(listener.drain(5.0))
    data = await asyncio.wait_for(reader.read(), 5)  # the answer, then the close (connection: close)
    assert (
        data.startswith(b"HTTP/1.1 200") and data.endswith(b"done") and b"connection: close" in data.lower()
    )
    await drain
    try:
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
        refused = False
    except OSError:
        refused = True
    assert refused


async def test_upstream_timeout_default_is_15s() -> None:
    assert ProxySettings().upstream_timeout == 15.0
    assert ProxySettings().max_header_bytes == 60 * 1024 and ProxySettings().max_headers == 100


async def test_access_log_of_a_connect_failure_names_the_host_and_counts_the_body(
    bench: Bench, refused_port: int
) -> None:
    records: list[dict[str, object]] = []
    listener = await bench.proxy(refused_port)
    listener.route = dataclasses.replace(listener.route, access_log=records.append)
    reply = await exchange(listener.bound[1], b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    body = reply.partition(b"\r\n\r\n")[2]
    (record,) = records
    assert record["response_flags"] == "UF" and record["upstream_host"] == f"127.0.0.1:{refused_port}"
    assert record["bytes_sent"] == len(body) > 0  # Envoy's %BYTES_SENT% counts a local reply's body
    assert last_span(bench)["tags"]["upstream_address"] == f"127.0.0.1:{refused_port}"
