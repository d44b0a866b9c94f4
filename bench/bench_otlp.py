"""OTLP encoding per span: the sidecar's hand encoder against the `opentelemetry-proto` object API.

    .venv/bin/python bench/bench_otlp.py [BATCHES]

Both encode the same closed spans (a SERVER span with the tracer's tags) into 100-span
`ExportTraceServiceRequest` bodies: the hand encoder as the reporter uses it (`encode_span` when a span
closes, `encode_batch` per request), the library by filling `spans.add()` with the same fields and
attributes and calling `SerializeToString`. It prints µs of CPU per span (the best of five passes) and
the bytes allocated per span (tracemalloc), and checks the two bodies decode to the same request. The Zipkin encoders are measured
beside them for scale.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from sidecar.tracing import encode_json, encode_otlp, encode_proto
from sidecar.tracing.decide import Tracer, TracerSettings
from sidecar.tracing.encoding import otlp_encoding
from sidecar.tracing.span import Span

BATCH = 100


def closed_spans(n: int) -> list[Span]:
    tracer = Tracer(TracerSettings(shared_span_context=False), service_name="web", node_id="default.web-01")
    tracer._encode = lambda span: b""  # keep the Span objects; encoding is what is measured
    spans = []
    for i in range(n):
        d = tracer.start(
            "SERVER", {b"x-b3-traceid": b"463ac35c9f6413ad", b"x-b3-spanid": b"a2fb4a1d1a96d312"},
            method="GET", authority="web:8080", path=f"/orders/{i}", scheme="http", protocol="HTTP/1.1",
            user_agent="wrk", peer_address="127.0.0.1:51234", upstream_cluster="localhost:8080",
        )  # fmt: skip
        assert d.span is not None
        tracer.finish(
            d.span, status=200, request_size=0, response_size=2, response_flags="-",
            upstream_address="127.0.0.1:8080",
        )  # fmt: skip
        spans.append(d.span)
    return spans


def hand(spans: list[Span]) -> bytes:
    encoding = otlp_encoding("web")
    return encoding.encode_batch([encoding.encode_span(s) for s in spans])


def _set_attribute(span: PbSpan, key: str, value: str | int) -> None:
    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = value


def _scope_spans(request: ExportTraceServiceRequest) -> Any:
    """The request's one ResourceSpans (service.name "web") and its ScopeSpans, which is returned."""
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key = "service.name"
    kv.value.string_value = "web"
    ss = rs.scope_spans.add()
    ss.scope.name = encode_otlp.SCOPE_NAME
    return ss


def library(spans: list[Span]) -> bytes:
    """The same request built with the generated classes (the attributes the hand encoder writes)."""
    request = ExportTraceServiceRequest()
    ss = _scope_spans(request)
    for s in spans:
        pb = ss.spans.add()
        pb.trace_id = bytes.fromhex(s.trace_id.rjust(32, "0"))
        pb.span_id = bytes.fromhex(s.span_id)
        if s.parent_id:
            pb.parent_span_id = bytes.fromhex(s.parent_id)
        pb.name = s.name
        pb.kind = PbSpan.SPAN_KIND_SERVER if s.kind == "SERVER" else PbSpan.SPAN_KIND_CLIENT
        pb.start_time_unix_nano = s.timestamp_us * 1000
        pb.end_time_unix_nano = (s.timestamp_us + s.duration_us) * 1000
        tags = s.tags
        scheme, _, rest = tags["http.url"].partition("://")
        authority, _, path = rest.partition("/")
        host, _, port = authority.partition(":")
        peer_host, _, peer_port = tags["peer.address"].rpartition(":")
        _set_attribute(pb, "url.scheme", scheme)
        _set_attribute(pb, "server.address", host)
        _set_attribute(pb, "server.port", int(port))
        _set_attribute(pb, "url.path", "/" + path)
        _set_attribute(pb, "http.request.method", tags["http.method"])
        _set_attribute(pb, "http.response.status_code", int(tags["http.status_code"]))
        _set_attribute(pb, "network.protocol.version", "1.1")
        _set_attribute(pb, "network.peer.address", peer_host)
        _set_attribute(pb, "network.peer.port", int(peer_port))
        _set_attribute(pb, "user_agent.original", tags["user_agent"])
        for key, value in tags.items():
            if key not in encode_otlp.REPLACED_TAGS:
                _set_attribute(pb, key, value)
        if "error" in tags:
            pb.status.code = Status.STATUS_CODE_ERROR
    return request.SerializeToString()


SMALL_TAGS = {"component": "proxy", "node_id": "default.web-01", "upstream_cluster": "localhost:8080"}


def small_spans(n: int) -> list[Span]:
    """Spans with three tags that have no semantic-convention form: both encoders write them as is."""
    out = []
    for i in range(n):
        span = Span(
            trace_id="463ac35c9f6413ad463ac35c9f6413ad", span_id=f"{i + 1:016x}", parent_id="a2fb4a1d1a96d312",
            kind="SERVER", name="web:8080", timestamp_us=1_700_000_000_000_000 + i, start_ns=0,
            local_service="web", tags=dict(SMALL_TAGS),
        )  # fmt: skip
        span.duration_us = 1000
        out.append(span)
    return out


def library_small(spans: list[Span]) -> bytes:
    request = ExportTraceServiceRequest()
    ss = _scope_spans(request)
    for s in spans:
        pb = ss.spans.add()
        pb.trace_id = bytes.fromhex(s.trace_id)
        pb.span_id = bytes.fromhex(s.span_id)
        if s.parent_id:
            pb.parent_span_id = bytes.fromhex(s.parent_id)
        pb.name = s.name
        pb.kind = PbSpan.SPAN_KIND_SERVER
        pb.start_time_unix_nano = s.timestamp_us * 1000
        pb.end_time_unix_nano = (s.timestamp_us + s.duration_us) * 1000
        for key, value in s.tags.items():
            _set_attribute(pb, key, value)
    return request.SerializeToString()


def zipkin(encode: Callable[[Span], bytes], batch: Callable[[list[bytes]], bytes]) -> Callable[..., bytes]:
    return lambda spans: batch([encode(s) for s in spans])


def per_span(fn: Callable[[list[Span]], bytes], batches: list[list[Span]]) -> tuple[float, float]:
    """The best of five timed passes (CPU time: the machine is shared), and the allocation peak."""
    fn(batches[0])  # warm caches and imports
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for batch in batches:
            fn(batch)
        best = min(best, time.process_time() - start)
    us = best / (len(batches) * BATCH) * 1e6
    tracemalloc.start()
    for batch in batches[:20]:
        fn(batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return us, peak / BATCH


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    spans = closed_spans(BATCH)
    batches = [spans] * n
    a, b = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    a.ParseFromString(hand(spans))
    b.ParseFromString(library(spans))
    for request in (a, b):  # the same attributes, not necessarily in the same order
        for span in request.resource_spans[0].scope_spans[0].spans:
            ordered = sorted(span.attributes, key=lambda kv: kv.key)
            del span.attributes[:]
            span.attributes.extend(ordered)
    assert a == b, "the two encoders disagree"
    small = small_spans(BATCH)
    assert hand(small) == library_small(small), "the two encoders disagree on the small span"
    rows = [
        ("OTLP, hand encoder (chosen)", per_span(hand, batches)),
        ("OTLP, opentelemetry-proto objects", per_span(library, batches)),
        ("Zipkin v2 proto3", per_span(zipkin(encode_proto.encode_span, encode_proto.encode_batch), batches)),
        ("Zipkin v2 JSON", per_span(zipkin(encode_json.encode_span, encode_json.encode_batch), batches)),
        ("OTLP, hand encoder, small span", per_span(hand, [small] * n)),
        ("OTLP, opentelemetry-proto, small span", per_span(library_small, [small] * n)),
    ]
    build = "compiled (mypyc)" if encode_otlp.__file__.endswith(".so") else "pure Python"
    print(f"{BATCH}-span batches x {n}, Python {sys.version.split()[0]}, encoder {build}")
    print(f"{'encoder':<38} {'us/span':>8} {'peak bytes/span':>16}")
    for name, (us, peak) in rows:
        print(f"{name:<38} {us:>8.2f} {peak:>16,.0f}")


if __name__ == "__main__":
    main()
