"""CPU cost of the trace-context modes on one request head, without sockets: parse, decide, render.

    .venv/bin/python bench/bench_propagation.py            # microseconds per request head

The head is a small HTTP/1.1 GET (Host, User-Agent, Accept, x-request-id, plus the incoming trace
headers of the column); the tracer samples 100 % and the span is closed and encoded, as on the proxy's
path. Modes are timed interleaved in process CPU time, best of several repeats, so that the ratios
hold on a loaded machine.
"""

from __future__ import annotations

import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.proxy.head import RequestHead, render_h1_request
from sidecar.tracing.decide import Tracer, TracerSettings

BASE = [
    (b"Host", b"backend:8080"),
    (b"User-Agent", b"wrk"),
    (b"Accept", b"*/*"),
    (b"x-request-id", b"4b7e1a52-9d0c-4a8e-8a34-5d0e1f2c3b4a"),
]
INCOMING = {
    "none": [],
    "b3": [
        (b"x-b3-traceid", b"463ac35c9f6413ad"),
        (b"x-b3-spanid", b"a2fb4a1d1a96d312"),
        (b"x-b3-sampled", b"1"),
    ],
    "traceparent": [
        (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"),
        (b"tracestate", b"rojo=00f067aa0ba902b7"),
    ],
}


def one_request(tracer: Tracer, headers: list[tuple[bytes, bytes]]) -> bytes:
    head = RequestHead(headers, "1.1", tracer.header_names)
    d = tracer.start(
        "SERVER",
        head.trace_in,
        method=b"GET",
        authority=head.authority,
        path=b"/",
        scheme="http",
        protocol="HTTP/1.1",
        user_agent=head.user_agent,
        peer_address="127.0.0.1:40000",
        upstream_cluster="localhost:8080",
    )
    out = render_h1_request(b"GET", b"/", head, d.remove, d.headers, upgrade=False, default_host=b"x")
    if d.span is not None:
        tracer.finish(
            d.span,
            status=200,
            request_size=0,
            response_size=12,
            response_flags="-",
            upstream_address="127.0.0.1:8080",
        )
    return out


def main() -> int:
    modes = ("b3", "b3+w3c")
    tracers = {
        m: Tracer(TracerSettings(trace_context=m), service_name="bench", node_id="default.bench-01")
        for m in modes
    }
    number, repeats = 20000, 15
    print(
        f"microseconds per request head (CPU time, best of {repeats} x {number}), Python {sys.version.split()[0]}"
    )
    print(f"{'incoming':<12} " + " ".join(f"{m:>9}" for m in modes) + "   b3+w3c / b3")
    for name, extra in INCOMING.items():
        headers = BASE + extra
        best = dict.fromkeys(modes, float("inf"))
        for _ in range(repeats):
            for m in modes:
                timer = timeit.Timer(
                    lambda m=m, h=headers: one_request(tracers[m], h), timer=time.process_time
                )  # type: ignore[misc]
                best[m] = min(best[m], timer.timeit(number) / number * 1e6)
        print(
            f"{name:<12} "
            + " ".join(f"{best[m]:>9.2f}" for m in modes)
            + f"   {best['b3+w3c'] / best['b3']:.3f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
