"""gRPC unary calls: a grpcio client → (sidecar) → a grpcio server, against the same server called directly.

    .venv/bin/python bench/grpc_bench.py                       # grpcio client, 3 rounds x 5 s
    .venv/bin/python bench/grpc_bench.py --load h2load         # h2load -c 4 -m 16 (the load the peers were measured with)

Peers: `direct`; `sidecar-0` and `sidecar-100` (an inbound tagged kuma.io/protocol: grpc, sampling 0 and
100 %, spans to bench/sink.py), on libnghttp2; `--codecs nghttp2,h2` adds `sidecar-0-h2`, `sidecar-100-h2`. The grpcio client runs in its own process with `--callers` concurrent
calls; it saturates itself near 7k calls/s here, which is the point: the question is whether the
sidecar is what limits a Python gRPC service. CPU is the peer's own process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import PY, Harness, Peer, peak_rss_mb, proc_cpu  # noqa: E402
from tests.util import free_port  # noqa: E402

SERVER = r"""
import asyncio, sys, grpc
def ident(b): return b
async def ping(request, context): return request
async def main():
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "t.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(ping, ident, ident)})])
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()
asyncio.run(main())
"""

CLIENT = r"""
import asyncio, json, sys, time, grpc
def ident(b): return b
async def main(port, callers, seconds):
    latencies, errors = [], 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        ping = channel.unary_unary("/t.Echo/Ping", request_serializer=ident, response_deserializer=ident)
        await ping(b"warm", timeout=5)
        deadline = time.perf_counter() + seconds
        async def caller():
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    await ping(b"x" * 32, timeout=5)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - start)
        await asyncio.gather(*(caller() for _ in range(callers)))
    latencies.sort()
    n = len(latencies)
    print(json.dumps({"calls": n / seconds, "p50_ms": latencies[n // 2] * 1000,
                      "p99_ms": latencies[int(n * 0.99)] * 1000, "errors": errors, "n": n}))
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
"""

GRPC_BODY = b"\x00\x00\x00\x00\x20" + b"x" * 32  # the 5-byte gRPC prefix and a 32-byte message


def grpcio_load(port: int, callers: int, seconds: float) -> dict[str, Any]:
    import json

    out = subprocess.run(
        [PY, "-c", CLIENT, str(port), str(callers), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def h2load_load(port: int, seconds: float) -> dict[str, Any]:
    with (
        tempfile.NamedTemporaryFile(suffix=".bin") as body,
        tempfile.NamedTemporaryFile("r", suffix=".log") as log,
    ):
        body.write(GRPC_BODY)
        body.flush()
        cmd = ["h2load", "-c", "4", "-m", "16", "-D", f"{seconds:g}", "-d", body.name, "-H", "content-type: application/grpc",
               "-H", "te: trailers", f"--log-file={log.name}", f"http://127.0.0.1:{port}/t.Echo/Ping"]  # fmt: skip
        subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        latencies = sorted(
            int(line.split("\t")[2]) / 1000 for line in Path(log.name).read_text().splitlines() if line
        )
    n = len(latencies)
    return {
        "calls": n / seconds,
        "p50_ms": latencies[n // 2],
        "p99_ms": latencies[int(n * 0.99)],
        "errors": 0,
        "n": n,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, default=32, help="concurrent calls of the grpcio client")
    parser.add_argument("--load", choices=("grpcio", "h2load"), default="grpcio")
    parser.add_argument(
        "--codecs", default="nghttp2", help="HTTP/2 codecs to run the sidecar with, e.g. nghttp2,h2"
    )
    args = parser.parse_args()
    h = Harness(Path(tempfile.mkdtemp(prefix="sidecar-grpc-bench-")))
    try:
        h.start_collector("sink")
        server_port = free_port()
        server = h.spawn([PY, "-c", SERVER, str(server_port)], "grpc-server")
        log = h.workdir / "grpc-server.log"
        deadline = time.monotonic() + 20
        while "ready" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline and server.poll() is None, "the gRPC server did not start"
            time.sleep(0.05)
        peers = {"direct": Peer("direct", server_port, [server.pid], [])}
        for codec in args.codecs.split(","):
            suffix = "" if codec == "nghttp2" else f"-{codec}"
            for sampling in (0, 100):
                name = f"sidecar-{sampling}{suffix}"
                peers[name] = h.start_sidecar(
                    name, server_port, float(sampling), lag_probe=0.1, protocol="grpc",
                    extra=("--h2-codec", codec),
                )  # fmt: skip
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in peers}
        order = list(peers)
        for r in range(args.rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                peer = peers[name]
                cpu = proc_cpu(peer.pids)
                result = (
                    grpcio_load(peer.port, args.callers, args.duration)
                    if args.load == "grpcio"
                    else h2load_load(peer.port, args.duration)
                )
                result["cpu_us"] = (proc_cpu(peer.pids) - cpu) / max(1, result["n"]) * 1e6
                runs[name].append(result)
        print(f"\ngRPC unary, {args.load} load, {args.rounds} rounds x {args.duration:.0f}s (medians)")
        print(
            f"{'peer':<12} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/call':>12} {'RSS MB':>7} {'errors':>7}"
        )
        med: dict[str, dict[str, float]] = {}
        for name, rs in runs.items():
            med[name] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            m = med[name]
            rss = peak_rss_mb(peers[name].pids)
            print(
                f"{name:<12} {m['calls']:>9.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} {m['cpu_us']:>12.1f} {rss:>7.1f} {m['errors']:>7.0f}"
            )
        for name in [n for n in med if n != "direct"]:
            print(f"{name} / direct: {med[name]['calls'] / med['direct']['calls']:.2f}x calls/s")
    finally:
        h.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
