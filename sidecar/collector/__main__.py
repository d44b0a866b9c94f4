"""`python -m sidecar.collector --listen 127.0.0.1:9411 [--listen ...]`: run the in-memory collector.

It takes Zipkin v2 spans (JSON or proto3) on POST /api/v2/spans and OTLP/HTTP (protobuf) on POST
/v1/traces, and answers Zipkin's query API
(/api/v2/services, /api/v2/traces, /api/v2/trace/ID) and /stats, for local development and the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket

from aiohttp import web

from sidecar.collector.app import build_collector_app
from sidecar.collector.store import TraceStore
from sidecar.config.address import join_host_port, split_host_port


def _host_port(value: str) -> tuple[str, int]:
    try:
        return split_host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def serve(listen: list[tuple[str, int]], max_spans: int) -> None:
    sockets = []
    for host, port in listen:  # bound first, so a busy port is one line and nothing half-started
        where = f"collector {join_host_port(host, port)}"
        try:
            family, *_, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            sockets.append(socket.create_server(address[:2], family=family))
        except OSError as exc:
            for sock in sockets:
                sock.close()
            verb = "cannot resolve the host" if isinstance(exc, socket.gaierror) else "cannot listen"
            raise SystemExit(f"{where}: {verb}: {exc.strerror or exc}; change --listen") from None
    runner = web.AppRunner(build_collector_app(TraceStore(max_spans)), access_log=None)
    await runner.setup()
    for sock in sockets:
        await web.SockSite(runner, sock).start()
        host, port = sock.getsockname()[:2]
        print(f"collector listening on http://{join_host_port(host, port)}/api/v2/spans", flush=True)
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
