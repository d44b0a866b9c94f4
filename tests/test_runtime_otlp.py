"""The runtime's reporter choice: an OpenTelemetry backend, or --otlp-endpoint over a Zipkin one, exports
OTLP with an unshared SERVER span; the sidecar process drains on SIGTERM without sending a span twice."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from sidecar.config.model import Backend
from sidecar.config.snapshot import Snapshot
from sidecar.runtime import RunOptions, Runtime, export_for
from sidecar.tracing.encoding import JSON, PROTO, otlp_encoding
from tests.reporting.otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver
from tests.util import free_port

ServerFactory = Callable[..., Awaitable[TestServer]]
ROOT = Path(__file__).resolve().parents[1]


def write_config(path: Path, port: int, app_port: int, zipkin_url: str, api: str = "httpJson") -> None:
    mesh = {
        "type": "Mesh",
        "name": "default",
        "tracing": {
            "defaultBackend": "zipkin",
            "backends": [
                {"name": "zipkin", "type": "zipkin", "conf": {"url": zipkin_url, "apiVersion": api}}
            ],
        },
    }
    trace = {
        "type": "TrafficTrace",
        "name": "all",
        "mesh": "default",
        "selectors": [{"match": {"kuma.io/service": "*"}}],
        "conf": {"backend": "zipkin"},
    }
    dataplane = {
        "type": "Dataplane",
        "name": "web-01",
        "mesh": "default",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {
                    "port": port,
                    "servicePort": app_port,
                    "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http"},
                }
            ],
        },
    }
    path.write_text(yaml.safe_dump_all([mesh, trace, dataplane]))


def otel_backend(endpoint: str, protocol: str) -> Backend:
    return Backend(name="otel", type="openTelemetry", endpoint=endpoint, protocol=protocol)


def snapshot(tmp_path: Path, backend: Backend | None = None, api: str = "httpJson") -> Snapshot:
    config = tmp_path / "all.yaml"
    write_config(config, 10001, 8080, "http://127.0.0.1:9411/api/v2/spans", api)
    snap = Runtime(RunOptions(config=[str(config)], dataplane="web-01")).resolve()
    return snap if backend is None else dataclasses.replace(snap, backend=backend)


@pytest.mark.parametrize(
    ("backend", "override", "target", "protocol"),
    [
        (None, None, "http://127.0.0.1:9411/api/v2/spans", "zipkin"),
        (None, "collector:4317", "collector:4317", "grpc"),
        (None, "http://collector:4318", "http://collector:4318", "http"),
        (otel_backend("otel:4317", "grpc"), None, "otel:4317", "grpc"),
        (otel_backend("https://otel/v1/traces", "http"), None, "https://otel/v1/traces", "http"),
        (otel_backend("otel:4317", ""), None, "otel:4317", "grpc"),  # protocol from the endpoint's form
        (
            otel_backend("otel:4317", "grpc"),
            "http://other:4318",
            "otel:4317",
            "grpc",
        ),  # a MeshTrace's own wins
    ],
)
def test_export_for_each_backend_and_override(
    tmp_path: Path, backend: Backend | None, override: str | None, target: str, protocol: str
) -> None:
    export = export_for(snapshot(tmp_path, backend), override)
    assert export is not None
    assert (export.target, export.protocol) == (target, protocol)
    assert export.encoding == (JSON if protocol == "zipkin" else otlp_encoding("web"))


def test_zipkin_proto_backend_keeps_its_encoding(tmp_path: Path) -> None:
    export = export_for(snapshot(tmp_path, api="httpProto"))
    assert export is not None and export.encoding == PROTO


@pytest.fixture
async def app_port() -> AsyncIterator[int]:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def get(port: int, headers: str = "") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET / HTTP/1.1\r\nHost: web\r\n{headers}Connection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


INCOMING = (
    "x-b3-traceid: 463ac35c9f6413ad48485a3953bb6124\r\nx-b3-spanid: a2fb4a1d1a96d312\r\nx-b3-sampled: 1\r\n"
)


def server_spans(receiver: OtlpGrpcReceiver | OtlpHttpReceiver) -> list[PbSpan]:
    return [
        s for r in receiver.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]


async def test_an_opentelemetry_backend_exports_otlp_grpc_with_an_unshared_server_span(
    tmp_path: Path, app_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = OtlpGrpcReceiver()
    grpc_port = await receiver.start()
    port = free_port()
    config = tmp_path / "all.yaml"
    write_config(config, port, app_port, "http://127.0.0.1:9/api/v2/spans")
    resolve = Runtime.resolve

    def with_otel(self: Runtime, initial: bool = False) -> Snapshot:
        # The MeshTrace parser makes such backends; here it is built directly.
        return dataclasses.replace(
            resolve(self, initial), backend=otel_backend(f"127.0.0.1:{grpc_port}", "grpc")
        )

    monkeypatch.setattr(Runtime, "resolve", with_otel)
    runtime = Runtime(RunOptions(config=[str(config)], dataplane="web-01", admin_port=-1, watch=False))
    try:
        await runtime.start()
        assert runtime.reporter is not None and runtime.reporter.stats.protocol == "otlp_grpc"
        assert (await get(port, INCOMING)).endswith(b"hello")
        summary = await runtime.shutdown()
        assert summary.spans_flushed == 1
        (span,) = server_spans(receiver)
        assert span.kind == PbSpan.SPAN_KIND_SERVER
        assert span.trace_id.hex() == "463ac35c9f6413ad48485a3953bb6124"
        assert span.parent_span_id.hex() == "a2fb4a1d1a96d312"
        assert span.span_id.hex() != "a2fb4a1d1a96d312"
        rs = receiver.requests[0].resource_spans[0]
        assert rs.resource.attributes[0].value.string_value == "web"
    finally:
        await receiver.stop()


async def test_otlp_endpoint_overrides_a_zipkin_url(
    tmp_path: Path, app_port: int, aiohttp_server: ServerFactory
) -> None:
    receiver = OtlpHttpReceiver()
    server = await aiohttp_server(receiver.app())
    port = free_port()
    config = tmp_path / "all.yaml"
    write_config(config, port, app_port, "http://127.0.0.1:9/api/v2/spans")
    runtime = Runtime(
        RunOptions(
            config=[str(config)],
            dataplane="web-01",
            admin_port=-1,
            watch=False,
            otlp_endpoint=f"http://127.0.0.1:{server.port}",
        )
    )
    await runtime.start()
    assert runtime.reporter is not None and runtime.reporter.url.endswith("/v1/traces")
    assert (await get(port, INCOMING)).endswith(b"hello")
    await runtime.shutdown()
    (span,) = server_spans(receiver)
    assert span.parent_span_id.hex() == "a2fb4a1d1a96d312"  # not shared, though the Zipkin backend says so


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_sigterm_drains_buffered_spans_once(
    tmp_path: Path, app_port: int, aiohttp_server: ServerFactory, protocol: str
) -> None:
    """30 requests stay buffered (batches of 200, flush every 60 s) until SIGTERM sends them, once."""
    receiver: OtlpGrpcReceiver | OtlpHttpReceiver
    if protocol == "http":
        receiver = OtlpHttpReceiver()
        server = await aiohttp_server(receiver.app())
        endpoint = f"http://127.0.0.1:{server.port}/v1/traces"
    else:
        receiver = OtlpGrpcReceiver()
        endpoint = f"127.0.0.1:{await receiver.start()}"
    port = free_port()
    config = tmp_path / "all.yaml"
    write_config(config, port, app_port, "http://127.0.0.1:9/api/v2/spans")
    env = {**os.environ, "SIDECAR_OTLP_ENDPOINT": endpoint}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "run", "--config", str(config), "--dataplane", "web-01",
        "--admin-address", f"127.0.0.1:{free_port()}", "--flush-interval", "60", "--drain-grace", "1",
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    if (await get(port)).endswith(b"hello"):
                        break
                except OSError:
                    await asyncio.sleep(0.05)
        for _ in range(29):
            assert (await get(port)).endswith(b"hello")
        assert receiver.arrived == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        output = (await asyncio.wait_for(proc.stdout.read(), 30)).decode()
        assert await asyncio.wait_for(proc.wait(), 30) == 0, output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if isinstance(receiver, OtlpGrpcReceiver):
            await receiver.stop()
    ids = [s.span_id for s in server_spans(receiver)]
    assert len(ids) == 30 == len(set(ids)), output
    assert receiver.arrived == 1
    wire = "OTLP/HTTP" if protocol == "http" else "OTLP/gRPC"
    assert f"traffic trace all -> {endpoint} ({wire})" in output  # the ready line names the real target
