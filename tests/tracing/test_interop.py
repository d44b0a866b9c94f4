"""Interop with other people's B3 code: OpenTelemetry's propagators and py_zipkin's helpers."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict
from opentelemetry import trace
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from py_zipkin.request_helpers import create_http_headers, extract_zipkin_attrs_from_headers
from py_zipkin.storage import Stack
from py_zipkin.zipkin import ZipkinAttrs

from sidecar.tracing.b3 import extract
from sidecar.tracing.decide import TracerSettings
from tests.tracing.conftest import make_tracer

TRACE = 0x463AC35C9F6413AD48485A3953BB6124
SPAN = 0xA2FB4A1D1A96D312


def lower(carrier: dict[str, str]) -> dict[bytes, bytes]:
    return {k.lower().encode(): v.encode() for k, v in carrier.items()}


@pytest.mark.parametrize("fmt", [B3MultiFormat(), B3SingleFormat()], ids=["multi", "single"])
@pytest.mark.parametrize("sampled", [True, False])
def test_otel_injects_we_extract(fmt: B3MultiFormat, sampled: bool) -> None:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else 0)
    ctx = trace.set_span_in_context(
        NonRecordingSpan(SpanContext(TRACE, SPAN, is_remote=True, trace_flags=flags))
    )
    carrier: dict[str, str] = {}
    fmt.inject(carrier, context=ctx)
    got = extract(lower(carrier))
    assert got is not None
    assert got.trace_id == f"{TRACE:032x}" and got.span_id == f"{SPAN:016x}"
    assert got.sampled is sampled


@pytest.mark.parametrize("fmt", [B3MultiFormat(), B3SingleFormat()], ids=["multi", "single"])
@pytest.mark.parametrize("sampled", ["1", "0"])
def test_we_inject_otel_extracts(fmt: B3MultiFormat, sampled: str) -> None:
    tracer, _ = make_tracer(TracerSettings(single_header=True))
    d = tracer.start(
        "CLIENT",
        {
            b"x-b3-traceid": f"{TRACE:032x}".encode(),
            b"x-b3-spanid": f"{SPAN:016x}".encode(),
            b"x-b3-sampled": sampled.encode(),
        },
        method="GET",
        authority="a",
        path="/",
        scheme="http",
        protocol="HTTP/1.1",
        user_agent=None,
        peer_address="127.0.0.1:1",
        upstream_cluster="b",
    )
    carrier = {k.decode(): v.decode() for k, v in d.headers}
    if isinstance(fmt, B3MultiFormat):
        carrier.pop("b3")  # OTel's multi extractor prefers b3 when present; test each format alone
    ctx = trace.get_current_span(fmt.extract(carrier)).get_span_context()
    assert ctx.trace_id == TRACE and ctx.span_id == int(d.span_id, 16) and ctx.span_id != SPAN
    assert ctx.trace_flags.sampled is (sampled == "1")


def test_otel_sdk_child_span_headers_extract() -> None:
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("op") as span:
        carrier: dict[str, str] = {}
        B3MultiFormat().inject(carrier)
    got = extract(lower(carrier))
    assert got is not None and got.span_id == f"{span.get_span_context().span_id:016x}"


def test_py_zipkin_headers_extract() -> None:
    attrs = ZipkinAttrs(
        trace_id="463ac35c9f6413ad",
        span_id="a2fb4a1d1a96d312",
        parent_span_id="0020000000000001",
        flags="0",
        is_sampled=True,
    )
    stack = Stack([attrs])
    carrier = create_http_headers(context_stack=stack)
    got = extract(lower(carrier))
    assert got is not None
    assert (got.trace_id, got.span_id, got.parent_id, got.sampled) == (
        "463ac35c9f6413ad",
        "a2fb4a1d1a96d312",
        "0020000000000001",
        True,
    )


@pytest.mark.parametrize("sampled", ["1", "0"])
def test_we_inject_py_zipkin_extracts(sampled: str) -> None:
    tracer, _ = make_tracer()
    d = tracer.start(
        "SERVER",
        {
            b"x-b3-traceid": b"463ac35c9f6413ad",
            b"x-b3-spanid": b"a2fb4a1d1a96d312",
            b"x-b3-sampled": sampled.encode(),
        },
        method="GET",
        authority="a",
        path="/",
        scheme="http",
        protocol="HTTP/1.1",
        user_agent=None,
        peer_address="127.0.0.1:1",
        upstream_cluster="b",
    )
    # py_zipkin looks headers up by their canonical names: give it a case-insensitive mapping, as
    # frameworks do.
    attrs = extract_zipkin_attrs_from_headers(CIMultiDict((k.decode(), v.decode()) for k, v in d.headers))
    assert attrs is not None
    assert attrs.trace_id == "463ac35c9f6413ad" and attrs.span_id == "a2fb4a1d1a96d312"
    assert attrs.is_sampled is (sampled == "1")
