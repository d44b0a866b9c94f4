"""Encoders: JSON validates against the Zipkin v2 schema; proto decodes with protoc-generated classes."""

from __future__ import annotations

import tracemalloc
from types import SimpleNamespace
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from sidecar.tracing import encode_json, encode_proto
from sidecar.tracing.decide import Tracer, TracerSettings
from sidecar.tracing.encoding import PROTO
from sidecar.tracing.span import Span
from tests.conftest import SPECS
from tests.tracing.conftest import make_tracer


@pytest.fixture(scope="module")
def span_validator() -> jsonschema.protocols.Validator:
    api = yaml.safe_load((SPECS / "zipkin2-api.yaml").read_text())
    schema = {"$ref": "#/definitions/ListOfSpans", "definitions": api["definitions"]}
    return jsonschema.Draft4Validator(schema)


def closed_span(tracer: Tracer, kind: str = "SERVER", status: int = 200, **incoming: str) -> bytes:
    d = tracer.start(
        kind,  # type: ignore[arg-type]
        {k.replace("_", "-").encode(): v.encode() for k, v in incoming.items()},
        method="GET",
        authority="web:8080",
        path="/p",
        scheme="http",
        protocol="HTTP/1.1",
        user_agent="ua",
        peer_address="127.0.0.1:4000",
        upstream_cluster="localhost:8080",
        remote_service="backend" if kind == "CLIENT" else None,
    )
    assert d.span is not None
    return tracer.finish(
        d.span,
        status=status,
        request_size=1,
        response_size=2,
        response_flags="-",
        upstream_address="127.0.0.1:81",
    )


CASES: list[dict[str, Any]] = [
    {},
    {"kind": "CLIENT"},
    {"status": 0},
    {"x_b3_traceid": "463ac35c9f6413ad48485a3953bb6124", "x_b3_spanid": "a2fb4a1d1a96d312"},
    {
        "x_b3_traceid": "463ac35c9f6413ad",
        "x_b3_spanid": "a2fb4a1d1a96d312",
        "x_b3_parentspanid": "0020000000000001",
    },
    {"x_b3_flags": "1"},
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    "settings", [TracerSettings(), TracerSettings(trace_id_128bit=True, shared_span_context=False)]
)
def test_every_json_span_validates_against_zipkin_schema(
    span_validator: jsonschema.protocols.Validator, case: dict[str, Any], settings: TracerSettings
) -> None:
    tracer, _ = make_tracer(settings)
    body = encode_json.encode_batch([closed_span(tracer, **case), closed_span(tracer, **case)])
    spans = orjson.loads(body)
    span_validator.validate(spans)
    assert len(spans) == 2


def test_schema_rejects_a_broken_span(span_validator: jsonschema.protocols.Validator) -> None:
    # Guards against a validator that accepts anything (e.g. a wrong $ref).
    with pytest.raises(jsonschema.ValidationError):
        span_validator.validate([{"traceId": "XYZ", "id": "1", "timestamp": "soon"}])


def test_proto_round_trips_through_generated_classes(zipkin_pb2: SimpleNamespace) -> None:
    tracer, _ = make_tracer(TracerSettings(encoding=PROTO))
    spans = [
        closed_span(
            tracer, "SERVER", x_b3_traceid="463ac35c9f6413ad", x_b3_spanid="a2fb4a1d1a96d312", x_b3_flags="1"
        ),
        closed_span(tracer, "CLIENT", status=503),
    ]
    msg = zipkin_pb2.ListOfSpans()
    msg.ParseFromString(encode_proto.encode_batch(spans))
    assert len(msg.spans) == 2
    server, client = msg.spans
    assert server.trace_id.hex() == "0" * 16 + "463ac35c9f6413ad"  # 64-bit id left-padded to 16 bytes
    assert server.id.hex() == "a2fb4a1d1a96d312" and server.shared and server.debug
    assert server.kind == zipkin_pb2.SERVER and client.kind == zipkin_pb2.CLIENT
    assert server.timestamp == 1_700_000_000_000_000 and server.duration == 1
    assert server.local_endpoint.service_name == "web"
    assert bytes(server.remote_endpoint.ipv4) == bytes([127, 0, 0, 1]) and server.remote_endpoint.port == 4000
    assert client.remote_endpoint.service_name == "backend" and client.remote_endpoint.port == 81
    assert client.tags["error"] == "true" and client.tags["http.status_code"] == "503"
    assert not client.parent_id and not client.shared
    assert dict(client.tags)["node_id"] == "default.web-01"


def test_proto_and_json_carry_the_same_span(zipkin_pb2: SimpleNamespace) -> None:
    span = Span(
        trace_id="463ac35c9f6413ad48485a3953bb6124",
        span_id="a2fb4a1d1a96d312",
        parent_id="0020000000000001",
        kind="CLIENT",
        name="backend",
        timestamp_us=2**40,
        start_ns=0,
        local_service="web",
        tags={"k": "v", "unicode": "é"},
    )
    span.duration_us = 300 * 1000
    as_json = orjson.loads(encode_json.encode_span(span))
    msg = zipkin_pb2.ListOfSpans()
    msg.ParseFromString(encode_proto.encode_span(span))
    (p,) = msg.spans
    assert p.trace_id.hex() == as_json["traceId"] and p.parent_id.hex() == as_json["parentId"]
    assert p.duration == as_json["duration"] and p.timestamp == as_json["timestamp"]
    assert dict(p.tags) == as_json["tags"] and p.name == as_json["name"]


def test_encoded_json_span_keeps_no_buffer_slack() -> None:
    # Spans wait in the reporter's buffer: an encoder that hands back its whole output buffer
    # (orjson keeps ~8 KiB per object) would multiply the memory of a full buffer by ten.
    tracer, _ = make_tracer()
    tracemalloc.start()
    try:
        spans = [closed_span(tracer) for _ in range(200)]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 3 * sum(len(s) for s in spans)


@pytest.mark.parametrize("count", [0, 1, 2, 3, 250])
def test_a_json_batch_of_any_size_is_an_array_of_its_spans_in_order(count: int) -> None:
    tracer, _ = make_tracer(TracerSettings())
    spans = [closed_span(tracer, "CLIENT", status=200 + i % 300) for i in range(count)]
    decoded = orjson.loads(encode_json.encode_batch(spans))
    assert [s["tags"]["http.status_code"] for s in decoded] == [str(200 + i % 300) for i in range(count)]
