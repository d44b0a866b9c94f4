"""The runtime in-process: reload swaps listener kinds on the same port, and a failed reload changes nothing."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import yaml
from aiohttp import web

from sidecar.proxy import HttpListener, TcpListener
from sidecar.runtime import RunOptions, Runtime
from tests.util import free_port


def write(config: Path, port: int, app_port: int, protocol: str, outbound_port: int | None = None) -> None:
    dataplane = {
        "type": "Dataplane",
        "name": "web-01",
        "mesh": "default",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {
                    "port": port,
                    "servicePort": app_port,
                    "tags": {"kuma.io/service": "web", "kuma.io/protocol": protocol},
                }
            ],
        },
    }
    if outbound_port:
        dataplane["networking"]["outbound"] = [{"port": outbound_port, "tags": {"kuma.io/service": "web"}}]  # type: ignore[index]
    config.write_text(yaml.safe_dump_all([{"type": "Mesh", "name": "default"}, dataplane]))


async def get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_reload_swaps_protocol_on_the_same_port_and_rejects_a_busy_port(tmp_path: Path) -> None:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    app_port, port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", app_port).start()
    config = tmp_path / "all.yaml"
    write(config, port, app_port, "http")
    runtime = Runtime(
        RunOptions(config=[str(config)], dataplane="web-01", admin_port=-1, watch=False, drain_grace=0.5)
    )
    try:
        await runtime.start()
        assert isinstance(runtime.listeners["inbound", "127.0.0.1", port], HttpListener)
        assert (await get(port)).endswith(b"hello")

        write(config, port, app_port, "tcp")
        assert await runtime.reload()
        assert isinstance(runtime.listeners["inbound", "127.0.0.1", port], TcpListener)
        assert (await get(port)).endswith(b"hello")  # bytes pass through untouched now

        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        try:
            write(config, port, app_port, "http", outbound_port=busy.getsockname()[1])
            assert not await runtime.reload()  # the new outbound port is taken
            assert runtime.counters.reloads_failed == 1
            assert isinstance(runtime.listeners["inbound", "127.0.0.1", port], TcpListener)
            assert (await get(port)).endswith(b"hello")  # the running configuration still serves
        finally:
            busy.close()
    finally:
        await runtime.shutdown()
        await runner.cleanup()
