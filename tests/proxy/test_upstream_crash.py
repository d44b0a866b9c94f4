"""An upstream killed with SIGKILL while requests are in flight (once seen as unexplained 504s): every
in-flight request is answered at once with 503 (UR, or UF when the retry on a fresh connection finds
nothing listening), never with a 504 after the upstream timeout; later requests get 503 UF."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from sidecar.proxy import ProxySettings
from tests.proxy.conftest import Bench

# Answers /fast at once; holds /slow forever; prints a line per request so the test knows what arrived.
UPSTREAM = r"""
import asyncio, sys
async def serve(reader, writer):
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        print("got", head.split(b" ")[1].decode(), flush=True)
        if head.startswith(b"GET /fast"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


async def request(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET %b HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
    try:
        return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


@pytest.mark.parametrize("round_", range(3))
async def test_killed_upstream_gives_prompt_503s_never_504(bench: Bench, round_: int) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", UPSTREAM, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        port = int(await proc.stdout.readline())
        listener = await bench.proxy(port, settings=ProxySettings(upstream_timeout=15.0))
        proxy_port = listener.bound[1]
        warm = await asyncio.gather(*(request(proxy_port, "/fast") for _ in range(20)))
        assert all(h.startswith(b"HTTP/1.1 200") for h in warm)  # the pool now holds idle connections
        for _ in range(20):
            await proc.stdout.readline()
        in_flight = [asyncio.create_task(request(proxy_port, "/slow")) for _ in range(50)]
        for _ in range(50):
            assert (await proc.stdout.readline()).startswith(b"got /slow")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        async with asyncio.timeout(5):  # far below the 15 s upstream timeout
            heads = await asyncio.gather(*in_flight)
            after = await asyncio.gather(*(request(proxy_port, "/fast") for _ in range(10)))
        assert all(h.startswith(b"HTTP/1.1 503") for h in heads + after), {h[:12] for h in heads + after}
        flags = listener.stats.local_replies
        assert flags.get("UT", 0) == 0 and flags.get("UR", 0) + flags.get("UF", 0) == 60, flags
        assert flags.get("UF", 0) >= 10  # nothing listens any more: the later requests fail to connect
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
