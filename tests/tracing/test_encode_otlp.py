"""OTLP encoder: its bytes decode with the `opentelemetry-proto` classes into the spans the tracer made."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from sidecar.tracing import encode_otlp
from sidecar.tracing.decide import TracerSettings
from sidecar.tracing.encoding import otlp_encoding
from sidecar.tracing.span import Span
from tests.tracing.conftest import make_tracer

OTLP = otlp_encoding("web")


def close(
    kind: str = "SERVER",
    status: int = 200,
    flags: str = "-",
    path: str = "/p?q=1",
    tags: dict[str, str] | None = None,
    **incoming: str,
) -> bytes:
    tracer, clock = make_tracer(TracerSettings(shared_span_context=False, encoding=OTLP))
    d = tracer.start(
        kind,  # type: ignore[arg-type]
        {k.replace("_", "-").encode(): v.encode() for k, v in incoming.items()},
        method="POST",
        authority="web:8080",
        path=path,
        scheme="http",
        protocol="HTTP/1.1",
        user_agent="curl/8",
        peer_address="10.0.0.9:4000",
        upstream_cluster="localhost:8080",
        remote_service="backend" if kind == "CLIENT" else None,
    )
    assert d.span is not None
    clock.advance_us(1500)
    return tracer.finish(
        d.span,
        status=status,
        request_size=3,
        response_size=5,
        response_flags=flags,
        upstream_address="127.0.0.1:81",
        tags=tags,
    )


def decode(*spans: bytes, service: str = "web") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(otlp_encoding(service).encode_batch(list(spans)))
    return request


def attributes(span: PbSpan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which)
    return out


def only_span(request: ExportTraceServiceRequest) -> PbSpan:
    (resource_spans,) = request.resource_spans
    (scope_spans,) = resource_spans.scope_spans
    (span,) = scope_spans.spans
    return span


def test_resource_has_the_service_name_and_one_scope() -> None:
    request = decode(close(), close(), service="web")
    (rs,) = request.resource_spans
    assert [(a.key, a.value.string_value) for a in rs.resource.attributes] == [("service.name", "web")]
    (ss,) = rs.scope_spans
    assert ss.scope.name == encode_otlp.SCOPE_NAME
    assert len(ss.spans) == 2


def test_server_span_is_a_child_with_its_own_id_and_16_byte_trace_id() -> None:
    span = only_span(
        decode(close(x_b3_traceid="463ac35c9f6413ad", x_b3_spanid="a2fb4a1d1a96d312", x_b3_sampled="1"))
    )
    assert span.trace_id == bytes.fromhex("0000000000000000463ac35c9f6413ad")
    assert span.parent_span_id == bytes.fromhex("a2fb4a1d1a96d312")
    assert len(span.span_id) == 8 and span.span_id != span.parent_span_id
    assert span.kind == PbSpan.SPAN_KIND_SERVER


def test_root_client_span_has_no_parent() -> None:
    span = only_span(decode(close("CLIENT")))
    assert span.parent_span_id == b""
    assert span.kind == PbSpan.SPAN_KIND_CLIENT
    assert span.name == "web:8080"


def test_times_are_unix_nanoseconds() -> None:
    span = only_span(decode(close()))
    assert span.start_time_unix_nano == 1_700_000_000_000_000_000
    assert span.end_time_unix_nano - span.start_time_unix_nano == 1_500_000


def test_http_semantic_convention_attributes_and_envoy_tags() -> None:
    attrs = attributes(only_span(decode(close())))
    assert attrs["http.request.method"] == "POST"
    assert attrs["http.response.status_code"] == 200
    assert attrs["url.path"] == "/p"
    assert attrs["url.query"] == "q=1"
    assert attrs["url.scheme"] == "http"
    assert attrs["server.address"] == "web"
    assert attrs["server.port"] == 8080
    assert attrs["network.peer.address"] == "10.0.0.9"
    assert attrs["network.peer.port"] == 4000
    assert attrs["network.protocol.version"] == "1.1"
    assert attrs["user_agent.original"] == "curl/8"
    assert attrs["upstream_cluster"] == "localhost:8080"
    assert attrs["response_flags"] == "-"
    assert attrs["component"] == "proxy"
    assert len(attrs["guid:x-request-id"]) == 36
    assert attrs["request_size"] == "3"
    for replaced in ("http.method", "http.status_code", "http.url", "peer.address", "user_agent", "error"):
        assert replaced not in attrs


def test_ok_span_has_unset_status() -> None:
    assert only_span(decode(close(status=204))).status.code == Status.STATUS_CODE_UNSET


@pytest.mark.parametrize(
    ("status", "flags"),
    [(500, "-"), (503, "UH"), (504, "UT"), (0, "DC"), (200, "UR")],
)
def test_5xx_and_local_replies_are_errors(status: int, flags: str) -> None:
    span = only_span(decode(close(status=status, flags=flags)))
    assert span.status.code == Status.STATUS_CODE_ERROR


def test_no_response_has_no_status_code_attribute() -> None:
    assert "http.response.status_code" not in attributes(only_span(decode(close(status=0, flags="DC"))))


def test_grpc_attributes() -> None:
    tags = {"grpc.path": "/t.Echo/Ping", "grpc.status_code": "14", "grpc.message": "down", "error": "true"}
    span = only_span(decode(close(tags=tags, path="/t.Echo/Ping")))
    attrs = attributes(span)
    assert attrs["rpc.system"] == "grpc"
    assert attrs["rpc.service"] == "t.Echo"
    assert attrs["rpc.method"] == "Ping"
    assert attrs["rpc.grpc.status_code"] == 14
    assert attrs["grpc.message"] == "down"
    assert span.status.code == Status.STATUS_CODE_ERROR


def test_ipv6_peer_and_authority_without_port() -> None:
    assert encode_otlp.split_host_port("[::1]:80") == ("::1", 80)
    assert encode_otlp.split_host_port("::1") == ("::1", None)
    assert encode_otlp.split_host_port("web") == ("web", None)
    assert encode_otlp.split_host_port("web:99999") == ("web", None)


def test_non_ascii_values_round_trip() -> None:
    attrs = attributes(only_span(decode(close(path="/é"))))
    assert attrs["url.path"] == "/é"


def test_empty_batch_is_a_valid_request() -> None:
    assert len(decode().resource_spans[0].scope_spans[0].spans) == 0


def test_partial_success_is_read() -> None:
    response = ExportTraceServiceResponse()
    response.partial_success.rejected_spans = 7
    response.partial_success.error_message = "too old"
    assert encode_otlp.decode_partial_success(response.SerializeToString()) == (7, "too old")
    assert encode_otlp.decode_partial_success(b"") == (0, "")
    assert encode_otlp.decode_partial_success(b"\xff\xff") == (0, "")


def test_a_large_batch_matches_the_protobuf_library_byte_for_byte() -> None:
    """The library re-encodes what it decoded into the same bytes: no unknown or misplaced fields."""
    body = otlp_encoding("web").encode_batch([close(status=s) for s in (200, 404, 503)] * 50)
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    assert request.SerializeToString() == body


ids = st.text("0123456789abcdef", min_size=16, max_size=16).filter(lambda s: s != "0" * 16)


@given(
    trace_id=st.one_of(ids, st.text("0123456789abcdef", min_size=32, max_size=32)),
    span_id=ids,
    parent=st.one_of(st.none(), ids),
    start_us=st.integers(0, 2**53),
    duration_us=st.integers(1, 10**10),
    tags=st.dictionaries(st.text(max_size=20).map("t.".__add__), st.text(max_size=40), max_size=6),
)
def test_any_span_decodes_to_its_fields(
    trace_id: str, span_id: str, parent: str | None, start_us: int, duration_us: int, tags: dict[str, str]
) -> None:
    span = Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent,
        kind="CLIENT",
        name="n",
        timestamp_us=start_us,
        start_ns=0,
        local_service="s",
        tags=dict(tags),
    )
    span.duration_us = duration_us
    try:
        decoded = only_span(decode(encode_otlp.encode_span(span), service="s"))
    except DecodeError as exc:  # pragma: no cover - the assertion names the input
        raise AssertionError(f"undecodable: {span!r} {tags!r}") from exc
    assert decoded.trace_id.hex() == trace_id.rjust(32, "0")
    assert decoded.span_id.hex() == span_id
    assert decoded.parent_span_id.hex() == (parent or "")
    assert decoded.start_time_unix_nano == start_us * 1000
    assert decoded.end_time_unix_nano == (start_us + duration_us) * 1000
    assert attributes(decoded) == tags


@given(
    request_id=st.text(min_size=1, max_size=300),
    path=st.text(max_size=300).map("/".__add__),
    query=st.one_of(st.none(), st.text(max_size=200)),
)
def test_per_request_values_of_any_length_decode(request_id: str, path: str, query: str | None) -> None:
    """The request id and url path/query are encoded per span (cached prefixes by length, up to the
    one-byte-length limit and past it); the same span encodes to the same bytes a second time."""
    url_path = path.replace("?", "")
    url = f"http://web:8080{url_path}" + ("" if query is None else f"?{query}")
    span = Span(
        trace_id="463ac35c9f6413ad",
        span_id="a2fb4a1d1a96d312",
        parent_id=None,
        kind="SERVER",
        name="web:8080",
        timestamp_us=1,
        start_ns=0,
        local_service="s",
        tags={"guid:x-request-id": request_id, "http.url": url},
    )
    first = encode_otlp.encode_span(span)
    assert encode_otlp.encode_span(span) == first
    attrs = attributes(only_span(decode(first, service="s")))
    assert attrs["guid:x-request-id"] == request_id
    assert attrs["url.path"] == url_path
    assert attrs.get("url.query") == query
    assert (attrs["url.scheme"], attrs["server.address"], attrs["server.port"]) == ("http", "web", 8080)


@given(paths=st.lists(st.text(min_size=0, max_size=300).map(lambda s: "/" + s), max_size=40))
def test_a_batch_of_any_size_decodes_to_its_spans_in_order(paths: list[str]) -> None:
    """The request's nested lengths are computed before the one join: any count (0 too) and any span
    sizes, whose sum crosses one-, two- and three-byte varints, frame correctly."""
    spans = [close(path=p) for p in paths]
    body = OTLP.encode_batch(spans)
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    assert request.SerializeToString() == body
    (resource_spans,) = request.resource_spans
    assert resource_spans.resource.attributes[0].value.string_value == "web"
    (scope_spans,) = resource_spans.scope_spans
    assert [attributes(s).get("url.path", "") for s in scope_spans.spans] == [
        p.partition("?")[0] for p in paths
    ]
