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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.reporting import Reporter, ReporterSettings
from sidecar.tracing import b3, w3c
from sidecar.tracing.decide import Tracer, TracerSettings
from sidecar.tracing.encoding import JSON, otlp_encoding
from sidecar.tracing.ids import hex64, new_id64
from sidecar.tracing.request_id import is_valid_request_id, new_request_id
from sidecar.tracing.sampling import Sampling
from sidecar.tracing.span import zipkin_endpoint

START = dict(  # noqa: C408 (keyword arguments of Tracer.start)
    method=b"GET",
    authority=b"backend:8080",
    path=b"/orders/42",
    scheme="http",
    protocol="HTTP/1.1",
    user_agent=b"wrk",
    peer_address="127.0.0.1:51234",
    upstream_cluster="localhost:8080",
)
FINISH = dict(  # noqa: C408
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


def tracer(sampling: float, encoding: object = JSON) -> Tracer:
    return Tracer(
        TracerSettings(sampling=sampling, encoding=encoding),  # type: ignore[arg-type]
        service_name="web",
        node_id="default.web-01",
    )


def round_trip(t: Tracer) -> Callable[[], object]:
    def run() -> object:
        d = t.start("CLIENT", {}, **START)  # type: ignore[arg-type]
        return t.finish(d.span, **FINISH) if d.span is not None else None  # type: ignore[arg-type]

    return run


def finish_only(t: Tracer) -> Callable[[], object]:
    """`finish` with the encoder replaced by nothing: tags, duration, endpoint."""
    t._encode = lambda span: b""  # type: ignore[method-assign]

    def run() -> object:
        d = t.start("CLIENT", {}, **START)  # type: ignore[arg-type]
        assert d.span is not None
        return t.finish(d.span, **FINISH)  # type: ignore[arg-type]

    return run


def closed_span(t: Tracer) -> object:
    d = t.start("CLIENT", {}, **START)  # type: ignore[arg-type]
    assert d.span is not None
    t.finish(d.span, **FINISH)  # type: ignore[arg-type]
    return d.span


def main() -> None:
    rng = random.Random(1)
    sampling = Sampling.from_percent(100.0, 100.0, 100.0)
    rid = new_request_id(rng)
    full = tracer(100.0)
    zero = tracer(0.0)
    otlp = tracer(100.0, otlp_encoding("web"))
    span = closed_span(full)
    reporter = Reporter("http://127.0.0.1:9/api/v2/spans", JSON, ReporterSettings(buffer_capacity=10**9))
    encoded = b"x" * 600
    start_only = tracer(100.0)
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
        ("encode span: Zipkin JSON", timed(lambda: JSON.encode_span(span))),  # type: ignore[arg-type]
        ("encode span: OTLP", timed(lambda: otlp.settings.encoding.encode_span(span))),  # type: ignore[union-attr,arg-type]
        ("submit to the reporter", timed(lambda: reporter.submit(encoded) or reporter._buffer.clear())),
        ("", 0.0),
        ("whole: start, sampling 0 %", timed(lambda: zero.start("CLIENT", {}, **START))),  # type: ignore[arg-type]
        ("whole: start, sampling 100 %", timed(lambda: start_only.start("CLIENT", {}, **START))),  # type: ignore[arg-type]
        ("whole: start + finish, no encode", timed(finish_only(tracer(100.0)))),
        ("whole: start + finish, JSON", timed(round_trip(full))),
        ("whole: start + finish, OTLP", timed(round_trip(otlp))),
    ]
    compiled = (sys.modules[Tracer.__module__].__file__ or "").endswith((".so", ".pyd"))
    build = "compiled (mypyc)" if compiled else "pure Python"
    print(f"Python {sys.version.split()[0]}, tracing modules {build}")
    print(f"{'piece of tracing work':<36} {'us':>6}")
    for name, us in rows:
        print(f"{name:<36} {us:>6.2f}" if name else "")


if __name__ == "__main__":
    main()
