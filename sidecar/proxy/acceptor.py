"""Listening sockets that take every pending connection at each turn of the loop.

libuv accepts one connection per readiness event since 1.45 (its PR #3696), so uvloop's own servers do
too: a sidecar whose loop turn takes 50 ms under load (1000 busy connections) then accepts 20 new
connections a second, and a client that connects into that waits seconds in the backlog before its first
byte is read (wrk counted them as timeouts). Here the loop's reader callback accepts up to
`MAX_ACCEPTS_PER_TURN` at once, as asyncio's own selector loop does, and hands each socket to the loop as a
transport. Accepting is rare next to requests on kept-alive connections, so it stays in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable

log = logging.getLogger("sidecar.proxy")

MAX_ACCEPTS_PER_TURN = 256  # bounds one turn's accept work when a storm of clients connects at once
BACKLOG = 2048
RETRY_AFTER = 0.5  # seconds accepting pauses on an error that is not one client's (EMFILE, ENOMEM...)
# accept(2) on Linux: a queued connection's own network error, to be skipped like EAGAIN is retried.
_CLIENT_GONE = {
    errno.ECONNABORTED,
    errno.EPROTO,
    errno.EPERM,
    errno.ENETDOWN,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
    errno.ENOPROTOOPT,
    errno.EOPNOTSUPP,
    errno.ENONET,
}
_WARN_EVERY = 10.0


async def bind(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets for every address `host` resolves to (both families for a name, as asyncio
    binds them); OSError (socket.gaierror for a name that does not resolve) when one cannot be bound."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            with contextlib.suppress(OSError):  # accepted sockets inherit it
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Acceptor:
    """Accepts on `sockets` and makes each connection a transport driven by `factory()`'s protocol."""

    def __init__(self, sockets: list[socket.socket], factory: Callable[[], asyncio.Protocol]) -> None:
        self.sockets = sockets
        self.factory = factory
        self.loop = asyncio.get_running_loop()
        self.accepted = 0
        self.serving = False
        self._opening: set[asyncio.Task[object]] = set()  # connections being made transports
        self._last_warning = -_WARN_EVERY

    def start(self) -> None:
        for sock in self.sockets:
            self.loop.add_reader(sock.fileno(), self._ready, sock)
        self.serving = True

    def close(self) -> None:
        """Stop accepting and close the listening sockets; accepted connections carry on."""
        if self.serving:
            for sock in self.sockets:
                self.loop.remove_reader(sock.fileno())
            self.serving = False
        for sock in self.sockets:
            sock.close()

    def _ready(self, sock: socket.socket) -> None:
        for _ in range(MAX_ACCEPTS_PER_TURN):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _CLIENT_GONE:
                    continue  # that client is gone; the next one may be fine
                self._pause(sock, exc)  # out of descriptors or memory, or unknown: never a busy loop
                return
            self.accepted += 1
            conn.setblocking(False)
            task = self.loop.create_task(self.loop.connect_accepted_socket(self.factory, conn))
            self._opening.add(task)
            task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[object]) -> None:
        self._opening.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("cannot start a connection: %s", exc)

    def _pause(self, sock: socket.socket, exc: OSError) -> None:
        """Leave the clients queued (the kernel keeps them) and try again in RETRY_AFTER seconds."""
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            log.warning("accepting paused for %.1f s: %s", RETRY_AFTER, exc.strerror or exc)
        self.loop.remove_reader(sock.fileno())
        self.loop.call_later(RETRY_AFTER, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        if self.serving:
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile
                self.loop.add_reader(sock.fileno(), self._ready, sock)


__all__ = ["MAX_ACCEPTS_PER_TURN", "Acceptor", "bind"]
