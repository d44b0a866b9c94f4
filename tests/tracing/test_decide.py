"""The per-request decision: ids, sampling precedence, shared vs child spans, propagated headers."""

from __future__ import annotations

import orjson

from sidecar.tracing.decide import TRACE_HEADER_NAMES, Decision, TracerSettings
from tests.tracing.conftest import make_tracer

CALLER_TRACE = "463ac35c9f6413ad"
CALLER_SPAN = "a2fb4a1d1a96d312"
CALLER_PARENT = "0020000000000001"
RID = "0a1b2c3d-0000-4000-8000-000000000000"


def start(
    settings: TracerSettings | None = TracerSettings(), kind: str = "SERVER", **headers: str
) -> Decision:
    tracer, _ = make_tracer(settings)
    incoming = {k.replace("_", "-").encode(): v.encode() for k, v in headers.items()}
    return tracer.start(
        kind,  # type: ignore[arg-type]
        incoming,
        method="GET",
        authority="web:8080",
        path="/orders?id=1",
        scheme="http",
        protocol="HTTP/1.1",
        user_agent="curl/8",
        peer_address="10.0.0.7:41000",
        upstream_cluster="localhost:8080",
        remote_service="backend" if kind == "CLIENT" else None,
    )


def sent(d: Decision) -> dict[bytes, bytes]:
    return dict(d.headers)


def test_root_server_span_when_no_context() -> None:
    d = start(x_request_id=RID)
    assert d.span is not None and d.sampled
    assert d.span.parent_id is None and not d.span.shared
    assert d.span.trace_id == d.span.span_id  # 64-bit root: one value for both
    assert sent(d)[b"x-b3-traceid"] == d.trace_id.encode()
    assert b"x-b3-parentspanid" not in sent(d)
    assert sent(d)[b"x-b3-sampled"] == b"1"


def test_root_with_128bit_ids() -> None:
    d = start(TracerSettings(trace_id_128bit=True))
    assert d.span is not None and len(d.trace_id) == 32 and d.trace_id.endswith(d.span_id)


def test_incoming_128bit_trace_id_is_kept_even_when_64bit_configured() -> None:
    trace = "463ac35c9f6413ad48485a3953bb6124"
    d = start(x_b3_traceid=trace, x_b3_spanid=CALLER_SPAN)
    assert d.trace_id == trace


def test_inbound_shared_span_reuses_caller_span_id() -> None:
    d = start(x_b3_traceid=CALLER_TRACE, x_b3_spanid=CALLER_SPAN, x_b3_parentspanid=CALLER_PARENT)
    assert d.span is not None and d.span.shared
    assert (d.span.trace_id, d.span.span_id, d.span.parent_id) == (CALLER_TRACE, CALLER_SPAN, CALLER_PARENT)
    assert sent(d)[b"x-b3-spanid"] == CALLER_SPAN.encode()
    assert sent(d)[b"x-b3-parentspanid"] == CALLER_PARENT.encode()


def test_inbound_unshared_span_is_a_child() -> None:
    d = start(TracerSettings(shared_span_context=False), x_b3_traceid=CALLER_TRACE, x_b3_spanid=CALLER_SPAN)
    assert d.span is not None and not d.span.shared
    assert d.span.parent_id == CALLER_SPAN and d.span.span_id != CALLER_SPAN
    assert sent(d)[b"x-b3-spanid"] == d.span.span_id.encode()
    assert sent(d)[b"x-b3-parentspanid"] == CALLER_SPAN.encode()


def test_outbound_client_span_is_child_even_with_shared_context() -> None:
    d = start(kind="CLIENT", x_b3_traceid=CALLER_TRACE, x_b3_spanid=CALLER_SPAN)
    assert d.span is not None and d.span.kind == "CLIENT" and not d.span.shared
    assert d.span.parent_id == CALLER_SPAN and d.trace_id == CALLER_TRACE


def test_incoming_unsampled_is_honoured_and_ids_still_propagated() -> None:
    d = start(x_b3_traceid=CALLER_TRACE, x_b3_spanid=CALLER_SPAN, x_b3_sampled="0")
    assert d.span is None and not d.sampled
    assert sent(d)[b"x-b3-sampled"] == b"0"
    assert sent(d)[b"x-b3-traceid"] == CALLER_TRACE.encode()


def test_incoming_sampled_overrides_zero_percent() -> None:
    d = start(
        TracerSettings(sampling=0.0), x_b3_traceid=CALLER_TRACE, x_b3_spanid=CALLER_SPAN, x_b3_sampled="1"
    )
    assert d.span is not None


def test_sampling_only_header_zero_starts_unsampled_trace_with_ids() -> None:
    d = start(b3="0")
    assert d.span is None and d.trace_id and sent(d)[b"x-b3-sampled"] == b"0"


def test_debug_flag_samples_at_zero_percent_and_marks_span() -> None:
    d = start(TracerSettings(sampling=0.0), x_b3_flags="1")
    assert d.span is not None and d.span.debug and d.debug
    assert sent(d)[b"x-b3-flags"] == b"1"


def test_local_decision_follows_request_id() -> None:
    assert start(TracerSettings(sampling=50.0), x_request_id="00000001-x").sampled
    assert not start(TracerSettings(sampling=50.0), x_request_id="0000270f-x").sampled  # 9999


def test_invalid_context_starts_new_trace_and_replaces_every_b3_header() -> None:
    d = start(x_b3_traceid="nothex", x_b3_spanid=CALLER_SPAN, b3="garbage")
    assert d.span is not None and d.span.parent_id is None and d.trace_id != "nothex"
    assert d.remove >= TRACE_HEADER_NAMES
    assert b"b3" not in sent(d)  # a stale single header never travels beside fresh x-b3-*


def test_request_id_kept_or_created() -> None:
    assert start(x_request_id="my-id-1").request_id == "my-id-1"
    made = start(x_request_id="bad id with spaces").request_id
    assert made != "bad id with spaces" and len(made) == 36
    assert sent(start(x_request_id="keep"))[b"x-request-id"] == b"keep"


def test_no_backend_only_handles_request_id() -> None:
    d = start(None, x_b3_traceid=CALLER_TRACE, x_b3_spanid=CALLER_SPAN)
    assert d.span is None and d.trace_id == ""
    assert d.remove == frozenset({b"x-request-id"})
    assert list(sent(d)) == [b"x-request-id"]


def test_single_header_output_option() -> None:
    d = start(TracerSettings(single_header=True), x_b3_traceid=CALLER_TRACE, x_b3_spanid=CALLER_SPAN)
    assert sent(d)[b"b3"] == f"{CALLER_TRACE}-{CALLER_SPAN}-1".encode()


def test_finish_sets_envoy_tags_duration_and_endpoints() -> None:
    tracer, clock = make_tracer()
    d = tracer.start(
        "CLIENT",
        {},
        method="POST",
        authority="backend",
        path="/x" * 200,
        scheme="http",
        protocol="HTTP/1.1",
        user_agent=None,
        peer_address="127.0.0.1:5000",
        upstream_cluster="backend",
        remote_service="backend",
    )
    assert d.span is not None
    clock.advance_us(1234)
    body = tracer.finish(
        d.span,
        status=503,
        request_size=10,
        response_size=20,
        response_flags="UF",
        upstream_address="127.0.0.1:10011",
    )
    span = orjson.loads(body)
    assert span["duration"] == 1234
    assert span["timestamp"] == 1_700_000_000_000_000
    assert span["name"] == "backend" and span["kind"] == "CLIENT"
    assert span["localEndpoint"] == {"serviceName": "web"}
    assert span["remoteEndpoint"] == {"serviceName": "backend", "ipv4": "127.0.0.1", "port": 10011}
    tags = span["tags"]
    assert tags["http.url"] == "http://backend" + ("/x" * 200)[:256]
    assert tags["user_agent"] == "-" and tags["error"] == "true" and tags["response_flags"] == "UF"
    assert (
        tags["http.status_code"] == "503" and tags["request_size"] == "10" and tags["response_size"] == "20"
    )
    assert tags["node_id"] == "default.web-01" and tags["component"] == "proxy"
    assert tags["guid:x-request-id"] == d.request_id
    assert all(isinstance(v, str) for v in tags.values())


def test_duration_is_at_least_one_microsecond_and_no_error_on_2xx() -> None:
    tracer, _ = make_tracer()
    d = tracer.start(
        "SERVER",
        {},
        method="GET",
        authority="web",
        path="/",
        scheme="http",
        protocol="HTTP/1.1",
        user_agent="ua",
        peer_address="[::1]:4000",
        upstream_cluster="localhost:8080",
    )
    assert d.span is not None
    span = orjson.loads(
        tracer.finish(
            d.span, status=200, request_size=0, response_size=2, response_flags="-", upstream_address=None
        )
    )
    assert span["duration"] == 1 and "error" not in span["tags"] and "shared" not in span
    assert span["remoteEndpoint"] == {"ipv6": "::1", "port": 4000}
