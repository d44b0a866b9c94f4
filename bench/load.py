"""Load generation: wrk when installed (parsed), otherwise a keep-alive asyncio generator."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str | None) -> float:
    """wrk's `417.00us`, `1.20ms`, `1.02s`, `1.50m`; NaN when wrk printed none (all requests failed)."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", (text or "").strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def parse_wrk(out: str) -> LoadResult:
    pct = dict(re.findall(r"^\s*(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    return LoadResult(rps, _ms(pct.get("50")), _ms(pct.get("99")), requests, errors, "wrk")


def run_load(url: str, connections: int, duration: float) -> LoadResult:
    wrk = None if os.environ.get("SIDECAR_BENCH_PYTHON_ONLY") else shutil.which("wrk")
    if wrk:
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
        return parse_wrk(out)
    return asyncio.run(python_load(url, connections, duration))


async def python_load(url: str, connections: int, duration: float) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 2"):
                    errors += 1
                latencies.append(time.perf_counter() - start)
        except (OSError, asyncio.IncompleteReadError, AttributeError):
            errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    p = (lambda q: latencies[min(n - 1, int(q * n))] * 1000) if n else (lambda q: 0.0)
    return LoadResult(n / elapsed, p(0.5), p(0.99), n, errors, "python")
