"""The send queue (outbox.py): an HTTP/1.1 connection's writes wait for the end of the loop turn, then go
out as one write per connection, in the order they were made.

Unit tests of the outbox, the timing on a real loop, and a property over both connection classes:
whatever mix of sends, turns, closes, aborts and half-closes a connection makes, its transport gets the
bytes in the order they were sent, at most one write per turn, nothing after its close, abort or
half-close, and nothing sent before a close or half-close is lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.framing import drive, new_run, settle
from fuzz.harness import FakeListener, FakeTransport, Turns
from sidecar.proxy.endpoint import Endpoint
from sidecar.proxy.http1 import DownstreamConnection
from sidecar.proxy.outbox import Outbox
from sidecar.proxy.upstream import UpstreamConnection


class RecordingTransport(FakeTransport):
    """Every call the connection makes, in order; a write after the end is recorded, not refused."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def write_eof(self) -> None:
        self.calls.append(("eof", b""))

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closed = True

    def abort(self) -> None:
        self.calls.append(("abort", b""))
        self.closed = True


class FailingTransport(RecordingTransport):
    def write(self, data: bytes) -> None:
        raise RuntimeError("unable to perform operation: the handler is closed")


# The outbox (its senders are real connections: compiled, only they can be a `Sender`) ---------------
def test_one_callback_per_turn_whatever_the_number_of_connections() -> None:
    turns = Turns()
    outbox = Outbox(turns)
    transports = [RecordingTransport() for _ in range(3)]
    conns = [_upstream(outbox, transport) for transport in transports]
    for n, conn in enumerate(conns):
        conn.send(b"a%d" % n)
        conn.send(b"b%d" % n)
    assert len(turns.soon) == 1 and all(not t.calls for t in transports)
    turns.end()
    assert [t.calls for t in transports] == [[("write", b"a%db%d" % (n, n))] for n in range(3)]
    conns[0].send(b"c")  # the next turn schedules its own
    assert len(turns.soon) == 1
    turns.end()
    assert transports[0].calls[-1] == ("write", b"c")


def test_a_failing_connection_does_not_strand_the_others(caplog: pytest.LogCaptureFixture) -> None:
    turns = Turns()
    outbox = Outbox(turns)
    first, failing, last = RecordingTransport(), FailingTransport(), RecordingTransport()
    for transport in (first, failing, last):
        _upstream(outbox, transport).send(b"x")
    with caplog.at_level(logging.ERROR, logger="sidecar.proxy"):
        turns.end()
    assert first.calls == last.calls == [("write", b"x")]
    assert "sending queued bytes failed" in caplog.text


# On a real loop -----------------------------------------------------------------------------------------
GET = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"


async def test_writes_wait_for_the_end_of_the_turn_on_both_sides() -> None:
    run = new_run(asyncio.get_running_loop())
    transport = RecordingTransport()
    conn = DownstreamConnection(run.listener)
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(GET)
    assert not run.pump  # the request is queued, not yet written up
    await asyncio.sleep(0)
    assert run.pump  # the turn ended: the origin has it
    while run.pump:
        run.pump.popleft()()  # the origin answers; the proxy reads the answer
    assert transport.calls == []  # ... and queues it
    await asyncio.sleep(0)
    assert [call for call, _ in transport.calls] == ["write"]
    assert transport.calls[0][1].startswith(b"HTTP/1.1 200 ")
    conn.connection_lost(None)
    await settle(run)


async def test_a_refusal_goes_out_after_the_answers_owed_before_it_then_the_close() -> None:
    run = new_run(asyncio.get_running_loop())
    out, closed = await drive(run, [GET + GET + b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"])
    assert closed
    assert [line[:12] for line in out.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")] == [
        b"HTTP/1.1 200",
        b"HTTP/1.1 200",
        b"HTTP/1.1 400",
    ]


async def test_a_request_is_recorded_after_its_response_is_sent() -> None:
    """Stats, span and access log wait for the turn's writes: encoding spans does not delay answers."""
    run = new_run(asyncio.get_running_loop())
    stats = run.listener.stats
    counted_at_write: list[int] = []

    class Watching(RecordingTransport):
        def write(self, data: bytes) -> None:
            counted_at_write.append(stats.duration_count)
            super().write(data)

    conn = DownstreamConnection(run.listener)
    conn.connection_made(Watching())  # type: ignore[arg-type]
    conn.data_received(GET)
    await asyncio.sleep(0)
    while run.pump:
        run.pump.popleft()()  # the answer is read and queued; the exchange is over
    assert stats.duration_count == 0  # not recorded yet: its bytes have not left
    await asyncio.sleep(0)
    assert counted_at_write == [0] and stats.duration_count == 1
    conn.connection_lost(None)
    await settle(run)


async def test_a_request_with_nothing_queued_is_recorded_at_once() -> None:
    run = new_run(asyncio.get_running_loop())
    conn = DownstreamConnection(run.listener)
    conn.connection_made(RecordingTransport())  # type: ignore[arg-type]
    conn.data_received(GET)
    await asyncio.sleep(0)
    conn.connection_lost(None)  # the client leaves before the answer: nothing to send, DC
    assert run.listener.stats.duration_count == 1
    await settle(run)


async def test_a_failing_record_does_not_lose_the_others(caplog: pytest.LogCaptureFixture) -> None:
    run = new_run(asyncio.get_running_loop())
    calls: list[bytes] = []

    def sink(span: bytes) -> None:
        calls.append(span)
        if len(calls) == 1:
            raise RuntimeError("the reporter broke")

    run.listener.route = dataclasses.replace(run.listener.route, sink=sink)
    conns = [DownstreamConnection(run.listener) for _ in range(2)]
    transports = [RecordingTransport() for _ in conns]
    for conn, transport in zip(conns, transports, strict=True):
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(GET)
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="sidecar.proxy"):
        while run.pump:
            run.pump.popleft()()
        await asyncio.sleep(0)
    assert len(calls) == 2  # the second span still reached the sink after the first one's failure
    assert all(t.calls and t.calls[0][1].startswith(b"HTTP/1.1 200 ") for t in transports)
    assert "recording a finished request failed" in caplog.text
    for conn in conns:
        conn.connection_lost(None)
    await settle(run)


class _Silent:
    """An origin that only takes bytes: the test answers for it."""

    def __init__(self, upstream: object) -> None:
        self.transport = None
        self.closed = False

    def receive(self, data: bytes) -> None:
        pass

    def process(self) -> None:
        pass


async def test_an_upgrade_is_recorded_with_the_sizes_it_had_at_the_upgrade() -> None:
    """The span of an upgrade ends at the 101; tunnel bytes read later in the same turn, before the
    record runs, are not counted in it."""
    run = new_run(asyncio.get_running_loop())
    run.pool.server = _Silent  # type: ignore[assignment]
    spans: list[bytes] = []
    run.listener.route = dataclasses.replace(run.listener.route, sink=spans.append)
    conn = DownstreamConnection(run.listener)
    conn.connection_made(RecordingTransport())  # type: ignore[arg-type]
    conn.data_received(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    await asyncio.sleep(0)
    origin = run.pool.opened[0].protocol
    assert origin is not None
    origin.data_received(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nabc"
    )
    origin.data_received(b"defgh")  # the same turn: the record has not run yet
    conn.data_received(b"12")
    assert spans == []
    await asyncio.sleep(0)
    (span,) = spans
    assert b'"response_size":"3"' in span and b'"request_size":"0"' in span
    assert b'"http.status_code":"101"' in span
    conn.connection_lost(None)
    await settle(run)


# The property, on both connection classes -----------------------------------------------------------
_clock = asyncio.new_event_loop()  # never runs: a client connection only reads its clock


class _Pool:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.settings = FakeListener.SETTINGS
        self.stats = None

    def release(self, conn: UpstreamConnection) -> None:
        pass

    def forget(self, conn: UpstreamConnection) -> None:
        pass


def _downstream(turns: Turns, transport: RecordingTransport) -> DownstreamConnection:
    conn = DownstreamConnection(FakeListener(_clock, outbox=Outbox(turns)))
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn


def _upstream(outbox: Outbox, transport: RecordingTransport) -> UpstreamConnection:
    conn = UpstreamConnection(_Pool(outbox), Endpoint("127.0.0.1", 8080, "127.0.0.1:8080"))  # type: ignore[arg-type]
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn


OPS = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=4).map(lambda data: ("send", data)),
        st.just(("turn", b"")),
        st.sampled_from([("close", b""), ("abort", b""), ("eof", b"")]),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS, side=st.sampled_from(["downstream", "upstream"]))
def test_bytes_keep_their_order_and_nothing_follows_the_end(ops: list[tuple[str, bytes]], side: str) -> None:
    turns, transport = Turns(), RecordingTransport()
    conn: DownstreamConnection | UpstreamConnection = (
        _downstream(turns, transport) if side == "downstream" else _upstream(Outbox(turns), transport)
    )
    sent = b""  # what was sent before the close, abort or half-close
    flushed = b""  # ... of which the transport must have got
    ended = ""
    flush_points = 1  # the turn's end after the last op
    for op, data in ops:
        closed = ended in ("close", "abort")
        if op == "send":
            if ended == "eof":
                continue  # a half-close follows the peer's: nothing more is sent that way
            conn.send(data)  # after a close or abort: never written
            if not closed:
                sent += data
        elif op == "turn":
            turns.end()
            flush_points += 1
            if not closed:
                flushed = sent
        elif not closed and not (op == "eof" and ended == "eof"):
            flush_points += 1
            if op == "close":
                conn.close()
            elif op == "abort":
                conn.abort()
            else:
                assert conn.send_eof()
            # The queue goes first; an upstream's abort drops it: the request is given up.
            if op != "abort" or side == "downstream":
                flushed = sent
            ended = op
    turns.end()
    if ended not in ("close", "abort"):
        flushed = sent
    writes = [data for call, data in transport.calls if call == "write"]
    assert b"".join(writes) == flushed
    assert all(writes) and len(writes) <= flush_points
    calls = [call for call, _ in transport.calls]
    if "eof" in calls:
        assert (
            b"".join(data for call, data in transport.calls[: calls.index("eof")] if call == "write") == sent
        )
    for end in ("close", "abort"):
        if end in calls:
            assert "write" not in calls[calls.index(end) :] and calls.count(end) == 1
