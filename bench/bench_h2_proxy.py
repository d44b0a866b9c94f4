"""Micro-benchmark of the HTTP/2 data path's own work per gRPC unary call, no sockets: a client's
HEADERS + DATA are fed to a downstream connection of a `grpc` listener, the request goes out on a warm
upstream connection, an origin answers HEADERS + DATA + trailers at once, the answer goes back; µs per
call for each codec, traced at 100 % and untraced.

    .venv/bin/python bench/bench_h2_proxy.py [CALLS] [--profile]

Like bench/bench_proxy.py for HTTP/1.1: syscalls, the event loop's polling and the peers are left out
(bench/grpc_bench.py measures those), so this is the part a change to the HTTP/2 path moves. The client
and the origin are h2 connections whose time is not counted.
"""

from __future__ import annotations

import asyncio
import cProfile
import dataclasses
import pstats
import sys
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_proxy import new_loop
from fuzz.harness import FakeListener, FakeTransport
from sidecar.config.snapshot import OutboundListener
from sidecar.proxy import h2_nghttp2
from sidecar.proxy.endpoint import Endpoint
from sidecar.proxy.h2_upstream import H2Upstream
from sidecar.proxy.http2 import H2Downstream
from sidecar.proxy.route import Route
from sidecar.tracing.decide import Tracer, TracerSettings

REQUEST = [
    (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/t.Echo/Ping"),
    (b":authority", b"127.0.0.1:50051"), (b"te", b"trailers"), (b"content-type", b"application/grpc"),
    (b"user-agent", b"grpc-python-asyncio/1.76.0 grpc-c/51.0.0 (linux; chttp2)"),
    (b"grpc-accept-encoding", b"identity, deflate, gzip"), (b"grpc-timeout", b"4999m"),
]  # fmt: skip
RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"")]
BODY = b"\x00\x00\x00\x00\x20" + b"x" * 32


def plain(client_side: bool) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=client_side, header_encoding=None)
    )
    conn.initiate_connection()
    return conn


def run(codec: str, tracer_settings: TracerSettings | None, calls: int, profile: bool = False) -> float:
    loop = new_loop()
    asyncio.set_event_loop(loop)
    listener = FakeListener(loop)
    listener.settings = dataclasses.replace(listener.settings, h2_codec=codec, max_header_bytes=60 * 1024)
    tracer = Tracer(tracer_settings, service_name="web", node_id="default.web-01")
    spans: list[bytes] = []
    endpoint = Endpoint("127.0.0.1", 50051, "127.0.0.1:50051")
    listener.route = Route.outbound(
        OutboundListener("127.0.0.1", 0, "echo", "grpc", ("127.0.0.1:50051",)), tracer, spans.append
    )
    up_wire, down_wire = FakeTransport(), FakeTransport()

    async def setup() -> tuple[H2Downstream, H2Upstream]:
        up = H2Upstream(listener.h2_pool, endpoint)
        up.connection_made(up_wire)  # type: ignore[arg-type]
        listener.h2_pool._conns[endpoint] = [up]
        down = H2Downstream(listener, upstream_h2=True)
        down.connection_made(down_wire)  # type: ignore[arg-type]
        return down, up

    down, up = loop.run_until_complete(setup())
    client, origin = plain(True), plain(False)

    def take(wire: FakeTransport) -> bytes:
        data = bytes(wire.written)
        del wire.written[:]
        return data

    spent = 0.0
    clock = time.perf_counter
    profiler = cProfile.Profile() if profile else None
    measuring = False

    def on() -> float:
        if profiler and measuring:
            profiler.enable()
        return clock()

    def off(t0: float) -> float:
        if profiler and measuring:
            profiler.disable()
        return clock() - t0

    async def one_call() -> None:
        nonlocal spent
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, REQUEST)
        client.send_data(sid, BODY, end_stream=True)
        data = client.data_to_send()
        t0 = on()
        down.data_received(data)
        await asyncio.sleep(0)  # the upstream's write is coalesced to the next loop turn
        spent += off(t0)
        for event in origin.receive_data(take(up_wire)):
            if isinstance(event, h2.events.RequestReceived):
                osid = event.stream_id
            elif isinstance(event, h2.events.DataReceived):
                origin.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        origin.send_headers(osid, RESPONSE)
        origin.send_data(osid, BODY)
        origin.send_headers(osid, TRAILERS, end_stream=True)
        data = origin.data_to_send()
        t0 = on()
        up.data_received(data)
        await asyncio.sleep(0)
        spent += off(t0)
        for event in client.receive_data(take(down_wire)):
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        acks, more = client.data_to_send(), origin.data_to_send()  # window updates, settings acks
        t0 = on()
        if acks:
            down.data_received(acks)
        if more:
            up.data_received(more)
        spent += off(t0)
        spans.clear()

    async def many(n: int) -> None:
        for _ in range(n):
            await one_call()

    loop.run_until_complete(many(200))  # warm: settings exchanged, HPACK tables filled
    spent = 0.0
    measuring = True
    loop.run_until_complete(many(calls))
    loop.close()
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(30)
    return spent / calls * 1e6


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    calls = int(args[0]) if args else 20_000
    codecs = ["nghttp2", "h2"] if h2_nghttp2.available() else ["h2"]
    if "--profile" in sys.argv:
        run(codecs[0], TracerSettings(), calls, profile=True)
        return
    print(f"{'codec':<9} {'case':<12} {'us per call, the proxy only':>28}")
    for codec in codecs:
        for name, settings in (("untraced", TracerSettings(sampling=0.0)), ("traced 100%", TracerSettings())):
            print(f"{codec:<9} {name:<12} {run(codec, settings, calls):>28.1f}")


if __name__ == "__main__":
    main()
