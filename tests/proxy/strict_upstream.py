"""A strict HTTP/1.1 origin on a real socket (h11, not the proxy's llhttp) that records every request it
parses and answers each with its sequence number, so tests can compare what crossed the wire."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import h11


@dataclass
class Seen:
    method: bytes
    target: bytes
    headers: dict[bytes, bytes]
    body: bytes


@dataclass
class StrictUpstream:
    seen: list[Seen] = field(default_factory=list)
    refused: int = 0  # requests h11 could not parse (answered 400 and closed)
    connections: int = 0
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> StrictUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = bytearray()
        try:
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError:
                    self.refused += 1
                    writer.write(
                        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    )
                    return
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    request, body = event, bytearray()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert request is not None
                    headers = {bytes(k).lower(): bytes(v) for k, v in request.headers}
                    self.seen.append(Seen(request.method, request.target, headers, bytes(body)))
                    seq = str(len(self.seen) - 1).encode()
                    reply = [(b"content-length", b"0"), (b"x-seq", seq), (b"x-target", request.target)]
                    writer.write(conn.send(h11.Response(status_code=200, headers=reply)) or b"")
                    writer.write(conn.send(h11.EndOfMessage()) or b"")
                    await writer.drain()
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
        except (ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            writer.close()
