"""Desync classes over real sockets, each a row: request bytes and a hostile upstream's answer → what the
upstream reads and what the client (and a victim on the same and on a second connection) gets.

The scripted upstream answers `/victim` with its own target as the body and everything else with the
row's bytes; a response meant for somebody else shows up as a victim body that is not `/victim`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from sidecar.proxy import ProxySettings
from sidecar.proxy.head import UnderscoreAction
from tests.proxy.conftest import Bench, Reply, read_reply, read_request, response
from tests.proxy.h2_peers import GET, H2Client

VICTIM = b"GET /victim HTTP/1.1\r\nHost: v\r\nCookie: secret\r\n\r\n"
SMUGGLED = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nx-for: smuggled\r\n\r\nsmuggled"


@dataclass
class Scripted:
    """An upstream that reads each request (head and framed body, or the head only when `naive`: a
    back-end that ignores bodies) and answers `/victim`s with their target, the rest with `answer`."""

    answer: bytes
    naive: bool = False
    seen: list[tuple[bytes, dict[bytes, bytes], bytes]] = field(default_factory=list)

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            if self.naive:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n")[0]
                self.seen.append((line, {}, b""))
            else:
                line, headers, body = await read_request(reader)
                self.seen.append((line, headers, body))
            target = line.split(b" ")[1]
            if target == b"/victim":
                writer.write(response(200, target))
            elif self.answer:
                writer.write(self.answer)
            else:
                writer.write(response(200, target))
            await writer.drain()


async def conversation(port: int, raw: bytes, heads: list[bool]) -> list[Reply]:
    """Send `raw` at once; read one reply per entry of `heads` (True: the request was a HEAD)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    replies = []
    try:
        async with asyncio.timeout(5):
            for head_request in heads:
                replies.append(await read_reply(reader, head_request=head_request))
    finally:
        writer.close()
    return replies


def req(method: bytes, target: bytes = b"/a") -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n"


# id, method, the upstream's answer, the status the attacker gets, whether the upstream connection broke
LEFTOVERS = [
    ("body on a 204", b"GET", b"HTTP/1.1 204 No Content\r\n\r\n" + SMUGGLED, 204, True),
    ("body on a 304", b"GET", b"HTTP/1.1 304 Not Modified\r\netag: x\r\n\r\n" + SMUGGLED, 304, True),
    ("body on a response to HEAD", b"HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello" + SMUGGLED,
     200, True),
    ("chunked response to HEAD", b"HEAD",
     b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 200, True),
    ("response to HEAD followed by another", b"HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n" + SMUGGLED,
     200, True),
    ("bytes beyond Content-Length", b"GET", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" + SMUGGLED, 200,
     True),
    ("bytes beyond the last chunk", b"GET",
     b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" + SMUGGLED, 200, True),
    ("garbage after a complete response", b"GET", response(200, b"ok") + b"garbage\r\n\r\n", 200, True),
    ("100 Continue carrying a body", b"GET",
     b"HTTP/1.1 100 Continue\r\ncontent-length: %d\r\n\r\n%b" % (len(SMUGGLED), SMUGGLED) + response(200, b"ok"),
     502, True),
    ("100 Continue with a chunked body", b"GET",
     b"HTTP/1.1 100 Continue\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n" + response(200, b"ok"), 502, True),
    ("unsolicited 101", b"GET",
     b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n" + SMUGGLED, 502,
     True),
    ("a plain 100 Continue is relayed", b"GET", b"HTTP/1.1 100 Continue\r\n\r\n" + response(200, b"ok"), 200,
     False),
    ("HEAD answered with Content-Length and no body", b"HEAD",
     b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", 200, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "method", "answer", "status", "broken"), LEFTOVERS, ids=[c[0] for c in LEFTOVERS]
)
async def test_bytes_after_a_response_never_reach_another_exchange(
    bench: Bench, case: str, method: bytes, answer: bytes, status: int, broken: bool
) -> None:
    script = Scripted(answer)
    up = await bench.upstream(script.handler)
    listener = await bench.proxy(up.port)
    port = listener.bound[1]
    head = method == b"HEAD"
    # The victim pipelined behind the attacker: queued for the same pooled connection.
    first, victim = await conversation(port, req(method) + VICTIM, [head, False])
    assert first.status == status, case
    if status == 502:
        assert first.body.endswith(b"protocol error")
    assert (victim.status, victim.body) == (200, b"/victim"), case
    # A second client afterwards.
    (other,) = await conversation(port, VICTIM, [False])
    assert (other.status, other.body) == (200, b"/victim"), case
    assert [line for line, _, _ in script.seen] == [method + b" /a HTTP/1.1", *[b"GET /victim HTTP/1.1"] * 2]
    errors = sum(listener.stats.upstream_cx_protocol_error.values())
    assert errors == (1 if broken else 0), case
    # The victim, started from inside the read that ended the first response, never takes that
    # connection (a later read may bring a second response): it opens one, which the next client reuses.
    assert up.connections == 2, case
    if status == 502:
        assert listener.stats.local_replies.get("UPE") == 1


async def test_leftover_on_an_idle_pooled_connection_closes_it(bench: Bench) -> None:
    """The extra bytes come in a later read, after the connection went back to the pool."""

    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if up.connections == 1:
            await read_request(reader)
            writer.write(response(200, b"ok"))
            await writer.drain()
            await sent.wait()
            writer.write(SMUGGLED)
            await writer.drain()
        while True:
            line, _, _ = await read_request(reader)
            writer.write(response(200, line.split(b" ")[1]))
            await writer.drain()

    sent = asyncio.Event()
    up = await bench.upstream(late)
    listener = await bench.proxy(up.port)
    port = listener.bound[1]
    (first,) = await conversation(port, req(b"GET"), [False])
    assert first.body == b"ok"
    sent.set()
    async with asyncio.timeout(5):
        while not listener.stats.upstream_cx_protocol_error:
            await asyncio.sleep(0.005)
    (victim,) = await conversation(port, VICTIM, [False])
    assert (victim.status, victim.body) == (200, b"/victim")
    assert up.connections == 2


# Spellings of Expect a back-end may honour: the proxy answers 100 itself and forwards none of them.
EXPECTS = [
    ("plain", b"Expect: 100-continue\r\n"),
    ("other case", b"EXPECT: 100-Continue\r\n"),
    ("leading token", b"Expect: y 100-continue\r\n"),
    ("a list", b"Expect: foo, 100-continue\r\n"),
    ("duplicated", b"Expect: 100-continue\r\nexpect: 100-continue\r\n"),
]


@pytest.mark.parametrize(("case", "expect"), EXPECTS, ids=[c[0] for c in EXPECTS])
async def test_expect_100_continue_is_answered_by_the_proxy(bench: Bench, case: str, expect: bytes) -> None:
    script = Scripted(b"")
    up = await bench.upstream(script.handler)
    listener = await bench.proxy(up.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n" + expect + b"\r\n")
    async with asyncio.timeout(5):
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"  # before any byte went upstream
        assert script.seen == []
        writer.write(b"data" + VICTIM)
        final = await read_reply(reader)
        victim = await read_reply(reader)
    writer.close()
    assert (final.status, final.body) == (200, b"/a")
    assert (victim.status, victim.body) == (200, b"/victim")
    (_, headers, body), _ = script.seen
    assert b"expect" not in headers and body == b"data" and headers[b"content-length"] == b"4"


async def test_expect_folded_over_two_lines_is_refused(bench: Bench) -> None:
    script = Scripted(b"")
    up = await bench.upstream(script.handler)
    listener = await bench.proxy(up.port)
    raw = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: foo\r\n 100-continue\r\n\r\ndata"
    (reply,) = await conversation(listener.bound[1], raw, [False])
    assert reply.status == 400 and reply.headers[b"connection"] == b"close"
    assert script.seen == []


async def test_expect_with_the_body_already_sent_gets_no_100(bench: Bench) -> None:
    script = Scripted(b"")
    up = await bench.upstream(script.handler)
    listener = await bench.proxy(up.port)
    raw = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\ndata"
    (reply,) = await conversation(listener.bound[1], raw, [False])
    assert reply.status == 200 and reply.body == b"/a"  # the first reply is the final one


async def test_expect_early_answer_cannot_smuggle(bench: Bench) -> None:
    """A back-end that honours Expect answers before the body and reads the body as a request: the
    proxy never forwards Expect, so such a back-end reads the body as a body."""

    async def honours_expect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ")[1]
            if b"expect:" in head.lower():
                writer.write(response(417, b"early"))  # then the body is read as the next request
            else:
                length = head.lower().split(b"content-length: ")
                if len(length) > 1:
                    await reader.readexactly(int(length[1].split(b"\r\n")[0]))
                writer.write(response(200, target))
            await writer.drain()

    up = await bench.upstream(honours_expect)
    listener = await bench.proxy(up.port)
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    raw = b"POST /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
    replies = await conversation(listener.bound[1], raw + smuggled + VICTIM, [False, False])
    assert [(r.status, r.body) for r in replies] == [(200, b"/a"), (200, b"/victim")]


# 0.CL: a back-end that ignores the body of a GET/HEAD/OPTIONS reads it as the next request.
@pytest.mark.parametrize("method", [b"GET", b"OPTIONS", b"HEAD"])
async def test_body_of_a_get_is_framed_and_its_connection_not_reused(bench: Bench, method: bytes) -> None:
    script = Scripted(b"", naive=True)
    up = await bench.upstream(script.handler)
    listener = await bench.proxy(up.port)
    port = listener.bound[1]
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    raw = method + b" /a HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled
    first, victim = await conversation(port, raw + VICTIM, [method == b"HEAD", False])
    assert first.status == 200
    assert (victim.status, victim.body) == (200, b"/victim")
    (other,) = await conversation(port, VICTIM, [False])
    assert (other.status, other.body) == (200, b"/victim")
    assert up.connections == 2  # the body's connection was closed after its response


@dataclass
class SlowOnSmuggled:
    """A back-end that ignores request bodies, answers in order, and answers `/smuggled` only once the
    request after it is in: its answer then meets whichever request the proxy sent next on the connection.
    `/early` is answered before its body is read: the head and half the body at once, the rest once the
    next request head is in (which, for a back-end that ignores bodies, is the body)."""

    targets: list[bytes] = field(default_factory=list)

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        owed: list[bytes] = []
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            target = head.split(b" ")[1]
            self.targets.append(target)
            for answer in owed:
                writer.write(answer)
            owed = []
            if target == b"/early":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n/ea")
                owed.append(b"rly")
            elif target == b"/smuggled":
                owed.append(response(200, target))
            else:
                writer.write(response(200, target))
            await writer.drain()


SMUGGLED_GET = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


def h2_request(method: bytes, target: bytes, length: int) -> list[tuple[bytes, bytes]]:
    return [(b":method", method), (b":scheme", b"http"), (b":authority", b"a"), (b":path", target),
            (b"content-length", b"%d" % length)]  # fmt: skip


# The same 0.CL over HTTP/2 to an HTTP/1.1 upstream: a GET whose DATA the back-end ignores.
@pytest.mark.parametrize("method", [b"GET", b"OPTIONS", b"HEAD"])
async def test_body_of_a_get_over_http2_does_not_reach_the_next_stream(
    bench: Bench, h2_codec: str, method: bytes
) -> None:
    script = SlowOnSmuggled()
    up = await bench.upstream(script.handler)
    listener = await bench.proxy(up.port)
    client = await H2Client.open(listener.bound[1])
    sid = client.request(h2_request(method, b"/a", len(SMUGGLED_GET)), end=False)
    await client.send_all(sid, SMUGGLED_GET)
    first = await client.response(sid)
    victim = await client.response(client.request([*GET[:3], (b":path", b"/victim")]))
    await client.close()
    assert first.status == 200 and (method == b"HEAD" or first.body == b"/a")
    assert (victim.status, victim.body) == (200, b"/victim")
    assert up.connections == 2  # the body's connection was closed after its response


async def test_a_get_over_http2_with_content_length_0_keeps_its_connection(
    bench: Bench, h2_codec: str
) -> None:
    script = SlowOnSmuggled()
    up = await bench.upstream(script.handler)
    listener = await bench.proxy(up.port)
    client = await H2Client.open(listener.bound[1])
    sid = client.request(h2_request(b"GET", b"/a", 0), end=False)
    await client.send_all(sid, b"")  # END_STREAM on an empty DATA frame: nothing follows the head
    first = await client.response(sid)
    victim = await client.response(client.request([*GET[:3], (b":path", b"/victim")]))
    await client.close()
    assert (first.body, victim.body) == (b"/a", b"/victim")
    assert up.connections == 1


async def test_an_early_answer_over_http2_does_not_reach_the_next_stream(bench: Bench, h2_codec: str) -> None:
    """The response began before the request body was sent: the back-end may not have read the body."""
    script = SlowOnSmuggled()
    up = await bench.upstream(script.handler)
    listener = await bench.proxy(up.port)
    client = await H2Client.open(listener.bound[1])
    sid = client.request(h2_request(b"POST", b"/early", len(SMUGGLED_GET)), end=False)
    await asyncio.wait_for(client.responses[sid].head.wait(), 5)
    await client.send_all(sid, SMUGGLED_GET)
    first = await client.response(sid)
    victim = await client.response(client.request([*GET[:3], (b":path", b"/victim")]))
    await client.close()
    assert (first.status, first.body) == (200, b"/early")
    assert (victim.status, victim.body) == (200, b"/victim")
    assert script.targets == [b"/early", b"/smuggled", b"/victim"] and up.connections == 2


async def test_http10_chunked_response_closes_the_upstream_connection(bench: Bench) -> None:
    answer = (
        b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    )
    script = Scripted(answer)
    up = await bench.upstream(script.handler)
    listener = await bench.proxy(up.port)
    first, victim = await conversation(listener.bound[1], req(b"GET") + VICTIM, [False, False])
    assert (first.status, first.body) == (200, b"ok")
    assert (victim.status, victim.body) == (200, b"/victim")
    assert up.connections == 2 and not listener.stats.upstream_cx_protocol_error


async def test_http10_chunked_request_closes_the_client_connection(bench: Bench) -> None:
    script = Scripted(b"")
    up = await bench.upstream(script.handler)
    listener = await bench.proxy(up.port)
    raw = (
        b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        + VICTIM
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(raw)
    async with asyncio.timeout(5):
        reply = await read_reply(reader)
        rest = await reader.read()
    writer.close()
    assert reply.status == 200 and reply.headers.get(b"connection") == b"close" and rest == b""
    assert [(line, body) for line, _, body in script.seen] == [(b"POST /a HTTP/1.1", b"abc")]


# id, action, what the client gets, what the upstream sees of the two underscored fields
UNDERSCORES = [
    ("drop (the default)", None, 200, {}),
    ("reject", UnderscoreAction.REJECT, 400, None),
    ("allow", UnderscoreAction.ALLOW, 200, {b"content_length": b"40", b"x_user": b"admin"}),
]


@pytest.mark.parametrize(
    ("case", "action", "status", "forwarded"), UNDERSCORES, ids=[c[0] for c in UNDERSCORES]
)
async def test_header_names_with_underscores(
    bench: Bench,
    case: str,
    action: UnderscoreAction | None,
    status: int,
    forwarded: dict[bytes, bytes] | None,
) -> None:
    script = Scripted(b"")
    up = await bench.upstream(script.handler)
    settings = ProxySettings() if action is None else ProxySettings(headers_with_underscores=action)
    listener = await bench.proxy(up.port, settings=settings)
    raw = b"POST /a HTTP/1.1\r\nHost: a\r\nContent_Length: 40\r\nX_User: admin\r\nContent-Length: 2\r\n\r\nok"
    (reply,) = await conversation(listener.bound[1], raw, [False])
    assert reply.status == status
    stats = listener.stats
    if forwarded is None:
        assert script.seen == [] and reply.headers[b"connection"] == b"close"
        assert stats.requests_rejected_with_underscores_in_headers == 1
        return
    ((_, headers, body),) = script.seen
    assert {k: v for k, v in headers.items() if b"_" in k} == forwarded and body == b"ok"
    assert stats.dropped_headers_with_underscores == (0 if forwarded else 2)


@pytest.mark.parametrize(
    ("case", "action", "status", "forwarded"), UNDERSCORES, ids=[c[0] for c in UNDERSCORES]
)
async def test_header_names_with_underscores_over_http2(
    bench: Bench,
    case: str,
    action: UnderscoreAction | None,
    status: int,
    forwarded: dict[bytes, bytes] | None,
) -> None:
    script = Scripted(b"")
    up = await bench.upstream(script.handler)
    settings = ProxySettings() if action is None else ProxySettings(headers_with_underscores=action)
    listener = await bench.proxy(up.port, settings=settings)
    client = await H2Client.open(listener.bound[1])
    headers = [*GET, (b"x_user", b"admin"), (b"content_length", b"40"), (b"expect", b"100-continue")]
    response = await client.response(client.request(headers))
    await client.close()
    assert response.status == status
    stats = listener.stats
    if forwarded is None:
        assert script.seen == [] and stats.requests_rejected_with_underscores_in_headers == 1
        return
    ((_, seen, _),) = script.seen
    assert {k: v for k, v in seen.items() if b"_" in k} == forwarded and b"expect" not in seen
    assert stats.dropped_headers_with_underscores == (0 if forwarded else 2)


async def test_100_continue_waits_for_the_answers_owed_before_it(bench: Bench) -> None:
    """A pipelined request that expects 100 gets it after the responses to the requests before it,
    never in the middle of one."""
    gate = asyncio.Event()

    async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line, _, body = await read_request(reader)
            if line.startswith(b"GET /first"):
                await gate.wait()
            writer.write(response(200, line.split(b" ")[1] + b":" + body))
            await writer.drain()

    up = await bench.upstream(slow_first)
    listener = await bench.proxy(up.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound[1])
    writer.write(
        b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    async with asyncio.timeout(5):
        while not listener.stats.upstream_rq:
            await asyncio.sleep(0.005)  # the first request is on its way up
        gate.set()  # a 100 Continue sent before this point would come first on the wire
        first = await reader.readuntil(b"/first:")
        interim = await reader.readuntil(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200") and interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"data")
        second = await read_reply(reader)
    writer.close()
    assert (second.status, second.body) == (200, b"/second:data")
