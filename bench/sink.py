"""A span sink for the benchmark: `sink.py PORT`. Reads every POST to /api/v2/spans whole, counts its
spans and answers 202; GET /stats says how many were accepted. No storage, no JSON decoding.

Why: on the 2 shared cores the project's collector (aiohttp, JSON decode, a trace store) costs ~10 us of
CPU per span, more than the sidecar's own tracing, and in a real deployment Jaeger runs elsewhere. The
spans still cross the wire and are counted, so "spans/req" stays a delivery check. `bench/run.py
--collector full` measures with the real collector instead.
"""

from __future__ import annotations

import asyncio
import sys

import httptools

accepted = 0
JSON_KEY = b'"traceId"'  # once per span in a JSON batch: as a value it would be escaped (\"traceId\")


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.body = []
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        global accepted
        if self.url.startswith(b"/stats"):
            payload = b'{"accepted": %d}' % accepted
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                                 % (len(payload), payload))  # fmt: skip
            return
        accepted += b"".join(self.body).count(JSON_KEY)
        self.transport.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(int(sys.argv[1])))
