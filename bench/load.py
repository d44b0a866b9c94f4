"""Load generation: wrk when installed (parsed), otherwise a keep-alive asyncio generator."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
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


@dataclass
class RateResult:
    """A fixed-rate run: what was achieved and the latency distribution, in ms."""

    rate: float  # requests per second answered
    percentiles: dict[str, float]  # "p50", "p90", "p99", "p99.9" -> ms
    requests: int
    errors: int
    tool: str


PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}


def _percentiles(latencies_ms: list[float]) -> dict[str, float]:
    latencies_ms.sort()
    n = len(latencies_ms)
    if not n:
        return dict.fromkeys(PERCENTILES, float("nan"))
    return {name: latencies_ms[min(n - 1, int(q * n))] for name, q in PERCENTILES.items()}


def parse_hey_csv(out: str, duration: float) -> RateResult:
    """hey -o csv: one row per request, `response-time` (seconds) first, `status-code` seventh."""
    latencies: list[float] = []
    errors = 0
    for line in out.splitlines()[1:]:
        fields = line.split(",")
        if len(fields) < 8:
            continue
        latencies.append(float(fields[0]) * 1000)
        if not fields[6].startswith("2"):
            errors += 1
    return RateResult(len(latencies) / duration, _percentiles(latencies), len(latencies), errors, "hey")


def parse_h2load_log(text: str, duration: float) -> RateResult:
    """h2load --log-file: `start-µs<TAB>status<TAB>response-µs` per request (µs resolution)."""
    latencies: list[float] = []
    errors = 0
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 3:
            continue
        latencies.append(int(fields[2]) / 1000)
        if not fields[1].startswith("2"):
            errors += 1
    return RateResult(len(latencies) / duration, _percentiles(latencies), len(latencies), errors, "h2load")


def run_rate(url: str, rate: int, connections: int, duration: float, tool: str = "auto") -> RateResult:
    """`rate` requests per second over `connections` keep-alive connections (each `rate/connections`).
    `tool` auto: h2load (µs resolution) when installed, else hey (its CSV has 0.1 ms resolution), else
    Python; `h2load` or `hey`: that one only (an error when it is missing)."""
    python_only = os.environ.get("SIDECAR_BENCH_PYTHON_ONLY")
    h2load = None if python_only or tool == "hey" else shutil.which("h2load")
    hey = None if python_only or tool == "h2load" else shutil.which("hey")
    if tool != "auto" and not (h2load or hey):
        raise RuntimeError(
            f"{tool} not found (apt-get install -y {'nghttp2-client' if tool == 'h2load' else tool})"
        )
    per_connection = max(1, rate // connections)
    if h2load:
        with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
            cmd = [h2load, "--h1", "-c", str(connections), "--rps", str(per_connection), "-D", f"{duration:g}",
                   f"--log-file={log.name}", url]  # fmt: skip
            subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
            return parse_h2load_log(Path(log.name).read_text(), duration)
    if hey:
        cmd = [
            hey,
            "-z",
            f"{duration:g}s",
            "-c",
            str(connections),
            "-q",
            str(per_connection),
            "-o",
            "csv",
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
        return parse_hey_csv(out, duration)
    return asyncio.run(python_rate(url, per_connection, connections, duration))


async def python_rate(url: str, per_connection: int, connections: int, duration: float) -> RateResult:
    """Open loop per connection: each request is due at its slot, and its latency counts from the slot
    (so a late send is not hidden: no coordinated omission)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    interval = 1.0 / per_connection
    start = time.perf_counter() + 0.05

    async def worker(offset: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            slot = start + offset
            while slot < start + duration:
                delay = slot - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 2"):
                    errors += 1
                latencies.append((time.perf_counter() - slot) * 1000)
                slot += interval
        except (OSError, asyncio.IncompleteReadError, AttributeError):
            errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(i * interval / connections) for i in range(connections)))
    return RateResult(len(latencies) / duration, _percentiles(latencies), len(latencies), errors, "python")
