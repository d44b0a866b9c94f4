"""Framing decisions, each a row: the strict upstream (h11) must parse exactly the requests the client
gets answers to, on a warm pool shared with the next client (the smuggling and stall cases)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httptools
import pytest

from tests.proxy.conftest import Bench
from tests.proxy.strict_upstream import StrictUpstream

SMUGGLED = b"GET /attacker-chosen HTTP/1.1\r\nX-Ignore: "


def post_with(connection: bytes) -> bytes:
    return (
        b"POST /a HTTP/1.1\r\nHost: a\r\n"
        + connection
        + b"Content-Length: %d\r\n\r\n" % len(SMUGGLED)
        + SMUGGLED
    )


# id, client bytes, (method, target, body) the upstream must see, statuses the client must get
CASES = [
    ("Connection names Content-Length", post_with(b"Connection: content-length\r\n"),
     [(b"POST", b"/a", SMUGGLED)], [200]),
    ("Connection lists Content-Length", post_with(b"Connection: keep-alive, Content-Length\r\n"),
     [(b"POST", b"/a", SMUGGLED)], [200]),
    ("second Connection field names Content-Length",
     post_with(b"Connection: keep-alive\r\nConnection: content-length\r\n"), [(b"POST", b"/a", SMUGGLED)], [200]),
    ("Connection names Transfer-Encoding",
     b"POST /a HTTP/1.1\r\nHost: a\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\n\r\n", [(b"POST", b"/a", b"abc")], [200]),
    ("Connection names Host", b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n", [(b"GET", b"/a", b"")],
     [200]),
    ("complete request then garbage", b"GET /c HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n\r\n", [(b"GET", b"/c", b"")],
     [200, 400]),
    ("two HTTP/1.0 requests in one write", b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n", [(b"GET", b"/a", b"")],
     [200]),
    ("bytes after a declined upgrade",
     b"GET /a HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
     b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", [(b"GET", b"/a", b"")], [200]),
    ("HTTP/1.2 is HTTP/1.1", b"GET /a HTTP/1.2\r\nHost: a\r\n\r\n", [(b"GET", b"/a", b"")], [200]),
    ("spaces between chunk size and extension",
     b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 ;ext=1\r\nabc\r\n0 \r\n\r\n",
     [(b"POST", b"/a", b"abc")], [200]),
    ("HTTP/0.9 line with headers", b"GET /a\r\nHost: a\r\n\r\n", [], [400]),
    ("pipelined head refused after it parsed, an earlier request owed",
     b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.0\r\nTransfer-Encoding: i\r\n\r\n",
     [(b"GET", b"/a", b"")], [200, 400]),
]  # fmt: skip


class _Responses:
    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.headers: list[dict[bytes, bytes]] = []
        self._current: dict[bytes, bytes] = {}
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self._current = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self._current[name.lower()] = value

    def on_message_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())
        self.headers.append(self._current)


async def converse(port: int, raw: bytes, expected: int) -> _Responses:
    """Send `raw`, read until `expected` responses arrived or the proxy closed; keep our side open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    responses = _Responses()
    writer.write(raw)
    try:
        async with asyncio.timeout(5):
            while len(responses.statuses) < expected:
                data = await reader.read(65536)
                if not data:
                    break
                responses.parser.feed_data(data)
    finally:
        writer.close()
    return responses


@pytest.fixture
async def strict(bench: Bench) -> AsyncIterator[StrictUpstream]:
    upstream = await StrictUpstream().start()
    yield upstream
    await upstream.close()


@pytest.mark.parametrize(("case", "raw", "seen", "statuses"), CASES, ids=[c[0] for c in CASES])
async def test_upstream_sees_exactly_what_the_client_gets_answers_to(
    bench: Bench,
    strict: StrictUpstream,
    case: str,
    raw: bytes,
    seen: list[tuple[bytes, bytes, bytes]],
    statuses: list[int],
) -> None:
    listener = await bench.proxy(strict.port)
    port = listener.bound[1]
    warm = await converse(port, b"GET /warm HTTP/1.1\r\nHost: a\r\n\r\n", 1)  # leaves a pooled connection
    assert warm.statuses == [200]
    attacker = await converse(port, raw, len(statuses))
    assert attacker.statuses == statuses
    assert [(s.method, s.target, s.body) for s in strict.seen[1:]] == seen
    for i, headers in enumerate(attacker.headers):
        if statuses[i] == 200:
            assert headers[b"x-seq"] == str(i + 1).encode()
    # The next client, on the same pooled connection(s), gets the answer to its own request.
    victim = await converse(port, b"GET /victim HTTP/1.1\r\nHost: v\r\nCookie: secret\r\n\r\n", 1)
    assert victim.statuses == [200] and victim.headers[0][b"x-target"] == b"/victim"
    assert strict.seen[-1].target == b"/victim" and len(strict.seen) == len(seen) + 2
    assert strict.refused == 0
    if case == "Connection names Host":
        assert strict.seen[1].headers[b"host"] == b"a"


async def test_other_transfer_codings_are_kept(bench: Bench) -> None:
    up, got = await bench.recording_upstream(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n"
    )
    listener = await bench.proxy(up.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    )
    head = await reader.readuntil(b"\r\n\r\n")
    body = await reader.readuntil(b"0\r\n\r\n")
    writer.close()
    ((_, headers, request_body),) = got
    assert headers[b"transfer-encoding"] == b"gzip, chunked" and request_body == b"xyz"
    assert b"transfer-encoding: gzip, chunked\r\n" in head.lower() and body == b"2\r\nzz\r\n0\r\n\r\n"


async def test_http10_request_without_host_gets_one(bench: Bench, strict: StrictUpstream) -> None:
    listener = await bench.proxy(strict.port, outbound=True)
    responses = await converse(listener.bound[1], b"GET /a HTTP/1.0\r\n\r\n", 1)
    assert responses.statuses == [200]
    assert strict.seen[0].headers[b"host"] == b"backend"  # the outbound's service, like nginx's $proxy_host
