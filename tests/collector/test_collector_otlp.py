"""The collector's OTLP/HTTP intake: spans built with opentelemetry-proto (or sent by the sidecar's
encoder) join the Zipkin spans of the same trace and render in one tree."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import orjson
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from sidecar.collector.app import build_collector_app
from sidecar.collector.otlp import decode_export_request
from sidecar.collector.proto import DecodeError
from sidecar.collector.tree import render_trace
from sidecar.tracing.decide import TracerSettings
from sidecar.tracing.encoding import otlp_encoding
from tests.tracing.conftest import make_tracer

ClientFactory = Callable[..., Awaitable[TestClient]]
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def library_request() -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "backend"
    span = rs.scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex("0000000000000000463ac35c9f6413ad")
    span.span_id = bytes.fromhex("00000000000000b2")
    span.parent_span_id = bytes.fromhex("00000000000000a1")
    span.name = "backend"
    span.kind = PbSpan.SPAN_KIND_SERVER
    span.start_time_unix_nano = 1_700_000_000_000_000_000
    span.end_time_unix_nano = 1_700_000_000_002_000_000
    span.status.code = Status.STATUS_CODE_ERROR
    for key, value in (("http.request.method", "GET"), ("url.path", "/x"), ("server.address", "backend")):
        attr = span.attributes.add()
        attr.key, attr.value.string_value = key, value
    attr = span.attributes.add()
    attr.key, attr.value.int_value = "http.response.status_code", 503
    return request.SerializeToString()


def test_decode_maps_ids_times_service_status_and_envoy_names() -> None:
    (span,) = decode_export_request(library_request())
    assert span["traceId"] == "463ac35c9f6413ad"
    assert (span["id"], span["parentId"]) == ("00000000000000b2", "00000000000000a1")
    assert span["kind"] == "SERVER"
    assert span["localEndpoint"] == {"serviceName": "backend"}
    assert (span["timestamp"], span["duration"]) == (1_700_000_000_000_000, 2000)
    tags = span["tags"]
    assert tags["error"] == "true"
    assert tags["http.status_code"] == "503"
    assert tags["http.method"] == "GET"
    assert tags["http.url"] == "http://backend/x"


async def test_otlp_and_zipkin_spans_of_one_trace_render_in_one_tree(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(build_collector_app())
    zipkin_client = {
        "traceId": "463ac35c9f6413ad", "id": "00000000000000a1", "kind": "CLIENT", "name": "backend",
        "timestamp": 1_700_000_000_000_000, "duration": 3000, "localEndpoint": {"serviceName": "frontend"},
        "tags": {"component": "proxy", "http.method": "GET", "http.status_code": "503"},
    }  # fmt: skip
    resp = await client.post("/api/v2/spans", data=orjson.dumps([zipkin_client]))
    assert resp.status == 202
    resp = await client.post("/v1/traces", data=library_request(), headers=PROTOBUF)
    assert resp.status == 200 and resp.content_type == "application/x-protobuf"
    spans = await (await client.get("/api/v2/trace/463ac35c9f6413ad")).json()
    assert len(spans) == 2
    tree = render_trace(spans).splitlines()
    assert tree[0].endswith("(2 spans, 2 services)")
    assert tree[1].startswith("  └─ frontend CLIENT")
    assert tree[2].startswith("    └─ backend SERVER GET http://backend/x")
    assert tree[2].endswith("ERROR")


async def test_the_sidecar_encoder_is_accepted(aiohttp_client: ClientFactory) -> None:
    encoding = otlp_encoding("web")
    tracer, _ = make_tracer(TracerSettings(shared_span_context=False, encoding=encoding))
    d = tracer.start(
        "SERVER", {}, method="GET", authority="web", path="/", scheme="http", protocol="HTTP/1.1",
        user_agent=None, peer_address="127.0.0.1:1", upstream_cluster="localhost:8080",
    )  # fmt: skip
    assert d.span is not None
    body = encoding.encode_batch([tracer.finish(d.span, status=200, request_size=0, response_size=0,
                                                response_flags="-", upstream_address=None)])  # fmt: skip
    client = await aiohttp_client(build_collector_app())
    assert (await client.post("/v1/traces", data=body, headers=PROTOBUF)).status == 200
    assert await (await client.get("/api/v2/services")).json() == ["web"]


async def test_bad_bodies_are_400_and_json_is_415(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(build_collector_app())
    assert (await client.post("/v1/traces", data=b"\x0a\x05\x12", headers=PROTOBUF)).status == 400
    assert (
        await client.post("/v1/traces", data=b"{}", headers={"Content-Type": "application/json"})
    ).status == 415
    assert (await (await client.get("/stats")).json())["spans"] == 0


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):  # anything else fails the test
        decode_export_request(data)
