"""The acceptor takes every queued connection in one turn of the loop, on uvloop as on asyncio's loop.

uvloop's own servers (libuv >= 1.45) accept one connection per turn: under load, with turns of tens of
milliseconds, clients waited seconds in the backlog. These tests run their own loops so that uvloop,
which the sidecar runs on, is covered too.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sidecar.proxy import acceptor as acceptor_module
from sidecar.proxy.acceptor import Acceptor, bind

uvloop = pytest.importorskip("uvloop")

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run(loop_name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(main())


class Counted(asyncio.Protocol):
    made: list[Counted] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        Counted.made.append(self)


def accept_queue(listening: socket.socket) -> int:
    """Connections waiting in a listening socket's accept queue (Linux: tcp_info's unacked field)."""
    info = listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 24)[0])


@contextmanager
def clients(listening: socket.socket, n: int, *, queued: bool = True) -> Iterator[list[socket.socket]]:
    """`n` connections to `listening`; with `queued`, returns once all n wait in its accept queue (the
    kernel may finish a handshake after connect returns)."""
    port = listening.getsockname()[1]
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        deadline = time.monotonic() + 5
        while queued and accept_queue(listening) < n:
            assert time.monotonic() < deadline, f"{accept_queue(listening)} of {n} queued"
            time.sleep(0.001)
        yield socks
    finally:
        for sock in socks:
            sock.close()


async def turns_until(condition: Callable[[], bool], limit: int) -> int:
    """How many turns of the loop pass before `condition` holds (limit + 1 when it never does)."""
    for turn in range(limit + 1):
        if condition():
            return turn
        await asyncio.sleep(0)
    return limit + 1


@pytest.mark.parametrize("loop_name", LOOPS)
def test_every_queued_connection_is_taken_in_one_turn(loop_name: str) -> None:
    async def main() -> None:
        Counted.made = []
        acceptor = Acceptor(await bind("127.0.0.1", 0), Counted)
        with clients(acceptor.sockets[0], 200):  # all queued before the loop runs again
            acceptor.start()
            # uvloop's create_server needed 200 turns here, one per connection.
            assert await turns_until(lambda: acceptor.accepted == 200, 3) <= 3
            assert await turns_until(lambda: len(Counted.made) == 200, 5) <= 5
        for proto in Counted.made:
            proto.transport.close()
        acceptor.close()

    run(loop_name, main)


def test_one_turn_accepts_at_most_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A storm of clients cannot take a whole turn away from the connections already served."""
    monkeypatch.setattr(acceptor_module, "MAX_ACCEPTS_PER_TURN", 10)

    async def main() -> None:
        Counted.made = []
        acceptor = Acceptor(await bind("127.0.0.1", 0), Counted)
        sock = acceptor.sockets[0]
        with clients(sock, 25):
            taken = []
            for _ in range(4):
                acceptor._ready(sock)  # what the loop calls when the socket is readable
                taken.append(acceptor.accepted)
            assert taken == [10, 20, 25, 25]
            assert await turns_until(lambda: len(Counted.made) == 25, 10) <= 10
        for proto in Counted.made:
            proto.transport.close()
        acceptor.close()

    run("uvloop", main)


def failing_accept(monkeypatch: pytest.MonkeyPatch, error: OSError, times: int) -> list[int]:
    """socket.accept raises `error` the next `times` calls, then accepts; the list counts down."""
    real = socket.socket.accept
    left = [times]

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        if left[0]:
            left[0] -= 1
            raise error
        return real(self)

    monkeypatch.setattr(socket.socket, "accept", accept)
    return left


@pytest.mark.parametrize("loop_name", LOOPS)
def test_out_of_descriptors_pauses_accepting_and_loses_nobody(
    loop_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(acceptor_module, "RETRY_AFTER", 0.01)

    async def main() -> None:
        Counted.made = []
        failures = failing_accept(monkeypatch, OSError(errno.EMFILE, "Too many open files"), 3)
        acceptor = Acceptor(await bind("127.0.0.1", 0), Counted)
        with clients(acceptor.sockets[0], 5):
            acceptor.start()
            for _ in range(500):  # three pauses of 10 ms, then all five queued clients
                if len(Counted.made) == 5:
                    break
                await asyncio.sleep(0.01)
            assert failures == [0] and len(Counted.made) == 5
        for proto in Counted.made:
            proto.transport.close()
        acceptor.close()

    run(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_closed_acceptor_refuses_and_keeps_accepted_connections(loop_name: str) -> None:
    async def main() -> None:
        Counted.made = []
        acceptor = Acceptor(await bind("127.0.0.1", 0), Counted)
        port = acceptor.sockets[0].getsockname()[1]
        acceptor.start()
        with clients(acceptor.sockets[0], 1, queued=False) as (client,):
            assert await turns_until(lambda: len(Counted.made) == 1, 10) <= 10
            acceptor.close()
            assert not acceptor.serving
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5)
            Counted.made[0].transport.write(b"still here")  # type: ignore[attr-defined]
            client.settimeout(5)
            assert client.recv(100) == b"still here"
        Counted.made[0].transport.close()

    run(loop_name, main)


def test_bind_reports_a_busy_port() -> None:
    async def main() -> None:
        first = await bind("127.0.0.1", 0)
        port = first[0].getsockname()[1]
        with pytest.raises(OSError) as caught:
            await bind("127.0.0.1", port)
        assert caught.value.errno == errno.EADDRINUSE
        for sock in first:
            sock.close()

    run("asyncio", main)


def test_a_client_gone_while_queued_is_skipped_within_the_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """accept(2) reports a queued connection's own network error (ECONNABORTED, EPROTO...): the next
    client is taken in the same turn, and accepting is not paused."""

    async def main() -> None:
        Counted.made = []
        gone = ConnectionAbortedError(errno.ECONNABORTED, "Software caused connection abort")
        failures = failing_accept(monkeypatch, gone, 1)
        acceptor = Acceptor(await bind("127.0.0.1", 0), Counted)
        sock = acceptor.sockets[0]
        with clients(sock, 2):
            acceptor._ready(sock)
            assert acceptor.accepted == 2 and failures == [0]
            assert await turns_until(lambda: len(Counted.made) == 2, 10) <= 10
        for proto in Counted.made:
            proto.transport.close()
        acceptor.close()

    run("uvloop", main)
