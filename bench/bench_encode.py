"""Micro-benchmark of the tracing hot path: `Tracer.start` + `finish` (with encoding), per core.

.venv/bin/python bench/bench_encode.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.tracing.decide import Tracer, TracerSettings
from sidecar.tracing.encoding import PROTO, otlp_encoding

HEADERS = {
    b"x-b3-traceid": b"463ac35c9f6413ad",
    b"x-b3-spanid": b"a2fb4a1d1a96d312",
    b"x-request-id": b"0a1b2c3d-aaaa",
}


def run(settings: TracerSettings | None, n: int, encode: bool = True) -> float:
    tracer = Tracer(settings, service_name="web", node_id="default.web-01")
    start = time.perf_counter()
    for _ in range(n):
        d = tracer.start(
            "SERVER",
            HEADERS,
            method="GET",
            authority="web:8080",
            path="/orders/42",
            scheme="http",
            protocol="HTTP/1.1",
            user_agent="wrk",
            peer_address="127.0.0.1:51234",
            upstream_cluster="localhost:8080",
        )
        if encode and d.span is not None:
            tracer.finish(
                d.span,
                status=200,
                request_size=0,
                response_size=2,
                response_flags="-",
                upstream_address="127.0.0.1:8080",
            )
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rows = [
        ("no backend (x-request-id only)", run(None, n)),
        ("sampled, start only", run(TracerSettings(), n, encode=False)),
        ("sampled, start + finish, JSON", run(TracerSettings(), n)),
        ("sampled, start + finish, proto3", run(TracerSettings(encoding=PROTO), n)),
        (
            "sampled, start + finish, OTLP",
            run(TracerSettings(encoding=otlp_encoding("web"), shared_span_context=False), n),
        ),
        ("unsampled (0 %)", run(TracerSettings(sampling=0.0), n)),
    ]
    print(f"{'case':<36} {'us/request':>10} {'spans/s/core':>13}")
    for name, us in rows:
        print(f"{name:<36} {us:>10.2f} {1e6 / us:>13,.0f}")


if __name__ == "__main__":
    main()
