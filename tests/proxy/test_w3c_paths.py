"""W3C trace context on every path over real sockets: HTTP/1.1, HTTP/2, gRPC, inbound, outbound, local replies."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from sidecar.tracing.decide import TracerSettings
from tests.proxy.conftest import Bench, response
from tests.proxy.h2_peers import H2Client, H2Server, ok

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TP = f"00-{TRACE}-{PARENT}-03".encode()


def spans(bench: Bench) -> list[dict[str, object]]:
    return [orjson.loads(s) for s in bench.spans]


async def raw_upstream(bench: Bench) -> tuple[int, list[bytes]]:
    """An HTTP/1.1 upstream keeping each request head exactly as received (repeated fields too)."""
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(response(200, b"ok"))
        await writer.drain()

    return (await bench.upstream(handler)).port, heads


def fields(head: bytes, name: bytes) -> list[bytes]:
    lines = head.split(b"\r\n")[1:]
    return [line.partition(b":")[2].strip() for line in lines if line.partition(b":")[0].lower() == name]


async def get(port: int, extra: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: web\r\n" + extra + b"\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    return head


@pytest.mark.parametrize("outbound", [False, True])
async def test_h1_continues_traceparent_and_writes_both_formats(bench: Bench, outbound: bool) -> None:
    port, heads = await raw_upstream(bench)
    listener = await bench.proxy(port, outbound=outbound)
    extra = b"traceparent: " + TP + b"\r\ntracestate: a=1\r\nTraceState: b=2\r\nbaggage: k=v\r\n"
    assert (await get(listener.bound[1], extra)).startswith(b"HTTP/1.1 200")
    (head,) = heads
    (tp,) = fields(head, b"traceparent")
    _, trace, span_id, flags = tp.decode().split("-")
    assert (trace, flags) == (TRACE, "03") and span_id != PARENT
    assert fields(head, b"x-b3-traceid") == [TRACE.encode()] and fields(head, b"x-b3-spanid") == [
        span_id.encode()
    ]
    assert fields(head, b"tracestate") == [b"a=1,b=2"] and fields(head, b"baggage") == [b"k=v"]
    await asyncio.sleep(0)
    (span,) = spans(bench)
    assert span["traceId"] == TRACE and span["parentId"] == PARENT and span["id"] == span_id
    assert "shared" not in span


async def test_h1_two_traceparent_fields_start_a_new_trace(bench: Bench) -> None:
    port, heads = await raw_upstream(bench)
    listener = await bench.proxy(port)
    other = f"00-{TRACE[:-1]}1-{PARENT}-01".encode()
    await get(
        listener.bound[1], b"traceparent: " + TP + b"\r\ntraceparent: " + other + b"\r\ntracestate: a=1\r\n"
    )
    (head,) = heads
    (tp,) = fields(head, b"traceparent")
    assert TRACE.encode() not in tp and TRACE[:-1].encode() not in tp
    assert fields(head, b"tracestate") == []


async def test_h1_b3_mode_passes_w3c_fields_untouched(bench: Bench) -> None:
    port, heads = await raw_upstream(bench)
    listener = await bench.proxy(port, tracer_settings=TracerSettings(trace_context="b3"))
    await get(listener.bound[1], b"traceparent: " + TP + b"\r\ntraceparent: x\r\ntracestate: a=1\r\n")
    (head,) = heads
    assert fields(head, b"traceparent") == [TP, b"x"] and fields(head, b"tracestate") == [b"a=1"]
    assert fields(head, b"x-b3-traceid") != [TRACE.encode()]


@pytest.mark.usefixtures("h2_codec")
@pytest.mark.parametrize("protocol", ["http2", "grpc"])
@pytest.mark.parametrize("outbound", [False, True])
async def test_h2_continues_traceparent(bench: Bench, protocol: str, outbound: bool) -> None:
    server = await H2Server(ok).start()
    listener = await bench.proxy(server.port, protocol=protocol, outbound=outbound)
    client = await H2Client.open(listener.bound[1])
    call = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"a"),
        (b":path", b"/t.Echo/Ping"),
        (b"content-type", b"application/grpc"),
        (b"traceparent", TP),
        (b"tracestate", b"a=1"),
        (b"tracestate", b"b=2"),
    ]
    reply = await client.response(client.request(call))
    assert reply.status == 200
    received = server.requests[0]
    (tp,) = [v for n, v in received if n == b"traceparent"]
    _, trace, span_id, flags = tp.decode().split("-")
    assert (trace, flags) == (TRACE, "03")
    assert [v for n, v in received if n == b"tracestate"] == [b"a=1,b=2"]
    assert dict(received)[b"x-b3-spanid"] == span_id.encode()
    await client.close()
    await server.close()
    (span,) = spans(bench)
    assert span["traceId"] == TRACE and span["parentId"] == PARENT and span["id"] == span_id


@pytest.mark.usefixtures("h2_codec")
async def test_local_reply_span_carries_the_w3c_ids(bench: Bench) -> None:
    listener = await bench.proxy(None, protocol="grpc", outbound=True, endpoints=())
    client = await H2Client.open(listener.bound[1])
    call = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"a"),
        (b":path", b"/t.Echo/Ping"),
        (b"content-type", b"application/grpc"),
        (b"traceparent", TP),
    ]
    reply = await client.response(client.request(call))
    assert dict(reply.headers)[b"grpc-status"] == b"14"
    await client.close()
    (span,) = spans(bench)
    assert span["traceId"] == TRACE and span["parentId"] == PARENT
    assert span["tags"]["response_flags"] == "UH"  # type: ignore[index]
