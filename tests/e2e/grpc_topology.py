"""A gRPC topology on loopback: a grpcio client (the test) → `client` sidecar's outbound → `echo` sidecar's
inbound → a grpcio server, both Dataplanes tagged `kuma.io/protocol: grpc`, spans to the collector."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import yaml

from tests.e2e.topology import Topology
from tests.util import free_port


def ident(data: bytes) -> bytes:
    return data


class Echo:
    """The server app: what each method does, and what it saw (metadata, cancellations)."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.cancelled = asyncio.Event()
        self.holding = asyncio.Event()  # a Hold call has arrived
        self.release = asyncio.Event()  # ... and may answer

    def _seen(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})

    async def ping(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self._seen(context)
        return request

    async def fail(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self._seen(context)
        await context.abort(grpc.StatusCode.INTERNAL, "boom")
        raise AssertionError("unreachable")

    async def slow(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self._seen(context)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return request

    async def hold(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self._seen(context)
        self.holding.set()
        await self.release.wait()
        return request

    async def stream(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        self._seen(context)
        for i in range(int(request)):
            yield b"part-%d" % i

    async def collect(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        self._seen(context)
        total = 0
        async for message in requests:
            total += len(message)
        return b"%d" % total

    async def bidi(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        self._seen(context)
        async for message in requests:
            yield message.upper()

    def handler(self) -> grpc.GenericRpcHandler:
        unary = grpc.unary_unary_rpc_method_handler
        methods: dict[str, Any] = {
            "Ping": unary(self.ping, ident, ident),
            "Fail": unary(self.fail, ident, ident),
            "Slow": unary(self.slow, ident, ident),
            "Hold": unary(self.hold, ident, ident),
            "Stream": grpc.unary_stream_rpc_method_handler(self.stream, ident, ident),
            "Collect": grpc.stream_unary_rpc_method_handler(self.collect, ident, ident),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, ident, ident),
        }
        return grpc.method_handlers_generic_handler("t.Echo", methods)


MAX_MESSAGE = 8 * 1024 * 1024
OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]


class GrpcTopology(Topology):
    dataplanes = ("client-01", "echo-01")

    def __init__(self, tmp: Path, *, echo_port: int | None = None, **kw: Any) -> None:
        self.echo = Echo()
        self.server = grpc.aio.server(options=OPTIONS)
        self.server.add_generic_rpc_handlers([self.echo.handler()])
        self.grpc_port = self.server.add_insecure_port("127.0.0.1:0")
        self.echo_port = echo_port or self.grpc_port  # another port: the echo sidecar's app is down
        self.client_in = self.client_out = self.echo_in = 0
        super().__init__(tmp, **kw)

    def pick_ports(self) -> None:
        self.client_in, self.client_out, self.echo_in = free_port(), free_port(), free_port()
        docs = [
            {
                "type": "TrafficTrace",
                "name": "trace-all",
                "mesh": "default",
                "selectors": [{"match": {"kuma.io/service": "*"}}],
            },
            self._dataplane(
                "client-01", "client", self.client_in, free_port(), [(self.client_out, "echo")], "grpc"
            ),
            self._dataplane("echo-01", "echo", self.echo_in, self.echo_port, [], "grpc"),
        ]
        (self.config / "resources.yaml").write_text(yaml.safe_dump_all(docs))

    async def start_apps(self) -> None:
        await self.server.start()

    async def stop_apps(self) -> None:
        await self.server.stop(0)

    def channel(self) -> grpc.aio.Channel:
        """The client app's channel: to its sidecar's outbound listener."""
        return grpc.aio.insecure_channel(f"127.0.0.1:{self.client_out}", options=OPTIONS)

    def method(self, channel: grpc.aio.Channel, kind: str, name: str) -> Callable[..., Any]:
        factory = getattr(channel, kind)
        return factory(f"/t.Echo/{name}", request_serializer=ident, response_deserializer=ident)  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def grpc_topology(tmp: Path, *sidecar_args: str, **kw: Any) -> AsyncIterator[GrpcTopology]:
    topo = GrpcTopology(tmp, **kw)
    try:
        await topo.start(*sidecar_args)
        yield topo
    finally:
        await topo.stop()
