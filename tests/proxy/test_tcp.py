"""TCP passthrough: bytes both ways, half-close honoured, connect failure closes the client."""

from __future__ import annotations

import asyncio

from tests.proxy.conftest import Bench


async def test_bytes_both_ways_and_half_close(bench: Bench) -> None:
    async def upper_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's FIN arrives through the proxy
        writer.write(data.upper())
        await writer.drain()

    up = await bench.upstream(upper_after_eof)
    listener = await bench.proxy(up.port, http=False)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(b"not http at all \x00\x01")
    writer.write_eof()  # half-close: we still read the answer
    assert await asyncio.wait_for(reader.read(), 5) == b"NOT HTTP AT ALL \x00\x01"
    writer.close()
    assert bench.spans == []  # no tracing on TCP
    assert listener.stats.bytes_received == 18 and listener.stats.bytes_sent == 18


async def test_connect_failure_closes_the_client(bench: Bench, refused_port: int) -> None:
    listener = await bench.proxy(refused_port, http=False)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert listener.stats.local_replies == {"UF": 1}
