"""`python -m sidecar.collector --listen 127.0.0.1:9411 [--listen ...]`: run the in-memory collector."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from aiohttp import web

from sidecar.collector.app import build_collector_app
from sidecar.collector.store import TraceStore


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(listen: list[tuple[str, int]], max_spans: int) -> None:
    runner = web.AppRunner(build_collector_app(TraceStore(max_spans)), access_log=None)
    await runner.setup()
    for host, port in listen:
        await web.TCPSite(runner, host, port).start()
        print(f"collector listening on http://{host}:{port}/api/v2/spans", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m sidecar.collector", description=__doc__)
    parser.add_argument("--listen", action="append", type=_host_port, metavar="HOST:PORT")
    parser.add_argument("--max-spans", type=int, default=200_000)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen or [("127.0.0.1", 9411)], args.max_spans))
    return 0


raise SystemExit(main())
