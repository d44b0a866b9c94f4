"""gRPC through two real sidecars (client app → outbound → inbound → server app), grpcio on both ends:
every kind of call works, and the collector holds one trace per call with Envoy's gRPC tags."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from sidecar.proxy import h2_nghttp2
from tests.e2e.grpc_topology import GrpcTopology, grpc_topology
from tests.util import refusing_port


@pytest.fixture(params=["nghttp2", "h2"])
def codec(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Both sidecars on one HTTP/2 codec (`--h2-codec`); every test runs on each."""
    if request.param == "nghttp2" and not h2_nghttp2.available():
        pytest.skip(f"libnghttp2 does not load here: {h2_nghttp2.load_error()}")
    return ("--h2-codec", str(request.param))


def by_service(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["localEndpoint"]["serviceName"]: s for s in spans}


async def one_trace(topo: GrpcTopology, trace_id: str) -> dict[str, dict[str, Any]]:
    spans = await topo.trace(trace_id, 2)
    assert len(spans) == 2, spans
    found = by_service(spans)
    client, echo = found["client"], found["echo"]
    assert client["kind"] == "CLIENT" and echo["kind"] == "SERVER" and echo.get("shared") is True
    assert echo["id"] == client["id"] and echo["traceId"] == client["traceId"]
    for span in (client, echo):
        assert span["name"] == span["tags"]["grpc.path"]  # gRPC users search spans by method
        assert span["tags"]["http.protocol"] == "HTTP/2"
        assert span["tags"]["grpc.content_type"] == "application/grpc"
    return found


async def test_unary_call_traced_with_grpc_tags(tmp_path: Path, codec: tuple[str, ...]) -> None:
    async with grpc_topology(tmp_path, *codec) as topo, topo.channel() as channel:
        reply = await topo.method(channel, "unary_unary", "Ping")(b"hello", timeout=5)
        assert reply == b"hello"
        seen = topo.echo.metadata[-1]
        assert seen["x-b3-sampled"] == "1" and len(seen["x-b3-traceid"]) == 16 and seen["x-request-id"]
        spans = await one_trace(topo, seen["x-b3-traceid"])
        tags = spans["client"]["tags"]
        assert tags["grpc.path"] == "/t.Echo/Ping" and tags["grpc.status_code"] == "0"
        assert tags["grpc.authority"] == f"127.0.0.1:{topo.client_out}"
        assert "grpc.timeout" in tags and "error" not in tags
        assert tags["http.status_code"] == "200" and tags["upstream_cluster"] == "echo"


@pytest.mark.parametrize(
    ("kind", "method", "request_", "expected"),
    [
        ("unary_stream", "Stream", b"3", [b"part-0", b"part-1", b"part-2"]),
        ("stream_unary", "Collect", [b"ab", b"cde"], b"5"),
        ("stream_stream", "Bidi", [b"ab", b"cd"], [b"AB", b"CD"]),
    ],
    ids=["server_streaming", "client_streaming", "bidi"],
)
async def test_streaming_calls(
    tmp_path: Path, codec: tuple[str, ...], kind: str, method: str, request_: Any, expected: Any
) -> None:
    async with grpc_topology(tmp_path, *codec) as topo, topo.channel() as channel:
        call = topo.method(channel, kind, method)
        if isinstance(request_, list):

            async def messages() -> Any:
                for message in request_:
                    yield message

            call_obj = call(messages(), timeout=5)
        else:
            call_obj = call(request_, timeout=5)
        if kind.endswith("_stream"):
            got: Any = [m async for m in call_obj]
        else:
            got = await call_obj
        assert got == expected
        spans = await one_trace(topo, topo.echo.metadata[-1]["x-b3-traceid"])
        assert spans["echo"]["tags"]["grpc.status_code"] == "0"


async def test_server_error_status_marks_the_spans(tmp_path: Path, codec: tuple[str, ...]) -> None:
    async with grpc_topology(tmp_path, *codec) as topo, topo.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await topo.method(channel, "unary_unary", "Fail")(b"x", timeout=5)
        assert err.value.code() == grpc.StatusCode.INTERNAL and err.value.details() == "boom"
        spans = await one_trace(topo, topo.echo.metadata[-1]["x-b3-traceid"])
        for span in spans.values():
            tags = span["tags"]
            assert (
                tags["grpc.status_code"] == "13"
                and tags["grpc.message"] == "boom"
                and tags["error"] == "true"
            )


async def test_deadline_exceeded_and_client_cancel_reach_the_server(
    tmp_path: Path, codec: tuple[str, ...]
) -> None:
    async with grpc_topology(tmp_path, *codec) as topo, topo.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await topo.method(channel, "unary_unary", "Slow")(b"x", timeout=0.3)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.wait_for(topo.echo.cancelled.wait(), 5)  # the deadline reached the server too
        spans = await one_trace(topo, topo.echo.metadata[-1]["x-b3-traceid"])
        assert spans["client"]["tags"]["grpc.timeout"].endswith(("m", "u", "n"))
        topo.echo.cancelled.clear()
        call = topo.method(channel, "unary_unary", "Slow")(b"x", timeout=30)
        while len(topo.echo.metadata) < 2:
            await asyncio.sleep(0.01)
        call.cancel()
        await asyncio.wait_for(topo.echo.cancelled.wait(), 5)  # RST_STREAM relayed upstream
        spans = await one_trace(topo, topo.echo.metadata[-1]["x-b3-traceid"])
        assert spans["client"]["tags"]["response_flags"] == "DR"


async def test_server_graceful_stop_finishes_the_call_in_flight(
    tmp_path: Path, codec: tuple[str, ...]
) -> None:
    """grpcio's `stop(grace)` sends GOAWAY (twice, with a PING between) and then answers the calls it
    has: the echo sidecar must relay that answer, not fail the call on the frames after the GOAWAY."""
    async with grpc_topology(tmp_path, *codec) as topo, topo.channel() as channel:
        call = asyncio.ensure_future(topo.method(channel, "unary_unary", "Hold")(b"held", timeout=10))
        await asyncio.wait_for(topo.echo.holding.wait(), 5)
        stopping = asyncio.ensure_future(topo.server.stop(grace=10))
        await asyncio.sleep(0)  # let stop() begin: its GOAWAY is queued before the answer below
        topo.echo.release.set()
        assert await call == b"held"
        await asyncio.wait_for(stopping, 10)
        spans = await one_trace(topo, topo.echo.metadata[-1]["x-b3-traceid"])
        for span in spans.values():
            assert span["tags"]["grpc.status_code"] == "0" and "error" not in span["tags"]


async def test_four_mib_messages_both_ways(tmp_path: Path, codec: tuple[str, ...]) -> None:
    async with grpc_topology(tmp_path, *codec) as topo, topo.channel() as channel:
        big = bytes(range(256)) * (4 * 1024 * 4 - 1)  # just under 4 MiB
        assert await topo.method(channel, "unary_unary", "Ping")(big, timeout=20) == big
        spans = await one_trace(topo, topo.echo.metadata[-1]["x-b3-traceid"])
        assert int(spans["echo"]["tags"]["request_size"]) > len(big)  # the 5-byte gRPC prefix


async def test_app_down_is_a_trailers_only_unavailable(tmp_path: Path, codec: tuple[str, ...]) -> None:
    sock, port = refusing_port()
    try:
        async with grpc_topology(tmp_path, *codec, echo_port=port) as topo, topo.channel() as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await topo.method(channel, "unary_unary", "Ping")(b"x", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "connection failure" in (err.value.details() or "")
            async with asyncio.timeout(10):
                while not (traces := topo.store.traces(service_name="echo")):
                    await asyncio.sleep(0.02)
            spans = by_service(await topo.trace(traces[0][0]["traceId"], 2))
            for span in spans.values():  # the client sidecar relays the echo sidecar's local reply
                assert span["tags"]["grpc.status_code"] == "14" and span["tags"]["error"] == "true"
                assert span["tags"]["http.status_code"] == "200"
            assert spans["echo"]["tags"]["response_flags"] == "UF"
    finally:
        sock.close()
