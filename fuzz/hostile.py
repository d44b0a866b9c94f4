"""Hostile-upstream harness: pipelined clients → proxy → an origin that answers with random response bytes.

The origin parses requests strictly (h11) and answers upstream request N with bytes drawn from response
parts that desync attacks are made of (bodies on 1xx/204/304 and HEAD, lengths that lie, chunked
HTTP/1.0, unsolicited 101, bytes after the end, a second response), every piece stamped `x-seq: N`.
The invariant, per client connection, read by a strict HTTP/1.1 client (h11): each request gets its
own response (one stamped with an N the origin parsed for that request) or one the proxy made (5xx, no
stamp), in order; a connection that ends early ends closed. A stamp that lands on another request's
answer, on this client or the next one, is bytes crossing exchanges.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import h11
from hypothesis import strategies as st

from fuzz.framing import H11Server, Run, Upstream, new_run, settle
from fuzz.harness import FakeTransport
from sidecar.proxy.http1 import DownstreamConnection

_CODINGS = re.compile(rb"transfer-encoding: [^\r\n]*chunked\r\n")
SEQ = b"@SEQ@"  # replaced by the upstream request's number when the origin answers


@dataclass(frozen=True)
class Answer:
    """What the origin writes for one request: bytes (in two reads, cut at `split`), then maybe a close."""

    data: bytes
    split: int
    close: bool


class HostileServer(H11Server):
    """Parses like H11Server; answers the Nth request of the run with `answers[N % len(answers)]`."""

    def __init__(self, upstream: Upstream, answers: tuple[Answer, ...]) -> None:
        super().__init__(upstream)
        self.answers = answers

    def _answer(self, headers: list[tuple[bytes, bytes]], *, close: bool = False) -> None:
        seq = len(self.upstream.parsed) - 1
        answer = self.answers[seq % len(self.answers)]
        # Keep h11's server state moving; its own bytes are discarded.
        self.conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
        self.conn.send(h11.EndOfMessage())
        data = answer.data.replace(SEQ, str(seq).encode())
        cut = answer.split % (len(data) + 1)
        for part in (data[:cut], data[cut:]):
            if part:
                self._deliver(part)
        if answer.close:
            self._close()


def _piece(
    status: int, version: bytes, framing: str, extra: list[bytes], body: bytes, *, informational: bool = False
) -> bytes:
    head = [version + b" %d X" % status, b"x-seq: " + SEQ, *extra]
    if framing == "length":
        head.append(b"content-length: %d" % len(body))
    elif framing == "short":
        head.append(b"content-length: %d" % max(len(body) - 2, 0))
    elif framing == "long":
        head.append(b"content-length: %d" % (len(body) + 2))
    elif framing == "chunked":
        head.append(b"transfer-encoding: chunked")
        body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    elif framing == "both":
        head += [b"transfer-encoding: chunked", b"content-length: %d" % len(body)]
        body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    return b"\r\n".join(head) + b"\r\n\r\n" + body


_STATUSES = [100, 101, 103, 200, 200, 204, 304, 404, 500]
_FRAMINGS = ["length", "length", "short", "long", "chunked", "both", "none"]
_EXTRA = [b"connection: close", b"connection: keep-alive", b"upgrade: websocket", b"connection: upgrade",
          b"content_length: 3", b"transfer-encoding: gzip", b"keep-alive: timeout=5"]  # fmt: skip
_BODIES = [b"", b"abc", b"hello world"]
_TAILS = [b"", b"\r\n", b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\n", b"0\r\n\r\n"]


def response_bytes() -> st.SearchStrategy[bytes]:
    """One to three response heads and bodies built from desync parts, then a tail (fuzz/collector.py
    answers the reporter with them too)."""
    return _response()


def _response() -> st.SearchStrategy[bytes]:
    piece = st.builds(
        _piece,
        st.sampled_from(_STATUSES),
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]),
        st.sampled_from(_FRAMINGS),
        st.lists(st.sampled_from(_EXTRA), max_size=2),
        st.sampled_from(_BODIES),
    )
    smuggled = st.builds(
        _piece, st.just(200), st.just(b"HTTP/1.1"), st.just("length"), st.just([]), st.just(b"s")
    )
    tail = st.one_of(st.sampled_from(_TAILS), smuggled)
    return st.builds(lambda ps, t: b"".join(ps) + t, st.lists(piece, min_size=1, max_size=3), tail)


def answers_strategy() -> st.SearchStrategy[tuple[Answer, ...]]:
    answer = st.builds(Answer, _response(), st.integers(0, 400), st.booleans())
    return st.lists(answer, min_size=1, max_size=4).map(tuple)


@dataclass(frozen=True)
class Request:
    method: bytes
    target: bytes
    body: bytes
    expect: bool

    def raw(self) -> bytes:
        head = self.method + b" " + self.target + b" HTTP/1.1\r\nHost: a\r\n"
        if self.body:
            head += b"content-length: %d\r\n" % len(self.body)
        if self.expect:
            head += b"expect: 100-continue\r\n"
        return head + b"\r\n" + self.body


def client_strategy() -> st.SearchStrategy[list[tuple[bytes, bytes, bool]]]:
    """(method, body, expect) of up to three pipelined requests."""
    one = st.tuples(
        st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS"]),
        st.sampled_from([b"", b"data", b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"]),
        st.booleans(),
    )
    return st.lists(one, min_size=1, max_size=3)


async def hostile_case(
    loop: asyncio.AbstractEventLoop,
    answers: tuple[Answer, ...],
    clients: list[list[tuple[bytes, bytes, bool]]],
) -> None:
    """Each client in turn on the same pool (an attacker, then victims): the invariant for every one."""
    run = new_run(loop)
    run.pool.server = lambda upstream: HostileServer(upstream, answers)
    for c, spec in enumerate(clients):
        requests = [Request(m, b"/c%d-%d" % (c, k), body, expect) for k, (m, body, expect) in enumerate(spec)]
        out, closed = await _drive(run, b"".join(r.raw() for r in requests))
        check_client(run.upstream, requests, out, closed)


async def _drive(run: Run, data: bytes) -> tuple[bytes, bool]:
    transport = FakeTransport()
    conn = DownstreamConnection(run.listener)
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(data)
    await settle(run)
    # An origin that never finishes its answer: the upstream timeout would end it; end it now, and
    # again for the next pipelined request, which then starts on a connection of its own.
    while busy := [u for u in run.pool.opened if not u.closed and u.protocol and u.protocol.exchange]:
        for upstream in busy:
            upstream.lose()
        await settle(run)
    written, closed = bytes(transport.written), transport.closed
    conn.connection_lost(None)
    await settle(run)
    return written, closed


def check_client(upstream: Upstream, requests: list[Request], out: bytes, closed: bool) -> None:
    """The invariant for one client connection (see the module's docstring)."""
    client = h11.Connection(h11.CLIENT)
    # The proxy keeps an origin's other codings before chunked; h11 reads chunked alone.
    client.receive_data(_CODINGS.sub(b"transfer-encoding: chunked\r\n", out))
    if closed:
        client.receive_data(b"")
    answered = 0
    for request in requests:
        client.send(h11.Request(method=request.method, target=request.target, headers=[(b"host", b"a")]))
        client.send(h11.EndOfMessage())
        status = _final_response(client)
        if status is None:
            break
        code, seq, complete = status
        own = {
            str(i).encode() for i, (_, target, _) in enumerate(upstream.parsed) if target == request.target
        }
        if seq is None:
            assert code >= 500, f"{request.target!r}: {code} made by the proxy must be a 5xx"
        else:
            assert seq in own, (
                f"{request.target!r} got the answer to upstream request {seq!r} (its own: {own})"
            )
        answered += 1
        if not complete or client.their_state is not h11.DONE:
            break
        if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
            break
        client.start_next_cycle()
    if answered < len(requests):
        assert closed, f"{len(requests) - answered} request(s) left unanswered on an open connection"


def _final_response(client: h11.Connection) -> tuple[int, bytes | None, bool] | None:
    """(status, x-seq, body complete) of the next final response; None when none came."""
    status: int | None = None
    seq: bytes | None = None
    while True:
        try:
            event = client.next_event()
        except h11.RemoteProtocolError as exc:
            if status is not None and "without sending complete" in str(exc):
                return status, seq, False  # a response cut by a close: allowed after its head
            raise AssertionError(f"the proxy wrote bytes a client cannot parse: {exc}") from None
        if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            return None if status is None else (status, seq, False)
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            seq = dict(event.headers).get(b"x-seq")
        elif isinstance(event, h11.EndOfMessage):
            assert status is not None
            return status, seq, True
