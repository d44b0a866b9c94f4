"""Where a traced request's tracing time goes: µs per piece of tracing work, no sockets, no proxy.

    .venv/bin/python bench/bench_tracing.py

Each piece is timed alone (best of five passes) with the inputs a request without trace headers
brings, then the whole `Tracer.start` + `finish` is timed at 0 % and 100 % sampling, so the pieces
can be checked against the sum. What runs is whatever build of the package Python imports: run it
from a compiled tree (bench/compiled.py) to time the compiled build. The proxy's own share of a
request (parse, header rewrite, writes) is bench/bench_proxy.py's.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.reporting import Reporter, ReporterSettings
from sidecar.tracing import b3, w3c
from sidecar.tracing.decide import Tracer, TracerSettings
from sidecar.tracing.encoding import JSON, Encoding, otlp_encoding
from sidecar.tracing.ids import hex64, new_id64
from sidecar.tracing.request_id import is_valid_request_id, new_request_id
from sidecar.tracing.sampling import Sampling
from sidecar.tracing.span import Span, zipkin_endpoint

START: dict[str, Any] = dict(  # noqa: C408 (keyword arguments of Tracer.start)
    method=b"GET",
    authority=b"backend:8080",
    path=b"/orders/42",
    scheme="http",
    protocol="HTTP/1.1",
    user_agent=b"wrk",
    peer_address="127.0.0.1:51234",
    upstream_cluster="localhost:8080",
)
FINISH: dict[str, Any] = dict(  # noqa: C408
    status=200, request_size=0, response_size=2, response_flags="-", upstream_address="127.0.0.1:8080"
)
B3_IN = {b"x-b3-traceid": b"463ac35c9f6413ad", b"x-b3-spanid": b"a2fb4a1d1a96d312", b"x-b3-sampled": b"1"}
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def timed(fn: Callable[[], object], n: int = 20_000) -> float:
    """µs per call, the best of five passes (a shared machine only ever adds time)."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


# An encoding that writes nothing: `finish` timed without the encoder.
NO_ENCODING = Encoding("none", "", lambda span: b"", JSON.encode_batch)


def tracer(sampling: float, encoding: Encoding = JSON) -> Tracer:
    return Tracer(
        TracerSettings(sampling=sampling, encoding=encoding), service_name="web", node_id="default.web-01"
    )


def close_one(t: Tracer) -> Span:
    """One sampled CLIENT span, started and finished (and so encoded by the tracer's encoding)."""
    d = t.start("CLIENT", {}, **START)
    assert d.span is not None
    t.finish(d.span, **FINISH)
    return d.span


def main() -> None:
    rng = random.Random(1)
    sampling = Sampling.from_percent(100.0, 100.0, 100.0)
    rid = new_request_id(rng)
    full = tracer(100.0)
    zero = tracer(0.0)
    otlp_encoding_ = otlp_encoding("web")
    otlp = tracer(100.0, otlp_encoding_)
    unencoded = tracer(100.0, NO_ENCODING)
    span = close_one(full)
    reporter = Reporter("http://127.0.0.1:9/api/v2/spans", JSON, ReporterSettings(buffer_capacity=10**9))
    encoded = b"x" * 600

    def submit() -> None:
        reporter.submit(encoded)
        reporter._buffer.clear()  # bounded memory: only the submit is timed

    rows = [
        ("request id: check the caller's", timed(lambda: is_valid_request_id(rid.encode()))),
        ("request id: make a new one", timed(lambda: new_request_id(rng))),
        ("extract B3 multi headers", timed(lambda: b3.extract(B3_IN))),
        ("parse traceparent", timed(lambda: w3c.parse_traceparent(TRACEPARENT))),
        ("sampling decision", timed(lambda: sampling.decide(rid, False, rng))),
        ("two 64-bit ids, as hex", timed(lambda: (hex64(new_id64(rng)), hex64(new_id64(rng))))),
        (
            "B3 multi headers out",
            timed(lambda: b3.format_multi("463ac35c9f6413ad", "a2fb4a1d1a96d312", None, True, False)),
        ),
        ("traceparent out", timed(lambda: w3c.format_traceparent("463ac35c9f6413ad", "a2fb4a1d1a96d312", 1))),
        ("remote endpoint of the span", timed(lambda: zipkin_endpoint("127.0.0.1:8080", "backend"))),
        ("encode span: Zipkin JSON", timed(lambda: JSON.encode_span(span))),
        ("encode span: OTLP", timed(lambda: otlp_encoding_.encode_span(span))),
        ("submit to the reporter", timed(submit)),
        ("", 0.0),
        ("whole: start, sampling 0 %", timed(lambda: zero.start("CLIENT", {}, **START))),
        ("whole: start, sampling 100 %", timed(lambda: full.start("CLIENT", {}, **START))),
        ("whole: start + finish, no encode", timed(lambda: close_one(unencoded))),
        ("whole: start + finish, JSON", timed(lambda: close_one(full))),
        ("whole: start + finish, OTLP", timed(lambda: close_one(otlp))),
    ]
    compiled = (sys.modules[Tracer.__module__].__file__ or "").endswith((".so", ".pyd"))
    build = "compiled (mypyc)" if compiled else "pure Python"
    print(f"Python {sys.version.split()[0]}, tracing modules {build}")
    print(f"{'piece of tracing work':<36} {'us':>6}")
    for name, us in rows:
        print(f"{name:<36} {us:>6.2f}" if name else "")


if __name__ == "__main__":
    main()
