"""Interop with OpenTelemetry's W3C propagator (the SDK default): what it injects we continue, and back."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sidecar.tracing.decide import TracerSettings
from sidecar.tracing.w3c import parse_traceparent
from tests.tracing.conftest import make_tracer

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN = 0x00F067AA0BA902B7
W3C = TraceContextTextMapPropagator()


@pytest.mark.parametrize("flags", [0, 1, 3])
def test_otel_injects_we_continue(flags: int) -> None:
    state = TraceState([("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")])
    span = NonRecordingSpan(
        SpanContext(TRACE, SPAN, is_remote=True, trace_flags=TraceFlags(flags), trace_state=state)
    )
    carrier: dict[str, str] = {}
    W3C.inject(carrier, context=trace.set_span_in_context(span))
    parsed = parse_traceparent(carrier["traceparent"].encode())
    assert parsed is not None and (parsed.trace_id, parsed.parent_id, parsed.flags) == (
        f"{TRACE:032x}",
        f"{SPAN:016x}",
        flags,
    )
    tracer, _ = make_tracer(TracerSettings(sampling=50.0))
    d = tracer.start(
        "SERVER",
        {k.encode(): v.encode() for k, v in carrier.items()},
        method="GET",
        authority="web",
        path="/",
        scheme="http",
        protocol="HTTP/1.1",
        user_agent=None,
        peer_address="127.0.0.1:1",
        upstream_cluster="web",
    )
    assert d.trace_id == f"{TRACE:032x}" and d.sampled is bool(flags & 1)
    assert dict(d.headers)[b"tracestate"] == carrier["tracestate"].encode()


@pytest.mark.parametrize("sampling", [0.0, 100.0])
@pytest.mark.parametrize("trace_id_128bit", [False, True])
def test_we_inject_otel_extracts(sampling: float, trace_id_128bit: bool) -> None:
    tracer, _ = make_tracer(TracerSettings(sampling=sampling, trace_id_128bit=trace_id_128bit))
    d = tracer.start(
        "CLIENT",
        {},
        method="GET",
        authority="backend",
        path="/",
        scheme="http",
        protocol="HTTP/1.1",
        user_agent=None,
        peer_address="127.0.0.1:1",
        upstream_cluster="backend",
    )
    carrier = {k.decode(): v.decode() for k, v in d.headers}
    ctx = trace.get_current_span(W3C.extract(carrier)).get_span_context()
    assert ctx.is_valid and ctx.is_remote
    assert ctx.trace_id == int(d.trace_id, 16) and ctx.span_id == int(d.span_id, 16)
    assert ctx.trace_flags.sampled is d.sampled
