"""Property: over pooled HTTP/1.1 upstream connections, a back-end that leaves request bodies unread
never answers one request with another's response, whatever the client speaks (HTTP/1.1 or HTTP/2).

The back-end (`Careless`) ignores the body of every GET, HEAD and OPTIONS, answers `-early` targets
before reading the body, and then reads what it left as the next request. A body may be a whole
request (`/smuggled`), whose answer comes late: once the next request is in, the worst timing for the
proxy. Every answer carries the target it answers in `x-target`. The invariant: each request gets the
answer stamped with its own target, or one the proxy made (5xx, a reset); never `/smuggled`, never
another request's. The tables in test_desync.py pin the single cases.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import h2.exceptions
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sidecar.proxy import h2_codec as h2_codec_choice
from tests.proxy.conftest import Bench
from tests.proxy.h2_peers import H2Client

_loop = asyncio.new_event_loop()
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
IGNORED = (b"GET", b"HEAD", b"OPTIONS")


def answer(target: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nx-target: %b\r\ncontent-length: %d\r\n\r\n%b" % (target, len(body), body)


class Careless:
    """Per connection: parse a head, maybe read its body, answer; bytes left unread start the next head."""

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()

        async def fill(n: int) -> None:  # at least n bytes buffered, or IncompleteReadError at the end
            while len(buf) < n:
                data = await reader.read(65536)
                if not data:
                    raise asyncio.IncompleteReadError(bytes(buf), n)
                buf.extend(data)

        owed = b""  # an answer to /smuggled, written once the next head is in
        while True:
            while (end := buf.find(b"\r\n\r\n")) < 0:
                await fill(len(buf) + 1)
            head, buf[: end + 4] = bytes(buf[: end + 4]), b""
            line, *fields = head.split(b"\r\n")
            method, target = [*line.split(b" "), b"", b""][:2]
            length = 0
            for f in fields:
                name, _, value = f.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            writer.write(owed)
            owed = b""
            body = b"" if method == b"HEAD" else target
            if target == b"/smuggled":
                owed = answer(target, body)
            elif target.endswith(b"-early"):
                full = answer(target, body)
                cut = len(full) - min(3, len(body))
                writer.write(full[:cut])  # the head (and most of the body) before reading anything more,
                await writer.drain()
                await fill(length)  # the rest once the request body has arrived (left unread)
                writer.write(full[cut:])
            else:
                if method not in IGNORED:
                    await fill(length)
                    del buf[:length]
                writer.write(answer(target, body))
            await writer.drain()


@dataclass(frozen=True)
class Req:
    method: bytes
    body: bytes
    early: bool  # answered before its body is read; the client sends the body after the answer's head


def requests() -> st.SearchStrategy[list[Req]]:
    one = st.builds(
        Req,
        st.sampled_from([b"GET", b"HEAD", b"OPTIONS", b"POST"]),
        st.sampled_from([b"", b"data", SMUGGLED]),
        st.booleans(),
    )
    return st.lists(one, min_size=1, max_size=4)


def target(c: int, k: int, req: Req) -> bytes:
    return b"/c%d-%d%b" % (c, k, b"-early" if req.early else b"")


def check(req: Req, own: bytes, status: int, stamp: bytes | None) -> None:
    if stamp is None:
        assert status >= 500, f"{own!r}: {status} made by the proxy must be a 5xx"
    else:
        assert stamp == own, f"{own!r} got the answer to {stamp!r}"


async def h1_client(port: int, c: int, reqs: list[Req]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for k, req in enumerate(reqs):
            own = target(c, k, req)
            head = req.method + b" " + own + b" HTTP/1.1\r\nHost: a\r\n"
            head += b"content-length: %d\r\n\r\n" % len(req.body) if req.body else b"\r\n"
            writer.write(head if req.early else head + req.body)
            status, fields = await h1_head(reader)
            if req.early:
                writer.write(req.body)
            if req.method != b"HEAD" and status not in (204, 304):
                if b"content-length" in fields:
                    await reader.readexactly(int(fields[b"content-length"]))
                else:
                    await reader.read()
            check(req, own, status, fields.get(b"x-target"))
            if fields.get(b"connection") == b"close":
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the proxy closed the connection: the requests left are unanswered, not misanswered
    finally:
        writer.close()


async def h1_head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    """The next final response head: status and fields (names in lowercase)."""
    while True:
        line, *lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(line.split(b" ")[1])
        if status >= 200 or status == 101:
            fields = dict(f.split(b":", 1) for f in lines if f)
            return status, {n.strip().lower(): v.strip() for n, v in fields.items()}


async def h2_client(port: int, c: int, reqs: list[Req]) -> None:
    client = await H2Client.open(port)
    try:
        for k, req in enumerate(reqs):
            own = target(c, k, req)
            headers = [
                (b":method", req.method),
                (b":scheme", b"http"),
                (b":authority", b"a"),
                (b":path", own),
            ]
            if req.body:
                headers.append((b"content-length", b"%d" % len(req.body)))
            sid = client.request(headers, end=not req.body)
            if req.body:
                if req.early:
                    await asyncio.wait_for(client.responses[sid].head.wait(), 5)
                with contextlib.suppress(h2.exceptions.StreamClosedError):  # answered and reset first
                    await client.send_all(sid, req.body)
            response = await client.response(sid)
            if response.reset is not None or client.closed.is_set():
                return
            check(req, own, response.status, dict(response.headers).get(b"x-target"))
    finally:
        await client.close()


async def case(clients: list[list[Req]], protocol: str) -> None:
    bench = Bench([], [], [])
    if protocol != "http1":
        bench.h2_codec = protocol
    try:
        up = await bench.upstream(Careless().handler)
        listener = await bench.proxy(up.port)
        for c, reqs in enumerate(clients):
            run = h1_client if protocol == "http1" else h2_client
            await asyncio.wait_for(run(listener.bound[1], c, reqs), 10)
    finally:
        for listener in bench.listeners:
            await listener.drain(0.5)
        for upstream in bench.upstreams:
            await upstream.close()


PROTOCOLS = ["http1", *(c for c in h2_codec_choice.PREFERENCE if h2_codec_choice.unavailable(c) is None)]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(requests(), min_size=1, max_size=2), st.sampled_from(PROTOCOLS))
@example([[Req(b"GET", SMUGGLED, False), Req(b"GET", b"", False)]], "h2")
@example([[Req(b"POST", SMUGGLED, True), Req(b"GET", b"", False)]], "h2")
def test_no_request_gets_another_ones_answer(clients: list[list[Req]], protocol: str) -> None:
    if protocol not in PROTOCOLS:
        pytest.skip(f"{protocol} does not load here")
    _loop.run_until_complete(case(clients, protocol))
