"""A scriptable Zipkin collector for tests: per-request status and delay, records every POST.

A script entry `(status, delay)` answers `status` after `delay` seconds; status `RESET` reads the
request whole, then cuts the connection without answering. `narrow_server` starts a raw backend with
a small receive window, for bodies that cannot leave whole.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

RESET = 0


@dataclass
class Post:
    body: bytes
    headers: dict[str, str]


@dataclass
class FakeCollector:
    script: list[tuple[int, float]] = field(default_factory=list)  # (status, delay) per request, then 202
    posts: list[Post] = field(default_factory=list)  # accepted or not, every request that arrived
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    active: int = 0  # POSTs being handled right now
    most_active: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append(Post(body, dict(request.headers)))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            return await self._answer(request)
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        status, delay = self.script.pop(0) if self.script else (202, 0.0)
        self.arrived.set()
        if delay:
            await asyncio.sleep(delay)
        if status == RESET:
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("scripted reset")
        return web.Response(status=status)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v2/spans", self.handle)
        return app


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


async def narrow_server(handler: Handler) -> tuple[asyncio.Server, int]:
    """A raw backend with a small receive window (and its port): a large body it does not read cannot
    leave the sender whole, since the send buffer holds 4 MB at most."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(handler, sock=listener)
    return server, listener.getsockname()[1]
