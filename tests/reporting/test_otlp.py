"""The reporter over OTLP/HTTP (aiohttp receiver) and OTLP/gRPC (grpcio receiver) on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from aiohttp.test_utils import TestServer

from sidecar.reporting import Reporter, ReporterSettings, otlp_transport
from sidecar.reporting.stats import ReporterStats
from sidecar.tracing import encode_otlp
from sidecar.tracing.encoding import otlp_encoding
from sidecar.tracing.span import Span
from tests.reporting.otlp_receivers import (
    RESET,
    GrpcStep,
    HttpStep,
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    span_names,
)
from tests.util import free_port

ServerFactory = Callable[..., Awaitable[TestServer]]


def otlp_span(i: int) -> bytes:
    span = Span(
        trace_id=f"{i + 1:032x}",
        span_id=f"{i + 1:016x}",
        parent_id=None,
        kind="SERVER",
        name=f"s{i}",
        timestamp_us=1_700_000_000_000_000 + i,
        start_ns=0,
        local_service="web",
        tags={"http.status_code": "200"},
    )
    span.duration_us = 5
    return encode_otlp.encode_span(span)


def settings(**kw: float) -> ReporterSettings:
    base = {"flush_interval": 0.05, "min_batch": 50, "max_batch": 100, "buffer_capacity": 1000}
    return ReporterSettings(**(base | {"request_timeout": 2.0} | kw))  # type: ignore[arg-type]


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def conserved(stats: ReporterStats) -> bool:
    """Every span handed over is sent or dropped for one reason: created = sent + dropped."""
    return stats.spans_received == stats.spans_sent + sum(stats.spans_dropped.values())


@dataclass
class Backend:
    """One receiver of either protocol, scripted the same way."""

    protocol: str
    endpoint: str
    http: OtlpHttpReceiver | None = None
    grpc_receiver: OtlpGrpcReceiver | None = None

    @property
    def received(self) -> list[str]:
        receiver: Any = self.http or self.grpc_receiver
        return span_names(receiver.requests)

    @property
    def calls(self) -> int:
        receiver: Any = self.http or self.grpc_receiver
        return int(receiver.arrived)

    def unavailable(self, times: int) -> None:
        if self.http is not None:
            self.http.script += [HttpStep(503, retry_after="0")] * times
        else:
            assert self.grpc_receiver is not None
            self.grpc_receiver.script += [GrpcStep(grpc.StatusCode.UNAVAILABLE)] * times

    def partial(self, rejected: int) -> None:
        if self.http is not None:
            self.http.script.append(HttpStep(rejected=rejected))
        else:
            assert self.grpc_receiver is not None
            self.grpc_receiver.script.append(GrpcStep(rejected=rejected))

    def reporter(self, **kw: float) -> Reporter:
        s = settings(**kw)
        transport = otlp_transport(self.endpoint, self.protocol, s.request_timeout)
        return Reporter(self.endpoint, otlp_encoding("web"), s, transport=transport)


@pytest.fixture(params=["http", "grpc"])
async def backend(request: pytest.FixtureRequest, aiohttp_server: ServerFactory) -> AsyncIterator[Backend]:
    if request.param == "http":
        receiver = OtlpHttpReceiver()
        server = await aiohttp_server(receiver.app())
        yield Backend("http", f"http://127.0.0.1:{server.port}", http=receiver)
    else:
        grpc_receiver = OtlpGrpcReceiver()
        port = await grpc_receiver.start()
        yield Backend("grpc", f"127.0.0.1:{port}", grpc_receiver=grpc_receiver)
        await grpc_receiver.stop()


async def test_spans_arrive_decodable_with_the_service_name(backend: Backend) -> None:
    reporter = backend.reporter()
    await reporter.start()
    for i in range(3):
        reporter.submit(otlp_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 3)
    await reporter.aclose()
    assert backend.received == ["s0", "s1", "s2"]
    receiver: Any = backend.http or backend.grpc_receiver
    (request,) = receiver.requests
    (rs,) = request.resource_spans
    assert rs.resource.attributes[0].key == "service.name"
    assert rs.resource.attributes[0].value.string_value == "web"
    assert reporter.stats.protocol == f"otlp_{backend.protocol}"


async def test_200_spans_arrive_in_few_calls(backend: Backend) -> None:
    reporter = backend.reporter(flush_interval=0.5)
    await reporter.start()
    for i in range(200):
        reporter.submit(otlp_span(i))
        if i % 20 == 0:
            await asyncio.sleep(0)
    await wait_for(lambda: reporter.stats.spans_sent == 200)
    await reporter.aclose()
    assert sorted(backend.received) == sorted(f"s{i}" for i in range(200))
    assert backend.calls <= 6  # batches of 50 to 100, never one call per span


async def test_unavailable_is_retried_and_delivered_once(backend: Backend) -> None:
    backend.unavailable(2)
    reporter = backend.reporter()
    await reporter.start()
    for i in range(5):
        reporter.submit(otlp_span(i))
    await wait_for(lambda: reporter.stats.spans_sent == 5)
    await reporter.aclose()
    assert backend.received == [f"s{i}" for i in range(5)]
    assert backend.calls == 3
    assert reporter.stats.reports_retried == 2
    assert "503" in reporter.stats.last_error or "14" in reporter.stats.last_error


async def test_partial_success_counts_the_rejected_spans(backend: Backend) -> None:
    backend.partial(rejected=2)
    reporter = backend.reporter()
    await reporter.start()
    for i in range(5):
        reporter.submit(otlp_span(i))
    await wait_for(lambda: reporter.stats.reports_sent == 1)
    await reporter.aclose()
    assert reporter.stats.spans_sent == 3
    assert reporter.stats.spans_dropped["rejected"] == 2
    assert "too old" in reporter.stats.last_error
    assert conserved(reporter.stats)


async def test_collector_down_then_back_conserves_spans(
    backend: Backend, aiohttp_server: ServerFactory
) -> None:
    """Nothing listens at first: batches are retried; spans that do not fit are dropped and counted."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}" if backend.protocol == "http" else f"127.0.0.1:{port}"
    s = settings(buffer_capacity=100, retry_budget=30.0)
    reporter = Reporter(
        endpoint,
        otlp_encoding("web"),
        s,
        transport=otlp_transport(endpoint, backend.protocol, s.request_timeout),
    )
    await reporter.start()
    for i in range(800):  # at most 4 batches of 100 in retries and 100 in the buffer: some are dropped
        reporter.submit(otlp_span(i))
        if i % 50 == 0:
            await asyncio.sleep(0.01)
    await wait_for(lambda: reporter.stats.reports_failed >= 2)
    assert reporter.stats.spans_dropped["buffer_full"] > 0
    if backend.protocol == "http":
        receiver = OtlpHttpReceiver()
        await aiohttp_server(receiver.app(), port=port)
        names = lambda: span_names(receiver.requests)  # noqa: E731
    else:
        grpc_receiver = OtlpGrpcReceiver()
        await grpc_receiver.start(port)
        names = lambda: span_names(grpc_receiver.requests)  # noqa: E731
    try:
        await wait_for(lambda: reporter.stats.buffer_size == 0 and not reporter._inflight)
        await reporter.aclose()
        stats = reporter.stats
        assert stats.spans_sent == len(names()) == len(set(names())) > 0
        assert conserved(stats)
        assert stats.spans_received == 800
    finally:
        if backend.protocol == "grpc":
            await grpc_receiver.stop()


async def test_final_flush_on_close_sends_each_span_once(backend: Backend) -> None:
    reporter = backend.reporter(flush_interval=30.0)
    await reporter.start()
    for i in range(7):  # fewer than min_batch: only the close sends them
        reporter.submit(otlp_span(i))
    await reporter.aclose(5.0)
    assert backend.received == [f"s{i}" for i in range(7)]
    assert reporter.stats.spans_sent == 7
    assert conserved(reporter.stats)


# OTLP/HTTP only -------------------------------------------------------------------------------------


@pytest.fixture
async def http(aiohttp_server: ServerFactory) -> tuple[OtlpHttpReceiver, str]:
    receiver = OtlpHttpReceiver()
    server = await aiohttp_server(receiver.app())
    return receiver, f"http://127.0.0.1:{server.port}"


def http_reporter(endpoint: str, **kw: float) -> Reporter:
    s = settings(**kw)
    return Reporter(endpoint, otlp_encoding("web"), s, transport=otlp_transport(endpoint, "http", 2.0))


async def test_http_default_path_and_content_type(http: tuple[OtlpHttpReceiver, str]) -> None:
    receiver, endpoint = http
    reporter = http_reporter(endpoint)
    assert reporter.url == endpoint + "/v1/traces"
    await reporter.start()
    reporter.submit(otlp_span(0))
    await wait_for(lambda: reporter.stats.spans_sent == 1)
    await reporter.aclose()
    assert receiver.content_types == ["application/x-protobuf"]


@pytest.mark.parametrize("status", [400, 401, 404, 413])
async def test_http_other_4xx_drops_the_batch_without_retry(
    http: tuple[OtlpHttpReceiver, str], status: int
) -> None:
    receiver, endpoint = http
    receiver.script = [HttpStep(status)]
    reporter = http_reporter(endpoint)
    await reporter.start()
    for i in range(3):
        reporter.submit(otlp_span(i))
    await wait_for(lambda: reporter.stats.reports_dropped == 1)
    await reporter.aclose()
    assert receiver.arrived == 1
    assert reporter.stats.spans_dropped["rejected"] == 3
    assert f"HTTP {status}" in reporter.stats.last_error


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_http_retryable_statuses_honour_retry_after(
    http: tuple[OtlpHttpReceiver, str], status: int
) -> None:
    receiver, endpoint = http
    receiver.script = [HttpStep(status, retry_after="1")]
    reporter = http_reporter(endpoint)
    await reporter.start()
    loop = asyncio.get_running_loop()
    began = loop.time()
    reporter.submit(otlp_span(0))
    await wait_for(lambda: reporter.stats.spans_sent == 1)
    waited = loop.time() - began
    await reporter.aclose()
    assert receiver.arrived == 2
    assert waited >= 1.0  # the backend asked for a second; the reporter's own backoff is 0.05-0.1 s


async def test_http_retry_after_beyond_the_budget_drops(http: tuple[OtlpHttpReceiver, str]) -> None:
    receiver, endpoint = http
    receiver.script = [HttpStep(503, retry_after="30")]
    reporter = http_reporter(endpoint, retry_budget=1.0)
    await reporter.start()
    reporter.submit(otlp_span(0))
    await wait_for(lambda: reporter.stats.spans_dropped["retries_exhausted"] == 1)
    await reporter.aclose()
    assert receiver.arrived == 1


async def test_http_answer_lost_after_sending_is_not_sent_again(http: tuple[OtlpHttpReceiver, str]) -> None:
    receiver, endpoint = http
    receiver.script = [HttpStep(RESET)]
    reporter = http_reporter(endpoint)
    await reporter.start()
    reporter.submit(otlp_span(0))
    await wait_for(lambda: reporter.stats.spans_dropped["no_response"] == 1)
    await reporter.aclose()
    assert receiver.arrived == 1


# OTLP/gRPC only -------------------------------------------------------------------------------------


@pytest.fixture
async def grpc_backend() -> AsyncIterator[tuple[OtlpGrpcReceiver, str]]:
    receiver = OtlpGrpcReceiver()
    port = await receiver.start()
    yield receiver, f"127.0.0.1:{port}"
    await receiver.stop()


def grpc_reporter(endpoint: str, **kw: float) -> Reporter:
    s = settings(**kw)
    return Reporter(
        endpoint, otlp_encoding("web"), s, transport=otlp_transport(endpoint, "grpc", s.request_timeout)
    )


@pytest.mark.parametrize(
    ("step", "retried"),
    [
        (GrpcStep(grpc.StatusCode.UNAVAILABLE), True),
        (GrpcStep(grpc.StatusCode.DEADLINE_EXCEEDED), True),
        (GrpcStep(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=0.2), True),
        (GrpcStep(grpc.StatusCode.RESOURCE_EXHAUSTED), False),
        (GrpcStep(grpc.StatusCode.INVALID_ARGUMENT), False),
        (GrpcStep(grpc.StatusCode.UNIMPLEMENTED), False),
    ],
)
async def test_grpc_statuses(
    grpc_backend: tuple[OtlpGrpcReceiver, str], step: GrpcStep, retried: bool
) -> None:
    receiver, endpoint = grpc_backend
    receiver.script = [step]
    reporter = grpc_reporter(endpoint)
    await reporter.start()
    reporter.submit(otlp_span(0))
    await wait_for(lambda: reporter.stats.spans_sent + reporter.stats.spans_dropped["rejected"] == 1)
    await reporter.aclose()
    assert receiver.arrived == (2 if retried else 1)
    assert reporter.stats.spans_sent == (1 if retried else 0)
    assert str(step.code.value[0]) in reporter.stats.last_error


async def test_grpc_retry_info_delay_is_honoured(grpc_backend: tuple[OtlpGrpcReceiver, str]) -> None:
    receiver, endpoint = grpc_backend
    receiver.script = [GrpcStep(grpc.StatusCode.UNAVAILABLE, retry_delay=1.0)]
    reporter = grpc_reporter(endpoint)
    await reporter.start()
    loop = asyncio.get_running_loop()
    began = loop.time()
    reporter.submit(otlp_span(0))
    await wait_for(lambda: reporter.stats.spans_sent == 1)
    assert loop.time() - began >= 1.0
    await reporter.aclose()


async def test_grpc_a_large_batch_crosses_the_flow_control_window(
    grpc_backend: tuple[OtlpGrpcReceiver, str],
) -> None:
    """1000 spans with 300-byte attributes: ~400 KB, six times the default 64 KB window."""
    receiver, endpoint = grpc_backend
    reporter = grpc_reporter(endpoint, min_batch=1000, max_batch=1000, buffer_capacity=1000)
    await reporter.start()
    for i in range(1000):
        span = Span(
            trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", parent_id=None, kind="CLIENT", name=f"s{i}",
            timestamp_us=1, start_ns=0, local_service="web", tags={"big": "x" * 300},
        )  # fmt: skip
        reporter.submit(encode_otlp.encode_span(span))
    await wait_for(lambda: reporter.stats.spans_sent == 1000)
    await reporter.aclose()
    assert receiver.arrived == 1


async def test_grpc_no_answer_in_time_is_not_sent_again(grpc_backend: tuple[OtlpGrpcReceiver, str]) -> None:
    receiver, endpoint = grpc_backend
    receiver.script = [GrpcStep(delay=2.0)]
    reporter = grpc_reporter(endpoint, request_timeout=0.3)
    await reporter.start()
    reporter.submit(otlp_span(0))
    await wait_for(lambda: reporter.stats.spans_dropped["no_response"] + reporter.stats.spans_sent == 1)
    await reporter.aclose()
    assert reporter.stats.spans_dropped["no_response"] == 1
    assert receiver.arrived == 1


async def test_grpc_endpoint_must_be_host_port() -> None:
    with pytest.raises(ValueError, match="host:port"):
        otlp_transport("http://collector:4317", "grpc", 1.0)
    with pytest.raises(ValueError, match="URL"):
        otlp_transport("collector:4318", "http", 1.0)


class _H2Collector(asyncio.Protocol):
    """A bare h2 gRPC server: the first connection answers each request with GOAWAY(last_stream_id=0),
    i.e. "not processed"; later connections record the call and answer grpc-status 0."""

    connections = 0
    calls: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import h2.config
        import h2.connection

        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        type(self).connections += 1
        self.refuse = type(self).connections == 1
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self.h2.initiate_connection()
        self.bodies: dict[int, bytearray] = {}
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        import h2.events

        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived) and self.refuse:
                self.h2.close_connection(last_stream_id=0)
                self.transport.write(self.h2.data_to_send())
                self.transport.close()
                return
            if isinstance(event, h2.events.DataReceived):
                self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                type(self).calls.append(bytes(self.bodies.pop(event.stream_id, b"")))
                self.h2.send_headers(
                    event.stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")]
                )
                self.h2.send_data(event.stream_id, b"\0\0\0\0\0")
                self.h2.send_headers(event.stream_id, [(b"grpc-status", b"0")], end_stream=True)
        self.transport.write(self.h2.data_to_send())


async def test_grpc_goaway_before_processing_is_sent_again_on_a_new_connection() -> None:
    _H2Collector.connections, _H2Collector.calls = 0, []
    server = await asyncio.get_running_loop().create_server(_H2Collector, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reporter = grpc_reporter(f"127.0.0.1:{port}")
        await reporter.start()
        for i in range(3):
            reporter.submit(otlp_span(i))
        await wait_for(lambda: reporter.stats.spans_sent == 3)
        await reporter.aclose()
    finally:
        server.close()
    assert _H2Collector.connections == 2
    assert len(_H2Collector.calls) == 1  # once, on the second connection
    assert "GOAWAY" in reporter.stats.last_error
    assert reporter.stats.reports_retried == 1
