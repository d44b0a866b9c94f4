"""The benchmark harness itself works (tiny run, no timing assertions): peers start, load runs, table prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sidecar import build

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_run() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--duration",
            "1",
            "--rounds",
            "1",
            "--levels",
            "4",
            "--peers",
            "direct,sidecar-0,sidecar-100,sidecar-100-otlp",
            "--python-only",  # the same path on every machine, with or without nginx and wrk
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = [line.split() for line in proc.stdout.splitlines() if len(line.split()) == 9]
    peers = ("direct", "sidecar-0", "sidecar-100", "sidecar-100-otlp")
    rows = {r[0]: r for r in table if r[0] in peers}
    assert set(rows) == set(peers)
    assert all(float(r[1]) > 0 and r[7] == "0" for r in rows.values())  # req/s measured, no errors
    assert float(rows["sidecar-100"][6]) > 0.9  # spans per request delivered to the collector
    assert float(rows["sidecar-100-otlp"][6]) > 0.9  # the same as OTLP/HTTP, counted by the sink
    assert "sidecar-100 / sidecar-0" in proc.stdout
    assert "load: python" in proc.stdout


def test_wrk_output_parsing() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.load import parse_wrk

    out = """Running 5s test @ http://127.0.0.1:1/
  1 threads and 50 connections
  Latency Distribution
     50%  417.00us
     75%    1.00ms
     90%    1.10ms
     99%    1.20s
  123456 requests in 5.00s, 10.00MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:  24690.13
"""
    r = parse_wrk(out)
    assert (r.rps, r.p50_ms, r.p99_ms, r.requests, r.errors) == (24690.13, 0.417, 1200.0, 123456, 6)


def test_opcode_count_is_the_same_on_every_run() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.opcodes import per_request

    first = per_request()
    # The compiled build runs the data path as C: only the interpreted remainder has opcodes to count.
    assert first > (100 if build() == "pure Python" else 0) and per_request() == first
