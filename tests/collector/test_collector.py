"""The in-memory Zipkin-compatible collector: API, proto decoding, eviction, tree rendering."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from sidecar.collector.app import build_collector_app
from sidecar.collector.proto import DecodeError, decode_list_of_spans
from sidecar.collector.store import TraceStore
from sidecar.collector.tree import render_trace
from sidecar.tracing import encode_proto
from sidecar.tracing.span import Span, ZipkinEndpoint

ClientFactory = Callable[..., Awaitable[TestClient]]


def span(trace: str, sid: str, parent: str | None = None, service: str = "web", **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": trace, "id": sid, "name": "n", "timestamp": 1_000_000, "duration": 1500}
    if parent:
        out["parentId"] = parent
    out["localEndpoint"] = {"serviceName": service}
    out.update(kw)
    return out


async def test_post_json_then_query(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(build_collector_app())
    spans = [span("a" * 16, "1" * 16, service="web"), span("b" * 16, "2" * 16, service="db")]
    resp = await client.post(
        "/api/v2/spans", data=orjson.dumps(spans), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 202
    assert await (await client.get("/api/v2/services")).json() == ["db", "web"]
    traces = await (await client.get("/api/v2/traces", params={"serviceName": "web"})).json()
    assert [t[0]["traceId"] for t in traces] == ["a" * 16]
    assert len(await (await client.get("/api/v2/traces")).json()) == 2
    assert (await client.get(f"/api/v2/trace/{'a' * 16}")).status == 200
    assert (await client.get(f"/api/v2/trace/{'c' * 16}")).status == 404
    assert (await (await client.get("/stats")).json())["spans"] == 2


async def test_post_proto_padded_ids_join_json_trace(
    aiohttp_client: ClientFactory, zipkin_pb2: SimpleNamespace
) -> None:
    client = await aiohttp_client(build_collector_app())
    s = Span(
        trace_id="463ac35c9f6413ad",
        span_id="a2fb4a1d1a96d312",
        parent_id=None,
        kind="CLIENT",
        name="backend",
        timestamp_us=5,
        start_ns=0,
        local_service="web",
        tags={"http.status_code": "200"},
        shared=False,
    )
    s.remote_endpoint = ZipkinEndpoint("backend", "127.0.0.1", None, 8080)
    body = encode_proto.encode_span(s)
    resp = await client.post("/api/v2/spans", data=body, headers={"Content-Type": "application/x-protobuf"})
    assert resp.status == 202
    got = await (await client.get("/api/v2/trace/463ac35c9f6413ad")).json()
    assert got[0]["traceId"] == "463ac35c9f6413ad"  # the 16-byte padded id is the 64-bit trace
    assert got[0]["remoteEndpoint"] == {"serviceName": "backend", "ipv4": "127.0.0.1", "port": 8080}
    assert got[0]["kind"] == "CLIENT" and got[0]["tags"] == {"http.status_code": "200"}
    # And the protobuf library agrees with our decoder about the bytes.
    msg = zipkin_pb2.ListOfSpans()
    msg.ParseFromString(body)
    assert msg.spans[0].id.hex() == got[0]["id"]


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"{not json", "application/json"),
        (b'{"traceId": "a"}', "application/json"),
        (b'[{"traceId": "xyz", "id": "1"}]', "application/json"),
        (b"\x0a\x05\x0a\x03abc", "application/x-protobuf"),
        (b"\x0a\xff", "application/x-protobuf"),
    ],
)
async def test_bad_bodies_get_400(aiohttp_client: ClientFactory, body: bytes, ctype: str) -> None:
    client = await aiohttp_client(build_collector_app())
    resp = await client.post("/api/v2/spans", data=body, headers={"Content-Type": ctype})
    assert resp.status == 400


def test_decoder_rejects_truncation() -> None:
    with pytest.raises(DecodeError):
        decode_list_of_spans(b"\x0a\x10\x0a\x08")


def test_store_evicts_oldest_traces() -> None:
    store = TraceStore(max_spans=4)
    for t in range(4):
        store.add([span(f"{t + 1:016x}", "1" * 16), span(f"{t + 1:016x}", "2" * 16)])
    assert store.span_count == 4 and store.accepted == 8
    assert store.trace(f"{1:016x}") is None and store.trace(f"{4:016x}") is not None


def test_tree_nests_shared_server_under_client() -> None:
    t = "a" * 16
    spans = [
        span(t, "0000000000000003", "0000000000000002", service="backend", kind="CLIENT"),
        span(t, "0000000000000001", service="frontend", kind="SERVER"),
        span(t, "0000000000000002", "0000000000000001", service="frontend", kind="CLIENT"),
        span(t, "0000000000000002", "0000000000000001", service="backend", kind="SERVER", shared=True),
    ]
    lines = render_trace(spans).splitlines()
    assert lines[0] == f"trace {t}  (4 spans, 2 services)"
    depth = [(len(line) - len(line.lstrip())) // 2 for line in lines[1:]]
    kinds = [line.split("└─ ")[1].split()[:2] for line in lines[1:]]
    assert kinds == [
        ["frontend", "SERVER"],
        ["frontend", "CLIENT"],
        ["backend", "SERVER"],
        ["backend", "CLIENT"],
    ]
    assert depth == [1, 2, 3, 4]


def test_tree_marks_errors_and_flags() -> None:
    out = render_trace(
        [span("a" * 16, "1" * 16, tags={"http.status_code": "503", "error": "true", "response_flags": "UF"})]
    )
    assert "503" in out and "[UF]" in out and "ERROR" in out
