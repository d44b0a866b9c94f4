"""Property test of the response path against a hostile origin (fuzz/fuzz_http1.py runs it longer):
every client gets exactly the responses to its own requests, or a 5xx, or a close."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fuzz.hostile import SEQ, Answer, answers_strategy, client_strategy, hostile_case

_loop = asyncio.new_event_loop()
SMUGGLED = b"HTTP/1.1 200 OK\r\nx-seq: " + SEQ + b"\r\ncontent-length: 1\r\n\r\ns"


def later(first: bytes) -> Answer:
    """`first`, a complete response, then SMUGGLED in the next read."""
    return Answer(first + SMUGGLED, len(first) - len(SEQ) + 1, False)  # @SEQ@ becomes a one-digit number


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(answers_strategy(), st.lists(client_strategy(), min_size=2, max_size=3))
@example(  # found by this property: a second response in the read after a complete chunked one
    (
        later(
            b"HTTP/1.1 200 X\r\nx-seq: "
            + SEQ
            + b"\r\nkeep-alive: timeout=5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
    ),
    [[(b"GET", b"", False)], [(b"GET", b"", False), (b"GET", b"", False)]],
)
def test_every_client_gets_its_own_responses(
    answers: tuple[Answer, ...], clients: list[list[tuple[bytes, bytes, bool]]]
) -> None:
    _loop.run_until_complete(hostile_case(_loop, answers, clients))


# Rows the property must catch: each answer leaves bytes that, handed on, answer someone else.
ROWS = [
    ("body on a 204", b"HTTP/1.1 204 X\r\nx-seq: " + SEQ + b"\r\n\r\n" + SMUGGLED, b"GET"),
    ("body on HEAD", b"HTTP/1.1 200 X\r\nx-seq: " + SEQ + b"\r\ncontent-length: 1\r\n\r\nb" + SMUGGLED, b"HEAD"),
    ("beyond Content-Length", b"HTTP/1.1 200 X\r\nx-seq: " + SEQ + b"\r\ncontent-length: 0\r\n\r\n" + SMUGGLED, b"GET"),
    ("unsolicited 101", b"HTTP/1.1 101 X\r\nx-seq: " + SEQ + b"\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n"
     + SMUGGLED, b"GET"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "answer", "method"), ROWS, ids=[r[0] for r in ROWS])
def test_hostile_rows(case: str, answer: bytes, method: bytes) -> None:
    clients = [[(method, b"", False), (b"GET", b"", False)], [(b"GET", b"", False)]]
    _loop.run_until_complete(hostile_case(_loop, (Answer(answer, 0, False),), clients))


# A complete, well-framed response, then a second one in the next read: the connection was already
# done with, so the second belongs to nobody, not to the client's pipelined next request.
FIRSTS = [
    ("after Content-Length", b"HTTP/1.1 200 X\r\nx-seq: " + SEQ + b"\r\ncontent-length: 0\r\n\r\n"),
    ("after chunked", b"HTTP/1.1 200 X\r\nx-seq: " + SEQ + b"\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "first"), FIRSTS, ids=[r[0] for r in FIRSTS])
def test_a_response_in_a_later_read_answers_nobody(case: str, first: bytes) -> None:
    clients = [[(b"GET", b"", False), (b"GET", b"", False)], [(b"GET", b"", False), (b"GET", b"", False)]]
    _loop.run_until_complete(hostile_case(_loop, (later(first),), clients))
