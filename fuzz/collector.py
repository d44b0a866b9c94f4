"""Hostile-collector harness: the reporter's HTTP/1.1 client (sidecar/reporting/http_client.py) reads
answers made of desync parts (fuzz/hostile.py), in any pieces, with or without the end of the
connection, in memory.

The invariants, against a strict HTTP/1.1 client reading the same bytes (h11):
- nothing escapes the protocol's callbacks, and once the connection is gone the request is settled
  (an Answer or Failed), never left waiting;
- an Answer the client takes is the one h11 reads, status and body, when h11 reads a whole one;
- the connection is kept for the next POST only when h11 read exactly one whole answer that allows
  keep-alive and nothing after it but CR and LF bytes: no byte of this answer can become the next one's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11

from fuzz.harness import FakeTransport
from sidecar.reporting.http_client import Answer, Failed, _Connection, _Request

HEAD = b"POST /api/v2/spans HTTP/1.1\r\nHost: collector\r\nContent-Length: 2\r\n\r\n"
BODY = b"[]"


class WriteAll(FakeTransport):
    """Takes every byte at once (the write buffer stays empty, so the request is handed over)."""

    def writelines(self, data: tuple[bytes, ...]) -> None:
        for part in data:
            self.write(part)

    def get_write_buffer_size(self) -> int:
        return 0


@dataclass(frozen=True)
class Strict:
    """What h11 reads from the bytes: the final answer, if whole, and whether the connection could
    carry another request after it."""

    answer: tuple[int, bytes] | None
    reusable: bool


def strict_reading(data: bytes, eof: bool) -> Strict:
    conn = h11.Connection(h11.CLIENT)
    conn.send(
        h11.Request(
            method="POST", target="/api/v2/spans", headers=[("Host", "collector"), ("Content-Length", "2")]
        )
    )
    conn.send(h11.Data(data=BODY))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    status = 0
    body = b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                return Strict(None, False)
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
    except h11.RemoteProtocolError:
        return Strict(None, False)
    left, closed = conn.trailing_data
    # CR and LF bytes between messages are skipped by llhttp (RFC 9112 2.2 lets a recipient ignore
    # empty lines); they cannot become part of the next answer, so they do not count as left over.
    blank = not left.strip(b"\r\n")
    reusable = conn.their_state is h11.DONE and conn.our_state is h11.DONE and blank and not closed
    if reusable:
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            reusable = False  # keep-alive not allowed (Connection: close, HTTP/1.0)
    return Strict((status, body), reusable)


def collector_case(loop: asyncio.AbstractEventLoop, data: bytes, cuts: list[int], eof: bool) -> None:
    conn = _Connection(loop)
    conn.connection_made(WriteAll())  # type: ignore[arg-type]
    request = _Request(loop)
    sending = loop.create_task(conn.send(HEAD, BODY, request))
    loop.run_until_complete(asyncio.sleep(0))  # the request is written, the answer awaited
    points = sorted({c % (len(data) + 1) for c in cuts})
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        if data[a:b]:
            conn.data_received(data[a:b])
    if eof:
        conn.connection_lost(None)
    loop.run_until_complete(asyncio.sleep(0))
    if eof:
        assert sending.done(), "the connection is gone and the request still waits"
    if not sending.done():
        sending.cancel()
        loop.run_until_complete(asyncio.gather(sending, return_exceptions=True))
        assert not conn.reusable
        return
    strict = strict_reading(data, eof)
    try:
        answer = sending.result()
    except Failed:
        assert not conn.reusable
        return
    assert isinstance(answer, Answer)
    if strict.answer is not None:
        assert (answer.status, answer.body) == strict.answer, (answer, strict.answer)
    if conn.reusable and not conn.closed:
        assert strict.reusable, f"kept a connection h11 would not reuse after {data!r}"
