"""A strict downstream parser: each malformed request gets 400/431 and a close, and nothing is forwarded."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.proxy import ProxySettings
from tests.proxy.conftest import Bench, exchange, read_request, response


async def ok_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_request(reader)
        writer.write(response(200, b"ok"))
        await writer.drain()


CASES = [
    (
        "conflicting CL and TE",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
        400,
    ),
    (
        "duplicate differing CL",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    ("space in header name", b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400),
    ("control char in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  folded\r\n\r\n", 400),
    ("bad request line", b"GET\r\n\r\n", 400),
    ("bad method token", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad version", b"GET / HTTP/9.9\r\nHost: a\r\n\r\n", 505),
    ("HTTP/2.0 in a request line", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("HTTP/0.9 line followed by headers", b"GET /\r\nHost: a\r\n\r\n", 400),
    ("HTTP/0.9 line alone", b"GET /\r\n\r\n", 400),
    ("missing host on 1.1", b"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
    ("two different hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    (
        "too many headers",
        b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
        431,
    ),
    ("head too large", b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * (61 * 1024) + b"\r\n\r\n", 431),
]


@pytest.mark.parametrize(("case", "raw", "status"), CASES, ids=[c[0] for c in CASES])
async def test_malformed_request_refused_nothing_forwarded(
    bench: Bench, case: str, raw: bytes, status: int
) -> None:
    up = await bench.upstream(ok_handler)
    listener = await bench.proxy(up.port)
    reply = await exchange(listener.bound[1], raw)
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:80]
    assert b"connection: close" in reply.lower()
    assert up.received == b""
    # The process carries on: a good request on a new connection works.
    good = await exchange(listener.bound[1], b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert good.startswith(b"HTTP/1.1 200")


async def test_bad_chunk_size_cuts_the_forwarded_request(bench: Bench) -> None:
    up = await bench.upstream(ok_handler)
    listener = await bench.proxy(up.port)
    reply = await exchange(
        listener.bound[1],
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 400 ")
    # The head went upstream before the body turned bad; the upstream saw its connection cut, never an
    # end-of-body marker, so it cannot take the truncated request for a whole one.
    assert b"0\r\n\r\n" not in bytes(up.received)


async def test_limits_are_configurable(bench: Bench) -> None:
    up = await bench.upstream(ok_handler)
    listener = await bench.proxy(up.port, settings=ProxySettings(max_headers=3))
    reply = await exchange(listener.bound[1], b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431 ")


async def test_slow_head_gets_408(bench: Bench) -> None:
    up = await bench.upstream(ok_handler)
    listener = await bench.proxy(up.port, settings=ProxySettings(header_timeout=0.3))
    reply = await exchange(listener.bound[1], b"GET / HTTP/1.1\r\nHost: a\r\n", timeout=5)
    assert reply.startswith(b"HTTP/1.1 408 ")


async def test_idle_keep_alive_connection_is_closed(bench: Bench) -> None:
    up = await bench.upstream(ok_handler)
    listener = await bench.proxy(up.port, settings=ProxySettings(idle_timeout=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await reader.readuntil(b"ok")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the proxy once idle
    writer.close()


async def test_malformed_pipelined_request_answered_after_the_good_one(bench: Bench) -> None:
    up = await bench.upstream(ok_handler)
    listener = await bench.proxy(up.port)
    reply = await exchange(
        listener.bound[1], b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nBad Name: x\r\n\r\n"
    )
    first, _, rest = reply.partition(b"ok")
    assert first.startswith(b"HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 400")
