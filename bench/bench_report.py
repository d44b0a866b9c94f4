"""CPU cost of reporting per span: submit + batch + POST to a collector in another process, for Zipkin
v2 JSON and proto3 and for OTLP/HTTP (the project's collector takes all three).

    .venv/bin/python bench/bench_report.py [SPANS]

Spans are encoded beforehand (their cost is bench_encode.py's); this measures this process's CPU time
from the first submit until the collector has accepted every span.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.reporting import Reporter, ReporterSettings, otlp_transport
from sidecar.tracing.decide import Tracer, TracerSettings
from sidecar.tracing.encoding import Encoding, encoding_for, otlp_encoding
from tests.util import free_port


def encoding_of(api: str) -> Encoding:
    return otlp_encoding("web") if api == "otlp" else encoding_for(api)


def encoded_spans(n: int, api: str) -> list[bytes]:
    tracer = Tracer(TracerSettings(encoding=encoding_of(api)), service_name="web", node_id="default.web-01")
    out = []
    for _ in range(n):
        d = tracer.start(
            "SERVER", {}, method="GET", authority="web", path="/x", scheme="http", protocol="HTTP/1.1",
            user_agent="wrk", peer_address="127.0.0.1:5000", upstream_cluster="localhost:8080",
        )  # fmt: skip
        assert d.span is not None
        out.append(
            tracer.finish(
                d.span,
                status=200,
                request_size=0,
                response_size=2,
                response_flags="-",
                upstream_address="127.0.0.1:8080",
            )
        )
    return out


def accepted(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
        return int(json.load(resp)["accepted"])


async def measure(port: int, spans: list[bytes], api: str) -> float:
    settings = ReporterSettings(buffer_capacity=len(spans) + 1000)
    if api == "otlp":
        transport = otlp_transport(f"http://127.0.0.1:{port}", "http", settings.request_timeout)
        reporter = Reporter(transport.target, encoding_of(api), settings, transport=transport)
    else:
        reporter = Reporter(f"http://127.0.0.1:{port}/api/v2/spans", encoding_of(api), settings)
    await reporter.start()
    before = accepted(port)
    cpu = time.process_time()
    for i, span in enumerate(spans):
        reporter.submit(span)
        if i % 500 == 0:
            await asyncio.sleep(0)  # let the flusher run, as the proxy's loop would
    while reporter.stats.spans_sent < len(spans):
        await asyncio.sleep(0.01)
    used = time.process_time() - cpu
    await reporter.aclose()
    assert accepted(port) - before == len(spans)
    return used / len(spans) * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    port = free_port()
    collector = subprocess.Popen(
        [sys.executable, "-m", "sidecar.collector", "--listen", f"127.0.0.1:{port}", "--max-spans", "10"]
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                accepted(port)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        for api in ("httpJson", "httpProto", "otlp"):
            spans = encoded_spans(n, api)
            us = asyncio.run(measure(port, spans, api))
            print(
                f"{api:<10} {n} spans: {us:.2f} us CPU per span reported ({1e6 / us:,.0f} spans/s per core)"
            )
    finally:
        collector.terminate()
        collector.wait()


if __name__ == "__main__":
    main()
